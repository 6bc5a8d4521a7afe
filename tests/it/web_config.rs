//! `--web.config.file`: exporter-toolkit's web configuration files, good
//! and bad (tests/fixtures/web/), real TLS handshakes under each client
//! certificate policy and version limit, basic auth, response headers, the
//! `/healthz` exemption, HTTP/2, and certificate rotation while serving.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::exporter::LISTEN;
use common::processes::{START_LIMIT, Server, free_port};
use common::web::{
    ALLOWED_CLIENT, FIXTURES, Offer, TestPki, client_config, der, https_client, load_web,
    start_exporter_with_web, tls_exchange,
};
use common::{CapturedLogs, ExporterProcess, Scrape, WAIT, describe, find_tool, text, wait_for};
use partner_center_exporter::EXIT_CONFIG_ERROR;
use partner_center_exporter::{ReloadOutcome, WebOptions, WebSecurity};
use rustls::ProtocolVersion;

/// The `# expect:` lines of a fixture.
fn expectations(text: &str, name: &str) -> Vec<String> {
    let expected: Vec<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# expect: "))
        .map(str::to_owned)
        .collect();
    assert!(!expected.is_empty(), "{name} has no `# expect:` line");
    expected
}

fn fixtures(kind: &str) -> Vec<(String, String)> {
    let dir = Path::new(FIXTURES).join(kind);
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml"))
        .map(|path| {
            let name = format!(
                "{kind}/{}",
                path.file_name().expect("name").to_string_lossy()
            );
            let text = std::fs::read_to_string(&path).expect("fixture");
            (name, text)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_good_file_loads_and_every_bad_file_says_why() {
    let pki = TestPki::new();
    let good = fixtures("good");
    assert!(good.len() >= 8, "{} good fixtures", good.len());
    for (name, text) in &good {
        let path = pki.web_config(text);
        let web = WebSecurity::load(&path, WebOptions::default())
            .unwrap_or_else(|err| panic!("{name} refused: {err}"));
        let summary = web.current().summary();
        for expected in expectations(text, name) {
            assert!(
                summary.contains(&expected),
                "{name}: {summary:?} lacks {expected:?}"
            );
        }
    }

    let bad = fixtures("bad");
    assert!(bad.len() >= 25, "{} bad fixtures", bad.len());
    // What must never show in a message: key material, password hashes,
    // passwords.
    let secrets = [
        "PRIVATE KEY",
        "$2b$",
        "$2y$",
        "clear-text-password",
        pki.server.key.lines().nth(1).expect("key body"),
    ];
    for (name, text) in &bad {
        let path = pki.web_config(text);
        let err = WebSecurity::load(&path, WebOptions::default())
            .map(|_| ())
            .expect_err(&format!("{name} was accepted"));
        let message = err.to_string();
        for expected in expectations(text, name) {
            assert!(
                message.contains(&expected),
                "{name}: {message:?} lacks {expected:?}"
            );
        }
        assert!(
            message.contains(&path.display().to_string()),
            "{name}: the message names the file: {message}"
        );
        for secret in secrets {
            assert!(
                !message.contains(secret),
                "{name}: {message:?} shows a secret"
            );
        }
        assert!(
            !format!("{err:?}").contains("PRIVATE KEY"),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn files_that_are_not_yaml_or_absent_are_refused_clearly() {
    let pki = TestPki::new();
    for (text, expected) in [
        (
            "\tcert_file: x\n",
            "found character that cannot start any token",
        ),
        ("- just\n- a list\n", "invalid type: sequence"),
        ("\u{0}\u{1}binary", "control characters are not allowed"),
    ] {
        let path = pki.web_config(text);
        let err = WebSecurity::load(&path, WebOptions::default())
            .map(|_| ())
            .expect_err(text);
        assert!(err.to_string().contains(expected), "{text:?}: {err}");
    }
    let err = WebSecurity::load(&pki.path("absent.yml"), WebOptions::default())
        .map(|_| ())
        .expect_err("absent");
    assert!(
        err.to_string()
            .starts_with("cannot read web configuration file"),
        "{err}"
    );
}

#[test]
fn debug_output_shows_no_secret() {
    let pki = TestPki::new();
    let path = pki.web_config_from_fixture("good/node-exporter-full.yml");
    let web = load_web(&path, false);
    let debug = format!("{web:?}");
    assert!(debug.contains("web.yml"), "{debug}");
    for secret in ["PRIVATE KEY", "$2b$", "$2y$"] {
        assert!(!debug.contains(secret), "{debug}");
    }
}

/// Starts an exporter with `template` as its web configuration.
async fn exporter_with(
    pki: &TestPki,
    template: &str,
) -> (common::RunningExporter, wiremock::MockServer) {
    let path = pki.web_config(template);
    start_exporter_with_web(load_web(&path, false)).await
}

const MTLS: &str = "tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: POLICY
  client_ca_file: ca.crt
";

#[tokio::test]
async fn client_certificate_policies_in_real_handshakes() {
    let pki = TestPki::new();
    let ok = |result: &Result<common::web::Exchange, String>| {
        result
            .as_ref()
            .is_ok_and(|exchange| exchange.status_line == "HTTP/1.1 200 OK")
    };
    // (policy, allowed SANs, no cert, stranger (wrong CA), client (allowed SAN), intruder (other SAN))
    let cases = [
        ("NoClientCert", None, true, true, true, true),
        ("RequestClientCert", None, true, true, true, true),
        ("RequireAnyClientCert", None, false, true, true, true),
        ("VerifyClientCertIfGiven", None, true, false, true, true),
        ("RequireAndVerifyClientCert", None, false, false, true, true),
        (
            "RequireAnyClientCert",
            Some(ALLOWED_CLIENT),
            false,
            true,
            true,
            false,
        ),
        (
            "RequireAndVerifyClientCert",
            Some(ALLOWED_CLIENT),
            false,
            false,
            true,
            false,
        ),
    ];
    for (policy, sans, no_cert, stranger, client, intruder) in cases {
        let mut template = MTLS.replace("POLICY", policy);
        if policy == "NoClientCert"
            || policy == "RequestClientCert"
            || policy == "RequireAnyClientCert"
        {
            template = template.replace("  client_ca_file: ca.crt\n", "");
        }
        if let Some(san) = sans {
            template.push_str(&format!("  client_allowed_sans: [\"{san}\"]\n"));
        }
        let (exporter, _upstream) = exporter_with(&pki, &template).await;
        for (who, identity, expected) in [
            ("no certificate", None, no_cert),
            (
                "a certificate from another CA",
                Some(&pki.stranger),
                stranger,
            ),
            (
                "the allowed client's certificate",
                Some(&pki.client),
                client,
            ),
            (
                "a certificate with another SAN",
                Some(&pki.intruder),
                intruder,
            ),
        ] {
            let result = tls_exchange(
                exporter.address,
                client_config(&pki.ca, identity, Offer::Both),
            )
            .await;
            assert_eq!(
                ok(&result),
                expected,
                "{policy} (allowed SANs {sans:?}) with {who}: {result:?}"
            );
        }
        exporter.stop().await.expect("clean stop");
    }
}

#[tokio::test]
async fn tls_version_limits_in_real_handshakes() {
    let pki = TestPki::new();
    let base = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    // (server settings, client offer, expected version or None for a refusal)
    let cases = [
        ("", Offer::Both, Some(ProtocolVersion::TLSv1_3)),
        ("", Offer::Tls12Only, Some(ProtocolVersion::TLSv1_2)),
        ("  min_version: TLS13\n", Offer::Tls12Only, None),
        (
            "  min_version: TLS13\n",
            Offer::Both,
            Some(ProtocolVersion::TLSv1_3),
        ),
        ("  max_version: TLS12\n", Offer::Tls13Only, None),
        (
            "  max_version: TLS12\n",
            Offer::Both,
            Some(ProtocolVersion::TLSv1_2),
        ),
        (
            "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]\n",
            Offer::Tls12Only,
            Some(ProtocolVersion::TLSv1_2),
        ),
    ];
    for (settings, offer, expected) in cases {
        let (exporter, _upstream) = exporter_with(&pki, &format!("{base}{settings}")).await;
        let result = tls_exchange(exporter.address, client_config(&pki.ca, None, offer)).await;
        match expected {
            Some(version) => {
                let exchange = result.unwrap_or_else(|err| panic!("{settings:?} {offer:?}: {err}"));
                assert_eq!(exchange.version, version, "{settings:?} {offer:?}");
                assert_eq!(exchange.status_line, "HTTP/1.1 200 OK");
            }
            None => assert!(result.is_err(), "{settings:?} {offer:?}: {result:?}"),
        }
        exporter.stop().await.expect("clean stop");
    }
}

/// A plain-HTTP GET with optional basic auth credentials.
async fn get_with(url: &str, credentials: Option<(&str, &str)>) -> reqwest::Response {
    let mut request = common::http().get(url);
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, Some(password));
    }
    tokio::time::timeout(WAIT, request.send())
        .await
        .expect("answer in time")
        .expect("GET")
}

#[tokio::test]
async fn basic_auth_right_wrong_missing_and_unknown() {
    let pki = TestPki::new();
    let path = pki.web_config(
        "basic_auth_users:\n  prometheus: \"@bcrypt:scrape-password@\"\n\
         http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n",
    );
    let (exporter, _upstream) = start_exporter_with_web(load_web(&path, false)).await;
    for endpoint in ["/metrics", "/", "/healthz", "/readyz", "/nowhere"] {
        let url = exporter.url(endpoint);
        for (who, credentials) in [
            ("no credentials", None),
            ("a wrong password", Some(("prometheus", "wrong"))),
            ("an unknown user", Some(("nobody", "scrape-password"))),
            ("an empty password", Some(("prometheus", ""))),
        ] {
            // Twice: the second answer comes from the cache.
            for _ in 0..2 {
                let response = get_with(&url, credentials).await;
                assert_eq!(response.status(), 401, "{endpoint} with {who}");
                let challenge = response.headers()["www-authenticate"]
                    .to_str()
                    .expect("ASCII");
                assert!(challenge.starts_with("Basic "), "{challenge}");
                assert_eq!(response.headers()["x-content-type-options"], "nosniff");
            }
        }
        let response = get_with(&url, Some(("prometheus", "scrape-password"))).await;
        assert_ne!(response.status(), 401, "{endpoint} with the right password");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    }
    let response = get_with(
        &exporter.url("/metrics"),
        Some(("prometheus", "scrape-password")),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.expect("body");
    common::Exposition::parse(&body);
    let landing = get_with(&exporter.url("/"), Some(("prometheus", "scrape-password"))).await;
    let landing = landing.text().await.expect("landing page");
    assert!(landing.contains("Partner Center Exporter"), "{landing}");
    for secret in ["$2b$", "scrape-password", "basic_auth", "web.yml"] {
        assert!(!landing.contains(secret), "the landing page shows {secret}");
    }
    let malformed = common::http()
        .get(exporter.url("/metrics"))
        .header("authorization", "Basic !!!not-base64")
        .send()
        .await
        .expect("GET");
    assert_eq!(malformed.status(), 401);
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn healthz_is_exempt_only_with_the_flag() {
    let pki = TestPki::new();
    let path = pki.web_config("basic_auth_users:\n  prometheus: \"@bcrypt:scrape-password@\"\n");
    let (exporter, _upstream) = start_exporter_with_web(load_web(&path, true)).await;
    assert_eq!(
        get_with(&exporter.url("/healthz"), None).await.status(),
        200
    );
    for endpoint in ["/metrics", "/", "/readyz", "/healthz/"] {
        assert_eq!(
            get_with(&exporter.url(endpoint), None).await.status(),
            401,
            "{endpoint} still needs credentials"
        );
    }
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn requests_beyond_the_rate_limit_get_429() {
    let pki = TestPki::new();
    let path = pki.web_config(
        "rate_limit:\n  interval: 1h\n  burst: 3\n\
         http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
    );
    let (exporter, _upstream) = start_exporter_with_web(load_web(&path, false)).await;
    for _ in 0..3 {
        assert_eq!(
            get_with(&exporter.url("/healthz"), None).await.status(),
            200
        );
    }
    let refused = get_with(&exporter.url("/metrics"), None).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["x-frame-options"], "deny");
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn basic_auth_and_client_certificate_over_tls_with_http2() {
    let pki = TestPki::new();
    for (http2, expected) in [
        ("true", reqwest::Version::HTTP_2),
        ("false", reqwest::Version::HTTP_11),
    ] {
        let template = format!(
            "{}  client_allowed_sans: [{ALLOWED_CLIENT}]\nhttp_server_config:\n  http2: {http2}\n\
             basic_auth_users:\n  prometheus: \"@bcrypt:scrape-password@\"\n",
            MTLS.replace("POLICY", "RequireAndVerifyClientCert")
        );
        let (exporter, _upstream) = exporter_with(&pki, &template).await;
        let url = format!("https://{}/metrics", exporter.address);
        let client = https_client(&pki, Some(&pki.client));
        let response = client
            .get(&url)
            .basic_auth("prometheus", Some("scrape-password"))
            .send()
            .await
            .expect("HTTPS GET");
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), expected, "http2: {http2}");
        let body = response.text().await.expect("body");
        assert!(body.contains("partner_center_up"), "{body}");
        let unauthorized = client.get(&url).send().await.expect("HTTPS GET");
        assert_eq!(unauthorized.status(), 401);
        // Plain HTTP on a TLS listener gets no answer.
        assert!(
            common::http()
                .get(exporter.url("/metrics"))
                .send()
                .await
                .is_err()
        );
        exporter.stop().await.expect("clean stop");
    }
}

#[tokio::test]
async fn a_client_that_never_handshakes_is_dropped() {
    let pki = TestPki::new();
    let path = pki.web_config_from_fixture("good/tls.yml");
    let (config, dir) = common::test_config("http://127.0.0.1:9", Duration::from_secs(3600));
    let settings = partner_center_exporter::ServerSettings {
        header_read_timeout: Duration::from_millis(300),
        web: Some(std::sync::Arc::new(load_web(&path, false))),
        ..common::test_server_settings()
    };
    let exporter = common::RunningExporter::start_with_settings(config, dir, settings).await;
    let mut silent = tokio::net::TcpStream::connect(exporter.address)
        .await
        .expect("connect");
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read(&mut silent, &mut buffer),
    )
    .await
    .expect("the server closes a silent connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Handshakes, then sends no request: closed by the header-read timeout.
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client_config(
        &pki.ca,
        None,
        Offer::Both,
    )));
    let tcp = tokio::net::TcpStream::connect(exporter.address)
        .await
        .expect("connect");
    let server_name =
        rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let mut idle = connector
        .connect(server_name, tcp)
        .await
        .expect("handshake");
    let read = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut idle, &mut buffer))
        .await
        .expect("the server closes an idle TLS connection");
    assert!(
        matches!(read, Ok(0) | Err(_)) || buffer.starts_with(b"HTTP/1.1 408"),
        "{read:?}"
    );
    // The server still serves others.
    let result = tls_exchange(exporter.address, client_config(&pki.ca, None, Offer::Both)).await;
    assert!(result.is_ok(), "{result:?}");
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_rotated_certificate_is_served_and_a_broken_file_keeps_the_last_good_one() {
    let Some(logs) = CapturedLogs::in_own_process(
        "web_config::a_rotated_certificate_is_served_and_a_broken_file_keeps_the_last_good_one",
    ) else {
        return;
    };
    let pki = TestPki::new();
    let path =
        pki.web_config("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
    let (exporter, _upstream) = start_exporter_with_web(load_web(&path, false)).await;
    let address = exporter.address;
    let ca = pki.ca.clone();
    let presented = || {
        let ca = ca.clone();
        async move {
            tls_exchange(address, client_config(&ca, None, Offer::Both))
                .await
                .map(|exchange| exchange.server_cert)
        }
    };
    assert_eq!(presented().await, Ok(der(&pki.server.cert)));

    // Held open across the rotation: it keeps working.
    let client = https_client(&pki, None);
    let url = format!("https://{address}/healthz");
    assert_eq!(client.get(&url).send().await.expect("GET").status(), 200);

    let rotated = pki.reissue_server();
    pki.install_server(&rotated);
    let rotated_der = der(&rotated.cert);
    wait_for(
        WAIT,
        "new connections to get the rotated certificate",
        || {
            let rotated_der = rotated_der.clone();
            let presenting = presented();
            async move { presenting.await == Ok(rotated_der) }
        },
    )
    .await;
    logs.line_with(&["web configuration reloaded", &path.display().to_string()]);
    assert_eq!(client.get(&url).send().await.expect("GET").status(), 200);

    // A broken key: logged, and the rotated certificate stays in force.
    pki.write("server.key", "not a key\n");
    wait_for(WAIT, "the refusal to be logged", || async {
        logs.text().lines().any(|line| {
            line.contains("cannot reload the web configuration")
                && line.contains("no PEM private key")
        })
    })
    .await;
    assert_eq!(presented().await, Ok(der(&rotated.cert)));
    assert!(
        !logs.text().contains("not a key"),
        "the file's content is not logged"
    );

    // Fixed again: the next look picks it up.
    let third = pki.reissue_server();
    pki.install_server(&third);
    let third_der = der(&third.cert);
    wait_for(WAIT, "the fixed file to be picked up", || {
        let third_der = third_der.clone();
        let presenting = presented();
        async move { presenting.await == Ok(third_der) }
    })
    .await;
    exporter.stop().await.expect("clean stop");
}

#[test]
fn tls_cannot_be_switched_off_by_a_reload() {
    let pki = TestPki::new();
    let path = pki.web_config_from_fixture("good/tls.yml");
    let web = load_web(&path, false);
    assert_eq!(web.reload(), ReloadOutcome::Unchanged);
    pki.web_config("basic_auth_users:\n  prometheus: \"@bcrypt:x@\"\n");
    match web.reload() {
        ReloadOutcome::Refused(message) => {
            assert!(
                message.contains("TLS cannot be turned off while running"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(web.tls_enabled());
    // Reported once, not at every look.
    assert_eq!(web.reload(), ReloadOutcome::Unchanged);
}

#[test]
fn basic_auth_users_are_reloaded() {
    let pki = TestPki::new();
    let path = pki.web_config("basic_auth_users:\n  prometheus: \"@bcrypt:x@\"\n");
    let web = load_web(&path, false);
    pki.web_config("basic_auth_users:\n  prometheus: \"@bcrypt:x@\"\n  grafana: \"@bcrypt:y@\"\n");
    assert_eq!(web.reload(), ReloadOutcome::Reloaded);
    assert!(web.current().summary().contains("basic auth for 2 user(s)"));
}

// ---------------------------------------------------------------------------
// The binary: flags, --config.check, start-up
// ---------------------------------------------------------------------------

/// Longest wait for a binary that should exit on its own.
const EXIT_LIMIT: Duration = Duration::from_secs(20);

/// A valid exporter configuration (and its token file) in the PKI's directory.
fn exporter_config(pki: &TestPki) -> String {
    pki.write("token", "a-token\n");
    pki.write(
        "exporter.yml",
        "auth:\n  bearer_token_file: token\npoll:\n  interval: 15m\n",
    );
    format!("--config.file={}", pki.path("exporter.yml").display())
}

#[test]
fn config_check_checks_the_web_configuration_too() {
    let pki = TestPki::new();
    let config = exporter_config(&pki);
    let good = pki.web_config_from_fixture("good/mtls.yml");
    let web_flag = format!("--web.config.file={}", good.display());
    let output =
        ExporterProcess::run_to_exit(None, &[&config, "--config.check", &web_flag], EXIT_LIMIT);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("configuration is valid")
            && stdout.contains("web configuration is valid: TLS on (client certificates: RequireAndVerifyClientCert"),
        "{}",
        describe(&output)
    );

    let bad = pki.web_config_from_fixture("bad/tls10.yml");
    let web_flag = format!("--web.config.file={}", bad.display());
    let output =
        ExporterProcess::run_to_exit(None, &[&config, "--config.check", &web_flag], EXIT_LIMIT);
    assert_eq!(
        output.status.code(),
        Some(i32::from(EXIT_CONFIG_ERROR)),
        "{}",
        describe(&output)
    );
    assert!(
        text(&output.stderr).contains("TLS10 is not supported"),
        "{}",
        describe(&output)
    );
    // The exporter's own file was fine and is still reported as such.
    assert!(text(&output.stdout).contains("configuration is valid"));
}

#[test]
fn starting_with_a_bad_web_configuration_exits_78() {
    let pki = TestPki::new();
    let bad = pki.web_config_from_fixture("bad/password-in-clear.yml");
    let web_flag = format!("--web.config.file={}", bad.display());
    let output = ExporterProcess::run_to_exit(None, &["--demo", &web_flag], EXIT_LIMIT);
    assert_eq!(
        output.status.code(),
        Some(i32::from(EXIT_CONFIG_ERROR)),
        "{}",
        describe(&output)
    );
    let stderr = text(&output.stderr);
    assert!(stderr.contains("invalid web configuration"), "{stderr}");
    assert!(stderr.contains("not a bcrypt hash"), "{stderr}");
    assert!(!stderr.contains("clear-text-password"), "{stderr}");
}

#[test]
fn the_healthz_exemption_needs_a_web_configuration() {
    let output =
        ExporterProcess::run_to_exit(None, &["--demo", "--web.healthz-without-auth"], EXIT_LIMIT);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        text(&output.stderr).contains("--web.config.file"),
        "{}",
        describe(&output)
    );
}

// ---------------------------------------------------------------------------
// A real Prometheus scraping over TLS with basic auth and a client certificate
// ---------------------------------------------------------------------------

/// Prometheus' job names: the right credentials, no client certificate,
/// a wrong password.
const JOBS: [(&str, f64); 3] = [
    ("right", 1.0),
    ("no-client-cert", 0.0),
    ("wrong-password", 0.0),
];

fn prometheus_config(pki: &TestPki, target: std::net::SocketAddr) -> String {
    let ca = pki.path("ca.crt").display().to_string();
    let cert = pki.path("client.crt").display().to_string();
    let key = pki.path("client.key").display().to_string();
    let job = |name: &str, client_cert: bool, password: &str| {
        let client_cert = if client_cert {
            format!("      cert_file: {cert}\n      key_file: {key}\n")
        } else {
            String::new()
        };
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {ca}\n{client_cert}\
             \x20   basic_auth:\n      username: prometheus\n      password: {password}\n\
             \x20   static_configs:\n      - targets: [\"{target}\"]\n"
        )
    };
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}{}",
        job("right", true, "scrape-password"),
        job("no-client-cert", false, "scrape-password"),
        job("wrong-password", true, "not-the-password"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_over_tls_with_basic_auth_and_a_client_certificate() {
    let Some(prometheus_bin) = find_tool("prometheus") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus (Debian package `prometheus`) is required in CI but was not found"
        );
        eprintln!(
            "\n==================================================================\n\
             WARNING: SKIPPING the Prometheus end-to-end scrape over TLS:\n\
             prometheus not found on the PATH (Debian package `prometheus`).\n\
             ==================================================================\n"
        );
        return;
    };
    let started = std::time::Instant::now();
    let pki = TestPki::new();
    let web = pki.web_config(&format!(
        "{}  client_allowed_sans: [{ALLOWED_CLIENT}]\n\
         basic_auth_users:\n  prometheus: \"@bcrypt:scrape-password@\"\n",
        MTLS.replace("POLICY", "RequireAndVerifyClientCert")
    ));
    let web_flag = format!("--web.config.file={}", web.display());
    let exporter = ExporterProcess::start(&["--demo", &web_flag, LISTEN]).await;

    pki.write(
        "prometheus.yml",
        &prometheus_config(&pki, exporter.address()),
    );
    let mut prometheus = Server::start(
        "Prometheus",
        &prometheus_bin,
        &[
            format!("--config.file={}", pki.path("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", pki.path("data").display()),
            format!("--web.listen-address=127.0.0.1:{}", free_port()),
        ],
        pki.path("prometheus.log"),
    );
    let client = common::http();
    prometheus.wait_ready(&client).await;

    let context = |prometheus: &Server| {
        format!(
            "--- exporter log ---\n{}\n--- Prometheus log (end) ---\n{}",
            exporter.log_text(),
            prometheus.log_tail()
        )
    };
    let deadline = std::time::Instant::now() + START_LIMIT;
    let targets = loop {
        let url = format!("{}/api/v1/targets", prometheus.url);
        let targets: Option<Vec<serde_json::Value>> = async {
            let body: serde_json::Value = client.get(&url).send().await.ok()?.json().await.ok()?;
            let active = body["data"]["activeTargets"].as_array()?.clone();
            // Every job scraped at least once, and the right one succeeded.
            let scraped = active
                .iter()
                .all(|t| t["lastScrape"] != "0001-01-01T00:00:00Z");
            let right_up = active
                .iter()
                .any(|t| t["labels"]["job"] == "right" && t["health"] == "up");
            (active.len() == JOBS.len() && scraped && right_up).then_some(active)
        }
        .await;
        if let Some(targets) = targets {
            break targets;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus did not scrape every job within {START_LIMIT:?}\n{}",
            context(&prometheus)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for (job, up) in JOBS {
        let target = targets
            .iter()
            .find(|t| t["labels"]["job"] == job)
            .unwrap_or_else(|| panic!("no target for {job}"));
        let health = if up == 1.0 { "up" } else { "down" };
        assert_eq!(
            target["health"],
            health,
            "{job}: {target}\n{}",
            context(&prometheus)
        );
    }
    let wrong = targets
        .iter()
        .find(|t| t["labels"]["job"] == "wrong-password")
        .expect("wrong-password target");
    assert!(
        wrong["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains("401"),
        "{wrong}"
    );

    // The scraped series arrived, with the exporter's labels.
    let url = reqwest::Url::parse_with_params(
        &format!("{}/api/v1/query", prometheus.url),
        [("query", "partner_center_exporter_build_info{job=\"right\"}")],
    )
    .expect("query URL");
    let deadline = std::time::Instant::now() + START_LIMIT;
    loop {
        let result: Option<serde_json::Value> = async {
            let body: serde_json::Value = client
                .get(url.clone())
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            body["data"]["result"].as_array()?.first().cloned()
        }
        .await;
        if let Some(series) = result {
            assert_eq!(series["metric"]["instance"], exporter.address().to_string());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no partner_center_exporter_build_info from the TLS job\n{}",
            context(&prometheus)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log = exporter.log_text();
    assert!(log.contains("web configuration in force"), "{log}");
    assert!(
        !log.contains("scrape-password") && !log.contains("$2b$"),
        "{log}"
    );
    eprintln!(
        "Prometheus end-to-end over TLS took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
