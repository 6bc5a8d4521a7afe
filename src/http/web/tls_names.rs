//! Cipher suites and key exchange groups by the Go names exporter-toolkit's
//! web configuration uses, and which of them rustls offers: shared by the
//! configuration's checks and the rustls server configuration.

use rustls::SupportedCipherSuite;
use rustls::crypto::aws_lc_rs;

/// Go's names of the TLS 1.2 suites rustls implements.
const TLS12_SUITES: [(&str, SupportedCipherSuite); 6] = [
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// Go's older aliases of two of those.
const TLS12_ALIASES: [(&str, &str); 2] = [
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
];

/// TLS 1.3 suites: Go accepts their names in `cipher_suites` and, since
/// TLS 1.3 suites cannot be configured in Go, leaves all three on; so does
/// this server.
const TLS13_SUITE_NAMES: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Go suites rustls deliberately lacks: CBC modes, RSA key exchange, 3DES, RC4.
fn is_go_suite_rustls_lacks(name: &str) -> bool {
    name.starts_with("TLS_")
        && (name.contains("_CBC_")
            || name.starts_with("TLS_RSA_WITH_")
            || name.contains("3DES")
            || name.contains("RC4"))
}

pub(super) fn tls12_suite(name: &str) -> Option<SupportedCipherSuite> {
    let name = TLS12_ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, canonical)| canonical);
    TLS12_SUITES
        .iter()
        .find(|(go_name, _)| *go_name == name)
        .map(|(_, suite)| *suite)
}

/// Whether `name` is a cipher suite this server can honour.
pub fn check_cipher_suite(name: &str) -> Result<(), String> {
    if tls12_suite(name).is_some() || TLS13_SUITE_NAMES.contains(&name) {
        return Ok(());
    }
    let offered: Vec<&str> = TLS12_SUITES.iter().map(|(name, _)| *name).collect();
    if is_go_suite_rustls_lacks(name) {
        return Err(format!(
            "{name} is not supported: rustls implements no CBC, RSA key exchange, 3DES or RC4 \
             suites; use one of {}",
            offered.join(", ")
        ));
    }
    Err(format!(
        "unknown cipher suite {name:?}; use one of {}",
        offered.join(", ")
    ))
}

/// Whether `name` is a key exchange group this server can honour.
pub fn check_curve(name: &str) -> Result<(), String> {
    match name {
        "CurveP256" | "CurveP384" | "X25519" | "X25519MLKEM768" => Ok(()),
        "CurveP521" => Err(
            "CurveP521 is not supported: rustls offers no P-521 key exchange; use X25519, \
             CurveP256 or CurveP384"
                .to_owned(),
        ),
        other => Err(format!(
            "unknown curve {other:?}; use X25519, CurveP256, CurveP384 or X25519MLKEM768"
        )),
    }
}

pub(super) fn kx_group(name: &str) -> Option<&'static dyn rustls::crypto::SupportedKxGroup> {
    Some(match name {
        "CurveP256" => aws_lc_rs::kx_group::SECP256R1,
        "CurveP384" => aws_lc_rs::kx_group::SECP384R1,
        "X25519" => aws_lc_rs::kx_group::X25519,
        "X25519MLKEM768" => aws_lc_rs::kx_group::X25519MLKEM768,
        _ => return None,
    })
}
