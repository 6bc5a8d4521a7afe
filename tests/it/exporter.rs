//! The exporter end to end against a fake Partner Center on 127.0.0.1:
//! headers sent, paging, failures, snapshot replacement, readiness,
//! the HTTP endpoints and graceful shutdown.

use crate::common;

use std::collections::BTreeSet;
use std::io::Read;
use std::time::Duration;

use common::{
    FIXTURE, RunningExporter, Scrape, TEST_TOKEN, WAIT, collection, item, test_config, wait_for,
};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const USAGE_PATH: &str = "/v1/analytics/licenses/usage";
const PERCENT: &str = "partner_center_license_usage_prorated_percent";
const PROCESSED: &str = "partner_center_license_usage_processed_timestamp_seconds";
/// Fast polling for tests that need several polls.
const FAST: Duration = Duration::from_millis(200);
/// An interval that never comes round during a test: one poll only.
const ONCE: Duration = Duration::from_secs(3600);

fn labels<'a>(workload: &'a str, service: &'a str) -> [(&'static str, &'a str); 3] {
    [
        ("channel", "reseller"),
        ("service", service),
        ("workload", workload),
    ]
}

async fn upstream_serving(body: serde_json::Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    server
}

fn usage_requests(requests: &[Request]) -> Vec<&Request> {
    requests
        .iter()
        .filter(|r| r.url.path() == USAGE_PATH)
        .collect()
}

fn header_of<'a>(request: &'a Request, name: &str) -> &'a str {
    request
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("request lacks {name}"))
        .to_str()
        .expect("ASCII header")
}

#[tokio::test]
async fn documented_example_is_served_with_every_label_set() {
    let fixture: serde_json::Value = serde_json::from_str(FIXTURE).expect("fixture");
    let upstream = upstream_serving(fixture).await;
    let exporter = RunningExporter::start(&upstream.uri(), ONCE).await;
    let metrics = exporter.until_up().await;
    let duration = metrics
        .value(
            "partner_center_poll_duration_seconds",
            &[("source", "license_usage")],
        )
        .expect("poll duration");
    assert!(duration > 0.0 && duration < 10.0, "{duration}");

    let series: BTreeSet<(String, String, String)> = metrics
        .family(PERCENT)
        .iter()
        .map(|s| {
            (
                s.labels["workload"].clone(),
                s.labels["service"].clone(),
                s.labels["channel"].clone(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = [
        ("Microsoft Dynamics CRM", "crm"),
        ("SharePoint", "crm"),
        ("Exchange", "o365"),
        ("SharePoint", "o365"),
        ("Skype For Business", "o365"),
    ]
    .iter()
    .map(|(w, s)| ((*w).to_owned(), (*s).to_owned(), "reseller".to_owned()))
    .collect();
    assert_eq!(series, expected);
    assert_eq!(
        metrics.value(PERCENT, &labels("Exchange", "o365")),
        Some(0.0)
    );
    // 2017-03-09T00:00:00+00:00 and 2017-03-10T00:00:00+00:00
    assert_eq!(
        metrics.value(PROCESSED, &labels("Exchange", "o365")),
        Some(1_489_017_600.0)
    );
    assert_eq!(
        metrics.value(PROCESSED, &labels("SharePoint", "crm")),
        Some(1_489_104_000.0)
    );
    assert_eq!(
        metrics.types.get(PERCENT).map(String::as_str),
        Some("gauge")
    );
    assert_eq!(
        metrics.value(
            "partner_center_items_skipped_total",
            &[("source", "license_usage")]
        ),
        Some(0.0)
    );
    let last_success = metrics
        .value(
            "partner_center_last_success_timestamp_seconds",
            &[("source", "license_usage")],
        )
        .expect("last success");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!((now - last_success).abs() < 60.0, "{last_success} vs {now}");
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn requests_carry_the_partner_center_headers() {
    let upstream = upstream_serving(collection(vec![], None)).await;
    let exporter = RunningExporter::start(&upstream.uri(), FAST).await;
    wait_for(WAIT, "two polls", || async {
        usage_requests(&upstream.received_requests().await.unwrap_or_default()).len() >= 2
    })
    .await;
    let requests = upstream.received_requests().await.expect("recorded");
    let requests = usage_requests(&requests);
    for request in &requests {
        assert_eq!(
            header_of(request, "authorization"),
            format!("Bearer {TEST_TOKEN}")
        );
        assert_eq!(header_of(request, "accept"), "application/json");
        assert_eq!(
            header_of(request, "ms-partnercenter-application"),
            "partner-center-exporter"
        );
        assert_eq!(header_of(request, "x-locale"), "en-US");
        uuid::Uuid::parse_str(header_of(request, "ms-requestid")).expect("MS-RequestId is a GUID");
        uuid::Uuid::parse_str(header_of(request, "ms-correlationid"))
            .expect("MS-CorrelationId is a GUID");
    }
    assert_ne!(
        header_of(requests[0], "ms-requestid"),
        header_of(requests[1], "ms-requestid"),
        "a fresh MS-RequestId per request"
    );
    assert_ne!(
        header_of(requests[0], "ms-correlationid"),
        header_of(requests[1], "ms-correlationid"),
        "a fresh MS-CorrelationId per poll"
    );
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn pages_are_followed_through_links_next_with_their_headers() {
    let upstream = MockServer::start().await;
    let page = |n: u32| {
        item(
            &format!("Workload {n}"),
            "o365",
            "reseller",
            f64::from(n),
            "2024-05-01T00:00:00Z",
        )
    };
    // Page 3 first so the more specific matchers win over page 1's.
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .and(query_param("seek", "3"))
        .and(header("MS-ContinuationToken", "token-3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(collection(vec![page(3)], None)))
        .with_priority(1)
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .and(query_param("seek", "2"))
        .and(header("MS-ContinuationToken", "token-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(collection(
            vec![page(2)],
            // Relative and without /v1, as the SDK tolerates.
            Some(serde_json::json!({
                "uri": "analytics/licenses/usage?seek=3",
                "method": "GET",
                "headers": [{"key": "MS-ContinuationToken", "value": "token-3"}]
            })),
        )))
        .with_priority(1)
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(collection(
            vec![page(1)],
            Some(serde_json::json!({
                "uri": "/v1/analytics/licenses/usage?seek=2",
                "method": "GET",
                "headers": [{"key": "MS-ContinuationToken", "value": "token-2"}]
            })),
        )))
        .with_priority(2)
        .mount(&upstream)
        .await;

    let exporter = RunningExporter::start(&upstream.uri(), ONCE).await;
    let metrics = exporter.until_up().await;
    for n in 1..=3 {
        assert_eq!(
            metrics.value(PERCENT, &labels(&format!("Workload {n}"), "o365")),
            Some(f64::from(n)),
            "page {n} is published"
        );
    }
    let requests = upstream.received_requests().await.expect("recorded");
    let requests = usage_requests(&requests);
    assert_eq!(requests.len(), 3);
    let correlation: BTreeSet<&str> = requests
        .iter()
        .map(|r| header_of(r, "ms-correlationid"))
        .collect();
    assert_eq!(correlation.len(), 1, "one MS-CorrelationId per poll");
    let request_ids: BTreeSet<&str> = requests
        .iter()
        .map(|r| header_of(r, "ms-requestid"))
        .collect();
    assert_eq!(request_ids.len(), 3, "a fresh MS-RequestId per request");
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_collection_longer_than_the_page_limit_fails_instead_of_truncating() {
    let upstream = MockServer::start().await;
    // Every page points to a further, distinct page.
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .respond_with(|request: &Request| {
            let seek: u32 = request
                .url
                .query_pairs()
                .find(|(k, _)| k == "seek")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(1);
            ResponseTemplate::new(200).set_body_json(collection(
                vec![item("Exchange", "o365", "reseller", 1.0, "2024-05-01T00:00:00Z")],
                Some(serde_json::json!({ "uri": format!("/v1/analytics/licenses/usage?seek={}", seek + 1) })),
            ))
        })
        .mount(&upstream)
        .await;
    let (mut config, dir) = test_config(&upstream.uri(), ONCE);
    config.partner_center.max_pages = 3;
    let exporter = RunningExporter::start_with(config, dir).await;
    let metrics = exporter.until_poll_errors("paging", 1.0).await;
    assert!(
        metrics.family(PERCENT).is_empty(),
        "nothing truncated is published"
    );
    assert_eq!(
        usage_requests(&upstream.received_requests().await.expect("recorded")).len(),
        3
    );
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_links_next_loop_fails_the_poll() {
    let upstream = upstream_serving(collection(
        vec![item(
            "Exchange",
            "o365",
            "reseller",
            1.0,
            "2024-05-01T00:00:00Z",
        )],
        Some(serde_json::json!({ "uri": "/v1/analytics/licenses/usage?seek=again" })),
    ))
    .await;
    let exporter = RunningExporter::start(&upstream.uri(), ONCE).await;
    exporter.until_poll_errors("paging", 1.0).await;
    assert_eq!(
        usage_requests(&upstream.received_requests().await.expect("recorded")).len(),
        2
    );
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_failed_poll_keeps_the_last_values_with_up_zero() {
    let upstream = common::upstream_answering_first_then(
        ResponseTemplate::new(200).set_body_json(collection(
            vec![item(
                "Exchange",
                "o365",
                "reseller",
                42.5,
                "2024-05-01T00:00:00Z",
            )],
            None,
        )),
        ResponseTemplate::new(500)
            .insert_header("MS-RequestId", "11111111-2222-3333-4444-555555555555")
            .insert_header("MS-CV", "abc.1")
            .set_body_json(serde_json::json!({
                "code": 20002,
                "description": "Service <b>unavailable</b>",
                "data": [],
                "source": "PartnerFD"
            })),
    )
    .await;

    let exporter = RunningExporter::start(&upstream.uri(), FAST).await;
    let metrics = exporter.until_poll_errors("http", 2.0).await;
    assert_eq!(
        metrics.value(PERCENT, &labels("Exchange", "o365")),
        Some(42.5)
    );
    let last_success = metrics
        .value(
            "partner_center_last_success_timestamp_seconds",
            &[("source", "license_usage")],
        )
        .expect("last success");
    assert!(last_success > 0.0, "the one success is remembered");
    let later = exporter.until_poll_errors("http", 3.0).await;
    assert_eq!(
        later.value(
            "partner_center_last_success_timestamp_seconds",
            &[("source", "license_usage")]
        ),
        Some(last_success),
        "failures do not move the last success"
    );
    assert_eq!(
        common::get(&exporter.url("/readyz")).await.status(),
        200,
        "still ready: there is data to serve"
    );
    let page = exporter.landing_page().await;
    assert!(
        page.contains("failed: Partner Center answered HTTP 500: code 20002: Service &lt;b&gt;unavailable&lt;/b&gt;"),
        "landing page shows the failure, escaped:\n{page}"
    );
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn failures_are_counted_by_reason() {
    let cases = [
        (ResponseTemplate::new(401).set_body_json(serde_json::json!({"code": 900421, "description": "MFA required"})), "auth"),
        (ResponseTemplate::new(403).set_body_string(""), "auth"),
        (
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "57")
                .set_body_json(serde_json::json!({"statusCode": 429, "message": "Rate limit is exceeded. Try again in 57 seconds."})),
            "throttled",
        ),
        (ResponseTemplate::new(404).set_body_string("not here"), "http"),
        (ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"), "decode"),
        (ResponseTemplate::new(200).set_body_json(serde_json::json!({"items": "nope"})), "decode"),
    ];
    for (response, reason) in cases {
        let upstream = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(USAGE_PATH))
            .respond_with(response)
            .mount(&upstream)
            .await;
        let exporter = RunningExporter::start(&upstream.uri(), ONCE).await;
        let metrics = exporter.until_poll_errors(reason, 1.0).await;
        let total: f64 = metrics
            .family("partner_center_poll_errors_total")
            .iter()
            .map(|s| s.value)
            .sum();
        assert_eq!(total, 1.0, "only {reason} counted:\n{}", metrics.text);
        exporter.stop().await.expect("clean stop");
    }
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_network_error() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let exporter = RunningExporter::start(&format!("http://127.0.0.1:{port}"), ONCE).await;
    exporter.until_poll_errors("network", 1.0).await;
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_slow_upstream_times_out() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&upstream)
        .await;
    let (mut config, dir) = test_config(&upstream.uri(), ONCE);
    config.partner_center.request_timeout = Duration::from_millis(300);
    let exporter = RunningExporter::start_with(config, dir).await;
    exporter.until_poll_errors("timeout", 1.0).await;
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_vanished_series_disappears() {
    use partner_center_exporter::simulator::{Simulator, Step};
    let upstream = Simulator::scripted(vec![], Step::json(200, FIXTURE))
        .await
        .expect("the simulated Partner Center starts");
    let exporter = RunningExporter::start(upstream.base_url(), FAST).await;
    exporter
        .scrape_until(WAIT, |m| m.family(PERCENT).len() == 5)
        .await;
    // Switched only now, so the five series are seen first however slow the machine.
    let one_series = collection(
        vec![item(
            "SharePoint",
            "o365",
            "reseller",
            7.0,
            "2017-03-11T00:00:00+00:00",
        )],
        None,
    );
    upstream.replace(vec![], Step::json(200, &one_series.to_string()));
    let metrics = exporter
        .scrape_until(WAIT, |m| m.family(PERCENT).len() == 1)
        .await;
    assert_eq!(
        metrics.value(PERCENT, &labels("SharePoint", "o365")),
        Some(7.0)
    );
    assert_eq!(metrics.value(PERCENT, &labels("Exchange", "o365")), None);
    assert_eq!(metrics.family(PROCESSED).len(), 1, "both families shrink");
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn skipped_duplicate_and_hostile_items() {
    let mut bad_percent = item("Broken", "o365", "reseller", 0.0, "2024-05-01T00:00:00Z");
    bad_percent["proratedLicensesUsagePercent"] = serde_json::json!("n/a");
    let mut no_channel = item("NoChannel", "o365", "reseller", 1.0, "2024-05-01T00:00:00Z");
    no_channel
        .as_object_mut()
        .expect("object")
        .remove("channel");
    let tricky = "Sk\"ype\\ für\nBusiness";
    let body = collection(
        vec![
            item("Exchange", "o365", "reseller", 10.0, "2024-05-01T00:00:00Z"),
            item("Exchange", "o365", "reseller", 20.0, "2024-05-02T00:00:00"),
            item(
                "Exchange",
                "o365",
                "reseller",
                5.0,
                "2024-04-30T00:00:00.123+02:00",
            ),
            bad_percent,
            no_channel,
            item(tricky, "o365", "reseller", 33.3, "2024-05-01T00:00:00Z"),
        ],
        None,
    );
    let upstream = upstream_serving(body).await;
    let exporter = RunningExporter::start(&upstream.uri(), ONCE).await;
    let metrics = exporter.until_up().await;
    assert_eq!(
        metrics.value(
            "partner_center_items_skipped_total",
            &[("source", "license_usage")]
        ),
        Some(2.0)
    );
    assert_eq!(
        metrics.value(PERCENT, &labels("Exchange", "o365")),
        Some(20.0),
        "newest wins"
    );
    assert_eq!(
        metrics.value(PROCESSED, &labels("Exchange", "o365")),
        Some(1_714_608_000.0),
        "offset-less date read as UTC"
    );
    assert_eq!(
        metrics.value(PERCENT, &labels(tricky, "o365")),
        Some(33.3),
        "escaped and read back"
    );
    assert_eq!(metrics.family(PERCENT).len(), 2);
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn readiness_waits_for_the_first_successful_poll() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(FIXTURE, "application/json")
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&upstream)
        .await;
    let exporter = RunningExporter::start(&upstream.uri(), ONCE).await;
    let early = common::get(&exporter.url("/readyz")).await;
    assert_eq!(early.status(), 503);
    assert_eq!(common::get(&exporter.url("/healthz")).await.status(), 200);
    let metrics = exporter.scrape().await;
    assert!(
        metrics.contains("partner_center_up{source=\"license_usage\"} 0"),
        "no poll finished yet:\n{metrics}"
    );
    wait_for(WAIT, "/readyz to turn 200", || async {
        common::http()
            .get(exporter.url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn the_token_file_is_reread_before_every_poll() {
    let upstream = upstream_serving(collection(vec![], None)).await;
    let exporter = RunningExporter::start(&upstream.uri(), FAST).await;
    wait_for(WAIT, "a first poll", || async {
        !usage_requests(&upstream.received_requests().await.unwrap_or_default()).is_empty()
    })
    .await;
    std::fs::write(&exporter.token_file, "rotated-token\n").expect("rewrite token");
    wait_for(WAIT, "a poll with the new token", || async {
        upstream
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .any(|r| {
                r.headers
                    .get("authorization")
                    .is_some_and(|v| v == "Bearer rotated-token")
            })
    })
    .await;
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_missing_token_file_fails_the_poll_as_auth() {
    let upstream = upstream_serving(collection(vec![], None)).await;
    let (config, dir) = test_config(&upstream.uri(), ONCE);
    std::fs::remove_file(config.auth.bearer_token_file.as_ref().expect("path")).expect("remove");
    let exporter = RunningExporter::start_with(config, dir).await;
    exporter.until_poll_errors("auth", 1.0).await;
    assert!(usage_requests(&upstream.received_requests().await.expect("recorded")).is_empty());
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn endpoints_methods_gzip_and_head() {
    let upstream = upstream_serving(serde_json::from_str(FIXTURE).expect("fixture")).await;
    let exporter = RunningExporter::start(&upstream.uri(), ONCE).await;
    let plain = exporter.until_up().await;
    let client = common::http();

    let gzipped = client
        .get(exporter.url("/metrics"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .expect("gzip scrape");
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let compressed = gzipped.bytes().await.expect("body");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut text)
        .expect("valid gzip");
    let unzipped = common::Exposition::parse(&text);
    assert_eq!(unzipped.family(PERCENT), plain.family(PERCENT));

    // A raw request, because HTTP clients never read a body after HEAD
    // and so could not tell whether the server sent one.
    let head = raw_http(
        exporter.address,
        "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head_headers, head_body) = head.split_once("\r\n\r\n").expect("header end");
    assert!(head_headers.starts_with("HTTP/1.1 200"), "{head_headers}");
    assert!(
        head_headers.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head_headers}"
    );
    assert!(head_body.is_empty(), "HEAD has no body: {head_body:?}");

    let post = client
        .post(exporter.url("/metrics"))
        .send()
        .await
        .expect("POST");
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    assert_eq!(
        client
            .delete(exporter.url("/readyz"))
            .send()
            .await
            .expect("DELETE")
            .status(),
        405
    );
    assert_eq!(common::get(&exporter.url("/nothing")).await.status(), 404);

    let landing = common::get(&exporter.url("/")).await;
    assert_eq!(
        landing.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let html = landing.text().await.expect("html");
    assert!(html.contains("<a href=\"/metrics\">"), "{html}");
    assert!(html.contains(env!("CARGO_PKG_VERSION")), "{html}");
    assert!(html.contains("succeeded, 5 series"), "{html}");
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn graceful_shutdown_finishes_and_closes_the_listener() {
    let upstream = upstream_serving(collection(vec![], None)).await;
    let exporter = RunningExporter::start(&upstream.uri(), FAST).await;
    let address = exporter.address;
    exporter.until_up().await;
    // A keep-alive connection that is idle when the stop comes must not hold it up.
    let client = common::http();
    client
        .get(exporter.url("/healthz"))
        .send()
        .await
        .expect("keep-alive request");
    let stopped_at = std::time::Instant::now();
    exporter.stop().await.expect("clean stop");
    assert!(
        stopped_at.elapsed() < Duration::from_secs(5),
        "idle connections are closed at once, not after the grace period"
    );
    let polls_after = usage_requests(&upstream.received_requests().await.expect("recorded")).len();
    tokio::time::sleep(FAST * 3).await;
    assert_eq!(
        usage_requests(&upstream.received_requests().await.expect("recorded")).len(),
        polls_after,
        "polling stopped"
    );
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn a_custom_telemetry_path_replaces_metrics() {
    let upstream = upstream_serving(collection(vec![], None)).await;
    let (config, dir) = test_config(&upstream.uri(), ONCE);
    let settings = partner_center_exporter::ServerSettings {
        telemetry_path: "/custom/metrics".to_owned(),
        ..common::test_server_settings()
    };
    let exporter = RunningExporter::start_with_settings(config, dir, settings).await;
    let custom = common::get(&exporter.url("/custom/metrics")).await;
    assert_eq!(custom.status(), 200);
    let body = custom.text().await.expect("body");
    common::Exposition::parse(&body);
    assert!(body.contains("partner_center_up"), "{body}");
    assert_eq!(common::get(&exporter.url("/metrics")).await.status(), 404);
    let landing = exporter.landing_page().await;
    assert!(
        landing.contains("<a href=\"/custom/metrics\">"),
        "{landing}"
    );
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed() {
    let upstream = upstream_serving(collection(vec![], None)).await;
    let (config, dir) = test_config(&upstream.uri(), ONCE);
    let settings = partner_center_exporter::ServerSettings {
        header_read_timeout: Duration::from_millis(300),
        ..common::test_server_settings()
    };
    let exporter = RunningExporter::start_with_settings(config, dir, settings).await;
    // Connects and never sends a byte: closed without an answer.
    let silent = raw_http(exporter.address, "").await;
    assert!(
        silent.is_empty() || silent.starts_with("HTTP/1.1 408"),
        "{silent:?}"
    );
    // One request on a keep-alive connection, then silence: the answer
    // arrives and the connection is closed afterwards.
    let idle = raw_http(exporter.address, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(idle.starts_with("HTTP/1.1 200"), "{idle}");
    exporter.stop().await.expect("clean stop");
}

/// Sends `request` as it is and reads the whole answer.
async fn raw_http(address: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .expect("read");
    String::from_utf8(answer).expect("UTF-8 answer")
}

#[tokio::test]
async fn a_poll_over_its_total_deadline_times_out() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&upstream)
        .await;
    let (mut config, dir) = test_config(&upstream.uri(), ONCE);
    // The request alone would wait 5 s; the poll as a whole may take 300 ms.
    config.poll.timeout = Duration::from_millis(300);
    let exporter = RunningExporter::start_with(config, dir).await;
    exporter.until_poll_errors("timeout", 1.0).await;
    let page = exporter.landing_page().await;
    assert!(
        page.contains("poll.timeout"),
        "the failure names the setting:\n{page}"
    );
    exporter.stop().await.expect("clean stop");
}

#[tokio::test]
async fn links_next_to_another_origin_or_with_foreign_headers_is_not_followed() {
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(collection(vec![], None)))
        .mount(&elsewhere)
        .await;
    let cases = [
        serde_json::json!({ "uri": format!("{}/v1/analytics/licenses/usage?seek=2", elsewhere.uri()) }),
        serde_json::json!({
            "uri": "/v1/analytics/licenses/usage?seek=2",
            "headers": [{"key": "Proxy-Authorization", "value": "Basic abc"}]
        }),
        serde_json::json!({
            "uri": "/v1/analytics/licenses/usage?seek=2",
            "headers": [{"key": "MS-CorrelationId", "value": "not-ours"}]
        }),
    ];
    for next in cases {
        let upstream = upstream_serving(collection(
            vec![item(
                "Exchange",
                "o365",
                "reseller",
                1.0,
                "2024-05-01T00:00:00Z",
            )],
            Some(next.clone()),
        ))
        .await;
        let exporter = RunningExporter::start(&upstream.uri(), ONCE).await;
        let metrics = exporter.until_poll_errors("paging", 1.0).await;
        assert!(metrics.family(PERCENT).is_empty(), "{next}");
        assert_eq!(
            usage_requests(&upstream.received_requests().await.expect("recorded")).len(),
            1,
            "the link is not followed: {next}"
        );
        exporter.stop().await.expect("clean stop");
    }
    assert!(
        elsewhere
            .received_requests()
            .await
            .expect("recorded")
            .is_empty(),
        "nothing, and so no token, went to the other origin"
    );
}

#[tokio::test]
async fn a_token_with_a_line_break_fails_as_auth_without_a_request() {
    let upstream = upstream_serving(collection(vec![], None)).await;
    let (config, dir) = test_config(&upstream.uri(), ONCE);
    std::fs::write(
        config.auth.bearer_token_file.as_ref().expect("path"),
        "first-half\nsecond-half\n",
    )
    .expect("write token");
    let exporter = RunningExporter::start_with(config, dir).await;
    exporter.until_poll_errors("auth", 1.0).await;
    assert!(usage_requests(&upstream.received_requests().await.expect("recorded")).is_empty());
    let page = exporter.landing_page().await;
    assert!(page.contains("line break"), "{page}");
    assert!(
        !page.contains("first-half"),
        "the token is not shown: {page}"
    );
    exporter.stop().await.expect("clean stop");
}

/// The `/metrics` body with and without gzip is the same text, sent as one
/// gzip member that any gzip reader takes whole; HEAD states the length of
/// what GET sends and sends nothing.
#[tokio::test]
async fn gzip_and_plain_scrapes_carry_the_same_text_and_head_its_length() {
    let upstream = upstream_serving(serde_json::from_str(FIXTURE).expect("fixture")).await;
    let exporter = RunningExporter::start(&upstream.uri(), ONCE).await;
    exporter.until_up().await;
    let client = common::http();
    let scrape = |gzip: bool| {
        let mut request = client.get(exporter.url("/metrics"));
        if gzip {
            request = request.header("Accept-Encoding", "gzip");
        }
        async move {
            let response = request.send().await.expect("scrape");
            assert_eq!(response.status(), 200);
            let encoding = response
                .headers()
                .get("content-encoding")
                .map(|value| value.to_str().expect("ASCII").to_owned());
            let length: usize = response.headers()["content-length"]
                .to_str()
                .expect("ASCII")
                .parse()
                .expect("a length");
            let body = response.bytes().await.expect("body");
            assert_eq!(body.len(), length);
            (encoding, body)
        }
    };
    let (plain_encoding, plain) = scrape(false).await;
    let (gzip_encoding, compressed) = scrape(true).await;
    assert_eq!(plain_encoding, None);
    assert_eq!(gzip_encoding.as_deref(), Some("gzip"));
    assert!(compressed.len() < plain.len(), "compressed is smaller");

    // One member: a reader that stops after the first sees the whole text,
    // and nothing follows it.
    let mut decoder = flate2::bufread::GzDecoder::new(&compressed[..]);
    let mut unzipped = Vec::new();
    decoder.read_to_end(&mut unzipped).expect("valid gzip");
    assert!(
        decoder.into_inner().is_empty(),
        "bytes after the gzip member"
    );
    let mut multi = Vec::new();
    flate2::read::MultiGzDecoder::new(&compressed[..])
        .read_to_end(&mut multi)
        .expect("valid gzip");
    assert_eq!(multi, unzipped);

    // The process metrics are read again once a second, so the two
    // scrapes may differ there; everything else is the same text.
    let without_process = |body: &[u8]| -> Vec<String> {
        String::from_utf8(body.to_vec())
            .expect("UTF-8")
            .lines()
            .filter(|line| {
                !line.starts_with("process_")
                    && !line.starts_with("# HELP process_")
                    && !line.starts_with("# TYPE process_")
            })
            .map(str::to_owned)
            .collect()
    };
    let plain_lines = without_process(&plain);
    assert!(
        plain_lines
            .iter()
            .any(|line| line.starts_with(PERCENT) && line.contains("Exchange")),
        "{plain_lines:#?}"
    );
    assert_eq!(without_process(&unzipped), plain_lines);
    common::promtool_check_metrics(&String::from_utf8(unzipped).expect("UTF-8"));

    for (accept, encoding) in [("identity", None), ("gzip", Some("gzip"))] {
        let head = raw_http(
            exporter.address,
            &format!(
                "HEAD /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: {accept}\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        let (head_headers, head_body) = head.split_once("\r\n\r\n").expect("header end");
        assert!(head_headers.starts_with("HTTP/1.1 200"), "{head_headers}");
        assert!(head_body.is_empty(), "HEAD has no body: {head_body:?}");
        let header = |name: &str| {
            head_headers
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{name}: ")))
                .map(str::to_owned)
        };
        assert_eq!(
            header("content-encoding").as_deref(),
            encoding,
            "{head_headers}"
        );
        let length: usize = header("content-length")
            .unwrap_or_else(|| panic!("no content-length: {head_headers}"))
            .parse()
            .expect("a length");
        let (_, get_body) = scrape(encoding.is_some()).await;
        // Only the process metrics' digits may have changed in between.
        assert!(
            length.abs_diff(get_body.len()) < 64,
            "HEAD says {length}, GET sends {}",
            get_body.len()
        );
    }

    // The other pages alike: GET's headers and length, no body.
    for (path, expected) in [
        ("/healthz", "OK\n"),
        ("/readyz", "ready\nlicense_usage: up, "),
    ] {
        let get = common::get(&exporter.url(path)).await;
        let body = get.text().await.expect("body");
        assert!(body.starts_with(expected), "{path}: {body:?}");
        let head = raw_http(
            exporter.address,
            &format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        let (head_headers, head_body) = head.split_once("\r\n\r\n").expect("header end");
        assert!(head_headers.starts_with("HTTP/1.1 200"), "{head_headers}");
        assert!(
            head_headers.contains(&format!("content-length: {}", body.len())),
            "{path}: {head_headers}"
        );
        assert!(
            head_body.is_empty(),
            "{path}: HEAD has no body: {head_body:?}"
        );
    }
    exporter.stop().await.expect("clean stop");
}
