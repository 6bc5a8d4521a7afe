//! The fake Partner Center of `benches/compare.sh`, the side-by-side
//! performance comparison: it serves license usage collections of any size
//! from bodies built once at startup, times how long `serde_json` takes to
//! parse the large one into a `Value` (the yardstick for the exporter's
//! decoding), and reports when each answer was sent and when the next
//! request came, so the script can tell how long the exporter spent
//! between receiving a body and asking again.
//!
//! Not a test and not a criterion benchmark: `cargo bench` runs it with
//! `--bench` and it only prints where to look. The script runs it as
//! `compare_upstream serve --items N --port-file FILE`.
//!
//! Routes, below any of the prefixes (`base_url` keeps its path):
//! - `/small/v1/analytics/licenses/usage`: the documented 5-item example
//!   (`tests/fixtures/partner-licenses-usage.json`), byte for byte;
//! - `/distinct/...`: N items, each its own series;
//! - `/repeat/...`: N items cycling over the 5 series of the example, so the
//!   exporter decodes N items but serves a 5-series snapshot;
//! - `/_stats`: requests, send times and gaps per route, and the parse
//!   yardstick, as `key route value...` lines.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const FIXTURE: &str = include_str!("../tests/fixtures/partner-licenses-usage.json");
const USAGE_PATH: &str = "/v1/analytics/licenses/usage";
/// A request head longer than this is not from the exporter.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Parses of the large body timed for the yardstick; the median is reported.
const PARSE_RUNS: usize = 7;

/// The five series of the documented example, cycled by `/repeat`.
const EXAMPLE_SERIES: [(&str, &str, &str); 5] = [
    ("Microsoft Dynamics CRM", "crm", "reseller"),
    ("SharePoint", "crm", "reseller"),
    ("Exchange", "o365", "reseller"),
    ("SharePoint", "o365", "reseller"),
    ("Skype For Business", "o365", "reseller"),
];

/// One answer on a route: when its request arrived and when the body was
/// handed to the socket.
#[derive(Clone, Copy)]
struct Served {
    arrived: Instant,
    sent: Instant,
}

struct Upstream {
    routes: BTreeMap<&'static str, Arc<Vec<u8>>>,
    served: Mutex<BTreeMap<&'static str, Vec<Served>>>,
    parse_value_seconds: f64,
}

/// One item in the shape of the documented example.
fn item(out: &mut String, workload: &str, service: &str, channel: &str, index: usize) {
    use std::fmt::Write;
    // Spread the values so the renderer formats real numbers, not only 0.
    let percent = (index % 10_000) as f64 / 100.0;
    let day = 1 + index % 28;
    let _ = write!(
        out,
        r#"{{"proratedLicensesUsagePercent": {percent}, "workloadName": "{workload}", "processedDateTime": "2024-05-{day:02}T00:00:00+00:00", "serviceName": "{service}", "channel": "{channel}", "attributes": {{"objectType": "PartnerLicensesUsageInsights"}}}}"#
    );
}

/// A collection envelope as Partner Center sends it, with `items` items.
fn collection(
    items: usize,
    series: impl Fn(usize) -> (String, &'static str, &'static str),
) -> Vec<u8> {
    let mut out = String::with_capacity(items * 240 + 128);
    out.push_str(&format!("{{\"totalCount\": {items}, \"items\": ["));
    for index in 0..items {
        if index > 0 {
            out.push_str(", ");
        }
        let (workload, service, channel) = series(index);
        item(&mut out, &workload, service, channel, index);
    }
    out.push_str("], \"attributes\": {\"objectType\": \"Collection\"}}");
    out.into_bytes()
}

/// Median seconds `serde_json` takes to parse `body` into a `Value`; the
/// value is dropped outside the timed part.
fn parse_value_seconds(body: &[u8]) -> f64 {
    let mut runs: Vec<f64> = (0..PARSE_RUNS)
        .map(|_| {
            let started = Instant::now();
            let value: serde_json::Value = serde_json::from_slice(body).expect("valid JSON");
            let took = started.elapsed().as_secs_f64();
            drop(std::hint::black_box(value));
            took
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

impl Upstream {
    fn new(items: usize) -> Self {
        const SERVICES: [&str; 4] = ["o365", "crm", "azure", "intune"];
        const CHANNELS: [&str; 2] = ["reseller", "direct"];
        let distinct = collection(items, |index| {
            (
                format!("Workload {index:06}"),
                SERVICES[index % SERVICES.len()],
                CHANNELS[index % CHANNELS.len()],
            )
        });
        let repeat = collection(items, |index| {
            let (workload, service, channel) = EXAMPLE_SERIES[index % EXAMPLE_SERIES.len()];
            (workload.to_owned(), service, channel)
        });
        let parse_value_seconds = parse_value_seconds(&distinct);
        let routes = BTreeMap::from([
            ("small", Arc::new(FIXTURE.as_bytes().to_vec())),
            ("distinct", Arc::new(distinct)),
            ("repeat", Arc::new(repeat)),
        ]);
        Self {
            routes,
            served: Mutex::new(BTreeMap::new()),
            parse_value_seconds,
        }
    }

    fn stats(&self) -> String {
        let served = self.served.lock().expect("lock");
        let mut out = format!(
            "parse_value_ms distinct {:.3}\n",
            self.parse_value_seconds * 1e3
        );
        for (route, body) in &self.routes {
            out.push_str(&format!("bytes {route} {}\n", body.len()));
            let answers = served.get(route).map(Vec::as_slice).unwrap_or_default();
            out.push_str(&format!("requests {route} {}\n", answers.len()));
            let send: Vec<String> = answers
                .iter()
                .map(|a| format!("{:.3}", (a.sent - a.arrived).as_secs_f64() * 1e3))
                .collect();
            out.push_str(&format!("send_ms {route} {}\n", send.join(" ")));
            // From an answer handed to the socket to the next request on
            // the same route: reading the tail, decoding, building the
            // snapshot, rendering it, and starting the next poll.
            let gaps: Vec<String> = answers
                .windows(2)
                .map(|pair| {
                    format!(
                        "{:.3}",
                        (pair[1].arrived - pair[0].sent).as_secs_f64() * 1e3
                    )
                })
                .collect();
            out.push_str(&format!("gap_ms {route} {}\n", gaps.join(" ")));
        }
        out
    }
}

/// The route name of a request line's path, if it is one of ours.
fn route_of<'a>(upstream: &'a Upstream, path: &str) -> Option<(&'static str, &'a Arc<Vec<u8>>)> {
    let path = path.split('?').next().unwrap_or(path);
    let prefix = path.strip_suffix(USAGE_PATH)?.trim_matches('/');
    upstream
        .routes
        .iter()
        .find(|(name, _)| **name == prefix)
        .map(|(name, body)| (*name, body))
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nMS-RequestId: 00000000-0000-4000-8000-000000000000\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await
}

/// Answers the requests of one keep-alive connection until it closes.
async fn connection(upstream: Arc<Upstream>, mut stream: TcpStream) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buffer = Vec::with_capacity(4096);
    loop {
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if buffer.len() > MAX_HEAD_BYTES {
                return Ok(());
            }
            let mut chunk = [0u8; 4096];
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..read]);
        };
        let arrived = Instant::now();
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        // GET requests only: nothing follows the head.
        buffer.drain(..head_end);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
        if path == "/_stats" {
            let stats = upstream.stats();
            respond(&mut stream, "200 OK", "text/plain", stats.as_bytes()).await?;
        } else if let Some((route, body)) = route_of(&upstream, &path) {
            let body = body.clone();
            respond(
                &mut stream,
                "200 OK",
                "application/json; charset=utf-8",
                &body,
            )
            .await?;
            let sent = Instant::now();
            upstream
                .served
                .lock()
                .expect("lock")
                .entry(route)
                .or_default()
                .push(Served { arrived, sent });
        } else {
            respond(
                &mut stream,
                "404 Not Found",
                "application/json",
                br#"{"code": 404, "description": "no such route"}"#,
            )
            .await?;
        }
        if head.to_ascii_lowercase().contains("\r\nconnection: close") {
            return Ok(());
        }
    }
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|arg| arg == name)
        .and_then(|at| args.get(at + 1))
        .cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some("serve") {
        // `cargo bench` runs every bench target; this one is a server.
        println!("compare_upstream: the fake upstream of benches/compare.sh; run that script");
        return;
    }
    let items: usize = flag(&args, "--items")
        .map(|n| n.parse().expect("--items takes a number"))
        .unwrap_or(100_000);
    let port_file = flag(&args, "--port-file").expect("--port-file FILE is required");

    let upstream = Arc::new(Upstream::new(items));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        // Written last and renamed into place, so a reader never sees half a port.
        let partial = format!("{port_file}.partial");
        std::fs::write(&partial, format!("{port}\n")).expect("port file");
        std::fs::rename(&partial, &port_file).expect("port file");
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(connection(upstream.clone(), stream));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    });
}
