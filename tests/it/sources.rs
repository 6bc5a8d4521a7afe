//! The exporter's sources side by side against fake Partner Centers on
//! 127.0.0.1: both on one scrape, one source failing alone, disabled
//! sources sending nothing, the partner tenant's shared throttle, readiness
//! and the landing page per source, and the `sources` section of the
//! configuration as the binary reads it.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use common::{
    ExporterProcess, Exposition, FIXTURE as USAGE_FIXTURE, RunningExporter, Scrape, USAGE_PATH,
    WAIT, describe, get, promtool_check_metrics, test_config, text, wait_for,
};
use partner_center_exporter::Config;
use partner_center_exporter::EXIT_CONFIG_ERROR;
use partner_center_exporter::SourceName;

const DEPLOYMENT_PATH: &str = "/v1/analytics/licenses/deployment";
const DEPLOYMENT_FIXTURE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/partner-licenses-deployment.json"
));

const USAGE_PERCENT: &str = "partner_center_license_usage_prorated_percent";
const USAGE_PROCESSED: &str = "partner_center_license_usage_processed_timestamp_seconds";
const DEPLOYMENT_PERCENT: &str = "partner_center_license_deployment_prorated_percent";
const DEPLOYMENT_SOLD: &str = "partner_center_license_deployment_licenses_sold";
const DEPLOYMENT_PROCESSED: &str = "partner_center_license_deployment_processed_timestamp_seconds";
const UP: &str = "partner_center_up";
const POLL_ERRORS: &str = "partner_center_poll_errors_total";
const POLL_INTERVAL: &str = "partner_center_poll_interval_seconds";

const USAGE: [(&str, &str); 1] = [("source", "license_usage")];
const DEPLOYMENT: [(&str, &str); 1] = [("source", "license_deployment")];

/// An interval that never comes round during a test: one poll only.
const ONCE: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A test configuration polling `base_url` with both sources enabled.
fn both_sources(base_url: &str, interval: Duration) -> (Config, tempfile::TempDir) {
    let (mut config, dir) = test_config(base_url, interval);
    config.sources.entry(SourceName::LicenseUsage).enabled = Some(true);
    config.sources.entry(SourceName::LicenseDeployment).enabled = Some(true);
    (config, dir)
}

/// As [`both_sources`], patient enough that an answer the test holds
/// back never times out however slow the machine.
fn both_sources_patient(base_url: &str, interval: Duration) -> (Config, tempfile::TempDir) {
    let (mut config, dir) = both_sources(base_url, interval);
    config.partner_center.request_timeout = Duration::from_secs(60);
    config.poll.timeout = Duration::from_secs(120);
    (config, dir)
}

fn json_answer(status: u16, body: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.to_owned(), "application/json; charset=utf-8")
}

/// A wiremock Partner Center answering `usage` and `deployment` on the two
/// sources' paths.
async fn upstream(usage: ResponseTemplate, deployment: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .respond_with(usage)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(DEPLOYMENT_PATH))
        .respond_with(deployment)
        .mount(&server)
        .await;
    server
}

/// How many requests `server` received for `request_path`.
async fn requests_to(server: &MockServer, request_path: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|request| request.url.path() == request_path)
        .count()
}

/// `/readyz`: status and body.
async fn readiness(exporter: &RunningExporter) -> (u16, String) {
    let response = get(&exporter.url("/readyz")).await;
    let status = response.status().as_u16();
    (status, response.text().await.expect("readiness body"))
}

/// Every deployment series, as (family, channel, service) → value; fails
/// on a series with labels other than exactly `channel` and `service`.
fn deployment_series(metrics: &Exposition) -> BTreeMap<(String, String, String), f64> {
    metrics
        .samples
        .iter()
        .filter(|sample| {
            sample
                .name
                .starts_with("partner_center_license_deployment_")
        })
        .map(|sample| {
            let names: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
            assert_eq!(names, ["channel", "service"], "labels of {sample:?}");
            (
                (
                    sample.name.clone(),
                    sample.labels["channel"].clone(),
                    sample.labels["service"].clone(),
                ),
                sample.value,
            )
        })
        .collect()
}

/// The deployment series of the documented example, exactly.
fn documented_deployment_series() -> BTreeMap<(String, String, String), f64> {
    [
        (DEPLOYMENT_PERCENT, "crm", 0.0),
        (DEPLOYMENT_PERCENT, "o365", 1.0),
        (DEPLOYMENT_SOLD, "crm", 343.0),
        (DEPLOYMENT_SOLD, "o365", 4464.0),
        // 2017-03-10T00:00:00+00:00 and 2017-03-14T03:25:16.36+00:00
        (DEPLOYMENT_PROCESSED, "crm", 1_489_104_000.0),
        (DEPLOYMENT_PROCESSED, "o365", 1_489_461_916.36),
    ]
    .into_iter()
    .map(|(family, service, value)| {
        (
            (family.to_owned(), "reseller".to_owned(), service.to_owned()),
            value,
        )
    })
    .collect()
}

/// Checks that the documented example's five usage series are served in
/// both usage families, with two of its values.
fn assert_documented_usage(metrics: &Exposition) {
    for family in [USAGE_PERCENT, USAGE_PROCESSED] {
        assert_eq!(
            metrics.family(family).len(),
            5,
            "{family}:\n{}",
            metrics.text
        );
    }
    let exchange = [
        ("channel", "reseller"),
        ("service", "o365"),
        ("workload", "Exchange"),
    ];
    assert_eq!(metrics.value(USAGE_PERCENT, &exchange), Some(0.0));
    // 2017-03-09T00:00:00+00:00
    assert_eq!(
        metrics.value(USAGE_PROCESSED, &exchange),
        Some(1_489_017_600.0)
    );
}

/// Checks that every `partner_center_poll_errors_total` series of
/// `source` is 0, and that there are some.
fn assert_no_poll_errors(metrics: &Exposition, source: &str) {
    let errors: Vec<_> = metrics
        .family(POLL_ERRORS)
        .into_iter()
        .filter(|sample| sample.labels.get("source").map(String::as_str) == Some(source))
        .collect();
    assert!(!errors.is_empty(), "no {POLL_ERRORS} for {source}");
    for sample in errors {
        assert_eq!(sample.value, 0.0, "{sample:?}");
    }
}

/// The landing page's table row of `source`.
fn landing_row<'a>(page: &'a str, source: &str) -> &'a str {
    page.lines()
        .find(|line| line.starts_with(&format!("<tr><td>{source}</td>")))
        .unwrap_or_else(|| panic!("no row for {source}:\n{page}"))
}

// ---------------------------------------------------------------------------
// A fake Partner Center that records arrival times and can hold answers
// ---------------------------------------------------------------------------

/// A request as the fake Partner Center received it.
#[derive(Debug, Clone)]
struct Arrival {
    path: String,
    at: Instant,
}

/// One answer of the fake Partner Center.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static str,
}

impl Answer {
    fn json(status: u16, body: &'static str) -> Self {
        Self {
            status,
            headers: vec![("Content-Type", "application/json; charset=utf-8")],
            body,
        }
    }
}

type Responder = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Answer> + Send>> + Send + Sync>;

/// A hand-written Partner Center on 127.0.0.1: records when each request
/// arrived, before anything else happens to it, and answers it with
/// whatever `respond` makes of its path, in its own time.
struct RecordingUpstream {
    address: SocketAddr,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    stop: CancellationToken,
}

impl RecordingUpstream {
    async fn start<F, Fut>(respond: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Answer> + Send + 'static,
    {
        let respond: Responder = Arc::new(move |path| Box::pin(respond(path)));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("local address");
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (recorded, stopped) = (arrivals.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    () = stopped.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let (recorded, respond) = (recorded.clone(), respond.clone());
                let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                    let path = request.uri().path().to_owned();
                    recorded.lock().expect("arrivals").push(Arrival {
                        path: path.clone(),
                        at: Instant::now(),
                    });
                    let answer = respond(path);
                    async move {
                        let answer = answer.await;
                        let mut response = hyper::Response::builder().status(answer.status);
                        for (name, value) in answer.headers {
                            response = response.header(name, value);
                        }
                        Ok::<_, Infallible>(
                            response
                                .body(Full::new(Bytes::from_static(answer.body.as_bytes())))
                                .expect("a response"),
                        )
                    }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        Self {
            address,
            arrivals,
            stop,
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().expect("arrivals").clone()
    }

    fn count(&self, request_path: &str) -> usize {
        self.arrivals()
            .iter()
            .filter(|arrival| arrival.path == request_path)
            .count()
    }
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

// ---------------------------------------------------------------------------
// Both sources on one scrape
// ---------------------------------------------------------------------------

#[tokio::test]
async fn both_sources_share_one_valid_scrape_with_exactly_the_documented_series() {
    let upstream = upstream(
        json_answer(200, USAGE_FIXTURE),
        json_answer(200, DEPLOYMENT_FIXTURE),
    )
    .await;
    let (config, dir) = both_sources(&upstream.uri(), ONCE);
    let exporter = RunningExporter::start_with(config, dir).await;
    exporter
        .metrics_until(WAIT, "both sources up", |m| {
            m.value(UP, &USAGE) == Some(1.0) && m.value(UP, &DEPLOYMENT) == Some(1.0)
        })
        .await;
    // Both polls are done (one each, an hour apart): this scrape holds
    // everything, and must pass `promtool check metrics`.
    let body = get(&exporter.url("/metrics"))
        .await
        .text()
        .await
        .expect("metrics body");
    promtool_check_metrics(&body);
    let metrics = Exposition::parse(&body);
    assert_eq!(metrics.value(UP, &USAGE), Some(1.0));
    assert_eq!(metrics.value(UP, &DEPLOYMENT), Some(1.0));

    for line in metrics
        .text
        .lines()
        .filter(|line| line.starts_with("# TYPE ") || line.starts_with("# HELP "))
    {
        assert_eq!(
            metrics.text.lines().filter(|other| other == &line).count(),
            1,
            "{line} more than once in\n{}",
            metrics.text
        );
    }
    for family in [DEPLOYMENT_PERCENT, DEPLOYMENT_SOLD, DEPLOYMENT_PROCESSED] {
        assert_eq!(
            metrics.types.get(family).map(String::as_str),
            Some("gauge"),
            "{family}"
        );
    }
    assert_eq!(deployment_series(&metrics), documented_deployment_series());
    assert_documented_usage(&metrics);
    for source in [&USAGE, &DEPLOYMENT] {
        assert_eq!(
            metrics.value("partner_center_items_skipped_total", source),
            Some(0.0)
        );
    }
    assert_eq!(requests_to(&upstream, USAGE_PATH).await, 1);
    assert_eq!(requests_to(&upstream, DEPLOYMENT_PATH).await, 1);
}

// ---------------------------------------------------------------------------
// One source failing
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_failing_source_is_down_alone_and_the_other_is_untouched() {
    let upstream = upstream(
        json_answer(200, USAGE_FIXTURE),
        json_answer(500, r#"{"code":500,"description":"Internal error"}"#),
    )
    .await;
    let (config, dir) = both_sources(&upstream.uri(), ONCE);
    let exporter = RunningExporter::start_with(config, dir).await;
    let metrics = exporter
        .scrape_until(WAIT, |m| {
            m.value(UP, &USAGE) == Some(1.0)
                && m.value(POLL_ERRORS, &[DEPLOYMENT[0], ("reason", "http")])
                    .is_some_and(|errors| errors >= 1.0)
        })
        .await;
    assert_eq!(metrics.value(UP, &DEPLOYMENT), Some(0.0));
    assert_eq!(
        metrics.value(POLL_ERRORS, &[DEPLOYMENT[0], ("reason", "http")]),
        Some(1.0),
        "one poll, no retries"
    );
    assert_no_poll_errors(&metrics, "license_usage");
    assert_documented_usage(&metrics);
    assert!(
        deployment_series(&metrics).is_empty(),
        "a source that never succeeded serves no series:\n{}",
        metrics.text
    );
    assert_eq!(requests_to(&upstream, DEPLOYMENT_PATH).await, 1);

    let (status, body) = readiness(&exporter).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        "ready\nlicense_usage: up, 5 series\nlicense_deployment: down: no poll has succeeded yet\n"
    );
}

#[tokio::test]
async fn a_source_failing_after_a_success_keeps_serving_its_last_series() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .respond_with(json_answer(200, USAGE_FIXTURE))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(DEPLOYMENT_PATH))
        .respond_with(json_answer(200, DEPLOYMENT_FIXTURE))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(DEPLOYMENT_PATH))
        .respond_with(json_answer(500, "{}"))
        .with_priority(2)
        .mount(&server)
        .await;
    let (config, dir) = both_sources(&server.uri(), Duration::from_millis(200));
    let exporter = RunningExporter::start_with(config, dir).await;
    let metrics = exporter
        .scrape_until(WAIT, |m| {
            m.value(POLL_ERRORS, &[DEPLOYMENT[0], ("reason", "http")])
                .is_some_and(|errors| errors >= 1.0)
        })
        .await;
    assert_eq!(metrics.value(UP, &DEPLOYMENT), Some(0.0));
    assert!(
        metrics
            .value("partner_center_last_success_timestamp_seconds", &DEPLOYMENT)
            .is_some_and(|at| at > 0.0),
        "{}",
        metrics.text
    );
    assert_eq!(
        deployment_series(&metrics),
        documented_deployment_series(),
        "the last good series stay served"
    );
    assert_eq!(metrics.value(UP, &USAGE), Some(1.0));
    assert_no_poll_errors(&metrics, "license_usage");
    assert_documented_usage(&metrics);
    assert!(requests_to(&server, DEPLOYMENT_PATH).await >= 2);

    let (status, body) = readiness(&exporter).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(
            "license_deployment: down: the last poll failed; serving 2 series from the last success\n"
        ),
        "{body}"
    );
    let page = exporter.landing_page().await;
    assert!(
        landing_row(&page, "license_deployment").contains("<td>failed: "),
        "{page}"
    );
    assert!(
        landing_row(&page, "license_usage").contains("<td>succeeded, 5 series</td>"),
        "{page}"
    );
}

// ---------------------------------------------------------------------------
// Disabled sources
// ---------------------------------------------------------------------------

/// Polls every 100 ms with only `enabled` on, waits for five of its
/// requests, and checks that `disabled` was never asked for nor shown.
async fn check_only_one_source_polls(enabled: &str, disabled: &str) {
    let upstream = upstream(
        json_answer(200, USAGE_FIXTURE),
        json_answer(200, DEPLOYMENT_FIXTURE),
    )
    .await;
    let (mut config, dir) = test_config(&upstream.uri(), Duration::from_millis(100));
    config.sources.entry(SourceName::LicenseUsage).enabled = Some(enabled == "license_usage");
    config.sources.entry(SourceName::LicenseDeployment).enabled =
        Some(enabled == "license_deployment");
    let (enabled_path, disabled_path) = if enabled == "license_usage" {
        (USAGE_PATH, DEPLOYMENT_PATH)
    } else {
        (DEPLOYMENT_PATH, USAGE_PATH)
    };
    let exporter = RunningExporter::start_with(config, dir).await;
    wait_for(WAIT, &format!("five {enabled} polls"), || async {
        requests_to(&upstream, enabled_path).await >= 5
    })
    .await;
    let source = [("source", enabled)];
    let metrics = exporter
        .scrape_until(WAIT, |m| m.value(UP, &source) == Some(1.0))
        .await;
    assert_eq!(
        requests_to(&upstream, disabled_path).await,
        0,
        "{disabled} is disabled"
    );
    assert!(
        !metrics.text.contains(disabled),
        "nothing of {disabled} is published:\n{}",
        metrics.text
    );
    let sources: BTreeSet<&str> = metrics
        .samples
        .iter()
        .filter_map(|sample| sample.labels.get("source").map(String::as_str))
        .collect();
    assert_eq!(sources, BTreeSet::from([enabled]));

    let (status, body) = readiness(&exporter).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains(disabled), "{body}");
    let page = exporter.landing_page().await;
    landing_row(&page, enabled);
    assert!(!page.contains(disabled), "{page}");
}

#[tokio::test]
async fn a_disabled_deployment_source_sends_no_request_and_publishes_nothing() {
    check_only_one_source_polls("license_usage", "license_deployment").await;
}

#[tokio::test]
async fn a_disabled_usage_source_sends_no_request_and_publishes_nothing() {
    check_only_one_source_polls("license_deployment", "license_usage").await;
}

// ---------------------------------------------------------------------------
// The partner tenant's throttle
// ---------------------------------------------------------------------------

const THROTTLED: &str =
    r#"{"statusCode":429,"message":"Rate limit is exceeded. Try again in 2 seconds."}"#;

#[tokio::test]
async fn a_429_on_one_source_holds_back_every_request_to_the_tenant() {
    // The first usage request is answered 429 only once the first
    // deployment request is in, and that one is answered only once the
    // exporter has taken the 429 in: so no deployment request is on its
    // way when the hold begins, and every later one has to wait it out.
    let first_deployment_in = CancellationToken::new();
    let release_first_deployment = CancellationToken::new();
    let throttled_at = Arc::new(Mutex::new(None::<Instant>));
    let usage_requests = Arc::new(AtomicUsize::new(0));
    let deployment_requests = Arc::new(AtomicUsize::new(0));
    let upstream = {
        let (first_deployment_in, release_first_deployment, throttled_at) = (
            first_deployment_in.clone(),
            release_first_deployment.clone(),
            throttled_at.clone(),
        );
        RecordingUpstream::start(move |request_path| {
            let first_deployment_in = first_deployment_in.clone();
            let release_first_deployment = release_first_deployment.clone();
            let throttled_at = throttled_at.clone();
            let usage_requests = usage_requests.clone();
            let deployment_requests = deployment_requests.clone();
            async move {
                match request_path.as_str() {
                    USAGE_PATH if usage_requests.fetch_add(1, Ordering::SeqCst) == 0 => {
                        first_deployment_in.cancelled().await;
                        *throttled_at.lock().expect("lock") = Some(Instant::now());
                        let mut answer = Answer::json(429, THROTTLED);
                        answer.headers.push(("Retry-After", "2"));
                        answer
                    }
                    USAGE_PATH => Answer::json(200, USAGE_FIXTURE),
                    DEPLOYMENT_PATH => {
                        if deployment_requests.fetch_add(1, Ordering::SeqCst) == 0 {
                            first_deployment_in.cancel();
                            release_first_deployment.cancelled().await;
                        }
                        Answer::json(200, DEPLOYMENT_FIXTURE)
                    }
                    _ => Answer::json(404, "{}"),
                }
            }
        })
        .await
    };
    let interval = Duration::from_millis(200);
    let (config, dir) = both_sources_patient(&upstream.base_url(), interval);
    let exporter = RunningExporter::start_with(config, dir).await;

    // max_retries is 0: the 429 fails the poll as throttled, and the next
    // poll is stretched: doubled for one throttled poll in a row, raised
    // to the Retry-After (2 s), and capped at 8 intervals: 1.6 s.
    let stretched = interval * 8;
    let metrics = exporter
        .metrics_until(WAIT, "the usage poll stretched after its 429", |m| {
            m.value(POLL_INTERVAL, &USAGE) == Some(stretched.as_secs_f64())
        })
        .await;
    assert_eq!(metrics.value(UP, &USAGE), Some(0.0));
    assert_eq!(
        metrics.value(POLL_ERRORS, &[USAGE[0], ("reason", "throttled")]),
        Some(1.0)
    );
    assert_eq!(
        metrics.value(
            "partner_center_request_retries_total",
            &[("reason", "throttled")]
        ),
        Some(0.0)
    );
    // The exporter has taken the 429 in (the hold is set before the poll
    // fails); the first deployment poll may finish now.
    release_first_deployment.cancel();

    let metrics = exporter
        .metrics_until(
            WAIT,
            "both sources up again and usage back on its interval",
            |m| {
                m.value(UP, &USAGE) == Some(1.0)
                    && m.value(UP, &DEPLOYMENT) == Some(1.0)
                    && m.value(POLL_INTERVAL, &USAGE) == Some(interval.as_secs_f64())
            },
        )
        .await;
    assert_eq!(deployment_series(&metrics), documented_deployment_series());
    assert_no_poll_errors(&metrics, "license_deployment");
    wait_for(WAIT, "a deployment request after the first", || async {
        upstream.count(DEPLOYMENT_PATH) >= 2
    })
    .await;

    let throttled_at = throttled_at
        .lock()
        .expect("lock")
        .expect("the 429 was sent");
    let arrivals = upstream.arrivals();
    let timeline: Vec<String> = arrivals
        .iter()
        .map(|arrival| {
            let offset = if arrival.at >= throttled_at {
                format!("+{:?}", arrival.at - throttled_at)
            } else {
                format!("-{:?}", throttled_at - arrival.at)
            };
            format!("{} {offset}", arrival.path)
        })
        .collect();
    let (before, after): (Vec<&Arrival>, Vec<&Arrival>) = arrivals
        .iter()
        .partition(|arrival| arrival.at < throttled_at);
    let before_paths: BTreeSet<&str> = before.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(
        (before.len(), before_paths),
        (2, BTreeSet::from([USAGE_PATH, DEPLOYMENT_PATH])),
        "one request of each source before the 429: {timeline:#?}"
    );
    let first_deployment_after = after
        .iter()
        .find(|arrival| arrival.path == DEPLOYMENT_PATH)
        .unwrap_or_else(|| panic!("no deployment request after the 429: {timeline:#?}"));
    assert!(
        first_deployment_after.at - throttled_at >= Duration::from_millis(1900),
        "a deployment request came within the 429's Retry-After: {timeline:#?}"
    );
    for arrival in &after {
        assert!(
            arrival.at - throttled_at >= Duration::from_millis(1900),
            "{} came within the 429's Retry-After: {timeline:#?}",
            arrival.path
        );
    }
    assert!(
        after.iter().any(|arrival| arrival.path == USAGE_PATH),
        "{timeline:#?}"
    );
}

// ---------------------------------------------------------------------------
// Readiness and the landing page
// ---------------------------------------------------------------------------

#[tokio::test]
async fn readiness_waits_for_every_source_and_names_each() {
    let release_deployment = CancellationToken::new();
    let upstream = {
        let release_deployment = release_deployment.clone();
        RecordingUpstream::start(move |request_path| {
            let release_deployment = release_deployment.clone();
            async move {
                match request_path.as_str() {
                    USAGE_PATH => Answer::json(200, USAGE_FIXTURE),
                    DEPLOYMENT_PATH => {
                        release_deployment.cancelled().await;
                        Answer::json(200, DEPLOYMENT_FIXTURE)
                    }
                    _ => Answer::json(404, "{}"),
                }
            }
        })
        .await
    };
    let (config, dir) = both_sources_patient(&upstream.base_url(), ONCE);
    let exporter = RunningExporter::start_with(config, dir).await;
    exporter.until_up().await;
    wait_for(WAIT, "the deployment request", || async {
        upstream.count(DEPLOYMENT_PATH) == 1
    })
    .await;

    // The deployment answer is held: its first poll has not finished.
    let (status, body) = readiness(&exporter).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        "not ready: waiting until every source has finished its first poll and one has succeeded\n\
         license_usage: up, 5 series\n\
         license_deployment: waiting for the first poll\n"
    );
    let page = exporter.landing_page().await;
    assert!(
        landing_row(&page, "license_usage").contains("<td>succeeded, 5 series</td><td>5</td>"),
        "{page}"
    );
    assert!(
        landing_row(&page, "license_deployment")
            .contains("<td>never</td><td>no poll has finished yet</td><td>0</td><td>never</td>"),
        "{page}"
    );

    release_deployment.cancel();
    let deadline = Instant::now() + WAIT;
    let body = loop {
        let (status, body) = readiness(&exporter).await;
        if status == 200 {
            break body;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            Instant::now() < deadline,
            "not ready within {WAIT:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(
        body,
        "ready\nlicense_usage: up, 5 series\nlicense_deployment: up, 2 series\n"
    );
    let page = exporter.landing_page().await;
    assert!(
        landing_row(&page, "license_deployment").contains("<td>succeeded, 2 series</td><td>2</td>"),
        "{page}"
    );
    assert_eq!(upstream.count(USAGE_PATH), 1);
    assert_eq!(upstream.count(DEPLOYMENT_PATH), 1);
}

// ---------------------------------------------------------------------------
// The `sources` section through the binary
// ---------------------------------------------------------------------------

/// A temporary directory holding a token file and `exporter.yml`.
struct ConfigFile {
    dir: tempfile::TempDir,
}

impl ConfigFile {
    fn new(yaml: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("token"), "access-token\n").expect("write token");
        std::fs::write(dir.path().join("exporter.yml"), yaml).expect("write config");
        Self { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("exporter.yml")
    }

    fn flag(&self) -> String {
        format!("--config.file={}", self.path().display())
    }
}

/// Runs the binary to its exit.
fn run(args: &[&str]) -> Output {
    ExporterProcess::run_to_exit(None, args, Duration::from_secs(20))
}

/// Checks that `yaml` is refused by `--config.check` and at start with
/// exit code 78, the file and every one of `expected` named.
fn assert_refused(yaml: &str, expected: &[&str]) {
    let file = ConfigFile::new(yaml);
    let checked = run(&[&file.flag(), "--config.check"]);
    let started = run(&[&file.flag(), "--web.listen-address=127.0.0.1:0"]);
    for (how, output) in [("--config.check", &checked), ("start", &started)] {
        assert_eq!(
            output.status.code(),
            Some(i32::from(EXIT_CONFIG_ERROR)),
            "{how} of\n{yaml}\n{}",
            describe(output)
        );
        let stderr = text(&output.stderr);
        let error = stderr
            .lines()
            .find(|line| line.starts_with("error: ") || line.contains("level=error"))
            .unwrap_or_else(|| panic!("{how}: no error: {}", describe(output)));
        for needle in expected
            .iter()
            .copied()
            .chain([file.path().to_str().expect("UTF-8 path")])
        {
            assert!(
                error.contains(needle),
                "{how}: the error lacks {needle:?}: {error}"
            );
        }
        assert!(
            !text(&output.stdout).contains("valid"),
            "{how}: {}",
            describe(output)
        );
        assert!(
            !stderr.contains("message=listening"),
            "{how}: nothing may start: {stderr}"
        );
    }
}

#[test]
fn an_unknown_source_name_is_refused_naming_it_and_the_known_ones() {
    assert_refused(
        "auth:\n  bearer_token_file: token\nsources:\n  license_typo:\n    enabled: true\n",
        &["license_typo", "license_usage", "license_deployment"],
    );
}

#[test]
fn an_unknown_key_of_a_source_is_refused_naming_it() {
    assert_refused(
        "auth:\n  bearer_token_file: token\nsources:\n  license_usage:\n    interval: 5m\n    color: red\n",
        &["sources.license_usage", "color"],
    );
}

#[test]
fn a_zero_source_interval_is_refused_naming_the_key() {
    assert_refused(
        "auth:\n  bearer_token_file: token\nsources:\n  license_usage:\n    interval: 0s\n",
        &["sources.license_usage.interval", "longer than 0s"],
    );
}

#[test]
fn disabling_every_source_is_refused() {
    assert_refused(
        "auth:\n  bearer_token_file: token\nsources:\n  license_usage:\n    enabled: false\n  license_deployment:\n    enabled: false\n",
        &["sources", "every source is disabled"],
    );
}

#[test]
fn config_check_lists_each_enabled_source_with_its_interval() {
    let file = ConfigFile::new(
        "auth:\n  bearer_token_file: token\npoll:\n  interval: 15m\nsources:\n  license_usage:\n    interval: 5m\n  license_deployment:\n    enabled: false\n",
    );
    let output = run(&[&file.flag(), "--config.check"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        text(&output.stdout),
        format!(
            "{}: configuration is valid\nsource license_usage: enabled, every 5m\n",
            file.path().display()
        ),
        "{}",
        describe(&output)
    );

    // Only the deployment source, on poll.interval.
    let file = ConfigFile::new(
        "auth:\n  bearer_token_file: token\npoll:\n  interval: 15m\nsources:\n  license_usage:\n    enabled: false\n  license_deployment: {}\n",
    );
    let output = run(&[&file.flag(), "--config.check"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        text(&output.stdout),
        format!(
            "{}: configuration is valid\nsource license_deployment: enabled, every 15m\n",
            file.path().display()
        ),
        "{}",
        describe(&output)
    );

    // Both, in the order of the table of sources, each on its own interval.
    let file = ConfigFile::new(
        "auth:\n  bearer_token_file: token\npoll:\n  interval: 15m\nsources:\n  license_deployment:\n    interval: 1h\n",
    );
    let output = run(&[&file.flag(), "--config.check"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        text(&output.stdout),
        format!(
            "{}: configuration is valid\nsource license_usage: enabled, every 15m\nsource license_deployment: enabled, every 1h\n",
            file.path().display()
        ),
        "{}",
        describe(&output)
    );

    // The per-customer sources are off unless asked for, on intervals of
    // their own, and say what a poll costs.
    let file = ConfigFile::new(
        "auth:\n  bearer_token_file: token\nsources:\n  license_usage:\n    enabled: false\n  customer_licenses:\n    enabled: true\n  customer_usage:\n    enabled: true\n    interval: 12h\n  subscriptions:\n    enabled: true\n",
    );
    let output = run(&[&file.flag(), "--config.check"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        text(&output.stdout),
        format!(
            "{}: configuration is valid\n\
             source license_deployment: enabled, every 15m\n\
             source customer_licenses: enabled, every 1h, the customer listing and one request per covered customer\n\
             source customer_usage: enabled, every 12h, one request per page of the report\n\
             source subscriptions: enabled, every 6h, the customer listing and one request per covered customer, and one SKU lookup per subscription not seen before (kept in state_dir)\n",
            file.path().display()
        ),
        "{}",
        describe(&output)
    );
}

/// The tenant's request budget, every source together: with 120 requests
/// a minute, one every 500 ms, two sources polling every 20 ms send no two
/// requests closer than that, and both get their turns.
#[tokio::test]
async fn the_request_budget_spaces_every_sources_requests_and_is_used() {
    let upstream = partner_center_exporter::simulator::Simulator::builder()
        .dataset(
            USAGE_PATH,
            partner_center_exporter::simulator::Dataset::fixed(USAGE_FIXTURE),
        )
        .dataset(
            DEPLOYMENT_PATH,
            partner_center_exporter::simulator::Dataset::fixed(DEPLOYMENT_FIXTURE),
        )
        .start()
        .await
        .expect("the simulated Partner Center starts");
    let (mut config, dir) = both_sources(upstream.base_url(), Duration::from_millis(20));
    config.partner_center.max_requests_per_minute = 120;
    let exporter = RunningExporter::start_with(config, dir).await;
    let started = Instant::now();
    upstream
        .wait_for_requests(7, WAIT)
        .await
        .expect("the requests arrive");
    let elapsed = started.elapsed();
    exporter.stop().await.expect("clean stop");
    let mut arrivals: Vec<Instant> = upstream
        .received()
        .iter()
        .filter(|request| request.path() == USAGE_PATH || request.path() == DEPLOYMENT_PATH)
        .map(|request| request.at)
        .collect();
    arrivals.sort();
    for pair in arrivals.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        // The budget spaces the requests' starts by 500 ms; their arrival
        // may lag the start by a little, never lead it.
        assert!(
            gap >= Duration::from_millis(450),
            "two requests {gap:?} apart under a budget of one per 500 ms"
        );
    }
    assert!(
        upstream.request_count(USAGE_PATH) >= 2 && upstream.request_count(DEPLOYMENT_PATH) >= 2,
        "both sources share the budget: {:?}",
        upstream.log().counts()
    );
    // Without the budget, polls every 20 ms would have sent these seven
    // within a fraction of a second; with it they take six spacings.
    assert!(
        elapsed >= Duration::from_millis(2900),
        "seven requests in {elapsed:?} under a budget of one per 500 ms"
    );
}
