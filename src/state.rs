//! What the poller has learnt and the web server shows: the outcome of the
//! polls, the exporter's metrics, and the `/metrics` body made of parts
//! rendered ahead of the scrapes.
//!
//! The poller publishes each poll's outcome whole: its health and, after
//! a success, the snapshot's series, both already rendered and compressed.
//! The exporter's own metrics are rendered again by the first scrape after
//! they changed, the process metrics at most once a second. A scrape then
//! only puts ready parts together.
//!
//! With `poll.max_staleness` set, license series older than that are
//! withheld at scrape time, so they vanish on time even when no poll
//! finishes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};

use crate::exposition::{Exposition, Part};
use crate::metrics::{ExporterMetrics, PollHealth, render_poll_health};
use crate::snapshot::Snapshot;

/// How long a reading of the process metrics is served: they are read
/// from `/proc`, which costs more than the rest of a scrape together.
pub const PROCESS_METRICS_MAX_AGE: Duration = Duration::from_secs(1);

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
/// license series, the poll's health metrics, `/readyz` and the landing
/// page change together.
#[derive(Debug)]
struct Published {
    /// The last successful poll's series, rendered. Only byte buffers: the
    /// snapshot's items stay with the poller, so a scrape that outlives a
    /// swap never has a large structure to free.
    license: Part,
    /// How many series `license` has.
    series: usize,
    health: PollHealth,
    /// `health`, rendered.
    health_part: Part,
    last_poll_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    last_success_at: Option<DateTime<Utc>>,
}

impl Published {
    fn initial() -> Self {
        let health = PollHealth::default();
        Self {
            license: Part::default(),
            series: 0,
            health_part: Part::new(render_poll_health(&health)),
            health,
            last_poll_at: None,
            last_error: None,
            last_success_at: None,
        }
    }
}

/// The registry's rendering and the change count it was made at.
struct OwnRendering {
    changes: u64,
    part: Part,
}

/// A reading of the process metrics and when it was taken.
struct ProcessReading {
    taken_at: Option<Instant>,
    part: Part,
}

/// State shared between the poller and the web server.
pub struct ExporterState {
    metrics: ExporterMetrics,
    published: ArcSwap<Published>,
    own: ArcSwap<OwnRendering>,
    process: ArcSwap<ProcessReading>,
    /// Set while one scrape reads the process metrics; the others send
    /// the previous reading meanwhile instead of reading `/proc` too.
    process_reading: AtomicBool,
    /// `poll.max_staleness`: how old the last success may be before its
    /// series stop being served.
    max_staleness: Option<Duration>,
}

impl ExporterState {
    pub fn new(metrics: ExporterMetrics, max_staleness: Option<Duration>) -> Self {
        Self {
            // Never matches a count, so the first scrape renders.
            own: ArcSwap::from_pointee(OwnRendering {
                changes: u64::MAX,
                part: Part::default(),
            }),
            metrics,
            published: ArcSwap::from_pointee(Published::initial()),
            process: ArcSwap::from_pointee(ProcessReading {
                taken_at: None,
                part: Part::default(),
            }),
            process_reading: AtomicBool::new(false),
            max_staleness,
        }
    }

    /// Counts requests that were sent again, one `reason` per retry.
    pub fn record_retries(&self, reasons: &[&'static str]) {
        self.metrics.count_retries(reasons);
    }

    /// Publishes the time until the next poll starts.
    pub fn record_poll_interval(&self, interval: Duration) {
        self.metrics.set_poll_interval(interval.as_secs_f64());
    }

    /// Whether, at `now`, the last success is older than `poll.max_staleness`.
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        is_stale(&self.published.load(), self.max_staleness, now)
    }

    /// Publishes a successful poll: its snapshot replaces the previous one
    /// whole, and its health is rendered here, once.
    pub fn record_success(
        &self,
        snapshot: Snapshot,
        skipped: u64,
        duration: Duration,
        finished_at: DateTime<Utc>,
    ) {
        // Only the poller writes, so reading and replacing cannot race.
        let previous = self.published.load();
        let mut health = previous.health.clone();
        health.up = true;
        health.last_success_at = Some(finished_at);
        health.last_duration_seconds = duration.as_secs_f64();
        health.items_skipped = health.items_skipped.saturating_add(skipped);
        self.published.store(Arc::new(Published {
            license: snapshot.part().clone(),
            series: snapshot.series().len(),
            health_part: Part::new(render_poll_health(&health)),
            health,
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
        let previous = self.published.load();
        let mut health = previous.health.clone();
        health.up = false;
        health.last_duration_seconds = duration.as_secs_f64();
        health.count_error(reason);
        self.published.store(Arc::new(Published {
            license: previous.license.clone(),
            series: previous.series,
            health_part: Part::new(render_poll_health(&health)),
            health,
            last_poll_at: Some(finished_at),
            last_error: Some(message),
            last_success_at: previous.last_success_at,
        }));
    }

    /// What a scrape sends now.
    pub fn exposition(&self) -> Exposition {
        self.exposition_at(Utc::now())
    }

    /// What a scrape at `now` sends: the exporter's own metrics, the
    /// process metrics, the last poll's health, and the license series
    /// unless they are older than `poll.max_staleness` at `now`.
    pub fn exposition_at(&self, now: DateTime<Utc>) -> Exposition {
        // The poll's outcome first: what a poll counts on the way (its
        // retries) is recorded before its outcome is published, so the own
        // metrics read after it include all of it. Read the other way round,
        // a poll ending in between would show its failure without its retries.
        let published = self.published.load();
        let mut exposition = Exposition::new();
        exposition.push(self.own_part());
        exposition.push(self.process_part());
        exposition.push(published.health_part.clone());
        if !is_stale(&published, self.max_staleness, now) {
            exposition.push(published.license.clone());
        }
        exposition
    }

    /// The full `/metrics` body, plain, in one buffer.
    pub fn render_metrics(&self) -> Vec<u8> {
        self.exposition().to_plain()
    }

    /// The registry's rendering, made again if a metric changed since.
    fn own_part(&self) -> Part {
        // Read before rendering: a change made during the rendering leaves
        // the count ahead of the one stored, so the next scrape renders again.
        let changes = self.metrics.changes();
        let cached = self.own.load();
        if cached.changes == changes {
            return cached.part.clone();
        }
        let part = Part::new(self.metrics.render_own());
        self.own.store(Arc::new(OwnRendering {
            changes,
            part: part.clone(),
        }));
        part
    }

    /// The process metrics, read again when the last reading is older
    /// than [`PROCESS_METRICS_MAX_AGE`].
    fn process_part(&self) -> Part {
        let cached = self.process.load();
        let fresh = cached
            .taken_at
            .is_some_and(|taken_at| taken_at.elapsed() < PROCESS_METRICS_MAX_AGE);
        if fresh || self.process_reading.swap(true, Ordering::Acquire) {
            return cached.part.clone();
        }
        let reading = ReadingFlag(&self.process_reading);
        let part = Part::new(self.metrics.render_process());
        self.process.store(Arc::new(ProcessReading {
            taken_at: Some(Instant::now()),
            part: part.clone(),
        }));
        drop(reading);
        part
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
            series: published.series,
            withdrawn: is_stale(&published, self.max_staleness, Utc::now()),
        }
    }
}

/// Clears the process-reading flag when dropped, so that even a reading
/// that panicked does not stop later ones.
struct ReadingFlag<'a>(&'a AtomicBool);

impl Drop for ReadingFlag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
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
    fn withdrawal_is_decided_at_scrape_time_without_any_new_poll() {
        let state = ExporterState::new(
            ExporterMetrics::new().expect("metrics"),
            Some(Duration::from_secs(3600)),
        );
        let finished_at = Utc::now();
        state.record_success(snapshot_of(&["Exchange"]), 0, Duration::ZERO, finished_at);
        let at = |minutes| {
            String::from_utf8(
                state
                    .exposition_at(finished_at + chrono::Duration::minutes(minutes))
                    .to_plain(),
            )
            .expect("utf-8")
        };
        assert!(at(59).contains("workload=\"Exchange\""));
        let later = at(61);
        assert!(!later.contains("workload=\"Exchange\""), "{later}");
        assert!(later.contains("partner_center_up 1"), "{later}");
        assert!(
            at(30).contains("workload=\"Exchange\""),
            "nothing was dropped, only withheld"
        );
    }

    #[test]
    fn counters_changed_between_polls_are_in_the_next_scrape() {
        let metrics = ExporterMetrics::new().expect("metrics");
        let tokens = metrics.register_token_metrics().expect("token metrics");
        let state = ExporterState::new(metrics, None);
        state.record_success(snapshot_of(&["Exchange"]), 0, Duration::ZERO, Utc::now());
        let token_requests = |text: &str| {
            text.lines()
                .find(|line| {
                    line.starts_with("partner_center_token_requests_total{result=\"success\"}")
                })
                .map(str::to_owned)
        };
        let first = body(&state);
        assert_eq!(
            token_requests(&first).as_deref(),
            Some("partner_center_token_requests_total{result=\"success\"} 0")
        );
        assert_eq!(body(&state), first, "nothing changed, same rendering");

        // As the authenticator does when it renews a token between polls.
        tokens.count_token_request("success");
        let expiry = Utc::now() + chrono::Duration::hours(1);
        tokens.set_access_token_expiry(expiry);
        let second = body(&state);
        assert_eq!(
            token_requests(&second).as_deref(),
            Some("partner_center_token_requests_total{result=\"success\"} 1")
        );
        let expected = format!(
            "partner_center_access_token_expiry_timestamp_seconds {}\n",
            expiry.timestamp_millis() as f64 / 1000.0
        );
        assert!(second.contains(&expected), "{second}");

        state.record_retries(&["throttled", "throttled"]);
        state.record_poll_interval(Duration::from_secs(600));
        let third = body(&state);
        assert!(
            third.contains("partner_center_request_retries_total{reason=\"throttled\"} 2\n"),
            "{third}"
        );
        assert!(
            third.contains("partner_center_poll_interval_seconds 600\n"),
            "{third}"
        );
        assert!(third.contains("workload=\"Exchange\""), "{third}");
    }

    #[test]
    fn the_compressed_scrape_is_the_plain_one() {
        let metrics = ExporterMetrics::new().expect("metrics");
        metrics.register_token_metrics().expect("token metrics");
        let state = ExporterState::new(metrics, None);
        let workloads: Vec<String> = (0..500).map(|i| format!("Workload {i}")).collect();
        let names: Vec<&str> = workloads.iter().map(String::as_str).collect();
        state.record_success(snapshot_of(&names), 3, Duration::ZERO, Utc::now());
        state.record_failure("http", "HTTP 500".to_owned(), Duration::ZERO, Utc::now());
        let exposition = state.exposition();
        let plain = exposition.to_plain();
        let gzip = exposition.gzip_frames().expect("compressed").concat();
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gzip[..]), &mut unzipped)
            .expect("one gzip member");
        assert_eq!(unzipped, plain);
        let text = String::from_utf8(plain).expect("utf-8");
        assert!(text.contains("workload=\"Workload 499\""), "{text}");
        assert!(text.contains("partner_center_up 0\n"), "{text}");
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
