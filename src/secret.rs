//! A wrapper for credentials that keeps their value out of logs, errors and `Debug` output.

use std::fmt;

use serde::Deserialize;

/// A credential (access token, refresh token, client secret).
///
/// The value is only reachable through [`Secret::expose`], so it cannot end
/// up in a log line or an error message by way of `{}` or `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A short, stable, one-way digest (FNV-1a, 64 bits, hex) that tells two
    /// credentials apart without revealing either.
    pub fn fingerprint(&self) -> String {
        format!("{:016x}", fnv1a(self.0.bytes()))
    }
}

/// FNV-1a over `bytes`: stable across runs, platforms and Rust releases,
/// unlike the standard library's hasher.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Read from YAML as a plain string, for `--web.config.file`'s private
/// keys and password hashes. A value of the wrong type is reported by the
/// reader with that value quoted, so callers must not pass such errors on
/// unredacted (see `web::config`).
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = Secret::new("eyJ0eXAiOiJKV1QiLCJhbGciOi-token-value");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(
            format!("{:?}", Some(&secret)),
            "Some([redacted])",
            "nested Debug must not reveal it either"
        );
        assert_eq!(secret.expose(), "eyJ0eXAiOiJKV1QiLCJhbGciOi-token-value");
    }

    #[test]
    fn fingerprints_are_stable_and_tell_secrets_apart() {
        // FNV-1a's published test vector for "a".
        assert_eq!(Secret::new("a").fingerprint(), "af63dc4c8601ec8c");
        assert_eq!(
            Secret::new("token-1").fingerprint(),
            Secret::new("token-1").fingerprint()
        );
        assert_ne!(
            Secret::new("token-1").fingerprint(),
            Secret::new("token-2").fingerprint()
        );
        assert!(!Secret::new("token-1").fingerprint().contains("token"));
    }
}
