//! Soak run: the release exporter polls a faulty fake Partner Center every
//! second for N minutes while scrapers read `/metrics` without pause. It
//! reports resident memory over time and every scrape that failed.
//!
//! Not part of `cargo test`. Run it with
//! `cargo bench --bench soak -- --minutes 10` (default 5 minutes).
//! The upstream cycles through good answers and faults: 500s, 429 with
//! Retry-After, silence, truncated and dripping bodies, an endless body,
//! malformed JSON, HTML, a page of hostile items.

#[path = "../tests/it/common/scripted_upstream.rs"]
#[allow(dead_code)]
mod scripted_upstream;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use scripted_upstream::{ScriptedUpstream, Step};
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_partner-center-exporter");
const FIXTURE: &str = include_str!("../tests/fixtures/partner-licenses-usage.json");

/// Concurrent scrapers, one of them asking for gzip as Prometheus does.
const SCRAPERS: usize = 4;

struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn minutes_from_args() -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == "--minutes")
        .and_then(|at| args.get(at + 1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(5.0)
}

/// Resident memory of `pid` in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// The faults played in turn, one per second, between good answers.
fn fault_cycle() -> Vec<(&'static str, Step)> {
    let hostile_items = format!(
        r#"{{"items": [{{"workloadName": "Sky\"pe\n\\", "serviceName": "o365", "channel": "reseller", "proratedLicensesUsagePercent": 1e400, "processedDateTime": "2024-05-01"}}, {{"workloadName": "Exchange", "serviceName": "o365", "channel": "reseller", "proratedLicensesUsagePercent": -3, "processedDateTime": "2024-05-01"}}, null, {}{}]}}"#,
        "[".repeat(1000),
        "]".repeat(1000)
    );
    vec![
        ("good", Step::json(200, FIXTURE)),
        (
            "500",
            Step::json(500, r#"{"code": 3000, "description": "down"}"#),
        ),
        ("good", Step::json(200, FIXTURE)),
        (
            "429",
            Step::response(429, &[("Retry-After", "1")], b"{\"statusCode\":429}"),
        ),
        ("silence", Step::Hang),
        ("good", Step::json(200, FIXTURE)),
        ("truncated", Step::truncated(FIXTURE)),
        ("drip", Step::drip(FIXTURE, Duration::from_millis(200))),
        ("endless", Step::Endless),
        ("good", Step::json(200, FIXTURE)),
        ("malformed", Step::json(200, "{\"items\": [")),
        (
            "html",
            Step::response(200, &[("Content-Type", "text/html")], b"<html></html>"),
        ),
        ("hostile items", Step::json(200, &hostile_items)),
        ("closed", Step::Close),
    ]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let minutes = minutes_from_args();
    let cycle = fault_cycle();
    let upstream = ScriptedUpstream::start(vec![], cycle[0].1.clone()).await;

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("token"), "soak-token\n").expect("token");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    std::fs::write(
        dir.path().join("config.yml"),
        format!(
            "partner_center:\n  base_url: {}\n  request_timeout: 2s\n  max_retries: 1\n  retry_backoff: 100ms\n  max_retry_after: 2s\n  max_body_size: 1MiB\nauth:\n  bearer_token_file: token\npoll:\n  interval: 1s\n  timeout: 5s\n",
            upstream.base_url
        ),
    )
    .expect("config");
    let exporter = Exporter(
        Command::new(BIN)
            .arg(format!(
                "--config.file={}",
                dir.path().join("config.yml").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the exporter"),
    );
    let pid = exporter.0.id();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");

    // Wait for the first good poll before measuring.
    let ready = Instant::now() + Duration::from_secs(30);
    loop {
        let up = match client.get(&url).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if up.contains("partner_center_up 1") {
            break;
        }
        assert!(Instant::now() < ready, "the exporter never came up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let start_rss = rss_kib(pid);
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(minutes * 60.0);
    println!("soak: {minutes} min, poll every 1s, {SCRAPERS} scrapers, pid {pid}");
    println!("rss at start: {start_rss} KiB");

    let scrapes = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut scrapers = tokio::task::JoinSet::new();
    for scraper in 0..SCRAPERS {
        let (client, url, scrapes, failed) =
            (client.clone(), url.clone(), scrapes.clone(), failed.clone());
        scrapers.spawn(async move {
            while Instant::now() < end {
                let mut request = client.get(&url);
                if scraper == 0 {
                    request = request.header("Accept-Encoding", "gzip");
                }
                let ok = match request.send().await {
                    Ok(response) if response.status() == 200 => {
                        response.bytes().await.is_ok_and(|body| !body.is_empty())
                    }
                    _ => false,
                };
                scrapes.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("scrape failed at {:?}", started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    let mut step = 0usize;
    let mut next_report = started + Duration::from_secs(60);
    let mut peak_rss = start_rss;
    while Instant::now() < end {
        step += 1;
        let (_, fault) = &cycle[step % cycle.len()];
        upstream.replace(vec![], fault.clone());
        tokio::time::sleep(Duration::from_secs(1)).await;
        peak_rss = peak_rss.max(rss_kib(pid));
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(60);
            println!(
                "{:>4.0} s: rss {} KiB, {} scrapes, {} failed, {} upstream requests",
                started.elapsed().as_secs_f64(),
                rss_kib(pid),
                scrapes.load(Ordering::Relaxed),
                failed.load(Ordering::Relaxed),
                upstream.received().len()
            );
        }
    }
    while scrapers.join_next().await.is_some() {}
    let end_rss = rss_kib(pid);
    let metrics = client
        .get(&url)
        .send()
        .await
        .expect("final scrape")
        .text()
        .await
        .expect("final body");
    println!("rss at end: {end_rss} KiB (peak {peak_rss} KiB)");
    println!(
        "scrapes: {}, failed: {}",
        scrapes.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    println!("upstream requests: {}", upstream.received().len());
    for line in metrics.lines().filter(|line| {
        line.starts_with("partner_center_poll_errors_total")
            || line.starts_with("partner_center_request_retries_total")
            || line.starts_with("partner_center_items_skipped_total")
    }) {
        println!("{line}");
    }
    drop(exporter);
    if failed.load(Ordering::Relaxed) > 0 {
        std::process::exit(1);
    }
}
