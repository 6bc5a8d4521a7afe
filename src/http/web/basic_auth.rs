//! HTTP basic authentication against `basic_auth_users`' bcrypt hashes.
//!
//! bcrypt is slow on purpose (tens of milliseconds at cost 10), so it runs
//! on the blocking pool, one check at a time, and verified answers are
//! remembered: a scrape every few seconds pays for bcrypt once. Unknown
//! users are checked against a dummy hash of the same cost, so the time an
//! answer takes does not tell which users exist.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use hyper::header::HeaderValue;
use tokio::sync::Semaphore;

use crate::secret::Secret;

/// The most verified answers kept. Each is a 32-byte digest and a flag;
/// when full, the oldest goes, so a client trying many passwords cannot
/// grow the cache.
const CACHE_CAPACITY: usize = 1024;

/// Whether `hash` is a bcrypt hash this server can check against.
pub fn check_hash(hash: &Secret) -> Result<(), String> {
    hash.expose()
        .parse::<bcrypt::HashParts>()
        .map(drop)
        .map_err(|_| "not a bcrypt hash (make one with htpasswd -nBC 10 \"\")".to_owned())
}

/// The users of one web configuration, and what has been verified for them.
pub struct BasicAuth {
    users: BTreeMap<String, Secret>,
    /// A hash of a random password with the users' highest cost, checked for
    /// unknown users so that they take as long as known ones.
    dummy: Secret,
    /// Keys the cache's digests, so the cache holds nothing a password
    /// could be recovered from without this process's memory.
    cache_key: hmac::Key,
    cache: Mutex<Cache>,
    /// One bcrypt at a time, as in exporter-toolkit: a client sending many
    /// wrong passwords occupies one blocking thread, not all of them.
    bcrypt_slot: Arc<Semaphore>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Cache {
    answers: HashMap<[u8; 32], bool>,
    order: VecDeque<[u8; 32]>,
}

/// How one request's credentials fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Missing, malformed or wrong credentials.
    Denied,
}

impl BasicAuth {
    /// Basic auth for `users` (their hashes already checked with
    /// [`check_hash`]); `None` when there are none. Blocks for one bcrypt
    /// hash (the dummy), so call it off the async workers.
    pub fn new(users: BTreeMap<String, Secret>) -> Result<Option<Self>, String> {
        if users.is_empty() {
            return Ok(None);
        }
        let cost = users
            .values()
            .filter_map(|hash| hash.expose().parse::<bcrypt::HashParts>().ok())
            .map(|parts| parts.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let random = SystemRandom::new();
        let mut password = [0u8; 32];
        random
            .fill(&mut password)
            .map_err(|_| "no system randomness for the dummy password".to_owned())?;
        let dummy = bcrypt::hash(password, cost)
            .map_err(|err| format!("cannot make the dummy hash: {err}"))?;
        let cache_key = hmac::Key::generate(hmac::HMAC_SHA256, &random)
            .map_err(|_| "no system randomness for the cache key".to_owned())?;
        Ok(Some(Self {
            users,
            dummy: Secret::new(dummy),
            cache_key,
            cache: Mutex::new(Cache::default()),
            bcrypt_slot: Arc::new(Semaphore::new(1)),
        }))
    }

    /// How many users may sign in.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Checks a request's `Authorization` header.
    pub async fn verify(&self, authorization: Option<&HeaderValue>) -> Verdict {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return Verdict::Denied;
        };
        let known = std::str::from_utf8(&user)
            .ok()
            .and_then(|user| self.users.get(user));
        let hash = known.unwrap_or(&self.dummy);
        let digest = self.digest(&user, hash, &password);
        if let Some(allowed) = self.cached(&digest) {
            return verdict(allowed && known.is_some());
        }
        let allowed = match self.bcrypt(password, hash.clone()).await {
            Some(matches) => matches && known.is_some(),
            None => return Verdict::Denied,
        };
        self.remember(digest, allowed);
        verdict(allowed)
    }

    async fn bcrypt(&self, password: Vec<u8>, hash: Secret) -> Option<bool> {
        let _slot = self.bcrypt_slot.clone().acquire_owned().await.ok()?;
        match tokio::task::spawn_blocking(move || bcrypt::verify(password, hash.expose())).await {
            Ok(Ok(matches)) => Some(matches),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "cannot check a password against its bcrypt hash");
                None
            }
            Err(err) => {
                tracing::warn!(error = %err, "password check did not finish");
                None
            }
        }
    }

    fn digest(&self, user: &[u8], hash: &Secret, password: &[u8]) -> [u8; 32] {
        let mut context = hmac::Context::with_key(&self.cache_key);
        for part in [user, hash.expose().as_bytes(), password] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        let tag = context.sign();
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&tag.as_ref()[..32]);
        digest
    }

    fn cached(&self, digest: &[u8; 32]) -> Option<bool> {
        let cache = self.cache.lock().ok()?;
        cache.answers.get(digest).copied()
    }

    fn remember(&self, digest: [u8; 32], allowed: bool) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.answers.insert(digest, allowed).is_none() {
            cache.order.push_back(digest);
        }
        while cache.order.len() > CACHE_CAPACITY {
            if let Some(oldest) = cache.order.pop_front() {
                cache.answers.remove(&oldest);
            }
        }
    }

    #[cfg(test)]
    fn cached_answers(&self) -> usize {
        self.cache
            .lock()
            .map(|cache| cache.answers.len())
            .unwrap_or(0)
    }
}

fn verdict(allowed: bool) -> Verdict {
    if allowed {
        Verdict::Allowed
    } else {
        Verdict::Denied
    }
}

/// User and password of a `Basic` authorization, as Go's
/// `Request.BasicAuth` reads it: scheme in any case, standard base64,
/// split at the first colon.
fn parse_basic(value: &HeaderValue) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = value.as_bytes();
    let prefix = b"basic ";
    if value.len() < prefix.len() || !value[..prefix.len()].eq_ignore_ascii_case(prefix) {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&value[prefix.len()..])
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).expect("header")
    }

    fn auth() -> BasicAuth {
        let hash = bcrypt::hash("right", 4).expect("hash");
        BasicAuth::new(BTreeMap::from([(
            "prometheus".to_owned(),
            Secret::new(hash),
        )]))
        .expect("basic auth")
        .expect("users")
    }

    #[test]
    fn parses_like_go() {
        assert_eq!(
            parse_basic(&header("a", "b:c")),
            Some((b"a".to_vec(), b"b:c".to_vec()))
        );
        let lower = HeaderValue::from_static("basic YTpi");
        assert_eq!(parse_basic(&lower), Some((b"a".to_vec(), b"b".to_vec())));
        for bad in ["Bearer YTpi", "Basic", "Basic !!!", "Basic YWI="] {
            assert_eq!(parse_basic(&HeaderValue::from_static(bad)), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn right_wrong_unknown_and_missing() {
        let auth = auth();
        assert_eq!(
            auth.verify(Some(&header("prometheus", "right"))).await,
            Verdict::Allowed
        );
        assert_eq!(
            auth.verify(Some(&header("prometheus", "wrong"))).await,
            Verdict::Denied
        );
        assert_eq!(
            auth.verify(Some(&header("nobody", "right"))).await,
            Verdict::Denied
        );
        assert_eq!(auth.verify(None).await, Verdict::Denied);
        // Cached answers stay right.
        assert_eq!(
            auth.verify(Some(&header("prometheus", "right"))).await,
            Verdict::Allowed
        );
        assert_eq!(
            auth.verify(Some(&header("nobody", "right"))).await,
            Verdict::Denied
        );
        assert_eq!(auth.cached_answers(), 3);
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let auth = auth();
        for n in 0..CACHE_CAPACITY + 10 {
            let digest = auth.digest(b"u", &auth.dummy, n.to_string().as_bytes());
            auth.remember(digest, false);
        }
        assert_eq!(auth.cached_answers(), CACHE_CAPACITY);
    }

    #[test]
    fn debug_shows_users_but_no_hash() {
        let auth = auth();
        let text = format!("{auth:?}");
        assert!(text.contains("prometheus"), "{text}");
        assert!(!text.contains("$2"), "{text}");
    }

    #[tokio::test]
    async fn htpasswd_hashes_work() {
        // htpasswd -B writes $2y$, as do the examples of exporter-toolkit.
        let hash = bcrypt::hash_with_result("right", 4)
            .expect("hash")
            .format_for_version(bcrypt::Version::TwoY);
        assert!(hash.starts_with("$2y$04$"), "{hash}");
        let auth = BasicAuth::new(BTreeMap::from([("p".to_owned(), Secret::new(hash))]))
            .expect("basic auth")
            .expect("users");
        assert_eq!(
            auth.verify(Some(&header("p", "right"))).await,
            Verdict::Allowed
        );
        assert_eq!(
            auth.verify(Some(&header("p", "wrong"))).await,
            Verdict::Denied
        );
    }

    #[test]
    fn hashes_are_checked() {
        assert!(check_hash(&Secret::new(bcrypt::hash("x", 4).expect("hash"))).is_ok());
        let err = check_hash(&Secret::new("plaintext")).expect_err("refused");
        assert!(!err.contains("plaintext"), "{err}");
    }
}
