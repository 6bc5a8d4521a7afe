//! The `login` subcommand's device-code flow against a fake Entra ID on
//! 127.0.0.1: pending, slow_down and success; expiry, refusal and the other
//! failures; what is stored in `state_dir`; and the binary's exit codes,
//! output and Ctrl-C. Tests talk to 127.0.0.1 only.
//!
//! Waits are checked through the pauses the flow reports, never by timing,
//! so a loaded machine cannot make them fail.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common;

use common::{ExporterProcess, describe, text};
use partner_center_exporter::Secret;
use partner_center_exporter::login::{self, LoginError, LoginOutcome, LoginPacing, LoginTarget};
use partner_center_exporter::{Config, REFRESH_TOKEN_ENV, SecretEnvironment};
use partner_center_exporter::{EXIT_CONFIG_ERROR, EXIT_INTERRUPTED};
use partner_center_exporter::{RefreshTokenStore, STATE_FILE_NAME};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TENANT: &str = "contoso.onmicrosoft.com";
const CLIENT_ID: &str = "3f2c5e2a-0000-4000-8000-000000000001";
const DEVICE_CODE_PATH: &str = "/contoso.onmicrosoft.com/oauth2/v2.0/devicecode";
const TOKEN_PATH: &str = "/contoso.onmicrosoft.com/oauth2/v2.0/token";
const SCOPE: &str = "https://api.partnercenter.microsoft.com/user_impersonation offline_access";
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

const VERIFICATION_URI: &str = "https://microsoft.com/devicelogin";
const USER_CODE: &str = "FKDWQXZT9";

/// Every credential starts with this, so one search finds a leak of any.
const SECRET_MARK: &str = "SECRET-";
const DEVICE_CODE: &str = "SECRET-DEVICE-CODE-5d1f0c2a";
const REFRESH_TOKEN: &str = "SECRET-REFRESH-TOKEN-9a7e31b4";
const ACCESS_TOKEN: &str = "SECRET-ACCESS-TOKEN-41b27c0d";
const CLIENT_SECRET: &str = "SECRET-CLIENT-SECRET-77c3e1f5";
const CONFIGURED_REFRESH_TOKEN: &str = "SECRET-CONFIGURED-REFRESH-TOKEN-0b8d";

/// Small enough to keep the tests quick; distinct, so each wait tells
/// which rule produced it.
const PACING: LoginPacing = LoginPacing {
    default_interval: Duration::from_millis(40),
    min_interval: Duration::from_millis(10),
    slow_down_increment: Duration::from_millis(30),
};

/// Longest run of a flow in the library tests; each ends far sooner.
const FLOW_LIMIT: Duration = Duration::from_secs(20);

/// Longest wait for a binary that should exit on its own.
const EXIT_LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// The fake Entra ID
// ---------------------------------------------------------------------------

/// The device-code answer; `interval` in seconds (Entra ID sends 5), or none.
fn device_code_answer(expires_in: f64, interval: Option<f64>) -> ResponseTemplate {
    let mut body = serde_json::json!({
        "device_code": DEVICE_CODE,
        "user_code": USER_CODE,
        "verification_uri": VERIFICATION_URI,
        "expires_in": expires_in,
        "message": format!("To sign in, use a web browser to open the page {VERIFICATION_URI} and enter the code {USER_CODE} to authenticate."),
    });
    if let Some(interval) = interval {
        body["interval"] = serde_json::json!(interval);
    }
    ResponseTemplate::new(200).set_body_json(body)
}

/// An OAuth error answer as Entra ID writes them.
fn oauth_error(status: u16, error: &str, code: u32, description: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(serde_json::json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: 0000aaaa-1111-2222-3333-444455556666\r\nTimestamp: 2026-01-01 00:00:00Z"),
        "error_codes": [code],
        "trace_id": "0000aaaa-1111-2222-3333-444455556666",
        "correlation_id": "7777bbbb-8888-9999-aaaa-bbbbccccdddd",
    }))
}

fn pending() -> ResponseTemplate {
    oauth_error(
        400,
        "authorization_pending",
        70016,
        "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
    )
}

fn success(with_refresh_token: bool) -> ResponseTemplate {
    let mut body = serde_json::json!({
        "token_type": "Bearer",
        "scope": SCOPE,
        "expires_in": 4482,
        "access_token": ACCESS_TOKEN,
    });
    if with_refresh_token {
        body["refresh_token"] = serde_json::json!(REFRESH_TOKEN);
    }
    ResponseTemplate::new(200).set_body_json(body)
}

async fn mount_device_code(server: &MockServer, answer: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(DEVICE_CODE_PATH))
        .respond_with(answer)
        .mount(server)
        .await;
}

/// Token answers in order: each one for `times` requests. Mocks of equal
/// priority are tried in the order they were mounted, and a used-up one no
/// longer matches.
async fn mount_token_answers(server: &MockServer, answers: Vec<(ResponseTemplate, u64)>) {
    for (answer, times) in answers {
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(answer)
            .up_to_n_times(times)
            .mount(server)
            .await;
    }
}

/// A form-encoded request body as a map.
fn form(request: &Request) -> HashMap<String, String> {
    form_urlencoded::parse(&request.body)
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

async fn requests_to(server: &MockServer, wanted: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .expect("requests are recorded")
        .into_iter()
        .filter(|request| request.url.path() == wanted)
        .collect()
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// A temporary directory with the secret files and a configuration file.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    /// An App+User configuration against `authority`, with a configured
    /// refresh token if `configured_token` and with `state_dir: state`.
    fn new(authority: &str, configured_token: bool) -> Self {
        let mut yaml = format!(
            "partner_center:\n  request_timeout: 10s\n\
             auth:\n  tenant_id: {TENANT}\n  client_id: {}\n  client_secret_file: client-secret\n  authority: {authority}\n",
            CLIENT_ID.to_ascii_uppercase()
        );
        if configured_token {
            yaml.push_str("  refresh_token_file: refresh-token\n");
        }
        yaml.push_str("state_dir: state\n");
        Self::with_config(&yaml)
    }

    fn with_config(yaml: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("client-secret"),
            format!("{CLIENT_SECRET}\n"),
        )
        .expect("write");
        std::fs::write(
            dir.path().join("refresh-token"),
            format!("{CONFIGURED_REFRESH_TOKEN}\n"),
        )
        .expect("write");
        std::fs::write(dir.path().join("bearer-token"), "access\n").expect("write");
        std::fs::write(dir.path().join("exporter.yml"), yaml).expect("write");
        Self { dir }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("exporter.yml")
    }

    fn config_flag(&self) -> String {
        format!("--config.file={}", self.config_path().display())
    }

    fn config(&self) -> Config {
        Config::load(&self.config_path()).expect("valid configuration")
    }

    fn target(&self) -> LoginTarget {
        LoginTarget::from_config(&self.config()).expect("usable for login")
    }

    fn store(&self) -> RefreshTokenStore {
        RefreshTokenStore::new(self.dir.path().join("state"))
    }

    fn state_file(&self) -> PathBuf {
        self.dir.path().join("state").join(STATE_FILE_NAME)
    }
}

/// Runs the flow and returns its result and everything it printed.
async fn run_login(setup: &Setup) -> (Result<LoginOutcome, LoginError>, String) {
    run_login_cancellable(setup, &CancellationToken::new()).await
}

async fn run_login_cancellable(
    setup: &Setup,
    cancel: &CancellationToken,
) -> (Result<LoginOutcome, LoginError>, String) {
    let mut out = Vec::new();
    // Bounded, so a flow that never stops fails its test instead of hanging it.
    let result = tokio::time::timeout(
        FLOW_LIMIT,
        login::run(&setup.target(), PACING, cancel, &mut out),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the flow did not end within {FLOW_LIMIT:?}; output:\n{}",
            String::from_utf8_lossy(&out)
        )
    });
    (result, String::from_utf8(out).expect("the output is UTF-8"))
}

fn assert_nothing_stored(setup: &Setup) {
    assert!(
        !setup.state_file().exists(),
        "no refresh token may be stored"
    );
    assert_eq!(setup.store().load().expect("loadable"), None);
}

fn assert_no_secret(what: &str, text: &str) {
    assert!(
        !text.contains(SECRET_MARK),
        "{what} shows a credential:\n{text}"
    );
}

// ---------------------------------------------------------------------------
// The flow
// ---------------------------------------------------------------------------

#[tokio::test]
async fn pending_then_slow_down_then_success_stores_the_refresh_token() {
    let entra = MockServer::start().await;
    // 20 ms: Entra ID's interval, in (fractional) seconds.
    mount_device_code(&entra, device_code_answer(900.0, Some(0.02))).await;
    mount_token_answers(
        &entra,
        vec![
            (pending(), 2),
            (
                oauth_error(
                    400,
                    "slow_down",
                    70016,
                    "OAuth 2.0 device flow error. Slow down.",
                ),
                1,
            ),
            (pending(), 1),
            (success(true), 1),
        ],
    )
    .await;
    let setup = Setup::new(&entra.uri(), true);

    let (result, out) = run_login(&setup).await;
    let outcome = result.unwrap_or_else(|err| panic!("login failed: {err}\n{out}"));

    // Entra ID's interval, kept after pending, longer by the increment
    // after slow_down and from then on.
    let interval = Duration::from_millis(20);
    let slower = interval + PACING.slow_down_increment;
    assert_eq!(
        outcome.waits,
        vec![interval, interval, interval, slower, slower]
    );
    assert_eq!(outcome.path, setup.state_file());

    // The instructions, and where the token went; never a credential.
    assert!(out.contains(VERIFICATION_URI), "{out}");
    assert!(out.contains(USER_CODE), "{out}");
    assert!(out.contains("valid for 15 minutes"), "{out}");
    assert!(out.contains("Partner Center admin agent"), "{out}");
    assert!(out.contains("MFA"), "{out}");
    assert!(
        out.contains(&setup.state_file().display().to_string()),
        "{out}"
    );
    assert_no_secret("the output", &out);

    // Stored as a rotation stores it, with the configured token's
    // fingerprint so that the exporter prefers the new token.
    let stored = setup
        .store()
        .load()
        .expect("loadable")
        .expect("a token is stored");
    assert_eq!(stored.refresh_token.expose(), REFRESH_TOKEN);
    assert_eq!(stored.client_id, CLIENT_ID);
    assert_eq!(stored.tenant_id, TENANT);
    assert_eq!(
        stored.seed_fingerprint,
        Some(Secret::new(CONFIGURED_REFRESH_TOKEN).fingerprint())
    );
    assert_eq!(stored.obtained_at, outcome.obtained_at);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(setup.state_file())
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // One device-code request asking for Partner Center and a refresh token.
    let starts = requests_to(&entra, DEVICE_CODE_PATH).await;
    assert_eq!(starts.len(), 1);
    let start = form(&starts[0]);
    assert_eq!(start.get("client_id").map(String::as_str), Some(CLIENT_ID));
    assert_eq!(start.get("scope").map(String::as_str), Some(SCOPE));
    assert!(!start.contains_key("client_secret"), "{start:?}");

    // Five device-code token requests: no more after the success.
    let polls = requests_to(&entra, TOKEN_PATH).await;
    assert_eq!(polls.len(), 5);
    for poll in &polls {
        let poll = form(poll);
        assert_eq!(
            poll.get("grant_type").map(String::as_str),
            Some(DEVICE_CODE_GRANT)
        );
        assert_eq!(poll.get("client_id").map(String::as_str), Some(CLIENT_ID));
        assert_eq!(
            poll.get("device_code").map(String::as_str),
            Some(DEVICE_CODE)
        );
        assert!(
            !poll.contains_key("client_secret"),
            "a public client flow sends no secret: {poll:?}"
        );
    }
    let every_request = entra.received_requests().await.expect("recorded");
    assert_eq!(
        every_request[0].url.path(),
        DEVICE_CODE_PATH,
        "the device code comes first"
    );
}

#[tokio::test]
async fn an_expired_code_ends_the_flow_and_stores_nothing() {
    let entra = MockServer::start().await;
    // An interval of 0 would be a busy loop: the minimum applies.
    mount_device_code(&entra, device_code_answer(900.0, Some(0.0))).await;
    mount_token_answers(
        &entra,
        vec![(
            oauth_error(
                400,
                "expired_token",
                70020,
                "The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
            ),
            1,
        )],
    )
    .await;
    let setup = Setup::new(&entra.uri(), false);

    let (result, out) = run_login(&setup).await;
    let err = result.expect_err("expired");
    assert!(matches!(err, LoginError::SignIn(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("run `partner-center-exporter login` again"),
        "{message}"
    );
    assert!(message.contains("expired"), "{message}");
    assert!(!err.is_config_error());
    assert_no_secret("the error", &message);
    assert_no_secret("the output", &out);
    assert_nothing_stored(&setup);
    assert_eq!(requests_to(&entra, TOKEN_PATH).await.len(), 1);
}

#[tokio::test]
async fn a_declined_sign_in_ends_the_flow_and_stores_nothing() {
    let entra = MockServer::start().await;
    // No interval: the default applies.
    mount_device_code(&entra, device_code_answer(900.0, None)).await;
    mount_token_answers(
        &entra,
        vec![
            (pending(), 1),
            (
                oauth_error(
                    400,
                    "authorization_declined",
                    70019,
                    "The end user denied the authorization request.",
                ),
                1,
            ),
        ],
    )
    .await;
    let setup = Setup::new(&entra.uri(), false);

    let (result, out) = run_login(&setup).await;
    let err = result.expect_err("declined");
    assert!(matches!(err, LoginError::SignIn(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("declined"), "{message}");
    assert!(message.contains("login` again"), "{message}");
    assert_no_secret("the error", &message);
    assert!(out.contains(USER_CODE), "{out}");
    assert_nothing_stored(&setup);
    assert_eq!(
        requests_to(&entra, TOKEN_PATH).await.len(),
        2,
        "no request after the refusal"
    );
}

#[tokio::test]
async fn the_waits_follow_the_default_and_minimum_interval() {
    // Checked through a run that ends at once, so only the first wait counts.
    for (interval, expected) in [
        (None, PACING.default_interval),
        (Some(0.0), PACING.min_interval),
        (Some(0.005), PACING.min_interval),
        (Some(0.05), Duration::from_millis(50)),
    ] {
        let entra = MockServer::start().await;
        mount_device_code(&entra, device_code_answer(900.0, interval)).await;
        mount_token_answers(&entra, vec![(success(true), 1)]).await;
        let setup = Setup::new(&entra.uri(), false);
        let (result, out) = run_login(&setup).await;
        let outcome = result.unwrap_or_else(|err| panic!("{interval:?}: {err}\n{out}"));
        assert_eq!(outcome.waits, vec![expected], "interval {interval:?}");
        let stored = setup.store().load().expect("loadable").expect("stored");
        assert_eq!(
            stored.seed_fingerprint, None,
            "no configured token, no seed"
        );
    }
}

#[tokio::test]
async fn a_grant_without_refresh_token_is_an_error_and_stores_nothing() {
    let entra = MockServer::start().await;
    mount_device_code(&entra, device_code_answer(900.0, Some(0.01))).await;
    mount_token_answers(&entra, vec![(success(false), 1)]).await;
    let setup = Setup::new(&entra.uri(), true);

    let (result, out) = run_login(&setup).await;
    let err = result.expect_err("no refresh token");
    assert!(matches!(err, LoginError::NoRefreshToken { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("offline_access was not granted"),
        "{message}"
    );
    assert_no_secret("the error", &message);
    assert_no_secret("the output", &out);
    assert_nothing_stored(&setup);
}

#[tokio::test]
async fn disabled_public_client_flows_are_explained() {
    let entra = MockServer::start().await;
    mount_device_code(&entra, device_code_answer(900.0, Some(0.01))).await;
    mount_token_answers(
        &entra,
        vec![(
            oauth_error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            ),
            1,
        )],
    )
    .await;
    let setup = Setup::new(&entra.uri(), false);

    let (result, _) = run_login(&setup).await;
    let err = result.expect_err("public client flows disabled");
    let message = err.to_string();
    assert!(message.contains("Allow public client flows"), "{message}");
    assert!(message.contains(CLIENT_ID), "{message}");
    assert_nothing_stored(&setup);
}

#[tokio::test]
async fn a_refused_start_is_an_error_before_any_instruction() {
    let entra = MockServer::start().await;
    mount_device_code(
        &entra,
        oauth_error(
            400,
            "unauthorized_client",
            700016,
            "Application with identifier '3f2c5e2a-0000-4000-8000-000000000001' was not found in the directory 'contoso.onmicrosoft.com'.",
        ),
    )
    .await;
    let setup = Setup::new(&entra.uri(), false);

    let (result, out) = run_login(&setup).await;
    let err = result.expect_err("unknown client");
    assert!(matches!(err, LoginError::Start(_)), "{err:?}");
    assert!(err.to_string().contains("auth.client_id"), "{err}");
    assert!(out.is_empty(), "no instructions without a code: {out}");
    assert!(requests_to(&entra, TOKEN_PATH).await.is_empty());
    assert_nothing_stored(&setup);
}

#[tokio::test]
async fn passing_server_failures_are_retried_at_the_next_interval() {
    let entra = MockServer::start().await;
    mount_device_code(&entra, device_code_answer(900.0, Some(0.01))).await;
    mount_token_answers(
        &entra,
        vec![
            (
                ResponseTemplate::new(503).set_body_string("<html>Service Unavailable</html>"),
                1,
            ),
            (
                oauth_error(
                    500,
                    "temporarily_unavailable",
                    90033,
                    "A transient error has occurred. Please try again.",
                ),
                1,
            ),
            (success(true), 1),
        ],
    )
    .await;
    let setup = Setup::new(&entra.uri(), false);

    let (result, out) = run_login(&setup).await;
    let outcome = result.unwrap_or_else(|err| panic!("{err}\n{out}"));
    assert_eq!(outcome.waits.len(), 3, "{:?}", outcome.waits);
    assert_eq!(
        setup
            .store()
            .load()
            .expect("loadable")
            .expect("stored")
            .refresh_token
            .expose(),
        REFRESH_TOKEN
    );
}

#[tokio::test]
async fn the_flow_stops_when_the_code_runs_out() {
    let entra = MockServer::start().await;
    // Valid for 0.3 s; Entra ID keeps saying pending.
    mount_device_code(&entra, device_code_answer(0.3, Some(0.01))).await;
    mount_token_answers(&entra, vec![(pending(), u64::MAX)]).await;
    let setup = Setup::new(&entra.uri(), false);

    let (result, out) = run_login(&setup).await;
    let err = result.expect_err("expired");
    assert!(matches!(err, LoginError::Expired { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("run `partner-center-exporter login` again"),
        "{err}"
    );
    assert!(out.contains("valid for 0 seconds"), "{out}");
    assert!(
        !requests_to(&entra, TOKEN_PATH).await.is_empty(),
        "it polled until then"
    );
    assert_nothing_stored(&setup);
}

#[tokio::test]
async fn cancelling_stops_the_wait_and_stores_nothing() {
    let entra = MockServer::start().await;
    mount_device_code(&entra, device_code_answer(900.0, Some(0.01))).await;
    mount_token_answers(&entra, vec![(pending(), u64::MAX)]).await;
    let setup = Setup::new(&entra.uri(), false);

    let cancel = CancellationToken::new();
    // Cancels once the flow is polling, as Ctrl-C during the wait would.
    let canceller = {
        let cancel = cancel.clone();
        async move {
            let limit = Instant::now() + Duration::from_secs(20);
            loop {
                let polls = requests_to(&entra, TOKEN_PATH).await.len();
                if polls >= 2 || Instant::now() >= limit {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            cancel.cancel();
        }
    };
    let ((result, out), ()) = tokio::join!(run_login_cancellable(&setup, &cancel), canceller);
    let err = result.expect_err("cancelled");
    assert!(matches!(err, LoginError::Interrupted), "{err:?}");
    assert!(err.to_string().contains("nothing was stored"), "{err}");
    assert!(out.contains(USER_CODE), "{out}");
    assert_nothing_stored(&setup);
}

#[tokio::test]
async fn an_unusable_state_dir_fails_before_the_sign_in() {
    let entra = MockServer::start().await;
    mount_device_code(&entra, device_code_answer(900.0, Some(0.01))).await;
    let setup = Setup::new(&entra.uri(), false);
    // A regular file where the directory should be stops root too.
    std::fs::write(setup.dir.path().join("state"), "not a directory").expect("write");

    let (result, out) = run_login(&setup).await;
    let err = result.expect_err("unusable state_dir");
    assert!(matches!(err, LoginError::StateDir(_)), "{err:?}");
    assert!(err.is_config_error());
    assert!(err.to_string().contains("state"), "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        entra
            .received_requests()
            .await
            .expect("recorded")
            .is_empty(),
        "nobody is asked to sign in when the token could not be stored"
    );
}

// ---------------------------------------------------------------------------
// What login takes from the configuration
// ---------------------------------------------------------------------------

#[test]
fn login_needs_the_app_user_method_and_state_dir() {
    let setup = Setup::new("https://login.microsoftonline.com", true);
    let target = setup.target();
    assert_eq!(target.store.dir(), setup.dir.path().join("state"));
    assert_eq!(target.request_timeout, Duration::from_secs(10));
    assert_eq!(
        target.seed_fingerprint,
        Some(Secret::new(CONFIGURED_REFRESH_TOKEN).fingerprint())
    );

    let yaml = std::fs::read_to_string(setup.config_path()).expect("read");
    let without_state_dir = Setup::with_config(&yaml.replace("state_dir: state\n", ""));
    let err = LoginTarget::from_config(&without_state_dir.config()).expect_err("no state_dir");
    assert_eq!(err.key, "state_dir");

    let bearer = Setup::with_config("auth:\n  bearer_token_file: bearer-token\nstate_dir: state\n");
    let err = LoginTarget::from_config(&bearer.config()).expect_err("bearer token");
    assert_eq!(err.key, "auth");
    assert!(err.message.contains("bearer_token_file"), "{err}");
}

#[test]
fn a_refresh_token_from_the_environment_is_the_seed() {
    let setup = Setup::new("https://login.microsoftonline.com", false);
    let yaml = std::fs::read_to_string(setup.config_path()).expect("read");
    let environment = SecretEnvironment::from_lookup(|name| {
        (name == REFRESH_TOKEN_ENV).then(|| CONFIGURED_REFRESH_TOKEN.to_owned())
    });
    let config = Config::from_yaml_with_environment(&yaml, &setup.config_path(), environment)
        .expect("valid");
    let target = LoginTarget::from_config(&config).expect("usable");
    assert_eq!(
        target.seed_fingerprint,
        Some(Secret::new(CONFIGURED_REFRESH_TOKEN).fingerprint())
    );
}

// ---------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------

/// Runs the binary to its exit, within [`EXIT_LIMIT`].
fn run(args: &[&str]) -> Output {
    ExporterProcess::run_to_exit(None, args, EXIT_LIMIT)
}

#[tokio::test]
async fn the_binary_signs_in_and_stores_the_token() {
    let entra = MockServer::start().await;
    mount_device_code(&entra, device_code_answer(900.0, Some(1.0))).await;
    mount_token_answers(&entra, vec![(success(true), 1)]).await;
    let setup = Setup::new(&entra.uri(), true);

    // `--config.file` before the subcommand: it is a global flag.
    let flag = setup.config_flag();
    let output = tokio::task::spawn_blocking(move || run(&[&flag, "login"]))
        .await
        .expect("runner");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(
        stdout.contains(&format!(
            "open {VERIFICATION_URI} and enter the code {USER_CODE}"
        )),
        "{}",
        describe(&output)
    );
    assert!(
        stdout.contains(&setup.state_file().display().to_string()),
        "{}",
        describe(&output)
    );
    assert_no_secret("stdout", &stdout);
    assert_no_secret("stderr", &stderr);
    for secret in [
        DEVICE_CODE,
        REFRESH_TOKEN,
        ACCESS_TOKEN,
        CLIENT_SECRET,
        CONFIGURED_REFRESH_TOKEN,
    ] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }

    let stored = setup.store().load().expect("loadable").expect("stored");
    assert_eq!(stored.refresh_token.expose(), REFRESH_TOKEN);
    assert_eq!(stored.client_id, CLIENT_ID);
    assert_eq!(stored.tenant_id, TENANT);
    assert_eq!(
        stored.seed_fingerprint,
        Some(Secret::new(CONFIGURED_REFRESH_TOKEN).fingerprint())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(setup.state_file())
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let polls = requests_to(&entra, TOKEN_PATH).await;
    assert_eq!(polls.len(), 1);
    assert_eq!(
        form(&polls[0]).get("device_code").map(String::as_str),
        Some(DEVICE_CODE)
    );
}

#[tokio::test]
async fn the_binary_exits_1_on_a_declined_sign_in() {
    let entra = MockServer::start().await;
    mount_device_code(&entra, device_code_answer(900.0, Some(1.0))).await;
    mount_token_answers(
        &entra,
        vec![(
            oauth_error(
                400,
                "authorization_declined",
                70019,
                "The end user denied the authorization request.",
            ),
            1,
        )],
    )
    .await;
    let setup = Setup::new(&entra.uri(), false);

    let flag = setup.config_flag();
    let output = tokio::task::spawn_blocking(move || run(&["login", &flag]))
        .await
        .expect("runner");
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("level=error"), "{}", describe(&output));
    assert!(stderr.contains("declined"), "{}", describe(&output));
    assert_no_secret("stdout", &text(&output.stdout));
    assert_no_secret("stderr", &stderr);
    assert_nothing_stored(&setup);
}

#[test]
fn the_binary_refuses_login_without_state_dir() {
    let setup = Setup::new("https://login.microsoftonline.com", true);
    let yaml = std::fs::read_to_string(setup.config_path()).expect("read");
    std::fs::write(setup.config_path(), yaml.replace("state_dir: state\n", "")).expect("write");
    let output = run(&["login", &setup.config_flag()]);
    assert_eq!(
        output.status.code(),
        Some(i32::from(EXIT_CONFIG_ERROR)),
        "{}",
        describe(&output)
    );
    let stderr = text(&output.stderr);
    assert!(stderr.contains("level=error"), "{}", describe(&output));
    assert!(stderr.contains("state_dir"), "{}", describe(&output));
    assert!(
        stderr.contains(&setup.config_path().display().to_string()),
        "the file is named: {}",
        describe(&output)
    );
    assert!(output.stdout.is_empty(), "{}", describe(&output));
}

#[test]
fn the_binary_refuses_login_with_a_bearer_token_file() {
    let setup = Setup::with_config("auth:\n  bearer_token_file: bearer-token\nstate_dir: state\n");
    let output = run(&["login", &setup.config_flag()]);
    assert_eq!(
        output.status.code(),
        Some(i32::from(EXIT_CONFIG_ERROR)),
        "{}",
        describe(&output)
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("bearer_token_file"),
        "{}",
        describe(&output)
    );
    assert!(stderr.contains("App+User"), "{}", describe(&output));
    assert!(output.stdout.is_empty(), "{}", describe(&output));
    assert!(
        !setup.dir.path().join("state").exists(),
        "nothing is created"
    );
}

#[test]
fn the_binary_refuses_login_with_an_invalid_config() {
    let setup = Setup::with_config("auth:\n  bearer_token_file: no-such-file\n");
    let output = run(&["login", &setup.config_flag()]);
    assert_eq!(
        output.status.code(),
        Some(i32::from(EXIT_CONFIG_ERROR)),
        "{}",
        describe(&output)
    );
    assert!(
        text(&output.stderr).contains("no-such-file"),
        "{}",
        describe(&output)
    );
}

/// The client of tenant `a` in [`two_tenants`]; `b` has [`CLIENT_ID`].
const CLIENT_ID_A: &str = "3f2c5e2a-0000-4000-8000-00000000000a";

/// Two App+User tenants of the same partner tenant against `authority`,
/// each with an app registration of its own and no refresh token yet.
fn two_tenants(authority: &str) -> Setup {
    Setup::with_config(&format!(
        "state_dir: state\n\
         tenants:\n\
         \x20 - name: a\n\
         \x20   auth:\n      tenant_id: {TENANT}\n      client_id: {CLIENT_ID_A}\n      client_secret_file: client-secret\n      authority: {authority}\n\
         \x20 - name: b\n\
         \x20   auth:\n      tenant_id: {TENANT}\n      client_id: {CLIENT_ID}\n      client_secret_file: client-secret\n      authority: {authority}\n"
    ))
}

fn assert_exit_78_saying(output: &Output, expected: &str) {
    assert_eq!(
        output.status.code(),
        Some(i32::from(EXIT_CONFIG_ERROR)),
        "{}",
        describe(output)
    );
    let stderr = text(&output.stderr);
    assert!(stderr.contains("level=error"), "{}", describe(output));
    assert!(stderr.contains(expected), "{}", describe(output));
    assert!(output.stdout.is_empty(), "{}", describe(output));
}

#[tokio::test]
async fn the_binary_signs_in_the_chosen_tenant_into_its_own_directory() {
    let entra = MockServer::start().await;
    mount_device_code(&entra, device_code_answer(900.0, Some(1.0))).await;
    mount_token_answers(&entra, vec![(success(true), 2)]).await;
    let setup = two_tenants(&entra.uri());
    let state = setup.dir.path().join("state");

    let flag = setup.config_flag();
    let output = tokio::task::spawn_blocking(move || run(&["login", &flag, "--tenant", "b"]))
        .await
        .expect("runner");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = text(&output.stdout);
    let state_file = state.join("b").join(STATE_FILE_NAME);
    assert!(
        stdout.contains(&state_file.display().to_string()),
        "{}",
        describe(&output)
    );
    assert!(
        stdout.contains(
            "Still to sign in: a; run `partner-center-exporter login --tenant NAME` for each."
        ),
        "{}",
        describe(&output)
    );
    assert_no_secret("stdout", &stdout);
    assert_no_secret("stderr", &text(&output.stderr));

    let stored = RefreshTokenStore::new(state.join("b"))
        .load()
        .expect("loadable")
        .expect("stored for b");
    assert_eq!(stored.refresh_token.expose(), REFRESH_TOKEN);
    assert_eq!(stored.client_id, CLIENT_ID, "b's app registration");
    assert_eq!(stored.tenant_id, TENANT);
    assert!(
        !state.join("a").join(STATE_FILE_NAME).exists(),
        "nothing for a"
    );
    assert!(!state.join(STATE_FILE_NAME).exists(), "nothing shared");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &std::path::Path| {
            std::fs::metadata(path)
                .expect("metadata")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(&state_file), 0o600);
        assert_eq!(mode(&state.join("b")), 0o700, "created owner-only");
        assert_eq!(mode(&state), 0o700, "created owner-only");
    }
    let started = requests_to(&entra, DEVICE_CODE_PATH).await;
    assert_eq!(started.len(), 1);
    assert_eq!(
        form(&started[0]).get("client_id").map(String::as_str),
        Some(CLIENT_ID)
    );

    // Signing in the other one leaves none waiting.
    let flag = setup.config_flag();
    let output = tokio::task::spawn_blocking(move || run(&["login", &flag, "--tenant=a"]))
        .await
        .expect("runner");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        text(&output.stdout).contains("Every tenant has a refresh token now."),
        "{}",
        describe(&output)
    );
    let stored = RefreshTokenStore::new(state.join("a"))
        .load()
        .expect("loadable")
        .expect("stored for a");
    assert_eq!(stored.client_id, CLIENT_ID_A);
}

#[test]
fn the_binary_needs_a_tenant_chosen_among_several() {
    let setup = two_tenants("https://login.microsoftonline.com");
    let output = run(&["login", &setup.config_flag()]);
    assert_exit_78_saying(
        &output,
        "several tenants are configured (a, b); choose one with --tenant",
    );
    assert!(
        text(&output.stderr).contains(&setup.config_path().display().to_string()),
        "the file is named: {}",
        describe(&output)
    );
    let output = run(&["login", &setup.config_flag(), "--tenant", "c"]);
    assert_exit_78_saying(
        &output,
        r#"no tenant is named \"c\"; the configured tenants are a, b"#,
    );
    assert!(
        !setup.dir.path().join("state").exists(),
        "nothing is created"
    );

    let single = Setup::new("https://login.microsoftonline.com", false);
    let output = run(&["login", &single.config_flag(), "--tenant", "a"]);
    assert_exit_78_saying(&output, "the configuration file has no tenants");
}

#[test]
fn a_tenant_that_cannot_sign_in_is_named() {
    let setup = Setup::with_config(
        "state_dir: state\ntenants:\n  - name: gov\n    auth:\n      bearer_token_file: bearer-token\n",
    );
    // A list of one needs no --tenant.
    let output = run(&["login", &setup.config_flag()]);
    assert_exit_78_saying(
        &output,
        "tenant gov: auth: login signs in with the App+User method",
    );
}

#[tokio::test]
async fn sigint_interrupts_a_waiting_login() {
    let entra = MockServer::start().await;
    mount_device_code(&entra, device_code_answer(900.0, Some(1.0))).await;
    mount_token_answers(&entra, vec![(pending(), u64::MAX)]).await;
    let setup = Setup::new(&entra.uri(), false);

    let mut login = ExporterProcess::spawn(&["login", &setup.config_flag()]);
    // Wait for the instructions, then interrupt the wait for the sign-in.
    let first = login
        .wait_for_stdout_line("the instructions", EXIT_LIMIT, |_| true)
        .await;
    assert!(first.contains(USER_CODE), "{first}");
    login.signal("-INT");
    let status = login.wait_exit(EXIT_LIMIT).await;
    let (stdout, stderr) = (login.stdout(), login.log_text());
    let state_file = setup.state_file();

    assert_eq!(
        status.code(),
        Some(i32::from(EXIT_INTERRUPTED)),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stderr.contains("nothing was stored"), "{stderr}");
    assert_no_secret("stdout", &stdout);
    assert_no_secret("stderr", &stderr);
    assert!(!state_file.exists(), "nothing is stored");
}
