//! Demo mode: a simulated Partner Center and Entra ID inside the process, so
//! the exporter can be tried without credentials.
//!
//! One HTTP server on 127.0.0.1 plays both services:
//!
//! - Entra ID's v1 token endpoint, `POST /{tenant}/oauth2/token`, for the
//!   refresh-token grant. It checks the client id, client secret, resource
//!   and refresh token, answers with a short-lived access token and a new
//!   refresh token, and from then on accepts only that new refresh token
//!   (strict rotation), so the demo fails unless the exporter really uses
//!   the rotated one. Refusals look like Entra ID's, AADSTS codes included.
//! - Partner Center's license usage endpoint, serving the five series of
//!   Microsoft's documented example, but only to access tokens it issued
//!   that have not expired.
//!
//! The exporter is configured for the App+User method, with a random client
//! secret and first refresh token in a private temporary directory and
//! `state_dir` inside it. So the demo runs the production refresh-token
//! path: the token endpoint client, access token caching and renewal, the
//! rotated refresh token stored in the temporary `state_dir`, and the
//! Partner Center client and decoder. Access tokens live 50 s, so the
//! exporter renews them, and rotates the refresh token, every 30 s.
//!
//! An [`OutageSwitch`] simulates a Partner Center outage: while it is on,
//! the license usage endpoint answers `503` (the token endpoint keeps
//! working), so `partner_center_up`, the poll error counters and the alerts
//! built on them can be watched going bad and recovering. The binary flips
//! it on `SIGUSR1` ([`toggle_outage_on_sigusr1`]).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::f64::consts::TAU;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use reqwest::Url;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{
    AuthConfig, Config, DEFAULT_RESOURCE, PartnerCenterConfig, PollConfig, SourcesConfig,
};
use crate::secret::Secret;

/// The demo polls often so changes show up quickly; the simulation has no rate limit.
pub const DEMO_POLL_INTERVAL: Duration = Duration::from_secs(15);

/// The tenant the simulated Entra ID answers for.
pub const DEMO_TENANT_ID: &str = "demo.onmicrosoft.com";

/// Lifetime of the simulated access tokens. Short, so that rotation shows
/// within a minute: below ten minutes the exporter renews at half-life (see
/// `RENEWAL_MARGIN`), here after 25 s, so with the 15 s poll interval every
/// second poll redeems the refresh token and stores the rotated one in
/// `state_dir`, every 30 s. Exactly half of it would be 30 s, a tie with the
/// poll timer that would let renewals slip to every 45 s at random.
pub const DEMO_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(50);

/// One full swing of a simulated series.
const WAVE_PERIOD_SECONDS: f64 = 600.0;

/// Partner Center's license usage endpoint.
const USAGE_PATH: &str = "/v1/analytics/licenses/usage";

/// The simulated license deployment endpoint.
const DEPLOYMENT_PATH: &str = "/v1/analytics/licenses/deployment";

/// The v1 token endpoint is `/{tenant}` followed by this.
const TOKEN_PATH_SUFFIX: &str = "/oauth2/token";

/// The only body type the token endpoint reads, as with Entra ID.
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Largest token request read; a real one is a few kilobytes.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// A larger body is still read, and thrown away, up to this size, so the
/// client gets its 400 rather than a connection reset by unread data.
/// Beyond it the connection is dropped.
const MAX_DISCARDED_BYTES: usize = 1024 * 1024;

/// Longest wait for a request body, so a stalled client cannot hold a task
/// forever.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Most unexpired access tokens remembered; the oldest are forgotten first.
/// Bounds memory however often tokens are requested.
const MAX_LIVE_ACCESS_TOKENS: usize = 32;

/// The (workload, service, channel) sets of the documented example response.
pub const DEMO_SERIES: [(&str, &str, &str); 5] = [
    ("Microsoft Dynamics CRM", "crm", "reseller"),
    ("SharePoint", "crm", "reseller"),
    ("Exchange", "o365", "reseller"),
    ("SharePoint", "o365", "reseller"),
    ("Skype For Business", "o365", "reseller"),
];

/// The (service, channel, licences sold) of Microsoft's documented license
/// deployment example, which the simulation serves with moving figures.
pub const DEMO_DEPLOYMENT_SERIES: [(&str, &str, u32); 2] =
    [("crm", "reseller", 343), ("o365", "reseller", 4464)];

/// A running simulation and the configuration that points the exporter at it.
pub struct Demo {
    /// The exporter configuration for the simulation: Partner Center's base
    /// URL and Entra ID's authority are both where the simulation listens.
    pub config: Config,
    /// Turns the simulated Partner Center outage on and off.
    pub outage: OutageSwitch,
    /// Holds the credential files and `state_dir`; removed when the demo ends.
    _dir: DemoDir,
}

/// Whether the simulated Partner Center is down. Clones share one switch.
#[derive(Clone, Debug, Default)]
pub struct OutageSwitch(Arc<AtomicBool>);

impl OutageSwitch {
    /// Whether license usage requests are answered `503` now.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Starts the outage if there is none, ends it otherwise, logs which at
    /// `info` (a person flipped it and wants to see that it took), and
    /// returns whether an outage is simulated now.
    pub fn toggle(&self) -> bool {
        // fetch_xor returns the old value: one atomic step, so two toggles
        // at once still leave the switch where it started.
        let on = !self.0.fetch_xor(true, Ordering::AcqRel);
        if on {
            tracing::info!(
                "demo: simulated Partner Center outage started; license usage requests are answered 503 until the next toggle"
            );
        } else {
            tracing::info!(
                "demo: simulated Partner Center outage ended; license usage requests are answered again"
            );
        }
        on
    }
}

/// Installs the `SIGUSR1` handler now and returns the future that toggles
/// `outage` at every `SIGUSR1` until `shutdown` is cancelled. Installed
/// before the exporter starts serving, so a signal sent as soon as it
/// answers toggles the outage rather than killing the process (the default
/// action of `SIGUSR1`).
#[cfg(unix)]
pub fn toggle_outage_on_sigusr1(
    outage: OutageSwitch,
    shutdown: CancellationToken,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut user_defined1 = signal(SignalKind::user_defined1()).map_err(|err| {
        std::io::Error::new(
            err.kind(),
            format!("cannot install the SIGUSR1 handler: {err}"),
        )
    })?;
    Ok(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                received = user_defined1.recv() => {
                    if received.is_none() {
                        return;
                    }
                    outage.toggle();
                }
            }
        }
    })
}

/// Starts the simulated Partner Center and Entra ID on 127.0.0.1 (a free
/// port) until `shutdown` is cancelled.
pub async fn start(shutdown: CancellationToken) -> std::io::Result<Demo> {
    // Created first, so that a failure further on removes it again.
    let dir = DemoDir::create()?;
    let client_id = uuid::Uuid::new_v4().to_string();
    let client_secret = Secret::new(random_token("demo-secret"));
    let refresh_token = Secret::new(random_token("demo-rt"));
    let client_secret_file = dir.write_secret("client-secret", &client_secret)?;
    let refresh_token_file = dir.write_secret("refresh-token", &refresh_token)?;

    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let address = listener.local_addr()?;
    let base_url = Url::parse(&format!("http://{address}"))
        .map_err(|err| std::io::Error::other(err.to_string()))?;
    let outage = OutageSwitch::default();
    let simulation = Arc::new(Simulation::new(
        client_id.clone(),
        client_secret,
        refresh_token,
        outage.clone(),
    ));
    tokio::spawn(serve(listener, simulation, shutdown));

    let config = Config {
        partner_center: PartnerCenterConfig {
            base_url: base_url.clone(),
            request_timeout: Duration::from_secs(5),
            ..PartnerCenterConfig::default()
        },
        auth: AuthConfig {
            tenant_id: Some(DEMO_TENANT_ID.to_owned()),
            client_id: Some(client_id),
            client_secret_file: Some(client_secret_file),
            refresh_token_file: Some(refresh_token_file),
            authority: Some(base_url),
            ..AuthConfig::default()
        },
        poll: PollConfig {
            interval: DEMO_POLL_INTERVAL,
            timeout: Duration::from_secs(10),
            ..PollConfig::default()
        },
        // Every source, on the demo's interval.
        sources: SourcesConfig::default(),
        // Not created here: the exporter prepares it, as in production.
        state_dir: Some(dir.path().join("state")),
    };
    Ok(Demo {
        config,
        outage,
        _dir: dir,
    })
}

/// A random credential value: printable ASCII, as Entra ID's are, with 244
/// random bits.
fn random_token(prefix: &str) -> String {
    format!(
        "{prefix}.{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

async fn serve(listener: TcpListener, simulation: Arc<Simulation>, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "the demo server cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let simulation = simulation.clone();
        let service = hyper::service::service_fn(move |request| {
            let simulation = simulation.clone();
            async move { Ok::<_, Infallible>(simulation.respond(request).await) }
        });
        tokio::spawn(async move {
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %err, "a demo server connection ended with an error");
            }
        });
    }
}

/// The simulated services' credentials and the tokens issued so far.
struct Simulation {
    client_id: String,
    client_secret: Secret,
    tokens: Mutex<IssuedTokens>,
    outage: OutageSwitch,
}

struct IssuedTokens {
    /// The only refresh token accepted: the one issued last.
    refresh_token: Secret,
    /// Access tokens issued and when each expires, oldest first.
    access_tokens: VecDeque<(Secret, Instant)>,
}

/// A token request's parameters; those Entra ID does not need are ignored.
#[derive(Default)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    resource: Option<String>,
}

impl TokenRequest {
    /// Reads a form body. Invalid UTF-8 and percent-escapes are decoded
    /// leniently, as `form_urlencoded` does; a parameter given twice is the
    /// error, named, since Entra ID refuses that too.
    fn parse(body: &[u8]) -> Result<Self, &'static str> {
        let mut request = Self::default();
        for (name, value) in form_urlencoded::parse(body) {
            let (name, slot) = match name.as_ref() {
                "grant_type" => ("grant_type", &mut request.grant_type),
                "client_id" => ("client_id", &mut request.client_id),
                "client_secret" => ("client_secret", &mut request.client_secret),
                "refresh_token" => ("refresh_token", &mut request.refresh_token),
                "resource" => ("resource", &mut request.resource),
                _ => continue,
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(name);
            }
        }
        Ok(request)
    }
}

impl Simulation {
    fn new(
        client_id: String,
        client_secret: Secret,
        refresh_token: Secret,
        outage: OutageSwitch,
    ) -> Self {
        Self {
            client_id,
            client_secret,
            tokens: Mutex::new(IssuedTokens {
                refresh_token,
                access_tokens: VecDeque::new(),
            }),
            outage,
        }
    }

    fn tokens(&self) -> MutexGuard<'_, IssuedTokens> {
        // Nothing panics while the lock is held; should that ever change,
        // the token lists are still consistent, so the demo carries on.
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn respond(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        if path == USAGE_PATH {
            return self.partner_center(&request, Instant::now(), SystemTime::now(), usage_body);
        }
        if path == DEPLOYMENT_PATH {
            return self.partner_center(
                &request,
                Instant::now(),
                SystemTime::now(),
                deployment_body,
            );
        }
        let tenant = path
            .strip_prefix('/')
            .and_then(|rest| rest.strip_suffix(TOKEN_PATH_SUFFIX))
            .filter(|tenant| !tenant.is_empty() && !tenant.contains('/'))
            .map(str::to_owned);
        match tenant {
            Some(tenant) => {
                let mut response = self.token_endpoint(&tenant, request).await;
                // As Entra ID does: token answers must never be cached.
                let headers = response.headers_mut();
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
                response
            }
            None => json(
                StatusCode::NOT_FOUND,
                r#"{"code":404,"description":"Not found","source":"demo"}"#.to_owned(),
            ),
        }
    }

    /// A license analytics endpoint serving `body`, for holders of an
    /// unexpired issued access token, unless an outage is simulated.
    fn partner_center(
        &self,
        request: &Request<Incoming>,
        now: Instant,
        wall_now: SystemTime,
        body: fn(SystemTime) -> serde_json::Value,
    ) -> Response<Full<Bytes>> {
        // Checked first, as an outage at Partner Center's front door
        // answers before anything looks at the request.
        if self.outage.is_on() {
            return json(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"code":503,"description":"Service Unavailable (simulated outage)","source":"demo"}"#
                    .to_owned(),
            );
        }
        if request.method() != Method::GET {
            return json(
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"code":405,"description":"Method not allowed","source":"demo"}"#.to_owned(),
            );
        }
        let token = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        if !token.is_some_and(|token| self.access_token_is_valid(token, now)) {
            return json(
                StatusCode::UNAUTHORIZED,
                r#"{"code":401,"description":"Unauthorized","source":"demo"}"#.to_owned(),
            );
        }
        json(StatusCode::OK, body(wall_now).to_string())
    }

    fn access_token_is_valid(&self, token: &str, now: Instant) -> bool {
        self.tokens()
            .access_tokens
            .iter()
            .any(|(issued, expires_at)| issued.expose() == token && now < *expires_at)
    }

    /// Entra ID's v1 token endpoint for `tenant`.
    async fn token_endpoint(
        &self,
        tenant: &str,
        request: Request<Incoming>,
    ) -> Response<Full<Bytes>> {
        if request.method() != Method::POST {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                Some(900_561),
                "The endpoint only accepts POST requests.",
            );
        }
        // Entra ID reads anything but a form as a form without parameters.
        let is_form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case(FORM_CONTENT_TYPE));
        // Read before anything is refused, so the connection stays usable.
        let body = match read_capped(request.into_body()).await {
            Ok(body) => body,
            Err(reason) => {
                tracing::debug!(reason, "demo Entra ID refused an unreadable token request");
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    None,
                    "The request body could not be read or is too large.",
                );
            }
        };
        if !tenant.eq_ignore_ascii_case(DEMO_TENANT_ID) {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                Some(90_002),
                "Tenant not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.",
            );
        }
        let form = if is_form {
            match TokenRequest::parse(&body) {
                Ok(form) => form,
                Err(duplicated) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        Some(9_000_411),
                        &format!(
                            "The request is not properly formatted. The parameter '{duplicated}' is duplicated."
                        ),
                    );
                }
            }
        } else {
            TokenRequest::default()
        };
        self.redeem(&form, Instant::now(), SystemTime::now())
    }

    /// Checks a refresh-token grant and, if it holds, rotates the refresh
    /// token and issues an access token.
    fn redeem(
        &self,
        form: &TokenRequest,
        now: Instant,
        wall_now: SystemTime,
    ) -> Response<Full<Bytes>> {
        let missing = |name: &str| {
            oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                Some(900_144),
                &format!("The request body must contain the following parameter: '{name}'."),
            )
        };
        let Some(grant_type) = &form.grant_type else {
            return missing("grant_type");
        };
        if grant_type != "refresh_token" {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                Some(70_003),
                "The app requested an unsupported grant type.",
            );
        }
        let Some(client_id) = &form.client_id else {
            return missing("client_id");
        };
        if !client_id.trim().eq_ignore_ascii_case(&self.client_id) {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                Some(700_016),
                &format!(
                    "Application with the given identifier was not found in the directory '{DEMO_TENANT_ID}'."
                ),
            );
        }
        let Some(client_secret) = &form.client_secret else {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                Some(7_000_218),
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            );
        };
        if client_secret.as_str() != self.client_secret.expose() {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                Some(7_000_215),
                "Invalid client secret provided.",
            );
        }
        let Some(resource) = &form.resource else {
            return missing("resource");
        };
        if resource.trim().trim_end_matches('/') != DEFAULT_RESOURCE {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_resource",
                Some(500_011),
                &format!(
                    "The resource principal was not found in the tenant named {DEMO_TENANT_ID}."
                ),
            );
        }
        let Some(refresh_token) = &form.refresh_token else {
            return missing("refresh_token");
        };

        let access_token = Secret::new(random_token("demo-at"));
        let new_refresh_token = Secret::new(random_token("demo-rt"));
        {
            // Checked and replaced under one lock, so that of two requests
            // with the same refresh token only one succeeds.
            let mut tokens = self.tokens();
            if refresh_token.as_str() != tokens.refresh_token.expose() {
                drop(tokens);
                tracing::debug!(
                    "demo Entra ID refused a refresh token that is not the latest one issued"
                );
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    Some(70_008),
                    "The provided refresh token has expired or was revoked.",
                );
            }
            tokens.refresh_token = new_refresh_token.clone();
            tokens
                .access_tokens
                .retain(|(_, expires_at)| now < *expires_at);
            while tokens.access_tokens.len() >= MAX_LIVE_ACCESS_TOKENS {
                tokens.access_tokens.pop_front();
            }
            tokens
                .access_tokens
                .push_back((access_token.clone(), now + DEMO_ACCESS_TOKEN_LIFETIME));
        }
        tracing::debug!(
            expires_in_seconds = DEMO_ACCESS_TOKEN_LIFETIME.as_secs(),
            "demo Entra ID issued an access token and rotated the refresh token"
        );

        let lifetime = DEMO_ACCESS_TOKEN_LIFETIME.as_secs();
        let not_before = wall_now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        // The v1 endpoint gives every number as a string.
        let body = serde_json::json!({
            "token_type": "Bearer",
            "scope": "user_impersonation",
            "expires_in": lifetime.to_string(),
            "ext_expires_in": lifetime.to_string(),
            "expires_on": (not_before + lifetime).to_string(),
            "not_before": not_before.to_string(),
            "resource": DEFAULT_RESOURCE,
            "access_token": access_token.expose(),
            "refresh_token": new_refresh_token.expose(),
        });
        json(StatusCode::OK, body.to_string())
    }
}

/// Reads a request body of at most [`MAX_FORM_BYTES`]. A larger one is an
/// error, after it has been read and discarded up to
/// [`MAX_DISCARDED_BYTES`]; nothing beyond [`MAX_FORM_BYTES`] is kept.
async fn read_capped(body: Incoming) -> Result<Vec<u8>, &'static str> {
    tokio::time::timeout(BODY_READ_TIMEOUT, collect_capped(body))
        .await
        .unwrap_or(Err("the body did not arrive in time"))
}

async fn collect_capped(mut body: Incoming) -> Result<Vec<u8>, &'static str> {
    let mut kept = Vec::new();
    let mut total: usize = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| "the body cannot be read")?;
        // Trailers carry no form data.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total > MAX_DISCARDED_BYTES {
            return Err("the body is far too large");
        }
        if total <= MAX_FORM_BYTES {
            kept.extend_from_slice(&data);
        }
    }
    if total > MAX_FORM_BYTES {
        return Err("the body is too large");
    }
    Ok(kept)
}

/// An OAuth error answer shaped like Entra ID's: the AADSTS code leads the
/// description, which goes on with the trace and correlation IDs.
fn oauth_error(
    status: StatusCode,
    error: &str,
    code: Option<u32>,
    description: &str,
) -> Response<Full<Bytes>> {
    let trace_id = uuid::Uuid::new_v4().to_string();
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let timestamp = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    let prefix = code
        .map(|code| format!("AADSTS{code}: "))
        .unwrap_or_default();
    let mut body = serde_json::json!({
        "error": error,
        "error_description": format!(
            "{prefix}{description}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}"
        ),
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
    });
    if let (Some(code), Some(fields)) = (code, body.as_object_mut()) {
        fields.insert("error_codes".to_owned(), serde_json::json!([code]));
        fields.insert(
            "error_uri".to_owned(),
            serde_json::json!(format!(
                "https://login.microsoftonline.com/error?code={code}"
            )),
        );
    }
    json(status, body.to_string())
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// The license usage collection the simulation serves at `now`.
pub fn usage_body(now: SystemTime) -> serde_json::Value {
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let midnight =
        chrono::DateTime::from_timestamp((seconds as i64).div_euclid(86_400) * 86_400, 0)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%S+00:00")
            .to_string();
    let items: Vec<serde_json::Value> = DEMO_SERIES
        .iter()
        .map(|(workload, service, channel)| {
            serde_json::json!({
                "proratedLicensesUsagePercent": simulated_percent(workload, service, channel, seconds),
                "workloadName": workload,
                "processedDateTime": midnight,
                "serviceName": service,
                "channel": channel,
                "attributes": { "objectType": "PartnerLicensesUsageInsights" }
            })
        })
        .collect();
    serde_json::json!({
        "totalCount": items.len(),
        "items": items,
        "attributes": { "objectType": "Collection" }
    })
}

/// The license deployment collection the simulation serves at `now`: the
/// documented example's two series, the deployment share on a slow wave
/// and the licences sold growing by a few a day.
pub fn deployment_body(now: SystemTime) -> serde_json::Value {
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let processed =
        chrono::DateTime::from_timestamp((seconds as i64).div_euclid(86_400) * 86_400, 0)
            .unwrap_or_default()
            // The documented example's form: fractional seconds and an offset.
            .format("%Y-%m-%dT%H:%M:%S%.3f+00:00")
            .to_string();
    let items: Vec<serde_json::Value> = DEMO_DEPLOYMENT_SERIES
        .iter()
        .map(|(service, channel, sold)| {
            let growth = (seconds / WAVE_PERIOD_SECONDS).rem_euclid(50.0).floor();
            serde_json::json!({
                "proratedDeploymentPercent": simulated_percent("deployment", service, channel, seconds),
                "licensesSold": f64::from(*sold) + growth,
                "processedDateTime": processed,
                "serviceName": service,
                "channel": channel,
                "attributes": { "objectType": "PartnerLicensesDeploymentInsights" }
            })
        })
        .collect();
    serde_json::json!({
        "totalCount": items.len(),
        "items": items,
        "attributes": { "objectType": "Collection" }
    })
}

/// A value between 5 and 95 that follows a slow wave whose phase and
/// centre are fixed per series, so every series moves differently but the
/// same series always gives the same value at the same time.
fn simulated_percent(workload: &str, service: &str, channel: &str, unix_seconds: f64) -> f64 {
    let seed = fnv1a([workload, service, channel]);
    let phase = (seed % 1000) as f64 / 1000.0 * TAU;
    let centre = 35.0 + ((seed >> 16) % 30) as f64;
    let value = centre + 30.0 * (TAU * unix_seconds / WAVE_PERIOD_SECONDS + phase).sin();
    (value.clamp(5.0, 95.0) * 100.0).round() / 100.0
}

/// FNV-1a over the parts, each ended by a zero byte so that ("ab", "c")
/// and ("a", "bc") differ.
fn fnv1a(parts: [&str; 3]) -> u64 {
    crate::secret::fnv1a(
        parts
            .iter()
            .flat_map(|part| part.bytes().chain(std::iter::once(0))),
    )
}

/// The demo's private temporary directory (mode 0700): the credential files
/// and `state_dir`. Removed on drop.
struct DemoDir {
    path: PathBuf,
}

impl DemoDir {
    fn create() -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "partner-center-exporter-demo-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let mut builder = std::fs::DirBuilder::new();
        // Private from the moment it exists, not only once secrets are in it.
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&path)?;
        let dir = Self { path };
        // The mode above is narrowed by the umask; make it exactly 0700.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(dir)
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a credential file (mode 0600) the way an operator would, with
    /// a final newline, and returns its path.
    fn write_secret(&self, name: &str, secret: &Secret) -> std::io::Result<PathBuf> {
        let path = self.path.join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path)?;
        file.write_all(secret.expose().as_bytes())?;
        file.write_all(b"\n")?;
        Ok(path)
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Source;
    use crate::sources::license_deployment::LicenseDeploymentSource;
    use crate::sources::license_usage::{LicenseUsageSource, decode_usage_page};

    #[test]
    fn simulated_answer_decodes_to_the_documented_label_sets() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_123);
        let body = usage_body(now).to_string();
        let page = decode_usage_page(body.as_bytes()).expect("decodes");
        assert!(page.skipped.is_empty());
        let labels: Vec<(&str, &str, &str)> = page
            .items
            .iter()
            .map(|i| (i.workload.as_str(), i.service.as_str(), i.channel.as_str()))
            .collect();
        assert_eq!(labels, DEMO_SERIES.to_vec());
        for item in &page.items {
            assert!((0.0..=100.0).contains(&item.prorated_percent), "{item:?}");
            assert_eq!(
                item.processed_at.timestamp(),
                1_700_000_123 / 86_400 * 86_400
            );
        }
    }

    #[test]
    fn values_are_deterministic_and_move_over_time() {
        let at = |seconds| simulated_percent("Exchange", "o365", "reseller", seconds);
        assert_eq!(at(1000.0), at(1000.0));
        assert_ne!(
            at(1000.0),
            at(1150.0),
            "a value must change within a few polls"
        );
        assert_ne!(
            simulated_percent("Exchange", "o365", "reseller", 1000.0),
            simulated_percent("SharePoint", "o365", "reseller", 1000.0),
            "series differ"
        );
        for step in 0..200 {
            let value = at(f64::from(step) * 7.0);
            assert!((5.0..=95.0).contains(&value), "{value}");
        }
    }

    use crate::auth::Authenticator;
    use crate::auth::entra::{EntraClient, EntraError, Problem};
    use crate::auth::read_token_file_blocking;
    use crate::auth::refresh_token_store::RefreshTokenStore;
    use crate::config::{AuthMethod, RefreshTokenSettings};
    use crate::exposition::metrics::ExporterMetrics;
    use crate::partner_center::client::Client;

    /// A started demo whose server stops when the test ends.
    struct Running {
        demo: Demo,
        shutdown: CancellationToken,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.shutdown.cancel();
        }
    }

    async fn running() -> Running {
        let shutdown = CancellationToken::new();
        let demo = start(shutdown.clone()).await.expect("demo starts");
        Running { demo, shutdown }
    }

    fn settings(config: &Config) -> RefreshTokenSettings {
        match config.auth.method().expect("a valid auth section") {
            AuthMethod::RefreshToken(settings) => *settings,
            other => panic!("the demo must use App+User, not {other:?}"),
        }
    }

    fn entra(settings: &RefreshTokenSettings) -> EntraClient {
        EntraClient::new(settings, Duration::from_secs(5)).expect("Entra ID client")
    }

    fn file_secret(path: Option<&PathBuf>) -> Secret {
        read_token_file_blocking(path.expect("configured")).expect("readable")
    }

    fn problem(result: Result<crate::auth::entra::TokenGrant, EntraError>) -> Problem {
        let err = result.expect_err("refused");
        err.problem()
            .unwrap_or_else(|| panic!("an OAuth refusal, not {err}"))
    }

    /// Status of a license usage request carrying `authorization`.
    async fn usage_status(config: &Config, authorization: HeaderValue) -> StatusCode {
        let url = config
            .partner_center
            .base_url
            .join(USAGE_PATH)
            .expect("usage URL");
        reqwest::Client::new()
            .get(url)
            .header(header::AUTHORIZATION, authorization)
            .send()
            .await
            .expect("Partner Center answers")
            .status()
    }

    fn bearer(token: &Secret) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {}", token.expose())).expect("header-safe")
    }

    #[tokio::test]
    async fn the_demo_is_served_through_the_production_refresh_token_path() {
        let running = running().await;
        let config = &running.demo.config;
        assert!(config.auth.bearer_token_file.is_none());
        let settings = settings(config);
        assert_eq!(settings.tenant_id, DEMO_TENANT_ID);
        assert_eq!(
            settings.authority.host_str(),
            config.partner_center.base_url.host_str()
        );
        let state_dir = config.state_dir.clone().expect("state_dir");
        assert!(state_dir.starts_with(std::env::temp_dir()), "{state_dir:?}");

        let metrics = ExporterMetrics::new().expect("metrics");
        let authenticator = Authenticator::from_config(config, &metrics).expect("authenticator");
        assert!(matches!(authenticator, Authenticator::AppUser(_)));
        let client = Client::new(&config.partner_center).expect("client");
        let report = client
            .fetch_collection(
                LicenseUsageSource::PATH,
                LicenseUsageSource::decode_item,
                &authenticator,
                uuid::Uuid::new_v4(),
                tokio::time::Instant::now() + Duration::from_secs(10),
                &mut Default::default(),
            )
            .await
            .expect("the simulated Partner Center answers");
        let labels: Vec<(&str, &str, &str)> = report
            .items
            .iter()
            .map(|i| (i.workload.as_str(), i.service.as_str(), i.channel.as_str()))
            .collect();
        assert_eq!(labels, DEMO_SERIES.to_vec());
        assert!(report.skipped.is_empty());
        assert_eq!(report.pages, 1);

        let deployment = client
            .fetch_collection(
                LicenseDeploymentSource::PATH,
                LicenseDeploymentSource::decode_item,
                &authenticator,
                uuid::Uuid::new_v4(),
                tokio::time::Instant::now() + Duration::from_secs(10),
                &mut Default::default(),
            )
            .await
            .expect("the simulated Partner Center answers");
        let labels: Vec<(&str, &str)> = deployment
            .items
            .iter()
            .map(|i| (i.service.as_str(), i.channel.as_str()))
            .collect();
        let expected: Vec<(&str, &str)> = DEMO_DEPLOYMENT_SERIES
            .iter()
            .map(|(service, channel, _)| (*service, *channel))
            .collect();
        assert_eq!(labels, expected);
        assert!(deployment.skipped.is_empty());
        for item in &deployment.items {
            assert!((5.0..=95.0).contains(&item.prorated_percent), "{item:?}");
            assert!(item.licenses_sold >= 343.0, "{item:?}");
        }

        let exposition = String::from_utf8(metrics.render()).expect("UTF-8");
        assert!(
            exposition.contains("partner_center_token_requests_total{result=\"success\"} 1\n"),
            "{exposition}"
        );
        assert!(
            !exposition.contains("partner_center_refresh_token_rotated_timestamp_seconds 0\n"),
            "the rotated token was stored:\n{exposition}"
        );
    }

    #[tokio::test]
    async fn the_token_endpoint_rotates_strictly_and_checks_the_client() {
        let running = running().await;
        let config = &running.demo.config;
        let settings = settings(config);
        let entra = entra(&settings);
        let secret = file_secret(config.auth.client_secret_file.as_ref());
        let first = file_secret(config.auth.refresh_token_file.as_ref());

        let grant = entra
            .redeem_refresh_token(&first, &secret)
            .await
            .expect("the configured refresh token works once");
        assert_eq!(grant.expires_in, Some(DEMO_ACCESS_TOKEN_LIFETIME));
        let second = grant.refresh_token.expect("a rotated refresh token");
        assert_ne!(second.expose(), first.expose());
        assert_eq!(
            usage_status(config, bearer(&grant.access_token)).await,
            StatusCode::OK
        );

        let err = entra
            .redeem_refresh_token(&first, &secret)
            .await
            .expect_err("a used refresh token is refused");
        match &err {
            EntraError::Rejected(rejection) => {
                assert_eq!(rejection.problem, Problem::RefreshTokenRejected, "{err}");
                assert_eq!(rejection.http_status, 400);
                assert_eq!(rejection.code, Some(70_008));
                assert!(rejection.trace_id.is_some() && rejection.correlation_id.is_some());
            }
            other => panic!("an OAuth refusal, not {other}"),
        }
        assert_eq!(
            problem(
                entra
                    .redeem_refresh_token(&second, &Secret::new("not-the-secret"))
                    .await
            ),
            Problem::ClientSecretInvalid
        );
        let mut other_client = settings.clone();
        other_client.client_id = uuid::Uuid::new_v4().to_string();
        assert_eq!(
            problem(
                self::entra(&other_client)
                    .redeem_refresh_token(&second, &secret)
                    .await
            ),
            Problem::UnknownClient
        );
        let mut other_tenant = settings.clone();
        other_tenant.tenant_id = "contoso.onmicrosoft.com".to_owned();
        assert_eq!(
            problem(
                self::entra(&other_tenant)
                    .redeem_refresh_token(&second, &secret)
                    .await
            ),
            Problem::UnknownTenant
        );

        let third = entra
            .redeem_refresh_token(&second, &secret)
            .await
            .expect("refused requests leave the latest refresh token usable")
            .refresh_token
            .expect("rotated again");
        assert_ne!(third.expose(), second.expose());
        assert_eq!(
            problem(entra.redeem_refresh_token(&second, &secret).await),
            Problem::RefreshTokenRejected
        );
    }

    #[tokio::test]
    async fn a_simulated_outage_answers_503_until_switched_off() {
        let running = running().await;
        let config = &running.demo.config;
        let entra = entra(&settings(config));
        let secret = file_secret(config.auth.client_secret_file.as_ref());
        let first = file_secret(config.auth.refresh_token_file.as_ref());
        let grant = entra
            .redeem_refresh_token(&first, &secret)
            .await
            .expect("the configured refresh token works");
        assert_eq!(
            usage_status(config, bearer(&grant.access_token)).await,
            StatusCode::OK
        );

        let outage = running.demo.outage.clone();
        assert!(!outage.is_on(), "no outage at the start");
        assert!(outage.toggle(), "the first toggle starts an outage");
        assert!(running.demo.outage.is_on(), "clones share one switch");
        assert_eq!(
            usage_status(config, bearer(&grant.access_token)).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            usage_status(config, HeaderValue::from_static("Bearer not-issued")).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "the outage answers before the token is looked at"
        );
        // Only Partner Center is down: Entra ID still rotates tokens.
        let renewed = entra
            .redeem_refresh_token(
                &grant.refresh_token.expect("a rotated refresh token"),
                &secret,
            )
            .await
            .expect("Entra ID answers during the outage");

        assert!(!outage.toggle(), "the second toggle ends the outage");
        assert!(!running.demo.outage.is_on());
        assert_eq!(
            usage_status(config, bearer(&renewed.access_token)).await,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn the_latest_refresh_token_is_stored_in_state_dir() {
        let running = running().await;
        let config = &running.demo.config;
        let entra = entra(&settings(config));
        let secret = file_secret(config.auth.client_secret_file.as_ref());
        let configured = file_secret(config.auth.refresh_token_file.as_ref());
        let store = RefreshTokenStore::new(config.state_dir.clone().expect("state_dir"));

        let metrics = ExporterMetrics::new().expect("metrics");
        let authenticator = Authenticator::from_config(config, &metrics).expect("authenticator");
        assert!(store.load().expect("readable").is_none(), "nothing yet");
        let first_access = authenticator.access_token().await.expect("access token");
        let first_stored = store
            .load()
            .expect("readable")
            .expect("stored after the first redemption")
            .refresh_token;
        assert_ne!(first_stored.expose(), configured.expose());
        assert_eq!(
            authenticator.access_token().await.expect("cached").expose(),
            first_access.expose(),
            "the access token is cached, not redeemed again"
        );

        // Force a renewal, as after Partner Center refused the token.
        let second_access = authenticator.renew(&first_access).await.expect("renewed");
        assert_ne!(second_access.expose(), first_access.expose());
        let stored = store
            .load()
            .expect("readable")
            .expect("still stored")
            .refresh_token;
        assert_ne!(stored.expose(), first_stored.expose(), "rotated again");

        // Strict rotation accepts only the latest token issued: the stored one.
        for older in [&configured, &first_stored] {
            assert_eq!(
                problem(entra.redeem_refresh_token(older, &secret).await),
                Problem::RefreshTokenRejected
            );
        }
        entra
            .redeem_refresh_token(&stored, &secret)
            .await
            .expect("the stored refresh token is the latest issued");
    }

    #[tokio::test]
    async fn hostile_requests_are_refused_without_harm() {
        let running = running().await;
        let config = &running.demo.config;
        let entra = entra(&settings(config));
        let token_url = entra.token_url().clone();
        let http = reqwest::Client::new();

        let mut oversized = b"grant_type=refresh_token&padding=".to_vec();
        oversized.resize(MAX_FORM_BYTES + 1, b'a');
        let cases: [(&str, Option<&str>, Vec<u8>); 8] = [
            ("empty", Some(FORM_CONTENT_TYPE), Vec::new()),
            (
                "not UTF-8",
                Some(FORM_CONTENT_TYPE),
                b"grant_type=\xff\xfe&client_id=%ff%00%zz&&&=&refresh_token".to_vec(),
            ),
            (
                "JSON",
                Some("application/json"),
                br#"{"grant_type":"refresh_token"}"#.to_vec(),
            ),
            (
                "no content type",
                None,
                b"grant_type=refresh_token".to_vec(),
            ),
            (
                "duplicated parameter",
                Some(FORM_CONTENT_TYPE),
                b"grant_type=refresh_token&grant_type=refresh_token".to_vec(),
            ),
            (
                "other grant",
                Some(FORM_CONTENT_TYPE),
                b"grant_type=password&username=a&password=b".to_vec(),
            ),
            ("just over the limit", Some(FORM_CONTENT_TYPE), oversized),
            (
                "half a megabyte",
                Some(FORM_CONTENT_TYPE),
                vec![b'%'; 512 * 1024],
            ),
        ];
        for (name, content_type, body) in cases {
            let mut request = http.post(token_url.clone()).body(body);
            if let Some(content_type) = content_type {
                request = request.header(header::CONTENT_TYPE, content_type);
            }
            let response = request
                .send()
                .await
                .unwrap_or_else(|err| panic!("{name}: {err}"));
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
            let answer: serde_json::Value = response
                .json()
                .await
                .unwrap_or_else(|err| panic!("{name}: {err}"));
            assert!(
                answer["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{name}: {answer}"
            );
        }
        let get = http.get(token_url.clone()).send().await.expect("GET");
        assert_eq!(get.status(), StatusCode::BAD_REQUEST);
        // Far beyond what is even discarded: the connection may be dropped
        // instead of answered, but the server carries on.
        if let Ok(response) = http
            .post(token_url.clone())
            .header(header::CONTENT_TYPE, FORM_CONTENT_TYPE)
            .body(vec![b'a'; 4 * MAX_DISCARDED_BYTES])
            .send()
            .await
        {
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        }

        let refresh_token = file_secret(config.auth.refresh_token_file.as_ref());
        for authorization in [
            HeaderValue::from_bytes(b"Bearer \xff\xfe").expect("obs-text is allowed"),
            HeaderValue::from_static("Bearer"),
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
            bearer(&refresh_token),
        ] {
            assert_eq!(
                usage_status(config, authorization.clone()).await,
                StatusCode::UNAUTHORIZED,
                "{authorization:?}"
            );
        }
        let base = config
            .partner_center
            .base_url
            .as_str()
            .trim_end_matches('/');
        for path in [
            "/demo.onmicrosoft.com/oauth2/v2.0/token",
            "/oauth2/token",
            "//oauth2/token",
        ] {
            let response = http
                .post(format!("{base}{path}"))
                .send()
                .await
                .expect("answer");
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        }

        entra
            .redeem_refresh_token(
                &refresh_token,
                &file_secret(config.auth.client_secret_file.as_ref()),
            )
            .await
            .expect("the server still works, and refusals used up no token");
    }

    fn valid_request(simulation: &Simulation, refresh_token: &str) -> TokenRequest {
        TokenRequest {
            grant_type: Some("refresh_token".to_owned()),
            client_id: Some(simulation.client_id.to_uppercase()),
            client_secret: Some(simulation.client_secret.expose().to_owned()),
            refresh_token: Some(refresh_token.to_owned()),
            resource: Some(format!("{DEFAULT_RESOURCE}/")),
        }
    }

    async fn body_json(response: Response<Full<Bytes>>) -> serde_json::Value {
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("in memory")
            .to_bytes();
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[tokio::test]
    async fn access_tokens_expire_and_their_number_is_bounded() {
        let simulation = Simulation::new(
            uuid::Uuid::new_v4().to_string(),
            Secret::new("client-secret"),
            Secret::new("rt-0"),
            OutageSwitch::default(),
        );
        let now = Instant::now();
        let response =
            simulation.redeem(&valid_request(&simulation, "rt-0"), now, SystemTime::now());
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
        let answer = body_json(response).await;
        assert_eq!(answer["token_type"], "Bearer");
        assert_eq!(
            answer["expires_in"],
            DEMO_ACCESS_TOKEN_LIFETIME.as_secs().to_string().as_str(),
            "a string, as from the v1 endpoint"
        );
        assert_eq!(answer["resource"], DEFAULT_RESOURCE);
        let access_token = answer["access_token"].as_str().expect("access token");
        let mut refresh_token = answer["refresh_token"]
            .as_str()
            .expect("refresh token")
            .to_owned();
        assert!(simulation.access_token_is_valid(access_token, now));
        assert!(simulation.access_token_is_valid(
            access_token,
            now + DEMO_ACCESS_TOKEN_LIFETIME - Duration::from_secs(1)
        ));
        assert!(!simulation.access_token_is_valid(access_token, now + DEMO_ACCESS_TOKEN_LIFETIME));
        assert!(!simulation.access_token_is_valid(&refresh_token, now));

        let mut last_access_token = String::new();
        for _ in 0..MAX_LIVE_ACCESS_TOKENS + 3 {
            let answer = body_json(simulation.redeem(
                &valid_request(&simulation, &refresh_token),
                now,
                SystemTime::now(),
            ))
            .await;
            refresh_token = answer["refresh_token"]
                .as_str()
                .expect("rotated")
                .to_owned();
            last_access_token = answer["access_token"].as_str().expect("issued").to_owned();
        }
        assert_eq!(
            simulation.tokens().access_tokens.len(),
            MAX_LIVE_ACCESS_TOKENS
        );
        assert!(
            !simulation.access_token_is_valid(access_token, now),
            "forgotten"
        );
        assert!(simulation.access_token_is_valid(&last_access_token, now));
    }

    #[test]
    fn token_requests_are_parsed_leniently_but_not_twice() {
        let request = TokenRequest::parse(
            b"grant_type=refresh_token&scope=x&client_id=%41b+c&refresh_token=%ff&resource",
        )
        .expect("parses");
        assert_eq!(request.grant_type.as_deref(), Some("refresh_token"));
        assert_eq!(request.client_id.as_deref(), Some("Ab c"));
        assert_eq!(request.refresh_token.as_deref(), Some("\u{fffd}"));
        assert_eq!(request.resource.as_deref(), Some(""));
        assert!(request.client_secret.is_none());
        assert_eq!(
            TokenRequest::parse(b"client_secret=a&client_secret=a").err(),
            Some("client_secret")
        );
    }

    #[tokio::test]
    async fn refusals_look_like_entra_ids() {
        let answer = body_json(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            Some(70_008),
            "The provided refresh token has expired or was revoked.",
        ))
        .await;
        assert_eq!(answer["error"], "invalid_grant");
        assert_eq!(answer["error_codes"], serde_json::json!([70_008]));
        let description = answer["error_description"].as_str().expect("description");
        assert!(
            description.starts_with(
                "AADSTS70008: The provided refresh token has expired or was revoked.\r\nTrace ID: "
            ),
            "{description}"
        );
        for field in ["trace_id", "correlation_id", "timestamp"] {
            assert!(answer[field].is_string(), "{field}: {answer}");
        }
        let answer = body_json(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            "Unreadable.",
        ))
        .await;
        assert!(answer.get("error_codes").is_none(), "{answer}");
        assert!(
            answer["error_description"]
                .as_str()
                .is_some_and(|d| d.starts_with("Unreadable.\r\n")),
            "{answer}"
        );
    }
}
