//! Where the access token for Partner Center comes from.
//!
//! Each configured method is one [`Authenticator`] variant; the client asks
//! it for a token before each request, and for a new one when Partner
//! Center refuses a token, without knowing how tokens are obtained.
//!
//! [`login`] is the one-off device-code sign-in that stores the first
//! refresh token for the App+User method.

pub mod app_user;
pub mod entra;
pub mod login;
pub mod refresh_token_store;

use std::path::PathBuf;
use std::sync::Arc;

pub use crate::token_file::TokenFileError;

use crate::config::{AuthMethod, Config};
use crate::exposition::metrics::ExporterMetrics;
use crate::secret::Secret;
use crate::tenant::TenantLabel;
use app_user::AppUserAuthenticator;
use entra::EntraError;

/// A source of access tokens. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Authenticator {
    /// A ready access token in a file, re-read before every request so that
    /// an external tool can replace it without restarting the exporter.
    BearerTokenFile(PathBuf),
    /// App+User: access tokens redeemed from a rotating refresh token.
    AppUser(Arc<AppUserAuthenticator>),
    /// App+User for a named tenant that had no refresh token at start:
    /// it waits for `login --tenant` to store one, while the other
    /// tenants poll.
    AwaitingLogin(Arc<AwaitingLogin>),
}

/// Why no access token could be had. Messages say what the operator has to
/// do and never contain a secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the access token: {0}")]
    BearerTokenFile(TokenFileError),
    #[error("cannot read the client secret: {0}")]
    ClientSecret(String),
    #[error("cannot read the refresh token: {0}")]
    RefreshToken(String),
    #[error("no refresh token to start from: {0}")]
    NoRefreshToken(String),
    #[error(transparent)]
    Entra(EntraError),
    #[error("{key}: {message}")]
    Config { key: &'static str, message: String },
}

impl AuthError {
    /// True when the operator must change the configuration or run `login`
    /// before the exporter can start.
    pub fn is_config_error(&self) -> bool {
        matches!(
            self,
            Self::NoRefreshToken(_) | Self::RefreshToken(_) | Self::Config { .. }
        )
    }
}

impl Authenticator {
    /// The authenticator `tenant`'s configuration describes. For the
    /// App+User method this prepares `state_dir`, picks the refresh token
    /// to start from and registers the tenant's token metrics.
    pub fn from_config(
        config: &Config,
        tenant: &TenantLabel,
        metrics: &ExporterMetrics,
    ) -> Result<Self, AuthError> {
        match config
            .auth
            .method()
            .map_err(|(key, message)| AuthError::Config { key, message })?
        {
            AuthMethod::BearerTokenFile(path) => Ok(Self::BearerTokenFile(path)),
            AuthMethod::RefreshToken(settings) => {
                let results: Vec<&str> = entra::TokenRequestResult::ALL
                    .iter()
                    .map(|result| result.as_str())
                    .collect();
                let token_metrics =
                    metrics
                        .register_token_metrics(tenant, &results)
                        .map_err(|err| AuthError::Config {
                            key: "auth",
                            message: format!("cannot register the token metrics: {err}"),
                        })?;
                let waiting = AwaitingLogin {
                    tenant: tenant.clone(),
                    settings: *settings,
                    state_dir: config.state_dir.clone(),
                    request_timeout: config.partner_center.request_timeout,
                    metrics: token_metrics,
                    started: tokio::sync::Mutex::new(None),
                };
                match waiting.start() {
                    Ok(authenticator) => Ok(Self::AppUser(authenticator)),
                    // One tenant without a refresh token must not keep the
                    // others from polling; a single tenant has nothing else
                    // to do, and stops with the configuration error.
                    Err(AuthError::NoRefreshToken(_)) if tenant.name().is_some() => {
                        tracing::warn!(
                            "{}; its sources report partner_center_up 0 until then",
                            waiting.missing()
                        );
                        Ok(Self::AwaitingLogin(Arc::new(waiting)))
                    }
                    Err(err) => Err(err),
                }
            }
        }
    }

    /// A token to send now.
    pub async fn access_token(&self) -> Result<Secret, AuthError> {
        match self {
            Self::BearerTokenFile(path) => crate::token_file::read_token_file(path)
                .await
                .map_err(AuthError::BearerTokenFile),
            Self::AppUser(authenticator) => authenticator.access_token().await,
            Self::AwaitingLogin(waiting) => waiting.authenticator().await?.access_token().await,
        }
    }

    /// A token to replace `rejected`, which Partner Center refused with 401.
    pub async fn renew(&self, rejected: &Secret) -> Result<Secret, AuthError> {
        match self {
            // The file may have been replaced since it was read.
            Self::BearerTokenFile(_) => self.access_token().await,
            Self::AppUser(authenticator) => authenticator.renew(rejected).await,
            Self::AwaitingLogin(waiting) => waiting.authenticator().await?.renew(rejected).await,
        }
    }
}

/// A named tenant's App+User method before its first refresh token: each
/// request for a token looks for one again (stored by `login --tenant`,
/// or a configured file filled since), and once one is there the tenant
/// authenticates as any other from then on.
pub struct AwaitingLogin {
    tenant: TenantLabel,
    settings: crate::config::RefreshTokenSettings,
    state_dir: Option<PathBuf>,
    request_timeout: std::time::Duration,
    metrics: crate::exposition::metrics::TokenMetrics,
    started: tokio::sync::Mutex<Option<Arc<AppUserAuthenticator>>>,
}

impl std::fmt::Debug for AwaitingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwaitingLogin")
            .field("tenant", &self.tenant.name())
            .field("client_id", &self.settings.client_id)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

impl AwaitingLogin {
    /// The authenticator, if a refresh token can be found now.
    fn start(&self) -> Result<Arc<AppUserAuthenticator>, AuthError> {
        AppUserAuthenticator::new(
            self.settings.clone(),
            self.state_dir.as_deref(),
            self.request_timeout,
            self.metrics.clone(),
        )
        .map(Arc::new)
    }

    /// What is missing, and the command that provides it.
    fn missing(&self) -> String {
        let tenant = self.tenant.name().unwrap_or_default();
        format!(
            "tenant {tenant} has no refresh token yet; run `partner-center-exporter login --tenant {tenant}`"
        )
    }

    /// The tenant's authenticator: the one started earlier, or one started
    /// now from a refresh token that has appeared since.
    async fn authenticator(&self) -> Result<Arc<AppUserAuthenticator>, AuthError> {
        let mut started = self.started.lock().await;
        if let Some(authenticator) = started.as_ref() {
            return Ok(authenticator.clone());
        }
        // Reads a few small files: on the blocking pool, as file reads are
        // (the poll thread's runtime has one thread).
        let (settings, state_dir, timeout, metrics) = (
            self.settings.clone(),
            self.state_dir.clone(),
            self.request_timeout,
            self.metrics.clone(),
        );
        let attempt = tokio::task::spawn_blocking(move || {
            AppUserAuthenticator::new(settings, state_dir.as_deref(), timeout, metrics)
                .map(Arc::new)
        })
        .await
        .unwrap_or_else(|err| {
            Err(AuthError::RefreshToken(format!(
                "looking for a refresh token failed: {err}"
            )))
        });
        match attempt {
            Ok(authenticator) => {
                tracing::info!(
                    tenant = self.tenant.name().unwrap_or_default(),
                    "a refresh token is there now; the tenant authenticates with it"
                );
                *started = Some(authenticator.clone());
                Ok(authenticator)
            }
            Err(AuthError::NoRefreshToken(_)) => Err(AuthError::NoRefreshToken(self.missing())),
            Err(err) => Err(err),
        }
    }
}
