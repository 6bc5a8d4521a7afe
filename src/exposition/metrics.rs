//! Every metric the exporter publishes: names, help texts, and their rendering
//! in the Prometheus text exposition format.
//!
//! A scrape is made of parts that change at different times (see
//! [`crate::exposition`]): the exporter's own metrics in a private
//! [`Registry`] (build info, retries, the poll intervals, the token
//! metrics), rendered again after any of them changed, which [`Changes`]
//! tells; the polls' health, one series per source, rendered once per
//! poll outcome (`crate::collect::health`); each source's families,
//! rendered once per snapshot (`crate::collect::snapshot`); and the process
//! metrics, read from `/proc` at most once a second.
//!
//! The `prometheus` crate keeps the registry's counters and gauges and
//! reads the process metrics; its families are written by the same
//! formatter as everything else ([`crate::exposition`]), so every line of
//! a scrape is formatted in one place.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use prometheus::proto::MetricType;
use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::build_info;
use crate::exposition::{unix_seconds, write_header, write_sample};
use crate::tenant::{TENANT_LABEL, TenantLabel};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Counts changes to the metrics in the registry, so that its rendering
/// is redone only after one. Whoever changes a metric marks it here; the
/// next scrape sees a new count and renders once for everyone after it.
#[derive(Debug, Clone, Default)]
pub struct Changes(Arc<AtomicU64>);

impl Changes {
    /// Marks a change. Called after the metric is written: a reader that
    /// sees the new count (acquire) also sees the new value (release).
    pub fn mark(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    /// The number of changes so far; read before rendering, so a change
    /// made during a rendering makes the next scrape render again.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// The metrics of the App+User refresh-token method; registered only when
/// that method is configured, so a bearer-token set-up shows no token
/// expiry that alerts could misread.
///
/// The authenticator changes them at any time, between polls too; every
/// change goes through a method here, which marks it for the next scrape.
#[derive(Clone)]
pub struct TokenMetrics {
    /// When the current access token expires.
    access_token_expiry_timestamp: Gauge,
    /// When a new refresh token was last stored durably.
    refresh_token_rotated_timestamp: Gauge,
    /// Rotated refresh tokens that could not be stored durably.
    refresh_token_persist_failures: IntCounter,
    /// Token requests to Entra ID, by result.
    token_requests: IntCounterVec,
    changes: Changes,
}

impl TokenMetrics {
    /// Counts a token request to Entra ID with its `result`.
    pub fn count_token_request(&self, result: &str) {
        self.token_requests.with_label_values(&[result]).inc();
        self.changes.mark();
    }

    /// Publishes when the current access token expires.
    pub fn set_access_token_expiry(&self, at: DateTime<Utc>) {
        self.access_token_expiry_timestamp.set(unix_seconds(at));
        self.changes.mark();
    }

    /// Publishes when a rotated refresh token was stored durably.
    pub fn set_refresh_token_rotated(&self, at: DateTime<Utc>) {
        self.refresh_token_rotated_timestamp.set(unix_seconds(at));
        self.changes.mark();
    }

    /// Counts a rotated refresh token that could not be stored.
    pub fn count_persist_failure(&self) {
        self.refresh_token_persist_failures.inc();
        self.changes.mark();
    }
}

/// The exporter's own metrics of one partner tenant, labelled `tenant`
/// when it has a name: its retried requests and its poll intervals. A
/// tenant's collectors carry its name as a constant label, so each
/// tenant's series are its own and a scrape still writes each family once.
#[derive(Clone)]
pub struct TenantMetrics {
    /// Requests to Partner Center sent again, by what went wrong.
    request_retries: IntCounterVec,
    /// The current time between two polls of each source; longer than
    /// configured while throttled.
    poll_interval: GaugeVec,
    changes: Changes,
}

impl TenantMetrics {
    /// Counts requests that were sent again, one `reason` per retry.
    pub fn count_retries(&self, reasons: &[&str]) {
        if reasons.is_empty() {
            return;
        }
        for reason in reasons {
            self.request_retries.with_label_values(&[reason]).inc();
        }
        self.changes.mark();
    }

    /// Publishes the time from the start of `source`'s last poll to its next.
    pub fn set_poll_interval(&self, source: &str, seconds: f64) {
        self.poll_interval.with_label_values(&[source]).set(seconds);
        self.changes.mark();
    }
}

/// The options of a metric of `tenant`'s: its name as a constant label.
fn tenant_opts(name: &str, help: &str, tenant: &TenantLabel) -> Opts {
    let opts = Opts::new(name, help);
    match tenant.name() {
        Some(tenant) => opts.const_label(TENANT_LABEL, tenant),
        None => opts,
    }
}

/// The exporter's own metrics that change outside the poll's outcome, and
/// the process metrics.
#[derive(Clone)]
pub struct ExporterMetrics {
    registry: Registry,
    /// The process collector alone: it reads `/proc` on every gathering,
    /// so it is gathered on its own schedule, not with every change.
    process: Registry,
    changes: Changes,
}

impl ExporterMetrics {
    /// Creates and registers the exporter's own metrics; each tenant's are
    /// added by [`ExporterMetrics::register_tenant`].
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(None, None)?;
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
        registry.register(Box::new(build_info))?;

        let process = Registry::new_custom(None, None)?;
        #[cfg(target_os = "linux")]
        process.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        Ok(Self {
            registry,
            process,
            changes: Changes::default(),
        })
    }

    /// Creates `tenant`'s retry and poll-interval metrics and adds them to
    /// this registry, with a retry series at 0 for each of
    /// `retry_reasons` (owned by the client, which names them), so the set
    /// is complete from the first scrape.
    pub fn register_tenant(
        &self,
        tenant: &TenantLabel,
        retry_reasons: &[&str],
    ) -> Result<TenantMetrics, prometheus::Error> {
        let request_retries = IntCounterVec::new(
            tenant_opts(
                "partner_center_request_retries_total",
                "Requests to Partner Center sent again within a poll, by what went wrong with the previous try.",
                tenant,
            ),
            &["reason"],
        )?;
        let poll_interval = GaugeVec::new(
            tenant_opts(
                "partner_center_poll_interval_seconds",
                "Time from the start of a source's last poll to the start of its next: its interval, longer while Partner Center throttles.",
                tenant,
            ),
            &["source"],
        )?;
        for reason in retry_reasons {
            request_retries.with_label_values(&[reason]);
        }
        self.registry.register(Box::new(request_retries.clone()))?;
        self.registry.register(Box::new(poll_interval.clone()))?;
        self.changes.mark();
        Ok(TenantMetrics {
            request_retries,
            poll_interval,
            changes: self.changes.clone(),
        })
    }

    /// Creates `tenant`'s App+User token metrics and adds them to this
    /// registry, with a series at 0 for each of `results`, the token
    /// requests' every possible result (owned by the authenticator, which
    /// names them).
    pub fn register_token_metrics(
        &self,
        tenant: &TenantLabel,
        results: &[&str],
    ) -> Result<TokenMetrics, prometheus::Error> {
        let access_token_expiry_timestamp = Gauge::with_opts(tenant_opts(
            "partner_center_access_token_expiry_timestamp_seconds",
            "When the current Partner Center access token expires, in Unix seconds.",
            tenant,
        ))?;
        let refresh_token_rotated_timestamp = Gauge::with_opts(tenant_opts(
            "partner_center_refresh_token_rotated_timestamp_seconds",
            "When a new refresh token was last stored durably in state_dir, in Unix seconds.",
            tenant,
        ))?;
        let refresh_token_persist_failures = IntCounter::with_opts(tenant_opts(
            "partner_center_refresh_token_persist_failures_total",
            "Rotated refresh tokens that could not be stored in state_dir (or state_dir is not set).",
            tenant,
        ))?;
        let token_requests = IntCounterVec::new(
            tenant_opts(
                "partner_center_token_requests_total",
                "Token requests to Entra ID, by result.",
                tenant,
            ),
            &["result"],
        )?;
        for result in results {
            token_requests.with_label_values(&[result]);
        }
        self.registry
            .register(Box::new(access_token_expiry_timestamp.clone()))?;
        self.registry
            .register(Box::new(refresh_token_rotated_timestamp.clone()))?;
        self.registry
            .register(Box::new(refresh_token_persist_failures.clone()))?;
        self.registry.register(Box::new(token_requests.clone()))?;
        self.changes.mark();
        Ok(TokenMetrics {
            access_token_expiry_timestamp,
            refresh_token_rotated_timestamp,
            refresh_token_persist_failures,
            token_requests,
            changes: self.changes.clone(),
        })
    }

    /// How many times the registry's metrics have changed; compare with
    /// the count a rendering was made at.
    pub fn changes(&self) -> u64 {
        self.changes.count()
    }

    /// Renders the registry: build info, retries, poll interval, token metrics.
    pub fn render_own(&self) -> Vec<u8> {
        encode(&self.registry)
    }

    /// Renders the process metrics (CPU, memory, file descriptors), read now.
    pub fn render_process(&self) -> Vec<u8> {
        encode(&self.process)
    }

    /// Renders the registry and the process metrics; for tools and tests
    /// that look at the metrics without a poll (a scrape also has the
    /// polls' health and the sources' series).
    pub fn render(&self) -> Vec<u8> {
        let mut out = self.render_own();
        out.extend_from_slice(&self.render_process());
        out
    }
}

/// Writes what a registry gathered with the exporter's own formatter. The
/// registries hold counters and gauges only (the process collector's
/// included); a unit test holds the result to the `prometheus` crate's
/// own encoder.
fn encode(registry: &Registry) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    for family in registry.gather() {
        let (kind, value_of): (&str, fn(&prometheus::proto::Metric) -> f64) = match family
            .get_field_type()
        {
            MetricType::COUNTER => ("counter", |metric| metric.get_counter().get_value()),
            MetricType::GAUGE => ("gauge", |metric| metric.get_gauge().get_value()),
            other => {
                tracing::error!(family = family.name(), kind = ?other, "a metric of a type the exporter does not write was registered");
                continue;
            }
        };
        write_header(&mut out, family.name(), family.help(), kind);
        for metric in family.get_metric() {
            let labels: Vec<(&str, &str)> = metric
                .get_label()
                .iter()
                .map(|pair| (pair.name(), pair.value()))
                .collect();
            write_sample(&mut out, family.name(), &labels, value_of(metric));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_counted_by_whoever_makes_them() {
        let metrics = ExporterMetrics::new().expect("metrics");
        let tenant = metrics
            .register_tenant(&TenantLabel::NONE, &["timeout"])
            .expect("tenant metrics");
        let before = metrics.changes();
        tenant.count_retries(&[]);
        assert_eq!(metrics.changes(), before, "no retry, no change");
        tenant.count_retries(&["timeout"]);
        let after_retry = metrics.changes();
        assert!(after_retry > before);
        let tokens = metrics
            .register_token_metrics(&TenantLabel::NONE, &["success", "timeout"])
            .expect("token metrics");
        let registered = metrics.changes();
        assert!(registered > after_retry, "new series are a change");
        tokens.count_token_request("success");
        assert!(metrics.changes() > registered);
        let text = String::from_utf8(metrics.render_own()).expect("utf-8");
        assert!(
            text.contains("partner_center_token_requests_total{result=\"success\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("partner_center_request_retries_total{reason=\"timeout\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn the_registry_is_written_as_the_prometheus_crate_writes_it() {
        use prometheus::Encoder;
        let metrics = ExporterMetrics::new().expect("metrics");
        for tenant in [
            TenantLabel::named("contoso-eu"),
            TenantLabel::named("contoso-us"),
        ] {
            let tokens = metrics
                .register_token_metrics(&tenant, &["success", "timeout"])
                .expect("token metrics");
            tokens.count_token_request("success");
            tokens.set_access_token_expiry(chrono::Utc::now());
            let own = metrics
                .register_tenant(&tenant, &["throttled", "http"])
                .expect("tenant metrics");
            own.count_retries(&["throttled", "http"]);
            own.set_poll_interval("license_deployment", 1.5);
        }
        let mut expected = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&metrics.registry.gather(), &mut expected)
            .expect("encoded");
        assert_eq!(
            String::from_utf8(metrics.render_own()).expect("utf-8"),
            String::from_utf8(expected).expect("utf-8")
        );
    }

    #[test]
    fn each_tenant_has_its_own_series_in_one_family() {
        let metrics = ExporterMetrics::new().expect("metrics");
        let eu = metrics
            .register_tenant(&TenantLabel::named("contoso-eu"), &["http"])
            .expect("tenant metrics");
        metrics
            .register_tenant(&TenantLabel::named("contoso-us"), &["http"])
            .expect("tenant metrics");
        eu.count_retries(&["http"]);
        let text = String::from_utf8(metrics.render_own()).expect("utf-8");
        assert_eq!(
            text.matches("# TYPE partner_center_request_retries_total counter\n")
                .count(),
            1,
            "{text}"
        );
        assert!(
            text.contains(
                "partner_center_request_retries_total{reason=\"http\",tenant=\"contoso-eu\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "partner_center_request_retries_total{reason=\"http\",tenant=\"contoso-us\"} 0\n"
            ),
            "{text}"
        );
        assert!(
            metrics
                .register_tenant(&TenantLabel::named("contoso-eu"), &["http"])
                .is_err(),
            "a tenant is registered once"
        );
    }
}
