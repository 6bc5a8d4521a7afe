//! Upstream faults: retries and their `MS-RequestId`s, throttling and the
//! stretched interval, redirects, body limits, stale series, and broken or
//! hostile answers. In every case the exporter keeps serving a valid
//! `/metrics` with the last good values and says what went wrong.

use crate::common;

use std::time::Duration;

use common::{
    CapturedLogs, Exposition, FIXTURE, RunningExporter, Scrape, TEST_TOKEN, USAGE_PATH, WAIT,
    collection, item,
};
use partner_center_exporter::Config;
use partner_center_exporter::simulator::{Simulator, Step};

/// The documented example as a 200 answer.
fn fixture() -> Step {
    Step::json(200, FIXTURE)
}

/// A configuration for `upstream` that retries `max_retries` times with
/// short waits, polling once an hour unless a test says otherwise.
fn retrying_config(upstream: &Simulator, max_retries: u32) -> (Config, tempfile::TempDir) {
    let (mut config, dir) = common::test_config(upstream.base_url(), Duration::from_secs(3600));
    config.partner_center.max_retries = max_retries;
    config.partner_center.retry_backoff = Duration::from_millis(20);
    config.partner_center.request_timeout = Duration::from_millis(500);
    config.partner_center.max_retry_after = Duration::from_secs(5);
    (config, dir)
}

fn retries(metrics: &Exposition, reason: &str) -> f64 {
    metrics
        .value(
            "partner_center_request_retries_total",
            &[("reason", reason)],
        )
        .unwrap_or_else(|| panic!("no retries_total{{reason={reason}}}:\n{}", metrics.text))
}

fn exchange_percent(metrics: &Exposition) -> Option<f64> {
    metrics.value(
        "partner_center_license_usage_prorated_percent",
        &[
            ("workload", "Exchange"),
            ("service", "o365"),
            ("channel", "reseller"),
        ],
    )
}

/// A collection with one Exchange item at `percent`.
fn exchange_at(percent: f64) -> String {
    collection(
        vec![item(
            "Exchange",
            "o365",
            "reseller",
            percent,
            "2024-05-01T00:00:00Z",
        )],
        None,
    )
    .to_string()
}

#[tokio::test]
async fn transient_failures_are_retried_and_request_ids_follow_the_idempotency_rule() {
    let upstream = Simulator::scripted(
        vec![
            Step::Hang,
            Step::json(
                503,
                r#"{"code": 3000, "description": "Backend unavailable"}"#,
            ),
            Step::Close,
            Step::json(500, "{}"),
        ],
        fixture(),
    )
    .await
    .expect("the simulated Partner Center starts");
    let (config, dir) = retrying_config(&upstream, 4);
    let exporter = RunningExporter::start_with(config, dir).await;
    let metrics = exporter.until_up().await;

    assert!(exchange_percent(&metrics).is_some(), "{}", metrics.text);
    assert_eq!(retries(&metrics, "timeout"), 1.0);
    assert_eq!(retries(&metrics, "http"), 2.0);
    assert_eq!(retries(&metrics, "network"), 1.0);
    assert_eq!(
        metrics.value(
            "partner_center_poll_errors_total",
            &[("source", "license_usage"), ("reason", "http")]
        ),
        Some(0.0)
    );

    let requests = upstream.received();
    assert_eq!(requests.len(), 5, "{requests:#?}");
    let ids: Vec<&str> = requests
        .iter()
        .map(|request| request.header("ms-requestid").expect("MS-RequestId"))
        .collect();
    assert_eq!(
        ids[0], ids[1],
        "after a timeout the same MS-RequestId is sent"
    );
    assert_ne!(
        ids[1], ids[2],
        "after an answer (503) the MS-RequestId is new"
    );
    assert_eq!(
        ids[2], ids[3],
        "a connection closed without an answer reuses it"
    );
    assert_ne!(
        ids[3], ids[4],
        "after an answer (500) the MS-RequestId is new"
    );
    let correlation: Vec<&str> = requests
        .iter()
        .map(|request| request.header("ms-correlationid").expect("correlation"))
        .collect();
    assert!(
        correlation.iter().all(|id| *id == correlation[0]),
        "one poll, one MS-CorrelationId: {correlation:?}"
    );
    for request in &requests {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {TEST_TOKEN}").as_str())
        );
    }
}

#[tokio::test]
async fn answers_that_would_fail_again_are_not_retried() {
    for (status, reason) in [
        (400, "http"),
        (403, "auth"),
        (404, "http"),
        (409, "http"),
        (501, "http"),
    ] {
        let upstream = Simulator::scripted(vec![], Step::json(status, "{}"))
            .await
            .expect("the simulated Partner Center starts");
        let (config, dir) = retrying_config(&upstream, 3);
        let exporter = RunningExporter::start_with(config, dir).await;
        let metrics = exporter.until_poll_errors(reason, 1.0).await;
        // Give a wrongly scheduled retry time to arrive.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            upstream.received().len(),
            1,
            "HTTP {status} must not be retried"
        );
        for reason in ["http", "throttled", "timeout", "network"] {
            assert_eq!(retries(&metrics, reason), 0.0, "HTTP {status}");
        }
    }
}

#[tokio::test]
async fn retries_stop_after_max_retries() {
    let upstream = Simulator::scripted(vec![], Step::json(502, "{}"))
        .await
        .expect("the simulated Partner Center starts");
    let (config, dir) = retrying_config(&upstream, 2);
    let exporter = RunningExporter::start_with(config, dir).await;
    let metrics = exporter.until_poll_errors("http", 1.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(upstream.received().len(), 3, "one try and two retries");
    assert_eq!(retries(&metrics, "http"), 2.0);
}

#[tokio::test]
async fn retries_stop_before_the_poll_deadline() {
    let upstream = Simulator::scripted(vec![], Step::json(503, "{}"))
        .await
        .expect("the simulated Partner Center starts");
    let (mut config, dir) = retrying_config(&upstream, 1000);
    config.partner_center.retry_backoff = Duration::from_millis(100);
    config.poll.timeout = Duration::from_secs(2);
    let exporter = RunningExporter::start_with(config, dir).await;
    // The poll fails with what Partner Center said, not as a timeout:
    // retrying stops when the next wait would not end before the deadline.
    exporter.until_poll_errors("http", 1.0).await;
    let metrics = Exposition::parse(&exporter.scrape().await);
    assert_eq!(
        metrics.value(
            "partner_center_poll_errors_total",
            &[("source", "license_usage"), ("reason", "timeout")]
        ),
        Some(0.0)
    );
    let requests = upstream.received().len();
    assert!(
        (3..100).contains(&requests),
        "backoff doubles, so a 2s deadline allows a handful of tries, not {requests}"
    );
}

#[tokio::test]
async fn throttling_waits_for_retry_after_then_succeeds_and_stretches_the_interval() {
    let Some(logs) = CapturedLogs::in_own_process(
        "resilience::throttling_waits_for_retry_after_then_succeeds_and_stretches_the_interval",
    ) else {
        return;
    };
    let upstream = Simulator::scripted(
        vec![Step::response(
            429,
            &[("Retry-After", "1"), ("Content-Type", "application/json")],
            br#"{"statusCode":429,"message":"Rate limit is exceeded. Try again in 1 seconds."}"#,
        )],
        fixture(),
    )
    .await
    .expect("the simulated Partner Center starts");
    let (mut config, dir) = retrying_config(&upstream, 3);
    config.poll.interval = Duration::from_secs(60);
    let exporter = RunningExporter::start_with(config, dir).await;
    // The interval is published right after the poll's outcome.
    let metrics = exporter
        .scrape_until(WAIT, |m| {
            m.value(
                "partner_center_poll_interval_seconds",
                &[("source", "license_usage")],
            ) == Some(120.0)
        })
        .await;
    assert_eq!(
        metrics.value("partner_center_up", &[("source", "license_usage")]),
        Some(1.0)
    );

    let requests = upstream.received();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].at.duration_since(requests[0].at);
    assert!(
        waited >= Duration::from_millis(900),
        "Retry-After: 1 was not obeyed: the retry came after {waited:?}"
    );
    assert_ne!(
        requests[0].header("ms-requestid"),
        requests[1].header("ms-requestid")
    );
    assert_eq!(retries(&metrics, "throttled"), 1.0);
    let first_request_id = requests[0].header("ms-requestid").expect("MS-RequestId");
    let line = logs.line_with(&["throttling", first_request_id]);
    assert!(
        line.contains("level=warn") && line.contains("Retry-After") && line.contains("retry=1"),
        "{line}"
    );
    // Only this test polls every minute, so only it can be told 2m.
    logs.line_with(&["level=warn", "polling less often", "next_poll_in=2m"]);
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_is_shortened_and_dates_are_understood() {
    let in_an_hour = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc2822();
    for retry_after in ["3600", in_an_hour.as_str()] {
        let upstream = Simulator::scripted(
            vec![Step::response(429, &[("Retry-After", retry_after)], b"")],
            fixture(),
        )
        .await
        .expect("the simulated Partner Center starts");
        let (mut config, dir) = retrying_config(&upstream, 3);
        config.partner_center.max_retry_after = Duration::from_millis(300);
        let exporter = RunningExporter::start_with(config, dir).await;
        exporter.until_up().await;
        let requests = upstream.received();
        let waited = requests[1].at.duration_since(requests[0].at);
        assert!(
            waited >= Duration::from_millis(250),
            "Retry-After {retry_after:?}: waited only {waited:?}"
        );
    }
}

#[tokio::test]
async fn persistent_throttling_fails_polls_as_throttled_and_backs_off_further() {
    let upstream = Simulator::scripted(vec![], Step::response(429, &[("Retry-After", "0")], b"{}"))
        .await
        .expect("the simulated Partner Center starts");
    let (mut config, dir) = retrying_config(&upstream, 1);
    config.poll.interval = Duration::from_millis(200);
    let exporter = RunningExporter::start_with(config, dir).await;
    let interval = |m: &Exposition| {
        m.value(
            "partner_center_poll_interval_seconds",
            &[("source", "license_usage")],
        )
    };
    // Doubled for each throttled poll in a row: 0.4 s, 0.8 s, then capped
    // at 8 times poll.interval.
    for expected in [0.4, 0.8, 1.6] {
        let metrics = exporter
            .scrape_until(WAIT, |m| interval(m) == Some(expected))
            .await;
        assert_eq!(
            metrics.value("partner_center_up", &[("source", "license_usage")]),
            Some(0.0)
        );
    }
    let metrics = exporter.until_poll_errors("throttled", 5.0).await;
    assert_eq!(interval(&metrics), Some(1.6), "never more than 8 times");
    assert_eq!(
        retries(&metrics, "throttled"),
        metrics
            .value(
                "partner_center_poll_errors_total",
                &[("source", "license_usage"), ("reason", "throttled")]
            )
            .expect("errors"),
        "one retry per failed poll"
    );

    // Once Partner Center lets the exporter through, the interval is back.
    upstream.replace(vec![], fixture());
    let metrics = exporter
        .scrape_until(WAIT, |m| interval(m) == Some(0.2))
        .await;
    assert_eq!(
        metrics.value("partner_center_up", &[("source", "license_usage")]),
        Some(1.0)
    );
}

#[tokio::test]
async fn redirects_never_carry_the_token_to_another_host_and_are_bounded() {
    let elsewhere = Simulator::scripted(vec![], fixture())
        .await
        .expect("the simulated Partner Center starts");
    let port = elsewhere
        .base_url()
        .rsplit(':')
        .next()
        .expect("port")
        .to_owned();
    // `localhost` is another host name than 127.0.0.1, on another port.
    let target = format!("http://localhost:{port}{USAGE_PATH}");
    let upstream = Simulator::scripted(
        vec![],
        Step::response(307, &[("Location", target.as_str())], b""),
    )
    .await
    .expect("the simulated Partner Center starts");
    let (config, dir) = retrying_config(&upstream, 0);
    let exporter = RunningExporter::start_with(config, dir).await;
    exporter.until_up().await;
    let redirected = elsewhere.received();
    assert_eq!(redirected.len(), 1);
    assert_eq!(
        redirected[0].header("authorization"),
        None,
        "the access token followed a redirect to another host"
    );
    assert_eq!(
        upstream.received()[0].header("authorization"),
        Some(format!("Bearer {TEST_TOKEN}").as_str())
    );

    // A redirect loop ends after a few hops as a failed poll.
    let looping = Simulator::scripted(vec![], Step::Close)
        .await
        .expect("the simulated Partner Center starts");
    let self_target = format!("{}{USAGE_PATH}", looping.base_url());
    looping.replace(
        vec![],
        Step::response(302, &[("Location", self_target.as_str())], b""),
    );
    let (config, dir) = retrying_config(&looping, 0);
    let exporter = RunningExporter::start_with(config, dir).await;
    exporter.until_poll_errors("network", 1.0).await;
    assert_eq!(
        looping.received().len(),
        6,
        "one request and five redirects"
    );
}

#[tokio::test]
async fn series_are_withdrawn_after_max_staleness_and_return_with_the_next_success() {
    let upstream = Simulator::scripted(vec![fixture()], Step::json(500, "{}"))
        .await
        .expect("the simulated Partner Center starts");
    let (mut config, dir) = retrying_config(&upstream, 0);
    config.poll.interval = Duration::from_millis(200);
    // Long enough that a slow machine still sees the failure before the
    // series are withdrawn, short enough to keep the test quick.
    config.poll.max_staleness = Some(Duration::from_secs(3));
    let exporter = RunningExporter::start_with(config, dir).await;
    let first = exporter.until_up().await;
    let last_success = first
        .value(
            "partner_center_last_success_timestamp_seconds",
            &[("source", "license_usage")],
        )
        .expect("last success");
    let failing = exporter.until_poll_errors("http", 1.0).await;
    assert!(
        exchange_percent(&failing).is_some(),
        "within max_staleness the last values are served"
    );
    let stale = exporter
        .scrape_until(WAIT, |m| {
            m.family("partner_center_license_usage_prorated_percent")
                .is_empty()
        })
        .await;
    assert!(
        stale
            .family("partner_center_license_usage_processed_timestamp_seconds")
            .is_empty()
    );
    assert_eq!(
        stale.value("partner_center_up", &[("source", "license_usage")]),
        Some(0.0)
    );
    assert_eq!(
        stale.value(
            "partner_center_last_success_timestamp_seconds",
            &[("source", "license_usage")]
        ),
        Some(last_success),
        "the last success stays visible"
    );
    assert!(exporter.landing_page().await.contains("withdrawn"));

    upstream.replace(vec![], fixture());
    let back = exporter.until_up().await;
    assert!(exchange_percent(&back).is_some(), "{}", back.text);
}

/// Broken answers that fail the poll: each keeps the previous values
/// served, `/metrics` valid, and counts the poll under `reason`.
#[tokio::test]
async fn broken_answers_fail_the_poll_and_keep_the_last_values() {
    let usage = exchange_at(42.0);
    let cases: Vec<(&str, Step, &str)> = vec![
        (
            "malformed JSON",
            Step::json(200, "{\"items\": [{"),
            "decode",
        ),
        ("truncated body", Step::truncated(&usage), "network"),
        (
            "wrong content type",
            Step::response(200, &[("Content-Type", "text/plain")], usage.as_bytes()),
            "decode",
        ),
        (
            "HTML error page with 200",
            Step::response(
                200,
                &[("Content-Type", "text/html")],
                b"<html><body>Service Unavailable</body></html>",
            ),
            "decode",
        ),
        (
            "HTML without a content type",
            Step::response(200, &[], b"<html><body>oops</body></html>"),
            "decode",
        ),
        (
            "items not an array",
            Step::json(200, r#"{"items": {"a": 1}}"#),
            "decode",
        ),
        (
            "items missing",
            Step::json(200, r#"{"totalCount": 0}"#),
            "decode",
        ),
        ("JSON null", Step::json(200, "null"), "decode"),
        (
            "NaN literal",
            Step::json(
                200,
                r#"{"items": [{"workloadName": "Exchange", "serviceName": "o365", "channel": "reseller", "proratedLicensesUsagePercent": NaN, "processedDateTime": "2024-05-01"}]}"#,
            ),
            "decode",
        ),
        (
            "invalid UTF-8",
            Step::json_bytes(b"{\"items\": [{\"workloadName\": \"Ex\xffchange\"}]}"),
            "decode",
        ),
        (
            "deep nesting",
            Step::json(
                200,
                &format!(
                    "{{\"items\": [], \"links\": {{\"next\": {}{}}}}}",
                    "[".repeat(100_000),
                    "]".repeat(100_000)
                ),
            ),
            "decode",
        ),
        ("endless body", Step::Endless, "decode"),
        (
            "a body that drips one byte a second",
            Step::drip(&usage, Duration::from_secs(1)),
            "timeout",
        ),
        ("no answer at all", Step::Hang, "timeout"),
        ("connection closed", Step::Close, "network"),
    ];
    for (case, step, reason) in cases {
        let upstream = Simulator::scripted(vec![Step::json(200, &exchange_at(7.0))], step)
            .await
            .expect("the simulated Partner Center starts");
        let (mut config, dir) = retrying_config(&upstream, 0);
        config.poll.interval = Duration::from_millis(100);
        config.partner_center.max_body_size = 1024 * 1024;
        let exporter = RunningExporter::start_with(config, dir).await;
        let metrics = exporter.until_poll_errors(reason, 1.0).await;
        assert_eq!(
            exchange_percent(&metrics),
            Some(7.0),
            "{case}: the last good value must stay served"
        );
        // Still answering, and still failing for the same reason.
        exporter.until_poll_errors(reason, 2.0).await;
        let status = exporter.landing_page().await;
        assert!(status.contains("failed"), "{case}: {status}");
        exporter.stop().await.expect("clean stop");
    }
}

/// Answers with some unusable items: the usable ones are published and
/// the rest counted as skipped.
#[tokio::test]
async fn unusable_items_are_skipped_and_the_rest_is_served() {
    let good = item("Exchange", "o365", "reseller", 42.0, "2024-05-01T00:00:00Z");
    let mut bad_items = Vec::new();
    for (field, value) in [
        ("proratedLicensesUsagePercent", serde_json::json!(null)),
        ("proratedLicensesUsagePercent", serde_json::json!("NaN")),
        (
            "proratedLicensesUsagePercent",
            serde_json::json!("Infinity"),
        ),
        ("proratedLicensesUsagePercent", serde_json::json!([1])),
        ("workloadName", serde_json::json!("")),
        ("workloadName", serde_json::json!(12)),
        ("serviceName", serde_json::json!(null)),
        ("processedDateTime", serde_json::json!("yesterday")),
        ("processedDateTime", serde_json::json!(true)),
    ] {
        let mut bad = item("Broken", "o365", "reseller", 1.0, "2024-05-01T00:00:00Z");
        bad[field] = value;
        bad_items.push(bad.to_string());
    }
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    bad_items.extend([
        "null".to_owned(),
        "\"text\"".to_owned(),
        // Numbers beyond f64, escapes that are no character, a label
        // nested thousands of levels deep: unusable, but only this item.
        r#"{"workloadName": "Huge", "serviceName": "o365", "channel": "reseller", "proratedLicensesUsagePercent": 1e400, "processedDateTime": "2024-05-01"}"#.to_owned(),
        r#"{"workloadName": "Lone\ud800", "serviceName": "o365", "channel": "reseller", "proratedLicensesUsagePercent": 1, "processedDateTime": "2024-05-01"}"#.to_owned(),
        format!(r#"{{"workloadName": {deep}, "serviceName": "o365", "channel": "reseller", "proratedLicensesUsagePercent": 1, "processedDateTime": "2024-05-01"}}"#),
    ]);
    let body = format!("{{\"items\": [{}, {}]}}", good, bad_items.join(", "));
    let upstream = Simulator::scripted(vec![], Step::json(200, &body))
        .await
        .expect("the simulated Partner Center starts");
    let (config, dir) = retrying_config(&upstream, 0);
    let exporter = RunningExporter::start_with(config, dir).await;
    let metrics = exporter.until_up().await;
    assert_eq!(exchange_percent(&metrics), Some(42.0));
    assert_eq!(
        metrics
            .family("partner_center_license_usage_prorated_percent")
            .len(),
        1,
        "{}",
        metrics.text
    );
    assert_eq!(
        metrics.value(
            "partner_center_items_skipped_total",
            &[("source", "license_usage")]
        ),
        Some(bad_items.len() as f64)
    );
}

/// Values outside 0–100 and labels with characters the exposition format
/// must escape are served exactly as received; the odd values are logged
/// once per series, not once per poll.
#[tokio::test]
async fn odd_values_and_labels_are_served_as_received_and_logged_once() {
    let Some(logs) = CapturedLogs::in_own_process(
        "resilience::odd_values_and_labels_are_served_as_received_and_logged_once",
    ) else {
        return;
    };
    let odd_labels = "Sky\"pe \\ für\nBusiness ☁";
    let body = collection(
        vec![
            item("Exchange", "o365", "reseller", -5.0, "2024-05-01T00:00:00Z"),
            item(
                "SharePoint",
                "o365",
                "reseller",
                250.0,
                "2024-05-01T00:00:00Z",
            ),
            item(
                odd_labels,
                odd_labels,
                odd_labels,
                50.0,
                "2024-05-01T00:00:00Z",
            ),
        ],
        None,
    )
    .to_string();
    let upstream = Simulator::scripted(vec![], Step::json(200, &body))
        .await
        .expect("the simulated Partner Center starts");
    let (mut config, dir) = retrying_config(&upstream, 0);
    config.poll.interval = Duration::from_millis(100);
    let exporter = RunningExporter::start_with(config, dir).await;
    upstream
        .wait_for_requests(4, WAIT)
        .await
        .expect("the requests arrive");
    let metrics = exporter.until_up().await;
    assert_eq!(exchange_percent(&metrics), Some(-5.0));
    assert_eq!(
        metrics.value(
            "partner_center_license_usage_prorated_percent",
            &[
                ("workload", odd_labels),
                ("service", odd_labels),
                ("channel", odd_labels)
            ]
        ),
        Some(50.0),
        "{}",
        metrics.text
    );
    exporter.stop().await.expect("clean stop");
    // Only this test sends percentages outside 0-100.
    let logs = logs.text();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("outside 0-100"))
        .collect();
    assert_eq!(
        warnings.len(),
        2,
        "one line per odd series, however many polls: {logs}"
    );
    assert!(
        warnings
            .iter()
            .any(|line| line.contains("SharePoint") && line.contains("percent=250"))
    );
}

#[tokio::test]
async fn a_million_items_are_decoded_and_an_oversized_body_is_refused() {
    // A million items that fold into three series keep /metrics small.
    let one = |workload: &str| {
        format!(
            r#"{{"workloadName":"{workload}","serviceName":"o365","channel":"reseller","proratedLicensesUsagePercent":12.5,"processedDateTime":"2024-05-01"}}"#
        )
    };
    let items: Vec<String> = (0..1_000_000)
        .map(|n| one(["Exchange", "SharePoint", "Teams"][n % 3]))
        .collect();
    let body = format!("{{\"items\":[{}]}}", items.join(","));
    drop(items);
    let size = body.len() as u64;
    let upstream = Simulator::scripted(vec![], Step::json(200, &body))
        .await
        .expect("the simulated Partner Center starts");
    let (mut config, dir) = retrying_config(&upstream, 0);
    config.partner_center.request_timeout = Duration::from_secs(60);
    config.poll.timeout = Duration::from_secs(120);
    config.partner_center.max_body_size = size + 1024;
    let exporter = RunningExporter::start_with(config, dir).await;
    let metrics = exporter
        .scrape_until(Duration::from_secs(120), |m| {
            m.value("partner_center_up", &[("source", "license_usage")]) == Some(1.0)
        })
        .await;
    assert_eq!(exchange_percent(&metrics), Some(12.5));
    assert_eq!(
        metrics
            .family("partner_center_license_usage_prorated_percent")
            .len(),
        3
    );
    exporter.stop().await.expect("clean stop");

    // The same answer over the configured limit fails as decode, whatever
    // its Content-Length says, before it is read whole.
    let (mut config, dir) = retrying_config(&upstream, 0);
    config.partner_center.max_body_size = size / 2;
    let exporter = RunningExporter::start_with(config, dir).await;
    exporter.until_poll_errors("decode", 1.0).await;
}

/// An HTTPS upstream with a self-signed certificate, served by `openssl
/// s_server`: the exporter refuses it. There is no setting to skip
/// certificate verification, so this is the only outcome.
#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let Some(openssl) = common::find_tool("openssl") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "openssl is required in CI (.ci/run installs it)"
        );
        eprintln!("SKIPPED: openssl is not installed; the TLS verification test did not run");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new(&openssl)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl req");
    assert!(made.status.success(), "{}", common::describe(&made));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let server = std::process::Command::new(&openssl)
        .args(["s_server", "-www", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start openssl s_server");
    let _server = common::ChildGuard(server);
    common::wait_for(WAIT, "openssl s_server to listen", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;

    let (config, dir) = common::test_config(
        &format!("https://127.0.0.1:{port}"),
        Duration::from_secs(3600),
    );
    let exporter = RunningExporter::start_with(config, dir).await;
    exporter.until_poll_errors("network", 1.0).await;
    let page = exporter.landing_page().await;
    assert!(
        page.to_lowercase().contains("certificate"),
        "the failure names the certificate:\n{page}"
    );
}

/// A poll whose answer is still arriving holds nothing the server needs:
/// scrapes, the landing page and readiness are answered with the last
/// poll's values meanwhile.
#[tokio::test]
async fn scrapes_are_answered_while_a_poll_is_still_arriving() {
    let next = exchange_at(9.0);
    // One byte every 200 ms: this answer takes over a minute to arrive,
    // far longer than the test; the exporter is stopped before it ends.
    let dripping = Step::drip(&next, Duration::from_millis(200));
    let upstream = Simulator::scripted(
        vec![Step::json(200, &exchange_at(7.0)), dripping],
        fixture(),
    )
    .await
    .expect("the simulated Partner Center starts");
    let (mut config, dir) = retrying_config(&upstream, 0);
    config.poll.interval = Duration::from_millis(300);
    config.poll.timeout = Duration::from_secs(600);
    config.partner_center.request_timeout = Duration::from_secs(600);
    let exporter = RunningExporter::start_with(config, dir).await;
    let first = exporter.until_up().await;
    assert_eq!(exchange_percent(&first), Some(7.0));

    // The second poll has sent its request and is reading the drip.
    upstream
        .wait_for_requests(2, WAIT)
        .await
        .expect("the requests arrive");
    for _ in 0..5 {
        let metrics = Exposition::parse(&exporter.scrape().await);
        assert_eq!(exchange_percent(&metrics), Some(7.0), "{}", metrics.text);
        assert_eq!(
            metrics.value("partner_center_up", &[("source", "license_usage")]),
            Some(1.0)
        );
        assert_eq!(
            metrics.value(
                "partner_center_last_success_timestamp_seconds",
                &[("source", "license_usage")]
            ),
            first.value(
                "partner_center_last_success_timestamp_seconds",
                &[("source", "license_usage")]
            ),
            "no second poll has finished"
        );
        let ready = common::get(&exporter.url("/readyz")).await;
        assert_eq!(ready.status(), 200);
    }
    assert_eq!(
        upstream.received().len(),
        2,
        "the second poll is still on its request"
    );
    exporter.stop().await.expect("clean stop");
}
