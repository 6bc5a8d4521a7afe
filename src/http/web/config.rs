//! The `--web.config.file` format, prometheus/exporter-toolkit's
//! `web-config.yml`, and its checks: every key exporter-toolkit knows is
//! read, unknown keys are refused, and what rustls cannot do is refused by
//! name instead of being ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Deserializer};

use crate::secret::Secret;

/// Why a web configuration file was refused. Messages name the file and
/// the key; they never contain a private key, a password hash or a password.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The file itself could not be read.
    #[error("cannot read web configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file it names (certificate, key, CA) could not be read.
    #[error("{}: cannot read {what} {}: {source}", config.display(), path.display())]
    ReadReferenced {
        config: PathBuf,
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The YAML does not have the expected shape.
    #[error("{}: {message}", path.display())]
    Schema { path: PathBuf, message: String },
    /// A value is not acceptable.
    #[error("{}: {key}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

/// The file as written. Field names and meanings are exporter-toolkit's
/// (`docs/web-configuration.md`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebConfig {
    #[serde(default)]
    pub tls_server_config: Option<RawTlsConfig>,
    #[serde(default)]
    pub http_server_config: Option<RawHttpConfig>,
    #[serde(default)]
    pub basic_auth_users: Option<BTreeMap<String, Secret>>,
    #[serde(default)]
    pub rate_limit: Option<RawRateLimit>,
}

/// `tls_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsConfig {
    #[serde(default)]
    pub cert: Option<String>,
    #[serde(default)]
    pub key: Option<Secret>,
    #[serde(default)]
    pub client_ca: Option<String>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub client_auth_type: Option<String>,
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub client_allowed_sans: Option<Vec<String>>,
    #[serde(default)]
    pub min_version: Option<String>,
    #[serde(default)]
    pub max_version: Option<String>,
    #[serde(default)]
    pub cipher_suites: Option<Vec<String>>,
    #[serde(default)]
    pub prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    pub curve_preferences: Option<Vec<String>>,
}

impl RawTlsConfig {
    /// exporter-toolkit's `IsEnabled`: any certificate, key, CA or client
    /// auth setting turns TLS on; versions or cipher suites alone do not.
    fn is_enabled(&self) -> bool {
        self.cert.as_deref().is_some_and(|s| !s.is_empty())
            || self.key.as_ref().is_some_and(|s| !s.expose().is_empty())
            || self.cert_file.as_deref().is_some_and(non_empty_path)
            || self.key_file.as_deref().is_some_and(non_empty_path)
            || self.client_ca_file.as_deref().is_some_and(non_empty_path)
            || self.client_ca.as_deref().is_some_and(|s| !s.is_empty())
            || self
                .client_auth_type
                .as_deref()
                .is_some_and(|s| !s.is_empty())
    }
}

fn non_empty_path(path: &Path) -> bool {
    !path.as_os_str().is_empty()
}

/// `http_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpConfig {
    #[serde(default)]
    pub http2: Option<bool>,
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
}

/// `rate_limit`: a token bucket over every request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    #[serde(default, deserialize_with = "deserialize_go_duration")]
    pub interval: Option<Duration>,
    #[serde(default)]
    pub burst: Option<u32>,
}

/// Go's `time.Duration` as YAML writes it: `1s`, `250ms`, `1m30s`.
fn deserialize_go_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_go_duration(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!("{text:?} is not a duration like 1s or 250ms"))
    })
}

/// A Go duration string: a sequence of decimal numbers with units
/// ns, us (µs), ms, s, m, h; `0` alone is zero.
fn parse_go_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += number * seconds_per_unit;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The headers exporter-toolkit lets a file add, with the values it
/// accepts where it restricts them (`web/handler.go`, `extraHTTPHeaders`).
const ALLOWED_HEADERS: [(&str, &[&str]); 5] = [
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// TLS protocol versions as the file names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// Go's `tls.ClientAuthType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    /// Whether a client must present some certificate to connect.
    pub fn requires_certificate(self) -> bool {
        matches!(
            self,
            Self::RequireAnyClientCert | Self::RequireAndVerifyClientCert
        )
    }

    /// Whether a presented certificate is checked against the client CA.
    pub fn verifies(self) -> bool {
        matches!(
            self,
            Self::VerifyClientCertIfGiven | Self::RequireAndVerifyClientCert
        )
    }
}

/// Where PEM text comes from: a file (relative paths are relative to the
/// web configuration file's directory, as in exporter-toolkit) or inline.
#[derive(Debug, Clone)]
pub enum PemSource {
    File(PathBuf),
    Inline(Secret),
}

/// A checked `tls_server_config`: everything resolved except the files'
/// contents, which [`super::tls`] reads.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: PemSource,
    pub key: PemSource,
    pub client_auth: ClientAuth,
    pub client_ca: Option<PemSource>,
    /// Empty when any client certificate (that passed verification) will do.
    pub client_allowed_sans: Vec<String>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// Go names of TLS 1.2 cipher suites, in preference order; empty for
    /// rustls' defaults.
    pub cipher_suites: Vec<String>,
    pub prefer_server_cipher_suites: bool,
    /// Go names of key exchange groups, in preference order; empty for
    /// rustls' defaults.
    pub curve_preferences: Vec<String>,
}

/// A token bucket: `burst` requests at once, then one per `interval`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub interval: Duration,
    pub burst: u32,
}

/// A checked web configuration, before any certificate is read.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub tls: Option<TlsSettings>,
    /// Offer HTTP/2 over TLS (ALPN `h2`); exporter-toolkit's default is on.
    pub http2: bool,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// User name → bcrypt hash; empty turns basic auth off.
    pub users: BTreeMap<String, Secret>,
    pub rate_limit: Option<RateLimit>,
}

impl WebConfig {
    /// Reads the YAML in `text` (the contents of `path`) and checks it.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, WebConfigError> {
        // An empty file is a valid exporter-toolkit file: plain HTTP, no auth.
        let raw: RawWebConfig = if text.trim().is_empty() {
            RawWebConfig::default()
        } else {
            serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(text)).map_err(
                |err| WebConfigError::Schema {
                    path: path.to_owned(),
                    message: schema_message(&err),
                },
            )?
        };
        let directory = path.parent().unwrap_or_else(|| Path::new("."));
        Self::check(raw, path, directory)
    }

    fn check(raw: RawWebConfig, path: &Path, directory: &Path) -> Result<Self, WebConfigError> {
        let invalid = |key: &'static str, message: String| WebConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        let tls = match raw.tls_server_config {
            Some(tls) if tls.is_enabled() => Some(check_tls(tls, directory, &invalid)?),
            Some(tls) => {
                // Versions or suites without a certificate would be silently
                // unused: exporter-toolkit serves plain HTTP then, which is
                // rarely what the writer meant.
                if tls.min_version.is_some()
                    || tls.max_version.is_some()
                    || tls.cipher_suites.is_some()
                    || tls.curve_preferences.is_some()
                    || tls.client_allowed_sans.is_some()
                {
                    return Err(invalid(
                        "tls_server_config",
                        "TLS settings without cert_file/cert and key_file/key; set both to serve HTTPS".to_owned(),
                    ));
                }
                None
            }
            None => None,
        };
        let http = raw.http_server_config.unwrap_or_default();
        let mut headers = Vec::new();
        for (name, value) in http.headers.unwrap_or_default() {
            let Some((canonical, allowed)) = ALLOWED_HEADERS
                .iter()
                .find(|(allowed, _)| allowed.eq_ignore_ascii_case(&name))
            else {
                let names: Vec<&str> = ALLOWED_HEADERS.iter().map(|(name, _)| *name).collect();
                return Err(invalid(
                    "http_server_config.headers",
                    format!(
                        "HTTP header {name:?} can not be configured; allowed are {}",
                        names.join(", ")
                    ),
                ));
            };
            // exporter-toolkit matches names exactly; a different case
            // would be ignored by Go's map lookup but set by us, so refuse it.
            if *canonical != name {
                return Err(invalid(
                    "http_server_config.headers",
                    format!("write {canonical:?}, not {name:?}"),
                ));
            }
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                return Err(invalid(
                    "http_server_config.headers",
                    format!("invalid value for {name}: expected one of {allowed:?}, got {value:?}"),
                ));
            }
            // Blank means unset, as in exporter-toolkit.
            if value.is_empty() {
                continue;
            }
            let value = HeaderValue::from_str(&value).map_err(|_| {
                invalid(
                    "http_server_config.headers",
                    format!("{name}: {value:?} cannot be sent as an HTTP header value"),
                )
            })?;
            headers.push((HeaderName::from_static(canonical_lower(canonical)), value));
        }

        let users = raw.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            super::basic_auth::check_hash(hash).map_err(|message| {
                invalid(
                    "basic_auth_users",
                    format!("user {user:?}: {message} (the hash is not shown)"),
                )
            })?;
        }

        let rate_limit = match raw.rate_limit {
            None => None,
            Some(limit) => match limit.interval {
                // As in exporter-toolkit, a zero or missing interval is no limit.
                None => None,
                Some(interval) if interval.is_zero() => None,
                Some(interval) => Some(RateLimit {
                    interval,
                    burst: limit.burst.unwrap_or(0),
                }),
            },
        };
        if rate_limit.is_some_and(|limit| limit.burst == 0) {
            return Err(invalid(
                "rate_limit.burst",
                "0 would refuse every request; set it to at least 1".to_owned(),
            ));
        }

        Ok(Self {
            tls,
            http2: http.http2.unwrap_or(true),
            headers,
            users,
            rate_limit,
        })
    }
}

/// `HeaderName::from_static` wants lower case.
fn canonical_lower(name: &str) -> &'static str {
    match name {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

fn check_tls(
    raw: RawTlsConfig,
    directory: &Path,
    invalid: &dyn Fn(&'static str, String) -> WebConfigError,
) -> Result<TlsSettings, WebConfigError> {
    let resolve = |path: PathBuf| {
        if path.is_absolute() {
            path
        } else {
            directory.join(path)
        }
    };
    let pick = |file: Option<PathBuf>,
                inline: Option<Secret>,
                file_key: &'static str,
                inline_key: &'static str|
     -> Result<Option<PemSource>, WebConfigError> {
        let file = file.filter(|path| non_empty_path(path));
        let inline = inline.filter(|text| !text.expose().is_empty());
        match (file, inline) {
            (Some(_), Some(_)) => Err(invalid(
                file_key,
                format!("set {file_key} or {inline_key}, not both"),
            )),
            (Some(file), None) => Ok(Some(PemSource::File(resolve(file)))),
            (None, Some(inline)) => Ok(Some(PemSource::Inline(inline))),
            (None, None) => Ok(None),
        }
    };
    let cert = pick(
        raw.cert_file,
        raw.cert.map(Secret::new),
        "tls_server_config.cert_file",
        "cert",
    )?
    .ok_or_else(|| {
        invalid(
            "tls_server_config",
            "missing one of cert or cert_file".to_owned(),
        )
    })?;
    let key =
        pick(raw.key_file, raw.key, "tls_server_config.key_file", "key")?.ok_or_else(|| {
            invalid(
                "tls_server_config",
                "missing one of key or key_file".to_owned(),
            )
        })?;
    let client_ca = pick(
        raw.client_ca_file,
        raw.client_ca.map(Secret::new),
        "tls_server_config.client_ca_file",
        "client_ca",
    )?;
    let client_auth = match raw.client_auth_type.as_deref().unwrap_or("") {
        "" | "NoClientCert" => ClientAuth::NoClientCert,
        "RequestClientCert" => ClientAuth::RequestClientCert,
        // RequireClientCert: exporter-toolkit's older name.
        "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
        other => {
            return Err(invalid(
                "tls_server_config.client_auth_type",
                format!(
                    "invalid ClientAuth {other:?}; use NoClientCert, RequestClientCert, \
                     RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                ),
            ));
        }
    };
    if client_ca.is_some() && client_auth == ClientAuth::NoClientCert {
        return Err(invalid(
            "tls_server_config.client_auth_type",
            "client CA's have been configured without a Client Auth Policy".to_owned(),
        ));
    }
    if client_auth.verifies() && client_ca.is_none() {
        // Go would fall back to the system's CAs, which would let anyone
        // with a certificate from a public CA in: refuse instead.
        return Err(invalid(
            "tls_server_config.client_ca_file",
            "client_auth_type verifies client certificates, which needs client_ca_file or client_ca \
             (the system's CAs are not used for clients)"
                .to_owned(),
        ));
    }
    let client_allowed_sans = raw.client_allowed_sans.unwrap_or_default();
    if !client_allowed_sans.is_empty() && !client_auth.requires_certificate() {
        return Err(invalid(
            "tls_server_config.client_allowed_sans",
            "client_allowed_sans requires client_auth_type to be one of RequireAnyClientCert or \
             RequireAndVerifyClientCert"
                .to_owned(),
        ));
    }
    let version = |text: Option<String>, key: &'static str, default: TlsVersion| match text
        .as_deref()
    {
        None | Some("") => Ok(default),
        Some("TLS12") => Ok(TlsVersion::Tls12),
        Some("TLS13") => Ok(TlsVersion::Tls13),
        Some(old @ ("TLS10" | "TLS11")) => Err(invalid(
            key,
            format!(
                "{old} is not supported: rustls implements only TLS 1.2 and 1.3 (TLS 1.0 and 1.1 are \
                 deprecated by RFC 8996); use TLS12 or TLS13"
            ),
        )),
        Some(other) => Err(invalid(
            key,
            format!("unknown TLS version {other:?}; use TLS12 or TLS13"),
        )),
    };
    let min_version = version(
        raw.min_version,
        "tls_server_config.min_version",
        TlsVersion::Tls12,
    )?;
    let max_version = version(
        raw.max_version,
        "tls_server_config.max_version",
        TlsVersion::Tls13,
    )?;
    if min_version > max_version {
        return Err(invalid(
            "tls_server_config.min_version",
            "min_version is above max_version".to_owned(),
        ));
    }
    let cipher_suites = raw.cipher_suites.unwrap_or_default();
    for name in &cipher_suites {
        super::tls_names::check_cipher_suite(name)
            .map_err(|message| invalid("tls_server_config.cipher_suites", message))?;
    }
    if !cipher_suites.is_empty() && min_version == TlsVersion::Tls13 {
        return Err(invalid(
            "tls_server_config.cipher_suites",
            "cipher_suites only apply to TLS 1.2, which min_version TLS13 turns off".to_owned(),
        ));
    }
    let curve_preferences = raw.curve_preferences.unwrap_or_default();
    for name in &curve_preferences {
        super::tls_names::check_curve(name)
            .map_err(|message| invalid("tls_server_config.curve_preferences", message))?;
    }
    Ok(TlsSettings {
        cert,
        key,
        client_auth,
        client_ca,
        client_allowed_sans,
        min_version,
        max_version,
        cipher_suites,
        prefer_server_cipher_suites: raw.prefer_server_cipher_suites.unwrap_or(true),
        curve_preferences,
    })
}

/// A schema error with its key path. Errors inside `basic_auth_users` or
/// `tls_server_config.key` are replaced by a description, since the YAML
/// reader quotes the offending value and that value may be a secret.
fn schema_message(err: &serde_path_to_error::Error<serde_yaml_ng::Error>) -> String {
    let key = err.path().to_string();
    let secret_key = key.starts_with("basic_auth_users") || key == "tls_server_config.key";
    if secret_key {
        let location = err
            .inner()
            .location()
            .map(|at| format!(" (line {}, column {})", at.line(), at.column()))
            .unwrap_or_default();
        let what = if key.starts_with("basic_auth_users") {
            "must map user names to bcrypt hashes, both strings"
        } else {
            "must be a PEM private key as a string"
        };
        return format!("{key}: {what}{location}; the value is not shown");
    }
    let inner = err.inner().to_string();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "1", "s", "1x", "-1s", "1s2"] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }
}
