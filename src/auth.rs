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
                let authenticator = AppUserAuthenticator::new(
                    *settings,
                    config.state_dir.as_deref(),
                    config.partner_center.request_timeout,
                    token_metrics,
                )?;
                Ok(Self::AppUser(Arc::new(authenticator)))
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
        }
    }

    /// A token to replace `rejected`, which Partner Center refused with 401.
    pub async fn renew(&self, rejected: &Secret) -> Result<Secret, AuthError> {
        match self {
            // The file may have been replaced since it was read.
            Self::BearerTokenFile(_) => self.access_token().await,
            Self::AppUser(authenticator) => authenticator.renew(rejected).await,
        }
    }
}
