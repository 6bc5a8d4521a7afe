//! The configuration file: its schema, defaults, loading and validation.
//!
//! Every key is documented in `config/partner-center-exporter.example.yml`.
//! Loading refuses unknown keys, wrong types, unparsable durations and
//! unusable files with a message that names the key, so `--config.check`
//! and startup report the same thing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use reqwest::header::HeaderValue;
use serde::{Deserialize, Deserializer};

use crate::filters::{FilterSettings, Filters};
use crate::secret::Secret;
use crate::sources::SourceName;
use crate::token_file::read_token_file_blocking;

mod tenants;

pub use tenants::TenantConfig;

/// Where the exporter looks for its configuration when `--config.file` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "config/partner-center-exporter.yml";

/// The global Partner Center REST API.
pub const DEFAULT_BASE_URL: &str = "https://api.partnercenter.microsoft.com";

/// Polling more often than this gains nothing and spends the tenant's rate limit.
pub const MIN_SENSIBLE_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// The environment variable that may hold the client secret instead of `auth.client_secret_file`.
pub const CLIENT_SECRET_ENV: &str = "PARTNER_CENTER_CLIENT_SECRET";

/// The environment variable that may hold the first refresh token instead of `auth.refresh_token_file`.
pub const REFRESH_TOKEN_ENV: &str = "PARTNER_CENTER_REFRESH_TOKEN";

/// The Entra ID authority of Microsoft's global cloud.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// Partner Center's identifier in Entra ID: the `resource` of v1 token
/// requests and the prefix of v2 scopes.
pub const DEFAULT_RESOURCE: &str = "https://api.partnercenter.microsoft.com";

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How to reach the Partner Center API.
    #[serde(default)]
    pub partner_center: PartnerCenterConfig,
    /// How to authenticate to it; required, since every endpoint needs a token.
    pub auth: AuthConfig,
    /// When and how long to poll.
    #[serde(default)]
    pub poll: PollConfig,
    /// Which Partner Center datasets are polled, and how often.
    #[serde(default)]
    pub sources: SourcesConfig,
    /// Which customers the per-customer sources cover.
    #[serde(default)]
    pub customers: CustomersConfig,
    /// Which SKUs `customer_licenses` leaves out.
    #[serde(default)]
    pub skus: SkusConfig,
    /// Which subscriptions `subscriptions` publishes.
    #[serde(default)]
    pub subscriptions: SubscriptionsConfig,
    /// Where rotated refresh tokens are kept across restarts. Without it a
    /// rotated token lives in memory only.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// The partner tenants of a file with `tenants`, in file order, each
    /// with its effective configuration. Empty for a file without
    /// `tenants`, whose one tenant is this configuration itself; use
    /// [`Config::tenant_configs`] to treat both alike.
    ///
    /// With tenants, the sections above are the defaults the tenants
    /// inherit and `auth` is empty: nothing should poll with them.
    #[serde(skip)]
    pub tenants: Vec<TenantConfig>,
}

/// The `partner_center` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerCenterConfig {
    /// API root; sovereign clouds and test doubles have their own.
    #[serde(default = "default_base_url", deserialize_with = "deserialize_url")]
    pub base_url: Url,
    /// Sent as `MS-PartnerCenter-Application`, so Microsoft support can tell our calls apart.
    #[serde(default = "default_application_name")]
    pub application_name: String,
    /// Sent as `X-Locale`.
    #[serde(default = "default_locale")]
    pub locale: String,
    /// Limit for one HTTP request, connection included.
    #[serde(default = "default_request_timeout", with = "humantime_duration")]
    pub request_timeout: Duration,
    /// Most pages fetched in one poll, the first included; a longer
    /// collection fails the poll rather than being published truncated.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// Limit for establishing the TCP and TLS connection, within `request_timeout`.
    #[serde(default = "default_connect_timeout", with = "humantime_duration")]
    pub connect_timeout: Duration,
    /// Largest response body accepted, enforced while it streams in, so a
    /// huge or endless answer fails the poll instead of exhausting memory.
    #[serde(default = "default_max_body_size", with = "byte_size")]
    pub max_body_size: u64,
    /// Further tries of a request after a timeout, a network error, 408,
    /// 429 or a 5xx answer; 0 turns retrying off.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Wait before the first retry; it doubles for each further one, with jitter.
    #[serde(default = "default_retry_backoff", with = "humantime_duration")]
    pub retry_backoff: Duration,
    /// Longest `Retry-After` obeyed; a longer one is taken as this long.
    #[serde(default = "default_max_retry_after", with = "humantime_duration")]
    pub max_retry_after: Duration,
    /// This partner tenant's request budget, every source together:
    /// requests are spaced so that no minute holds more. The tenant's
    /// limits are shared with every other tool of the partner; 0 turns the
    /// budget off.
    #[serde(default = "default_max_requests_per_minute")]
    pub max_requests_per_minute: u32,
    /// Most requests to Partner Center in flight at once, every source together.
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: u32,
    /// Where the commercial analytics reports live: Microsoft's pages name
    /// both `/partner/v1/analytics/commercial/…` and `/v1/analytics/commercial/…`.
    /// `auto` tries the first, falls back to the second on 404 and keeps
    /// what answered.
    #[serde(default)]
    pub commercial_api_prefix: CommercialApiPrefix,
    /// Rows per page of a commercial analytics report (its `top`); 10000
    /// is both the default and the most Partner Center allows.
    #[serde(default = "default_commercial_page_size")]
    pub commercial_page_size: u32,
}

/// `partner_center.commercial_api_prefix`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum CommercialApiPrefix {
    /// `/partner/v1` first, then `/v1` after a 404.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "/partner/v1")]
    PartnerV1,
    #[serde(rename = "/v1")]
    V1,
}

/// The largest `top` the commercial analytics API accepts.
pub const MAX_COMMERCIAL_PAGE_SIZE: u32 = 10_000;

fn default_commercial_page_size() -> u32 {
    MAX_COMMERCIAL_PAGE_SIZE
}

/// The `auth` section as written. Exactly one method must be set; which
/// one, and whether it is complete, is decided by [`AuthConfig::method`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// A file holding a ready access token, re-read before every poll so an
    /// external tool can renew it.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// The partner's Entra ID tenant: a GUID or a domain name.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// The Application (client) ID of the app registration.
    #[serde(default)]
    pub client_id: Option<String>,
    /// A file holding the app registration's client secret.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// A file holding the first refresh token; never written to.
    #[serde(default)]
    pub refresh_token_file: Option<PathBuf>,
    /// Entra ID's root URL; sovereign clouds have their own.
    #[serde(default, deserialize_with = "deserialize_optional_url")]
    pub authority: Option<Url>,
    /// Which Entra ID token endpoint to use; v1 unless set.
    #[serde(default)]
    pub token_endpoint: Option<TokenEndpointVersion>,
    /// Partner Center's identifier in Entra ID.
    #[serde(default)]
    pub resource: Option<String>,
    /// Secrets taken from the environment when the configuration was loaded;
    /// never part of the file.
    #[serde(skip)]
    pub environment: SecretEnvironment,
}

/// Secrets passed as environment variables, for containers that cannot mount files.
#[derive(Debug, Clone, Default)]
pub struct SecretEnvironment {
    /// The value of [`CLIENT_SECRET_ENV`], if set and not empty.
    pub client_secret: Option<Secret>,
    /// The value of [`REFRESH_TOKEN_ENV`], if set and not empty.
    pub refresh_token: Option<Secret>,
}

impl SecretEnvironment {
    /// Reads the secret variables through `lookup` (the process environment in production).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let read = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
                .map(Secret::new)
        };
        Self {
            client_secret: read(CLIENT_SECRET_ENV),
            refresh_token: read(REFRESH_TOKEN_ENV),
        }
    }
}

/// The Entra ID token endpoint flavour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenEndpointVersion {
    /// `{authority}/{tenant}/oauth2/token` with `resource=`.
    #[default]
    V1,
    /// `{authority}/{tenant}/oauth2/v2.0/token` with `scope=`.
    V2,
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file, re-read whenever the secret is needed, so it can be replaced
    /// without a restart.
    File(PathBuf),
    /// An environment variable, read once at startup.
    Environment {
        /// The variable's name, for messages.
        name: &'static str,
        /// Its value.
        value: Secret,
    },
}

/// The configured authentication method, complete and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// A ready access token in a file.
    BearerTokenFile(PathBuf),
    /// App+User: access tokens redeemed from a refresh token at Entra ID.
    RefreshToken(Box<RefreshTokenSettings>),
}

/// Everything the App+User refresh-token method needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenSettings {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: SecretSource,
    /// The configured refresh token; `None` when only `state_dir` holds one
    /// (stored there by the `login` command).
    pub refresh_token: Option<SecretSource>,
    /// Entra ID's root URL, without a trailing slash.
    pub authority: Url,
    pub token_endpoint: TokenEndpointVersion,
    /// Partner Center's identifier in Entra ID.
    pub resource: String,
}

/// The keys of the App+User method, for messages.
const REFRESH_TOKEN_METHOD_KEYS: [&str; 7] = [
    "tenant_id",
    "client_id",
    "client_secret_file",
    "refresh_token_file",
    "authority",
    "token_endpoint",
    "resource",
];

impl AuthConfig {
    /// The one configured method, or the key that is wrong and why.
    ///
    /// Checks the shape only; files are read by [`Config::validate`].
    pub fn method(&self) -> Result<AuthMethod, (&'static str, String)> {
        let refresh_keys_set: Vec<&str> = REFRESH_TOKEN_METHOD_KEYS
            .iter()
            .copied()
            .filter(|key| self.is_set(key))
            .collect();
        match (&self.bearer_token_file, refresh_keys_set.is_empty()) {
            (Some(_), false) => Err((
                "auth",
                format!(
                    "bearer_token_file and {} belong to two different methods; configure exactly one",
                    refresh_keys_set
                        .iter()
                        .map(|key| format!("auth.{key}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
            (Some(file), true) => Ok(AuthMethod::BearerTokenFile(file.clone())),
            (None, true) => Err((
                "auth",
                "no authentication method is configured; set auth.tenant_id, auth.client_id, \
                 auth.client_secret_file and auth.refresh_token_file (App+User, see README), \
                 or auth.bearer_token_file"
                    .to_owned(),
            )),
            (None, false) => self
                .refresh_token_method()
                .map(|settings| AuthMethod::RefreshToken(Box::new(settings))),
        }
    }

    fn is_set(&self, key: &str) -> bool {
        match key {
            "tenant_id" => self.tenant_id.is_some(),
            "client_id" => self.client_id.is_some(),
            "client_secret_file" => self.client_secret_file.is_some(),
            "refresh_token_file" => self.refresh_token_file.is_some(),
            "authority" => self.authority.is_some(),
            "token_endpoint" => self.token_endpoint.is_some(),
            "resource" => self.resource.is_some(),
            _ => false,
        }
    }

    fn refresh_token_method(&self) -> Result<RefreshTokenSettings, (&'static str, String)> {
        let tenant_id = self
            .tenant_id
            .as_deref()
            .map(str::trim)
            .ok_or(("auth.tenant_id", required_for_app_user()))?;
        check_tenant_id(tenant_id).map_err(|message| ("auth.tenant_id", message))?;
        let client_id = self
            .client_id
            .as_deref()
            .map(str::trim)
            .ok_or(("auth.client_id", required_for_app_user()))?;
        if uuid::Uuid::parse_str(client_id).is_err() {
            return Err((
                "auth.client_id",
                format!(
                    "{client_id:?} is not a GUID; use the app registration's Application (client) ID"
                ),
            ));
        }
        let client_secret = match (&self.client_secret_file, &self.environment.client_secret) {
            (Some(_), Some(_)) => {
                return Err((
                    "auth.client_secret_file",
                    format!("is set and so is {CLIENT_SECRET_ENV}; use one of them"),
                ));
            }
            (Some(file), None) => SecretSource::File(file.clone()),
            (None, Some(value)) => SecretSource::Environment {
                name: CLIENT_SECRET_ENV,
                value: value.clone(),
            },
            (None, None) => {
                return Err((
                    "auth.client_secret_file",
                    format!("{} (or set {CLIENT_SECRET_ENV})", required_for_app_user()),
                ));
            }
        };
        let refresh_token = match (&self.refresh_token_file, &self.environment.refresh_token) {
            (Some(_), Some(_)) => {
                return Err((
                    "auth.refresh_token_file",
                    format!("is set and so is {REFRESH_TOKEN_ENV}; use one of them"),
                ));
            }
            (Some(file), None) => Some(SecretSource::File(file.clone())),
            (None, Some(value)) => Some(SecretSource::Environment {
                name: REFRESH_TOKEN_ENV,
                value: value.clone(),
            }),
            (None, None) => None,
        };
        let authority = match &self.authority {
            Some(url) => {
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err((
                        "auth.authority",
                        format!("{url} is not an http(s) URL with a host"),
                    ));
                }
                if !url.username().is_empty()
                    || url.password().is_some()
                    || url.query().is_some()
                    || url.fragment().is_some()
                {
                    return Err((
                        "auth.authority",
                        "must be a plain URL, without user name, password, query or fragment"
                            .to_owned(),
                    ));
                }
                url.clone()
            }
            None => Url::parse(DEFAULT_AUTHORITY)
                .unwrap_or_else(|_| unreachable!("DEFAULT_AUTHORITY is a valid URL")),
        };
        let resource = self
            .resource
            .as_deref()
            .map(str::trim)
            .unwrap_or(DEFAULT_RESOURCE)
            .trim_end_matches('/')
            .to_owned();
        if Url::parse(&resource).is_err() {
            return Err((
                "auth.resource",
                format!("{resource:?} is not a URL like {DEFAULT_RESOURCE}"),
            ));
        }
        Ok(RefreshTokenSettings {
            tenant_id: tenant_id.to_owned(),
            client_id: client_id.to_ascii_lowercase(),
            client_secret,
            refresh_token,
            authority,
            token_endpoint: self.token_endpoint.unwrap_or_default(),
            resource,
        })
    }
}

fn required_for_app_user() -> String {
    "is required for the App+User refresh-token method".to_owned()
}

/// A tenant is named by its GUID or one of its domain names; either goes
/// into the token endpoint's path, so nothing else is accepted.
fn check_tenant_id(tenant_id: &str) -> Result<(), String> {
    let looks_like_domain = tenant_id.contains('.')
        && tenant_id.split('.').all(|part| {
            !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if uuid::Uuid::parse_str(tenant_id).is_ok() || looks_like_domain {
        Ok(())
    } else {
        Err(format!(
            "{tenant_id:?} is neither a tenant GUID nor a domain name like contoso.onmicrosoft.com"
        ))
    }
}

/// The `poll` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollConfig {
    /// Time between the starts of two polls.
    #[serde(default = "default_poll_interval", with = "humantime_duration")]
    pub interval: Duration,
    /// Limit for a whole poll: token, every page, decoding.
    #[serde(default = "default_poll_timeout", with = "humantime_duration")]
    pub timeout: Duration,
    /// After this long without a successful poll, the license series are
    /// withdrawn from `/metrics` rather than served as if current. Off
    /// unless set.
    #[serde(default, with = "optional_humantime_duration")]
    pub max_staleness: Option<Duration>,
}

/// The `sources` section: an entry per dataset, each optional; a source
/// without one gets its defaults (on, on `poll.interval`, for the
/// partner-level sources; off for the per-customer ones). An unknown name
/// is refused, naming the known ones.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct SourcesConfig(BTreeMap<SourceName, SourceEntry>);

impl SourcesConfig {
    /// The settings of `source`: its entry over the source's defaults.
    pub fn get(&self, source: SourceName) -> SourceConfig {
        let entry = self.0.get(&source).cloned().unwrap_or_default();
        SourceConfig {
            enabled: entry.enabled.unwrap_or(source.enabled_by_default()),
            interval: entry.interval.or(source.default_interval()),
        }
    }

    /// The entry of `source` as written, made empty if there is none.
    pub fn entry(&mut self, source: SourceName) -> &mut SourceEntry {
        self.0.entry(source).or_default()
    }

    /// Every source and its settings, in the order of the table of sources.
    pub fn entries(&self) -> impl Iterator<Item = (SourceName, SourceConfig)> + '_ {
        SourceName::ALL
            .iter()
            .map(|source| (*source, self.get(*source)))
    }

    /// Whether any source of per-customer data is enabled.
    pub fn any_per_customer(&self) -> bool {
        self.entries()
            .any(|(source, settings)| settings.enabled && source.is_per_customer())
    }
}

/// One entry of `sources`, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceEntry {
    /// Whether the source is polled at all; the source's default unless set.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Time between the starts of two polls of this source; the source's
    /// default, else `poll.interval`, unless set.
    #[serde(default, with = "optional_humantime_duration")]
    pub interval: Option<Duration>,
}

/// A source's settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    pub enabled: bool,
    /// Its own interval, if it has one; else `poll.interval`.
    pub interval: Option<Duration>,
}

impl SourceConfig {
    /// The interval in force: its own, or `poll.interval`.
    pub fn interval_or(&self, poll: &PollConfig) -> Duration {
        self.interval.unwrap_or(poll.interval)
    }
}

/// The `customers` section: which customers the per-customer sources
/// cover, and how the customer listing is paged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomersConfig {
    /// Customer tenant IDs or company-name globs; empty means every customer.
    #[serde(default)]
    pub include: Vec<String>,
    /// The same, left out even when included.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Customers per page of `GET /v1/customers` (its `size`). Partner
    /// Center documents no maximum; a larger page costs fewer requests.
    #[serde(default = "default_customer_page_size")]
    pub page_size: u32,
}

impl Default for CustomersConfig {
    fn default() -> Self {
        Self {
            include: Vec::new(),
            exclude: Vec::new(),
            page_size: default_customer_page_size(),
        }
    }
}

/// The `skus` section: which of a customer's SKUs `customer_licenses` publishes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkusConfig {
    /// `skuPartNumber` globs left out, such as `FLOW_FREE` or `STREAM`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// A SKU with this many units or more (active + warning) is a free or
    /// viral one, with no licences really bought: left out. 0 turns this off.
    #[serde(default = "default_max_units")]
    pub max_units: u64,
}

impl Default for SkusConfig {
    fn default() -> Self {
        Self {
            exclude: Vec::new(),
            max_units: default_max_units(),
        }
    }
}

/// The `subscriptions` section: which subscriptions the `subscriptions`
/// source publishes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionsConfig {
    /// The statuses published; expired, disabled and deleted ones cost
    /// nothing any more and would only add series.
    #[serde(default = "default_subscription_statuses")]
    pub statuses: Vec<String>,
}

impl Default for SubscriptionsConfig {
    fn default() -> Self {
        Self {
            statuses: default_subscription_statuses(),
        }
    }
}

fn default_subscription_statuses() -> Vec<String> {
    ["active", "suspended", "pending"]
        .map(str::to_owned)
        .to_vec()
}

fn default_customer_page_size() -> u32 {
    100
}

fn default_max_units() -> u64 {
    10_000
}

impl Default for PartnerCenterConfig {
    fn default() -> Self {
        Self {
            base_url: default_base_url(),
            application_name: default_application_name(),
            locale: default_locale(),
            request_timeout: default_request_timeout(),
            max_pages: default_max_pages(),
            connect_timeout: default_connect_timeout(),
            max_body_size: default_max_body_size(),
            max_retries: default_max_retries(),
            retry_backoff: default_retry_backoff(),
            max_retry_after: default_max_retry_after(),
            max_requests_per_minute: default_max_requests_per_minute(),
            max_concurrent_requests: default_max_concurrent_requests(),
            commercial_api_prefix: CommercialApiPrefix::default(),
            commercial_page_size: default_commercial_page_size(),
        }
    }
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            interval: default_poll_interval(),
            timeout: default_poll_timeout(),
            max_staleness: None,
        }
    }
}

fn default_base_url() -> Url {
    // A constant that is known to parse.
    Url::parse(DEFAULT_BASE_URL).unwrap_or_else(|_| unreachable!("DEFAULT_BASE_URL is a valid URL"))
}

fn default_application_name() -> String {
    "partner-center-exporter".to_owned()
}

fn default_locale() -> String {
    "en-US".to_owned()
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_max_pages() -> u32 {
    100
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

/// 64 MiB: far above any real answer (a page of this collection is a few
/// kilobytes), low enough that a runaway body cannot exhaust memory.
fn default_max_body_size() -> u64 {
    64 * 1024 * 1024
}

/// Three retries, as Microsoft's Partner Center SDK does.
fn default_max_retries() -> u32 {
    3
}

/// The SDK's first wait; with doubling, the waits are about 0.5 s, 1 s, 2 s.
fn default_retry_backoff() -> Duration {
    Duration::from_millis(500)
}

/// Partner Center's throttling answers ask for about a minute.
fn default_max_retry_after() -> Duration {
    Duration::from_secs(2 * 60)
}

fn default_max_requests_per_minute() -> u32 {
    300
}

fn default_max_concurrent_requests() -> u32 {
    4
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_poll_timeout() -> Duration {
    Duration::from_secs(2 * 60)
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The YAML did not fit the schema; the message names the key and its line.
    #[error("{}: {message}", path.display())]
    Schema { path: PathBuf, message: String },
    /// A value parsed but is not usable.
    #[error("{}: {key}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
    /// One entry of `tenants`, or the configuration it makes, was refused;
    /// `message` names the key, as [`ConfigError::Schema`] and
    /// [`ConfigError::Invalid`] do.
    #[error("{}: tenants[{index}] ({name}): {message}", path.display())]
    Tenant {
        path: PathBuf,
        /// The entry's position in `tenants`, from 0.
        index: usize,
        /// Its `name`.
        name: String,
        message: String,
    },
}

impl ConfigError {
    /// The message without the file's name in front, for an error that
    /// is reported as part of another.
    fn detail(&self) -> String {
        match self {
            Self::Read { .. } => self.to_string(),
            Self::Schema { message, .. } => message.clone(),
            Self::Invalid { key, message, .. } => format!("{key}: {message}"),
            Self::Tenant {
                index,
                name,
                message,
                ..
            } => format!("tenants[{index}] ({name}): {message}"),
        }
    }
}

impl Config {
    /// Reads, parses and validates a configuration file.
    ///
    /// Relative paths inside it are taken relative to the file's own
    /// directory, as Prometheus does, so the outcome does not depend on the
    /// working directory.
    ///
    /// The secrets' environment variables ([`CLIENT_SECRET_ENV`],
    /// [`REFRESH_TOKEN_ENV`]) are read from the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let environment = SecretEnvironment::from_lookup(|name| std::env::var(name).ok());
        Self::from_yaml_with_environment(&text, path, environment)
    }

    /// Parses and validates configuration text that was read from `path`,
    /// with no secrets from the environment.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::from_yaml_with_environment(text, path, SecretEnvironment::default())
    }

    /// Parses and validates configuration text that was read from `path`,
    /// with the given secrets from the environment.
    ///
    /// A file with `tenants` is read by the `tenants` module, every other
    /// file as it always was, so that its errors stay the same.
    pub fn from_yaml_with_environment(
        text: &str,
        path: &Path,
        environment: SecretEnvironment,
    ) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError::Schema {
                path: path.to_owned(),
                message: "the file is empty; at least the `auth` section is required".to_owned(),
            });
        }
        if let Some(document) = tenants::tenants_document(text) {
            return tenants::load(text, document, path, environment);
        }
        // serde_path_to_error names the exact key (`poll.interval`) where
        // the YAML reader alone would only name its section.
        let mut config: Config = serde_path_to_error::deserialize(
            serde_yaml_ng::Deserializer::from_str(text),
        )
        .map_err(|err| ConfigError::Schema {
            path: path.to_owned(),
            message: schema_message(&err),
        })?;
        config.auth.environment = environment;
        let base_dir = path.parent().unwrap_or_else(|| Path::new(""));
        config.resolve_paths(base_dir);
        config.validate(path)?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base_dir: &Path) {
        for path in [
            &mut self.auth.bearer_token_file,
            &mut self.auth.client_secret_file,
            &mut self.auth.refresh_token_file,
            &mut self.state_dir,
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = base_dir.join(&*path);
            }
        }
    }

    /// Checks what the schema alone cannot: value ranges, header-safe
    /// strings, and that the configured credential files can be read.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        let base_url = &self.partner_center.base_url;
        if !matches!(base_url.scheme(), "http" | "https") || base_url.host_str().is_none() {
            return Err(invalid(
                "partner_center.base_url",
                format!("{base_url} is not an http(s) URL with a host"),
            ));
        }
        if !base_url.username().is_empty() || base_url.password().is_some() {
            return Err(invalid(
                "partner_center.base_url",
                "must not carry a user name or password; credentials belong in `auth`".to_owned(),
            ));
        }
        if base_url.query().is_some() || base_url.fragment().is_some() {
            return Err(invalid(
                "partner_center.base_url",
                "must not carry a query or fragment".to_owned(),
            ));
        }
        check_header_value(&self.partner_center.application_name)
            .map_err(|message| invalid("partner_center.application_name", message))?;
        check_header_value(&self.partner_center.locale)
            .map_err(|message| invalid("partner_center.locale", message))?;
        if self.partner_center.request_timeout.is_zero() {
            return Err(invalid(
                "partner_center.request_timeout",
                "must be longer than 0s".to_owned(),
            ));
        }
        if self.partner_center.max_concurrent_requests == 0 {
            return Err(invalid(
                "partner_center.max_concurrent_requests",
                "must be at least 1".to_owned(),
            ));
        }
        if !(1..=MAX_COMMERCIAL_PAGE_SIZE).contains(&self.partner_center.commercial_page_size) {
            return Err(invalid(
                "partner_center.commercial_page_size",
                format!("must be between 1 and {MAX_COMMERCIAL_PAGE_SIZE}"),
            ));
        }
        if self.customers.page_size == 0 {
            return Err(invalid(
                "customers.page_size",
                "must be at least 1".to_owned(),
            ));
        }
        if self.subscriptions.statuses.is_empty() {
            return Err(invalid(
                "subscriptions.statuses",
                "must name at least one status".to_owned(),
            ));
        }
        self.filters()
            .map_err(|(key, message)| invalid(key, message))?;
        if self.partner_center.max_pages == 0 {
            return Err(invalid(
                "partner_center.max_pages",
                "must be at least 1".to_owned(),
            ));
        }
        if self.poll.interval.is_zero() {
            return Err(invalid(
                "poll.interval",
                "must be longer than 0s".to_owned(),
            ));
        }
        if self.poll.timeout.is_zero() {
            return Err(invalid("poll.timeout", "must be longer than 0s".to_owned()));
        }
        if self.partner_center.connect_timeout.is_zero() {
            return Err(invalid(
                "partner_center.connect_timeout",
                "must be longer than 0s".to_owned(),
            ));
        }
        if self.partner_center.max_body_size < MIN_BODY_SIZE {
            return Err(invalid(
                "partner_center.max_body_size",
                format!("must be at least {MIN_BODY_SIZE} bytes (1KiB)"),
            ));
        }
        for (name, source) in self.sources.entries() {
            if source.interval.is_some_and(|interval| interval.is_zero()) {
                return Err(invalid(
                    name.interval_key(),
                    "must be longer than 0s".to_owned(),
                ));
            }
        }
        if !self.sources.entries().any(|(_, source)| source.enabled) {
            return Err(invalid(
                "sources",
                "every source is disabled; enable at least one".to_owned(),
            ));
        }
        if let Some((name, longest)) = self
            .sources
            .entries()
            .filter(|(_, source)| source.enabled && source.interval.is_some())
            .map(|(name, source)| (name, source.interval_or(&self.poll)))
            .max_by_key(|(_, interval)| *interval)
            && self
                .poll
                .max_staleness
                .is_some_and(|staleness| staleness < longest)
        {
            return Err(invalid(
                "poll.max_staleness",
                format!(
                    "must be at least sources.{name}.interval ({}), or every gap between two polls would withdraw its series",
                    humantime::format_duration(longest)
                ),
            ));
        }
        if self
            .poll
            .max_staleness
            .is_some_and(|staleness| staleness < self.poll.interval)
        {
            return Err(invalid(
                "poll.max_staleness",
                "must be at least poll.interval, or every gap between two polls would withdraw the series".to_owned(),
            ));
        }
        if self
            .state_dir
            .as_ref()
            .is_some_and(|dir| dir.as_os_str().is_empty())
        {
            return Err(invalid("state_dir", "must not be empty".to_owned()));
        }
        match self
            .auth
            .method()
            .map_err(|(key, message)| invalid(key, message))?
        {
            AuthMethod::BearerTokenFile(file) => read_token_file_blocking(&file)
                .map(drop)
                .map_err(|err| invalid("auth.bearer_token_file", err.to_string())),
            AuthMethod::RefreshToken(settings) => {
                if let SecretSource::File(file) = &settings.client_secret {
                    read_token_file_blocking(file)
                        .map_err(|err| invalid("auth.client_secret_file", err.to_string()))?;
                }
                if let Some(SecretSource::File(file)) = &settings.refresh_token {
                    read_token_file_blocking(file)
                        .map_err(|err| invalid("auth.refresh_token_file", err.to_string()))?;
                }
                if settings.refresh_token.is_none() && self.state_dir.is_none() {
                    return Err(invalid(
                        "auth.refresh_token_file",
                        format!(
                            "{} unless state_dir is set for `partner-center-exporter login` to store one in (or set {REFRESH_TOKEN_ENV})",
                            required_for_app_user()
                        ),
                    ));
                }
                Ok(())
            }
        }
    }
}

impl Config {
    /// Whether the file lists `tenants` (even a single one), so that every
    /// series carries a `tenant` label.
    pub fn is_multi_tenant(&self) -> bool {
        !self.tenants.is_empty()
    }

    /// The configuration of each partner tenant to poll, in file order:
    /// `[(None, self)]` for a file without `tenants`, else each tenant's
    /// name and effective configuration.
    pub fn tenant_configs(&self) -> Vec<(Option<&str>, &Config)> {
        if self.tenants.is_empty() {
            vec![(None, self)]
        } else {
            self.tenants
                .iter()
                .map(|tenant| (Some(tenant.name.as_str()), &tenant.config))
                .collect()
        }
    }

    /// The customer and SKU filters, compiled.
    pub fn filters(&self) -> Result<Filters, (&'static str, String)> {
        Filters::new(FilterSettings {
            include: &self.customers.include,
            exclude: &self.customers.exclude,
            sku_exclude: &self.skus.exclude,
            max_units: self.skus.max_units,
            subscription_statuses: &self.subscriptions.statuses,
        })
    }

    /// Settings that work but are probably not what the operator wants.
    ///
    /// With `tenants`, those of the shared `poll` section come once, and
    /// each tenant's others follow with `tenant NAME: ` in front.
    pub fn warnings(&self) -> Vec<String> {
        if self.tenants.is_empty() {
            return self.warnings_of(true);
        }
        let mut warnings = self.poll_warnings();
        for tenant in &self.tenants {
            warnings.extend(
                tenant
                    .config
                    .warnings_of(false)
                    .into_iter()
                    .map(|warning| format!("tenant {}: {warning}", tenant.name)),
            );
        }
        warnings
    }

    /// The warnings of this one configuration; those of `poll` only if
    /// `with_poll`, since tenants share it.
    fn warnings_of(&self, with_poll: bool) -> Vec<String> {
        let mut warnings = Vec::new();
        let base_url = &self.partner_center.base_url;
        if base_url.scheme() == "http" && !is_loopback(base_url) {
            warnings.push(format!(
                "partner_center.base_url {base_url} is plain http: the access token travels unencrypted"
            ));
        }
        if let Ok(AuthMethod::RefreshToken(settings)) = self.auth.method() {
            if settings.authority.scheme() == "http" && !is_loopback(&settings.authority) {
                warnings.push(format!(
                    "auth.authority {} is plain http: the client secret and refresh token travel unencrypted",
                    settings.authority
                ));
            }
            if self.state_dir.is_none() {
                warnings.push(
                    "state_dir is not set: rotated refresh tokens are kept in memory only, \
                     and the configured one stops working 90 days after it was issued"
                        .to_owned(),
                );
            }
        }
        if self.auth.bearer_token_file.is_some() {
            for (name, set) in [
                (
                    CLIENT_SECRET_ENV,
                    self.auth.environment.client_secret.is_some(),
                ),
                (
                    REFRESH_TOKEN_ENV,
                    self.auth.environment.refresh_token.is_some(),
                ),
            ] {
                if set {
                    warnings.push(format!(
                        "{name} is set but auth uses bearer_token_file; the variable is ignored"
                    ));
                }
            }
        }
        if with_poll {
            warnings.extend(self.poll_warnings());
        }
        for (name, source) in self.sources.entries() {
            if let Some(interval) = source
                .interval
                .filter(|interval| source.enabled && *interval < MIN_SENSIBLE_POLL_INTERVAL)
            {
                warnings.push(format!(
                    "sources.{name}.interval is {}: Partner Center data changes about daily and the \
                     tenant's rate limit is shared with every other tool; use several minutes",
                    humantime::format_duration(interval)
                ));
            }
        }
        warnings
    }

    fn poll_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.poll.interval < MIN_SENSIBLE_POLL_INTERVAL {
            warnings.push(format!(
                "poll.interval is {}: Partner Center data changes about daily and the \
                 tenant's rate limit is shared with every other tool; use several minutes",
                humantime::format_duration(self.poll.interval)
            ));
        }
        warnings
    }
}

/// Whether a URL points at this machine, where plain http is no risk.
fn is_loopback(url: &Url) -> bool {
    url.host_str().is_some_and(|host| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

fn schema_message(err: &serde_path_to_error::Error<serde_yaml_ng::Error>) -> String {
    let key = err.path().to_string();
    let inner = err.inner().to_string();
    // The YAML reader prefixes its message with the section it was in;
    // replace that with the full key path.
    let message = match inner.split_once(": ") {
        Some((prefix, rest)) if !prefix.contains(' ') && key.starts_with(prefix) => rest,
        _ => inner.as_str(),
    };
    if key.is_empty() || key == "." {
        message.to_owned()
    } else {
        format!("{key}: {message}")
    }
}

fn check_header_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    HeaderValue::from_str(value)
        .map(drop)
        .map_err(|_| format!("{value:?} cannot be sent as an HTTP header value"))
}

fn deserialize_optional_url<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Url>, D::Error> {
    deserialize_url(deserializer).map(Some)
}

fn deserialize_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Url, D::Error> {
    let text = String::deserialize(deserializer)?;
    Url::parse(&text)
        .map_err(|err| serde::de::Error::custom(format!("invalid URL {text:?}: {err}")))
}

/// The smallest `partner_center.max_body_size`: below it even an error
/// answer would not fit.
pub const MIN_BODY_SIZE: u64 = 1024;

/// Byte sizes written as Prometheus writes them (`body_size_limit: 64MB`):
/// a number of bytes, or a number with a unit, B, KB, MB, GB (powers of
/// 1000) or KiB, MiB, GiB (powers of 1024).
mod byte_size {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
            Other(serde::de::IgnoredAny),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(bytes) => Ok(bytes),
            Raw::Text(text) => parse(&text).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid size {text:?}; write it like \"64MiB\", \"500KB\" or a number of bytes"
                ))
            }),
            Raw::Other(_) => Err(serde::de::Error::custom(
                "expected a size like \"64MiB\" or a number of bytes",
            )),
        }
    }

    pub fn parse(text: &str) -> Option<u64> {
        let text = text.trim();
        let digits_end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(digits_end);
        let number: u64 = number.parse().ok()?;
        let multiplier: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1000,
            "MB" => 1000 * 1000,
            "GB" => 1000 * 1000 * 1000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return None,
        };
        number.checked_mul(multiplier)
    }
}

/// An optional duration: absent or `null` means off.
mod optional_humantime_duration {
    use std::time::Duration;

    use serde::Deserializer;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        super::humantime_duration::deserialize(deserializer).map(Some)
    }
}

/// Durations written the way Prometheus users write them: `30s`, `15m`, `1h 30m`.
mod humantime_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Other(serde::de::IgnoredAny),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Text(text) => humantime::parse_duration(text.trim()).map_err(|err| {
                serde::de::Error::custom(format!(
                    "invalid duration {text:?} ({err}); write it like \"30s\", \"15m\" or \"1h\""
                ))
            }),
            Raw::Other(_) => Err(serde::de::Error::custom(
                "expected a duration with a unit, like \"30s\", \"15m\" or \"1h\"",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TokenDir {
        dir: tempfile::TempDir,
    }

    impl TokenDir {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("temp dir");
            std::fs::write(dir.path().join("token"), "access-token\n").expect("write token");
            Self { dir }
        }

        fn config_path(&self) -> PathBuf {
            self.dir.path().join("exporter.yml")
        }

        fn parse(&self, yaml: &str) -> Result<Config, ConfigError> {
            Config::from_yaml(yaml, &self.config_path())
        }
    }

    #[test]
    fn minimal_file_gets_documented_defaults() {
        let dir = TokenDir::new();
        let config = dir
            .parse("auth:\n  bearer_token_file: token\n")
            .expect("valid");
        assert_eq!(
            config.partner_center.base_url.as_str(),
            "https://api.partnercenter.microsoft.com/"
        );
        assert_eq!(
            config.partner_center.application_name,
            "partner-center-exporter"
        );
        assert_eq!(config.partner_center.locale, "en-US");
        assert_eq!(
            config.partner_center.request_timeout,
            Duration::from_secs(30)
        );
        assert_eq!(config.partner_center.max_pages, 100);
        assert_eq!(config.poll.interval, Duration::from_secs(900));
        assert_eq!(config.poll.timeout, Duration::from_secs(120));
        assert_eq!(config.poll.max_staleness, None);
        assert_eq!(
            config.partner_center.connect_timeout,
            Duration::from_secs(10)
        );
        assert_eq!(config.partner_center.max_body_size, 64 * 1024 * 1024);
        assert_eq!(config.partner_center.max_retries, 3);
        assert_eq!(
            config.partner_center.retry_backoff,
            Duration::from_millis(500)
        );
        assert_eq!(
            config.partner_center.max_retry_after,
            Duration::from_secs(120)
        );
        assert_eq!(
            config.auth.bearer_token_file.as_deref(),
            Some(dir.dir.path().join("token").as_path()),
            "relative paths resolve against the config file's directory"
        );
        assert_eq!(
            config.partner_center.commercial_api_prefix,
            CommercialApiPrefix::Auto
        );
        assert_eq!(config.partner_center.commercial_page_size, 10_000);
        assert!(config.customers.include.is_empty() && config.customers.exclude.is_empty());
        assert_eq!(config.customers.page_size, 100);
        assert!(config.skus.exclude.is_empty());
        assert_eq!(config.skus.max_units, 10_000);
        assert_eq!(
            config.subscriptions.statuses,
            ["active", "suspended", "pending"]
        );
    }

    #[test]
    fn per_customer_sources_are_off_by_default_on_intervals_of_their_own() {
        let dir = TokenDir::new();
        let config = dir
            .parse("auth:\n  bearer_token_file: token\n")
            .expect("valid");
        let hour = Duration::from_secs(3600);
        for (source, interval) in [
            (SourceName::LicenseUsage, None),
            (SourceName::LicenseDeployment, None),
            (SourceName::CustomerLicenses, Some(hour)),
            (SourceName::CustomerUsage, Some(6 * hour)),
            (SourceName::CustomerDeployment, Some(6 * hour)),
            (SourceName::Subscriptions, Some(6 * hour)),
        ] {
            let settings = config.sources.get(source);
            assert_eq!(settings.enabled, !source.is_per_customer(), "{source}");
            assert_eq!(settings.interval, interval, "{source}");
        }
        assert!(!config.sources.any_per_customer());

        let config = dir
            .parse(
                "auth:\n  bearer_token_file: token\nsources:\n  customer_usage:\n    enabled: true\n    interval: 1d\n  license_usage:\n    enabled: false\n",
            )
            .expect("valid");
        let usage = config.sources.get(SourceName::CustomerUsage);
        assert!(usage.enabled);
        assert_eq!(usage.interval, Some(24 * hour));
        assert!(!config.sources.get(SourceName::LicenseUsage).enabled);
        assert!(config.sources.any_per_customer());
    }

    #[test]
    fn customer_and_sku_settings_are_read_and_checked() {
        let dir = TokenDir::new();
        let config = dir
            .parse(
                "auth:\n  bearer_token_file: token\npartner_center:\n  commercial_api_prefix: /v1\n  commercial_page_size: 500\ncustomers:\n  include: ['Contoso*']\n  exclude: [b44bb1fb-c595-45b0-9e09-d657365580bf]\n  page_size: 250\nskus:\n  exclude: [FLOW_FREE, STREAM]\n  max_units: 0\nsubscriptions:\n  statuses: [Active, expired]\n",
            )
            .expect("valid");
        assert_eq!(config.subscriptions.statuses, ["Active", "expired"]);
        assert_eq!(
            config.partner_center.commercial_api_prefix,
            CommercialApiPrefix::V1
        );
        assert_eq!(config.partner_center.commercial_page_size, 500);
        assert_eq!(config.customers.include, ["Contoso*"]);
        assert_eq!(config.customers.page_size, 250);
        assert_eq!(config.skus.exclude, ["FLOW_FREE", "STREAM"]);
        assert_eq!(config.skus.max_units, 0);

        for (yaml, key) in [
            (
                "partner_center:\n  commercial_page_size: 10001\n",
                "partner_center.commercial_page_size",
            ),
            (
                "partner_center:\n  commercial_page_size: 0\n",
                "partner_center.commercial_page_size",
            ),
            ("customers:\n  page_size: 0\n", "customers.page_size"),
            ("customers:\n  include: ['[oops']\n", "customers.include"),
            ("customers:\n  exclude: ['']\n", "customers.exclude"),
            ("skus:\n  exclude: ['{a']\n", "skus.exclude"),
            (
                "partner_center:\n  commercial_api_prefix: /v2\n",
                "partner_center.commercial_api_prefix",
            ),
            ("customers:\n  includes: []\n", "includes"),
            ("subscriptions:\n  statuses: []\n", "subscriptions.statuses"),
            (
                "subscriptions:\n  statuses: [active, cancelled]\n",
                "subscriptions.statuses",
            ),
            ("subscriptions:\n  status: [active]\n", "status"),
        ] {
            let message = error_of(&format!("auth:\n  bearer_token_file: token\n{yaml}"));
            assert!(message.contains(key), "{yaml}: {message}");
        }
    }

    #[test]
    fn full_file_is_read() {
        let dir = TokenDir::new();
        let config = dir
            .parse(
                "partner_center:\n  base_url: http://127.0.0.1:8080/prefix\n  application_name: acme-exporter\n  locale: de-DE\n  request_timeout: 1m 30s\n  max_pages: 7\nauth:\n  bearer_token_file: token\npoll:\n  interval: 2s\n  timeout: 1s\n",
            )
            .expect("valid");
        assert_eq!(
            config.partner_center.base_url.as_str(),
            "http://127.0.0.1:8080/prefix"
        );
        assert_eq!(config.partner_center.application_name, "acme-exporter");
        assert_eq!(config.partner_center.locale, "de-DE");
        assert_eq!(
            config.partner_center.request_timeout,
            Duration::from_secs(90)
        );
        assert_eq!(config.partner_center.max_pages, 7);
        assert_eq!(config.poll.interval, Duration::from_secs(2));
        assert_eq!(config.poll.timeout, Duration::from_secs(1));
    }

    #[test]
    fn resilience_settings_are_read() {
        let dir = TokenDir::new();
        let config = dir
            .parse(
                "partner_center:\n  connect_timeout: 3s\n  max_body_size: 8MiB\n  max_retries: 0\n  retry_backoff: 250ms\n  max_retry_after: 30s\nauth:\n  bearer_token_file: token\npoll:\n  interval: 15m\n  max_staleness: 6h\n",
            )
            .expect("valid");
        assert_eq!(
            config.partner_center.connect_timeout,
            Duration::from_secs(3)
        );
        assert_eq!(config.partner_center.max_body_size, 8 * 1024 * 1024);
        assert_eq!(config.partner_center.max_retries, 0);
        assert_eq!(
            config.partner_center.retry_backoff,
            Duration::from_millis(250)
        );
        assert_eq!(
            config.partner_center.max_retry_after,
            Duration::from_secs(30)
        );
        assert_eq!(
            config.poll.max_staleness,
            Some(Duration::from_secs(6 * 3600))
        );
    }

    #[test]
    fn sizes_take_prometheus_units() {
        for (text, bytes) in [
            ("1024", Some(1024)),
            ("64MiB", Some(64 << 20)),
            ("64MB", Some(64_000_000)),
            ("500 KB", Some(500_000)),
            ("2GiB", Some(2 << 30)),
            ("12B", Some(12)),
            ("1.5MiB", None),
            ("64 mebibytes", None),
            ("", None),
            ("-1", None),
            ("99999999999999999999GiB", None),
        ] {
            assert_eq!(byte_size::parse(text), bytes, "{text:?}");
        }
        assert!(
            error_of("partner_center:\n  max_body_size: lots\nauth:\n  bearer_token_file: token\n")
                .contains("partner_center.max_body_size: invalid size \"lots\"")
        );
        assert!(
            error_of("partner_center:\n  max_body_size: 100\nauth:\n  bearer_token_file: token\n")
                .contains("partner_center.max_body_size: must be at least 1024 bytes")
        );
    }

    #[test]
    fn max_staleness_shorter_than_the_interval_is_refused() {
        let message = error_of(
            "auth:\n  bearer_token_file: token\npoll:\n  interval: 15m\n  max_staleness: 10m\n",
        );
        assert!(
            message.contains("poll.max_staleness: must be at least poll.interval"),
            "{message}"
        );
        assert!(
            error_of("auth:\n  bearer_token_file: token\npoll:\n  max_staleness: soon\n")
                .contains("poll.max_staleness: invalid duration")
        );
    }

    fn error_of(yaml: &str) -> String {
        TokenDir::new()
            .parse(yaml)
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let message = error_of("auth:\n  bearer_token_file: token\npoll:\n  intervall: 5m\n");
        assert!(message.contains("poll"), "{message}");
        assert!(message.contains("intervall"), "{message}");
        assert!(message.contains("line 4"), "{message}");
    }

    #[test]
    fn unknown_top_level_key_is_refused() {
        let message = error_of("auth:\n  bearer_token_file: token\nscrape:\n  x: 1\n");
        assert!(message.contains("unknown field `scrape`"), "{message}");
    }

    #[test]
    fn unparsable_duration_names_the_key() {
        let message =
            error_of("auth:\n  bearer_token_file: token\npoll:\n  interval: 15 parsecs\n");
        assert!(message.contains("poll.interval"), "{message}");
        assert!(
            message.contains("invalid duration \"15 parsecs\""),
            "{message}"
        );
    }

    #[test]
    fn duration_without_unit_is_refused() {
        let message = error_of("auth:\n  bearer_token_file: token\npoll:\n  interval: 900\n");
        assert!(message.contains("poll.interval"), "{message}");
        assert!(message.contains("with a unit"), "{message}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let message =
            error_of("auth:\n  bearer_token_file: token\npartner_center:\n  max_pages: many\n");
        assert!(message.contains("partner_center.max_pages"), "{message}");
    }

    #[test]
    fn missing_token_file_names_the_key() {
        let message = error_of("auth:\n  bearer_token_file: no-such-file\n");
        assert!(message.contains("auth.bearer_token_file"), "{message}");
        assert!(message.contains("no-such-file"), "{message}");
    }

    #[test]
    fn empty_token_file_is_refused() {
        let dir = TokenDir::new();
        std::fs::write(dir.dir.path().join("empty"), "\n").expect("write");
        let message = dir
            .parse("auth:\n  bearer_token_file: empty\n")
            .expect_err("refused")
            .to_string();
        assert!(message.contains("auth.bearer_token_file"), "{message}");
        assert!(message.contains("is empty"), "{message}");
    }

    #[test]
    fn missing_auth_section_is_refused() {
        let message = error_of("poll:\n  interval: 5m\n");
        assert!(message.contains("auth"), "{message}");
    }

    #[test]
    fn auth_without_method_is_refused() {
        let dir = TokenDir::new();
        let message = dir
            .parse("auth: {}\n")
            .expect_err("must be refused")
            .to_string();
        assert_eq!(
            message,
            format!(
                "{}: auth: no authentication method is configured; set auth.tenant_id, \
                 auth.client_id, auth.client_secret_file and auth.refresh_token_file \
                 (App+User, see README), or auth.bearer_token_file",
                dir.config_path().display()
            )
        );
    }

    #[test]
    fn empty_file_is_refused() {
        let message = error_of("  \n");
        assert!(message.contains("empty"), "{message}");
    }

    #[test]
    fn bad_base_url_is_refused() {
        let message =
            error_of("partner_center:\n  base_url: not a url\nauth:\n  bearer_token_file: token\n");
        assert!(message.contains("partner_center.base_url"), "{message}");
        let message = error_of(
            "partner_center:\n  base_url: ftp://example.com\nauth:\n  bearer_token_file: token\n",
        );
        assert!(message.contains("partner_center.base_url"), "{message}");
    }

    #[test]
    fn zero_values_are_refused() {
        for (yaml, key) in [
            ("poll:\n  interval: 0s\n", "poll.interval"),
            ("poll:\n  timeout: 0s\n", "poll.timeout"),
            (
                "partner_center:\n  request_timeout: 0s\n",
                "partner_center.request_timeout",
            ),
            (
                "partner_center:\n  max_pages: 0\n",
                "partner_center.max_pages",
            ),
        ] {
            let message = error_of(&format!("auth:\n  bearer_token_file: token\n{yaml}"));
            assert!(message.contains(key), "{key}: {message}");
        }
    }

    #[test]
    fn header_unsafe_strings_are_refused() {
        let message =
            error_of("partner_center:\n  locale: \"en\\nUS\"\nauth:\n  bearer_token_file: token\n");
        assert!(message.contains("partner_center.locale"), "{message}");
    }

    #[test]
    fn short_interval_is_accepted_with_a_warning() {
        let dir = TokenDir::new();
        let short = dir
            .parse("auth:\n  bearer_token_file: token\npoll:\n  interval: 2s\n")
            .expect("2s is allowed");
        let warnings = short.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("poll.interval is 2s"), "{warnings:?}");
        let default = dir
            .parse("auth:\n  bearer_token_file: token\n")
            .expect("valid");
        assert!(default.warnings().is_empty());
    }

    #[test]
    fn credentials_in_the_base_url_are_refused() {
        // A password no temporary path can contain by chance: the message
        // names the config file, whose directory name is random.
        let message = error_of(
            "partner_center:\n  base_url: https://user:Xq7-url-Password@example.com\nauth:\n  bearer_token_file: token\n",
        );
        assert!(message.contains("partner_center.base_url"), "{message}");
        assert!(
            !message.contains("Xq7-url-Password"),
            "the password must not be echoed: {message}"
        );
    }

    #[test]
    fn plain_http_is_a_warning_except_on_loopback() {
        let dir = TokenDir::new();
        let remote = dir
            .parse("partner_center:\n  base_url: http://proxy.example\nauth:\n  bearer_token_file: token\n")
            .expect("allowed");
        assert!(
            remote.warnings().iter().any(|w| w.contains("unencrypted")),
            "{:?}",
            remote.warnings()
        );
        for local in [
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "http://[::1]:8080",
        ] {
            let config = dir
                .parse(&format!(
                    "partner_center:\n  base_url: {local}\nauth:\n  bearer_token_file: token\n"
                ))
                .expect("allowed");
            assert!(
                config.warnings().is_empty(),
                "{local}: {:?}",
                config.warnings()
            );
        }
    }

    const APP_USER: &str = "auth:\n  tenant_id: contoso.onmicrosoft.com\n  client_id: 3F2C5E2A-0000-4000-8000-000000000001\n  client_secret_file: secret\n  refresh_token_file: refresh\nstate_dir: state\n";

    impl TokenDir {
        fn with_app_user_files() -> Self {
            let dir = Self::new();
            std::fs::write(dir.dir.path().join("secret"), "client-secret\n").expect("write");
            std::fs::write(dir.dir.path().join("refresh"), "refresh-token\n").expect("write");
            dir
        }
    }

    fn app_user_settings(config: &Config) -> RefreshTokenSettings {
        match config.auth.method().expect("valid method") {
            AuthMethod::RefreshToken(settings) => *settings,
            other => panic!("expected the App+User method, got {other:?}"),
        }
    }

    #[test]
    fn app_user_method_gets_documented_defaults() {
        let dir = TokenDir::with_app_user_files();
        let config = dir.parse(APP_USER).expect("valid");
        let settings = app_user_settings(&config);
        assert_eq!(settings.tenant_id, "contoso.onmicrosoft.com");
        assert_eq!(
            settings.client_id, "3f2c5e2a-0000-4000-8000-000000000001",
            "client ids compare case-insensitively"
        );
        assert_eq!(
            settings.client_secret,
            SecretSource::File(dir.dir.path().join("secret"))
        );
        assert_eq!(
            settings.refresh_token,
            Some(SecretSource::File(dir.dir.path().join("refresh")))
        );
        assert_eq!(
            settings.authority.as_str(),
            "https://login.microsoftonline.com/"
        );
        assert_eq!(settings.token_endpoint, TokenEndpointVersion::V1);
        assert_eq!(settings.resource, DEFAULT_RESOURCE);
        assert_eq!(
            config.state_dir.as_deref(),
            Some(dir.dir.path().join("state").as_path()),
            "state_dir resolves against the config file's directory"
        );
        assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    }

    #[test]
    fn app_user_method_reads_every_key() {
        let dir = TokenDir::with_app_user_files();
        let config = dir
            .parse("auth:\n  tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47\n  client_id: 3f2c5e2a-0000-4000-8000-000000000001\n  client_secret_file: secret\n  refresh_token_file: refresh\n  authority: https://login.microsoftonline.us/\n  token_endpoint: v2\n  resource: https://api.partnercenter.example/\nstate_dir: /var/lib/pce\n")
            .expect("valid");
        let settings = app_user_settings(&config);
        assert_eq!(settings.tenant_id, "72f988bf-86f1-41af-91ab-2d7cd011db47");
        assert_eq!(
            settings.authority.as_str(),
            "https://login.microsoftonline.us/"
        );
        assert_eq!(settings.token_endpoint, TokenEndpointVersion::V2);
        assert_eq!(settings.resource, "https://api.partnercenter.example");
        assert_eq!(config.state_dir.as_deref(), Some(Path::new("/var/lib/pce")));
    }

    #[test]
    fn two_methods_at_once_are_refused_naming_the_keys() {
        let dir = TokenDir::with_app_user_files();
        let message = dir
            .parse(&APP_USER.replace("auth:\n", "auth:\n  bearer_token_file: token\n"))
            .expect_err("two methods")
            .to_string();
        assert!(message.contains("bearer_token_file"), "{message}");
        assert!(message.contains("auth.tenant_id"), "{message}");
        assert!(message.contains("exactly one"), "{message}");
        let message = dir
            .parse("auth:\n  bearer_token_file: token\n  token_endpoint: v2\n")
            .expect_err("a stray App+User key")
            .to_string();
        assert!(message.contains("auth.token_endpoint"), "{message}");
    }

    #[test]
    fn an_incomplete_app_user_method_names_the_missing_key() {
        let dir = TokenDir::with_app_user_files();
        for (remove, key) in [
            ("  tenant_id: contoso.onmicrosoft.com\n", "auth.tenant_id"),
            (
                "  client_id: 3F2C5E2A-0000-4000-8000-000000000001\n",
                "auth.client_id",
            ),
            ("  client_secret_file: secret\n", "auth.client_secret_file"),
        ] {
            let message = dir
                .parse(&APP_USER.replace(remove, ""))
                .expect_err("incomplete")
                .to_string();
            assert!(message.contains(key), "{key}: {message}");
            assert!(message.contains("required"), "{key}: {message}");
        }
        let message = dir
            .parse(
                &APP_USER
                    .replace("  refresh_token_file: refresh\n", "")
                    .replace("state_dir: state\n", ""),
            )
            .expect_err("no refresh token anywhere")
            .to_string();
        assert!(message.contains("auth.refresh_token_file"), "{message}");
        assert!(message.contains("login"), "{message}");
        dir.parse(&APP_USER.replace("  refresh_token_file: refresh\n", ""))
            .expect("state_dir alone is enough: `login` stores the token there");
    }

    #[test]
    fn malformed_identifiers_are_refused() {
        let dir = TokenDir::with_app_user_files();
        for (from, to, key) in [
            (
                "contoso.onmicrosoft.com",
                "contoso/../evil",
                "auth.tenant_id",
            ),
            ("contoso.onmicrosoft.com", "contoso", "auth.tenant_id"),
            (
                "3F2C5E2A-0000-4000-8000-000000000001",
                "my-app",
                "auth.client_id",
            ),
        ] {
            let message = dir
                .parse(&APP_USER.replace(from, to))
                .expect_err("malformed")
                .to_string();
            assert!(message.contains(key), "{to}: {message}");
        }
        let message = dir
            .parse(&APP_USER.replace("auth:\n", "auth:\n  authority: ftp://login.example\n"))
            .expect_err("not http")
            .to_string();
        assert!(message.contains("auth.authority"), "{message}");
        let message = dir
            .parse(&APP_USER.replace("auth:\n", "auth:\n  token_endpoint: v3\n"))
            .expect_err("unknown version")
            .to_string();
        assert!(message.contains("auth.token_endpoint"), "{message}");
    }

    #[test]
    fn unreadable_secret_files_name_their_key_without_content() {
        let dir = TokenDir::with_app_user_files();
        std::fs::write(dir.dir.path().join("secret"), "SECRET-VALUE\nsecond line\n")
            .expect("write");
        let message = dir.parse(APP_USER).expect_err("line break").to_string();
        assert!(message.contains("auth.client_secret_file"), "{message}");
        assert!(!message.contains("SECRET-VALUE"), "{message}");
        std::fs::remove_file(dir.dir.path().join("refresh")).expect("remove");
        std::fs::write(dir.dir.path().join("secret"), "ok\n").expect("write");
        let message = dir.parse(APP_USER).expect_err("missing").to_string();
        assert!(message.contains("auth.refresh_token_file"), "{message}");
    }

    #[test]
    fn secrets_may_come_from_the_environment() {
        let dir = TokenDir::new();
        let yaml = APP_USER
            .replace("  client_secret_file: secret\n", "")
            .replace("  refresh_token_file: refresh\n", "");
        let environment = SecretEnvironment::from_lookup(|name| match name {
            CLIENT_SECRET_ENV => Some("env-secret\n".to_owned()),
            REFRESH_TOKEN_ENV => Some("env-refresh".to_owned()),
            _ => None,
        });
        let config =
            Config::from_yaml_with_environment(&yaml, &dir.config_path(), environment.clone())
                .expect("valid");
        let settings = app_user_settings(&config);
        assert_eq!(
            settings.client_secret,
            SecretSource::Environment {
                name: CLIENT_SECRET_ENV,
                value: Secret::new("env-secret"),
            }
        );
        assert_eq!(
            settings.refresh_token,
            Some(SecretSource::Environment {
                name: REFRESH_TOKEN_ENV,
                value: Secret::new("env-refresh"),
            })
        );
        assert!(
            !format!("{config:?}").contains("env-secret"),
            "Debug output must not show secrets"
        );

        let both = TokenDir::with_app_user_files();
        let message =
            Config::from_yaml_with_environment(APP_USER, &both.config_path(), environment)
                .expect_err("file and variable")
                .to_string();
        assert!(message.contains("auth.client_secret_file"), "{message}");
        assert!(message.contains(CLIENT_SECRET_ENV), "{message}");

        let empty = SecretEnvironment::from_lookup(|_| Some("  ".to_owned()));
        assert!(empty.client_secret.is_none() && empty.refresh_token.is_none());
    }

    #[test]
    fn risky_app_user_settings_are_warned_about() {
        let dir = TokenDir::with_app_user_files();
        let config = dir
            .parse(
                &APP_USER
                    .replace("state_dir: state\n", "")
                    .replace("auth:\n", "auth:\n  authority: http://login.example\n"),
            )
            .expect("allowed");
        let warnings = config.warnings();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("auth.authority") && w.contains("unencrypted")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|w| w.contains("state_dir is not set")),
            "{warnings:?}"
        );

        let environment = SecretEnvironment::from_lookup(|name| {
            (name == CLIENT_SECRET_ENV).then(|| "x".to_owned())
        });
        let bearer = Config::from_yaml_with_environment(
            "auth:\n  bearer_token_file: token\n",
            &dir.config_path(),
            environment,
        )
        .expect("valid");
        assert!(
            bearer
                .warnings()
                .iter()
                .any(|w| w.contains(CLIENT_SECRET_ENV) && w.contains("ignored")),
            "{:?}",
            bearer.warnings()
        );
    }

    #[test]
    fn read_error_names_the_file() {
        let err = Config::load(Path::new("/nonexistent/exporter.yml")).expect_err("refused");
        assert!(
            err.to_string().contains("/nonexistent/exporter.yml"),
            "{err}"
        );
    }
}
