//! `cachefs status ADDR`: a live view of a mount's `/stats.json`: hit ratio (overall and over the last
//! interval), bytes cached, dirty bytes and files waiting to be flushed, backing-directory traffic and
//! latency percentiles.

use serde_json::Value;

/// Renders one view from the current stats and, if there is one, the previous sample (for rates).
pub fn render(now: &Value, before: Option<&Value>, seconds: f64) -> String {
    let n = |v: &Value, path: &[&str]| path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0);
    let fs = &now["fs"];
    let (hits, misses) = (n(fs, &["read_hits"]), n(fs, &["read_misses"]));
    let ratio = |h: u64, m: u64| {
        if h + m == 0 { "-".to_string() } else { format!("{:.1}%", 100.0 * h as f64 / (h + m) as f64) }
    };
    let mut out = String::new();
    out.push_str(&format!("cachefs mount ({})\n\n", fs["name"].as_str().unwrap_or("?")));
    let recent = before.map(|b| {
        let (dh, dm) =
            (hits.saturating_sub(n(&b["fs"], &["read_hits"])), misses.saturating_sub(n(&b["fs"], &["read_misses"])));
        let reads = (dh + dm) as f64 / seconds.max(1e-9);
        format!("   last {seconds:.0} s: {} of {} reads ({reads:.0}/s)", ratio(dh, dm), dh + dm)
    });
    out.push_str(&format!(
        "hit ratio      {} of {} reads{}\n",
        ratio(hits, misses),
        hits + misses,
        recent.unwrap_or_default()
    ));
    out.push_str(&format!(
        "cached         {} of {} ({} files and chunks)\n",
        bytes(n(fs, &["data", "weighted_size"])),
        bytes(n(fs, &["data", "capacity"])),
        n(fs, &["data", "entries"])
    ));
    out.push_str(&format!(
        "dirty          {} in {} files waiting to be flushed; {} flushed, {} flush errors\n",
        bytes(n(fs, &["dirty_bytes"])),
        n(fs, &["dirty_entries"]),
        n(fs, &["flushes"]),
        n(fs, &["flush_errors"])
    ));
    out.push_str(&format!(
        "open           {} files, {} being written\n",
        n(now, &["open_files"]),
        bytes(n(now, &["open_bytes"]))
    ));
    out.push_str(&format!(
        "backing        {} reads, {} writes, {} metadata calls\n",
        n(now, &["backing", "reads"]),
        n(now, &["backing", "writes"]),
        n(now, &["backing", "metadata"])
    ));
    out.push_str("\nlatency (µs)     count      p50      p95      p99    p99.9      max\n");
    for op in fs["latency"].as_array().into_iter().flatten() {
        let us = |k: &str| op[k].as_f64().map_or("-".to_string(), |ns| format!("{:.1}", ns / 1000.0));
        out.push_str(&format!(
            "{:<10} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
            op["op"].as_str().unwrap_or("?"),
            op["count"].as_u64().unwrap_or(0),
            us("p50_ns"),
            us("p95_ns"),
            us("p99_ns"),
            us("p999_ns"),
            us("max_ns")
        ));
    }
    out
}

fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_ratios_rates_and_sizes() {
        let before = serde_json::json!({"fs": {"read_hits": 10, "read_misses": 10}});
        let now = serde_json::json!({
            "fs": {"name": "mount", "read_hits": 40, "read_misses": 10, "dirty_bytes": 3 << 20, "dirty_entries": 2,
                   "data": {"weighted_size": 1536, "capacity": 1 << 30, "entries": 3},
                   "latency": [{"op": "read", "count": 5, "p50_ns": 1500.0, "p95_ns": 2000, "p99_ns": 3000.0, "p999_ns": 4000.0, "max_ns": 5000.0}]},
            "backing": {"reads": 7, "writes": 1, "metadata": 9}, "open_files": 1, "open_bytes": 0
        });
        let view = render(&now, Some(&before), 2.0);
        assert!(view.contains("80.0% of 50 reads"), "{view}");
        assert!(view.contains("last 2 s: 100.0% of 30 reads (15/s)"), "{view}");
        assert!(view.contains("1.5 KiB of 1.0 GiB"), "{view}");
        assert!(view.contains("3.0 MiB in 2 files"), "{view}");
        assert!(view.contains("7 reads, 1 writes, 9 metadata"), "{view}");
        assert!(view.contains("read") && view.contains("1.5"), "{view}");
        assert!(render(&serde_json::json!({}), None, 1.0).contains("- of 0 reads"));
    }
}
