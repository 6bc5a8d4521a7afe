//! App+User access tokens: redeemed from a refresh token at Entra ID,
//! cached until shortly before they expire, and shared by every caller that
//! needs one at the same moment. Every rotated refresh token is stored in
//! `state_dir` before it is relied on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::AuthError;
use super::entra::{EntraClient, TokenGrant, TokenRequestResult};
use super::refresh_token_store::{RefreshTokenStore, StoredRefreshToken};
use crate::config::{RefreshTokenSettings, SecretSource};
use crate::exposition::metrics::TokenMetrics;
use crate::secret::Secret;
use crate::token_file::read_token_file_blocking;

/// An access token is renewed this long before it expires (or at half its
/// lifetime, if that is shorter), so a poll never starts with a token that
/// runs out in the middle of it.
pub const RENEWAL_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Where the refresh token in use came from, for log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// `auth.refresh_token_file` or the environment variable.
    Configured,
    /// The state file, stored by an earlier run or by `login`.
    StateDir,
    /// Entra ID's latest answer.
    Rotated,
}

/// The refresh token in use.
struct CurrentRefreshToken {
    token: Secret,
    /// When it was obtained (or, for a configured token, first used).
    obtained_at: DateTime<Utc>,
    /// Fingerprint of the configured token this chain grew from.
    seed_fingerprint: Option<String>,
    origin: Origin,
}

/// An access token and when to stop using it.
struct CachedAccessToken {
    token: Secret,
    renew_at: Instant,
}

/// Everything behind the lock: holding it is what makes concurrent callers
/// share one token request.
struct TokenState {
    access: Option<CachedAccessToken>,
    refresh: CurrentRefreshToken,
    /// Fingerprint of the configured refresh token when it was last read; a
    /// different one later means the operator replaced it.
    configured_fingerprint: Option<String>,
    /// The outcome of the last failed request, handed to callers that were
    /// waiting for it instead of sending another request straight away.
    last_failure: Option<AuthError>,
}

/// Access tokens for the App+User refresh-token method.
pub struct AppUserAuthenticator {
    entra: EntraClient,
    settings: RefreshTokenSettings,
    store: Option<RefreshTokenStore>,
    metrics: TokenMetrics,
    /// Token requests finished so far; tells a waiting caller whether a
    /// request completed while it waited.
    completed_requests: AtomicU64,
    state: Mutex<TokenState>,
}

impl std::fmt::Debug for AppUserAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppUserAuthenticator")
            .field("token_url", &self.entra.token_url().as_str())
            .field("client_id", &self.settings.client_id)
            .field(
                "state_dir",
                &self.store.as_ref().map(RefreshTokenStore::dir),
            )
            .finish_non_exhaustive()
    }
}

impl AppUserAuthenticator {
    /// Prepares `state_dir` and picks the refresh token to start from: the
    /// stored one, unless the configured one was replaced since the stored
    /// chain of rotations began from it.
    pub fn new(
        settings: RefreshTokenSettings,
        state_dir: Option<&std::path::Path>,
        request_timeout: Duration,
        metrics: TokenMetrics,
    ) -> Result<Self, AuthError> {
        let entra = EntraClient::new(&settings, request_timeout).map_err(AuthError::Entra)?;
        let store = state_dir.map(RefreshTokenStore::new);
        let stored = match &store {
            Some(store) => {
                if let Err(err) = store.prepare() {
                    tracing::warn!(error = %err, "state_dir is not usable: rotated refresh tokens will be kept in memory only");
                }
                load_stored(store, &settings)
            }
            None => None,
        };
        let configured = match &settings.refresh_token {
            Some(source) => match read_secret_blocking(source) {
                Ok(token) => Some(token),
                Err(err) if stored.is_some() => {
                    tracing::warn!(error = %err, "cannot read the configured refresh token; using the one in state_dir");
                    None
                }
                Err(err) => return Err(AuthError::RefreshToken(err.to_string())),
            },
            None => None,
        };
        let configured_fingerprint = configured.as_ref().map(Secret::fingerprint);
        let refresh = choose_initial(configured, stored).ok_or_else(|| {
            AuthError::NoRefreshToken(match &store {
                Some(store) => format!(
                    "{} holds none and none is configured; run `partner-center-exporter login` to store one",
                    store.path().display()
                ),
                None => "none is configured; set auth.refresh_token_file".to_owned(),
            })
        })?;
        tracing::info!(
            token_url = %entra.token_url(),
            client_id = %settings.client_id,
            refresh_token_from = match refresh.origin {
                Origin::StateDir => "state_dir",
                _ => "configuration",
            },
            state_dir = store.as_ref().map(|store| store.dir().display().to_string()).unwrap_or_default(),
            "authenticating with the App+User refresh-token method"
        );
        Ok(Self {
            entra,
            settings,
            store,
            metrics,
            completed_requests: AtomicU64::new(0),
            state: Mutex::new(TokenState {
                access: None,
                refresh,
                configured_fingerprint,
                last_failure: None,
            }),
        })
    }

    /// An access token that is valid for a while yet, from the cache or
    /// freshly redeemed.
    pub async fn access_token(&self) -> Result<Secret, AuthError> {
        let seen = self.completed_requests.load(Ordering::Acquire);
        let mut state = self.state.lock().await;
        if let Some(access) = &state.access
            && Instant::now() < access.renew_at
        {
            return Ok(access.token.clone());
        }
        if let Some(err) = self.failure_while_waiting(&state, seen) {
            return Err(err);
        }
        self.redeem(&mut state).await
    }

    /// A new access token to replace `rejected`, which Partner Center
    /// refused. If another caller already replaced it, that token is used.
    pub async fn renew(&self, rejected: &Secret) -> Result<Secret, AuthError> {
        let seen = self.completed_requests.load(Ordering::Acquire);
        let mut state = self.state.lock().await;
        if let Some(access) = &state.access
            && access.token != *rejected
            && Instant::now() < access.renew_at
        {
            return Ok(access.token.clone());
        }
        if let Some(err) = self.failure_while_waiting(&state, seen) {
            return Err(err);
        }
        state.access = None;
        self.redeem(&mut state).await
    }

    /// The failure of a request that finished while this caller waited for
    /// the lock: sharing it keeps a burst of callers to one request.
    fn failure_while_waiting(&self, state: &TokenState, seen: u64) -> Option<AuthError> {
        if self.completed_requests.load(Ordering::Acquire) == seen {
            return None;
        }
        state.last_failure.clone()
    }

    /// Sends one token request and records its outcome. Called with the lock held.
    async fn redeem(&self, state: &mut TokenState) -> Result<Secret, AuthError> {
        self.adopt_newer_refresh_token(state).await;
        let client_secret = match read_secret(&self.settings.client_secret).await {
            Ok(secret) => secret,
            Err(err) => {
                let err = AuthError::ClientSecret(err.to_string());
                state.last_failure = Some(err.clone());
                self.completed_requests.fetch_add(1, Ordering::AcqRel);
                return Err(err);
            }
        };
        let sent_at = Instant::now();
        let sent_at_wall = Utc::now();
        let result = self
            .entra
            .redeem_refresh_token(&state.refresh.token, &client_secret)
            .await;
        let outcome = match result {
            Ok(grant) => {
                self.metrics
                    .count_token_request(TokenRequestResult::Success.as_str());
                let token = self.accept_grant(state, grant, sent_at, sent_at_wall).await;
                state.last_failure = None;
                Ok(token)
            }
            Err(err) => {
                self.metrics.count_token_request(err.kind().as_str());
                state.access = None;
                let err = AuthError::Entra(err);
                state.last_failure = Some(err.clone());
                Err(err)
            }
        };
        self.completed_requests.fetch_add(1, Ordering::AcqRel);
        outcome
    }

    /// Caches the access token and stores a rotated refresh token.
    async fn accept_grant(
        &self,
        state: &mut TokenState,
        grant: TokenGrant,
        sent_at: Instant,
        sent_at_wall: DateTime<Utc>,
    ) -> Secret {
        let lifetime = grant.expires_in.unwrap_or_else(|| {
            tracing::warn!(
                "Entra ID gave no usable expires_in; the access token is used for this request only"
            );
            Duration::ZERO
        });
        let margin = RENEWAL_MARGIN.min(lifetime / 2);
        // Counted from before the request was sent, so the network time
        // shortens the cached lifetime rather than stretching it.
        state.access = Some(CachedAccessToken {
            token: grant.access_token.clone(),
            renew_at: sent_at + lifetime.saturating_sub(margin),
        });
        let expires_at = sent_at_wall + chrono::Duration::from_std(lifetime).unwrap_or_default();
        self.metrics.set_access_token_expiry(expires_at);
        tracing::debug!(
            expires_in_seconds = lifetime.as_secs(),
            "obtained a Partner Center access token"
        );

        if let Some(new_refresh_token) = grant.refresh_token
            && new_refresh_token != state.refresh.token
        {
            state.refresh = CurrentRefreshToken {
                token: new_refresh_token,
                obtained_at: sent_at_wall,
                seed_fingerprint: state.refresh.seed_fingerprint.clone(),
                origin: Origin::Rotated,
            };
            self.persist(&state.refresh).await;
        }
        grant.access_token
    }

    /// Stores the current refresh token, or says loudly why it is not stored.
    async fn persist(&self, refresh: &CurrentRefreshToken) {
        let Some(store) = self.store.clone() else {
            self.metrics.count_persist_failure();
            tracing::warn!(
                "the refresh token was rotated but state_dir is not set, so the new one lives in memory only: \
                 after a restart the exporter falls back to the configured refresh token, which stops working \
                 90 days after it was issued; set state_dir"
            );
            return;
        };
        let stored = StoredRefreshToken {
            refresh_token: refresh.token.clone(),
            obtained_at: refresh.obtained_at,
            client_id: self.settings.client_id.clone(),
            tenant_id: self.settings.tenant_id.clone(),
            seed_fingerprint: refresh.seed_fingerprint.clone(),
        };
        let result = tokio::task::spawn_blocking(move || store.save(&stored))
            .await
            .unwrap_or_else(|err| {
                Err(super::refresh_token_store::StoreError::Write {
                    path: std::path::PathBuf::new(),
                    message: err.to_string(),
                })
            });
        match result {
            Ok(()) => {
                self.metrics.set_refresh_token_rotated(Utc::now());
                tracing::info!("stored the rotated refresh token in state_dir");
            }
            Err(err) => {
                self.metrics.count_persist_failure();
                tracing::warn!(
                    error = %err,
                    "the refresh token was rotated but cannot be stored, so the new one lives in memory only; \
                     fix state_dir before the exporter restarts"
                );
            }
        }
    }

    /// Switches to a refresh token that appeared since the last request: one
    /// stored in `state_dir` by `login`, or a replaced configured token.
    async fn adopt_newer_refresh_token(&self, state: &mut TokenState) {
        if let Some(store) = self.store.clone() {
            let settings = self.settings.clone();
            // Problems with the state file were logged at startup and, for
            // writes, at every rotation; here they would only repeat.
            let stored = tokio::task::spawn_blocking(move || {
                store
                    .load()
                    .ok()
                    .flatten()
                    .filter(|stored| stored.client_id.eq_ignore_ascii_case(&settings.client_id))
            })
            .await
            .ok()
            .flatten();
            if let Some(stored) = stored
                && stored.obtained_at > state.refresh.obtained_at
                && stored.refresh_token != state.refresh.token
            {
                tracing::info!(
                    stored_at = %stored.obtained_at.to_rfc3339(),
                    "state_dir holds a newer refresh token (stored by `login`?); using it"
                );
                state.refresh = CurrentRefreshToken {
                    token: stored.refresh_token,
                    obtained_at: stored.obtained_at,
                    seed_fingerprint: stored.seed_fingerprint,
                    origin: Origin::StateDir,
                };
            }
        }
        if let Some(source @ SecretSource::File(_)) = &self.settings.refresh_token
            && let Ok(configured) = read_secret(source).await
        {
            let fingerprint = configured.fingerprint();
            if state.configured_fingerprint.as_ref() != Some(&fingerprint) {
                state.configured_fingerprint = Some(fingerprint.clone());
                if configured != state.refresh.token {
                    tracing::info!("auth.refresh_token_file holds a new refresh token; using it");
                    state.refresh = CurrentRefreshToken {
                        token: configured,
                        obtained_at: Utc::now(),
                        seed_fingerprint: Some(fingerprint),
                        origin: Origin::Configured,
                    };
                }
            }
        }
    }
}

/// The stored token, if there is a usable one for this app registration.
fn load_stored(
    store: &RefreshTokenStore,
    settings: &RefreshTokenSettings,
) -> Option<StoredRefreshToken> {
    match store.load() {
        Ok(Some(stored)) if stored.client_id.eq_ignore_ascii_case(&settings.client_id) => {
            Some(stored)
        }
        Ok(Some(stored)) => {
            tracing::warn!(
                path = %store.path().display(),
                stored_client_id = %stored.client_id,
                "the stored refresh token belongs to another app registration; ignoring it"
            );
            None
        }
        Ok(None) => None,
        Err(err) => {
            tracing::warn!(error = %err, "ignoring the stored refresh token");
            None
        }
    }
}

/// The refresh token to start from. The stored one is the newest unless
/// the configured one differs from the token the stored chain grew from:
/// then the operator replaced it after that chain began.
fn choose_initial(
    configured: Option<Secret>,
    stored: Option<StoredRefreshToken>,
) -> Option<CurrentRefreshToken> {
    let from_configuration = |token: Secret| CurrentRefreshToken {
        seed_fingerprint: Some(token.fingerprint()),
        token,
        obtained_at: Utc::now(),
        origin: Origin::Configured,
    };
    let from_state_dir = |stored: StoredRefreshToken| CurrentRefreshToken {
        token: stored.refresh_token,
        obtained_at: stored.obtained_at,
        seed_fingerprint: stored.seed_fingerprint,
        origin: Origin::StateDir,
    };
    match (configured, stored) {
        (None, None) => None,
        (Some(configured), None) => Some(from_configuration(configured)),
        (None, Some(stored)) => Some(from_state_dir(stored)),
        (Some(configured), Some(stored)) => {
            let grew_from_configured =
                stored.seed_fingerprint.as_deref() == Some(configured.fingerprint().as_str());
            if grew_from_configured || configured == stored.refresh_token {
                Some(from_state_dir(stored))
            } else {
                Some(from_configuration(configured))
            }
        }
    }
}

fn read_secret_blocking(
    source: &SecretSource,
) -> Result<Secret, crate::token_file::TokenFileError> {
    match source {
        SecretSource::File(path) => read_token_file_blocking(path),
        SecretSource::Environment { value, .. } => Ok(value.clone()),
    }
}

/// Reads a secret, re-reading files so a replaced secret is picked up.
async fn read_secret(source: &SecretSource) -> Result<Secret, crate::token_file::TokenFileError> {
    match source {
        SecretSource::File(path) => crate::token_file::read_token_file(path).await,
        SecretSource::Environment { value, .. } => Ok(value.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(token: &str, seed: Option<&str>) -> StoredRefreshToken {
        StoredRefreshToken {
            refresh_token: Secret::new(token),
            obtained_at: Utc::now(),
            client_id: "c".to_owned(),
            tenant_id: "t".to_owned(),
            seed_fingerprint: seed.map(|seed| Secret::new(seed).fingerprint()),
        }
    }

    fn chosen(
        configured: Option<&str>,
        stored: Option<StoredRefreshToken>,
    ) -> Option<(String, Origin)> {
        choose_initial(configured.map(Secret::new), stored)
            .map(|current| (current.token.expose().to_owned(), current.origin))
    }

    #[test]
    fn the_newer_of_stored_and_configured_token_is_chosen() {
        assert_eq!(chosen(None, None), None);
        assert_eq!(
            chosen(Some("rt-0"), None),
            Some(("rt-0".to_owned(), Origin::Configured)),
            "first start"
        );
        assert_eq!(
            chosen(None, Some(stored("rt-3", None))),
            Some(("rt-3".to_owned(), Origin::StateDir)),
            "stored by login, nothing configured"
        );
        assert_eq!(
            chosen(Some("rt-0"), Some(stored("rt-3", Some("rt-0")))),
            Some(("rt-3".to_owned(), Origin::StateDir)),
            "restart: the stored token grew from the configured one"
        );
        assert_eq!(
            chosen(Some("rt-new"), Some(stored("rt-3", Some("rt-0")))),
            Some(("rt-new".to_owned(), Origin::Configured)),
            "the operator replaced the configured token since"
        );
        assert_eq!(
            chosen(Some("rt-new"), Some(stored("rt-3", None))),
            Some(("rt-new".to_owned(), Origin::Configured)),
            "a token configured after a login without one"
        );
        assert_eq!(
            chosen(Some("rt-3"), Some(stored("rt-3", None))),
            Some(("rt-3".to_owned(), Origin::StateDir)),
            "the same token either way"
        );
    }
}
