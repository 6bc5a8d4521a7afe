//! The fake Partner Center of `benches/compare.sh`, the side-by-side
//! performance comparison: the crate's simulator (`simulator`) serving
//! license usage collections of any size from bodies built once at
//! startup, plus what only this comparison needs: how long `serde_json`
//! takes to parse the large body into a `Value` (the yardstick for the
//! exporter's decoding), and when each answer was sent and when the next
//! request came, so the script can tell how long the exporter spent
//! between receiving a body and asking again.
//!
//! Not a test and not a criterion benchmark: `cargo bench` runs it with
//! `--bench` and it only prints where to look. The script runs it as
//! `compare_upstream serve --items N --port-file FILE`;
//! `benches/customers.sh` runs its other mode, a partner with many
//! customers for the per-customer sources (`customers`, in
//! `compare_upstream/customers.rs`), as
//! `compare_upstream customers --customers N --skus K --port-file FILE`,
//! and `benches/tenants.sh` a third, several partner tenants with every
//! source's paths, one port each (`tenants`, in `compare_upstream/tenants.rs`),
//! as `compare_upstream tenants --tenants N --customers M --skus K --port-file FILE`.
//!
//! Routes, below any of the prefixes (`base_url` keeps its path):
//! - `/small/v1/analytics/licenses/usage`: the documented 5-item example
//!   (`tests/fixtures/partner-licenses-usage.json`), byte for byte;
//! - `/distinct/...`: N items, each its own series;
//! - `/repeat/...`: N items cycling over the 5 series of the example, so the
//!   exporter decodes N items but serves a 5-series snapshot;
//! - `/_stats`: requests, send times and gaps per route, and the parse
//!   yardstick, as `key route value...` lines.

use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use partner_center_exporter::simulator::datasets::{Variety, generated_usage};
use partner_center_exporter::simulator::{Answer, Dataset, RequestLog, Simulator};

// Beside this file rather than benches/customers.rs, which cargo would
// take for a bench target of its own.
#[path = "compare_upstream/customers.rs"]
mod customers;
#[path = "compare_upstream/tenants.rs"]
mod tenants;

const FIXTURE: &str = include_str!("../tests/fixtures/partner-licenses-usage.json");
const USAGE_PATH: &str = "/v1/analytics/licenses/usage";
/// Parses of the large body timed for the yardstick; the median is reported.
const PARSE_RUNS: usize = 7;
/// Requests kept in the simulator's record, whose timings and counts
/// `/_stats` reports: every poll of a comparison run fits, many times over.
const RECORD_LIMIT: usize = 200_000;

/// One route: its name (the path prefix) and the body it serves.
struct Route {
    name: &'static str,
    body: Bytes,
}

impl Route {
    fn path(&self) -> String {
        format!("/{}{USAGE_PATH}", self.name)
    }
}

/// Median seconds `serde_json` takes to parse `body` into a `Value`; the
/// value is dropped outside the timed part.
fn parse_value_seconds(body: &[u8]) -> Result<f64, serde_json::Error> {
    let mut runs = Vec::with_capacity(PARSE_RUNS);
    for _ in 0..PARSE_RUNS {
        let started = Instant::now();
        let value: serde_json::Value = serde_json::from_slice(body)?;
        let took = started.elapsed().as_secs_f64();
        drop(std::hint::black_box(value));
        runs.push(took);
    }
    runs.sort_by(f64::total_cmp);
    Ok(runs[runs.len() / 2])
}

/// The `/_stats` page: for each route in name order, its body size, its
/// requests, how long each answer took to hand to the socket, and the gaps
/// from one answer sent to the next request.
fn stats(routes: &[Route], parse_value_seconds: f64, log: &RequestLog) -> String {
    let mut out = format!("parse_value_ms distinct {:.3}\n", parse_value_seconds * 1e3);
    for route in routes {
        let name = route.name;
        let path = route.path();
        out.push_str(&format!("bytes {name} {}\n", route.body.len()));
        // The answers handed to the socket whole: a request counts once
        // its answer has been sent, so a poll under way is not counted yet.
        let answers: Vec<_> = log
            .timings(&path)
            .into_iter()
            .filter_map(|timing| timing.answered_at.map(|sent| (timing.at, sent)))
            .collect();
        out.push_str(&format!("requests {name} {}\n", answers.len()));
        let send: Vec<String> = answers
            .iter()
            .map(|(arrived, sent)| format!("{:.3}", (*sent - *arrived).as_secs_f64() * 1e3))
            .collect();
        out.push_str(&format!("send_ms {name} {}\n", send.join(" ")));
        // From an answer handed to the socket to the next request on
        // the same route: reading the tail, decoding, building the
        // snapshot, rendering it, and starting the next poll.
        let gaps: Vec<String> = answers
            .windows(2)
            .map(|pair| format!("{:.3}", (pair[1].0 - pair[0].1).as_secs_f64() * 1e3))
            .collect();
        out.push_str(&format!("gap_ms {name} {}\n", gaps.join(" ")));
    }
    out
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|arg| arg == name)
        .and_then(|at| args.get(at + 1))
        .cloned()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let served = match args.get(1).map(String::as_str) {
        Some("serve") => serve(&args),
        Some("customers") => serve_customers(&args),
        Some("tenants") => serve_tenants(&args),
        _ => {
            // `cargo bench` runs every bench target; this one is a server.
            println!(
                "compare_upstream: the fake upstream of benches/compare.sh, benches/customers.sh and benches/tenants.sh; run those scripts"
            );
            return ExitCode::SUCCESS;
        }
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("compare_upstream: {err}");
            ExitCode::FAILURE
        }
    }
}

/// A number given as `name N`, or `default` without the flag.
fn number_flag(args: &[String], name: &str, default: usize) -> Result<usize, String> {
    match flag(args, name) {
        Some(value) => value
            .parse()
            .map_err(|_| format!("{name} takes a number, not {value:?}")),
        None => Ok(default),
    }
}

fn serve_customers(args: &[String]) -> Result<(), String> {
    let port_file = flag(args, "--port-file").ok_or("--port-file FILE is required")?;
    customers::serve(
        number_flag(args, "--customers", 5_000)?,
        number_flag(args, "--skus", 8)?,
        &port_file,
    )
}

fn serve_tenants(args: &[String]) -> Result<(), String> {
    let port_file = flag(args, "--port-file").ok_or("--port-file FILE is required")?;
    tenants::serve(
        number_flag(args, "--tenants", 20)?,
        number_flag(args, "--customers", 500)?,
        number_flag(args, "--skus", 4)?,
        &port_file,
    )
}

fn serve(args: &[String]) -> Result<(), String> {
    let items: usize = match flag(args, "--items") {
        Some(items) => items
            .parse()
            .map_err(|_| format!("--items takes a number, not {items:?}"))?,
        None => 100_000,
    };
    let port_file = flag(args, "--port-file").ok_or("--port-file FILE is required")?;

    // In name order: the order of the `/_stats` lines.
    let routes = vec![
        Route {
            name: "distinct",
            body: generated_usage(items, Variety::Distinct).into(),
        },
        Route {
            name: "repeat",
            body: generated_usage(items, Variety::Cycling).into(),
        },
        Route {
            name: "small",
            body: Bytes::from_static(FIXTURE.as_bytes()),
        },
    ];
    let parse_value_seconds = parse_value_seconds(&routes[0].body)
        .map_err(|err| format!("the generated body is not JSON: {err}"))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))?;
    runtime.block_on(async move {
        let mut builder = Simulator::builder().record_limit(RECORD_LIMIT);
        for route in &routes {
            builder = builder.dataset(&route.path(), Dataset::fixed(route.body.clone()));
        }
        let simulator = builder
            .route("/_stats", move |log| {
                Answer::new(200, "text/plain", stats(&routes, parse_value_seconds, log))
            })
            .start()
            .await
            .map_err(|err| format!("cannot listen on 127.0.0.1: {err}"))?;
        let port = simulator.address().port();
        // Written last and renamed into place, so a reader never sees half a port.
        let partial = format!("{port_file}.partial");
        std::fs::write(&partial, format!("{port}\n"))
            .and_then(|()| std::fs::rename(&partial, &port_file))
            .map_err(|err| format!("cannot write {port_file}: {err}"))?;
        // Serves until the script stops it.
        std::future::pending::<()>().await;
        drop(simulator);
        Ok(())
    })
}
