//! `--web.config.file`: exporter-toolkit's web configuration files, good
//! and bad (tests/fixtures/web/), real TLS handshakes under each client
//! certificate policy and version limit, basic auth, response headers, the
//! `/healthz` exemption, HTTP/2, and certificate rotation while serving.

mod common;

use std::path::Path;
use std::time::Duration;

use common::web::{
    ALLOWED_CLIENT, FIXTURES, Offer, TestPki, client_config, der, https_client, load_web,
    start_exporter_with_web, tls_exchange,
};
use common::{CapturedLogs, WAIT, wait_for};
use partner_center_exporter::web::{ReloadOutcome, WebOptions, WebSecurity};
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
    let settings = partner_center_exporter::server::ServerSettings {
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
    // The server still serves others.
    let result = tls_exchange(exporter.address, client_config(&pki.ca, None, Offer::Both)).await;
    assert!(result.is_ok(), "{result:?}");
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_rotated_certificate_is_served_and_a_broken_file_keeps_the_last_good_one() {
    let logs = CapturedLogs::global();
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
