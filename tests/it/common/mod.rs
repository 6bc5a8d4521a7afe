//! What the test areas share: the harness that starts the exporter and
//! scrapes it (`exporter`), the exposition format and promtool
//! (`exposition`), captured logs (`logs`), Prometheus and Alertmanager
//! (`processes`), the request budget as the simulator saw it (`pacing`),
//! wiremock helpers for the tests it reads best in, a
//! throwaway PKI (`web`), and configurations, clients and child
//! processes. The simulated Partner Center the other tests script is the
//! crate's own (`partner_center_exporter::simulator`), as the demo's and
//! the benchmarks' are.

pub mod exporter;
pub mod exposition;
pub mod logs;
pub mod pacing;
pub mod processes;
pub mod web;

use std::future::Future;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use partner_center_exporter::ServerSettings;
use partner_center_exporter::SourceName;
use partner_center_exporter::{AuthConfig, Config, PartnerCenterConfig, PollConfig, SourcesConfig};
use reqwest::Url;

pub use exporter::{ExporterProcess, RunningExporter, Scrape};
pub use exposition::{Exposition, promtool_check_metrics};
pub use logs::CapturedLogs;

/// The token the test exporters send; fake upstreams check for it.
pub const TEST_TOKEN: &str = "test-access-token-5f0e";

/// How long tests wait for something the exporter should do promptly.
pub const WAIT: Duration = Duration::from_secs(10);

/// The documented example response.
pub const FIXTURE: &str = include_str!("../../fixtures/partner-licenses-usage.json");

/// Server settings for tests: `/metrics`, and a grace period short enough
/// that a stuck shutdown fails a test quickly.
pub fn test_server_settings() -> ServerSettings {
    ServerSettings {
        telemetry_path: "/metrics".to_owned(),
        shutdown_grace: Duration::from_secs(5),
        header_read_timeout: partner_center_exporter::DEFAULT_HEADER_READ_TIMEOUT,
        max_requests: partner_center_exporter::DEFAULT_MAX_REQUESTS,
        write_stall_timeout: partner_center_exporter::DEFAULT_WRITE_STALL_TIMEOUT,
        web: None,
    }
}

/// A configuration pointing at `base_url` with a token file in a fresh directory.
pub fn test_config(base_url: &str, interval: Duration) -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TEST_TOKEN}\n")).expect("write token");
    let mut config = Config {
        partner_center: PartnerCenterConfig {
            base_url: Url::parse(base_url).expect("base url"),
            request_timeout: Duration::from_secs(5),
            // Suites that test retrying turn it on; elsewhere one request
            // per page keeps the scripted answers in step.
            max_retries: 0,
            // The suites poll every few milliseconds; the budget has tests
            // of its own.
            max_requests_per_minute: 0,
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
        sources: SourcesConfig::default(),
        customers: Default::default(),
        skus: Default::default(),
        subscriptions: Default::default(),
        state_dir: None,
        tenants: Vec::new(),
    };
    // The suites script the license usage endpoint, request by request;
    // the deployment source is turned on by the tests that are about it.
    config.sources.entry(SourceName::LicenseDeployment).enabled = Some(false);
    (config, dir)
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
