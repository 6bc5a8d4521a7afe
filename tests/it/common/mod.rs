//! Shared helpers for the integration tests: a running exporter on
//! loopback, scraping, a parser for the text exposition format, and promtool.

#![allow(dead_code)] // each test binary uses its own subset

pub mod processes;
pub mod scripted_upstream;
pub mod web;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use partner_center_exporter::app::{self, AppError};
use partner_center_exporter::config::{
    AuthConfig, Config, PartnerCenterConfig, PollConfig, SourceConfig, SourcesConfig,
};
use partner_center_exporter::server::ServerSettings;
use reqwest::Url;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Log lines collected in memory, in logfmt as the exporter writes them.
#[derive(Clone, Default)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

/// Set in the environment of a test's own process (see
/// [`CapturedLogs::in_own_process`]) to the test's name.
const OWN_PROCESS: &str = "PARTNER_CENTER_EXPORTER_TEST_OWN_PROCESS";

impl CapturedLogs {
    /// For a test that reads the exporter's logs; `test` is its name as
    /// libtest knows it (`logging::failures_and_...`). Events of every
    /// exporter in the process reach the one process-wide subscriber, so
    /// such a test runs in a process of its own, where all of them are
    /// its own: in the test binary this runs the test binary again with
    /// only `test`, checks that it passed and returns `None`; in that
    /// process it returns the log.
    ///
    /// Blocks while the other process runs: call it first, before the test
    /// starts anything.
    pub fn in_own_process(test: &str) -> Option<&'static CapturedLogs> {
        match std::env::var(OWN_PROCESS) {
            Ok(running) => {
                assert_eq!(running, test, "a test's own process runs that test only");
                return Some(Self::global());
            }
            Err(std::env::VarError::NotUnicode(value)) => panic!("{OWN_PROCESS}={value:?}"),
            Err(std::env::VarError::NotPresent) => {}
        }
        let binary = std::env::current_exe().expect("the test binary's path");
        let mut child = ChildGuard(
            Command::new(binary)
                .args([test, "--exact", "--test-threads=1", "--nocapture"])
                .env(OWN_PROCESS, test)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run the test binary again"),
        );
        let stdout = read_all(child.0.stdout.take().expect("stdout"));
        let stderr = read_all(child.0.stderr.take().expect("stderr"));
        let status = child.wait_bounded(OWN_PROCESS_LIMIT);
        if status.is_none() {
            let _ = child.0.kill();
        }
        let output = Output {
            status: status.unwrap_or_else(|| child.0.wait().expect("reap")),
            stdout: stdout.join().expect("stdout reader"),
            stderr: stderr.join().expect("stderr reader"),
        };
        // Shown with this test's output (on failure, or with --nocapture).
        println!("{}", describe(&output));
        assert!(
            status.is_some(),
            "{test} did not end within {OWN_PROCESS_LIMIT:?} in its own process"
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains("running 1 test") && stdout.contains("test result: ok. 1 passed"),
            "{test} did not run, or failed, in its own process"
        );
        assert!(output.status.success(), "{test} failed in its own process");
        None
    }

    /// The log of this whole process: every thread's events, from the
    /// first call on. A process-wide subscriber, because tracing caches
    /// per call site whether anyone listens, and with thread-local ones a
    /// test running beside another can miss its own events. Only a test's
    /// own process installs it.
    fn global() -> &'static CapturedLogs {
        static LOGS: std::sync::OnceLock<CapturedLogs> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            use tracing_subscriber::layer::SubscriberExt;
            let logs = CapturedLogs::default();
            let writer = logs.clone();
            let subscriber = tracing_subscriber::registry()
                .with(
                    tracing_logfmt::builder()
                        .layer()
                        .with_writer(move || writer.clone()),
                )
                .with(
                    tracing_subscriber::filter::Targets::new()
                        .with_target("partner_center_exporter", tracing::Level::TRACE),
                );
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in the test binary");
            logs
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }

    /// The first line containing every one of `needles`, or a failure
    /// showing all lines.
    pub fn line_with(&self, needles: &[&str]) -> String {
        let text = self.text();
        text.lines()
            .find(|line| needles.iter().all(|needle| line.contains(needle)))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no log line contains all of {needles:?}:\n{text}"))
    }
}

/// Longest run of a test in a process of its own.
const OWN_PROCESS_LIMIT: Duration = Duration::from_secs(120);

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The token the test exporters send; fake upstreams check for it.
pub const TEST_TOKEN: &str = "test-access-token-5f0e";

/// How long tests wait for something the exporter should do promptly.
pub const WAIT: Duration = Duration::from_secs(10);

/// The documented example response.
pub const FIXTURE: &str = include_str!("../../fixtures/partner-licenses-usage.json");

/// An exporter started in-process on 127.0.0.1 with a random port.
pub struct RunningExporter {
    pub address: SocketAddr,
    pub token_file: PathBuf,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<Result<(), AppError>>>,
    _dir: tempfile::TempDir,
}

/// Server settings for tests: `/metrics`, and a grace period short enough
/// that a stuck shutdown fails a test quickly.
pub fn test_server_settings() -> ServerSettings {
    ServerSettings {
        telemetry_path: "/metrics".to_owned(),
        shutdown_grace: Duration::from_secs(5),
        header_read_timeout: partner_center_exporter::server::DEFAULT_HEADER_READ_TIMEOUT,
        max_requests: partner_center_exporter::server::DEFAULT_MAX_REQUESTS,
        write_stall_timeout: partner_center_exporter::server::DEFAULT_WRITE_STALL_TIMEOUT,
        web: None,
    }
}

/// A configuration pointing at `base_url` with a token file in a fresh directory.
pub fn test_config(base_url: &str, interval: Duration) -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TEST_TOKEN}\n")).expect("write token");
    let config = Config {
        partner_center: PartnerCenterConfig {
            base_url: Url::parse(base_url).expect("base url"),
            request_timeout: Duration::from_secs(5),
            // Suites that test retrying turn it on; elsewhere one request
            // per page keeps the scripted answers in step.
            max_retries: 0,
            ..PartnerCenterConfig::default()
        },
        auth: AuthConfig {
            bearer_token_file: Some(token_file),
            ..AuthConfig::default()
        },
        poll: PollConfig {
            interval,
            timeout: Duration::from_secs(10),
            ..PollConfig::default()
        },
        // The suites script the license usage endpoint, request by request;
        // the deployment source is turned on by the tests that are about it.
        sources: SourcesConfig {
            license_deployment: SourceConfig {
                enabled: false,
                interval: None,
            },
            ..SourcesConfig::default()
        },
        state_dir: None,
    };
    (config, dir)
}

impl RunningExporter {
    /// Starts an exporter polling `base_url` every `interval`.
    pub async fn start(base_url: &str, interval: Duration) -> Self {
        let (config, dir) = test_config(base_url, interval);
        Self::start_with(config, dir).await
    }

    /// Starts an exporter with a prepared configuration.
    pub async fn start_with(config: Config, dir: tempfile::TempDir) -> Self {
        Self::start_with_settings(config, dir, test_server_settings()).await
    }

    /// Starts an exporter with a prepared configuration and server settings.
    pub async fn start_with_settings(
        config: Config,
        dir: tempfile::TempDir,
        settings: ServerSettings,
    ) -> Self {
        let token_file = config.auth.bearer_token_file.clone().expect("token file");
        Self::spawn(config, token_file, dir, settings).await
    }

    /// Starts an exporter with a configuration of any authentication method
    /// (App+User included, which has no token file): `token_file` is the
    /// configured bearer token file if there is one, else empty. Files the
    /// configuration names are the caller's to keep.
    pub async fn start_with_any_auth(config: Config) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let token_file = config.auth.bearer_token_file.clone().unwrap_or_default();
        Self::spawn(config, token_file, dir, test_server_settings()).await
    }

    /// Runs `app::run` on a fresh 127.0.0.1 listener.
    async fn spawn(
        config: Config,
        token_file: PathBuf,
        dir: tempfile::TempDir,
        settings: ServerSettings,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app::run(config, vec![listener], settings, shutdown.clone()));
        Self {
            address,
            token_file,
            shutdown,
            handle: Some(handle),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Scrapes `/metrics` and returns the body, checked by promtool.
    pub async fn scrape(&self) -> String {
        let response = get(&self.url("/metrics")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let body = response.text().await.expect("body");
        promtool_check_metrics(&body);
        body
    }

    /// The landing page's HTML.
    pub async fn landing_page(&self) -> String {
        let response = get(&self.url("/")).await;
        assert_eq!(response.status(), 200);
        response.text().await.expect("landing page")
    }

    /// Waits until a scrape satisfies `condition`, or fails after `limit`.
    pub async fn scrape_until(
        &self,
        limit: Duration,
        condition: impl Fn(&Exposition) -> bool,
    ) -> Exposition {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let exposition = Exposition::parse(&self.scrape().await);
            if condition(&exposition) {
                return exposition;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "condition not met within {limit:?}; last scrape:\n{}",
                exposition.text
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for a scrape showing `partner_center_up 1`.
    pub async fn until_up(&self) -> Exposition {
        self.scrape_until(WAIT, |m| {
            m.value("partner_center_up", &[("source", "license_usage")]) == Some(1.0)
        })
        .await
    }

    /// Waits for a scrape counting at least `count` failed polls for
    /// `reason`, and checks that it shows `partner_center_up 0`.
    pub async fn until_poll_errors(&self, reason: &str, count: f64) -> Exposition {
        let metrics = self
            .scrape_until(WAIT, |m| {
                m.value(
                    "partner_center_poll_errors_total",
                    &[("source", "license_usage"), ("reason", reason)],
                )
                .is_some_and(|errors| errors >= count)
            })
            .await;
        assert_eq!(
            metrics.value("partner_center_up", &[("source", "license_usage")]),
            Some(0.0),
            "up after a {reason} failure"
        );
        metrics
    }

    /// Sends the stop signal and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), AppError> {
        self.shutdown.cancel();
        let handle = self.handle.take().expect("running");
        tokio::time::timeout(Duration::from_secs(15), handle)
            .await
            .expect("exporter stops within 15s")
            .expect("exporter task did not panic")
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

impl Drop for RunningExporter {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An HTTP client for talking to test servers on loopback, deaf to any
/// proxy settings of the machine.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("HTTP client")
}

/// GETs `url` on loopback.
pub async fn get(url: &str) -> reqwest::Response {
    http()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err:?}"))
}

/// One sample line of the text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed `/metrics` body.
#[derive(Debug, Clone)]
pub struct Exposition {
    pub text: String,
    pub samples: Vec<Sample>,
    /// Metric family name → TYPE.
    pub types: BTreeMap<String, String>,
}

impl Exposition {
    /// Parses the text format strictly enough to catch broken escaping and
    /// duplicate series; panics with the offending line otherwise.
    pub fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE line");
                assert!(
                    types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "TYPE twice: {line}"
                );
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            samples.push(parse_sample(line));
        }
        let mut seen = std::collections::HashSet::new();
        for sample in &samples {
            assert!(
                seen.insert((sample.name.clone(), sample.labels.clone())),
                "series emitted twice: {sample:?}"
            );
        }
        Self {
            text: text.to_owned(),
            samples,
            types,
        }
    }

    /// The value of the sample with this name and exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == labels)
            .map(|s| s.value)
    }

    /// All samples of one metric.
    pub fn family(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }
}

fn parse_sample(line: &str) -> Sample {
    let mut chars = line.chars().peekable();
    let mut name = String::new();
    while let Some(&c) = chars.peek() {
        if c == '{' || c == ' ' {
            break;
        }
        name.push(c);
        chars.next();
    }
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name in {line}"
    );
    let mut labels = BTreeMap::new();
    if chars.peek() == Some(&'{') {
        chars.next();
        loop {
            if chars.peek() == Some(&'}') {
                chars.next();
                break;
            }
            let mut label = String::new();
            loop {
                match chars.next() {
                    Some('=') => break,
                    Some(c) => label.push(c),
                    None => panic!("unterminated label name: {line}"),
                }
            }
            assert_eq!(
                chars.next(),
                Some('"'),
                "label value must be quoted: {line}"
            );
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("bad escape {other:?} in {line}"),
                    },
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => panic!("unterminated label value: {line}"),
                }
            }
            assert!(labels.insert(label, value).is_none(), "label twice: {line}");
            match chars.next() {
                Some(',') => {}
                Some('}') => break,
                other => panic!("unexpected {other:?} after a label value: {line}"),
            }
        }
    }
    let rest: String = chars.collect();
    let value_text = rest.trim().split(' ').next().unwrap_or_default();
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        text => text
            .parse()
            .unwrap_or_else(|_| panic!("bad value {text:?} in {line}")),
    };
    Sample {
        name,
        labels,
        value,
    }
}

/// Runs `promtool check metrics` on a scrape. Without promtool the check
/// fails when `CI` is set and is skipped loudly otherwise.
pub fn promtool_check_metrics(body: &str) {
    let Some(promtool) = find_tool("promtool") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is required in CI (Debian package `prometheus`) but was not found"
        );
        eprintln!(
            "WARNING: promtool not found; skipping `promtool check metrics` (install Debian's `prometheus` package)"
        );
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool output");
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- body ---\n{body}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Where `name` is on the `PATH`, if it is installed.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// Polls `condition` until it holds or `limit` passes.
pub async fn wait_for<F, Fut>(limit: Duration, what: &str, condition: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The license usage path of the Partner Center API.
pub const USAGE_PATH: &str = "/v1/analytics/licenses/usage";

/// A fake Partner Center whose usage endpoint gives `first` once and
/// `then` to every later request.
pub async fn upstream_answering_first_then(
    first: wiremock::ResponseTemplate,
    then: wiremock::ResponseTemplate,
) -> wiremock::MockServer {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer};
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .respond_with(first)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .respond_with(then)
        .with_priority(2)
        .mount(&server)
        .await;
    server
}

/// One license usage item in Partner Center's JSON shape.
pub fn item(
    workload: &str,
    service: &str,
    channel: &str,
    percent: f64,
    processed: &str,
) -> serde_json::Value {
    serde_json::json!({
        "proratedLicensesUsagePercent": percent,
        "workloadName": workload,
        "processedDateTime": processed,
        "serviceName": service,
        "channel": channel,
        "attributes": { "objectType": "PartnerLicensesUsageInsights" }
    })
}

/// A v1 collection of `items`, optionally with a `links.next`.
pub fn collection(
    items: Vec<serde_json::Value>,
    next: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut body = serde_json::json!({
        "totalCount": items.len(),
        "items": items,
        "attributes": { "objectType": "Collection" }
    });
    if let Some(next) = next {
        body["links"] = serde_json::json!({ "next": next });
    }
    body
}

/// A child process that is stopped and reaped when dropped, so a failing
/// test leaves nothing running.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            // SIGTERM first, so a demo removes its temporary directory;
            // SIGKILL if it has not stopped within a few seconds.
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            if self.wait_bounded(Duration::from_secs(5)).is_none() {
                let _ = self.0.kill();
            }
        }
        let _ = self.0.wait();
    }
}

impl ChildGuard {
    /// Waits up to `limit` for the process to exit; `None` if it is still running.
    pub fn wait_bounded(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            // No panic here: this also runs inside `drop`.
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn read_all(mut reader: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = reader.read_to_end(&mut bytes);
        bytes
    })
}

/// A process's output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

/// A process's exit status and both streams, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
