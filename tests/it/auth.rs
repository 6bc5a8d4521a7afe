//! App+User authentication end to end, against a fake Entra ID token
//! endpoint and a fake Partner Center on 127.0.0.1: the exporter in-process
//! where metrics and request counts tell enough, the built binary where logs,
//! exit codes or a real kill matter.
//!
//! Access tokens cached and renewed before they expire; rotated refresh
//! tokens stored and picked up after a restart, also after a SIGKILL at any
//! moment; a 401 answered by one renewal and one retry; Entra ID's errors
//! turned into advice; concurrent needs sharing one token request; secrets
//! kept out of every output; `state_dir` unset or unusable; secrets from the
//! environment.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::exporter::LISTEN;
use common::{
    ExporterProcess, Exposition, FIXTURE, RunningExporter, Scrape, USAGE_PATH, WAIT, get, wait_for,
};
use partner_center_exporter::Authenticator;
use partner_center_exporter::EXIT_CONFIG_ERROR;
use partner_center_exporter::ExporterMetrics;
use partner_center_exporter::TenantLabel;
use partner_center_exporter::{CLIENT_SECRET_ENV, Config, REFRESH_TOKEN_ENV};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TENANT: &str = "contoso.onmicrosoft.com";
/// Lower case, as the configuration normalises it.
const CLIENT_ID: &str = "3f2c5e2a-7b1d-4c3e-9f00-00000000c11e";
const CLIENT_SECRET: &str = "client-secret-value-8Q~x1";
const PARTNER_CENTER: &str = "https://api.partnercenter.microsoft.com";
const V1_TOKEN_PATH: &str = "/contoso.onmicrosoft.com/oauth2/token";
const V2_TOKEN_PATH: &str = "/contoso.onmicrosoft.com/oauth2/v2.0/token";

const TOKEN_REQUESTS: &str = "partner_center_token_requests_total";
const EXPIRY: &str = "partner_center_access_token_expiry_timestamp_seconds";
const ROTATED: &str = "partner_center_refresh_token_rotated_timestamp_seconds";
const PERSIST_FAILURES: &str = "partner_center_refresh_token_persist_failures_total";
const POLL_ERRORS: &str = "partner_center_poll_errors_total";

/// Longest wait for a log line, an exit or a metric of the binary: generous
/// for a loaded machine, but finite.
const PROCESS_LIMIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Fake Entra ID
// ---------------------------------------------------------------------------

/// A successful token answer in Entra ID's v1 shape.
fn grant(
    access_token: &str,
    refresh_token: Option<&str>,
    expires_in: &serde_json::Value,
) -> ResponseTemplate {
    let mut body = json!({
        "token_type": "Bearer",
        "scope": "user_impersonation",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "resource": PARTNER_CENTER,
        "access_token": access_token,
    });
    if let Some(refresh_token) = refresh_token {
        body["refresh_token"] = json!(refresh_token);
    }
    ResponseTemplate::new(200).set_body_json(body)
}

/// An OAuth error answer in Entra ID's shape: the description's first line
/// is the message, the identifiers follow on lines of their own.
fn entra_error(
    status: u16,
    error: &str,
    code: u32,
    message: &str,
    trace_id: &str,
) -> ResponseTemplate {
    let correlation_id = "5e2d6f7a-0c1b-4e8d-a3f2-77c0de11ab42";
    ResponseTemplate::new(status).set_body_json(json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {message}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: 2026-03-02 10:15:42Z"
        ),
        "error_codes": [code],
        "timestamp": "2026-03-02 10:15:42Z",
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    }))
}

/// One token the fake Entra ID handed out.
#[derive(Debug, Clone)]
struct Issued {
    access_token: String,
    refresh_token: String,
    at: Instant,
    lifetime: Duration,
}

/// A fake Entra ID token endpoint that redeems any refresh token: the N-th
/// request gets access token `at-N` and refresh token `rt-N`.
#[derive(Clone)]
struct Issuer(Arc<IssuerState>);

struct IssuerState {
    expires_in: serde_json::Value,
    delay: Duration,
    issued: Mutex<Vec<Issued>>,
}

impl Issuer {
    fn new(expires_in: serde_json::Value) -> Self {
        Self::with_delay(expires_in, Duration::ZERO)
    }

    fn with_delay(expires_in: serde_json::Value, delay: Duration) -> Self {
        Self(Arc::new(IssuerState {
            expires_in,
            delay,
            issued: Mutex::new(Vec::new()),
        }))
    }

    /// A fake Entra ID answering at `token_path` with this issuer.
    async fn serve(&self, token_path: &str) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(token_path))
            .respond_with(self.clone())
            .mount(&server)
            .await;
        server
    }

    fn issued(&self) -> Vec<Issued> {
        self.0.issued.lock().expect("lock").clone()
    }

    fn has_issued_refresh_token(&self, token: &str) -> bool {
        self.issued()
            .iter()
            .any(|issued| issued.refresh_token == token)
    }

    /// Whether `access_token` was issued and has not expired yet.
    fn is_fresh(&self, access_token: &str) -> bool {
        self.issued().iter().any(|issued| {
            issued.access_token == access_token && issued.at.elapsed() < issued.lifetime
        })
    }
}

impl Respond for Issuer {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let mut issued = self.0.issued.lock().expect("lock");
        let n = issued.len() + 1;
        let token = Issued {
            access_token: format!("at-{n}"),
            refresh_token: format!("rt-{n}"),
            at: Instant::now(),
            lifetime: seconds(&self.0.expires_in),
        };
        let answer = grant(
            &token.access_token,
            Some(&token.refresh_token),
            &self.0.expires_in,
        )
        .set_delay(self.0.delay);
        issued.push(token);
        answer
    }
}

fn seconds(value: &serde_json::Value) -> Duration {
    let seconds = match value {
        serde_json::Value::String(text) => text.parse().expect("numeric expires_in"),
        other => other.as_f64().expect("numeric expires_in"),
    };
    Duration::from_secs_f64(seconds)
}

/// The form fields of a token request.
fn form(request: &Request) -> BTreeMap<String, String> {
    form_urlencoded::parse(&request.body).into_owned().collect()
}

/// A matcher for token requests presenting `refresh_token`.
fn refresh_token_is(expected: &'static str) -> impl Fn(&Request) -> bool + Send + Sync {
    move |request: &Request| {
        form(request).get("refresh_token").map(String::as_str) == Some(expected)
    }
}

/// Every token request the fake Entra ID received, in order.
async fn token_requests(entra: &MockServer) -> Vec<Request> {
    entra
        .received_requests()
        .await
        .expect("recording")
        .into_iter()
        .filter(|request| request.url.path().ends_with("/token"))
        .collect()
}

async fn token_forms(entra: &MockServer) -> Vec<BTreeMap<String, String>> {
    token_requests(entra).await.iter().map(form).collect()
}

// ---------------------------------------------------------------------------
// Fake Partner Center
// ---------------------------------------------------------------------------

/// A fake Partner Center that serves the documented example to every access
/// token `accept` approves and answers 401 to any other.
async fn partner_center(accept: impl Fn(&str) -> bool + Send + Sync + 'static) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .respond_with(move |request: &Request| {
            if accept(&bearer_of(request)) {
                ResponseTemplate::new(200).set_body_raw(FIXTURE, "application/json")
            } else {
                ResponseTemplate::new(401).set_body_json(json!({
                    "code": 401, "description": "Unauthorized", "data": [], "source": "PartnerFD"
                }))
            }
        })
        .mount(&server)
        .await;
    server
}

/// A fake Partner Center giving every request `answer`.
async fn partner_center_answering(answer: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .respond_with(answer)
        .mount(&server)
        .await;
    server
}

fn bearer_of(request: &Request) -> String {
    request
        .headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned()
}

async fn usage_requests(partner_center: &MockServer) -> Vec<Request> {
    partner_center
        .received_requests()
        .await
        .expect("recording")
        .into_iter()
        .filter(|request| request.url.path() == USAGE_PATH)
        .collect()
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// The keys that vary between tests; rendered to a configuration file.
#[derive(Debug, Clone)]
struct Yaml {
    authority: String,
    base_url: String,
    interval: &'static str,
    token_endpoint: &'static str,
    client_secret_file: bool,
    refresh_token_file: bool,
    state_dir: Option<&'static str>,
}

impl Yaml {
    /// One poll per run (the interval never comes round), v1, both files,
    /// `state_dir` next to the configuration.
    fn new(entra: &MockServer, partner_center: &MockServer) -> Self {
        Self {
            authority: entra.uri(),
            base_url: partner_center.uri(),
            interval: "1h",
            token_endpoint: "v1",
            client_secret_file: true,
            refresh_token_file: true,
            state_dir: Some("state"),
        }
    }

    fn render(&self) -> String {
        let mut text = format!(
            "partner_center:\n  base_url: {}\n  request_timeout: 5s\n\
             auth:\n  tenant_id: {TENANT}\n  client_id: {}\n  authority: {}\n  token_endpoint: {}\n",
            self.base_url,
            CLIENT_ID.to_ascii_uppercase(),
            self.authority,
            self.token_endpoint,
        );
        if self.client_secret_file {
            text.push_str("  client_secret_file: client-secret\n");
        }
        if self.refresh_token_file {
            text.push_str("  refresh_token_file: refresh-token\n");
        }
        text.push_str(&format!(
            "poll:\n  interval: {}\n  timeout: 10s\n",
            self.interval
        ));
        if let Some(state_dir) = self.state_dir {
            text.push_str(&format!("state_dir: {state_dir}\n"));
        }
        text
    }
}

/// A directory holding the configuration, the credential files and the
/// state directory, as an operator would lay them out.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new(client_secret: &str, refresh_token: Option<&str>) -> Self {
        let site = Self {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        site.write("client-secret", &format!("{client_secret}\n"));
        if let Some(refresh_token) = refresh_token {
            site.write("refresh-token", &format!("{refresh_token}\n"));
        }
        site
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, content: &str) {
        std::fs::write(self.path(name), content).expect("write");
    }

    /// Writes the configuration file and returns its path.
    fn write_config(&self, yaml: &Yaml) -> PathBuf {
        let path = self.path("exporter.yml");
        std::fs::write(&path, yaml.render()).expect("write config");
        path
    }

    /// Writes the configuration file and loads it (without the process
    /// environment's secrets).
    fn config(&self, yaml: &Yaml) -> Config {
        let path = self.write_config(yaml);
        Config::from_yaml(&yaml.render(), &path).expect("valid configuration")
    }

    fn state_file(&self) -> PathBuf {
        self.path("state/refresh-token.json")
    }

    /// The refresh token in the state file, `None` if there is no state
    /// file. A state file that exists must be complete: JSON of the
    /// documented shape, readable by its owner only.
    fn stored_refresh_token(&self) -> Option<String> {
        let path = self.state_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
            Err(err) => panic!("cannot read {}: {err}", path.display()),
        };
        let state: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("broken state file ({err}):\n{text}"));
        assert_eq!(state["version"], 1, "{text}");
        assert_eq!(state["client_id"], CLIENT_ID, "{text}");
        assert_eq!(state["tenant_id"], TENANT, "{text}");
        chrono::DateTime::parse_from_rfc3339(state["obtained_at"].as_str().expect("obtained_at"))
            .expect("obtained_at is RFC 3339");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "state file mode {mode:o}");
        }
        Some(
            state["refresh_token"]
                .as_str()
                .unwrap_or_else(|| panic!("no refresh_token in {text}"))
                .to_owned(),
        )
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

// ---------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------

/// Starts the binary with `--config.file=config`, `args` and `env` (on top
/// of the harness's environment, without proxies or secrets).
fn start(config: &Path, args: &[&str], env: &[(&str, &str)]) -> ExporterProcess {
    let mut command = ExporterProcess::command(&[&format!("--config.file={}", config.display())]);
    command.args(args).envs(env.iter().copied());
    ExporterProcess::spawn_command(command)
}

/// SIGTERM, as an init system would, and the clean exit.
async fn terminate(exporter: &mut ExporterProcess) {
    exporter.terminate();
    let status = exporter.wait_exit(PROCESS_LIMIT).await;
    assert!(
        status.success(),
        "{status}; stderr:\n{}",
        exporter.log_text()
    );
}

fn token_results(metrics: &Exposition, result: &str) -> f64 {
    metrics
        .value(TOKEN_REQUESTS, &[("result", result)])
        .unwrap_or_else(|| {
            panic!(
                "no {TOKEN_REQUESTS}{{result={result:?}}}:\n{}",
                metrics.text
            )
        })
}

// ---------------------------------------------------------------------------
// 1. Cached, renewed before expiry, v1 and v2 forms
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_access_token_is_cached_across_polls_and_requested_with_the_v1_form() {
    let issuer = Issuer::new(json!("3600"));
    let entra = issuer.serve(V1_TOKEN_PATH).await;
    let check = issuer.clone();
    let upstream = partner_center(move |token| check.is_fresh(token)).await;
    let site = Site::new(CLIENT_SECRET, Some("rt-configured"));
    let mut yaml = Yaml::new(&entra, &upstream);
    yaml.interval = "200ms";
    let exporter = RunningExporter::start_with_any_auth(site.config(&yaml)).await;

    wait_for(WAIT, "four polls", || async {
        usage_requests(&upstream).await.len() >= 4
    })
    .await;
    let metrics = exporter.until_up().await;
    let requests = token_requests(&entra).await;
    assert_eq!(
        requests.len(),
        1,
        "one token serves every poll in its lifetime"
    );
    for usage in usage_requests(&upstream).await {
        assert_eq!(bearer_of(&usage), "at-1");
    }
    assert_eq!(token_results(&metrics, "success"), 1.0);
    let expiry = metrics.value(EXPIRY, &[]).expect("expiry metric");
    let now = unix_now();
    assert!(
        expiry > now + 3500.0 && expiry < now + 3700.0,
        "expiry {expiry} is not about an hour after {now}"
    );

    let request = &requests[0];
    assert_eq!(
        request.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let form = form(request);
    let expected: BTreeMap<String, String> = [
        ("grant_type", "refresh_token"),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
        ("refresh_token", "rt-configured"),
        ("resource", PARTNER_CENTER),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect();
    assert_eq!(form, expected, "the v1 form, with resource and no scope");
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn an_access_token_is_renewed_before_it_expires() {
    // Renewal is due at half the lifetime (3 s): Partner Center refuses any
    // token past its expiry, so a renewal that waited for the expiry (or a
    // 401) would show as refused requests.
    let issuer = Issuer::new(json!("6"));
    let entra = issuer.serve(V1_TOKEN_PATH).await;
    let refused = Arc::new(AtomicU64::new(0));
    let (check, count) = (issuer.clone(), refused.clone());
    let upstream = partner_center(move |token| {
        let fresh = check.is_fresh(token);
        if !fresh {
            count.fetch_add(1, Ordering::SeqCst);
        }
        fresh
    })
    .await;
    let site = Site::new(CLIENT_SECRET, Some("rt-configured"));
    let mut yaml = Yaml::new(&entra, &upstream);
    yaml.interval = "200ms";
    let exporter = RunningExporter::start_with_any_auth(site.config(&yaml)).await;

    // Two renewals, the second one's refresh token stored.
    let stored_number = || {
        site.stored_refresh_token()
            .and_then(|token| token.strip_prefix("rt-")?.parse::<usize>().ok())
            .unwrap_or(0)
    };
    wait_for(PROCESS_LIMIT, "two renewals", || async {
        stored_number() >= 3
    })
    .await;
    let metrics = exporter.until_up().await;
    exporter.stop().await.expect("clean stop");

    assert_eq!(
        refused.load(Ordering::SeqCst),
        0,
        "Partner Center saw an expired access token"
    );
    assert_eq!(
        metrics.value(
            POLL_ERRORS,
            &[("source", "license_usage"), ("reason", "auth")]
        ),
        Some(0.0),
        "{}",
        metrics.text
    );
    let forms = token_forms(&entra).await;
    assert!(forms.len() >= 3, "{forms:?}");
    assert_eq!(forms[0]["refresh_token"], "rt-configured");
    for (n, form) in forms.iter().enumerate().skip(1) {
        assert_eq!(
            form["refresh_token"],
            format!("rt-{n}"),
            "request {} redeems the refresh token rotated by the one before",
            n + 1
        );
    }
    // Each renewal came while the token it replaced was still valid (due
    // after 3 s, so about 3 s to spare), not once it had run out.
    for pair in issuer.issued().windows(2) {
        assert!(
            pair[1].at < pair[0].at + pair[0].lifetime,
            "{} was renewed {:?} after it was issued, past its lifetime",
            pair[0].access_token,
            pair[1].at - pair[0].at
        );
    }
    let usage = usage_requests(&upstream).await;
    let tokens: BTreeSet<String> = usage.iter().map(bearer_of).collect();
    assert!(
        tokens.len() >= 2,
        "polls moved to the renewed token: {tokens:?}"
    );
    // A stop in the middle of a renewal may leave its rotation unstored,
    // never more than that one.
    let issued = issuer.issued().len();
    assert!(
        (issued - 1..=issued).contains(&stored_number()),
        "the newest rotation is stored: {:?} of {issued}",
        site.stored_refresh_token()
    );
}

#[tokio::test]
async fn the_v2_endpoint_is_asked_for_the_partner_center_scope() {
    // expires_in as a JSON number, as the v2 endpoint sends it.
    let issuer = Issuer::new(json!(3600));
    let entra = issuer.serve(V2_TOKEN_PATH).await;
    let upstream = partner_center(|token| token == "at-1").await;
    let site = Site::new(CLIENT_SECRET, Some("rt-configured"));
    let mut yaml = Yaml::new(&entra, &upstream);
    yaml.token_endpoint = "v2";
    let exporter = RunningExporter::start_with_any_auth(site.config(&yaml)).await;
    let metrics = exporter.until_up().await;

    let requests = token_requests(&entra).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].url.path(), V2_TOKEN_PATH);
    let form = form(&requests[0]);
    assert_eq!(
        form.get("scope").map(String::as_str),
        Some("https://api.partnercenter.microsoft.com/user_impersonation offline_access")
    );
    assert!(!form.contains_key("resource"), "{form:?}");
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["client_id"], CLIENT_ID);
    assert_eq!(form["client_secret"], CLIENT_SECRET);
    assert_eq!(form["refresh_token"], "rt-configured");
    let expiry = metrics.value(EXPIRY, &[]).expect("expiry metric");
    let now = unix_now();
    assert!(
        expiry > now + 3500.0 && expiry < now + 3700.0,
        "{expiry} vs {now}"
    );
    exporter.stop().await.expect("clean stop");
}

// ---------------------------------------------------------------------------
// 2. Rotation stored and picked up after a restart
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_rotated_refresh_token_is_stored_and_used_after_a_restart() {
    let entra = MockServer::start().await;
    // Each refresh token is redeemed for the next one; any other is refused.
    for (presented, access, rotated) in [
        ("rt-first", "at-1", "rt-second"),
        ("rt-second", "at-2", "rt-third"),
        ("rt-reconsented", "at-3", "rt-reconsented-2"),
        ("rt-reconsented-2", "at-4", "rt-reconsented-3"),
    ] {
        Mock::given(method("POST"))
            .and(path(V1_TOKEN_PATH))
            .and(refresh_token_is(presented))
            .respond_with(grant(access, Some(rotated), &json!("3599")))
            .mount(&entra)
            .await;
    }
    Mock::given(method("POST"))
        .and(path(V1_TOKEN_PATH))
        .respond_with(entra_error(
            400,
            "invalid_grant",
            70_000,
            "Provided grant is invalid or malformed.",
            "7d2e0c66-0000-4000-8000-000000000001",
        ))
        .with_priority(10)
        .mount(&entra)
        .await;
    let upstream = partner_center(|token| token.starts_with("at-")).await;
    let site = Site::new(CLIENT_SECRET, Some("rt-first"));
    let yaml = Yaml::new(&entra, &upstream);

    // First start: the configured token is redeemed and its successor stored.
    let exporter = RunningExporter::start_with_any_auth(site.config(&yaml)).await;
    let metrics = exporter.until_up().await;
    exporter.stop().await.expect("clean stop");
    assert_eq!(site.stored_refresh_token().as_deref(), Some("rt-second"));
    let rotated_at = metrics.value(ROTATED, &[]).expect("rotation metric");
    let now = unix_now();
    assert!(
        rotated_at > now - 600.0 && rotated_at <= now + 1.0,
        "rotated at {rotated_at}, now {now}"
    );
    assert_eq!(metrics.value(PERSIST_FAILURES, &[]), Some(0.0));
    let state_text = std::fs::read_to_string(site.state_file()).expect("state file");
    assert!(
        !state_text.contains("rt-first"),
        "the configured token is remembered by fingerprint only:\n{state_text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(site.path("state"))
            .expect("state dir")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700, "state_dir mode {mode:o}");
    }

    // Restart with the same configuration: the file still names rt-first,
    // but the stored rt-second is newer.
    let exporter = RunningExporter::start_with_any_auth(site.config(&yaml)).await;
    exporter.until_up().await;
    exporter.stop().await.expect("clean stop");
    let forms = token_forms(&entra).await;
    assert_eq!(forms.len(), 2, "{forms:?}");
    assert_eq!(forms[1]["refresh_token"], "rt-second", "the stored token");
    assert_eq!(site.stored_refresh_token().as_deref(), Some("rt-third"));

    // The operator redid the consent and replaced the configured token: it
    // wins over the stored chain that grew from the old one.
    site.write("refresh-token", "rt-reconsented\n");
    let exporter = RunningExporter::start_with_any_auth(site.config(&yaml)).await;
    exporter.until_up().await;
    exporter.stop().await.expect("clean stop");
    let forms = token_forms(&entra).await;
    assert_eq!(forms.len(), 3, "{forms:?}");
    assert_eq!(
        forms[2]["refresh_token"], "rt-reconsented",
        "the replaced token"
    );
    assert_eq!(
        site.stored_refresh_token().as_deref(),
        Some("rt-reconsented-2")
    );

    // And the chain grown from the replaced token is used after the next restart.
    let exporter = RunningExporter::start_with_any_auth(site.config(&yaml)).await;
    exporter.until_up().await;
    exporter.stop().await.expect("clean stop");
    let forms = token_forms(&entra).await;
    assert_eq!(forms.len(), 4, "{forms:?}");
    assert_eq!(forms[3]["refresh_token"], "rt-reconsented-2");
    assert_eq!(
        site.stored_refresh_token().as_deref(),
        Some("rt-reconsented-3")
    );
}

// ---------------------------------------------------------------------------
// 3. A kill at any moment
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_kill_at_any_moment_leaves_a_complete_state_file_that_the_next_start_uses() {
    // Every token lives 0 s, so every poll (every 10 ms) rotates the refresh
    // token: each run stores a dozen or more before the SIGKILL comes at a
    // different moment. (A writer that truncated the state file in place
    // fails this about every other time; the unit tests of the store stop a
    // save deterministically between each of its steps.)
    const RUNS: u64 = 20;
    let issuer = Issuer::new(json!("0"));
    let entra = issuer.serve(V1_TOKEN_PATH).await;
    let upstream = partner_center(|_| true).await;
    let site = Site::new("client-secret-run-0", Some("rt-seed"));
    let mut yaml = Yaml::new(&entra, &upstream);
    yaml.interval = "10ms";
    let config = site.write_config(&yaml);

    let mut stored_before: Option<String> = None;
    let mut stored_tokens = BTreeSet::new();
    for run in 1..=RUNS {
        // A client secret of its own marks each run's token requests.
        let client_secret = format!("client-secret-run-{run}");
        site.write("client-secret", &client_secret);
        let mut exporter = start(&config, &[LISTEN], &[]);
        let lifetime = Duration::from_millis(100 + (run * 137) % 300);
        tokio::time::sleep(lifetime).await;
        exporter.kill().await;

        let stored = site.stored_refresh_token();
        match &stored {
            Some(token) => {
                assert!(
                    issuer.has_issued_refresh_token(token),
                    "run {run}: the state file holds {token:?}, which Entra ID never issued"
                );
                stored_tokens.insert(token.clone());
            }
            None => assert!(
                stored_before.is_none(),
                "run {run}: the state file vanished; stderr:\n{}",
                exporter.log_text()
            ),
        }
        let forms = token_forms(&entra).await;
        let this_run: Vec<&BTreeMap<String, String>> = forms
            .iter()
            .filter(|form| form["client_secret"] == client_secret)
            .collect();
        match this_run.first() {
            Some(first) => assert_eq!(
                first["refresh_token"],
                stored_before.as_deref().unwrap_or("rt-seed"),
                "run {run} started from the token stored when run {} was killed",
                run - 1
            ),
            None => assert_eq!(
                stored, stored_before,
                "run {run} redeemed nothing, yet the state file changed"
            ),
        }
        for form in &this_run {
            let token = &form["refresh_token"];
            assert!(
                token == "rt-seed" || issuer.has_issued_refresh_token(token),
                "run {run} redeemed {token:?}, which Entra ID never issued"
            );
        }
        stored_before = stored;
    }
    assert!(
        stored_tokens.len() >= 2,
        "the runs should have rotated and stored several tokens: {stored_tokens:?} \
         ({} token requests)",
        issuer.issued().len()
    );
}

// ---------------------------------------------------------------------------
// 4. A 401 from Partner Center
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_401_renews_the_access_token_once_and_retries() {
    let issuer = Issuer::new(json!("3600"));
    let entra = issuer.serve(V1_TOKEN_PATH).await;
    // The first token was revoked; the renewed one works.
    let upstream = partner_center(|token| token == "at-2").await;
    let site = Site::new(CLIENT_SECRET, Some("rt-configured"));
    let exporter =
        RunningExporter::start_with_any_auth(site.config(&Yaml::new(&entra, &upstream))).await;
    let metrics = exporter.until_up().await;
    exporter.stop().await.expect("clean stop");

    assert_eq!(
        metrics.value(
            POLL_ERRORS,
            &[("source", "license_usage"), ("reason", "auth")]
        ),
        Some(0.0)
    );
    let forms = token_forms(&entra).await;
    assert_eq!(forms.len(), 2, "one renewal: {forms:?}");
    assert_eq!(
        forms[1]["refresh_token"], "rt-1",
        "renewed with the rotated token"
    );
    let usage: Vec<String> = usage_requests(&upstream)
        .await
        .iter()
        .map(bearer_of)
        .collect();
    assert_eq!(usage, ["at-1", "at-2"], "one retry, with the renewed token");
}

#[tokio::test]
async fn a_second_401_fails_the_poll_as_auth_without_further_retries() {
    let issuer = Issuer::new(json!("3600"));
    let entra = issuer.serve(V1_TOKEN_PATH).await;
    let upstream = partner_center(|_| false).await;
    let site = Site::new(CLIENT_SECRET, Some("rt-configured"));
    let exporter =
        RunningExporter::start_with_any_auth(site.config(&Yaml::new(&entra, &upstream))).await;
    exporter.until_poll_errors("auth", 1.0).await;
    let page = exporter.landing_page().await;
    exporter.stop().await.expect("clean stop");

    // The failure is recorded after the last request, so these are final.
    assert_eq!(token_requests(&entra).await.len(), 2);
    let usage: Vec<String> = usage_requests(&upstream)
        .await
        .iter()
        .map(bearer_of)
        .collect();
    assert_eq!(usage, ["at-1", "at-2"]);
    assert!(
        page.contains("Partner Center refused the access token (HTTP 401)"),
        "{page}"
    );
}

#[tokio::test]
async fn a_403_is_not_answered_with_a_renewal() {
    let issuer = Issuer::new(json!("3600"));
    let entra = issuer.serve(V1_TOKEN_PATH).await;
    let upstream = partner_center_answering(ResponseTemplate::new(403).set_body_json(json!({
        "code": 403, "description": "The partner is not authorized", "data": [], "source": "PartnerFD"
    })))
    .await;
    let site = Site::new(CLIENT_SECRET, Some("rt-configured"));
    let exporter =
        RunningExporter::start_with_any_auth(site.config(&Yaml::new(&entra, &upstream))).await;
    exporter.until_poll_errors("auth", 1.0).await;
    let page = exporter.landing_page().await;
    exporter.stop().await.expect("clean stop");

    assert_eq!(
        token_requests(&entra).await.len(),
        1,
        "no renewal after 403"
    );
    assert_eq!(
        usage_requests(&upstream).await.len(),
        1,
        "no retry after 403"
    );
    assert!(page.contains("HTTP 403"), "{page}");
}

#[tokio::test]
async fn a_401_for_a_missing_mfa_claim_tells_to_log_in_again() {
    let issuer = Issuer::new(json!("3600"));
    let entra = issuer.serve(V1_TOKEN_PATH).await;
    let upstream = partner_center_answering(ResponseTemplate::new(401).set_body_json(json!({
        "code": 900421,
        "description": "Authentication failed: MFA claim is required for the delegated partner flow",
        "data": [],
        "source": "PartnerFD"
    })))
    .await;
    let site = Site::new(CLIENT_SECRET, Some("rt-configured"));
    let exporter =
        RunningExporter::start_with_any_auth(site.config(&Yaml::new(&entra, &upstream))).await;
    exporter.until_poll_errors("auth", 1.0).await;
    let page = exporter.landing_page().await;
    exporter.stop().await.expect("clean stop");

    assert_eq!(
        token_requests(&entra).await.len(),
        2,
        "the 401 is renewed once"
    );
    assert_eq!(usage_requests(&upstream).await.len(), 2);
    for expected in [
        "code 900421",
        "multi-factor authentication",
        "partner-center-exporter login",
    ] {
        assert!(page.contains(expected), "{expected:?} missing:\n{page}");
    }
}

// ---------------------------------------------------------------------------
// 5. Entra ID's errors, each with its advice
// ---------------------------------------------------------------------------

/// An Entra ID refusal and what the exporter must make of it.
struct Refusal {
    status: u16,
    error: &'static str,
    code: u32,
    message: &'static str,
    /// The `result` label of the token metric.
    result: &'static str,
    /// What the log line must say.
    advice: &'static [&'static str],
}

/// Runs the binary for one poll against an Entra ID that refuses with
/// `refusal` and checks the `poll failed` line and the metrics.
async fn refusal_is_explained(refusal: Refusal) {
    let trace_id = uuid::Uuid::new_v4().to_string();
    let entra = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(V1_TOKEN_PATH))
        .respond_with(entra_error(
            refusal.status,
            refusal.error,
            refusal.code,
            refusal.message,
            &trace_id,
        ))
        .mount(&entra)
        .await;
    let upstream = partner_center(|_| true).await;
    let site = Site::new(CLIENT_SECRET, Some("rt-configured"));
    let config = site.write_config(&Yaml::new(&entra, &upstream));
    let mut exporter = start(&config, &[LISTEN], &[]);
    exporter.listening().await;
    let line = exporter
        .wait_for_line("poll failed", PROCESS_LIMIT, |line| {
            line.contains("poll failed")
        })
        .await;
    assert!(line.contains("level=warn"), "{line}");
    assert!(line.contains("reason=auth"), "{line}");
    for advice in refusal.advice {
        assert!(line.contains(advice), "{advice:?} missing in:\n{line}");
    }
    assert!(
        line.contains(&format!("AADSTS{}", refusal.code)),
        "the AADSTS code is kept:\n{line}"
    );
    assert!(
        line.contains(&format!("trace ID {trace_id}")),
        "the trace ID for Microsoft support:\n{line}"
    );
    // Waits for the failed poll.
    let metrics = exporter
        .scrape_until(PROCESS_LIMIT, |metrics| {
            metrics.value(
                POLL_ERRORS,
                &[("source", "license_usage"), ("reason", "auth")],
            ) == Some(1.0)
        })
        .await;
    assert_eq!(
        token_results(&metrics, refusal.result),
        1.0,
        "{}",
        metrics.text
    );
    assert_eq!(token_results(&metrics, "success"), 0.0);
    assert_eq!(
        metrics.value("partner_center_up", &[("source", "license_usage")]),
        Some(0.0)
    );
    assert!(
        usage_requests(&upstream).await.is_empty(),
        "no token, no request to Partner Center"
    );
    terminate(&mut exporter).await;
}

#[tokio::test]
async fn an_expired_refresh_token_tells_to_log_in() {
    refusal_is_explained(Refusal {
        status: 400,
        error: "invalid_grant",
        code: 700_082,
        message: "The refresh token has expired due to inactivity. The token was issued on \
                  2025-11-01T08:00:00.0000000Z and was inactive for 90.00:00:00.",
        result: "refresh_token_rejected",
        advice: &["refresh token has expired", "partner-center-exporter login"],
    })
    .await;
}

#[tokio::test]
async fn a_wrong_client_secret_says_so() {
    refusal_is_explained(Refusal {
        status: 401,
        error: "invalid_client",
        code: 7_000_215,
        message: "Invalid client secret provided. Ensure the secret being sent in the request is \
                  the client secret value, not the client secret ID, for a secret added to app \
                  '3f2c5e2a-7b1d-4c3e-9f00-00000000c11e'.",
        result: "client_secret_rejected",
        advice: &["client secret", "auth.client_secret_file", CLIENT_ID],
    })
    .await;
}

#[tokio::test]
async fn a_sign_in_without_mfa_tells_to_log_in_with_mfa() {
    refusal_is_explained(Refusal {
        status: 400,
        error: "invalid_grant",
        code: 50_076,
        message: "Due to a configuration change made by your administrator, or because you moved \
                  to a new location, you must use multi-factor authentication to access \
                  'fa3d9a0c-3fb0-42cc-9193-47c7ecd2edbd'.",
        result: "mfa_required",
        advice: &["multi-factor", "partner-center-exporter login"],
    })
    .await;
}

#[tokio::test]
async fn an_unknown_tenant_points_at_tenant_id() {
    refusal_is_explained(Refusal {
        status: 400,
        error: "invalid_request",
        code: 90_002,
        message: "Tenant 'contoso.onmicrosoft.com' not found. Check to make sure you have the \
                  correct tenant ID and are signing into the correct cloud.",
        result: "unknown_tenant",
        advice: &["auth.tenant_id", TENANT],
    })
    .await;
}

#[tokio::test]
async fn an_unknown_client_points_at_client_id() {
    refusal_is_explained(Refusal {
        status: 400,
        error: "unauthorized_client",
        code: 700_016,
        message: "Application with identifier '3f2c5e2a-7b1d-4c3e-9f00-00000000c11e' was not \
                  found in the directory 'Contoso'. This can happen if the application has not \
                  been installed by the administrator of the tenant.",
        result: "unknown_client",
        advice: &["auth.client_id", CLIENT_ID],
    })
    .await;
}

#[tokio::test]
async fn a_transient_entra_failure_is_retried_and_a_refusal_is_not() {
    let entra = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(V1_TOKEN_PATH))
        .respond_with(entra_error(
            503,
            "temporarily_unavailable",
            50_196,
            "The server is temporarily unavailable.",
            "trace-503",
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&entra)
        .await;
    Mock::given(method("POST"))
        .and(path(V1_TOKEN_PATH))
        .respond_with(grant("at-after-retry", Some("rt-2"), &json!(3600)))
        .with_priority(2)
        .mount(&entra)
        .await;
    let site = Site::new(CLIENT_SECRET, Some("rt-configured"));
    let (auth, _metrics) = authenticator(&site, &entra);
    let token = auth.access_token().await.expect("a token after one retry");
    assert_eq!(token.expose(), "at-after-retry");
    assert_eq!(token_requests(&entra).await.len(), 2);

    let refusing = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(V1_TOKEN_PATH))
        .respond_with(entra_error(
            400,
            "invalid_grant",
            700_082,
            "The refresh token has expired due to inactivity.",
            "trace-400",
        ))
        .mount(&refusing)
        .await;
    let (auth, _metrics) = authenticator(&site, &refusing);
    auth.access_token().await.expect_err("refused");
    assert_eq!(
        token_requests(&refusing).await.len(),
        1,
        "a refusal would be refused again: no retry"
    );
}

// ---------------------------------------------------------------------------
// 6. Concurrent needs share one request
// ---------------------------------------------------------------------------

/// An authenticator as the exporter builds it, and its metrics.
fn authenticator(site: &Site, entra: &MockServer) -> (Authenticator, ExporterMetrics) {
    let unused = "http://127.0.0.1:9";
    let mut yaml = Yaml::new(entra, entra);
    yaml.base_url = unused.to_owned();
    let config = site.config(&yaml);
    let metrics = ExporterMetrics::new().expect("metrics");
    let authenticator =
        Authenticator::from_config(&config, &TenantLabel::NONE, &metrics).expect("authenticator");
    (authenticator, metrics)
}

/// Runs `call` from `callers` tasks released at the same moment.
async fn at_once<T, F, Fut>(callers: usize, call: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(callers));
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let barrier = barrier.clone();
            let future = call();
            tokio::spawn(async move {
                barrier.wait().await;
                future.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(callers);
    for task in tasks {
        results.push(task.await.expect("task"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_share_one_token_request() {
    let issuer = Issuer::with_delay(json!("3600"), Duration::from_millis(400));
    let entra = issuer.serve(V1_TOKEN_PATH).await;
    let site = Site::new(CLIENT_SECRET, Some("rt-configured"));
    let (auth, _metrics) = authenticator(&site, &entra);

    let tokens = at_once(10, || {
        let auth = auth.clone();
        async move {
            auth.access_token()
                .await
                .map(|token| token.expose().to_owned())
        }
    })
    .await;
    for token in &tokens {
        assert_eq!(token.as_deref().ok(), Some("at-1"), "{token:?}");
    }
    assert_eq!(
        token_requests(&entra).await.len(),
        1,
        "ten needs, one request"
    );

    // Ten polls refused the same token at once: one renewal for all.
    let rejected = auth.access_token().await.expect("cached token");
    let renewed = at_once(10, || {
        let (auth, rejected) = (auth.clone(), rejected.clone());
        async move {
            auth.renew(&rejected)
                .await
                .map(|token| token.expose().to_owned())
        }
    })
    .await;
    for token in &renewed {
        assert_eq!(token.as_deref().ok(), Some("at-2"), "{token:?}");
    }
    assert_eq!(
        token_requests(&entra).await.len(),
        2,
        "ten renewals, one request"
    );
    assert_eq!(
        auth.access_token().await.expect("cached").expose(),
        "at-2",
        "the renewed token is cached"
    );
    assert_eq!(token_requests(&entra).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_share_one_failed_token_request() {
    let entra = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(V1_TOKEN_PATH))
        .respond_with(
            entra_error(
                400,
                "invalid_grant",
                70_008,
                "The provided authorization code or refresh token has expired due to inactivity.",
                "0a1b2c3d-0000-4000-8000-000000000008",
            )
            .set_delay(Duration::from_millis(400)),
        )
        .mount(&entra)
        .await;
    let site = Site::new(CLIENT_SECRET, Some("rt-configured"));
    let (auth, metrics) = authenticator(&site, &entra);

    let results = at_once(10, || {
        let auth = auth.clone();
        async move { auth.access_token().await.map_err(|err| err.to_string()) }
    })
    .await;
    for result in &results {
        let err = result.as_ref().expect_err("refused");
        assert!(err.contains("partner-center-exporter login"), "{err}");
    }
    assert_eq!(
        token_requests(&entra).await.len(),
        1,
        "ten needs, one request"
    );

    // The failure is shared with those who waited for it, not remembered:
    // the next need asks again.
    auth.access_token().await.expect_err("still refused");
    assert_eq!(token_requests(&entra).await.len(), 2);
    let exposition = Exposition::parse(&String::from_utf8(metrics.render()).expect("UTF-8"));
    assert_eq!(token_results(&exposition, "refresh_token_rejected"), 2.0);
}

// ---------------------------------------------------------------------------
// 7. Secrets never leak
// ---------------------------------------------------------------------------

const SECRET_CLIENT: &str = "SECRET-CLIENT-6d1f0c2b9a8e4f37";
const SECRET_REFRESH_1: &str = "SECRET-REFRESH-0001-a9c3e5d7";
const SECRET_REFRESH_2: &str = "SECRET-REFRESH-0002-b1d4f6a8";
const SECRET_REFRESH_3: &str = "SECRET-REFRESH-0003-c2e5a7b9";
const SECRET_ACCESS_1: &str = "SECRET-ACCESS-0001-eyJ0eXAiOiJKV1Qi";
const SECRET_ACCESS_2: &str = "SECRET-ACCESS-0002-eyJhbGciOiJSUzI1";

fn assert_no_secret(what: &str, text: &str) {
    assert!(
        !text.contains("SECRET-"),
        "a secret appears in {what}:\n{text}"
    );
}

#[tokio::test]
async fn secrets_never_appear_in_logs_pages_or_metrics() {
    // Success with rotation, a 401 and a renewal, another rotation, then an
    // Entra ID refusal whose description echoes the refresh token and the
    // client secret.
    let entra = MockServer::start().await;
    let count = AtomicU64::new(0);
    Mock::given(method("POST"))
        .and(path(V1_TOKEN_PATH))
        .respond_with(move |request: &Request| {
            match count.fetch_add(1, Ordering::SeqCst) {
                0 => grant(SECRET_ACCESS_1, Some(SECRET_REFRESH_2), &json!("3600")),
                1 => grant(SECRET_ACCESS_2, Some(SECRET_REFRESH_3), &json!("1")),
                _ => {
                    let form = form(request);
                    entra_error(
                        400,
                        "invalid_grant",
                        70_000,
                        &format!(
                            "Provided grant is invalid or malformed: refresh token {} for client secret {}",
                            form["refresh_token"], form["client_secret"]
                        ),
                        "4f3e2d1c-0000-4000-8000-0000000000ec",
                    )
                }
            }
        })
        .mount(&entra)
        .await;
    let upstream = partner_center(|token| token == SECRET_ACCESS_2).await;
    let site = Site::new(SECRET_CLIENT, Some(SECRET_REFRESH_1));
    let mut yaml = Yaml::new(&entra, &upstream);
    yaml.interval = "300ms";
    let config = site.write_config(&yaml);
    let mut exporter = start(&config, &[LISTEN, "--log.level=debug"], &[]);
    let address = exporter.listening().await;
    exporter
        .wait_for_line("a successful poll", PROCESS_LIMIT, |line| {
            line.contains("poll succeeded")
        })
        .await;
    let failure = exporter
        .wait_for_line("the refused token request", PROCESS_LIMIT, |line| {
            line.contains("poll failed") && line.contains("invalid_grant")
        })
        .await;
    assert!(
        failure.contains("refresh token [redacted] for client secret [redacted]"),
        "the echoed secrets are cut out, the rest kept:\n{failure}"
    );

    let mut pages = Vec::new();
    for page in ["/metrics", "/", "/readyz", "/healthz"] {
        let body = get(&format!("http://{address}{page}"))
            .await
            .text()
            .await
            .expect("body");
        pages.push((page, body));
    }
    terminate(&mut exporter).await;

    let log = exporter.log_text();
    assert!(
        log.contains("Partner Center refused the access token; renewing it"),
        "the scenario includes a 401:\n{log}"
    );
    assert!(log.contains("level=debug"), "debug logging is on:\n{log}");
    assert_eq!(
        site.stored_refresh_token().as_deref(),
        Some(SECRET_REFRESH_3),
        "the exporter did handle the secrets"
    );
    assert_no_secret("stderr", &log);
    assert_no_secret("stdout", &exporter.stdout());
    for (page, body) in &pages {
        assert_no_secret(page, body);
    }
    let metrics = Exposition::parse(&pages[0].1);
    assert!(
        token_results(&metrics, "success") >= 2.0,
        "{}",
        metrics.text
    );
    assert!(token_results(&metrics, "refresh_token_rejected") >= 1.0);
    assert!(
        pages[1].1.contains("[redacted]"),
        "the landing page shows the cleaned failure:\n{}",
        pages[1].1
    );
    // The access tokens never reached Partner Center other than in the header.
    for request in usage_requests(&upstream).await {
        assert!(
            [SECRET_ACCESS_1, SECRET_ACCESS_2].contains(&bearer_of(&request).as_str()),
            "{request:?}"
        );
    }
}

/// Runs `--config.check` and returns its exit status and output.
async fn config_check(config: &Path, env: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut check = start(config, &["--config.check"], env);
    let status = check.wait_exit(PROCESS_LIMIT).await;
    (status, format!("{}\n{}", check.stdout(), check.log_text()))
}

#[tokio::test]
async fn config_check_never_prints_secrets() {
    let entra = MockServer::start().await;
    let site = Site::new(SECRET_CLIENT, Some(SECRET_REFRESH_1));
    let mut yaml = Yaml::new(&entra, &entra);
    yaml.state_dir = None;
    let config = site.write_config(&yaml);

    let (status, output) = config_check(&config, &[]).await;
    assert!(status.success(), "{status}:\n{output}");
    assert!(output.contains("configuration is valid"), "{output}");
    assert!(output.contains("state_dir is not set"), "{output}");
    assert_no_secret("a passing check", &output);

    // A secret in a file and in the environment at once.
    let (status, output) = config_check(&config, &[(CLIENT_SECRET_ENV, SECRET_CLIENT)]).await;
    assert_eq!(
        status.code(),
        Some(i32::from(EXIT_CONFIG_ERROR)),
        "{output}"
    );
    assert!(output.contains(CLIENT_SECRET_ENV), "{output}");
    assert_no_secret("a refused check", &output);

    // A refresh token file broken by a line break inside the value.
    site.write(
        "refresh-token",
        &format!("{SECRET_REFRESH_1}\n{SECRET_REFRESH_2}\n"),
    );
    let (status, output) = config_check(&config, &[]).await;
    assert_eq!(
        status.code(),
        Some(i32::from(EXIT_CONFIG_ERROR)),
        "{output}"
    );
    assert!(output.contains("auth.refresh_token_file"), "{output}");
    assert_no_secret("a refused check", &output);
}

// ---------------------------------------------------------------------------
// 8. Without a usable state_dir
// ---------------------------------------------------------------------------

/// Runs the binary, rotating on every poll, with `state_dir` set to
/// `yaml_state_dir` (or unset), and checks that it works from memory, counts
/// every rotation as a persist failure and logs `warning` for each.
async fn rotation_without_storage(
    site: &Site,
    yaml_state_dir: Option<&'static str>,
    warning: &str,
) {
    let issuer = Issuer::new(json!("0"));
    let entra = issuer.serve(V1_TOKEN_PATH).await;
    let upstream = partner_center(|_| true).await;
    let mut yaml = Yaml::new(&entra, &upstream);
    yaml.interval = "100ms";
    yaml.state_dir = yaml_state_dir;
    let config = site.write_config(&yaml);
    let mut exporter = start(&config, &[LISTEN], &[]);
    exporter.listening().await;

    // Waits for three rotations, each a persist failure.
    let metrics = exporter
        .scrape_until(PROCESS_LIMIT, |metrics| {
            let rotations = metrics
                .value(TOKEN_REQUESTS, &[("result", "success")])
                .unwrap_or(0.0);
            rotations >= 3.0
                && metrics.value(PERSIST_FAILURES, &[]) == Some(rotations)
                && metrics.value("partner_center_up", &[("source", "license_usage")]) == Some(1.0)
        })
        .await;
    assert_eq!(metrics.value(ROTATED, &[]), Some(0.0), "nothing was stored");
    exporter
        .wait_for_line_count("a warning per rotation", 3, PROCESS_LIMIT, |line| {
            line.contains("level=warn") && line.contains(warning)
        })
        .await;
    terminate(&mut exporter).await;

    // Each token request redeemed the token rotated by the one before:
    // the chain lives on in memory.
    let forms = token_forms(&entra).await;
    assert!(forms.len() >= 3, "{forms:?}");
    assert_eq!(forms[0]["refresh_token"], "rt-configured");
    for (n, form) in forms.iter().enumerate().skip(1) {
        assert_eq!(form["refresh_token"], format!("rt-{n}"));
    }
}

#[tokio::test]
async fn without_state_dir_rotation_works_from_memory_and_every_rotation_is_reported() {
    let site = Site::new(CLIENT_SECRET, Some("rt-configured"));
    rotation_without_storage(
        &site,
        None,
        "state_dir is not set, so the new one lives in memory only",
    )
    .await;
    assert!(!site.path("state").exists());
}

#[tokio::test]
async fn an_unwritable_state_dir_means_memory_only_and_every_rotation_is_reported() {
    // A regular file where a directory is needed stops root too.
    let site = Site::new(CLIENT_SECRET, Some("rt-configured"));
    site.write("occupied", "not a directory\n");
    rotation_without_storage(&site, Some("occupied/state"), "cannot be stored").await;
    assert_eq!(
        std::fs::read_to_string(site.path("occupied")).expect("file"),
        "not a directory\n"
    );
}

#[tokio::test]
async fn an_unwritable_state_dir_is_named_in_a_startup_warning() {
    let issuer = Issuer::new(json!("3600"));
    let entra = issuer.serve(V1_TOKEN_PATH).await;
    let upstream = partner_center(|_| true).await;
    let site = Site::new(CLIENT_SECRET, Some("rt-configured"));
    site.write("occupied", "not a directory\n");
    let mut yaml = Yaml::new(&entra, &upstream);
    yaml.state_dir = Some("occupied/state");
    let config = site.write_config(&yaml);
    let mut exporter = start(&config, &[LISTEN], &[]);
    let line = exporter
        .wait_for_line("the state_dir warning", PROCESS_LIMIT, |line| {
            line.contains("state_dir is not usable")
        })
        .await;
    assert!(line.contains("level=warn"), "{line}");
    assert!(line.contains("occupied"), "the path is named: {line}");
    exporter.listening().await;
    // Waits for a successful poll.
    exporter
        .scrape_until(PROCESS_LIMIT, |metrics| {
            metrics.value("partner_center_up", &[("source", "license_usage")]) == Some(1.0)
        })
        .await;
    terminate(&mut exporter).await;
}

// ---------------------------------------------------------------------------
// 9. No refresh token anywhere
// ---------------------------------------------------------------------------

#[tokio::test]
async fn without_any_refresh_token_the_exporter_exits_78_and_says_to_log_in() {
    let entra = MockServer::start().await;
    let upstream = partner_center(|_| true).await;
    let site = Site::new(CLIENT_SECRET, None);
    std::fs::create_dir(site.path("state")).expect("empty state_dir");
    let mut yaml = Yaml::new(&entra, &upstream);
    yaml.refresh_token_file = false;
    let config = site.write_config(&yaml);
    let mut exporter = start(&config, &[LISTEN], &[]);
    let status = exporter.wait_exit(PROCESS_LIMIT).await;
    let log = exporter.log_text();
    assert_eq!(status.code(), Some(i32::from(EXIT_CONFIG_ERROR)), "{log}");
    let line = log
        .lines()
        .find(|line| line.contains("level=error"))
        .unwrap_or_else(|| panic!("no error line:\n{log}"));
    assert!(line.contains("partner-center-exporter login"), "{line}");
    assert!(
        line.contains("refresh-token.json"),
        "the state file is named: {line}"
    );
    assert!(token_requests(&entra).await.is_empty());
    assert!(usage_requests(&upstream).await.is_empty());
}

// ---------------------------------------------------------------------------
// 10. Secrets from the environment
// ---------------------------------------------------------------------------

#[tokio::test]
async fn secrets_from_the_environment_replace_the_files() {
    const ENV_SECRET: &str = "env-client-secret-3c9f";
    const ENV_REFRESH: &str = "env-refresh-token-71ab";
    let issuer = Issuer::new(json!("3600"));
    let entra = issuer.serve(V1_TOKEN_PATH).await;
    let upstream = partner_center(|token| token.starts_with("at-")).await;
    let site = Site::new("unused", None);
    std::fs::remove_file(site.path("client-secret")).expect("no secret file");
    let mut yaml = Yaml::new(&entra, &upstream);
    yaml.client_secret_file = false;
    yaml.refresh_token_file = false;
    let config = site.write_config(&yaml);
    let env = [
        (CLIENT_SECRET_ENV, ENV_SECRET),
        (REFRESH_TOKEN_ENV, ENV_REFRESH),
    ];

    for run in 0..2 {
        let mut exporter = start(&config, &[LISTEN], &env);
        exporter.listening().await;
        // Waits for a successful poll.
        exporter
            .scrape_until(PROCESS_LIMIT, |metrics| {
                metrics.value("partner_center_up", &[("source", "license_usage")]) == Some(1.0)
            })
            .await;
        terminate(&mut exporter).await;
        let log = exporter.log_text();
        assert!(
            !log.contains(ENV_SECRET) && !log.contains(ENV_REFRESH),
            "{log}"
        );
        let forms = token_forms(&entra).await;
        assert_eq!(forms.len(), run + 1, "{forms:?}");
        assert_eq!(forms[run]["client_secret"], ENV_SECRET);
        // The first run redeems the variable's token; the second, started
        // with the same variable, the one the first stored.
        let expected = if run == 0 { ENV_REFRESH } else { "rt-1" };
        assert_eq!(forms[run]["refresh_token"], expected, "run {run}");
        assert_eq!(site.stored_refresh_token(), Some(format!("rt-{}", run + 1)));
    }
}
