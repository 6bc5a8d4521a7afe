//! The rustls server configuration a checked `tls_server_config` stands
//! for: certificate and key, protocol versions, cipher suites and key
//! exchange groups by their Go names, and the client certificate policies
//! of Go's `tls.ClientAuthType`, with exporter-toolkit's SAN allowlist.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, aws_lc_rs};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    SupportedCipherSuite,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use super::Reader;
use super::config::{ClientAuth, PemSource, TlsSettings, TlsVersion, WebConfigError};
use super::tls_names::{kx_group, tls12_suite};

/// ALPN protocol ids.
pub const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Builds the rustls server configuration, reading certificate, key and
/// client CA through `reader`.
pub fn server_config(
    settings: &TlsSettings,
    http2: bool,
    config_path: &Path,
    reader: &mut Reader,
) -> Result<Arc<ServerConfig>, WebConfigError> {
    let invalid = |key: &'static str, message: String| WebConfigError::Invalid {
        path: config_path.to_owned(),
        key,
        message,
    };

    let provider = Arc::new(provider(settings));
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(version, _)| (settings.min_version..=settings.max_version).contains(version))
    .map(|(_, version)| version)
    .collect();

    let cert_pem = reader.pem("cert_file", &settings.cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|err| {
            invalid(
                "tls_server_config.cert_file",
                format!("{}: {err}", describe(&settings.cert)),
            )
        })?;
    if chain.is_empty() {
        return Err(invalid(
            "tls_server_config.cert_file",
            format!("{}: no PEM certificate found", describe(&settings.cert)),
        ));
    }
    let key_pem = reader.pem("key_file", &settings.key)?;
    // The key's parse error is not passed on: it could quote the key.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        invalid(
            "tls_server_config.key_file",
            format!(
                "{}: no PEM private key (PKCS#8, PKCS#1 or SEC1) found",
                describe(&settings.key)
            ),
        )
    })?;

    let verifier = client_verifier(settings, &provider, config_path, reader)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|err| invalid("tls_server_config", format!("unusable TLS settings: {err}")))?
        .with_client_cert_verifier(verifier);
    let mut config = builder.with_single_cert(chain, key).map_err(|err| {
        invalid(
            "tls_server_config.key_file",
            format!(
                "{} and {} do not make a usable pair: {err}",
                describe(&settings.cert),
                describe(&settings.key)
            ),
        )
    })?;
    config.ignore_client_order = settings.prefer_server_cipher_suites;
    config.alpn_protocols = if http2 {
        vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()]
    } else {
        vec![ALPN_HTTP1.to_vec()]
    };
    Ok(Arc::new(config))
}

/// aws-lc-rs, narrowed to the configured TLS 1.2 suites and groups.
fn provider(settings: &TlsSettings) -> CryptoProvider {
    let mut provider = aws_lc_rs::default_provider();
    if !settings.cipher_suites.is_empty() {
        let mut suites: Vec<SupportedCipherSuite> = provider
            .cipher_suites
            .iter()
            .filter(|suite| matches!(suite, SupportedCipherSuite::Tls13(_)))
            .copied()
            .collect();
        suites.extend(
            settings
                .cipher_suites
                .iter()
                .filter_map(|name| tls12_suite(name)),
        );
        provider.cipher_suites = suites;
    }
    if !settings.curve_preferences.is_empty() {
        provider.kx_groups = settings
            .curve_preferences
            .iter()
            .filter_map(|name| kx_group(name))
            .collect();
    }
    provider
}

/// How a key or certificate is named in messages: its path, or "inline".
fn describe(source: &PemSource) -> String {
    match source {
        PemSource::File(path) => path.display().to_string(),
        PemSource::Inline(_) => "the inline value".to_owned(),
    }
}

fn client_verifier(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
    config_path: &Path,
    reader: &mut Reader,
) -> Result<Arc<dyn ClientCertVerifier>, WebConfigError> {
    let invalid = |message: String| WebConfigError::Invalid {
        path: config_path.to_owned(),
        key: "tls_server_config.client_ca_file",
        message,
    };
    let roots = match &settings.client_ca {
        None => None,
        Some(source) => {
            let pem = reader.pem("client_ca_file", source)?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|err| invalid(format!("{}: {err}", describe(source))))?;
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(invalid(format!(
                    "{}: no usable CA certificate found",
                    describe(source)
                )));
            }
            Some(Arc::new(roots))
        }
    };
    let algorithms = provider.signature_verification_algorithms;
    let inner: Arc<dyn ClientCertVerifier> = match settings.client_auth {
        ClientAuth::NoClientCert => return Ok(WebPkiClientVerifier::no_client_auth()),
        ClientAuth::RequestClientCert => Arc::new(UncheckedClientCert {
            mandatory: false,
            algorithms,
        }),
        ClientAuth::RequireAnyClientCert => Arc::new(UncheckedClientCert {
            mandatory: true,
            algorithms,
        }),
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let Some(roots) = roots else {
                return Err(invalid("client_auth_type verifies client certificates, which needs client_ca_file or client_ca".to_owned()));
            };
            let mut builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            if settings.client_auth == ClientAuth::VerifyClientCertIfGiven {
                builder = builder.allow_unauthenticated();
            }
            builder
                .build()
                .map_err(|err| invalid(format!("cannot verify client certificates: {err}")))?
        }
    };
    if settings.client_allowed_sans.is_empty() {
        return Ok(inner);
    }
    Ok(Arc::new(SanAllowlist {
        inner,
        allowed: settings.client_allowed_sans.clone(),
    }))
}

/// Go's `RequestClientCert` and `RequireAnyClientCert`: a client
/// certificate is asked for (and with `mandatory`, required) but not checked
/// against any CA; the client must still prove it holds the certificate's key.
#[derive(Debug)]
struct UncheckedClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for UncheckedClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// exporter-toolkit's `client_allowed_sans`: after the configured policy
/// accepted a client certificate, one of its subject alternative names
/// (DNS, e-mail, IP or URI, as Go prints them) must equal an allowed entry.
#[derive(Debug)]
struct SanAllowlist {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for SanAllowlist {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let names = subject_alternative_names(end_entity).map_err(|err| {
            rustls::Error::General(format!("cannot read the client certificate: {err}"))
        })?;
        if names.iter().any(|name| self.allowed.contains(name)) {
            return Ok(verified);
        }
        tracing::debug!(
            found = ?names,
            "client certificate refused: none of its subject alternative names is in client_allowed_sans"
        );
        Err(rustls::Error::General(
            "the client certificate has none of the allowed subject alternative names".to_owned(),
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A certificate's DNS, e-mail, IP and URI subject alternative names, as
/// Go's `crypto/x509` presents them.
pub fn subject_alternative_names(der: &[u8]) -> Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|err| format!("not X.509: {err}"))?;
    let Some(extension) = cert
        .subject_alternative_name()
        .map_err(|err| format!("bad subject alternative name extension: {err}"))?
    else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for name in &extension.value.general_names {
        match name {
            GeneralName::DNSName(name) | GeneralName::RFC822Name(name) | GeneralName::URI(name) => {
                names.push((*name).to_owned());
            }
            GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(*bytes).ok().map(|octets| {
                        // Go prints an IPv4-mapped IPv6 address as IPv4.
                        let v6 = std::net::Ipv6Addr::from(octets);
                        v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
                    }),
                    _ => None,
                };
                if let Some(ip) = ip {
                    names.push(ip.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::web::tls_names::{check_cipher_suite, check_curve};

    #[test]
    fn go_cipher_suite_names() {
        assert!(check_cipher_suite("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256").is_ok());
        assert!(check_cipher_suite("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305").is_ok());
        assert!(check_cipher_suite("TLS_AES_128_GCM_SHA256").is_ok());
        let lacking = check_cipher_suite("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA").expect_err("CBC");
        assert!(lacking.contains("not supported"), "{lacking}");
        let lacking = check_cipher_suite("TLS_RSA_WITH_AES_128_GCM_SHA256").expect_err("RSA kx");
        assert!(lacking.contains("not supported"), "{lacking}");
        let unknown = check_cipher_suite("TLS_MADE_UP").expect_err("unknown");
        assert!(unknown.contains("unknown cipher suite"), "{unknown}");
    }

    #[test]
    fn subject_alternative_names_read_as_go_prints_them() {
        use rcgen::{CertificateParams, KeyPair, SanType};
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = vec![
            SanType::DnsName("prometheus.example".try_into().expect("dns")),
            SanType::Rfc822Name("ops@example.com".try_into().expect("email")),
            SanType::URI("spiffe://example/prometheus".try_into().expect("uri")),
            SanType::IpAddress("192.0.2.7".parse().expect("v4")),
            SanType::IpAddress("2001:db8::7".parse().expect("v6")),
            SanType::IpAddress("::ffff:192.0.2.8".parse().expect("mapped")),
        ];
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("certificate");
        assert_eq!(
            subject_alternative_names(cert.der()).expect("names"),
            [
                "prometheus.example",
                "ops@example.com",
                "spiffe://example/prometheus",
                "192.0.2.7",
                "2001:db8::7",
                "192.0.2.8",
            ]
        );
        assert!(subject_alternative_names(b"not a certificate").is_err());
    }

    #[test]
    fn go_curve_names() {
        for name in ["CurveP256", "CurveP384", "X25519", "X25519MLKEM768"] {
            assert!(check_curve(name).is_ok(), "{name}");
            assert!(kx_group(name).is_some(), "{name}");
        }
        assert!(
            check_curve("CurveP521")
                .expect_err("P-521")
                .contains("not supported")
        );
        assert!(
            check_curve("P256")
                .expect_err("unknown")
                .contains("unknown curve")
        );
    }
}
