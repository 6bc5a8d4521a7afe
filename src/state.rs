//! What the poller has learnt and the web server shows: the current snapshot,
//! the exporter's metrics and the outcome of the last poll.
//!
//! The poller is the only writer; the server only reads. With
//! `poll.max_staleness` set, license series older than that are withheld at
//! scrape time, so they vanish on time even when no poll finishes.

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
    /// True when the series are withheld because no poll has succeeded
    /// for longer than `poll.max_staleness`.
    pub withdrawn: bool,
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
    /// `poll.max_staleness`: how old the last success may be before its
    /// series stop being served.
    max_staleness: Option<Duration>,
}

impl ExporterState {
    pub fn new(metrics: ExporterMetrics, max_staleness: Option<Duration>) -> Self {
        Self {
            metrics,
            published: ArcSwap::from_pointee(Published::default()),
            max_staleness,
        }
    }

    /// Counts requests that were sent again, one `reason` per retry.
    pub fn record_retries(&self, reasons: &[&'static str]) {
        for reason in reasons {
            self.metrics
                .request_retries
                .with_label_values(&[reason])
                .inc();
        }
    }

    /// Publishes the time until the next poll starts.
    pub fn record_poll_interval(&self, interval: Duration) {
        self.metrics.poll_interval.set(interval.as_secs_f64());
    }

    /// Whether, at `now`, the last success is older than `poll.max_staleness`.
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        is_stale(&self.published.load(), self.max_staleness, now)
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
        if is_stale(&published, self.max_staleness, Utc::now()) {
            self.metrics.render("")
        } else {
            self.metrics.render(published.snapshot.exposition())
        }
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
            withdrawn: is_stale(&published, self.max_staleness, Utc::now()),
        }
    }
}

/// Whether `published` holds series older than `max_staleness` at `now`.
/// Before the first success there is nothing to withdraw.
fn is_stale(published: &Published, max_staleness: Option<Duration>, now: DateTime<Utc>) -> bool {
    match (max_staleness, published.last_success_at) {
        (Some(limit), Some(success)) => (now - success).to_std().is_ok_and(|age| age > limit),
        _ => false,
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
        let state = ExporterState::new(ExporterMetrics::new().expect("metrics"), None);
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
        let state = ExporterState::new(ExporterMetrics::new().expect("metrics"), None);
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

    #[test]
    fn series_older_than_max_staleness_are_withdrawn_but_health_stays() {
        let state = ExporterState::new(
            ExporterMetrics::new().expect("metrics"),
            Some(Duration::from_secs(3600)),
        );
        let two_hours_ago = Utc::now() - chrono::Duration::hours(2);
        state.record_success(snapshot_of(&["Exchange"]), 0, Duration::ZERO, two_hours_ago);
        state.record_failure("http", "HTTP 500".to_owned(), Duration::ZERO, Utc::now());
        assert!(state.is_stale(Utc::now()));
        assert!(!state.is_stale(two_hours_ago + chrono::Duration::minutes(30)));
        let text = body(&state);
        assert!(!text.contains("workload=\"Exchange\""), "{text}");
        assert!(text.contains("partner_center_up 0"), "{text}");
        let expected = format!(
            "partner_center_last_success_timestamp_seconds {}",
            two_hours_ago.timestamp_millis() as f64 / 1000.0
        );
        assert!(text.contains(&expected), "{text}");
        assert!(state.status().withdrawn);

        state.record_success(snapshot_of(&["Exchange"]), 0, Duration::ZERO, Utc::now());
        assert!(body(&state).contains("workload=\"Exchange\""));
        assert!(!state.status().withdrawn);
    }

    #[test]
    fn without_max_staleness_old_series_stay() {
        let state = ExporterState::new(ExporterMetrics::new().expect("metrics"), None);
        let long_ago = Utc::now() - chrono::Duration::days(30);
        state.record_success(snapshot_of(&["Exchange"]), 0, Duration::ZERO, long_ago);
        assert!(!state.is_stale(Utc::now()));
        assert!(body(&state).contains("workload=\"Exchange\""));
    }
}
