//! `cachefs`: measure the cachefs engine against its peers.
//!
//! `cachefs replay TRACE...` replays cache traces through cachefs's policies, the peer caches and
//! Belady's optimum, and prints hit ratios as Markdown tables (or JSON), optionally with an SVG chart.
//! `cachefs ring inspect PATH` checks a ring buffer's files; `cachefs ring bench` measures the ring.
//! `cachefs fetch DIGEST...` fills blobs through the tiered store (disk, Redis, origin).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use cachefs_cli::capacity::{self, Capacity, CapacityError};
use cachefs_cli::compare::{self, memory::Counting};
use cachefs_cli::replay::{self, Contender, UnknownContender};
use cachefs_cli::report::{self, PlotError};
use cachefs_cli::ring::{self as ring_cli, bench::BenchError};
use cachefs_cli::trace::{self, TraceError};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

/// Counts heap bytes, for `compare`'s memory table; otherwise the system allocator unchanged.
#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Parser, Debug)]
#[command(name = "cachefs", version, about = "Measure the cachefs engine against its peers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compare cachefs with quick_cache, moka, mini-moka and Mutex<LruCache>: throughput by workload and
    /// thread count, memory per entry, hit ratio on two embedded traces. About 50 s on 2 cores.
    Compare {
        /// Measuring time per table cell, in seconds.
        #[arg(long, default_value_t = 0.25)]
        seconds_per_cell: f64,
        /// Thread counts, comma-separated.
        #[arg(long, default_value = "1,2,4")]
        threads: String,
        /// Directory holding arc_P3.keys.gz for the replay workload (skipped if absent).
        #[arg(long, default_value = "../shared/traces")]
        traces: PathBuf,
        /// Where to write the SVG chart.
        #[arg(long, default_value = "target/cachefs-compare.svg")]
        plot: PathBuf,
        /// A tiny run (seconds), for smoke tests.
        #[arg(long)]
        smoke: bool,
    },
    /// Fill blobs through the tiered store (disk, then Redis, then the origin), a progress bar per blob;
    /// prints `<digest> <bytes> <source>` per blob.
    Fetch {
        /// Digests, `sha256:<64 hex>`.
        #[arg(required = true)]
        digests: Vec<String>,
        /// The disk tier's directory.
        #[arg(long)]
        disk_dir: PathBuf,
        /// The disk tier's bound (bytes; K, M, G, T suffixes).
        #[arg(long, default_value = "10G", value_parser = cachefs_cli::fetch::parse_bytes)]
        disk_max_bytes: u64,
        /// A Redis server shared by the fleet, `redis://host:port`.
        #[arg(long, conflicts_with = "redis_cluster")]
        redis: Option<String>,
        /// A Redis Cluster: node URLs, comma-separated.
        #[arg(long, value_delimiter = ',')]
        redis_cluster: Vec<String>,
        /// Redis per-request time budget, milliseconds.
        #[arg(long, default_value_t = 1000)]
        redis_timeout_ms: u64,
        /// A directory origin (files `sha256_<hex>`, or an OCI image layout).
        #[arg(long, conflicts_with = "registry")]
        origin_dir: Option<PathBuf>,
        /// An OCI registry origin, `http(s)://host[:port]` (with --repo).
        #[arg(long, requires = "repo")]
        registry: Option<String>,
        /// The registry repository, e.g. `library/python`.
        #[arg(long, requires = "registry")]
        repo: Option<String>,
        /// The origin serves gzip; digests name the decompressed content.
        #[arg(long)]
        gzip: bool,
        /// Blobs filled at once.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
    },
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
        /// Seed of the hashers of cachefs, moka and quick_cache: the same seed prints the same tables.
        #[arg(long, default_value_t = replay::DEFAULT_SEED)]
        seed: u64,
        /// libCacheSim's best of seven per cell, as `scripts/libcachesim-best.py` prints it (the column is
        /// left out if the file is absent).
        #[arg(long, default_value = "docs/best-of-7.tsv")]
        reference: PathBuf,
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
    /// Warm restart on traces: replay the first half, snapshot, restart (another hash seed), load the
    /// snapshot, replay the second half; prints the second half's hit ratio against a cache that never
    /// restarted and a cold restart.
    Restart {
        /// Trace files.
        #[arg(required = true)]
        traces: Vec<PathBuf>,
        /// Capacities: percentages of each trace's unique keys or entry counts, comma-separated.
        #[arg(long, default_value = "1%,5%,10%,25%")]
        capacity: String,
        /// cachefs policies, comma-separated: lru, lfu, ttl, hybrid.
        #[arg(long, default_value = "lru,lfu,hybrid")]
        policy: String,
        /// Seed of the hasher before the restart (the next one after it).
        #[arg(long, default_value_t = replay::DEFAULT_SEED)]
        seed: u64,
        /// Worker threads (default: the machine's cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Mount a CacheFs over BACKING at MOUNTPOINT (FUSE): programs read and write the slow directory
    /// through memory. Runs until `fusermount3 -u MOUNTPOINT`, Ctrl-C or SIGTERM, then writes every dirty
    /// file and exits non-zero if one could not be written.
    Mount {
        /// The slow directory (NFS, a network disk, a bucket mounted with FUSE).
        backing: PathBuf,
        /// An empty directory to mount on.
        mountpoint: PathBuf,
        /// How writes reach BACKING.
        #[arg(long, value_parser = ["write-through", "write-back", "write-around"], default_value = "write-through")]
        mode: String,
        /// Memory for file contents (bytes; K, M, G, T suffixes).
        #[arg(long, default_value = "1G", value_parser = cachefs_cli::fetch::parse_bytes)]
        max_bytes: u64,
        /// Write-back: how long a file stays dirty before it is written (500ms, 5s, 1m).
        #[arg(long, default_value = "5s", value_parser = cachefs_cli::mount::parse_duration)]
        flush_delay: std::time::Duration,
        /// How long lengths, times and directory entries are cached.
        #[arg(long, default_value = "1s", value_parser = cachefs_cli::mount::parse_duration)]
        metadata_ttl: std::time::Duration,
        /// Serve /metrics (Prometheus) and /stats.json at this address, e.g. 127.0.0.1:9400.
        #[arg(long)]
        metrics: Option<String>,
        /// Refuse every change.
        #[arg(long)]
        read_only: bool,
        /// Add this delay to every operation on BACKING (benchmarks: a stand-in for a network disk).
        #[arg(long, default_value_t = 0, hide = true)]
        backing_delay_ms: u64,
    },
    /// Read files through a cachefs mount so they are served from memory afterwards. PATHs may be inside
    /// the mount or inside its backing directory; directories are walked.
    Warm {
        /// Files or directories.
        paths: Vec<PathBuf>,
        /// Only files whose path below each PATH matches (`*` within a component, `**` across).
        #[arg(long)]
        glob: Option<String>,
        /// Also warm the paths listed in this file, one per line.
        #[arg(long)]
        list: Option<PathBuf>,
        /// high: 4 readers; low: 1 reader at idle CPU and I/O priority.
        #[arg(long, value_parser = ["high", "low"], default_value = "high")]
        priority: String,
    },
    /// A live view of a mount's stats (`cachefs mount --metrics ADDR`), refreshed until Ctrl-C.
    Status {
        /// The mount's metrics address, e.g. 127.0.0.1:9400.
        addr: String,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Print one view and exit.
        #[arg(long)]
        once: bool,
    },
    /// The disk ring buffer (`cachefs::ring`): inspect a ring's files, or benchmark the ring.
    Ring {
        #[command(subcommand)]
        command: RingCommand,
    },
}

#[derive(Subcommand, Debug)]
enum RingCommand {
    /// Print a ring's geometry and latest id and verify every record, with a progress bar. Opens the ring
    /// read-only: safe while a writer is running, and changes nothing. Exit code 1 if a record is corrupt,
    /// 2 for any other failure (a missing or non-ring file, bad arguments).
    Inspect {
        /// The ring's first file (`ring.dat`; the other shards are found from its header).
        path: PathBuf,
        /// How to read the files.
        #[arg(long, value_enum, default_value_t = Mode::Pread)]
        mode: Mode,
    },
    /// Measure the ring against raw file I/O of the same bytes: writes flushing every 64 records, cold and
    /// warm sequential reads, random reads, both I/O modes, 4 KiB and 128 B records (docs/benchmarks.md).
    Bench {
        /// Directory for the temporary files (removed afterwards).
        #[arg(long, default_value = "target/ring-bench")]
        dir: PathBuf,
        /// Size of each ring and baseline file, MiB.
        #[arg(long, default_value_t = 128)]
        mib: u64,
        /// Record sizes, bytes, comma-separated.
        #[arg(long, default_value = "4096,128")]
        record_sizes: String,
        /// A run of seconds on tiny files, for tests.
        #[arg(long)]
        smoke: bool,
        /// Print JSON instead of Markdown.
        #[arg(long)]
        json: bool,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum Mode {
    Mmap,
    Pread,
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error(transparent)]
    Reference(#[from] cachefs_cli::replay::reference::ReferenceError),
    #[error(transparent)]
    Capacity(#[from] CapacityError),
    #[error(transparent)]
    Contender(#[from] UnknownContender),
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error("--shards must be at least 1")]
    Shards,
    #[error("--threads takes whole numbers from 1 to 64, comma-separated, got {0:?}")]
    Threads(String),
    #[error("--seconds-per-cell must be a positive number of seconds, got {0}")]
    CellTime(f64),
    #[error(transparent)]
    Fetch(#[from] cachefs_cli::fetch::FetchError),
    #[error("cannot create the chart's directory {path}: {source}")]
    ChartDir { path: String, source: std::io::Error },
    #[error(transparent)]
    Ring(#[from] cachefs::ring::Error),
    #[error(transparent)]
    RingBench(#[from] BenchError),
    #[error("--mib must be at least 1")]
    Mib,
    #[error("--record-sizes takes multiples of 8 from 32, comma-separated, got {0:?}")]
    RecordSizes(String),
    /// Reported already; exit code 1.
    #[error("the ring has corrupt records")]
    Corrupt,
    #[error(transparent)]
    Mount(#[from] cachefs_cli::mount::MountCliError),
    #[error(transparent)]
    Warm(#[from] cachefs_cli::warm::WarmError),
    #[error("warm: give at least one PATH or --list")]
    NothingToWarm,
    #[error(transparent)]
    Status(#[from] cachefs_cli::http::GetError),
    #[error("{addr}/stats.json is not a cachefs mount's stats: {reason}")]
    StatusBody { addr: String, reason: String },
    #[error("--interval must be a positive number of seconds, got {0}")]
    Interval(f64),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Corrupt) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Compare { seconds_per_cell, threads, traces, plot, smoke } => {
            compare_command(seconds_per_cell, &threads, &traces, &plot, smoke)
        }
        Command::Fetch {
            digests,
            disk_dir,
            disk_max_bytes,
            redis,
            redis_cluster,
            redis_timeout_ms,
            origin_dir,
            registry,
            repo,
            gzip,
            parallel,
        } => {
            use cachefs_cli::fetch;
            let digests = fetch::parse_digests(&digests)?;
            let options = fetch::FetchOptions {
                disk_dir,
                disk_max_bytes,
                redis,
                redis_cluster,
                redis_timeout: std::time::Duration::from_millis(redis_timeout_ms.max(1)),
                origin_dir,
                registry: registry.zip(repo),
                gzip,
                parallel,
            };
            let report = fetch::fetch(&options, &digests);
            // Every blob filled is reported, even when others failed.
            for f in &report.done {
                println!("{} {} {}", f.digest, f.size, f.source.name());
            }
            Ok(report.outcome?)
        }
        Command::Restart { traces, capacity, policy, seed, threads } => {
            let capacities: Vec<Capacity> = capacity::parse_list(&capacity)?;
            let policies = policy
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| match p.parse()? {
                    Contender::Ours(policy) => Ok(policy),
                    _ => Err(UnknownContender(format!("{p} (restart measures cachefs's policies only)"))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let loaded = traces.iter().map(|p| trace::load(p)).collect::<Result<Vec<_>, _>>()?;
            let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let started = Instant::now();
            let rows = replay::restart::sweep(&loaded, &capacities, &policies, seed, threads);
            print!("{}", replay::restart::markdown(&rows));
            eprintln!("replayed in {:.1} s on {threads} threads", started.elapsed().as_secs_f64());
            Ok(())
        }
        Command::Replay { traces, capacity, policy, shards, seed, reference, plot, json, threads } => {
            let reference =
                if reference.exists() { Some(replay::reference::Reference::load(&reference)?) } else { None };
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
            let results = replay::sweep(&loaded, &capacities, &contenders, shards, seed, threads, &|n| bar.inc(n));
            bar.finish_and_clear();
            if json {
                println!("{}", report::json(&results));
            } else {
                print!("{}", report::markdown(&results, reference.as_ref()));
                print!("{}", report::means(&results, reference.as_ref()));
                let hybrid = Contender::Ours(cachefs::Policy::Hybrid);
                if contenders.contains(&hybrid) {
                    // The default policy's spread over five seeds (this one and the next four).
                    let mut seeds = vec![report::mean_hit_ratio(&results, "hybrid").unwrap_or(0.0)];
                    for i in 1..5 {
                        let more = replay::sweep(
                            &loaded,
                            &capacities,
                            &[hybrid],
                            shards,
                            seed.wrapping_add(i),
                            threads,
                            &|_| {},
                        );
                        seeds.push(report::mean_hit_ratio(&more, "hybrid").unwrap_or(0.0));
                    }
                    let (lo, hi) = seeds.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &m| (lo.min(m), hi.max(m)));
                    let list: Vec<String> = seeds.iter().map(|m| format!("{m:.2}")).collect();
                    println!(
                        "hybrid's mean over 5 seeds ({seed} to {}): {}%; spread {:.2} pp\n",
                        seed.wrapping_add(4),
                        list.join(", "),
                        hi - lo
                    );
                }
                println!(
                    "Seed {seed}. moka runs its pending work after every insert (it never holds more than its \
                     capacity); N% is floor(unique keys × N / 100) entries."
                );
                eprintln!("replayed in {:.1} s on {threads} threads", started.elapsed().as_secs_f64());
            }
            if let Some(path) = plot {
                report::plot(&results, &path)?;
                eprintln!("chart written to {}", path.display());
            }
            Ok(())
        }
        Command::Mount {
            backing,
            mountpoint,
            mode,
            max_bytes,
            flush_delay,
            metadata_ttl,
            metrics,
            read_only,
            backing_delay_ms,
        } => {
            use cachefs_cli::mount;
            let options = cachefs::mount::MountOptions {
                write_mode: mount::write_mode(&mode, flush_delay),
                max_bytes,
                metadata_ttl,
                read_only,
                backing_delay: std::time::Duration::from_millis(backing_delay_ms),
                ..Default::default()
            };
            Ok(mount::run(mount::Args { backing, mountpoint, options, metrics })?)
        }
        Command::Warm { paths, glob, list, priority } => warm_command(paths, glob.as_deref(), list, &priority),
        Command::Status { addr, interval, once } => status_command(&addr, interval, once),
        Command::Ring { command: RingCommand::Inspect { path, mode } } => {
            let mode = match mode {
                Mode::Mmap => cachefs::ring::IoMode::Mmap,
                Mode::Pread => cachefs::ring::IoMode::Pread,
            };
            let bar = ProgressBar::new(0).with_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} slots verified, eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let found = ring_cli::inspect(&path, mode, |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            });
            bar.finish_and_clear();
            let found = found?;
            print!("{}", found.text);
            if found.clean { Ok(()) } else { Err(CliError::Corrupt) }
        }
        Command::Ring { command: RingCommand::Bench { dir, mib, record_sizes, smoke, json } } => {
            if mib == 0 {
                return Err(CliError::Mib);
            }
            let sizes: Vec<u32> = record_sizes
                .split(',')
                .map(|s| s.trim().parse().ok().filter(|&n: &u32| n >= 32 && n % 8 == 0))
                .collect::<Option<_>>()
                .ok_or_else(|| CliError::RecordSizes(record_sizes.clone()))?;
            let settings = if smoke {
                ring_cli::bench::Settings::smoke(dir)
            } else {
                ring_cli::bench::Settings { mib, record_sizes: sizes, ..ring_cli::bench::Settings::full(dir) }
            };
            let bar = ProgressBar::new_spinner();
            let started = Instant::now();
            let rows = ring_cli::bench::run(&settings, &|step| bar.set_message(step.to_string()));
            bar.finish_and_clear();
            let rows = rows?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
            } else {
                println!(
                    "# cachefs ring bench\n\n{} MiB per file, {} cores, median of {} alternating rounds; \
                     MB/s = 10^6 record bytes per second.\n",
                    settings.mib,
                    std::thread::available_parallelism().map_or(1, |n| n.get()),
                    settings.rounds,
                );
                print!("{}", ring_cli::bench::table(&rows, settings.flush_every));
            }
            eprintln!("ring bench finished in {:.0} s", started.elapsed().as_secs_f64());
            Ok(())
        }
    }
}

fn warm_command(
    paths: Vec<PathBuf>,
    glob: Option<&str>,
    list: Option<PathBuf>,
    priority: &str,
) -> Result<(), CliError> {
    use cachefs_cli::warm;
    use std::sync::atomic::Ordering;
    let mut paths = paths;
    if let Some(list) = list {
        paths.extend(warm::list(&list)?);
    }
    if paths.is_empty() {
        return Err(CliError::NothingToWarm);
    }
    let glob = glob.map(warm::pattern).transpose()?;
    let table = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|source| warm::WarmError::Io { path: "/proc/self/mountinfo".into(), source })?;
    let mounts = warm::mounts(&table);
    let mut files = Vec::new();
    for p in &paths {
        warm::files(&warm::through_mount(p, &mounts)?, glob.as_ref(), &mut files)?;
    }
    let total: u64 = files.iter().map(|(_, len)| len).sum();
    let workers = if priority == "low" {
        warm::lower_priority();
        1
    } else {
        4
    };
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {msg} {bytes}/{total_bytes} {bytes_per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let progress = warm::Progress::default();
    let count = files.len();
    let started = Instant::now();
    let result = std::thread::scope(|s| {
        let reader = s.spawn(|| warm::read_all(&files, workers, &progress));
        while !reader.is_finished() {
            bar.set_position(progress.bytes.load(Ordering::Relaxed));
            bar.set_message(format!("{}/{count} files", progress.files.load(Ordering::Relaxed)));
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        reader.join().unwrap_or_else(|_| Err(warm::WarmError::Partial { failed: 1, first: "a reader panicked".into() }))
    });
    bar.finish_and_clear();
    let (done, bytes) = (progress.files.load(Ordering::Relaxed), progress.bytes.load(Ordering::Relaxed));
    let secs = started.elapsed().as_secs_f64();
    println!(
        "warmed {done} of {count} files, {bytes} bytes in {secs:.1} s ({:.1} MB/s)",
        bytes as f64 / 1e6 / secs.max(1e-9)
    );
    Ok(result?)
}

fn status_command(addr: &str, interval: f64, once: bool) -> Result<(), CliError> {
    use std::io::IsTerminal;
    if !(interval.is_finite() && interval > 0.0) {
        return Err(CliError::Interval(interval));
    }
    let fetch = || -> Result<serde_json::Value, CliError> {
        let body = cachefs_cli::http::get(addr, "/stats.json")?;
        let v: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| CliError::StatusBody { addr: addr.to_string(), reason: e.to_string() })?;
        if v.get("fs").is_none() {
            return Err(CliError::StatusBody { addr: addr.to_string(), reason: "no \"fs\" section".into() });
        }
        Ok(v)
    };
    let tty = std::io::stdout().is_terminal();
    let mut before: Option<(serde_json::Value, Instant)> = None;
    loop {
        let now = fetch()?;
        let view = cachefs_cli::status::render(
            &now,
            before.as_ref().map(|b| &b.0),
            before.as_ref().map_or(0.0, |b| b.1.elapsed().as_secs_f64()),
        );
        if tty && !once {
            print!("\x1b[2J\x1b[H");
        }
        println!("{view}");
        if once {
            return Ok(());
        }
        before = Some((now, Instant::now()));
        std::thread::sleep(std::time::Duration::from_secs_f64(interval));
    }
}

fn compare_command(
    seconds_per_cell: f64,
    threads: &str,
    traces: &std::path::Path,
    plot: &std::path::Path,
    smoke: bool,
) -> Result<(), CliError> {
    let started = Instant::now();
    let threads: Vec<usize> = threads
        .split(',')
        .map(|t| t.trim().parse().ok().filter(|n| (1..=64).contains(n)))
        .collect::<Option<_>>()
        .ok_or_else(|| CliError::Threads(threads.to_string()))?;
    if !(seconds_per_cell.is_finite() && seconds_per_cell > 0.0) {
        return Err(CliError::CellTime(seconds_per_cell));
    }
    let mut settings = if smoke { compare::Settings::smoke() } else { compare::Settings::full() };
    settings.threads = threads;
    if !smoke {
        settings.cell_time = std::time::Duration::from_secs_f64(seconds_per_cell);
        settings.p3 = compare::find_p3(traces);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("# cachefs compare\n");
    println!(
        "{cores} cores; {:.2} s per cell; Zipf(0.99) keys, values Arc<[u8; 64]>; ratio = cachefs ÷ peer.\n",
        settings.cell_time.as_secs_f64()
    );
    if settings.p3.is_none() && !smoke {
        println!("(arc_P3 not found in {}: its replay workload is skipped.)\n", traces.display());
    }
    let cells = 4 + usize::from(settings.p3.is_some());
    let bar = ProgressBar::new((cells * settings.threads.len() * 6) as u64).with_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let rows = compare::throughput(&settings, &|cell| {
        bar.set_message(cell.to_string());
        bar.inc(1);
    });
    bar.finish_and_clear();
    println!("## Throughput, million operations per second\n\n{}", compare::throughput_table(&rows));
    if settings.memory_entries > 0 {
        let table = compare::memory_table(settings.memory_entries);
        if !table.is_empty() {
            println!("## Memory\n\n{table}");
        }
    }
    let embedded = compare::embedded_traces()?;
    println!("## Hit ratio (%), embedded traces\n\n{}", compare::hit_ratio_table(&embedded, cores));
    if let Some(dir) = plot.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|source| CliError::ChartDir { path: dir.display().to_string(), source })?;
    }
    compare::plot_throughput(&rows, plot)?;
    println!("Chart: {} (W1..W{cells}: the workloads in table order).", plot.display());
    eprintln!("compare finished in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
