//! The simulator against real clients on 127.0.0.1: every step kind, the
//! per-path scripts and their fallback, keep-alive, the token endpoint's
//! rotation, the outage, the authorisation modes, paging through the
//! exporter's own client, and the record of requests.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::demo_partner::DemoPartner;
use super::*;
use crate::config::DEFAULT_RESOURCE;

/// Longest any test waits for an answer that should come at once.
const PROMPT: Duration = Duration::from_secs(5);

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(PROMPT)
        .build()
        .expect("client")
}

/// A GET of `path` on a fresh connection, as raw bytes.
async fn send_get(simulator: &Simulator, path: &str, extra: &str) -> TcpStream {
    let mut stream = TcpStream::connect(simulator.address())
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    stream
}

/// Everything the server sends until it closes the connection or
/// `limit` passes; and whether it closed.
async fn read_all(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut received = Vec::new();
    let deadline = Instant::now() + limit;
    let mut chunk = [0u8; 8192];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return (received, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (received, true),
            Ok(Ok(read)) => received.extend_from_slice(&chunk[..read]),
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn every_step_kind_is_played_then_the_last_one_repeats() {
    let simulator = Simulator::scripted(
        vec![
            Step::response(429, &[("Retry-After", "7")], b"{}"),
            Step::truncated(r#"{"items": [1, 2, 3, 4]}"#),
            Step::Hang,
            Step::drip("{}", Duration::from_millis(30)),
            Step::Endless,
            Step::Close,
            Step::json_bytes(b"{\"a\": \"\xff\"}"),
        ],
        Step::json(200, r#"{"items": []}"#),
    )
    .await
    .expect("starts");
    let http = http_client();

    let throttled = http
        .get(simulator.url("/v1/anything"))
        .send()
        .await
        .expect("answer");
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "7");

    let mut truncated = send_get(&simulator, "/t", "").await;
    let (bytes, closed) = read_all(&mut truncated, PROMPT).await;
    let answer = text(&bytes);
    assert!(closed, "{answer}");
    assert!(answer.contains("Content-Length: 23\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n{\"items\": [")); // 11 of the 23 bytes

    let mut hanging = send_get(&simulator, "/h", "").await;
    let (bytes, closed) = read_all(&mut hanging, Duration::from_millis(300)).await;
    assert!(
        bytes.is_empty() && !closed,
        "Hang answers nothing and keeps the connection"
    );

    let started = Instant::now();
    let mut dripping = send_get(&simulator, "/d", "").await;
    let (bytes, closed) = read_all(&mut dripping, PROMPT).await;
    assert!(closed);
    assert!(text(&bytes).ends_with("Content-Length: 2\r\nConnection: close\r\n\r\n{}"));
    assert!(
        started.elapsed() >= Duration::from_millis(60),
        "one byte every 30 ms"
    );

    let mut endless = send_get(&simulator, "/e", "").await;
    let mut received = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    while received.len() < 1024 * 1024 {
        let read = tokio::time::timeout(PROMPT, endless.read(&mut chunk))
            .await
            .expect("bytes keep coming")
            .expect("readable");
        assert_ne!(read, 0, "the endless body ended");
        received.extend_from_slice(&chunk[..read]);
    }
    assert!(text(&received[..200]).contains("Transfer-Encoding: chunked\r\n"));
    drop(endless);

    let mut closing = send_get(&simulator, "/c", "").await;
    let (bytes, closed) = read_all(&mut closing, PROMPT).await;
    assert!(bytes.is_empty() && closed, "Close says nothing");

    let not_utf8 = http.get(simulator.url("/b")).send().await.expect("answer");
    assert_eq!(
        not_utf8.bytes().await.expect("body").as_ref(),
        b"{\"a\": \"\xff\"}"
    );

    for _ in 0..2 {
        let then = http.get(simulator.url("/x")).send().await.expect("answer");
        assert_eq!(then.status(), 200);
        assert_eq!(then.text().await.expect("body"), r#"{"items": []}"#);
    }

    let received = simulator
        .wait_for_requests(9, PROMPT)
        .await
        .expect("all recorded");
    let paths: Vec<&str> = received.iter().map(ReceivedRequest::path).collect();
    assert_eq!(
        paths,
        [
            "/v1/anything",
            "/t",
            "/h",
            "/d",
            "/e",
            "/c",
            "/b",
            "/x",
            "/x"
        ]
    );
    assert!(received.windows(2).all(|pair| pair[0].at <= pair[1].at));
    assert!(
        received[0].answered_at.is_some(),
        "a raw answer is sent whole"
    );
    assert!(received[2].answered_at.is_none(), "a hang answers nothing");
    assert_eq!(received[1].header("HOST"), Some("127.0.0.1"));
    assert_eq!(simulator.request_count("/x"), 2);
    assert_eq!(simulator.request_count("x"), 2, "with or without the /");
    drop(hanging);
}

#[tokio::test]
async fn replace_changes_what_is_left_of_the_script() {
    let simulator = Simulator::scripted(vec![Step::json(500, "{}")], Step::Close)
        .await
        .expect("starts");
    simulator.replace(vec![], Step::json(201, "{}"));
    let answer = http_client()
        .get(simulator.url("/"))
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), 201, "the unplayed 500 is gone");
}

#[tokio::test]
async fn waits_end_when_the_requests_arrive_or_the_limit_passes() {
    let simulator = Simulator::scripted(vec![], Step::json(200, "{}"))
        .await
        .expect("starts");
    let url = simulator.url("/late");
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        http_client()
            .get(url)
            .send()
            .await
            .map(|answer| answer.status())
    });
    let received = simulator
        .wait_for_requests(1, PROMPT)
        .await
        .expect("the late request");
    assert_eq!(received[0].target, "/late");
    assert_eq!(late.await.expect("joined").expect("answered"), 200);

    let err = simulator
        .wait_for_requests(3, Duration::from_millis(100))
        .await
        .expect_err("only one came");
    assert_eq!((err.wanted, err.got), (3, 1));
    assert!(
        err.to_string()
            .starts_with("expected 3 requests within 100ms, got 1: "),
        "{err}"
    );
    simulator
        .log()
        .wait_for_path("/late", 1, Duration::ZERO)
        .await
        .expect("counted per path");
    assert!(
        simulator
            .log()
            .wait_for_path("/other", 1, Duration::from_millis(50))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn path_scripts_go_first_and_fall_back_to_the_dataset() {
    const PATH: &str = "v1/analytics/licenses/usage";
    let simulator = Simulator::builder()
        .dataset(PATH, Dataset::fixed(r#"{"items": []}"#))
        .start()
        .await
        .expect("starts");
    simulator.push_steps(
        PATH,
        [
            Step::json(500, "{}"),
            Step::Normal,
            Step::response(503, &[("Retry-After", "1")], b""),
        ],
    );
    assert_eq!(simulator.pending_steps(PATH), 3);
    let http = http_client();
    let status = |path: &'static str| {
        let http = http.clone();
        let url = simulator.url(path);
        async move { http.get(url).send().await.map(|a| a.status().as_u16()) }
    };
    assert_eq!(status("/v1/analytics/licenses/usage").await.ok(), Some(500));
    assert_eq!(status("/elsewhere").await.ok(), Some(404), "not scripted");
    assert_eq!(status("/v1/analytics/licenses/usage").await.ok(), Some(200));
    assert_eq!(status("/v1/analytics/licenses/usage").await.ok(), Some(503));
    assert_eq!(simulator.pending_steps(PATH), 0);
    let normal = http
        .get(simulator.url(PATH))
        .header("MS-RequestId", "r-1")
        .send()
        .await
        .expect("answer");
    assert_eq!(normal.status(), 200, "the queue is used up: the dataset");
    assert_eq!(normal.headers()["ms-requestid"], "r-1", "echoed");
    assert_eq!(normal.text().await.expect("body"), r#"{"items": []}"#);

    // A fixed answer once the steps are used up, instead of the dataset.
    simulator.script(PATH, vec![], Some(Step::json(502, "{}")));
    assert_eq!(status("/v1/analytics/licenses/usage").await.ok(), Some(502));
    assert_eq!(simulator.request_count(PATH), 5);
    assert_eq!(simulator.log().counts().get("/elsewhere"), Some(&1));
}

#[tokio::test]
async fn connections_stay_open_between_answers_unless_closed() {
    let simulator = Simulator::builder()
        .dataset("/a", Dataset::fixed("[1]"))
        .start()
        .await
        .expect("starts");
    let mut stream = TcpStream::connect(simulator.address())
        .await
        .expect("connect");
    // Two requests in one write (pipelined), then one asking to close.
    stream
        .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /a?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("sent");
    stream
        .write_all(b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("sent");
    let (bytes, closed) = read_all(&mut stream, PROMPT).await;
    let answers = text(&bytes);
    assert!(closed, "closed after the third: {answers}");
    assert_eq!(
        answers.matches("HTTP/1.1 200 OK\r\n").count(),
        3,
        "{answers}"
    );
    assert_eq!(answers.matches("Connection: close\r\n").count(), 1);
    assert!(answers.ends_with("\r\n\r\n[1]"));
    assert_eq!(simulator.received()[1].target, "/a?q=1");
}

#[tokio::test]
async fn malformed_and_oversized_requests_are_refused_and_closed() {
    let simulator = Simulator::builder().start().await.expect("starts");
    for (request, status) in [
        (b"NOT A REQUEST\r\n\r\n".to_vec(), "400"),
        (
            b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n".to_vec(),
            "400",
        ),
        (
            {
                let mut head = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
                head.resize(http::MAX_HEAD_BYTES + 10, b'a');
                head
            },
            "431",
        ),
    ] {
        let mut stream = TcpStream::connect(simulator.address())
            .await
            .expect("connect");
        stream.write_all(&request).await.expect("sent");
        let (bytes, closed) = read_all(&mut stream, PROMPT).await;
        let answer = text(&bytes);
        assert!(closed, "{answer}");
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer}"
        );
    }
    assert_eq!(simulator.log().total(), 0, "nothing readable was recorded");
}

fn entra_settings() -> EntraSettings {
    EntraSettings {
        tenant_id: "contoso.onmicrosoft.com".to_owned(),
        client_id: "11111111-2222-3333-4444-555555555555".to_owned(),
        client_secret: Secret::new("the-secret"),
        refresh_token: Secret::new("rt-first"),
        access_token_lifetime: Duration::from_secs(60),
    }
}

/// Redeems `refresh_token` at the simulator's token endpoint.
async fn redeem(simulator: &Simulator, refresh_token: &str) -> (u16, serde_json::Value) {
    let answer = http_client()
        .post(simulator.url("/contoso.onmicrosoft.com/oauth2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "11111111-2222-3333-4444-555555555555"),
            ("client_secret", "the-secret"),
            ("refresh_token", refresh_token),
            ("resource", DEFAULT_RESOURCE),
        ])
        .send()
        .await
        .expect("answer");
    let status = answer.status().as_u16();
    assert_eq!(answer.headers()["cache-control"], "no-store");
    (status, answer.json().await.expect("JSON"))
}

async fn get_with_token(simulator: &Simulator, path: &str, token: Option<&str>) -> u16 {
    let mut request = http_client().get(simulator.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("answer").status().as_u16()
}

#[tokio::test]
async fn the_token_endpoint_rotates_strictly_and_its_tokens_open_partner_center() {
    let simulator = Simulator::builder()
        .dataset("v1/a", Dataset::fixed("{}"))
        .entra(entra_settings())
        .partner_center_auth(PartnerCenterAuth::IssuedTokens)
        .start()
        .await
        .expect("starts");
    assert_eq!(
        get_with_token(&simulator, "v1/a", Some("made-up")).await,
        401
    );

    let (status, first) = redeem(&simulator, "rt-first").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["expires_in"], "60");
    let second_rt = first["refresh_token"].as_str().expect("rotated");
    let access_token = first["access_token"].as_str().expect("issued");
    assert_eq!(
        simulator
            .current_refresh_token()
            .expect("Entra ID is played")
            .expose(),
        second_rt
    );
    assert_eq!(
        get_with_token(&simulator, "v1/a", Some(access_token)).await,
        200
    );
    assert_eq!(get_with_token(&simulator, "v1/a", None).await, 401);
    assert_eq!(
        get_with_token(&simulator, "v1/a", Some(second_rt)).await,
        401,
        "a refresh token is no access token"
    );

    let (status, refused) = redeem(&simulator, "rt-first").await;
    assert_eq!(status, 400);
    assert_eq!(refused["error"], "invalid_grant");
    assert_eq!(refused["error_codes"], serde_json::json!([70_008]));
    let (status, third) = redeem(&simulator, second_rt).await;
    assert_eq!(status, 200, "{third}");
    assert_eq!(simulator.token_redemptions(), 2);
    let token_requests = simulator
        .log()
        .requests_to("/contoso.onmicrosoft.com/oauth2/token");
    let sent: Vec<Option<String>> = token_requests
        .iter()
        .map(|request| request.form_value("refresh_token"))
        .collect();
    assert_eq!(
        sent,
        [Some("rt-first"), Some("rt-first"), Some(second_rt)].map(|t| t.map(str::to_owned))
    );
    assert_eq!(token_requests[0].method, "POST");
    assert!(
        token_requests[0]
            .form()
            .contains(&("grant_type".to_owned(), "refresh_token".to_owned()))
    );

    let wrong_tenant = http_client()
        .post(simulator.url("/fabrikam.onmicrosoft.com/oauth2/token"))
        .form(&[("grant_type", "refresh_token")])
        .send()
        .await
        .expect("answer");
    assert_eq!(wrong_tenant.status(), 400);
    let body: serde_json::Value = wrong_tenant.json().await.expect("JSON");
    assert_eq!(body["error_codes"], serde_json::json!([90_002]));

    // reqwest sends no chunked requests without its `stream` feature: raw.
    let mut chunked = TcpStream::connect(simulator.address())
        .await
        .expect("connect");
    chunked
        .write_all(
            b"POST /contoso.onmicrosoft.com/oauth2/token HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n18\r\ngrant_type=refresh_token\r\n0\r\n\r\n",
        )
        .await
        .expect("sent");
    let (bytes, closed) = read_all(&mut chunked, PROMPT).await;
    let answer = text(&bytes);
    assert!(
        answer.starts_with("HTTP/1.1 400 "),
        "a chunked body is refused, not guessed at: {answer}"
    );
    assert!(closed, "its end is unknown, so the connection cannot go on");
}

#[tokio::test]
async fn a_fixed_bearer_token_is_the_only_key() {
    let simulator = Simulator::builder()
        .dataset("v1/a", Dataset::fixed("{}"))
        .partner_center_auth(PartnerCenterAuth::Bearer(Secret::new("test-token")))
        .start()
        .await
        .expect("starts");
    assert_eq!(
        get_with_token(&simulator, "v1/a", Some("test-token")).await,
        200
    );
    assert_eq!(
        get_with_token(&simulator, "v1/a", Some("test-token2")).await,
        401
    );
    assert_eq!(get_with_token(&simulator, "v1/a", None).await, 401);
    assert_eq!(
        get_with_token(&simulator, "/t/oauth2/token", None).await,
        404,
        "no token endpoint without Entra ID settings"
    );
}

#[tokio::test]
async fn an_outage_answers_503_on_every_collection_but_not_the_token_endpoint() {
    let outage = OutageSwitch::default();
    let simulator = Simulator::builder()
        .datasets(datasets::demo())
        .entra(entra_settings())
        .outage(outage.clone())
        .start()
        .await
        .expect("starts");
    let paths = datasets::DEMO_DATASETS.map(|(path, _)| path);
    for path in paths {
        assert_eq!(get_with_token(&simulator, path, None).await, 200, "{path}");
    }
    assert!(outage.toggle(), "on");
    assert!(simulator.outage().is_on(), "one switch");
    for path in paths {
        assert_eq!(get_with_token(&simulator, path, None).await, 503, "{path}");
    }
    assert_eq!(get_with_token(&simulator, "/unknown", None).await, 404);
    let (status, _) = redeem(&simulator, "rt-first").await;
    assert_eq!(status, 200, "Entra ID is not down");
    simulator.outage().set(false);
    for path in paths {
        assert_eq!(get_with_token(&simulator, path, None).await, 200, "{path}");
    }
}

#[tokio::test]
async fn the_exporter_client_follows_the_pages_of_a_paged_dataset() {
    use crate::auth::Authenticator;
    use crate::config::{AuthConfig, Config, PartnerCenterConfig};
    use crate::exposition::metrics::ExporterMetrics;
    use crate::partner_center::client::Client;
    use crate::sources::Source;
    use crate::sources::license_usage::LicenseUsageSource;

    let items: Vec<serde_json::Value> = (0..5)
        .map(|index| {
            serde_json::json!({
                "workloadName": format!("Workload {index}"),
                "serviceName": "o365",
                "channel": "reseller",
                "proratedLicensesUsagePercent": index,
                "processedDateTime": "2024-05-01T00:00:00Z",
            })
        })
        .collect();
    let simulator = Simulator::builder()
        .dataset(LicenseUsageSource::PATH, Dataset::paged(items, 2))
        .partner_center_auth(PartnerCenterAuth::Bearer(Secret::new("paging-token")))
        .start()
        .await
        .expect("starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "paging-token\n").expect("token file");
    let config = Config {
        partner_center: PartnerCenterConfig {
            base_url: reqwest::Url::parse(simulator.base_url()).expect("URL"),
            max_retries: 0,
            ..PartnerCenterConfig::default()
        },
        auth: AuthConfig {
            bearer_token_file: Some(token_file),
            ..AuthConfig::default()
        },
        poll: crate::config::PollConfig::default(),
        sources: crate::config::SourcesConfig::default(),
        customers: crate::config::CustomersConfig::default(),
        skus: crate::config::SkusConfig::default(),
        subscriptions: crate::config::SubscriptionsConfig::default(),
        state_dir: None,
        tenants: Vec::new(),
    };
    let metrics = ExporterMetrics::new().expect("metrics");
    let authenticator =
        Authenticator::from_config(&config, &crate::tenant::TenantLabel::NONE, &metrics)
            .expect("authenticator");
    let exporter_client = Client::new(&config.partner_center).expect("client");
    let report = exporter_client
        .fetch_collection(
            LicenseUsageSource::PATH,
            LicenseUsageSource::decode_item,
            &authenticator,
            uuid::Uuid::new_v4(),
            Instant::now() + PROMPT,
            &mut Default::default(),
        )
        .await
        .expect("every page");
    assert_eq!(report.pages, 3);
    let workloads: Vec<&str> = report.items.iter().map(|i| i.workload.as_str()).collect();
    assert_eq!(
        workloads,
        [
            "Workload 0",
            "Workload 1",
            "Workload 2",
            "Workload 3",
            "Workload 4"
        ]
    );
    let requests = simulator.received();
    let pages: Vec<Option<&str>> = requests
        .iter()
        .map(|request| request.header(datasets::CONTINUATION_HEADER))
        .collect();
    assert_eq!(pages, [None, Some("page-1"), Some("page-2")]);
    assert_eq!(
        requests[2].header(datasets::CONTINUATION_HEADER),
        Some("page-2")
    );
    assert_eq!(simulator.request_count(LicenseUsageSource::PATH), 3);

    let stale = http_client()
        .get(simulator.url(LicenseUsageSource::PATH))
        .bearer_auth("paging-token")
        .header(datasets::CONTINUATION_HEADER, "page-3")
        .send()
        .await
        .expect("answer");
    assert_eq!(stale.status(), 400, "past the last page");
}

#[tokio::test]
async fn plain_routes_read_the_record_and_the_record_is_bounded() {
    let simulator = Simulator::builder()
        .dataset("/big", Dataset::fixed(vec![b' '; 100_000]))
        .route("/_count", |log| {
            Answer::new(200, "text/plain", format!("{}", log.count("/big")))
        })
        .record_limit(3)
        .start()
        .await
        .expect("starts");
    let http = http_client();
    for _ in 0..4 {
        let body = http
            .get(simulator.url("/big"))
            .send()
            .await
            .expect("answer")
            .bytes()
            .await
            .expect("body");
        assert_eq!(body.len(), 100_000);
    }
    let count = http
        .post(simulator.url("/_count"))
        .send()
        .await
        .expect("answer")
        .text()
        .await
        .expect("body");
    assert_eq!(count, "4");
    let kept = simulator.received();
    assert_eq!(kept.len(), 3, "the oldest two are forgotten");
    assert_eq!(kept[2].method, "POST");
    assert_eq!(simulator.log().total(), 5);
    let timings = simulator.log().timings("/big");
    assert_eq!(timings.len(), 2);
    for timing in timings {
        let answered = timing.answered_at.expect("answered");
        assert!(answered >= timing.at);
    }
}

#[tokio::test]
async fn dropping_the_simulator_ends_its_connections() {
    let simulator = Simulator::scripted(vec![], Step::Hang)
        .await
        .expect("starts");
    let address = simulator.address();
    let mut hanging = send_get(&simulator, "/", "").await;
    simulator
        .wait_for_requests(1, PROMPT)
        .await
        .expect("arrived");
    drop(simulator);
    let (bytes, closed) = read_all(&mut hanging, PROMPT).await;
    assert!(
        bytes.is_empty() && closed,
        "the hanging connection is closed"
    );
    assert!(
        TcpStream::connect(address).await.is_err(),
        "nothing listens any more"
    );
}

#[tokio::test]
async fn a_cancelled_shutdown_stops_accepting() {
    let shutdown = CancellationToken::new();
    let simulator = Simulator::builder()
        .shutdown(shutdown.clone())
        .start()
        .await
        .expect("starts");
    shutdown.cancel();
    let address = simulator.address();
    let deadline = Instant::now() + PROMPT;
    // The accept loop ends soon after the cancellation; the listener with it.
    while TcpStream::connect(address).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A GET of `url` with `headers`: the status and the body as JSON.
async fn get_json(url: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut request = http_client().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("answer");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// Follows a v1 collection's `links.next` from `path`, as Partner Center's
/// clients do (a relative `uri` resolved against the root, the listed
/// headers sent); returns every page's items.
async fn follow_links(simulator: &Simulator, path: &str) -> Vec<Vec<serde_json::Value>> {
    let mut pages = Vec::new();
    let mut next = Some((simulator.url(path), Vec::<(String, String)>::new()));
    while let Some((url, headers)) = next.take() {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (status, body) = get_json(&url, &headers).await;
        assert_eq!(status, 200, "{url}: {body}");
        let items = body["items"].as_array().expect("items").clone();
        assert_eq!(body["totalCount"], items.len(), "the page's count");
        pages.push(items);
        if let Some(link) = body["links"].get("next") {
            let uri = link["uri"].as_str().expect("uri");
            assert!(uri.starts_with('/'), "relative: {uri}");
            assert_eq!(link["method"], "GET");
            let headers = link["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .map(|h| {
                    (
                        h["key"].as_str().expect("key").to_owned(),
                        h["value"].as_str().expect("value").to_owned(),
                    )
                })
                .collect();
            next = Some((simulator.url(uri), headers));
        }
        assert!(pages.len() < 100, "the links end");
    }
    pages
}

#[tokio::test]
async fn the_customer_listing_pages_by_size_to_exactly_every_customer() {
    use super::demo_partner::{CUSTOMERS_PATH, Customer, customer_listing};
    let simulator = Simulator::builder()
        .datasets(demo_paths::datasets(&DemoPartner::contoso()))
        .dataset(
            "/small/v1/customers",
            customer_listing(
                &[
                    Customer::new("Contoso", "contoso"),
                    Customer::new("Fabrikam", "fabrikam").with_relationship("advisor"),
                    Customer::new("Litware", "litware"),
                ],
                2,
            ),
        )
        .start()
        .await
        .expect("starts");
    let expected: Vec<String> = DemoPartner::contoso()
        .customers()
        .into_iter()
        .map(|c| c.id)
        .collect();
    for (query, page_sizes) in [
        ("", vec![10, 10, 10, 2]),
        ("?size=7", vec![7, 7, 7, 7, 4]),
        ("?size=100", vec![32]),
    ] {
        let pages = follow_links(&simulator, &format!("{CUSTOMERS_PATH}{query}")).await;
        assert_eq!(
            pages.iter().map(Vec::len).collect::<Vec<_>>(),
            page_sizes,
            "{query}"
        );
        let ids: Vec<String> = pages
            .iter()
            .flatten()
            .map(|item| item["id"].as_str().expect("id").to_owned())
            .collect();
        assert_eq!(ids, expected, "{query}: every customer once, in order");
    }
    let small = follow_links(&simulator, "/small/v1/customers").await;
    assert_eq!(small.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(small[1][0]["companyProfile"]["companyName"], "Litware");
    assert_eq!(small[0][1]["relationshipToPartner"], "advisor");

    for (query, token) in [
        ("?size=0", None),
        ("?size=ten", None),
        ("", Some("from-99")),
        ("", Some("page-1")),
    ] {
        let headers: Vec<(&str, &str)> = token
            .map(|token| (datasets::CONTINUATION_HEADER, token))
            .into_iter()
            .collect();
        let (status, body) = get_json(
            &simulator.url(&format!("{CUSTOMERS_PATH}{query}")),
            &headers,
        )
        .await;
        assert_eq!(status, 400, "{query} {token:?}");
        assert_eq!(body["code"], 400);
    }
}

#[tokio::test]
async fn every_demo_customer_answers_its_licences_but_one_refused_for_gdap() {
    use super::demo_partner::{GDAP_REFUSED_CUSTOMER, subscribed_skus_path};
    let simulator = Simulator::builder()
        .datasets(demo_paths::datasets(&DemoPartner::contoso()))
        .start()
        .await
        .expect("starts");
    let mut refused = Vec::new();
    for customer in DemoPartner::contoso().customers() {
        let (status, body) = get_json(
            &simulator.url(&subscribed_skus_path(&customer.id)),
            &[("MS-RequestId", "r-1")],
        )
        .await;
        if status == 403 {
            assert_eq!(body["code"], 3000, "{body}");
            assert_eq!(body["source"], "PartnerFD");
            assert!(body["data"].is_array());
            refused.push(customer.name);
            continue;
        }
        assert_eq!(status, 200, "{}: {body}", customer.name);
        let items = body["items"].as_array().expect("items");
        assert!((2..=6).contains(&items.len()), "{}", customer.name);
        assert_eq!(body["totalCount"], items.len());
        for item in items {
            for field in [
                "availableUnits",
                "activeUnits",
                "consumedUnits",
                "suspendedUnits",
                "totalUnits",
                "warningUnits",
            ] {
                assert!(item[field].is_u64(), "{field}: {item}");
            }
            let sku = &item["productSku"];
            uuid::Uuid::parse_str(sku["id"].as_str().expect("SKU id")).expect("a GUID");
            assert!(sku["skuPartNumber"].is_string() && sku["name"].is_string());
            assert_eq!(sku["licenseGroupId"], "group1");
            assert!(
                ["Enabled", "Warning", "Suspended"]
                    .contains(&item["capabilityStatus"].as_str().expect("status"))
            );
        }
    }
    assert_eq!(refused, [GDAP_REFUSED_CUSTOMER]);
}

#[tokio::test]
async fn every_demo_customer_answers_its_subscriptions_and_their_provisioning_status() {
    use super::demo_subscriptions::{
        AZURE_PLAN_CUSTOMER, RENEWING_WITH_UNASSIGNED_CUSTOMER, RENEWING_WITH_UNASSIGNED_SKU,
        SOFTWARE_CUSTOMER, subscription_id,
    };
    use super::demo_subscriptions::{provisioning_status_path, subscriptions_path};
    let simulator = Simulator::builder()
        .datasets(demo_paths::datasets(&DemoPartner::contoso()))
        .start()
        .await
        .expect("starts");
    let (mut statuses, mut not_found) = (0, Vec::new());
    for customer in DemoPartner::contoso().customers() {
        let (status, body) = get_json(
            &simulator.url(&subscriptions_path(&customer.id)),
            &[("MS-RequestId", "r-1")],
        )
        .await;
        // The GDAP-refused customer too: listing subscriptions needs no role.
        assert_eq!(status, 200, "{}: {body}", customer.name);
        assert_eq!(body["attributes"]["objectType"], "Collection");
        assert!(body["links"]["next"].is_null());
        let items = body["items"].as_array().expect("items");
        assert!(!items.is_empty(), "{}", customer.name);
        assert_eq!(body["totalCount"], items.len());
        for item in items {
            let id = item["id"].as_str().expect("id");
            let (status, body) = get_json(
                &simulator.url(&provisioning_status_path(&customer.id, id)),
                &[],
            )
            .await;
            if status == 404 {
                assert_eq!(body["code"], 800002, "{body}");
                assert_eq!(body["source"], "PartnerFD");
                assert_ne!(item["productType"]["id"], "OnlineServicesNCE", "{item}");
                not_found.push(customer.name.clone());
                continue;
            }
            assert_eq!(status, 200, "{}: {body}", customer.name);
            statuses += 1;
            let sku = body["skuId"].as_str().expect("skuId");
            uuid::Uuid::parse_str(sku).expect("a GUID");
            assert_eq!(sku, sku.to_uppercase());
            assert_eq!(body["status"], "success");
            assert_eq!(body["quantity"], item["quantity"]);
            assert_eq!(body["endDate"], item["commitmentEndDate"]);
            assert_eq!(
                body["attributes"]["objectType"],
                "SubscriptionProvisioningStatus"
            );
        }
    }
    assert!(statuses > 100, "{statuses}");
    not_found.sort();
    let mut expected = vec![AZURE_PLAN_CUSTOMER.to_owned(), SOFTWARE_CUSTOMER.to_owned()];
    expected.sort();
    assert_eq!(not_found, expected);
    let contoso = DemoPartner::contoso()
        .customers()
        .into_iter()
        .find(|customer| customer.name == RENEWING_WITH_UNASSIGNED_CUSTOMER)
        .expect("a demo customer");
    let id = subscription_id(
        RENEWING_WITH_UNASSIGNED_CUSTOMER,
        RENEWING_WITH_UNASSIGNED_SKU,
    );
    let (status, body) = get_json(
        &simulator.url(&provisioning_status_path(&contoso.id, &id)),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["skuId"], RENEWING_WITH_UNASSIGNED_SKU.to_uppercase());
}

/// Pages a commercial analytics path by `skip` alone, ignoring
/// `@nextLink`, until `TotalCount` rows came; returns the rows and the
/// number of pages.
async fn page_by_skip(simulator: &Simulator, path: &str) -> (Vec<serde_json::Value>, usize) {
    let mut rows: Vec<serde_json::Value> = Vec::new();
    let mut pages = 0;
    loop {
        let url = simulator.url(&format!("{path}?top=10000&skip={}", rows.len()));
        let (status, body) = get_json(&url, &[]).await;
        assert_eq!(status, 200, "{url}: {body}");
        pages += 1;
        let page = body["Value"].as_array().expect("Value");
        assert!(!page.is_empty() && page.len() <= 100, "{}", page.len());
        rows.extend(page.iter().cloned());
        let total = body["TotalCount"].as_u64().expect("TotalCount") as usize;
        if rows.len() >= total {
            assert_eq!(rows.len(), total);
            return (rows, pages);
        }
        assert!(pages < 100, "the pages end");
    }
}

fn row_key(row: &serde_json::Value) -> String {
    ["customerTenantId", "productId", "workloadCode"]
        .iter()
        .map(|field| row[*field].as_str().unwrap_or("-"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn commercial_analytics_page_by_skip_and_by_next_link_to_every_row_once() {
    use super::demo_partner::{COMMERCIAL_DEPLOYMENT_PATH, COMMERCIAL_USAGE_PATH};
    let simulator = Simulator::builder()
        .datasets(demo_paths::datasets(&DemoPartner::contoso()))
        .start()
        .await
        .expect("starts");

    let (usage, pages) = page_by_skip(&simulator, COMMERCIAL_USAGE_PATH).await;
    assert!(pages >= 2, "paged even though all was asked for");
    let keys: std::collections::BTreeSet<String> = usage.iter().map(row_key).collect();
    assert_eq!(keys.len(), usage.len(), "every row exactly once");
    let (status, first) = get_json(&simulator.url(COMMERCIAL_USAGE_PATH), &[]).await;
    assert_eq!(status, 200);
    assert!(first["@nextLink"].is_null(), "usage pages by skip only");
    assert_eq!(first["TotalCount"], usage.len());

    // The deployment rows by their links.
    let mut url = simulator.url(&format!("{COMMERCIAL_DEPLOYMENT_PATH}?top=10000"));
    let mut deployment: Vec<serde_json::Value> = Vec::new();
    let mut total = None;
    loop {
        let (status, body) = get_json(&url, &[]).await;
        assert_eq!(status, 200, "{url}: {body}");
        deployment.extend(body["Value"].as_array().expect("Value").iter().cloned());
        total = total.or(body["TotalCount"].as_u64());
        assert_eq!(body["TotalCount"].as_u64(), total, "TotalCount holds");
        match body["@nextLink"].as_str() {
            None => break,
            Some(next) => {
                assert!(
                    next.starts_with(simulator.base_url()),
                    "same origin: {next}"
                );
                url = next.to_owned();
            }
        }
        assert!(deployment.len() < 10_000, "the links end");
    }
    assert_eq!(Some(deployment.len() as u64), total);
    let keys: std::collections::BTreeSet<String> = deployment.iter().map(row_key).collect();
    assert_eq!(keys.len(), deployment.len());
    let (skipped, _) = page_by_skip(&simulator, COMMERCIAL_DEPLOYMENT_PATH).await;
    assert_eq!(
        skipped.iter().map(row_key).collect::<Vec<_>>(),
        deployment.iter().map(row_key).collect::<Vec<_>>(),
        "both ways give the same rows"
    );

    // Only the /v1 path is served: the /partner/v1 one is Partner Center's 404.
    for path in [COMMERCIAL_USAGE_PATH, COMMERCIAL_DEPLOYMENT_PATH] {
        let (status, body) =
            get_json(&simulator.url(&format!("/partner{path}?top=10000")), &[]).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["code"], 404);
        assert!(body["description"].is_string() && body["data"].is_array());
    }
}

#[tokio::test]
async fn a_commercial_dataset_of_given_rows_honours_top_and_skip() {
    use super::datasets::NextLink;
    let rows: Vec<serde_json::Value> = (0..7)
        .map(|index| serde_json::json!({ "customerName": format!("Customer {index}") }))
        .collect();
    let simulator = Simulator::builder()
        .dataset(
            "/linked",
            Dataset::commercial(rows.clone(), 3, NextLink::Absolute),
        )
        .dataset("/plain", Dataset::commercial(rows, 3, NextLink::Null))
        .start()
        .await
        .expect("starts");
    let names = |body: &serde_json::Value| -> Vec<String> {
        body["Value"]
            .as_array()
            .expect("Value")
            .iter()
            .map(|row| row["customerName"].as_str().expect("name").to_owned())
            .collect()
    };
    let (_, body) = get_json(&simulator.url("/linked?top=2&skip=1"), &[]).await;
    assert_eq!(names(&body), ["Customer 1", "Customer 2"]);
    assert_eq!(body["TotalCount"], 7);
    assert_eq!(
        body["@nextLink"],
        simulator.url("/linked?top=2&skip=3"),
        "the client's top, the next skip"
    );
    let (_, body) = get_json(&simulator.url("/linked?skip=6"), &[]).await;
    assert_eq!(names(&body), ["Customer 6"]);
    assert!(body["@nextLink"].is_null(), "the last page");
    let (_, body) = get_json(&simulator.url("/linked?top=0"), &[]).await;
    assert!(names(&body).is_empty());
    assert!(body["@nextLink"].is_null(), "no link back to the same page");
    let (_, body) = get_json(&simulator.url("/plain"), &[]).await;
    assert_eq!(names(&body).len(), 3, "the server's page");
    assert!(body["@nextLink"].is_null());
    let (_, body) = get_json(&simulator.url("/plain?skip=99"), &[]).await;
    assert!(names(&body).is_empty());
    assert_eq!(body["TotalCount"], 7);
    for query in ["top=all", "skip=-1"] {
        let (status, body) = get_json(&simulator.url(&format!("/plain?{query}")), &[]).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["code"], 400);
    }
}

#[tokio::test]
async fn the_second_demo_partner_serves_customers_products_and_figures_of_its_own() {
    use super::demo_partner::{COMMERCIAL_USAGE_PATH, CUSTOMERS_PATH, subscribed_skus_path};
    use super::demo_subscriptions::subscriptions_path;
    use crate::sources::license_usage::LicenseUsageSource;
    let start = |partner: DemoPartner| async move {
        Simulator::builder()
            .datasets(datasets::demo_for(partner.figures()))
            .datasets(demo_paths::datasets(&partner))
            .start()
            .await
            .expect("starts")
    };
    let contoso = start(DemoPartner::contoso()).await;
    let fabrikam = start(DemoPartner::fabrikam()).await;
    let listed = |simulator: &Simulator| {
        let url = simulator.url(&format!("{CUSTOMERS_PATH}?size=100"));
        async move {
            let (status, body) = get_json(&url, &[]).await;
            assert_eq!(status, 200, "{body}");
            body["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|item| item["id"].as_str().expect("id").to_owned())
                .collect::<std::collections::BTreeSet<String>>()
        }
    };
    let (ours, theirs) = (listed(&fabrikam).await, listed(&contoso).await);
    assert_eq!(ours.len(), DemoPartner::fabrikam().customers().len());
    assert!(ours.is_disjoint(&theirs), "customers of its own");
    for customer in DemoPartner::fabrikam().customers() {
        for path in [
            subscribed_skus_path(&customer.id),
            subscriptions_path(&customer.id),
        ] {
            let (status, body) = get_json(&fabrikam.url(&path), &[]).await;
            assert_eq!(status, 200, "{}: none refused: {body}", customer.name);
            assert!(
                !body["items"].as_array().expect("items").is_empty(),
                "{path}"
            );
        }
        let (status, _) = get_json(&contoso.url(&subscribed_skus_path(&customer.id)), &[]).await;
        assert_eq!(status, 404, "{} is not the first partner's", customer.name);
    }
    // Products and workloads of its own: no dashboard join on product or
    // workload meets the same one from both partners.
    let (ours, _) = page_by_skip(&fabrikam, COMMERCIAL_USAGE_PATH).await;
    let (theirs, _) = page_by_skip(&contoso, COMMERCIAL_USAGE_PATH).await;
    assert!(!ours.is_empty());
    for field in ["productId", "workloadCode"] {
        let values = |rows: &[serde_json::Value]| -> std::collections::BTreeSet<String> {
            rows.iter()
                .map(|row| row[field].as_str().expect(field).to_owned())
                .collect()
        };
        assert!(values(&ours).is_disjoint(&values(&theirs)), "{field}");
    }
    // The same documented series, moving differently.
    let (status, ours) = get_json(&fabrikam.url(LicenseUsageSource::PATH), &[]).await;
    assert_eq!(status, 200);
    let (_, theirs) = get_json(&contoso.url(LicenseUsageSource::PATH), &[]).await;
    let series = |body: &serde_json::Value| -> Vec<(String, String)> {
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|item| {
                (
                    item["workloadName"].as_str().expect("workload").to_owned(),
                    item["serviceName"].as_str().expect("service").to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(series(&ours), series(&theirs));
}
