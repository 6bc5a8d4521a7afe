//! The `login` command: the OAuth 2.0 device-code flow (RFC 8628) that
//! stores the first refresh token in `state_dir`.
//!
//! The operator opens a URL on any device, enters a short code and signs in
//! as a Partner Center admin agent, MFA included; meanwhile this side polls
//! Entra ID's token endpoint at the pace it asks for. The refresh token that
//! comes back is stored exactly as a rotation stores one, so a running
//! exporter switches to it at its next token request and a starting one
//! prefers it over an older configured token.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::entra::{EntraClient, EntraError, Problem, TokenGrant};
use super::refresh_token_store::{RefreshTokenStore, StoreError, StoredRefreshToken};
use crate::config::{AuthMethod, Config, RefreshTokenSettings, SecretSource};
use crate::token_file::read_token_file_blocking;

/// How the flow paces its token requests. Tests shrink these; real sign-ins
/// use [`LoginPacing::STANDARD`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginPacing {
    /// The wait between two token requests when Entra ID names none
    /// (RFC 8628 §3.2: 5 seconds).
    pub default_interval: Duration,
    /// The shortest wait between two token requests, whatever Entra ID
    /// says: an `interval` of 0 must not turn into a busy loop.
    pub min_interval: Duration,
    /// Added to the wait on every `slow_down` answer (RFC 8628 §3.5: 5 seconds).
    pub slow_down_increment: Duration,
}

impl LoginPacing {
    /// The pacing RFC 8628 prescribes.
    pub const STANDARD: Self = Self {
        default_interval: Duration::from_secs(5),
        min_interval: Duration::from_secs(1),
        slow_down_increment: Duration::from_secs(5),
    };
}

impl Default for LoginPacing {
    fn default() -> Self {
        Self::STANDARD
    }
}

/// Everything the flow needs, taken from the configuration by
/// [`LoginTarget::from_config`].
#[derive(Debug, Clone)]
pub struct LoginTarget {
    /// The tenant, client and Entra ID endpoints to sign in with.
    pub settings: RefreshTokenSettings,
    /// Where the refresh token goes.
    pub store: RefreshTokenStore,
    /// [`Secret::fingerprint`](crate::secret::Secret::fingerprint) of the configured refresh token, if one is
    /// configured. Stored with the new token so that the exporter knows the
    /// new token is newer than the configured one; without it the configured
    /// token would win at the next start.
    pub seed_fingerprint: Option<String>,
    /// Limit for each HTTP request to Entra ID.
    pub request_timeout: Duration,
}

/// A configuration `login` cannot work with; names the key to change.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{key}: {message}")]
pub struct LoginConfigError {
    pub key: &'static str,
    pub message: String,
}

impl LoginTarget {
    /// What `login` needs from `config`: the App+User method, `state_dir`,
    /// and the fingerprint of the configured refresh token, if there is one.
    pub fn from_config(config: &Config) -> Result<Self, LoginConfigError> {
        let settings = match config.auth.method() {
            Ok(AuthMethod::RefreshToken(settings)) => *settings,
            Ok(AuthMethod::BearerTokenFile(_)) => {
                return Err(LoginConfigError {
                    key: "auth",
                    message: "login signs in with the App+User method, but this configuration \
                              uses auth.bearer_token_file; set auth.tenant_id, auth.client_id and \
                              auth.client_secret_file instead (see README)"
                        .to_owned(),
                });
            }
            Err((key, message)) => return Err(LoginConfigError { key, message }),
        };
        let Some(state_dir) = &config.state_dir else {
            return Err(LoginConfigError {
                key: "state_dir",
                message: "is required for login, which stores the refresh token there; \
                          set state_dir to a directory only the exporter's user can read"
                    .to_owned(),
            });
        };
        let seed_fingerprint = configured_seed_fingerprint(&settings)?;
        Ok(Self {
            store: RefreshTokenStore::new(state_dir),
            settings,
            seed_fingerprint,
            request_timeout: config.partner_center.request_timeout,
        })
    }
}

/// Whether `config`'s App+User method has a refresh token to start from:
/// one configured (`auth.refresh_token_file` or [`REFRESH_TOKEN_ENV`]), or
/// one stored in `state_dir` (by `login` or a rotation) for its
/// app registration. False for other methods, which need none.
///
/// Only looks: neither the configured file nor the state file is checked
/// beyond that. An unreadable or corrupt state file counts as none, as it
/// does when the exporter starts.
///
/// [`REFRESH_TOKEN_ENV`]: crate::config::REFRESH_TOKEN_ENV
pub fn has_refresh_token(config: &Config) -> bool {
    let Ok(AuthMethod::RefreshToken(settings)) = config.auth.method() else {
        return false;
    };
    if settings.refresh_token.is_some() {
        return true;
    }
    config.state_dir.as_ref().is_some_and(|dir| {
        matches!(
            RefreshTokenStore::new(dir).load(),
            Ok(Some(stored)) if stored.client_id.eq_ignore_ascii_case(&settings.client_id)
        )
    })
}

/// Whether `config` uses the App+User method and has no refresh token
/// anywhere ([`has_refresh_token`]): the exporter cannot start it until
/// `login` has run.
pub fn needs_login(config: &Config) -> bool {
    matches!(config.auth.method(), Ok(AuthMethod::RefreshToken(_))) && !has_refresh_token(config)
}

/// The names of the tenants of a file with `tenants` that still
/// [need a login](needs_login), in file order; empty for a file without.
pub fn tenants_needing_login(config: &Config) -> Vec<&str> {
    config
        .tenants
        .iter()
        .filter(|tenant| needs_login(&tenant.config))
        .map(|tenant| tenant.name.as_str())
        .collect()
}

/// Why `login` cannot tell which tenant to sign in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantChoiceError {
    /// Several tenants and no `--tenant`.
    #[error("several tenants are configured ({}); choose one with --tenant", .0.join(", "))]
    Ambiguous(Vec<String>),
    /// `--tenant` names none of them.
    #[error("no tenant is named {name:?}; the configured tenants are {}", .configured.join(", "))]
    Unknown {
        name: String,
        configured: Vec<String>,
    },
    /// `--tenant` with a file without `tenants`.
    #[error(
        "--tenant {0:?} was given, but the configuration file has no tenants; run login without --tenant"
    )]
    NoTenants(String),
}

/// The tenant `login --tenant` (`tenant`) signs in, and its configuration:
/// the file's only configuration when it has no `tenants`, the named
/// tenant's, or the single tenant's of a list of one.
pub fn choose_tenant<'a>(
    config: &'a Config,
    tenant: Option<&str>,
) -> Result<(Option<&'a str>, &'a Config), TenantChoiceError> {
    let names = || {
        config
            .tenants
            .iter()
            .map(|tenant| tenant.name.clone())
            .collect::<Vec<_>>()
    };
    match (tenant, config.tenants.as_slice()) {
        (None, []) => Ok((None, config)),
        (Some(name), []) => Err(TenantChoiceError::NoTenants(name.to_owned())),
        (None, [only]) => Ok((Some(only.name.as_str()), &only.config)),
        (None, _) => Err(TenantChoiceError::Ambiguous(names())),
        (Some(name), tenants) => tenants
            .iter()
            .find(|tenant| tenant.name == name)
            .map(|tenant| (Some(tenant.name.as_str()), &tenant.config))
            .ok_or_else(|| TenantChoiceError::Unknown {
                name: name.to_owned(),
                configured: names(),
            }),
    }
}

/// The fingerprint of the configured refresh token, if one is configured.
///
/// An unreadable configured token is an error rather than "none": storing
/// no fingerprint beside a configured token makes the exporter prefer the
/// configured one, and the fresh login would be ignored.
pub fn configured_seed_fingerprint(
    settings: &RefreshTokenSettings,
) -> Result<Option<String>, LoginConfigError> {
    match &settings.refresh_token {
        None => Ok(None),
        Some(SecretSource::Environment { value, .. }) => Ok(Some(value.fingerprint())),
        Some(SecretSource::File(path)) => read_token_file_blocking(path)
            .map(|token| Some(token.fingerprint()))
            .map_err(|err| LoginConfigError {
                key: "auth.refresh_token_file",
                message: err.to_string(),
            }),
    }
}

/// A completed sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginOutcome {
    /// The state file the refresh token was stored in.
    pub path: PathBuf,
    /// When the token was obtained, as stored.
    pub obtained_at: DateTime<Utc>,
    /// The pause before each token request, in order: what the flow made of
    /// Entra ID's `interval` and `slow_down` answers.
    pub waits: Vec<Duration>,
}

/// Why no refresh token was stored. Messages say what the operator has to
/// do and never contain a token or code other than the user code.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("{0} (login stores the refresh token there)")]
    StateDir(StoreError),
    #[error("{0}")]
    Setup(EntraError),
    #[error("cannot start the device-code sign-in: {0}")]
    Start(EntraError),
    #[error("cannot print the sign-in instructions: {0}")]
    Output(std::io::Error),
    #[error("the sign-in failed: {0}")]
    SignIn(EntraError),
    #[error(
        "the code expired after {} before the sign-in was completed: \
         run `partner-center-exporter login` again and sign in within the time shown",
        humantime::format_duration(*valid_for)
    )]
    Expired { valid_for: Duration },
    #[error(
        "Entra ID completed the sign-in but returned no refresh token, so offline_access was not granted: \
         make sure the consent for app registration {client_id} covers offline_access and that no \
         Conditional Access policy blocks it, then run `partner-center-exporter login` again; nothing was stored"
    )]
    NoRefreshToken { client_id: String },
    #[error(
        "the sign-in succeeded, but {0}; run `partner-center-exporter login` again once it is fixed"
    )]
    Store(StoreError),
    #[error("interrupted before the sign-in was completed; nothing was stored")]
    Interrupted,
}

impl LoginError {
    /// True when the configuration or `state_dir` must be fixed before a
    /// sign-in can work (exit code 78 rather than 1).
    pub fn is_config_error(&self) -> bool {
        matches!(self, Self::StateDir(_))
    }
}

/// Runs the device-code flow: prints the sign-in instructions to `out`,
/// waits for the sign-in, and stores the refresh token in `target.store`.
///
/// Stops with [`LoginError::Interrupted`] as soon as `cancel` is cancelled,
/// unless the token is already being stored.
pub async fn run(
    target: &LoginTarget,
    pacing: LoginPacing,
    cancel: &CancellationToken,
    out: &mut impl Write,
) -> Result<LoginOutcome, LoginError> {
    // Storing is the whole point: an unusable state_dir is found before the
    // operator spends time signing in.
    let store = target.store.clone();
    tokio::task::spawn_blocking(move || store.prepare())
        .await
        .unwrap_or_else(|err| {
            Err(StoreError::Directory {
                path: target.store.dir().to_owned(),
                message: err.to_string(),
            })
        })
        .map_err(LoginError::StateDir)?;
    let entra =
        EntraClient::new(&target.settings, target.request_timeout).map_err(LoginError::Setup)?;

    // The deadline counts from before the request, so it is never later
    // than Entra ID's own.
    let started = Instant::now();
    let authorization = tokio::select! {
        result = entra.request_device_code() => result.map_err(LoginError::Start)?,
        () = cancel.cancelled() => return Err(LoginError::Interrupted),
    };
    let deadline = started + authorization.expires_in;
    writeln!(
        out,
        "To sign in, open {} and enter the code {} (valid for {}). \
         Sign in as a Partner Center admin agent and complete the MFA prompt.",
        authorization.verification_uri,
        authorization.user_code,
        describe_validity(authorization.expires_in)
    )
    .and_then(|()| writeln!(out, "Waiting for the sign-in to complete…"))
    .and_then(|()| out.flush())
    .map_err(LoginError::Output)?;

    let mut interval = authorization
        .interval
        .unwrap_or(pacing.default_interval)
        .max(pacing.min_interval);
    let mut waits = Vec::new();
    let grant = loop {
        let now = Instant::now();
        if now + interval >= deadline {
            // No request can succeed after the deadline: the code is dead
            // then. Waiting until it passes keeps the promise of the time shown.
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = cancel.cancelled() => return Err(LoginError::Interrupted),
            }
            return Err(LoginError::Expired {
                valid_for: authorization.expires_in,
            });
        }
        waits.push(interval);
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = cancel.cancelled() => return Err(LoginError::Interrupted),
        }
        let result = tokio::select! {
            result = entra.redeem_device_code(&authorization.device_code) => result,
            () = cancel.cancelled() => return Err(LoginError::Interrupted),
        };
        match result {
            Ok(grant) => break grant,
            Err(err) => match next_step(&err) {
                Step::KeepWaiting => {}
                Step::SlowDown => {
                    interval += pacing.slow_down_increment;
                    tracing::debug!(
                        interval = %humantime::format_duration(interval),
                        "Entra ID asked to poll less often"
                    );
                }
                Step::Retry => {
                    tracing::warn!(error = %err, "the token request failed; trying again at the next interval");
                }
                Step::Fail => return Err(LoginError::SignIn(err)),
            },
        }
    };
    store_grant(target, grant, waits, out).await
}

/// What to do after a failed token request.
enum Step {
    /// The user has not finished signing in.
    KeepWaiting,
    /// Entra ID asks for a longer interval.
    SlowDown,
    /// A passing failure of the network or of Entra ID: the code is still good.
    Retry,
    /// The sign-in cannot succeed any more.
    Fail,
}

fn next_step(err: &EntraError) -> Step {
    match err {
        EntraError::Rejected(rejection) => match rejection.problem {
            Problem::AuthorizationPending => Step::KeepWaiting,
            Problem::SlowDown => Step::SlowDown,
            // `temporarily_unavailable` and other server-side errors.
            Problem::Other if rejection.http_status >= 500 => Step::Retry,
            _ => Step::Fail,
        },
        EntraError::Timeout(_) | EntraError::Network(_) => Step::Retry,
        EntraError::Status { status, .. } if *status >= 500 || *status == 429 => Step::Retry,
        EntraError::Status { .. } | EntraError::Decode(_) | EntraError::Setup(_) => Step::Fail,
    }
}

/// Stores the refresh token of a completed sign-in and says where.
async fn store_grant(
    target: &LoginTarget,
    grant: TokenGrant,
    waits: Vec<Duration>,
    out: &mut impl Write,
) -> Result<LoginOutcome, LoginError> {
    let Some(refresh_token) = grant.refresh_token else {
        return Err(LoginError::NoRefreshToken {
            client_id: target.settings.client_id.clone(),
        });
    };
    let obtained_at = Utc::now();
    let stored = StoredRefreshToken {
        refresh_token,
        obtained_at,
        client_id: target.settings.client_id.clone(),
        tenant_id: target.settings.tenant_id.clone(),
        seed_fingerprint: target.seed_fingerprint.clone(),
    };
    let store = target.store.clone();
    tokio::task::spawn_blocking(move || store.save(&stored))
        .await
        .unwrap_or_else(|err| {
            Err(StoreError::Write {
                path: target.store.path(),
                message: err.to_string(),
            })
        })
        .map_err(LoginError::Store)?;
    let path = target.store.path();
    tracing::info!(path = %path.display(), "stored the refresh token from login");
    // The token is stored whatever happens to this message, so a closed
    // standard output does not turn the sign-in into a failure.
    let _ = writeln!(
        out,
        "Signed in. Stored the refresh token in {}; a running exporter switches to it at its next token request.",
        path.display()
    )
    .and_then(|()| out.flush());
    Ok(LoginOutcome {
        path,
        obtained_at,
        waits,
    })
}

/// "15 minutes", or seconds for a short validity.
fn describe_validity(valid_for: Duration) -> String {
    let seconds = valid_for.as_secs();
    match seconds {
        120.. => format!("{} minutes", seconds / 60),
        1 => "1 second".to_owned(),
        _ => format!("{seconds} seconds"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::refresh_token_store::STATE_FILE_NAME;

    #[test]
    fn validity_is_described_in_minutes_or_seconds() {
        assert_eq!(describe_validity(Duration::from_secs(900)), "15 minutes");
        assert_eq!(describe_validity(Duration::from_secs(179)), "2 minutes");
        assert_eq!(describe_validity(Duration::from_secs(90)), "90 seconds");
        assert_eq!(describe_validity(Duration::from_secs(1)), "1 second");
        assert_eq!(describe_validity(Duration::from_millis(300)), "0 seconds");
    }

    #[test]
    fn passing_failures_are_retried_and_others_end_the_flow() {
        assert!(matches!(
            next_step(&EntraError::Timeout(Duration::from_secs(1))),
            Step::Retry
        ));
        assert!(matches!(
            next_step(&EntraError::Network("connection reset".to_owned())),
            Step::Retry
        ));
        for status in [429, 500, 503] {
            assert!(
                matches!(
                    next_step(&EntraError::Status {
                        status,
                        url: String::new()
                    }),
                    Step::Retry
                ),
                "{status}"
            );
        }
        assert!(matches!(
            next_step(&EntraError::Status {
                status: 404,
                url: String::new()
            }),
            Step::Fail
        ));
        assert!(matches!(
            next_step(&EntraError::Decode("not JSON".to_owned())),
            Step::Fail
        ));
    }

    const CLIENT_ID: &str = "3f2c5e2a-0000-4000-8000-000000000001";

    /// A directory with a client secret, a refresh token file and a
    /// configuration file.
    fn parse(dir: &tempfile::TempDir, yaml: &str) -> Config {
        std::fs::write(dir.path().join("secret"), "client-secret\n").expect("write");
        std::fs::write(dir.path().join("refresh"), "refresh-token\n").expect("write");
        std::fs::write(dir.path().join("token"), "access-token\n").expect("write");
        Config::from_yaml(yaml, &dir.path().join("exporter.yml")).expect("valid")
    }

    fn app_user(name: &str, extra: &str) -> String {
        format!(
            "  - name: {name}\n    auth:\n      tenant_id: contoso.onmicrosoft.com\n      client_id: {CLIENT_ID}\n      client_secret_file: secret\n{extra}"
        )
    }

    fn store(dir: &std::path::Path, client_id: &str) {
        let store = RefreshTokenStore::new(dir);
        store.prepare().expect("prepare");
        store
            .save(&StoredRefreshToken {
                refresh_token: crate::secret::Secret::new("stored"),
                obtained_at: Utc::now(),
                client_id: client_id.to_owned(),
                tenant_id: "contoso.onmicrosoft.com".to_owned(),
                seed_fingerprint: None,
            })
            .expect("save");
    }

    #[test]
    fn a_refresh_token_is_found_configured_or_stored_for_the_same_client() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = parse(
            &dir,
            &format!(
                "state_dir: state\ntenants:\n{}{}{}  - name: bearer\n    auth:\n      bearer_token_file: token\n",
                app_user("configured", "      refresh_token_file: refresh\n"),
                app_user("stored", ""),
                app_user("other-client", ""),
            ),
        );
        let state = dir.path().join("state");
        assert_eq!(
            tenants_needing_login(&config),
            ["stored", "other-client"],
            "nothing stored yet"
        );
        store(&state.join("stored"), &CLIENT_ID.to_ascii_uppercase());
        store(
            &state.join("other-client"),
            "3f2c5e2a-0000-4000-8000-00000000000f",
        );
        // A corrupt state file counts as none.
        std::fs::write(state.join(STATE_FILE_NAME), "{").expect("write");

        let by_name = |name: &str| {
            config
                .tenants
                .iter()
                .find(|tenant| tenant.name == name)
                .map(|tenant| &tenant.config)
                .expect("tenant")
        };
        assert!(has_refresh_token(by_name("configured")));
        assert!(
            has_refresh_token(by_name("stored")),
            "client IDs compare without case"
        );
        assert!(
            !has_refresh_token(by_name("other-client")),
            "another app registration's token is useless"
        );
        assert!(!has_refresh_token(by_name("bearer")));
        assert!(
            !needs_login(by_name("bearer")),
            "a bearer token needs no login"
        );
        assert_eq!(tenants_needing_login(&config), ["other-client"]);

        // A file without tenants: its state_dir holds the corrupt file.
        let single = parse(
            &dir,
            &format!(
                "auth:\n  tenant_id: contoso.onmicrosoft.com\n  client_id: {CLIENT_ID}\n  client_secret_file: secret\nstate_dir: state\n"
            ),
        );
        assert!(needs_login(&single));
        assert!(
            tenants_needing_login(&single).is_empty(),
            "no tenants, no names"
        );
    }

    #[test]
    fn the_tenant_to_sign_in_is_chosen_by_name_or_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let single = parse(&dir, "auth:\n  bearer_token_file: token\n");
        let (name, chosen) = choose_tenant(&single, None).expect("the file itself");
        assert_eq!(name, None);
        assert!(std::ptr::eq(chosen, &single));
        assert_eq!(
            choose_tenant(&single, Some("a")).expect_err("no tenants"),
            TenantChoiceError::NoTenants("a".to_owned())
        );

        let one = parse(
            &dir,
            &format!("state_dir: state\ntenants:\n{}", app_user("a", "")),
        );
        let (name, chosen) = choose_tenant(&one, None).expect("the only tenant");
        assert_eq!(name, Some("a"));
        assert_eq!(chosen.state_dir, Some(dir.path().join("state").join("a")));

        let two = parse(
            &dir,
            &format!(
                "state_dir: state\ntenants:\n{}{}",
                app_user("a", ""),
                app_user("b", "")
            ),
        );
        let err = choose_tenant(&two, None).expect_err("ambiguous");
        assert_eq!(
            err.to_string(),
            "several tenants are configured (a, b); choose one with --tenant"
        );
        let (name, chosen) = choose_tenant(&two, Some("b")).expect("named");
        assert_eq!(name, Some("b"));
        assert_eq!(chosen.state_dir, Some(dir.path().join("state").join("b")));
        assert_eq!(
            choose_tenant(&two, Some("c"))
                .expect_err("unknown")
                .to_string(),
            "no tenant is named \"c\"; the configured tenants are a, b"
        );
    }

    #[test]
    fn standard_pacing_follows_rfc_8628() {
        assert_eq!(LoginPacing::default(), LoginPacing::STANDARD);
        assert_eq!(
            LoginPacing::STANDARD.slow_down_increment,
            Duration::from_secs(5)
        );
        assert_eq!(
            LoginPacing::STANDARD.default_interval,
            Duration::from_secs(5)
        );
        assert_eq!(LoginPacing::STANDARD.min_interval, Duration::from_secs(1));
    }
}
