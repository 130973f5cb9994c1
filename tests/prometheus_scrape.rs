//! A real Prometheus server scrapes `examples/metrics_server.rs`, and the cache's hit counter is read
//! back through Prometheus's HTTP query API, increasing between two scrapes. Everything listens on
//! loopback; both processes are stopped when the test ends.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Guard, free_port, http_get};

#[test]
fn prometheus_scrapes_the_example() {
    let prometheus = common::require("prometheus");
    let example = common::example("metrics_server");
    let mut server =
        Guard(Command::new(example).args(["--port", "0", "--seconds", "90"]).stdout(Stdio::piped()).spawn().unwrap());
    let mut first = String::new();
    BufReader::new(server.0.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let target = first.trim().strip_prefix("listening on ").expect("address line").to_string();
    assert!(http_get(&target, "/metrics").unwrap().contains("cachefs_hits_total"));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: cachefs\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let _prometheus = Guard(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={web}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Poll the query API for the last 30 s of the hit counter until two scrapes show it rising.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let body = match http_get(&web, "/api/v1/query?query=cachefs_hits_total%7Bcache%3D%22example%22%7D%5B30s%5D") {
            Ok(b) => b,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let v: serde_json::Value = serde_json::from_str(&body).expect("Prometheus answers JSON");
        assert_eq!(v["status"], "success", "{body}");
        let samples: Vec<f64> = v["data"]["result"][0]["values"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s[1].as_str()?.parse().ok()).collect())
            .unwrap_or_default();
        if samples.len() >= 2 && samples[samples.len() - 1] > samples[0] {
            assert!(samples.windows(2).all(|w| w[1] >= w[0]), "a counter never falls: {samples:?}");
            return;
        }
        last = body;
    }
    panic!("Prometheus did not report a rising cachefs_hits_total within 60 s; last answer: {last}");
}
