//! The Entra ID token endpoint: redeeming refresh tokens, the device-code
//! flow, and turning its errors into what the operator has to do.

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use tokio::time::Instant;

use crate::config::{RefreshTokenSettings, TokenEndpointVersion};
use crate::secret::Secret;
use crate::upstream::retry::{RetryLoop, RetryPolicy, Retryable};
use crate::upstream::{BodyError, read_body_capped};

/// The grant type of RFC 8628 device-code token requests.
pub const DEVICE_CODE_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Largest answer read from Entra ID; real ones are a few kilobytes.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Longest piece of Entra ID text kept for a log line.
const MAX_TEXT_CHARS: usize = 400;

/// Longest access token lifetime believed; a larger `expires_in` is capped.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// How long to wait for a TCP and TLS connection to Entra ID.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Refresh-token redemption is retried briefly after a transient failure
/// (timeout, network error, 408, 429, 5xx): a poll should not fail because
/// Entra ID hiccupped once. The poll's own timeout still bounds it all.
const TOKEN_RETRY: RetryPolicy = RetryPolicy {
    max_retries: 2,
    initial_backoff: Duration::from_secs(1),
    max_backoff: Duration::from_secs(4),
    max_retry_after: Duration::from_secs(10),
};

/// No wait before a retry of a token request ends later than this after the
/// first try started; a try under way then runs to its own timeout.
const TOKEN_RETRY_WINDOW: Duration = Duration::from_secs(20);

/// A client for one tenant's Entra ID endpoints.
#[derive(Debug, Clone)]
pub struct EntraClient {
    http: reqwest::Client,
    /// Where refresh tokens are redeemed (v1 or v2, as configured).
    token_url: Url,
    /// Where the device-code flow starts (always v2).
    device_code_url: Url,
    /// Where device codes are redeemed (always v2, the pair of `device_code_url`).
    device_token_url: Url,
    endpoint: TokenEndpointVersion,
    tenant_id: String,
    client_id: String,
    /// Partner Center's identifier: `resource=` for v1, the scope's prefix for v2.
    resource: String,
    request_timeout: Duration,
}

/// What a successful token request returned.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub access_token: Secret,
    /// The access token's lifetime as Entra ID gave it, if it gave one.
    pub expires_in: Option<Duration>,
    /// The refresh token that replaces the one just used, if one came back.
    pub refresh_token: Option<Secret>,
}

/// The start of a device-code sign-in.
#[derive(Debug, Clone)]
pub struct DeviceAuthorization {
    pub device_code: Secret,
    /// What the user types at `verification_uri`.
    pub user_code: String,
    pub verification_uri: String,
    /// How long the codes stay valid.
    pub expires_in: Duration,
    /// How long to wait between two token requests, if Entra ID said.
    pub interval: Option<Duration>,
}

/// What went wrong, as far as the operator is concerned. Decides both the
/// advice in the log line and the `result` label of the token metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// `AADSTS700082`: unused for 90 days or past its maximum age.
    RefreshTokenExpired,
    /// `invalid_grant` otherwise: revoked, or issued to another client or tenant.
    RefreshTokenRejected,
    /// `AADSTS7000215`: not the secret of this app registration.
    ClientSecretInvalid,
    /// `AADSTS7000222`: the secret is past its end date.
    ClientSecretExpired,
    /// `AADSTS90002`, `AADSTS900023`: no such tenant.
    UnknownTenant,
    /// `AADSTS700016`: no such app registration in the tenant.
    UnknownClient,
    /// `AADSTS50076`, `AADSTS50079`, `900421`: MFA is required but was not done.
    MfaRequired,
    /// `AADSTS65001`: nobody consented to the Partner Center permission.
    ConsentMissing,
    /// `AADSTS7000218`: the app registration does not allow public client flows.
    PublicClientFlowsDisabled,
    /// Device flow: the user has not finished signing in yet.
    AuthorizationPending,
    /// Device flow: ask less often.
    SlowDown,
    /// Device flow: the codes expired before the sign-in was completed.
    DeviceCodeExpired,
    /// Device flow: the user declined.
    AuthorizationDeclined,
    /// Any other OAuth error.
    Other,
}

impl Problem {
    fn classify(error: &str, code: Option<u32>) -> Self {
        // RFC 8628's own error names come first: Entra ID pairs them with
        // varying AADSTS codes.
        match error {
            "authorization_pending" => return Self::AuthorizationPending,
            "slow_down" => return Self::SlowDown,
            "expired_token" => return Self::DeviceCodeExpired,
            "authorization_declined" => return Self::AuthorizationDeclined,
            _ => {}
        }
        match code {
            Some(700_082) => Self::RefreshTokenExpired,
            Some(7_000_215) => Self::ClientSecretInvalid,
            Some(7_000_222) => Self::ClientSecretExpired,
            Some(90_002 | 900_023) => Self::UnknownTenant,
            Some(700_016) => Self::UnknownClient,
            Some(50_076 | 50_079 | 900_421) => Self::MfaRequired,
            Some(65_001) => Self::ConsentMissing,
            Some(7_000_218) => Self::PublicClientFlowsDisabled,
            _ => match error {
                "invalid_grant" => Self::RefreshTokenRejected,
                "invalid_client" => Self::ClientSecretInvalid,
                "unauthorized_client" => Self::UnknownClient,
                "interaction_required" => Self::MfaRequired,
                "consent_required" => Self::ConsentMissing,
                _ => Self::Other,
            },
        }
    }

    /// The `result` label of `partner_center_token_requests_total`.
    pub fn kind(self) -> TokenRequestResult {
        use TokenRequestResult as Result;
        match self {
            Self::RefreshTokenExpired | Self::RefreshTokenRejected => Result::RefreshTokenRejected,
            Self::ClientSecretInvalid | Self::ClientSecretExpired => Result::ClientSecretRejected,
            Self::UnknownTenant => Result::UnknownTenant,
            Self::UnknownClient | Self::PublicClientFlowsDisabled => Result::UnknownClient,
            Self::MfaRequired => Result::MfaRequired,
            Self::ConsentMissing => Result::ConsentRequired,
            Self::AuthorizationPending
            | Self::SlowDown
            | Self::DeviceCodeExpired
            | Self::AuthorizationDeclined
            | Self::Other => Result::Rejected,
        }
    }
}

/// An OAuth error answer from Entra ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub problem: Problem,
    pub http_status: u16,
    /// The OAuth `error` field, such as `invalid_grant`.
    pub error: String,
    /// The first AADSTS code.
    pub code: Option<u32>,
    /// The first line of `error_description`, cleaned, secrets removed.
    pub description: Option<String>,
    /// What Microsoft support asks for.
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
    /// The configured tenant and client, named in the advice.
    tenant_id: String,
    client_id: String,
}

impl Rejection {
    /// What the operator has to do, in one sentence.
    pub fn advice(&self) -> String {
        let tenant = &self.tenant_id;
        let client = &self.client_id;
        match self.problem {
            Problem::RefreshTokenExpired => "the refresh token has expired (unused for 90 days, or never stored after rotation): \
                run `partner-center-exporter login` to store a new one".to_owned(),
            Problem::RefreshTokenRejected => "Entra ID refused the refresh token: it was revoked (for example by a password reset), \
                has expired, or was issued to another app registration or tenant; \
                run `partner-center-exporter login` to store a new one".to_owned(),
            Problem::ClientSecretInvalid => format!(
                "Entra ID refused the client secret: it must be the Value (not the Secret ID) \
                 of a client secret of app registration {client}; check auth.client_secret_file"
            ),
            Problem::ClientSecretExpired => format!(
                "the client secret of app registration {client} has expired: \
                 create a new one under Certificates & secrets and put its Value in auth.client_secret_file"
            ),
            Problem::UnknownTenant => format!(
                "Entra ID does not know tenant {tenant:?}: check auth.tenant_id (the partner tenant's GUID \
                 or a domain such as contoso.onmicrosoft.com) and, for a sovereign cloud, auth.authority"
            ),
            Problem::UnknownClient => format!(
                "tenant {tenant:?} has no app registration with client id {client}: \
                 check auth.client_id (the Application (client) ID on the app registration's Overview page)"
            ),
            Problem::MfaRequired => "Partner Center requires multi-factor authentication, and the sign-in behind the refresh token \
                did not include it: run `partner-center-exporter login` again and complete the MFA prompt".to_owned(),
            Problem::ConsentMissing => format!(
                "app registration {client} has no consent for Partner Center: grant admin consent for the delegated \
                 Partner Center permission user_impersonation, then run `partner-center-exporter login` again"
            ),
            Problem::PublicClientFlowsDisabled => format!(
                "app registration {client} does not allow public client flows, which the login needs: \
                 set \"Allow public client flows\" to Yes on its Authentication page"
            ),
            Problem::AuthorizationPending | Problem::SlowDown => {
                "the sign-in has not been completed yet".to_owned()
            }
            Problem::DeviceCodeExpired => "the code expired before the sign-in was completed: \
                run `partner-center-exporter login` again and sign in within the time shown".to_owned(),
            Problem::AuthorizationDeclined => "the sign-in was declined: run `partner-center-exporter login` again \
                and accept the request".to_owned(),
            Problem::Other => "Entra ID refused the token request".to_owned(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (Entra ID answered HTTP {} {}",
            self.advice(),
            self.http_status,
            self.error
        )?;
        if let Some(description) = &self.description {
            write!(f, ": {description}")?;
        } else if let Some(code) = self.code {
            write!(f, ": AADSTS{code}")?;
        }
        if let Some(trace_id) = &self.trace_id {
            write!(f, "; trace ID {trace_id}")?;
        }
        if let Some(correlation_id) = &self.correlation_id {
            write!(f, "; correlation ID {correlation_id}")?;
        }
        f.write_str(")")
    }
}

/// Why a request to Entra ID failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EntraError {
    #[error("{0}")]
    Rejected(Box<Rejection>),
    #[error(
        "Entra ID answered HTTP {status} at {url} without an OAuth error; check auth.authority"
    )]
    Status { status: u16, url: String },
    #[error("request to Entra ID timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("cannot reach Entra ID: {0}")]
    Network(String),
    #[error("Entra ID's answer is unusable: {0}")]
    Decode(String),
    #[error("cannot set up the Entra ID client: {0}")]
    Setup(String),
}

impl EntraError {
    /// The `result` label of `partner_center_token_requests_total`.
    pub fn kind(&self) -> TokenRequestResult {
        match self {
            Self::Rejected(rejection) => rejection.problem.kind(),
            Self::Status { .. } => TokenRequestResult::HttpError,
            Self::Timeout(_) => TokenRequestResult::Timeout,
            Self::Network(_) | Self::Setup(_) => TokenRequestResult::Network,
            Self::Decode(_) => TokenRequestResult::Decode,
        }
    }

    /// Whether the same request may well succeed a moment later: timeouts,
    /// network errors, and 408, 429 or 5xx answers (Entra ID's
    /// `temporarily_unavailable` among them).
    pub fn is_transient(&self) -> bool {
        let transient_status = |status: u16| matches!(status, 408 | 429 | 500..=599);
        match self {
            Self::Timeout(_) | Self::Network(_) => true,
            Self::Status { status, .. } => transient_status(*status),
            Self::Rejected(rejection) => {
                transient_status(rejection.http_status)
                    || rejection.error == "temporarily_unavailable"
            }
            Self::Decode(_) | Self::Setup(_) => false,
        }
    }

    /// The problem Entra ID named, if it answered with an OAuth error.
    pub fn problem(&self) -> Option<Problem> {
        match self {
            Self::Rejected(rejection) => Some(rejection.problem),
            _ => None,
        }
    }
}

/// How a token request ended: the `result` label of
/// `partner_center_token_requests_total`, a bounded set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenRequestResult {
    Success,
    RefreshTokenRejected,
    ClientSecretRejected,
    UnknownTenant,
    UnknownClient,
    MfaRequired,
    ConsentRequired,
    Rejected,
    HttpError,
    Timeout,
    Network,
    Decode,
}

impl TokenRequestResult {
    /// Every result, in the order their series are written.
    pub const ALL: [TokenRequestResult; 12] = [
        Self::Success,
        Self::RefreshTokenRejected,
        Self::ClientSecretRejected,
        Self::UnknownTenant,
        Self::UnknownClient,
        Self::MfaRequired,
        Self::ConsentRequired,
        Self::Rejected,
        Self::HttpError,
        Self::Timeout,
        Self::Network,
        Self::Decode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::RefreshTokenRejected => "refresh_token_rejected",
            Self::ClientSecretRejected => "client_secret_rejected",
            Self::UnknownTenant => "unknown_tenant",
            Self::UnknownClient => "unknown_client",
            Self::MfaRequired => "mfa_required",
            Self::ConsentRequired => "consent_required",
            Self::Rejected => "rejected",
            Self::HttpError => "http_error",
            Self::Timeout => "timeout",
            Self::Network => "network",
            Self::Decode => "decode",
        }
    }
}

/// The successful answer of a token request. `expires_in` comes as a
/// number or as a string, depending on the endpoint.
#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// The answer of the device-code request. v1 calls the URL `verification_url`.
#[derive(Deserialize)]
struct DeviceCodeResponse {
    #[serde(default)]
    device_code: Option<String>,
    #[serde(default)]
    user_code: Option<String>,
    #[serde(default, alias = "verification_url")]
    verification_uri: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    interval: Option<serde_json::Value>,
}

/// An OAuth error answer.
#[derive(Deserialize)]
struct ErrorResponse {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
}

impl EntraClient {
    /// A client for the configured tenant, client and endpoint.
    pub fn new(
        settings: &RefreshTokenSettings,
        request_timeout: Duration,
    ) -> Result<Self, EntraError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!(
                "partner-center-exporter/",
                env!("CARGO_PKG_VERSION")
            ))
            .connect_timeout(CONNECT_TIMEOUT.min(request_timeout))
            .timeout(request_timeout)
            // Token requests carry the client secret and the refresh token
            // in their body: they are never sent anywhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| EntraError::Setup(err.to_string()))?;
        let root = settings.authority.as_str().trim_end_matches('/');
        let url = |path: &str| {
            Url::parse(&format!("{root}/{}/{path}", settings.tenant_id))
                .map_err(|err| EntraError::Setup(format!("cannot build the {path} URL: {err}")))
        };
        let token_url = match settings.token_endpoint {
            TokenEndpointVersion::V1 => url("oauth2/token")?,
            TokenEndpointVersion::V2 => url("oauth2/v2.0/token")?,
        };
        Ok(Self {
            http,
            token_url,
            device_code_url: url("oauth2/v2.0/devicecode")?,
            device_token_url: url("oauth2/v2.0/token")?,
            endpoint: settings.token_endpoint,
            tenant_id: settings.tenant_id.clone(),
            client_id: settings.client_id.clone(),
            resource: settings.resource.clone(),
            request_timeout,
        })
    }

    /// Where refresh tokens are redeemed.
    pub fn token_url(&self) -> &Url {
        &self.token_url
    }

    /// The delegated scopes asked for: Partner Center, and a refresh token.
    fn scope(&self) -> String {
        format!("{}/user_impersonation offline_access", self.resource)
    }

    /// Redeems `refresh_token` for an access token (and, usually, a new
    /// refresh token), trying again after a transient failure.
    pub async fn redeem_refresh_token(
        &self,
        refresh_token: &Secret,
        client_secret: &Secret,
    ) -> Result<TokenGrant, EntraError> {
        with_token_retries(|| self.redeem_refresh_token_once(refresh_token, client_secret)).await
    }

    async fn redeem_refresh_token_once(
        &self,
        refresh_token: &Secret,
        client_secret: &Secret,
    ) -> Result<TokenGrant, EntraError> {
        let mut form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("client_id", self.client_id.clone()),
            ("refresh_token", refresh_token.expose().to_owned()),
            ("client_secret", client_secret.expose().to_owned()),
        ];
        match self.endpoint {
            TokenEndpointVersion::V1 => form.push(("resource", self.resource.clone())),
            TokenEndpointVersion::V2 => form.push(("scope", self.scope())),
        }
        let body = self
            .post(&self.token_url, &form, &[refresh_token, client_secret])
            .await?;
        parse_grant(&body)
    }

    /// Starts a device-code sign-in.
    pub async fn request_device_code(&self) -> Result<DeviceAuthorization, EntraError> {
        let form = [
            ("client_id", self.client_id.clone()),
            ("scope", self.scope()),
        ];
        let body = self.post(&self.device_code_url, &form, &[]).await?;
        let answer: DeviceCodeResponse =
            serde_json::from_slice(&body).map_err(|err| EntraError::Decode(err.to_string()))?;
        let field = |value: Option<String>, name: &str| {
            value
                .map(|text| text.trim().to_owned())
                .filter(|text| !text.is_empty())
                .ok_or_else(|| EntraError::Decode(format!("the device-code answer lacks {name}")))
        };
        let device_code = field(answer.device_code, "device_code")?;
        let user_code = sanitize(&field(answer.user_code, "user_code")?, &[]);
        let verification_uri = sanitize(&field(answer.verification_uri, "verification_uri")?, &[]);
        Ok(DeviceAuthorization {
            device_code: Secret::new(device_code),
            user_code,
            verification_uri,
            expires_in: answer
                .expires_in
                .as_ref()
                .and_then(seconds)
                .unwrap_or(Duration::from_secs(15 * 60)),
            interval: answer.interval.as_ref().and_then(seconds),
        })
    }

    /// Asks once whether the device-code sign-in is complete. Pending and
    /// slow-down answers are [`EntraError::Rejected`] with that problem.
    pub async fn redeem_device_code(&self, device_code: &Secret) -> Result<TokenGrant, EntraError> {
        let form = [
            ("grant_type", DEVICE_CODE_GRANT_TYPE.to_owned()),
            ("client_id", self.client_id.clone()),
            ("device_code", device_code.expose().to_owned()),
        ];
        let body = self
            .post(&self.device_token_url, &form, &[device_code])
            .await?;
        parse_grant(&body)
    }

    /// POSTs a form and returns the body of a 2xx answer. `secrets` are
    /// what the form carries; they are cut out of any text that is kept.
    async fn post(
        &self,
        url: &Url,
        form: &[(&str, String)],
        secrets: &[&Secret],
    ) -> Result<Vec<u8>, EntraError> {
        let response = self
            .http
            .post(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(form)
            .send()
            .await
            .map_err(|err| self.transport_error(&err))?;
        let status = response.status();
        let body = read_body_capped(response, MAX_BODY_BYTES)
            .await
            .map_err(|err| match err {
                BodyError::TooLarge => {
                    EntraError::Decode(format!("the answer is larger than {MAX_BODY_BYTES} bytes"))
                }
                BodyError::Transport(err) => self.transport_error(&err),
            })?;
        if status.is_success() {
            return Ok(body);
        }
        let Ok(answer) = serde_json::from_slice::<ErrorResponse>(&body) else {
            return Err(EntraError::Status {
                status: status.as_u16(),
                url: url.to_string(),
            });
        };
        let Some(error) = answer.error.filter(|error| !error.trim().is_empty()) else {
            return Err(EntraError::Status {
                status: status.as_u16(),
                url: url.to_string(),
            });
        };
        let description = answer
            .error_description
            .as_deref()
            .and_then(|text| text.lines().map(str::trim).find(|line| !line.is_empty()))
            .map(|line| sanitize(line, secrets));
        let code = answer
            .error_codes
            .iter()
            .flatten()
            .find_map(|code| code.as_u64().and_then(|code| u32::try_from(code).ok()))
            .or_else(|| description.as_deref().and_then(aadsts_code));
        let error = sanitize(error.trim(), secrets);
        Err(EntraError::Rejected(Box::new(Rejection {
            problem: Problem::classify(&error, code),
            http_status: status.as_u16(),
            error,
            code,
            description,
            trace_id: answer.trace_id.map(|id| sanitize(&id, secrets)),
            correlation_id: answer.correlation_id.map(|id| sanitize(&id, secrets)),
            tenant_id: self.tenant_id.clone(),
            client_id: self.client_id.clone(),
        })))
    }

    fn transport_error(&self, err: &reqwest::Error) -> EntraError {
        if err.is_timeout() {
            EntraError::Timeout(self.request_timeout)
        } else {
            EntraError::Network(crate::upstream::error_chain(err))
        }
    }
}

/// Runs a token request under [`TOKEN_RETRY`], again after each transient
/// failure, within [`TOKEN_RETRY_WINDOW`] of the first try.
async fn with_token_retries<T, Fut>(mut request: impl FnMut() -> Fut) -> Result<T, EntraError>
where
    Fut: Future<Output = Result<T, EntraError>>,
{
    // Once, before the first try, so that the window bounds all retries.
    let deadline = Instant::now() + TOKEN_RETRY_WINDOW;
    RetryLoop::new(TOKEN_RETRY, deadline)
        .run_letting_tries_finish(
            |_| request(),
            |error: &EntraError| {
                error.is_transient().then(|| Retryable {
                    reason: error.kind(),
                    retry_after: None,
                })
            },
            |retrying| {
                tracing::warn!(
                    error = %retrying.error,
                    retry = retrying.retry,
                    wait_seconds = retrying.wait.duration().as_secs_f64(),
                    "token request to Entra ID failed; retrying"
                );
            },
        )
        .await
}

/// Reads a successful token answer.
fn parse_grant(body: &[u8]) -> Result<TokenGrant, EntraError> {
    // serde_json's messages name positions, never the input's content.
    let answer: TokenResponse =
        serde_json::from_slice(body).map_err(|err| EntraError::Decode(err.to_string()))?;
    if let Some(token_type) = &answer.token_type
        && !token_type.eq_ignore_ascii_case("bearer")
    {
        return Err(EntraError::Decode(format!(
            "token_type is {:?}, not Bearer",
            sanitize(token_type, &[])
        )));
    }
    let access_token = answer
        .access_token
        .map(|token| token.trim().to_owned())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| EntraError::Decode("the answer has no access_token".to_owned()))?;
    if !is_header_safe(&access_token) {
        return Err(EntraError::Decode(
            "the access_token holds characters that cannot be sent in an HTTP header".to_owned(),
        ));
    }
    let refresh_token = answer
        .refresh_token
        .map(|token| token.trim().to_owned())
        .filter(|token| !token.is_empty());
    if refresh_token
        .as_deref()
        .is_some_and(|token| !is_header_safe(token))
    {
        return Err(EntraError::Decode(
            "the refresh_token holds characters that cannot be stored as a token".to_owned(),
        ));
    }
    Ok(TokenGrant {
        access_token: Secret::new(access_token),
        expires_in: answer
            .expires_in
            .as_ref()
            .and_then(seconds)
            .map(|lifetime| lifetime.min(MAX_TOKEN_LIFETIME)),
        refresh_token: refresh_token.map(Secret::new),
    })
}

fn is_header_safe(token: &str) -> bool {
    token.bytes().all(|byte| byte.is_ascii_graphic())
}

/// Seconds given as a JSON number or a numeric string.
fn seconds(value: &serde_json::Value) -> Option<Duration> {
    let seconds = match value {
        serde_json::Value::Number(number) => number.as_f64()?,
        serde_json::Value::String(text) => text.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::from_secs_f64(seconds.min(MAX_TOKEN_LIFETIME.as_secs_f64())))
}

/// The number of the first `AADSTS<digits>` in `text`.
fn aadsts_code(text: &str) -> Option<u32> {
    let start = text.find("AADSTS")? + "AADSTS".len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Entra ID text bound for a log line: secrets cut out, control characters
/// replaced, length capped.
fn sanitize(text: &str, secrets: &[&Secret]) -> String {
    let mut text = text.to_owned();
    for secret in secrets {
        let value = secret.expose();
        // A very short value would match ordinary words; real secrets are long.
        if value.len() >= 8 {
            text = text.replace(value, "[redacted]");
        }
    }
    crate::upstream::one_line(&text, MAX_TEXT_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(error: &str, codes: &[u32]) -> Problem {
        Problem::classify(error, codes.first().copied())
    }

    #[test]
    fn documented_errors_are_recognised() {
        assert_eq!(
            rejection("invalid_grant", &[700_082]),
            Problem::RefreshTokenExpired
        );
        assert_eq!(
            rejection("invalid_grant", &[70_008]),
            Problem::RefreshTokenRejected
        );
        assert_eq!(
            rejection("invalid_grant", &[]),
            Problem::RefreshTokenRejected
        );
        assert_eq!(
            rejection("invalid_client", &[7_000_215]),
            Problem::ClientSecretInvalid
        );
        assert_eq!(
            rejection("invalid_client", &[7_000_222]),
            Problem::ClientSecretExpired
        );
        assert_eq!(
            rejection("invalid_request", &[90_002]),
            Problem::UnknownTenant
        );
        assert_eq!(
            rejection("invalid_request", &[900_023]),
            Problem::UnknownTenant
        );
        assert_eq!(
            rejection("unauthorized_client", &[700_016]),
            Problem::UnknownClient
        );
        assert_eq!(rejection("invalid_grant", &[50_076]), Problem::MfaRequired);
        assert_eq!(rejection("interaction_required", &[]), Problem::MfaRequired);
        assert_eq!(
            rejection("invalid_grant", &[65_001]),
            Problem::ConsentMissing
        );
        assert_eq!(
            rejection("invalid_client", &[7_000_218]),
            Problem::PublicClientFlowsDisabled
        );
        assert_eq!(
            rejection("authorization_pending", &[70_016]),
            Problem::AuthorizationPending
        );
        assert_eq!(rejection("slow_down", &[]), Problem::SlowDown);
        assert_eq!(
            rejection("expired_token", &[70_020]),
            Problem::DeviceCodeExpired
        );
        assert_eq!(
            rejection("authorization_declined", &[]),
            Problem::AuthorizationDeclined
        );
        assert_eq!(rejection("temporarily_unavailable", &[]), Problem::Other);
    }

    #[test]
    fn every_kind_is_a_declared_metric_label() {
        for problem in [
            Problem::RefreshTokenExpired,
            Problem::RefreshTokenRejected,
            Problem::ClientSecretInvalid,
            Problem::ClientSecretExpired,
            Problem::UnknownTenant,
            Problem::UnknownClient,
            Problem::MfaRequired,
            Problem::ConsentMissing,
            Problem::PublicClientFlowsDisabled,
            Problem::AuthorizationPending,
            Problem::SlowDown,
            Problem::DeviceCodeExpired,
            Problem::AuthorizationDeclined,
            Problem::Other,
        ] {
            assert!(
                TokenRequestResult::ALL.contains(&problem.kind()),
                "{problem:?}"
            );
        }
        for err in [
            EntraError::Status {
                status: 500,
                url: String::new(),
            },
            EntraError::Timeout(Duration::from_secs(1)),
            EntraError::Network(String::new()),
            EntraError::Decode(String::new()),
        ] {
            assert!(TokenRequestResult::ALL.contains(&err.kind()), "{err:?}");
        }
    }

    #[test]
    fn expires_in_as_number_or_string() {
        let grant =
            parse_grant(br#"{"token_type":"Bearer","access_token":"at","expires_in":"3599"}"#)
                .expect("grant");
        assert_eq!(grant.expires_in, Some(Duration::from_secs(3599)));
        let grant = parse_grant(br#"{"access_token":"at","expires_in":4200,"refresh_token":"rt"}"#)
            .expect("grant");
        assert_eq!(grant.expires_in, Some(Duration::from_secs(4200)));
        assert_eq!(grant.refresh_token.expect("rt").expose(), "rt");
        let grant = parse_grant(br#"{"access_token":"at","expires_in":"soon"}"#).expect("grant");
        assert_eq!(
            grant.expires_in, None,
            "unreadable lifetime is unknown, not an hour"
        );
        let grant = parse_grant(br#"{"access_token":"at","expires_in":1e300}"#).expect("grant");
        assert_eq!(grant.expires_in, Some(MAX_TOKEN_LIFETIME));
        let grant = parse_grant(br#"{"access_token":"at","expires_in":-5}"#).expect("grant");
        assert_eq!(grant.expires_in, None);
    }

    #[test]
    fn unusable_grants_are_decode_errors_without_content() {
        for body in [
            &br#"{"token_type":"Bearer"}"#[..],
            br#"{"access_token":""}"#,
            br#"{"access_token":"SECRET-AT\nX"}"#,
            br#"{"access_token":"SECRET-AT","token_type":"pop"}"#,
            br#"{"access_token":"SECRET-AT","refresh_token":"SECRET-RT\u0000"}"#,
            b"SECRET-garbage",
        ] {
            let err = parse_grant(body).expect_err("unusable");
            assert_eq!(err.kind().as_str(), "decode", "{err}");
            assert!(!err.to_string().contains("SECRET"), "{err}");
        }
    }

    #[test]
    fn entra_text_is_cleaned_and_secrets_cut_out() {
        let secret = Secret::new("refresh-token-value-123");
        let text = sanitize(
            "AADSTS70008: token refresh-token-value-123 expired\r\nTrace ID: x",
            &[&secret],
        );
        assert_eq!(text, "AADSTS70008: token [redacted] expired  Trace ID: x");
        assert_eq!(
            aadsts_code("AADSTS700082: The refresh token has expired"),
            Some(700_082)
        );
        assert_eq!(aadsts_code("no code"), None);
        let long = sanitize(&"x".repeat(5000), &[]);
        assert!(long.chars().count() <= MAX_TEXT_CHARS + 1);
    }

    #[tokio::test]
    async fn transient_failures_are_retried_twice_and_refusals_not_at_all() {
        tokio::time::pause();
        let mut tries = 0;
        let outcome: Result<(), EntraError> = with_token_retries(|| {
            tries += 1;
            async { Err(EntraError::Network("connection reset".to_owned())) }
        })
        .await;
        assert_eq!(outcome.expect_err("failed").kind().as_str(), "network");
        assert_eq!(tries, 3, "one try and TOKEN_RETRY.max_retries retries");

        let mut tries = 0;
        let outcome: Result<(), EntraError> = with_token_retries(|| {
            tries += 1;
            async { Err(EntraError::Decode("not JSON".to_owned())) }
        })
        .await;
        assert_eq!(outcome.expect_err("failed").kind().as_str(), "decode");
        assert_eq!(tries, 1);
    }

    #[tokio::test]
    async fn no_retry_waits_past_the_window_counted_from_the_first_try() {
        tokio::time::pause();
        let start = Instant::now();
        let mut tries = 0;
        // Each try times out after 15s: the first retry starts within the
        // window, a second one could not.
        let outcome: Result<(), EntraError> = with_token_retries(|| {
            tries += 1;
            async {
                tokio::time::sleep(Duration::from_secs(15)).await;
                Err(EntraError::Timeout(Duration::from_secs(15)))
            }
        })
        .await;
        assert_eq!(outcome.expect_err("failed").kind().as_str(), "timeout");
        assert_eq!(tries, 2, "the window ended the retries");
        assert!(
            start.elapsed() < TOKEN_RETRY_WINDOW * 2,
            "{:?}",
            start.elapsed()
        );
    }
}
