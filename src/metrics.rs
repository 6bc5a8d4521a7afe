//! Every metric the exporter publishes: names, help texts, and their rendering
//! in the Prometheus text exposition format.
//!
//! Two parts make up a scrape: the exporter's own metrics, kept in a private
//! [`Registry`] and gathered at scrape time, and the license usage series,
//! rendered once per snapshot by [`render_license_usage`].

use std::collections::BTreeMap;

use prometheus::proto::{Gauge as GaugeValue, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{
    Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::build_info;
use crate::snapshot::{SeriesKey, SeriesValue};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `reason` label values of `partner_center_poll_errors_total`. Fixed,
/// so the label set stays bounded and every series exists from the start.
pub const POLL_ERROR_REASONS: [&str; 7] = [
    "auth",
    "throttled",
    "http",
    "timeout",
    "network",
    "decode",
    "paging",
];

/// The `reason` label values of `partner_center_request_retries_total`:
/// what [`crate::partner_center::client::ClientError::retry_reason`] retries.
pub const RETRY_REASONS: [&str; 4] = ["throttled", "timeout", "network", "http"];

const PRORATED_PERCENT: &str = "partner_center_license_usage_prorated_percent";
const PRORATED_PERCENT_HELP: &str = "Prorated license usage per workload, service and channel: \
    proratedLicensesUsagePercent exactly as Partner Center reports it.";
const PROCESSED_TIMESTAMP: &str = "partner_center_license_usage_processed_timestamp_seconds";
const PROCESSED_TIMESTAMP_HELP: &str =
    "When Partner Center processed the usage figure (processedDateTime), in Unix seconds.";

/// The metrics of the App+User refresh-token method; registered only when
/// that method is configured, so a bearer-token set-up shows no token
/// expiry that alerts could misread.
#[derive(Clone)]
pub struct TokenMetrics {
    /// When the current access token expires.
    pub access_token_expiry_timestamp: Gauge,
    /// When a new refresh token was last stored durably.
    pub refresh_token_rotated_timestamp: Gauge,
    /// Rotated refresh tokens that could not be stored durably.
    pub refresh_token_persist_failures: IntCounter,
    /// Token requests to Entra ID, by result.
    pub token_requests: IntCounterVec,
}

/// The exporter's own metrics: health of polling and of the process.
#[derive(Clone)]
pub struct ExporterMetrics {
    registry: Registry,
    /// 1 if the last poll succeeded.
    pub up: IntGauge,
    pub last_success_timestamp: Gauge,
    pub poll_duration: Gauge,
    pub poll_errors: IntCounterVec,
    pub items_skipped: IntCounter,
    /// Requests to Partner Center sent again, by what went wrong.
    pub request_retries: IntCounterVec,
    /// The current time between two polls; longer than configured while throttled.
    pub poll_interval: Gauge,
}

impl ExporterMetrics {
    /// Creates and registers the exporter's own metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(None, None)?;
        let up = IntGauge::new(
            "partner_center_up",
            "Whether the last poll of Partner Center succeeded (1) or failed (0).",
        )?;
        let last_success_timestamp = Gauge::new(
            "partner_center_last_success_timestamp_seconds",
            "When the last successful poll of Partner Center finished, in Unix seconds.",
        )?;
        let poll_duration = Gauge::new(
            "partner_center_poll_duration_seconds",
            "How long the last poll of Partner Center took, in seconds.",
        )?;
        let poll_errors = IntCounterVec::new(
            Opts::new(
                "partner_center_poll_errors_total",
                "Failed polls of Partner Center, by reason.",
            ),
            &["reason"],
        )?;
        let items_skipped = IntCounter::new(
            "partner_center_items_skipped_total",
            "License usage items left out because a field was missing or unusable.",
        )?;
        let request_retries = IntCounterVec::new(
            Opts::new(
                "partner_center_request_retries_total",
                "Requests to Partner Center sent again within a poll, by what went wrong with the previous try.",
            ),
            &["reason"],
        )?;
        let poll_interval = Gauge::new(
            "partner_center_poll_interval_seconds",
            "Time from the start of the last poll to the start of the next: poll.interval, longer while Partner Center throttles.",
        )?;
        let build_info = IntGauge::with_opts(
            Opts::new(
                "partner_center_exporter_build_info",
                "A metric with a constant '1' value labelled by version, revision and rustversion.",
            )
            .const_label("version", build_info::VERSION)
            .const_label("revision", build_info::REVISION)
            .const_label("rustversion", build_info::RUST_VERSION),
        )?;
        build_info.set(1);
        for reason in POLL_ERROR_REASONS {
            poll_errors.with_label_values(&[reason]);
        }
        for reason in RETRY_REASONS {
            request_retries.with_label_values(&[reason]);
        }

        registry.register(Box::new(up.clone()))?;
        registry.register(Box::new(last_success_timestamp.clone()))?;
        registry.register(Box::new(poll_duration.clone()))?;
        registry.register(Box::new(poll_errors.clone()))?;
        registry.register(Box::new(items_skipped.clone()))?;
        registry.register(Box::new(request_retries.clone()))?;
        registry.register(Box::new(poll_interval.clone()))?;
        registry.register(Box::new(build_info))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        Ok(Self {
            registry,
            up,
            last_success_timestamp,
            poll_duration,
            poll_errors,
            items_skipped,
            request_retries,
            poll_interval,
        })
    }

    /// Creates the App+User token metrics and adds them to this registry.
    pub fn register_token_metrics(&self) -> Result<TokenMetrics, prometheus::Error> {
        let access_token_expiry_timestamp = Gauge::new(
            "partner_center_access_token_expiry_timestamp_seconds",
            "When the current Partner Center access token expires, in Unix seconds.",
        )?;
        let refresh_token_rotated_timestamp = Gauge::new(
            "partner_center_refresh_token_rotated_timestamp_seconds",
            "When a new refresh token was last stored durably in state_dir, in Unix seconds.",
        )?;
        let refresh_token_persist_failures = IntCounter::new(
            "partner_center_refresh_token_persist_failures_total",
            "Rotated refresh tokens that could not be stored in state_dir (or state_dir is not set).",
        )?;
        let token_requests = IntCounterVec::new(
            Opts::new(
                "partner_center_token_requests_total",
                "Token requests to Entra ID, by result.",
            ),
            &["result"],
        )?;
        for result in crate::auth::entra::TOKEN_REQUEST_RESULTS {
            token_requests.with_label_values(&[result]);
        }
        self.registry
            .register(Box::new(access_token_expiry_timestamp.clone()))?;
        self.registry
            .register(Box::new(refresh_token_rotated_timestamp.clone()))?;
        self.registry
            .register(Box::new(refresh_token_persist_failures.clone()))?;
        self.registry.register(Box::new(token_requests.clone()))?;
        Ok(TokenMetrics {
            access_token_expiry_timestamp,
            refresh_token_rotated_timestamp,
            refresh_token_persist_failures,
            token_requests,
        })
    }

    /// Renders the exporter's own metrics followed by `license_usage`, the
    /// snapshot's pre-rendered series.
    pub fn render(&self, license_usage: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096 + license_usage.len());
        // Encoding only fails on a family without metrics, which gather()
        // never returns; a failure would at worst drop the exporter's own part.
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %err, "cannot encode the exporter's own metrics");
        }
        out.extend_from_slice(license_usage.as_bytes());
        out
    }
}

/// Renders the license usage series in the text exposition format. The
/// encoder escapes label values, whatever Partner Center sent.
pub fn render_license_usage(series: &BTreeMap<SeriesKey, SeriesValue>) -> String {
    if series.is_empty() {
        return String::new();
    }
    let percent = gauge_family(PRORATED_PERCENT, PRORATED_PERCENT_HELP, series, |value| {
        value.prorated_percent
    });
    let processed = gauge_family(
        PROCESSED_TIMESTAMP,
        PROCESSED_TIMESTAMP_HELP,
        series,
        |value| value.processed_at.timestamp_millis() as f64 / 1000.0,
    );
    let mut out = Vec::new();
    if let Err(err) = TextEncoder::new().encode(&[percent, processed], &mut out) {
        tracing::error!(error = %err, "cannot encode license usage series");
        return String::new();
    }
    // The text encoder writes only UTF-8 from UTF-8 input.
    String::from_utf8(out).unwrap_or_default()
}

fn gauge_family(
    name: &str,
    help: &str,
    series: &BTreeMap<SeriesKey, SeriesValue>,
    value_of: impl Fn(&SeriesValue) -> f64,
) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(MetricType::GAUGE);
    family.set_metric(
        series
            .iter()
            .map(|(key, value)| {
                let mut gauge = GaugeValue::default();
                gauge.set_value(value_of(value));
                let mut metric = Metric::default();
                metric.set_label(vec![
                    label("channel", &key.channel),
                    label("service", &key.service),
                    label("workload", &key.workload),
                ]);
                metric.set_gauge(gauge);
                metric
            })
            .collect(),
    );
    family
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut pair = LabelPair::default();
    pair.set_name(name.to_owned());
    pair.set_value(value.to_owned());
    pair
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partner_center::model::LicenseUsage;
    use crate::snapshot::Snapshot;
    use chrono::TimeZone;

    fn usage(workload: &str, percent: f64) -> LicenseUsage {
        LicenseUsage {
            workload: workload.to_owned(),
            service: "o365".to_owned(),
            channel: "reseller".to_owned(),
            prorated_percent: percent,
            processed_at: chrono::Utc
                .with_ymd_and_hms(2017, 3, 9, 0, 0, 0)
                .single()
                .expect("date"),
        }
    }

    #[test]
    fn license_series_render_with_help_type_and_labels() {
        let snapshot = Snapshot::from_items([usage("Exchange", 12.5)]);
        let text = snapshot.exposition();
        let expected = "# HELP partner_center_license_usage_prorated_percent Prorated license usage per workload, service and channel: proratedLicensesUsagePercent exactly as Partner Center reports it.\n\
# TYPE partner_center_license_usage_prorated_percent gauge\n\
partner_center_license_usage_prorated_percent{channel=\"reseller\",service=\"o365\",workload=\"Exchange\"} 12.5\n\
# HELP partner_center_license_usage_processed_timestamp_seconds When Partner Center processed the usage figure (processedDateTime), in Unix seconds.\n\
# TYPE partner_center_license_usage_processed_timestamp_seconds gauge\n\
partner_center_license_usage_processed_timestamp_seconds{channel=\"reseller\",service=\"o365\",workload=\"Exchange\"} 1489017600\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn label_values_are_escaped() {
        let snapshot = Snapshot::from_items([usage("Sk\"ype\\ \nfür", 1.0)]);
        let line = snapshot
            .exposition()
            .lines()
            .find(|line| line.starts_with(PRORATED_PERCENT))
            .expect("series line");
        assert_eq!(
            line,
            "partner_center_license_usage_prorated_percent{channel=\"reseller\",service=\"o365\",workload=\"Sk\\\"ype\\\\ \\nfür\"} 1"
        );
    }

    #[test]
    fn exporter_metrics_exist_from_the_start() {
        let metrics = ExporterMetrics::new().expect("metrics");
        let text = String::from_utf8(metrics.render("")).expect("utf-8");
        for expected in [
            "partner_center_up 0",
            "partner_center_items_skipped_total 0",
            "partner_center_poll_errors_total{reason=\"auth\"} 0",
            "partner_center_poll_errors_total{reason=\"paging\"} 0",
            "partner_center_request_retries_total{reason=\"throttled\"} 0",
            "partner_center_request_retries_total{reason=\"http\"} 0",
            "# TYPE partner_center_poll_interval_seconds gauge",
            "# TYPE partner_center_poll_errors_total counter",
            "# TYPE partner_center_last_success_timestamp_seconds gauge",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        let build_info = text
            .lines()
            .find(|line| line.starts_with("partner_center_exporter_build_info{"))
            .expect("build info");
        assert!(
            build_info.contains(&format!("version=\"{}\"", build_info::VERSION)),
            "{build_info}"
        );
        assert!(build_info.contains("revision=\""), "{build_info}");
        assert!(build_info.contains("rustversion=\""), "{build_info}");
        assert!(build_info.ends_with("} 1"), "{build_info}");
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }
}
