//! What the poller has learnt and the web server shows: the current snapshot,
//! the exporter's metrics and the outcome of the last poll.
//!
//! The poller is the only writer; the server only reads.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};

use crate::metrics::ExporterMetrics;
use crate::snapshot::Snapshot;

/// The outcome of the most recent poll, for the landing page and readiness.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PollStatus {
    /// When the last poll ended, whatever its result.
    pub last_poll_at: Option<DateTime<Utc>>,
    /// Why the last poll failed; `None` after a success.
    pub last_error: Option<String>,
    /// When the last successful poll ended.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Series in the snapshot being served.
    pub series: usize,
}

/// What one poll outcome publishes, swapped in as a whole so that the
/// license series, `/readyz` and the landing page change together.
#[derive(Debug, Default)]
struct Published {
    snapshot: Arc<Snapshot>,
    last_poll_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    last_success_at: Option<DateTime<Utc>>,
}

/// State shared between the poller and the web server.
pub struct ExporterState {
    metrics: ExporterMetrics,
    published: ArcSwap<Published>,
}

impl ExporterState {
    pub fn new(metrics: ExporterMetrics) -> Self {
        Self {
            metrics,
            published: ArcSwap::from_pointee(Published::default()),
        }
    }

    /// Publishes a successful poll: its snapshot replaces the previous one whole.
    pub fn record_success(
        &self,
        snapshot: Snapshot,
        skipped: u64,
        duration: Duration,
        finished_at: DateTime<Utc>,
    ) {
        self.metrics.items_skipped.inc_by(skipped);
        self.metrics.poll_duration.set(duration.as_secs_f64());
        self.metrics
            .last_success_timestamp
            .set(finished_at.timestamp_millis() as f64 / 1000.0);
        self.metrics.up.set(1);
        self.published.store(Arc::new(Published {
            snapshot: Arc::new(snapshot),
            last_poll_at: Some(finished_at),
            last_error: None,
            last_success_at: Some(finished_at),
        }));
    }

    /// Records a failed poll. The last good snapshot stays in place.
    pub fn record_failure(
        &self,
        reason: &'static str,
        message: String,
        duration: Duration,
        finished_at: DateTime<Utc>,
    ) {
        self.metrics.poll_errors.with_label_values(&[reason]).inc();
        self.metrics.poll_duration.set(duration.as_secs_f64());
        self.metrics.up.set(0);
        // Only the poller writes, so reading and replacing cannot race.
        let previous = self.published.load();
        self.published.store(Arc::new(Published {
            snapshot: previous.snapshot.clone(),
            last_poll_at: Some(finished_at),
            last_error: Some(message),
            last_success_at: previous.last_success_at,
        }));
    }

    /// The full `/metrics` body.
    pub fn render_metrics(&self) -> Vec<u8> {
        let published = self.published.load();
        self.metrics.render(published.snapshot.exposition())
    }

    /// True once a poll has succeeded: from then on there is data to serve.
    pub fn is_ready(&self) -> bool {
        self.published.load().last_success_at.is_some()
    }

    /// The outcome of the most recent poll.
    pub fn status(&self) -> PollStatus {
        let published = self.published.load();
        PollStatus {
            last_poll_at: published.last_poll_at,
            last_error: published.last_error.clone(),
            last_success_at: published.last_success_at,
            series: published.snapshot.series().len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partner_center::model::LicenseUsage;

    fn snapshot_of(workloads: &[&str]) -> Snapshot {
        Snapshot::from_items(workloads.iter().map(|workload| LicenseUsage {
            workload: (*workload).to_owned(),
            service: "o365".to_owned(),
            channel: "reseller".to_owned(),
            prorated_percent: 50.0,
            processed_at: Utc::now(),
        }))
    }

    fn body(state: &ExporterState) -> String {
        String::from_utf8(state.render_metrics()).expect("utf-8")
    }

    #[test]
    fn failure_keeps_last_snapshot_and_sets_up_to_zero() {
        let state = ExporterState::new(ExporterMetrics::new().expect("metrics"));
        assert!(!state.is_ready());
        state.record_success(
            snapshot_of(&["Exchange"]),
            2,
            Duration::from_millis(250),
            Utc::now(),
        );
        assert!(state.is_ready());
        let text = body(&state);
        assert!(text.contains("partner_center_up 1"), "{text}");
        assert!(
            text.contains("partner_center_items_skipped_total 2"),
            "{text}"
        );
        assert!(text.contains("workload=\"Exchange\""), "{text}");

        state.record_failure(
            "http",
            "HTTP 500".to_owned(),
            Duration::from_secs(1),
            Utc::now(),
        );
        let text = body(&state);
        assert!(text.contains("partner_center_up 0"), "{text}");
        assert!(
            text.contains("partner_center_poll_errors_total{reason=\"http\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("workload=\"Exchange\""),
            "last values are still served: {text}"
        );
        assert!(state.is_ready(), "readiness survives a failed poll");
        let status = state.status();
        assert_eq!(status.last_error.as_deref(), Some("HTTP 500"));
        assert_eq!(status.series, 1);
    }

    #[test]
    fn new_snapshot_replaces_the_old_one_whole() {
        let state = ExporterState::new(ExporterMetrics::new().expect("metrics"));
        state.record_success(
            snapshot_of(&["Exchange", "SharePoint"]),
            0,
            Duration::ZERO,
            Utc::now(),
        );
        state.record_success(snapshot_of(&["Exchange"]), 0, Duration::ZERO, Utc::now());
        let text = body(&state);
        assert!(text.contains("workload=\"Exchange\""), "{text}");
        assert!(
            !text.contains("SharePoint"),
            "vanished series must vanish: {text}"
        );
    }
}
