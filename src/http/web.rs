//! `--web.config.file`: TLS, client certificates, basic auth, extra
//! response headers and a request rate limit, configured as every
//! exporter built on prometheus/exporter-toolkit configures them.
//!
//! The file and the files it names are read again every few seconds; a
//! change that checks out replaces the configuration in force (new TLS
//! settings apply to new connections), a broken one is logged and the last
//! good one stays.

pub mod basic_auth;
pub mod config;
pub mod tls;
mod tls_names;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use aws_lc_rs::digest;
use hyper::header::{HeaderMap, HeaderValue};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use basic_auth::{BasicAuth, Verdict};
use config::{ClientAuth, PemSource, RateLimit, WebConfig, WebConfigError};

/// How often the web configuration and its certificates are looked at
/// for changes unless told otherwise.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Settings of the web security layer that come from flags, not the file.
#[derive(Debug, Clone)]
pub struct WebOptions {
    /// How often to look for a changed file.
    pub reload_interval: Duration,
    /// Answer `/healthz` without basic auth or rate limit, for
    /// orchestrator probes that cannot send credentials.
    pub healthz_without_auth: bool,
}

impl Default for WebOptions {
    fn default() -> Self {
        Self {
            reload_interval: DEFAULT_RELOAD_INTERVAL,
            healthz_without_auth: false,
        }
    }
}

/// Why a request is refused before it reaches an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// Missing or wrong basic auth credentials: 401.
    Unauthorized,
    /// Over `rate_limit`: 429.
    RateLimited,
}

/// One loaded web configuration: what is in force for new connections
/// and requests.
pub struct ActiveWebConfig {
    tls: Option<TlsAcceptor>,
    http2: bool,
    client_auth: Option<ClientAuth>,
    headers: Vec<(hyper::header::HeaderName, HeaderValue)>,
    basic_auth: Option<BasicAuth>,
    rate_limiter: Option<RateLimiter>,
}

impl std::fmt::Debug for ActiveWebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

impl ActiveWebConfig {
    /// The TLS acceptor, when the file configures TLS.
    pub fn tls(&self) -> Option<&TlsAcceptor> {
        self.tls.as_ref()
    }

    /// Adds the configured response headers.
    pub fn add_headers(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// A one-line description without secrets, for logs and `--config.check`.
    pub fn summary(&self) -> String {
        let tls = match (&self.tls, self.client_auth) {
            (None, _) => "TLS off".to_owned(),
            (Some(_), Some(auth)) => format!(
                "TLS on (client certificates: {auth:?}, HTTP/2 {})",
                if self.http2 { "on" } else { "off" }
            ),
            (Some(_), None) => "TLS on".to_owned(),
        };
        let users = self.basic_auth.as_ref().map_or(0, BasicAuth::user_count);
        let auth = if users == 0 {
            "basic auth off".to_owned()
        } else {
            format!("basic auth for {users} user(s)")
        };
        let limit = self.rate_limiter.as_ref().map_or_else(
            || "no rate limit".to_owned(),
            |limiter| {
                format!(
                    "rate limit 1 per {} (burst {})",
                    humantime::format_duration(limiter.limit.interval),
                    limiter.limit.burst
                )
            },
        );
        format!(
            "{tls}, {auth}, {limit}, {} extra header(s)",
            self.headers.len()
        )
    }
}

/// The web configuration file, the configuration in force, and its reloading.
pub struct WebSecurity {
    path: PathBuf,
    options: WebOptions,
    current: ArcSwap<ActiveWebConfig>,
    /// Digest of the file set last looked at, good or bad: a broken file
    /// is reported once, not at every look.
    last_seen: Mutex<Vec<u8>>,
}

impl std::fmt::Debug for WebSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSecurity")
            .field("path", &self.path)
            .field("options", &self.options)
            .field("current", &self.current.load())
            .finish()
    }
}

/// What a look at the files found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Nothing changed since the last look.
    Unchanged,
    /// A changed file set checked out and is now in force.
    Reloaded,
    /// A changed file set was refused; the last good configuration stays.
    Refused(String),
}

impl WebSecurity {
    /// Loads `path` and everything it names. Blocks (file reads, one bcrypt
    /// hash): call it before the runtime starts or on the blocking pool.
    pub fn load(path: &Path, options: WebOptions) -> Result<Self, WebConfigError> {
        let seen = fingerprint(path);
        Ok(Self {
            path: path.to_owned(),
            options,
            current: ArcSwap::from_pointee(load(path)?),
            last_seen: Mutex::new(seen),
        })
    }

    /// The configuration file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<ActiveWebConfig> {
        self.current.load_full()
    }

    /// Whether the listeners speak TLS; fixed for the life of the process.
    pub fn tls_enabled(&self) -> bool {
        self.current.load().tls.is_some()
    }

    /// Lets a request through, or says why not. `/healthz` passes when
    /// `--web.healthz-without-auth` is set.
    pub async fn admit(
        &self,
        active: &ActiveWebConfig,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<(), Denial> {
        if self.options.healthz_without_auth && path == "/healthz" {
            return Ok(());
        }
        if let Some(limiter) = &active.rate_limiter
            && !limiter.allow()
        {
            return Err(Denial::RateLimited);
        }
        if let Some(auth) = &active.basic_auth {
            let authorization = headers.get(hyper::header::AUTHORIZATION);
            if auth.verify(authorization).await == Verdict::Denied {
                return Err(Denial::Unauthorized);
            }
        }
        Ok(())
    }

    /// Looks at the files once and applies a changed, valid set. Blocks.
    pub fn reload(&self) -> ReloadOutcome {
        // Only a changed file set is loaded: loading builds the TLS
        // configuration and computes a bcrypt hash, too costly every few
        // seconds. Should the files change between this look and the load,
        // the next look sees a new digest and loads them again.
        let seen = fingerprint(&self.path);
        {
            let Ok(mut last_seen) = self.last_seen.lock() else {
                return ReloadOutcome::Unchanged;
            };
            if *last_seen == seen {
                return ReloadOutcome::Unchanged;
            }
            *last_seen = seen;
        }
        let loaded = match load(&self.path) {
            Ok(loaded) => loaded,
            Err(err) => return ReloadOutcome::Refused(err.to_string()),
        };
        if loaded.tls.is_some() != self.tls_enabled() {
            return ReloadOutcome::Refused(format!(
                "{}: TLS cannot be turned {} while running; restart the exporter for that",
                self.path.display(),
                if loaded.tls.is_some() { "on" } else { "off" }
            ));
        }
        self.current.store(Arc::new(loaded));
        ReloadOutcome::Reloaded
    }

    /// Looks for changes every `reload_interval` until `shutdown`.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(self.options.reload_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; the file was just loaded.
        interval.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            let this = self.clone();
            match tokio::task::spawn_blocking(move || this.reload()).await {
                Ok(ReloadOutcome::Unchanged) => {}
                Ok(ReloadOutcome::Reloaded) => tracing::info!(
                    file = %self.path.display(),
                    config = %self.current().summary(),
                    "web configuration reloaded"
                ),
                Ok(ReloadOutcome::Refused(error)) => tracing::error!(
                    file = %self.path.display(),
                    %error,
                    "cannot reload the web configuration; the last good one stays in force"
                ),
                Err(err) => tracing::warn!(error = %err, "web configuration reload did not finish"),
            }
        }
    }
}

/// A digest of the file and of every file it names (or of why they could
/// not be read): what changes when any of them does.
fn fingerprint(path: &Path) -> Vec<u8> {
    let mut digest = digest::Context::new(&digest::SHA256);
    let mut add = |path: &Path| -> Option<Vec<u8>> {
        digest.update(path.as_os_str().as_encoded_bytes());
        match std::fs::read(path) {
            Ok(bytes) => {
                digest.update(&(bytes.len() as u64).to_be_bytes());
                digest.update(&bytes);
                Some(bytes)
            }
            Err(err) => {
                digest.update(format!("error {:?}", err.kind()).as_bytes());
                None
            }
        }
    };
    let referenced = add(path)
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| WebConfig::from_yaml(&text, path).ok())
        .and_then(|config| config.tls)
        .map(|tls| {
            [Some(tls.cert), Some(tls.key), tls.client_ca]
                .into_iter()
                .flatten()
                .filter_map(|source| match source {
                    PemSource::File(path) => Some(path),
                    PemSource::Inline(_) => None,
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for file in referenced {
        add(&file);
    }
    digest.finish().as_ref().to_vec()
}

/// Reads and checks the file and all it names.
fn load(path: &Path) -> Result<ActiveWebConfig, WebConfigError> {
    let mut reader = Reader::new(path);
    let reader = &mut reader;
    let bytes = reader.read(None, path)?;
    let text = String::from_utf8(bytes).map_err(|_| WebConfigError::Schema {
        path: path.to_owned(),
        message: "not UTF-8 text".to_owned(),
    })?;
    let config = WebConfig::from_yaml(&text, path)?;
    let tls = match &config.tls {
        None => None,
        Some(settings) => Some(TlsAcceptor::from(tls::server_config(
            settings,
            config.http2,
            path,
            reader,
        )?)),
    };
    let basic_auth = BasicAuth::new(config.users).map_err(|message| WebConfigError::Invalid {
        path: path.to_owned(),
        key: "basic_auth_users",
        message,
    })?;
    Ok(ActiveWebConfig {
        tls,
        http2: config.http2,
        client_auth: config.tls.as_ref().map(|tls| tls.client_auth),
        headers: config.headers,
        basic_auth,
        rate_limiter: config.rate_limit.map(RateLimiter::new),
    })
}

/// Reads the files of one load.
pub struct Reader {
    /// The web configuration file, named in errors about the files it names.
    config: PathBuf,
}

impl Reader {
    fn new(config: &Path) -> Self {
        Self {
            config: config.to_owned(),
        }
    }

    /// Reads the configuration file itself (`what` is `None`) or a file it
    /// names as `what`.
    fn read(&mut self, what: Option<&'static str>, path: &Path) -> Result<Vec<u8>, WebConfigError> {
        std::fs::read(path).map_err(|source| match what {
            None => WebConfigError::Read {
                path: path.to_owned(),
                source,
            },
            Some(what) => WebConfigError::ReadReferenced {
                config: self.config.clone(),
                what,
                path: path.to_owned(),
                source,
            },
        })
    }

    /// PEM text from a file or from the configuration itself.
    fn pem(&mut self, what: &'static str, source: &PemSource) -> Result<Vec<u8>, WebConfigError> {
        match source {
            PemSource::File(path) => self.read(Some(what), path),
            PemSource::Inline(text) => Ok(text.expose().as_bytes().to_vec()),
        }
    }
}

/// Go's `rate.Limiter`: a bucket of `burst` tokens, refilled at one per
/// `interval`, starting full; a request without a token is refused.
struct RateLimiter {
    limit: RateLimit,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            state: Mutex::new((f64::from(limit.burst), Instant::now())),
        }
    }

    fn allow(&self) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let now = Instant::now();
        let (tokens, last) = *state;
        let refilled = now.duration_since(last).as_secs_f64() / self.limit.interval.as_secs_f64();
        let tokens = (tokens + refilled).min(f64::from(self.limit.burst));
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            true
        } else {
            *state = (tokens, now);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_allows_a_burst_then_refuses() {
        let limiter = RateLimiter::new(RateLimit {
            interval: Duration::from_secs(3600),
            burst: 2,
        });
        assert!(limiter.allow());
        assert!(limiter.allow());
        assert!(!limiter.allow());
    }
}
