//! The simulated Entra ID: the v1 token endpoint,
//! `POST /{tenant}/oauth2/token`, for the refresh-token grant.
//!
//! It checks the client id, client secret, resource and refresh token,
//! answers with a short-lived access token and a new refresh token, and
//! from then on accepts only that new refresh token (strict rotation), so
//! a client fails unless it really uses the rotated one. Refusals look
//! like Entra ID's, AADSTS codes included. The access tokens it issued are
//! what Partner Center accepts in [`super::PartnerCenterAuth::IssuedTokens`].

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::http::{Answer, Body, Request};
use crate::config::DEFAULT_RESOURCE;
use crate::secret::Secret;

/// The v1 token endpoint is `/{tenant}` followed by this.
pub const TOKEN_PATH_SUFFIX: &str = "/oauth2/token";

/// The only body type the token endpoint reads, as with Entra ID.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Most unexpired access tokens remembered; the oldest are forgotten first.
/// Bounds memory however often tokens are requested.
pub const MAX_LIVE_ACCESS_TOKENS: usize = 32;

/// The simulated application registration and the first refresh token.
#[derive(Debug, Clone)]
pub struct EntraSettings {
    /// The tenant the endpoint answers for (compared case-insensitively).
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// The refresh token accepted first; each redemption replaces it.
    pub refresh_token: Secret,
    /// The lifetime of the access tokens issued.
    pub access_token_lifetime: Duration,
}

/// A random credential value: printable ASCII, as Entra ID's are, with 244
/// random bits.
pub fn random_token(prefix: &str) -> String {
    format!(
        "{prefix}.{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The token endpoint's settings and the tokens issued so far.
pub(crate) struct TokenEndpoint {
    settings: EntraSettings,
    tokens: Mutex<IssuedTokens>,
}

struct IssuedTokens {
    /// The only refresh token accepted: the one issued last.
    refresh_token: Secret,
    /// Access tokens issued and when each expires, oldest first.
    access_tokens: VecDeque<(Secret, Instant)>,
    /// Successful redemptions so far.
    redeemed: u64,
}

/// A token request's parameters; those Entra ID does not need are ignored.
#[derive(Default)]
pub(crate) struct TokenRequest {
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

/// The tenant of a token endpoint path, `/{tenant}/oauth2/token`.
pub(crate) fn tenant_of(path: &str) -> Option<&str> {
    path.strip_prefix('/')
        .and_then(|rest| rest.strip_suffix(TOKEN_PATH_SUFFIX))
        .filter(|tenant| !tenant.is_empty() && !tenant.contains('/'))
}

impl TokenEndpoint {
    pub(crate) fn new(settings: EntraSettings) -> Self {
        let tokens = Mutex::new(IssuedTokens {
            refresh_token: settings.refresh_token.clone(),
            access_tokens: VecDeque::new(),
            redeemed: 0,
        });
        Self { settings, tokens }
    }

    fn tokens(&self) -> MutexGuard<'_, IssuedTokens> {
        // Nothing panics while the lock is held; should that ever change,
        // the token lists are still consistent, so the simulation carries on.
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The refresh token the endpoint accepts now: the one issued last.
    pub(crate) fn current_refresh_token(&self) -> Secret {
        self.tokens().refresh_token.clone()
    }

    /// How many refresh tokens were redeemed successfully.
    pub(crate) fn redeemed(&self) -> u64 {
        self.tokens().redeemed
    }

    /// Whether `token` is an access token issued here that has not expired at `now`.
    pub(crate) fn access_token_is_valid(&self, token: &str, now: Instant) -> bool {
        self.tokens()
            .access_tokens
            .iter()
            .any(|(issued, expires_at)| issued.expose() == token && now < *expires_at)
    }

    /// Answers a request to the token endpoint of `tenant`.
    pub(crate) fn respond(&self, tenant: &str, request: &Request) -> Answer {
        self.token_endpoint(tenant, request)
            // As Entra ID does: token answers must never be cached.
            .with_header("Cache-Control", "no-store")
            .with_header("Pragma", "no-cache")
    }

    fn token_endpoint(&self, tenant: &str, request: &Request) -> Answer {
        if request.method != "POST" {
            return oauth_error(
                400,
                "invalid_request",
                Some(900_561),
                "The endpoint only accepts POST requests.",
            );
        }
        // Entra ID reads anything but a form as a form without parameters.
        let is_form = request
            .header("content-type")
            .and_then(|value| value.split(';').next())
            .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case(FORM_CONTENT_TYPE));
        let body = match &request.body {
            Body::Complete(body) => body,
            Body::TooLarge | Body::Unreadable(_) => {
                tracing::debug!("simulated Entra ID refused an unreadable token request");
                return oauth_error(
                    400,
                    "invalid_request",
                    None,
                    "The request body could not be read or is too large.",
                );
            }
        };
        if !tenant.eq_ignore_ascii_case(&self.settings.tenant_id) {
            return oauth_error(
                400,
                "invalid_request",
                Some(90_002),
                "Tenant not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.",
            );
        }
        let form = if is_form {
            match TokenRequest::parse(body) {
                Ok(form) => form,
                Err(duplicated) => {
                    return oauth_error(
                        400,
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
    fn redeem(&self, form: &TokenRequest, now: Instant, wall_now: SystemTime) -> Answer {
        let tenant_id = &self.settings.tenant_id;
        let missing = |name: &str| {
            oauth_error(
                400,
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
                400,
                "unsupported_grant_type",
                Some(70_003),
                "The app requested an unsupported grant type.",
            );
        }
        let Some(client_id) = &form.client_id else {
            return missing("client_id");
        };
        if !client_id
            .trim()
            .eq_ignore_ascii_case(&self.settings.client_id)
        {
            return oauth_error(
                400,
                "unauthorized_client",
                Some(700_016),
                &format!(
                    "Application with the given identifier was not found in the directory '{tenant_id}'."
                ),
            );
        }
        let Some(client_secret) = &form.client_secret else {
            return oauth_error(
                401,
                "invalid_client",
                Some(7_000_218),
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            );
        };
        if client_secret.as_str() != self.settings.client_secret.expose() {
            return oauth_error(
                401,
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
                400,
                "invalid_resource",
                Some(500_011),
                &format!("The resource principal was not found in the tenant named {tenant_id}."),
            );
        }
        let Some(refresh_token) = &form.refresh_token else {
            return missing("refresh_token");
        };

        let lifetime = self.settings.access_token_lifetime;
        let access_token = Secret::new(random_token("sim-at"));
        let new_refresh_token = Secret::new(random_token("sim-rt"));
        {
            // Checked and replaced under one lock, so that of two requests
            // with the same refresh token only one succeeds.
            let mut tokens = self.tokens();
            if refresh_token.as_str() != tokens.refresh_token.expose() {
                drop(tokens);
                tracing::debug!(
                    "simulated Entra ID refused a refresh token that is not the latest one issued"
                );
                return oauth_error(
                    400,
                    "invalid_grant",
                    Some(70_008),
                    "The provided refresh token has expired or was revoked.",
                );
            }
            tokens.refresh_token = new_refresh_token.clone();
            tokens.redeemed += 1;
            tokens
                .access_tokens
                .retain(|(_, expires_at)| now < *expires_at);
            while tokens.access_tokens.len() >= MAX_LIVE_ACCESS_TOKENS {
                tokens.access_tokens.pop_front();
            }
            tokens
                .access_tokens
                .push_back((access_token.clone(), now + lifetime));
        }
        tracing::debug!(
            expires_in_seconds = lifetime.as_secs(),
            "simulated Entra ID issued an access token and rotated the refresh token"
        );

        let lifetime = lifetime.as_secs();
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
        Answer::json(200, body.to_string())
    }
}

/// An OAuth error answer shaped like Entra ID's: the AADSTS code leads the
/// description, which goes on with the trace and correlation IDs.
pub(crate) fn oauth_error(
    status: u16,
    error: &str,
    code: Option<u32>,
    description: &str,
) -> Answer {
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
    Answer::json(status, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFETIME: Duration = Duration::from_secs(50);

    fn endpoint() -> TokenEndpoint {
        TokenEndpoint::new(EntraSettings {
            tenant_id: "contoso.onmicrosoft.com".to_owned(),
            client_id: uuid::Uuid::new_v4().to_string(),
            client_secret: Secret::new("client-secret"),
            refresh_token: Secret::new("rt-0"),
            access_token_lifetime: LIFETIME,
        })
    }

    fn valid_request(endpoint: &TokenEndpoint, refresh_token: &str) -> TokenRequest {
        TokenRequest {
            grant_type: Some("refresh_token".to_owned()),
            client_id: Some(endpoint.settings.client_id.to_uppercase()),
            client_secret: Some(endpoint.settings.client_secret.expose().to_owned()),
            refresh_token: Some(refresh_token.to_owned()),
            resource: Some(format!("{DEFAULT_RESOURCE}/")),
        }
    }

    fn body_json(answer: &Answer) -> serde_json::Value {
        serde_json::from_slice(&answer.body).expect("JSON")
    }

    #[test]
    fn token_paths_name_one_tenant() {
        assert_eq!(
            tenant_of("/contoso.onmicrosoft.com/oauth2/token"),
            Some("contoso.onmicrosoft.com")
        );
        for path in [
            "/contoso.onmicrosoft.com/oauth2/v2.0/token",
            "/oauth2/token",
            "//oauth2/token",
            "/a/b/oauth2/token",
            "contoso/oauth2/token",
        ] {
            assert_eq!(tenant_of(path), None, "{path}");
        }
    }

    #[test]
    fn access_tokens_expire_and_their_number_is_bounded() {
        let endpoint = endpoint();
        let now = Instant::now();
        let answer = endpoint.redeem(&valid_request(&endpoint, "rt-0"), now, SystemTime::now());
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        let answer = body_json(&answer);
        assert_eq!(answer["token_type"], "Bearer");
        assert_eq!(
            answer["expires_in"],
            LIFETIME.as_secs().to_string().as_str(),
            "a string, as from the v1 endpoint"
        );
        assert_eq!(answer["resource"], DEFAULT_RESOURCE);
        let access_token = answer["access_token"].as_str().expect("access token");
        let mut refresh_token = answer["refresh_token"]
            .as_str()
            .expect("refresh token")
            .to_owned();
        assert!(endpoint.access_token_is_valid(access_token, now));
        assert!(
            endpoint.access_token_is_valid(access_token, now + LIFETIME - Duration::from_secs(1))
        );
        assert!(!endpoint.access_token_is_valid(access_token, now + LIFETIME));
        assert!(!endpoint.access_token_is_valid(&refresh_token, now));

        let mut last_access_token = String::new();
        for _ in 0..MAX_LIVE_ACCESS_TOKENS + 3 {
            let answer = body_json(&endpoint.redeem(
                &valid_request(&endpoint, &refresh_token),
                now,
                SystemTime::now(),
            ));
            refresh_token = answer["refresh_token"]
                .as_str()
                .expect("rotated")
                .to_owned();
            last_access_token = answer["access_token"].as_str().expect("issued").to_owned();
        }
        assert_eq!(
            endpoint.tokens().access_tokens.len(),
            MAX_LIVE_ACCESS_TOKENS
        );
        assert!(
            !endpoint.access_token_is_valid(access_token, now),
            "forgotten"
        );
        assert!(endpoint.access_token_is_valid(&last_access_token, now));
        assert_eq!(endpoint.redeemed(), MAX_LIVE_ACCESS_TOKENS as u64 + 4);
        assert_eq!(endpoint.current_refresh_token().expose(), refresh_token);
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

    #[test]
    fn refusals_look_like_entra_ids() {
        let answer = body_json(&oauth_error(
            400,
            "invalid_grant",
            Some(70_008),
            "The provided refresh token has expired or was revoked.",
        ));
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
        let answer = body_json(&oauth_error(400, "invalid_request", None, "Unreadable."));
        assert!(answer.get("error_codes").is_none(), "{answer}");
        assert!(
            answer["error_description"]
                .as_str()
                .is_some_and(|d| d.starts_with("Unreadable.\r\n")),
            "{answer}"
        );
    }
}
