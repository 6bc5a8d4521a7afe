//! A wrapper for credentials that keeps their value out of logs, errors and `Debug` output.

use std::fmt;

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
}
