//! The background loop that polls Partner Center and publishes each result.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::Authenticator;
use crate::partner_center::client::{Client, ClientError, UsageReport};
use crate::snapshot::Snapshot;
use crate::state::ExporterState;

/// At most this many skipped items are logged one by one per poll; the rest
/// are summed up, so a broken answer cannot flood the log.
const MAX_SKIPPED_ITEMS_LOGGED: usize = 10;

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("poll did not finish within {} (poll.timeout)", humantime::format_duration(*.0))]
    Timeout(Duration),
}

impl PollError {
    /// A bounded name for the failure, used as the `reason` metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Client(err) => err.kind(),
            Self::Timeout(_) => "timeout",
        }
    }
}

/// What a successful poll produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollSummary {
    /// Series in the new snapshot.
    pub series: usize,
    /// Items left out as unusable.
    pub skipped: usize,
    /// Items folded into another with the same labels.
    pub duplicates: usize,
    /// Pages fetched.
    pub pages: u32,
}

/// Polls on an interval and hands every result to the shared state.
pub struct Poller {
    client: Client,
    authenticator: Authenticator,
    state: Arc<ExporterState>,
    interval: Duration,
    timeout: Duration,
}

impl Poller {
    pub fn new(
        client: Client,
        authenticator: Authenticator,
        state: Arc<ExporterState>,
        interval: Duration,
        timeout: Duration,
    ) -> Self {
        Self {
            client,
            authenticator,
            state,
            interval,
            timeout,
        }
    }

    /// Polls immediately, then every interval, until `shutdown` is cancelled.
    /// A failed poll is recorded and the loop goes on.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        // A poll that overran the interval (or a suspended host) skips the
        // missed starts and waits for the next one on the schedule, instead
        // of firing them in a burst (Burst) or at once (Delay): the tenant's
        // rate limit is shared and the data changes daily.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = self.poll_once() => {}
            }
        }
        tracing::debug!("poller stopped");
    }

    /// Runs one poll under the poll timeout and records its outcome.
    pub async fn poll_once(&self) -> Result<PollSummary, PollError> {
        let correlation_id = Uuid::new_v4();
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, self.fetch(correlation_id)).await {
            Ok(result) => result,
            Err(_) => Err(PollError::Timeout(self.timeout)),
        };
        let duration = started.elapsed();
        let finished_at = Utc::now();
        match result {
            Ok(report) => {
                let summary = self.publish(report, duration, finished_at);
                tracing::info!(
                    correlation_id = %correlation_id,
                    series = summary.series,
                    skipped = summary.skipped,
                    duplicates = summary.duplicates,
                    pages = summary.pages,
                    duration_seconds = duration.as_secs_f64(),
                    "poll succeeded"
                );
                Ok(summary)
            }
            Err(err) => {
                let ids = match &err {
                    PollError::Client(client_err) => client_err.response_ids().cloned(),
                    PollError::Timeout(_) => None,
                }
                .unwrap_or_default();
                tracing::warn!(
                    correlation_id = %correlation_id,
                    reason = err.kind(),
                    error = %err,
                    ms_request_id = ids.request_id.as_deref().unwrap_or(""),
                    ms_correlation_id = ids.correlation_id.as_deref().unwrap_or(""),
                    ms_cv = ids.cv.as_deref().unwrap_or(""),
                    ms_server_id = ids.server_id.as_deref().unwrap_or(""),
                    duration_seconds = duration.as_secs_f64(),
                    "poll failed; serving the last good values"
                );
                self.state
                    .record_failure(err.kind(), err.to_string(), duration, finished_at);
                Err(err)
            }
        }
    }

    async fn fetch(&self, correlation_id: Uuid) -> Result<UsageReport, PollError> {
        Ok(self
            .client
            .fetch_license_usage(&self.authenticator, correlation_id)
            .await?)
    }

    fn publish(
        &self,
        report: UsageReport,
        duration: Duration,
        finished_at: chrono::DateTime<Utc>,
    ) -> PollSummary {
        for (page, skipped) in report.skipped.iter().take(MAX_SKIPPED_ITEMS_LOGGED) {
            tracing::warn!(
                page,
                index = skipped.index,
                reason = %skipped.reason,
                "skipped a license usage item"
            );
        }
        if report.skipped.len() > MAX_SKIPPED_ITEMS_LOGGED {
            tracing::warn!(
                more = report.skipped.len() - MAX_SKIPPED_ITEMS_LOGGED,
                "skipped more license usage items"
            );
        }
        let snapshot = Snapshot::from_items(report.items);
        let summary = PollSummary {
            series: snapshot.series().len(),
            skipped: report.skipped.len(),
            duplicates: snapshot.duplicates(),
            pages: report.pages,
        };
        if summary.duplicates > 0 {
            tracing::info!(
                duplicates = summary.duplicates,
                "items repeated a workload, service and channel; the newest processedDateTime was kept"
            );
        }
        self.state
            .record_success(snapshot, summary.skipped as u64, duration, finished_at);
        summary
    }
}
