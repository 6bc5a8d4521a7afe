//! The HTTP client for Partner Center's v1 collections: authentication and
//! the renewal after a 401, headers, paging through `links.next`, retries,
//! the tenant's throttle, body limits and typed errors. It fetches whatever
//! collection a source names and hands each page to the source's decoder;
//! it knows nothing of series or metrics.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use reqwest::{StatusCode, Url};
use tokio::time::Instant;
use uuid::Uuid;

use super::collection::{DecodeError, ItemDecoder, NextLink, Page, SkippedItem, decode_page};
use super::throttle::TenantThrottle;
use crate::auth::{AuthError, Authenticator};
use crate::config::PartnerCenterConfig;
use crate::secret::Secret;
use crate::upstream::retry::{RetryPolicy, Wait};
use crate::upstream::{BodyError, error_chain, read_body_capped};

/// Longest upstream error description kept; the rest is cut.
const MAX_DESCRIPTION_CHARS: usize = 512;

/// Most redirects followed for one request. Partner Center does not
/// redirect; a proxy or a sovereign-cloud front door might, once or twice.
const MAX_REDIRECTS: usize = 5;

/// No computed backoff between retries waits longer than this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// `links.next.headers` may only set Partner Center's own `MS-` headers
/// (in practice `MS-ContinuationToken`), never these, which the client owns.
const CLIENT_OWNED_MS_HEADERS: [&str; 2] = ["ms-requestid", "ms-correlationid"];

/// How a page's envelope is read: [`decode_page`] for v1 collections,
/// [`super::collection::decode_commercial_page`] for commercial reports.
pub(super) type PageDecoder<T> = fn(&[u8], ItemDecoder<T>) -> Result<Page<T>, DecodeError>;

/// Decodes a page on the blocking pool of the runtime the poll runs on
/// (the poll thread's, see [`crate::collect::poll_thread`]). A page may hold up to
/// `max_body_size` (64 MiB by default) of JSON, which takes a core for
/// seconds; decoded on the runtime itself, it would hold up everything
/// else waiting on the same thread.
pub(super) async fn decode_on_blocking_pool<T: Send + 'static>(
    body: Vec<u8>,
    decode: PageDecoder<T>,
    decode_item: ItemDecoder<T>,
) -> Result<Page<T>, DecodeError> {
    match tokio::task::spawn_blocking(move || decode(&body, decode_item)).await {
        Ok(decoded) => decoded,
        // Decoding does not panic (it is fuzzed); were it to, the panic
        // travels on as if decoding had run on this task.
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => Err(DecodeError::Cancelled),
    }
}

/// A configured Partner Center API client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The API root without a trailing slash; page URIs are resolved against it.
    pub(super) base_url: Url,
    /// Held back after a 429, for every source of this partner tenant.
    throttle: Arc<TenantThrottle>,
    application_name: HeaderValue,
    locale: HeaderValue,
    /// Most pages fetched in one poll, the first included.
    pub(super) max_pages: u32,
    /// Reported when a request runs out of time.
    request_timeout: Duration,
    /// Reported when connecting runs out of time.
    connect_timeout: Duration,
    /// Largest body read; a longer one fails the request.
    max_body_size: usize,
    /// Which failures are tried again and how long to wait in between.
    retry: RetryPolicy,
}

/// Everything one fetch of a collection brought, across all pages.
#[derive(Debug, Clone, PartialEq)]
pub struct Collection<T> {
    /// Usable items of every page, in the order received.
    pub items: Vec<T>,
    /// Items left out, with the 1-based page they were on.
    pub skipped: Vec<(u32, SkippedItem)>,
    /// Pages requested.
    pub pages: u32,
}

impl<T> Default for Collection<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            skipped: Vec::new(),
            pages: 0,
        }
    }
}

impl<T> Collection<T> {
    /// Adds one page's items, in the order received. The first page's are
    /// taken over as they are: a one-page answer is never copied.
    pub fn add_page(&mut self, items: Vec<T>) {
        if self.items.is_empty() {
            self.items = items;
        } else {
            self.items.extend(items);
        }
    }
}

/// What happened on the way through one fetch, whether it succeeded or
/// not: the poller counts the retries and slows down after throttling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchTrace {
    /// One entry per retry, naming what was retried.
    pub retries: Vec<RetryReason>,
    /// Set when Partner Center answered 429 at least once: the longest
    /// `Retry-After` it gave, or zero when it gave none.
    pub throttled: Option<Duration>,
}

/// The identifiers Partner Center puts on its answers; Microsoft support asks for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseIds {
    /// `MS-RequestId`: this request.
    pub request_id: Option<String>,
    /// `MS-CorrelationId`: the poll it belongs to.
    pub correlation_id: Option<String>,
    /// `MS-CV`: Microsoft's correlation vector across its services.
    pub cv: Option<String>,
    /// `MS-ServerId`: the server that answered.
    pub server_id: Option<String>,
}

impl ResponseIds {
    fn from_headers(headers: &HeaderMap) -> Self {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(sanitize)
        };
        Self {
            request_id: get("ms-requestid"),
            correlation_id: get("ms-correlationid"),
            cv: get("ms-cv"),
            server_id: get("ms-serverid"),
        }
    }
}

/// The `code` and `description` of a Partner Center error body, when it has one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorDetail {
    /// Partner Center's error code (a number sent as JSON number or string).
    pub code: Option<String>,
    /// Its human-readable explanation, cleaned for a log line.
    pub description: Option<String>,
}

impl ErrorDetail {
    /// Reads both the documented error body (`code`, `description`) and the
    /// throttling body (`statusCode`, `message`); anything else yields nothing.
    fn from_body(body: &[u8]) -> Self {
        let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body) else {
            return Self::default();
        };
        let text = |key: &str| match fields.get(key) {
            Some(serde_json::Value::String(text)) => Some(sanitize(text)),
            Some(serde_json::Value::Number(number)) => Some(number.to_string()),
            _ => None,
        };
        Self {
            code: text("code").or_else(|| text("statusCode")),
            description: text("description").or_else(|| text("message")),
        }
    }
}

impl fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, &self.description) {
            (Some(code), Some(description)) => write!(f, ": code {code}: {description}"),
            (Some(code), None) => write!(f, ": code {code}"),
            (None, Some(description)) => write!(f, ": {description}"),
            (None, None) => Ok(()),
        }
    }
}

/// Partner Center's error code for an App+User token without an MFA claim.
const MFA_REQUIRED_CODE: &str = "900421";

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No access token could be had.
    #[error("cannot get an access token: {0}")]
    Auth(#[from] AuthError),
    /// 401 (after one renewal) or 403: the token was refused.
    #[error("Partner Center {} (HTTP {}){detail}{}", if status.as_u16() == 403 { "denied access" } else { "refused the access token" }, status.as_u16(), unauthorized_advice(detail))]
    Unauthorized {
        status: StatusCode,
        detail: Box<ErrorDetail>,
        ids: Box<ResponseIds>,
    },
    /// 429: the tenant's rate limit is spent.
    #[error("Partner Center is throttling requests (HTTP 429{}){detail}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    Throttled {
        retry_after: Option<Duration>,
        detail: Box<ErrorDetail>,
        ids: Box<ResponseIds>,
    },
    /// Any other answer that is not 2xx.
    #[error("Partner Center answered HTTP {}{detail}", status.as_u16())]
    Status {
        status: StatusCode,
        detail: Box<ErrorDetail>,
        ids: Box<ResponseIds>,
    },
    #[error("request to Partner Center timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The poll's deadline came before Partner Center answered.
    #[error("Partner Center did not answer before the poll's deadline (poll.timeout)")]
    DeadlineReached,
    #[error("cannot reach Partner Center: {0}")]
    Network(String),
    #[error("response from Partner Center is unusable: {source}")]
    Decode {
        source: DecodeError,
        ids: Box<ResponseIds>,
    },
    #[error(
        "response from Partner Center is larger than {limit} bytes (partner_center.max_body_size)"
    )]
    BodyTooLarge { limit: usize, ids: Box<ResponseIds> },
    /// A 2xx answer that is not JSON, such as a proxy's HTML page.
    #[error("response from Partner Center is {content_type}, not JSON")]
    NotJson {
        content_type: String,
        ids: Box<ResponseIds>,
    },
    #[error("cannot page through the collection: {0}")]
    Paging(String),
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
}

/// Why a fetch failed, in a word: the `reason` label of
/// `partner_center_poll_errors_total`. Fixed, so the label set stays
/// bounded and every series exists from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    Auth,
    Throttled,
    Http,
    Timeout,
    Network,
    Decode,
    Paging,
}

impl FailureReason {
    /// Every reason, in the order their series are written.
    pub const ALL: [FailureReason; 7] = [
        Self::Auth,
        Self::Throttled,
        Self::Http,
        Self::Timeout,
        Self::Network,
        Self::Decode,
        Self::Paging,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Throttled => "throttled",
            Self::Http => "http",
            Self::Timeout => "timeout",
            Self::Network => "network",
            Self::Decode => "decode",
            Self::Paging => "paging",
        }
    }
}

/// Why a request was sent again: the `reason` label of
/// `partner_center_request_retries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryReason {
    Throttled,
    Timeout,
    Network,
    Http,
}

impl RetryReason {
    /// Every reason, in the order their series are written.
    pub const ALL: [RetryReason; 4] = [Self::Throttled, Self::Timeout, Self::Network, Self::Http];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttled => "throttled",
            Self::Timeout => "timeout",
            Self::Network => "network",
            Self::Http => "http",
        }
    }
}

impl ClientError {
    /// A bounded name for the failure, used as the `reason` metric label.
    pub fn kind(&self) -> FailureReason {
        match self {
            Self::Auth(_) | Self::Unauthorized { .. } => FailureReason::Auth,
            Self::Throttled { .. } => FailureReason::Throttled,
            Self::Status { .. } => FailureReason::Http,
            Self::Timeout(_) | Self::DeadlineReached => FailureReason::Timeout,
            Self::Network(_) | Self::Setup(_) => FailureReason::Network,
            Self::Decode { .. } | Self::BodyTooLarge { .. } | Self::NotJson { .. } => {
                FailureReason::Decode
            }
            Self::Paging(_) => FailureReason::Paging,
        }
    }

    /// What to call this failure in `partner_center_request_retries_total`
    /// when it is worth another try: timeouts, network errors, 408, 429,
    /// 500, 502, 503 and 504. Everything else would fail the same way again.
    pub fn retry_reason(&self) -> Option<RetryReason> {
        match self {
            Self::Timeout(_) => Some(RetryReason::Timeout),
            Self::Network(_) => Some(RetryReason::Network),
            Self::Throttled { .. } => Some(RetryReason::Throttled),
            Self::Status { status, .. }
                if matches!(status.as_u16(), 408 | 500 | 502 | 503 | 504) =>
            {
                Some(RetryReason::Http)
            }
            _ => None,
        }
    }

    /// The HTTP status Partner Center answered with, for failures that are one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Unauthorized { status, .. } | Self::Status { status, .. } => Some(*status),
            Self::Throttled { .. } => Some(StatusCode::TOO_MANY_REQUESTS),
            _ => None,
        }
    }

    /// Partner Center's own explanation of the failure, when it gave one.
    pub fn detail(&self) -> Option<&ErrorDetail> {
        match self {
            Self::Unauthorized { detail, .. }
            | Self::Throttled { detail, .. }
            | Self::Status { detail, .. } => Some(detail),
            _ => None,
        }
    }

    /// The identifiers of the answer that caused the failure, if there was one.
    pub fn response_ids(&self) -> Option<&ResponseIds> {
        match self {
            Self::Unauthorized { ids, .. }
            | Self::Throttled { ids, .. }
            | Self::Status { ids, .. }
            | Self::Decode { ids, .. }
            | Self::BodyTooLarge { ids, .. }
            | Self::NotJson { ids, .. } => Some(ids.as_ref()),
            _ => None,
        }
    }
}

impl Client {
    /// Builds a client from the `partner_center` section.
    pub fn new(config: &PartnerCenterConfig) -> Result<Self, ClientError> {
        let connect_timeout = config.connect_timeout.min(config.request_timeout);
        let http = reqwest::Client::builder()
            .user_agent(concat!(
                "partner-center-exporter/",
                env!("CARGO_PKG_VERSION")
            ))
            .connect_timeout(connect_timeout)
            .timeout(config.request_timeout)
            // reqwest drops Authorization when a redirect leaves the host
            // (or port); tests/it/resilience.rs checks that it does.
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            // Certificates are always verified (reqwest's default); there is
            // deliberately no setting to turn that off.
            .build()
            .map_err(|err| ClientError::Setup(error_chain(&err)))?;
        let header = |value: &str| {
            HeaderValue::from_str(value)
                .map_err(|_| ClientError::Setup(format!("{value:?} is not a valid header value")))
        };
        let mut base_url = config.base_url.clone();
        let trimmed = base_url.path().trim_end_matches('/').to_owned();
        base_url.set_path(&trimmed);
        Ok(Self {
            http,
            base_url,
            throttle: Arc::new(TenantThrottle::new(
                config.max_requests_per_minute,
                usize::try_from(config.max_concurrent_requests).unwrap_or(usize::MAX),
            )),
            application_name: header(&config.application_name)?,
            locale: header(&config.locale)?,
            max_pages: config.max_pages,
            request_timeout: config.request_timeout,
            connect_timeout,
            max_body_size: usize::try_from(config.max_body_size).unwrap_or(usize::MAX),
            retry: RetryPolicy {
                max_retries: config.max_retries,
                initial_backoff: config.retry_backoff,
                max_backoff: MAX_BACKOFF.max(config.retry_backoff),
                max_retry_after: config.max_retry_after,
            },
        })
    }

    /// The URL of a collection's first page, `path` below the API root.
    pub fn url_of(&self, path: &str) -> Result<Url, ClientError> {
        Self::join(&self.base_url, path)
            .map_err(|err| ClientError::Setup(format!("cannot build the URL of {path}: {err}")))
    }

    /// The partner tenant's throttle, shared by every clone of this client.
    pub fn throttle(&self) -> &TenantThrottle {
        &self.throttle
    }

    /// The API root followed by `path_and_query`.
    pub(super) fn join(base_url: &Url, path_and_query: &str) -> Result<Url, String> {
        let root = base_url.as_str().trim_end_matches('/');
        Url::parse(&format!(
            "{root}/{}",
            path_and_query.trim_start_matches('/')
        ))
        .map_err(|err| err.to_string())
    }

    /// Resolves a `links.next.uri` as Partner Center's SDK does: relative to
    /// the API root, with `/v1` added when it is missing. An absolute URI is
    /// only followed on the API's own origin, so the token never goes elsewhere.
    fn resolve_next(&self, uri: &str) -> Result<Url, ClientError> {
        let uri = uri.trim();
        if let Ok(absolute) = Url::parse(uri) {
            if absolute.origin() != self.base_url.origin() {
                return Err(ClientError::Paging(format!(
                    "links.next points to another origin ({})",
                    absolute.origin().ascii_serialization()
                )));
            }
            return Ok(absolute);
        }
        let relative = uri.trim_start_matches('/');
        let joined = if relative.starts_with("v1/") || relative.starts_with("v1?") {
            Self::join(&self.base_url, relative)
        } else {
            Self::join(&self.base_url, &format!("v1/{relative}"))
        };
        joined.map_err(|err| {
            ClientError::Paging(format!("links.next.uri is not a usable URI: {err}"))
        })
    }

    /// Fetches the whole collection at `path`, following `links.next`
    /// until it ends, each page decoded by `decode_item` on the blocking
    /// pool. All requests carry `correlation_id`; failures worth another
    /// try are retried until `deadline` (see [`ClientError::retry_reason`]).
    /// A 401 makes `auth` renew the token and the request is sent once more.
    /// `trace` records the retries and any throttling, whatever the outcome.
    pub async fn fetch_collection<T: Send + 'static>(
        &self,
        path: &str,
        decode_item: ItemDecoder<T>,
        auth: &Authenticator,
        correlation_id: Uuid,
        deadline: Instant,
        trace: &mut FetchTrace,
    ) -> Result<Collection<T>, ClientError> {
        let mut report = Collection::default();
        let mut url = self.url_of(path)?;
        let mut extra_headers: Vec<(String, String)> = Vec::new();
        let mut seen_links: HashSet<NextLink> = HashSet::new();
        loop {
            report.pages += 1;
            let page_number = report.pages;
            let request = PageRequest {
                url: url.clone(),
                correlation_id,
                extra_headers: &extra_headers,
            };
            let (body, ids) = self
                .get_with_retries(&request, auth, deadline, trace)
                .await?;
            let page = decode_on_blocking_pool(body, decode_page, decode_item)
                .await
                .map_err(|source| ClientError::Decode {
                    source,
                    ids: ids.clone(),
                })?;
            report.add_page(page.items);
            report
                .skipped
                .extend(page.skipped.into_iter().map(|item| (page_number, item)));
            let Some(next) = page.next else {
                return Ok(report);
            };
            if report.pages >= self.max_pages {
                return Err(ClientError::Paging(format!(
                    "the collection has more than {} pages (partner_center.max_pages)",
                    self.max_pages
                )));
            }
            if !seen_links.insert(next.clone()) {
                return Err(ClientError::Paging(
                    "links.next repeats an earlier page".to_owned(),
                ));
            }
            url = self.resolve_next(&next.uri)?;
            extra_headers = next.headers;
        }
    }

    /// The body of the single JSON resource at `path` (not a collection:
    /// nothing is paged or decoded here), with the retries, the token
    /// renewal and the tenant's budget of [`Client::fetch_collection`].
    pub async fn fetch_resource(
        &self,
        path: &str,
        auth: &Authenticator,
        correlation_id: Uuid,
        deadline: Instant,
        trace: &mut FetchTrace,
    ) -> Result<Vec<u8>, ClientError> {
        let request = PageRequest {
            url: self.url_of(path)?,
            correlation_id,
            extra_headers: &[],
        };
        let (body, _ids) = self
            .get_with_retries(&request, auth, deadline, trace)
            .await?;
        Ok(body)
    }

    /// One page, tried again after failures worth it while retries and time
    /// are left. The `MS-RequestId` stays the same after a timeout or a
    /// network error (Partner Center may have received the request and
    /// recognises the repeat) and is new after any answer.
    pub(super) async fn get_with_retries(
        &self,
        request: &PageRequest<'_>,
        auth: &Authenticator,
        deadline: Instant,
        trace: &mut FetchTrace,
    ) -> Result<(Vec<u8>, Box<ResponseIds>), ClientError> {
        use crate::upstream::retry::{GaveUp, RetryLoop, Retryable};

        let outcome = RetryLoop::new(self.retry, deadline)
            .run(
                |retried: Option<&FailedTry>| {
                    let request_id = match retried {
                        Some(previous) if !previous.failed.answered => previous.request_id,
                        _ => Uuid::new_v4(),
                    };
                    async move {
                        self.get_authenticated(request, request_id, auth)
                            .await
                            .map_err(|failed| FailedTry { failed, request_id })
                    }
                },
                |tried| {
                    let error = &tried.failed.error;
                    let retry_after = match error {
                        ClientError::Throttled { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    error.retry_reason().map(|reason| Retryable {
                        reason,
                        retry_after,
                    })
                },
                |retrying| {
                    let error = &retrying.error.failed.error;
                    note_throttling(trace, error);
                    let message = match retrying.wait {
                        Wait::RetryAfter(_) => {
                            "Partner Center is throttling; waiting as its Retry-After asks, then retrying"
                        }
                        Wait::Backoff(_) => "Partner Center request failed; retrying",
                    };
                    tracing::warn!(
                        correlation_id = %request.correlation_id,
                        reason = retrying.reason.as_str(),
                        error = %error,
                        retry = retrying.retry,
                        wait_seconds = retrying.wait.duration().as_secs_f64(),
                        // The identifier this try was sent with, which Partner
                        // Center echoes and Microsoft support asks for.
                        ms_request_id = %retrying.error.request_id,
                        "{message}"
                    );
                    trace.retries.push(retrying.reason);
                },
            )
            .await;
        match outcome {
            Ok(answer) => Ok(answer),
            Err(GaveUp::Failed(tried)) => {
                note_throttling(trace, &tried.failed.error);
                Err(tried.failed.error)
            }
            // Time ran out during a retry: the failure that made it
            // necessary says more than "out of time" would.
            Err(GaveUp::DeadlineReached { previous }) => {
                Err(previous.map_or(ClientError::DeadlineReached, |tried| tried.failed.error))
            }
        }
    }

    /// One GET with a token from `auth`; after a 401, one more with a renewed token.
    async fn get_authenticated(
        &self,
        request: &PageRequest<'_>,
        request_id: Uuid,
        auth: &Authenticator,
    ) -> Result<(Vec<u8>, Box<ResponseIds>), Failed> {
        let token = auth.access_token().await.map_err(Failed::before_sending)?;
        match self.get(request, request_id, &token).await {
            Err(Failed {
                error:
                    ClientError::Unauthorized {
                        status,
                        detail,
                        ids,
                    },
                ..
            }) if status == StatusCode::UNAUTHORIZED => {
                tracing::info!(
                    detail = %detail.to_string().trim_start_matches(": "),
                    ms_request_id = ids.request_id.as_deref().unwrap_or(""),
                    "Partner Center refused the access token; renewing it and retrying once"
                );
                let renewed = auth.renew(&token).await.map_err(Failed::before_sending)?;
                self.get(request, Uuid::new_v4(), &renewed).await
            }
            other => other,
        }
    }

    /// One GET; returns the body of a 2xx JSON answer or the typed error.
    async fn get(
        &self,
        request: &PageRequest<'_>,
        request_id: Uuid,
        token: &Secret,
    ) -> Result<(Vec<u8>, Box<ResponseIds>), Failed> {
        // Every request waits for its turn under the tenant's budget and
        // out any hold another source's 429 put on the tenant; its place
        // among those in flight is kept until the answer has been read.
        let _admission = self.throttle.admit().await;
        let mut builder = self
            .http
            .get(request.url.clone())
            .header(
                AUTHORIZATION,
                bearer(token).map_err(Failed::before_sending)?,
            )
            .header(ACCEPT, "application/json")
            .header("MS-RequestId", request_id.to_string())
            .header("MS-CorrelationId", request.correlation_id.to_string())
            .header(
                "MS-PartnerCenter-Application",
                self.application_name.clone(),
            )
            .header("X-Locale", self.locale.clone());
        for (key, value) in request.extra_headers {
            let lower = key.to_ascii_lowercase();
            if !lower.starts_with("ms-") || CLIENT_OWNED_MS_HEADERS.contains(&lower.as_str()) {
                return Err(Failed::before_sending(ClientError::Paging(format!(
                    "links.next asks for header {key:?}, which the exporter does not let Partner Center set"
                ))));
            }
            let name = HeaderName::from_bytes(key.as_bytes()).map_err(|_| {
                Failed::before_sending(ClientError::Paging(format!(
                    "links.next names an invalid header {key:?}"
                )))
            })?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                Failed::before_sending(ClientError::Paging(format!(
                    "links.next gives header {key:?} an invalid value"
                )))
            })?;
            builder = builder.header(name, value);
        }
        let response = builder.send().await.map_err(|err| Failed {
            error: self.transport_error(&err),
            answered: false,
        })?;
        // From here on Partner Center has answered: a retry is a new request.
        let answered = |error| Failed {
            error,
            answered: true,
        };
        let status = response.status();
        let ids = Box::new(ResponseIds::from_headers(response.headers()));
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|value| sanitize(&String::from_utf8_lossy(value.as_bytes())));

        let body = match read_body_capped(response, self.max_body_size).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                return Err(answered(ClientError::BodyTooLarge {
                    limit: self.max_body_size,
                    ids,
                }));
            }
            Err(BodyError::Transport(err)) => return Err(answered(self.transport_error(&err))),
        };

        if status.is_success() {
            if let Some(content_type) = content_type.filter(|value| !is_json(value)) {
                return Err(answered(ClientError::NotJson { content_type, ids }));
            }
            return Ok((body, ids));
        }
        let detail = Box::new(ErrorDetail::from_body(&body));
        Err(answered(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ClientError::Unauthorized {
                status,
                detail,
                ids,
            },
            StatusCode::TOO_MANY_REQUESTS => {
                // Held back for every source, as long as Partner Center asked;
                // when it did not say, for the shortest first retry's wait
                // (the backoff less its jitter), which delays no retry here.
                let hold = retry_after
                    .unwrap_or(self.retry.initial_backoff / 2)
                    .min(self.retry.max_retry_after);
                self.throttle.hold_until(Instant::now() + hold);
                ClientError::Throttled {
                    retry_after,
                    detail,
                    ids,
                }
            }
            _ => ClientError::Status {
                status,
                detail,
                ids,
            },
        }))
    }

    fn transport_error(&self, err: &reqwest::Error) -> ClientError {
        if err.is_connect() && err.is_timeout() {
            ClientError::Timeout(self.connect_timeout)
        } else if err.is_timeout() {
            ClientError::Timeout(self.request_timeout)
        } else {
            ClientError::Network(error_chain(err))
        }
    }
}

/// One page's request, as sent on every try.
pub(super) struct PageRequest<'a> {
    pub(super) url: Url,
    pub(super) correlation_id: Uuid,
    /// Headers `links.next` asked for.
    pub(super) extra_headers: &'a [(String, String)],
}

/// A failed try, and whether Partner Center had answered it (which decides
/// whether a retry may reuse the `MS-RequestId`).
struct Failed {
    error: ClientError,
    answered: bool,
}

impl Failed {
    fn before_sending(error: impl Into<ClientError>) -> Self {
        Self {
            error: error.into(),
            answered: false,
        }
    }
}

/// A failed try of one page and the `MS-RequestId` it was sent with, which
/// a retry reuses when Partner Center did not answer.
struct FailedTry {
    failed: Failed,
    request_id: Uuid,
}

/// Records a 429 in `trace`: the longest `Retry-After` seen, or zero when
/// Partner Center gave none.
fn note_throttling(trace: &mut FetchTrace, error: &ClientError) {
    if let ClientError::Throttled { retry_after, .. } = error {
        let asked = retry_after.unwrap_or(Duration::ZERO);
        trace.throttled = Some(trace.throttled.map_or(asked, |seen| seen.max(asked)));
    }
}

/// Whether a `Content-Type` announces JSON: `application/json`,
/// `text/json`, or any `+json` type, whatever the parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

fn bearer(token: &Secret) -> Result<HeaderValue, ClientError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        // Deliberately no detail: the message must not echo the token.
        .map_err(|_| {
            ClientError::Setup(
                "the access token contains characters not allowed in an HTTP header".to_owned(),
            )
        })?;
    value.set_sensitive(true);
    Ok(value)
}

/// What to do about a refused token, when Partner Center's code says.
fn unauthorized_advice(detail: &ErrorDetail) -> &'static str {
    if detail.code.as_deref() == Some(MFA_REQUIRED_CODE) {
        "; the token lacks the multi-factor authentication claim Partner Center requires: \
         run `partner-center-exporter login` again and complete the MFA prompt"
    } else {
        ""
    }
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// Upstream text bound for a log line.
fn sanitize(text: &str) -> String {
    crate::upstream::one_line(text, MAX_DESCRIPTION_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Client {
        let config = PartnerCenterConfig {
            base_url: Url::parse(base).expect("url"),
            ..PartnerCenterConfig::default()
        };
        Client::new(&config).expect("client")
    }

    #[test]
    fn first_page_url_keeps_a_base_path() {
        let path = "v1/analytics/licenses/usage";
        assert_eq!(
            client("https://api.partnercenter.microsoft.com")
                .url_of(path)
                .expect("url")
                .as_str(),
            "https://api.partnercenter.microsoft.com/v1/analytics/licenses/usage"
        );
        assert_eq!(
            client("http://127.0.0.1:8080/proxy/")
                .url_of(path)
                .expect("url")
                .as_str(),
            "http://127.0.0.1:8080/proxy/v1/analytics/licenses/usage"
        );
    }

    #[test]
    fn next_links_resolve_like_the_sdk() {
        let client = client("http://127.0.0.1:8080/proxy");
        let resolve = |uri: &str| client.resolve_next(uri).map(|url| url.to_string());
        assert_eq!(
            resolve("/v1/analytics/licenses/usage?seek=2").expect("ok"),
            "http://127.0.0.1:8080/proxy/v1/analytics/licenses/usage?seek=2"
        );
        assert_eq!(
            resolve("analytics/licenses/usage?seek=2").expect("ok"),
            "http://127.0.0.1:8080/proxy/v1/analytics/licenses/usage?seek=2"
        );
        assert_eq!(
            resolve("/analytics/licenses/usage").expect("ok"),
            "http://127.0.0.1:8080/proxy/v1/analytics/licenses/usage"
        );
        assert_eq!(
            resolve("http://127.0.0.1:8080/other?x=1").expect("same origin"),
            "http://127.0.0.1:8080/other?x=1"
        );
        let err = resolve("https://evil.example/v1/steal").expect_err("other origin");
        assert_eq!(err.kind(), FailureReason::Paging);
    }

    #[test]
    fn retry_after_as_seconds_or_date() {
        assert_eq!(parse_retry_after("57"), Some(Duration::from_secs(57)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let wait = parse_retry_after(&later).expect("date");
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn error_bodies_of_both_shapes() {
        let documented = ErrorDetail::from_body(
            br#"{"code": 20002, "description": "Invalid tenant", "data": [], "source": "PartnerFD"}"#,
        );
        assert_eq!(documented.code.as_deref(), Some("20002"));
        assert_eq!(documented.description.as_deref(), Some("Invalid tenant"));
        let throttled = ErrorDetail::from_body(
            br#"{"statusCode":429,"message":"Rate limit is exceeded. Try again in 57 seconds."}"#,
        );
        assert_eq!(throttled.code.as_deref(), Some("429"));
        assert_eq!(
            throttled.to_string(),
            ": code 429: Rate limit is exceeded. Try again in 57 seconds."
        );
        assert_eq!(
            ErrorDetail::from_body(b"<html>oops</html>"),
            ErrorDetail::default()
        );
        let noisy = ErrorDetail::from_body(
            format!(r#"{{"description": "line\nbreak{}"}}"#, "x".repeat(2000)).as_bytes(),
        );
        let description = noisy.description.expect("kept");
        assert!(!description.contains('\n'));
        assert!(description.chars().count() <= MAX_DESCRIPTION_CHARS + 1);
    }

    #[test]
    fn token_with_a_line_break_fails_without_echoing_it() {
        let err = bearer(&Secret::new("abc\ndef")).expect_err("invalid header");
        assert!(!err.to_string().contains("abc"), "{err}");
    }
}
