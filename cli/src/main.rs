//! `cachefs`: measure the cachefs engine against its peers.
//!
//! `cachefs replay TRACE...` replays cache traces through cachefs's policies, the peer caches and
//! Belady's optimum, and prints hit ratios as Markdown tables (or JSON), optionally with an SVG chart.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use cachefs_cli::capacity::{self, Capacity, CapacityError};
use cachefs_cli::replay::{self, Contender, UnknownContender};
use cachefs_cli::report::{self, PlotError};
use cachefs_cli::trace::{self, TraceError};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser, Debug)]
#[command(name = "cachefs", version, about = "Measure the cachefs engine against its peers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Replay cache traces (one u64 key per line, gzip or plain) and print hit ratios.
    Replay {
        /// Trace files.
        #[arg(required = true)]
        traces: Vec<PathBuf>,
        /// Capacities: percentages of each trace's unique keys or entry counts, comma-separated.
        #[arg(long, default_value = "1%,5%,10%,25%")]
        capacity: String,
        /// Contenders, comma-separated: lru, lfu, ttl, hybrid, moka, quick_cache, lru-crate, opt.
        #[arg(long, default_value = "lru,lfu,ttl,hybrid,moka,quick_cache,lru-crate,opt")]
        policy: String,
        /// Shards for cachefs's caches (default: what a user gets by default).
        #[arg(long)]
        shards: Option<usize>,
        /// Also draw an SVG chart here.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Print JSON instead of Markdown.
        #[arg(long)]
        json: bool,
        /// Worker threads (default: the machine's cores).
        #[arg(long)]
        threads: Option<usize>,
    },
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error(transparent)]
    Capacity(#[from] CapacityError),
    #[error(transparent)]
    Contender(#[from] UnknownContender),
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error("--shards must be at least 1")]
    Shards,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Replay { traces, capacity, policy, shards, plot, json, threads } => {
            let capacities: Vec<Capacity> = capacity::parse_list(&capacity)?;
            let contenders: Vec<Contender> =
                policy.split(',').filter(|p| !p.trim().is_empty()).map(str::parse).collect::<Result<_, _>>()?;
            if shards == Some(0) {
                return Err(CliError::Shards);
            }
            let loaded = traces.iter().map(|p| trace::load(p)).collect::<Result<Vec<_>, _>>()?;
            let total: u64 =
                loaded.iter().map(|t| t.keys.len() as u64).sum::<u64>() * (capacities.len() * contenders.len()) as u64;
            let bar = ProgressBar::new(total).with_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {percent}% replayed, eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let started = Instant::now();
            let results = replay::sweep(&loaded, &capacities, &contenders, shards, threads, &|n| bar.inc(n));
            bar.finish_and_clear();
            if json {
                println!("{}", report::json(&results));
            } else {
                print!("{}", report::markdown(&results));
                eprintln!("replayed in {:.1} s on {threads} threads", started.elapsed().as_secs_f64());
            }
            if let Some(path) = plot {
                report::plot(&results, &path)?;
                eprintln!("chart written to {}", path.display());
            }
            Ok(())
        }
    }
}
