//! What the exporter logs about a poll: failures carry Partner Center's
//! request identifiers and the reason, skipped items are named, and the
//! access token appears nowhere.

use crate::common;

use std::time::Duration;

use common::{CapturedLogs, RunningExporter, Scrape, TEST_TOKEN, collection, item};
use wiremock::ResponseTemplate;

#[tokio::test]
async fn failures_and_skipped_items_are_logged_without_the_token() {
    let Some(captured) = CapturedLogs::in_own_process(
        "logging::failures_and_skipped_items_are_logged_without_the_token",
    ) else {
        return;
    };

    let mut unusable = item("Broken", "o365", "reseller", 0.0, "2024-05-01T00:00:00Z");
    unusable["proratedLicensesUsagePercent"] = serde_json::json!(null);
    let upstream = common::upstream_answering_first_then(
        ResponseTemplate::new(200).set_body_json(collection(
            vec![
                item("Exchange", "o365", "reseller", 1.0, "2024-05-01T00:00:00Z"),
                unusable,
            ],
            None,
        )),
        ResponseTemplate::new(503)
            .insert_header("MS-RequestId", "0f9e8d7c-0000-4000-8000-000000000001")
            .insert_header("MS-CorrelationId", "0f9e8d7c-0000-4000-8000-000000000002")
            .insert_header("MS-CV", "cv.vector.1")
            .insert_header("MS-ServerId", "server-7")
            .set_body_json(serde_json::json!({"code": 3000, "description": "Backend unavailable"})),
    )
    .await;

    let exporter = RunningExporter::start(&upstream.uri(), Duration::from_millis(100)).await;
    exporter.until_poll_errors("http", 1.0).await;
    exporter.stop().await.expect("clean stop");

    let logs = captured.text();
    let failure = logs
        .lines()
        .find(|line| line.contains("poll failed"))
        .unwrap_or_else(|| panic!("no failure line in:\n{logs}"));
    for expected in [
        "level=warn",
        "reason=http",
        "ms_request_id=0f9e8d7c-0000-4000-8000-000000000001",
        "ms_correlation_id=0f9e8d7c-0000-4000-8000-000000000002",
        "ms_cv=cv.vector.1",
        "ms_server_id=server-7",
        "Backend unavailable",
        "HTTP 503",
    ] {
        assert!(
            failure.contains(expected),
            "{expected:?} missing from: {failure}"
        );
    }
    let skipped = logs
        .lines()
        .find(|line| line.contains("skipped a license usage item"))
        .unwrap_or_else(|| panic!("no skipped line in:\n{logs}"));
    assert!(skipped.contains("index=1"), "{skipped}");
    assert!(
        skipped.contains("proratedLicensesUsagePercent"),
        "{skipped}"
    );
    assert!(logs.contains("poll succeeded"), "{logs}");
    assert!(
        !logs.contains(TEST_TOKEN),
        "the access token leaked into the logs:\n{logs}"
    );
}
