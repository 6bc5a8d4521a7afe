//! Fuzz target: any bytes as a Partner Center answer, through decoding, the
//! snapshot and the full `/metrics` rendering, which must never panic and
//! must always give UTF-8 with one line per series and every decoded item.
//!
//! From the repository root, with the stable toolchain:
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run decode_usage_page -- -dict=fuzz/decode_usage_page.dict`
//! (`.ci/run` runs it for a minute). A crash leaves its input in
//! `fuzz/artifacts/decode_usage_page/`; replay it with
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run decode_usage_page <that file>`.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use partner_center_exporter::metrics::ExporterMetrics;
use partner_center_exporter::partner_center::model::decode_usage_page;
use partner_center_exporter::snapshot::Snapshot;

/// The exporter's own metrics, made once: making them per input would
/// register a new process collector every time.
fn exporter_metrics() -> &'static ExporterMetrics {
    static METRICS: OnceLock<ExporterMetrics> = OnceLock::new();
    METRICS.get_or_init(|| ExporterMetrics::new().expect("the exporter's metrics register"))
}

fuzz_target!(|body: &[u8]| {
    let page = match decode_usage_page(body) {
        Ok(page) => page,
        Err(err) => {
            // Failures are logged and shown on the landing page.
            let message = err.to_string();
            assert!(
                !message.is_empty() && message.len() < 512 && !message.contains('\n'),
                "not one bounded line: {message:?}"
            );
            return;
        }
    };
    assert!(
        page.skipped
            .windows(2)
            .all(|pair| pair[0].index < pair[1].index),
        "skipped items out of order: {:?}",
        page.skipped
    );
    let decoded = page.items.len();
    let snapshot = Snapshot::from_items(page.items.iter().cloned());
    assert_eq!(decoded, snapshot.series().len() + snapshot.duplicates());
    for item in &page.items {
        assert!(
            item.prorated_percent.is_finite(),
            "a non-finite percent is served: {item:?}"
        );
    }

    // Two families of one line per series, each after its HELP and TYPE:
    // a label value that broke out of its quotes would add lines.
    let exposition = snapshot.exposition();
    let series = snapshot.series().len();
    let expected_lines = if series == 0 { 0 } else { 2 * (series + 2) };
    assert_eq!(exposition.lines().count(), expected_lines, "{exposition}");
    let samples = exposition.lines().filter(|line| !line.starts_with('#'));
    for line in samples {
        assert!(
            line.starts_with("partner_center_license_usage_prorated_percent{channel=\"")
                || line.starts_with(
                    "partner_center_license_usage_processed_timestamp_seconds{channel=\""
                ),
            "unexpected line {line:?}"
        );
        let value = line.rsplit_once("} ").map(|(_, value)| value);
        assert!(
            value.is_some_and(|value| value.parse::<f64>().is_ok_and(f64::is_finite)),
            "no finite value in {line:?}"
        );
    }
    // Every decoded item is among the rendered series.
    for item in &page.items {
        let escaped = |value: &str| {
            value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        let labels = format!(
            "{{channel=\"{}\",service=\"{}\",workload=\"{}\"}} ",
            escaped(&item.channel),
            escaped(&item.service),
            escaped(&item.workload)
        );
        assert!(
            exposition.contains(&labels),
            "{item:?} missing in {exposition}"
        );
    }

    let body = exporter_metrics().render(exposition);
    let text = String::from_utf8(body).expect("/metrics is UTF-8");
    assert!(
        text.ends_with(exposition),
        "the license series end /metrics"
    );
});
