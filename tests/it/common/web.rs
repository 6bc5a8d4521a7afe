//! Helpers for `--web.config.file` tests: a throwaway PKI made when the
//! test runs (rcgen), web configuration fixtures filled in with it, an
//! exporter serving with a web configuration, and TLS clients.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use partner_center_exporter::{WebOptions, WebSecurity};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{FIXTURE, RunningExporter, USAGE_PATH, test_config, test_server_settings};

/// The directory of the web configuration fixtures.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/web");

/// The SAN of the client certificate that `mtls.yml`-style files allow.
pub const ALLOWED_CLIENT: &str = "prometheus.example";

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A CA, a server certificate for 127.0.0.1 and localhost, and client
/// certificates, written as files into a temporary directory:
/// `ca.crt`, `server.crt`, `server.key`, `other.key` (a key that belongs to
/// no certificate), `client.crt`/`client.key` (SAN prometheus.example),
/// `intruder.crt`/`intruder.key` (same CA, SAN intruder.example) and
/// `stranger.crt`/`stranger.key` (SAN prometheus.example from another CA).
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca: String,
    ca_issuer: Issuer<'static, KeyPair>,
    pub server: Pem,
    pub client: Pem,
    pub intruder: Pem,
    pub stranger: Pem,
}

impl TestPki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca, ca_issuer) = make_ca("Partner Center Exporter test CA");
        let (_, other_issuer) = make_ca("Some other CA");
        let server = leaf(
            &ca_issuer,
            "server",
            ExtendedKeyUsagePurpose::ServerAuth,
            &[
                SanType::DnsName("localhost".try_into().expect("dns")),
                SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ],
        );
        let client = leaf(
            &ca_issuer,
            "prometheus",
            ExtendedKeyUsagePurpose::ClientAuth,
            &[SanType::DnsName(ALLOWED_CLIENT.try_into().expect("dns"))],
        );
        let intruder = leaf(
            &ca_issuer,
            "intruder",
            ExtendedKeyUsagePurpose::ClientAuth,
            &[SanType::DnsName(
                "intruder.example".try_into().expect("dns"),
            )],
        );
        let stranger = leaf(
            &other_issuer,
            "stranger",
            ExtendedKeyUsagePurpose::ClientAuth,
            &[SanType::DnsName(ALLOWED_CLIENT.try_into().expect("dns"))],
        );
        let pki = Self {
            dir,
            ca,
            ca_issuer,
            server,
            client,
            intruder,
            stranger,
        };
        pki.write("ca.crt", &pki.ca);
        pki.write_pair("server", &pki.server);
        pki.write_pair("client", &pki.client);
        pki.write_pair("intruder", &pki.intruder);
        pki.write_pair("stranger", &pki.stranger);
        pki.write(
            "other.key",
            &KeyPair::generate().expect("key").serialize_pem(),
        );
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file of the directory, atomically (rename), so that a
    /// reload never sees half of it.
    pub fn write(&self, name: &str, text: &str) {
        let temporary = self.path(&format!(".{name}.new"));
        std::fs::write(&temporary, text).expect("write");
        std::fs::rename(&temporary, self.path(name)).expect("rename");
    }

    fn write_pair(&self, name: &str, pem: &Pem) {
        self.write(&format!("{name}.crt"), &pem.cert);
        self.write(&format!("{name}.key"), &pem.key);
    }

    /// A new server certificate and key from the same CA, as a rotation
    /// would bring; not written anywhere yet.
    pub fn reissue_server(&self) -> Pem {
        leaf(
            &self.ca_issuer,
            "server",
            ExtendedKeyUsagePurpose::ServerAuth,
            &[
                SanType::DnsName("localhost".try_into().expect("dns")),
                SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ],
        )
    }

    /// Writes `server.crt` and `server.key`.
    pub fn install_server(&self, pem: &Pem) {
        self.write_pair("server", pem);
    }

    /// A fixture's text with its placeholders filled in.
    pub fn fill(&self, template: &str) -> String {
        let mut out = String::new();
        for line in template.lines() {
            let indent: String = line.chars().take_while(|c| *c == ' ').collect();
            let trimmed = line.trim();
            let file = match trimmed {
                "@server.crt@" => Some(&self.server.cert),
                "@server.key@" => Some(&self.server.key),
                "@ca.crt@" => Some(&self.ca),
                _ => None,
            };
            if let Some(pem) = file {
                for pem_line in pem.lines() {
                    out.push_str(&indent);
                    out.push_str(pem_line);
                    out.push('\n');
                }
                continue;
            }
            let mut line = line.to_owned();
            while let Some(start) = line.find("@bcrypt:") {
                let end = line[start + 1..].find('@').expect("closing @") + start + 1;
                let password = &line[start + "@bcrypt:".len()..end];
                let hash = bcrypt::hash(password, 4).expect("bcrypt");
                line.replace_range(start..=end, &hash);
            }
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// Writes `web.yml` from `template` (placeholders filled in) and returns its path.
    pub fn web_config(&self, template: &str) -> PathBuf {
        self.write("web.yml", &self.fill(template));
        self.path("web.yml")
    }

    /// Writes `web.yml` from a fixture file.
    pub fn web_config_from_fixture(&self, fixture: &str) -> PathBuf {
        let path = Path::new(FIXTURES).join(fixture);
        let template = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        self.web_config(&template)
    }
}

fn make_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("CA certificate");
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    name: &str,
    usage: ExtendedKeyUsagePurpose,
    sans: &[SanType],
) -> Pem {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = sans.to_vec();
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params.signed_by(&key, issuer).expect("certificate");
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// Loads a web configuration the way `main` does, with a short reload
/// interval for tests.
pub fn load_web(path: &Path, healthz_without_auth: bool) -> WebSecurity {
    WebSecurity::load(
        path,
        WebOptions {
            reload_interval: Duration::from_millis(200),
            healthz_without_auth,
        },
    )
    .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// An exporter on 127.0.0.1 with a web configuration, polling a fake
/// Partner Center that serves the documented example.
pub async fn start_exporter_with_web(web: WebSecurity) -> (RunningExporter, wiremock::MockServer) {
    use wiremock::matchers::{method, path};
    let upstream = wiremock::MockServer::start().await;
    wiremock::Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .respond_with(
            wiremock::ResponseTemplate::new(200).set_body_raw(FIXTURE, "application/json"),
        )
        .mount(&upstream)
        .await;
    let (config, dir) = test_config(&upstream.uri(), Duration::from_secs(3600));
    let settings = partner_center_exporter::ServerSettings {
        web: Some(Arc::new(web)),
        ..test_server_settings()
    };
    let exporter = RunningExporter::start_with_settings(config, dir, settings).await;
    (exporter, upstream)
}

/// TLS protocol versions a test client offers.
#[derive(Debug, Clone, Copy)]
pub enum Offer {
    Both,
    Tls12Only,
    Tls13Only,
}

/// A rustls client trusting `ca`, presenting `identity` if given.
pub fn client_config(ca: &str, identity: Option<&Pem>, offer: Offer) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match offer {
        Offer::Both => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Offer::Tls12Only => &[&rustls::version::TLS12],
        Offer::Tls13Only => &[&rustls::version::TLS13],
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots);
    match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(identity.cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("client certificate"),
                PrivateKeyDer::from_pem_slice(identity.key.as_bytes()).expect("client key"),
            )
            .expect("client identity"),
    }
}

/// What a TLS exchange with the exporter came to.
#[derive(Debug)]
pub struct Exchange {
    pub version: rustls::ProtocolVersion,
    /// The status line of the answer to `GET /healthz`.
    pub status_line: String,
    /// The certificate the server presented.
    pub server_cert: Vec<u8>,
}

/// Handshakes with `address` as 127.0.0.1, sends `GET /healthz` over
/// HTTP/1.1 and reads the answer; `Err` with the reason when the handshake
/// or the exchange fails. (With TLS 1.3 a refused client certificate only
/// shows once the client reads, hence the request.)
pub async fn tls_exchange(
    address: SocketAddr,
    config: rustls::ClientConfig,
) -> Result<Exchange, String> {
    let exchange = async {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|err| format!("connect: {err}"))?;
        let server_name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
        let mut tls = connector
            .connect(server_name, tcp)
            .await
            .map_err(|err| format!("handshake: {err}"))?;
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|err| format!("write: {err}"))?;
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer)
            .await
            .map_err(|err| format!("read: {err}"))?;
        let (_, connection) = tls.get_ref();
        let version = connection.protocol_version().ok_or("no protocol version")?;
        let server_cert = connection
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|cert| cert.to_vec())
            .ok_or("no server certificate")?;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status_line = answer.lines().next().unwrap_or_default().to_owned();
        if status_line.is_empty() {
            return Err("no answer".to_owned());
        }
        Ok(Exchange {
            version,
            status_line,
            server_cert,
        })
    };
    tokio::time::timeout(super::WAIT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {:?}", super::WAIT)))
}

/// The DER of a PEM certificate.
pub fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("certificate PEM")
        .to_vec()
}

/// A reqwest client trusting only the test CA, presenting `identity` if given.
pub fn https_client(pki: &TestPki, identity: Option<&Pem>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(super::WAIT)
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca.as_bytes()).expect("CA")]);
    if let Some(identity) = identity {
        builder = builder.identity(
            reqwest::Identity::from_pem(format!("{}{}", identity.cert, identity.key).as_bytes())
                .expect("identity"),
        );
    }
    builder.build().expect("HTTPS client")
}
