//! The loop that polls one source and publishes each result.
//!
//! Polls start every interval of the source. After a poll that Partner
//! Center throttled, the next start is pushed back instead: the interval
//! doubles for each throttled poll in a row, of any source of the partner
//! tenant (up to [`MAX_STRETCH`] times), and is at least what
//! `Retry-After` asked, because the tenant's rate limit is shared with
//! every other source and every other tool of the partner.

use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::Authenticator;
use crate::collect::customers::CustomerDirectory;
use crate::collect::fan_out::{FanOut, FanOutContext};
use crate::collect::health::CustomerHealth;
use crate::collect::snapshot::Snapshot;
use crate::collect::state::TenantState;
use crate::filters::Filters;
use crate::partner_center::client::{Client, ClientError, Collection, FailureReason, FetchTrace};
use crate::partner_center::commercial::{ReportRequest, ReportRoute};
use crate::sources::{Fetch, Source, parts_left_out_of};

/// At most this many skipped items (or out-of-range values) are logged one
/// by one per poll; the rest are summed up, so a broken answer cannot flood
/// the log.
const MAX_SKIPPED_ITEMS_LOGGED: usize = 10;

/// The most a run of throttled polls multiplies a source's interval by.
pub const MAX_STRETCH: u32 = 8;

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
    pub fn kind(&self) -> FailureReason {
        match self {
            Self::Client(err) => err.kind(),
            Self::Timeout(_) => FailureReason::Timeout,
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

/// A series whose value left its expected range: which range, and the
/// series' label values.
type OutOfRange = (usize, Vec<String>);

/// What every poller shares: the client and its credentials, the state
/// polls are published to, and what the per-customer sources need.
pub struct PollContext {
    pub client: Client,
    pub authenticator: Authenticator,
    /// The tenant's handle on the state its polls are published to.
    pub state: TenantState,
    /// `poll.timeout`: the limit for a poll of a partner-level source or
    /// a report, and for each request of a per-customer one.
    pub timeout: Duration,
    /// The customer listing; `None` when no per-customer source is enabled.
    pub directory: Option<Arc<CustomerDirectory>>,
    /// Where the commercial reports answer.
    pub report_route: Arc<ReportRoute>,
    /// `partner_center.commercial_page_size`.
    pub report_page_size: u32,
    pub filters: Arc<Filters>,
    /// Where looked-up details are kept across restarts; `None` keeps
    /// them in memory only.
    pub state_dir: Option<std::path::PathBuf>,
}

/// Polls source `S` on an interval and hands every result to the shared state.
pub struct Poller<S: Source> {
    context: Arc<PollContext>,
    client: Client,
    state: TenantState,
    interval: Duration,
    /// The limit for one whole poll: `poll.timeout`, or for a source that
    /// requests each customer, its interval (each request has `poll.timeout`).
    timeout: Duration,
    /// The per-customer rows and health, for a source that requests each customer.
    fan_out: FanOut<S>,
    /// Series already reported as outside their expected range, so each is
    /// logged once while it stays there.
    out_of_range: HashSet<OutOfRange>,
    /// Whether the withdrawal of stale series has been logged.
    withdrawal_logged: bool,
    source: PhantomData<S>,
}

impl<S: Source> Poller<S> {
    pub fn new(context: Arc<PollContext>, interval: Duration) -> Self {
        let timeout = match S::FETCH {
            Fetch::PerCustomer(_) => interval.max(context.timeout),
            Fetch::Collection(_) | Fetch::Commercial(_) => context.timeout,
        };
        Self {
            client: context.client.clone(),
            state: context.state.clone(),
            fan_out: FanOut::new(context.state_dir.as_deref()),
            context,
            interval,
            timeout,
            out_of_range: HashSet::new(),
            withdrawal_logged: false,
            source: PhantomData,
        }
    }

    /// Polls immediately, then every interval (stretched after throttling),
    /// until `shutdown` is cancelled. A failed poll is recorded and the loop
    /// goes on.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut next_start = Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(next_start) => {}
            }
            let started = Instant::now();
            let delay = tokio::select! {
                () = shutdown.cancelled() => break,
                (_, delay) = self.poll_and_schedule() => delay,
            };
            next_start = next_start_after(started, delay, Instant::now());
        }
        tracing::debug!(source = S::NAME.as_str(), "poller stopped");
    }

    /// Runs one poll, records its outcome, and returns the time from its
    /// start to the next poll's.
    pub async fn poll_and_schedule(&mut self) -> (Result<PollSummary, PollError>, Duration) {
        let mut trace = FetchTrace::default();
        let result = self.poll_once(&mut trace).await;
        let throttled_polls = self
            .client
            .throttle()
            .record_poll(trace.throttled.is_some());
        let delay = next_delay(self.interval, throttled_polls, trace.throttled);
        self.state.record_poll_interval(S::NAME, delay);
        if delay > self.interval {
            tracing::warn!(
                source = S::NAME.as_str(),
                next_poll_in = %humantime::format_duration(delay),
                throttled_polls,
                "Partner Center throttled this poll; polling less often until it stops"
            );
        }
        (result, delay)
    }

    /// Runs one poll under the poll timeout and records its outcome.
    /// Retries and throttling along the way are written to `trace`.
    pub async fn poll_once(&mut self, trace: &mut FetchTrace) -> Result<PollSummary, PollError> {
        let correlation_id = Uuid::new_v4();
        let started = Instant::now();
        let deadline = started + self.timeout;
        let timeout = self.timeout;
        // A fan-out stops at `deadline` by itself, counting the customers
        // it did not reach, and publishes the rest; the limit here is only
        // a safety net for it, beyond its last request's own limit.
        let limit = match S::FETCH {
            Fetch::PerCustomer(_) => deadline + self.context.timeout,
            Fetch::Collection(_) | Fetch::Commercial(_) => deadline,
        };
        let fetch = self.fetch(correlation_id, deadline, trace);
        let result = match tokio::time::timeout_at(limit, fetch).await {
            Ok(result) => result.map_err(PollError::from),
            Err(_) => Err(PollError::Timeout(timeout)),
        };
        self.state.record_retries(&trace.retries);
        let duration = started.elapsed();
        let finished_at = Utc::now();
        match result {
            Ok((collection, customers)) => {
                let summary = self
                    .publish(collection, customers, duration, finished_at)
                    .await;
                tracing::info!(
                    source = S::NAME.as_str(),
                    correlation_id = %correlation_id,
                    series = summary.series,
                    skipped = summary.skipped,
                    duplicates = summary.duplicates,
                    pages = summary.pages,
                    retries = trace.retries.len(),
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
                    source = S::NAME.as_str(),
                    correlation_id = %correlation_id,
                    reason = err.kind().as_str(),
                    error = %err,
                    ms_request_id = ids.request_id.as_deref().unwrap_or(""),
                    ms_correlation_id = ids.correlation_id.as_deref().unwrap_or(""),
                    ms_cv = ids.cv.as_deref().unwrap_or(""),
                    ms_server_id = ids.server_id.as_deref().unwrap_or(""),
                    retries = trace.retries.len(),
                    duration_seconds = duration.as_secs_f64(),
                    "poll failed; serving the last good values"
                );
                self.state.record_failure(
                    S::NAME,
                    err.kind(),
                    err.to_string(),
                    duration,
                    finished_at,
                );
                if self.state.is_stale(S::NAME, finished_at) && !self.withdrawal_logged {
                    self.withdrawal_logged = true;
                    tracing::warn!(
                        source = S::NAME.as_str(),
                        last_success = self
                            .state
                            .status(S::NAME)
                            .and_then(|status| status.last_success_at)
                            .map(|at| at.to_rfc3339())
                            .unwrap_or_default(),
                        "no successful poll for longer than poll.max_staleness; \
                         the source's series are withdrawn until one succeeds"
                    );
                }
                Err(err)
            }
        }
    }

    /// Fetches the source's data the way it is requested: one collection,
    /// a commercial report, or one collection per customer (with how each
    /// customer fared).
    async fn fetch(
        &mut self,
        correlation_id: Uuid,
        deadline: Instant,
        trace: &mut FetchTrace,
    ) -> Result<(Collection<S::Item>, Option<CustomerHealth>), ClientError> {
        let context = &*self.context;
        match S::FETCH {
            Fetch::Collection(path) => {
                let collection = self
                    .client
                    .fetch_collection(
                        path,
                        S::decode_item,
                        &context.authenticator,
                        correlation_id,
                        deadline,
                        trace,
                    )
                    .await?;
                Ok((self.admitted(collection), None))
            }
            Fetch::Commercial(path) => {
                let report = ReportRequest {
                    route: &context.report_route,
                    path,
                    page_size: context.report_page_size,
                    decode_item: S::decode_item,
                };
                let collection = self
                    .client
                    .fetch_report(
                        &report,
                        &context.authenticator,
                        correlation_id,
                        deadline,
                        trace,
                    )
                    .await?;
                // The report names its customers itself; the listing only
                // keeps their info current, and its failure is not the report's.
                if let Some(directory) = &context.directory
                    && let Err(err) = directory.customers(correlation_id, deadline, trace).await
                {
                    tracing::warn!(
                        source = S::NAME.as_str(),
                        error = %err,
                        "cannot list the customers; their info series stay as last listed"
                    );
                }
                Ok((self.admitted(collection), None))
            }
            Fetch::PerCustomer(path) => {
                let Some(directory) = &context.directory else {
                    return Err(ClientError::Setup(
                        "a per-customer source runs without the customer listing".to_owned(),
                    ));
                };
                let fan_out = FanOutContext {
                    client: &self.client,
                    authenticator: &context.authenticator,
                    directory,
                    filters: &context.filters,
                    request_limit: context.timeout,
                };
                let (collection, customers) = self
                    .fan_out
                    .poll(&fan_out, path, correlation_id, deadline, trace)
                    .await?;
                Ok((collection, Some(customers)))
            }
        }
    }

    /// The collection without the items the operator's filters leave out,
    /// with the parts of the others left out counted as skipped (by their
    /// place among the published items).
    fn admitted(&self, mut collection: Collection<S::Item>) -> Collection<S::Item> {
        let filters = &self.context.filters;
        collection.items.retain(|item| S::admit(item, filters));
        let parts_left_out = parts_left_out_of::<S>(&collection.items);
        collection.skipped.extend(parts_left_out);
        collection
    }

    /// Builds the snapshot, renders it and publishes it, on the blocking
    /// pool: a large answer takes a while, and the poller's runtime must
    /// not wait for it.
    async fn publish(
        &mut self,
        collection: Collection<S::Item>,
        customers: Option<CustomerHealth>,
        duration: Duration,
        finished_at: chrono::DateTime<Utc>,
    ) -> PollSummary {
        for (page, skipped) in collection.skipped.iter().take(MAX_SKIPPED_ITEMS_LOGGED) {
            tracing::warn!(
                source = S::NAME.as_str(),
                page,
                index = skipped.index,
                reason = %skipped.reason,
                "skipped a {}",
                S::ITEM_NOUN
            );
        }
        if collection.skipped.len() > MAX_SKIPPED_ITEMS_LOGGED {
            tracing::warn!(
                source = S::NAME.as_str(),
                more = collection.skipped.len() - MAX_SKIPPED_ITEMS_LOGGED,
                "skipped more {}s",
                S::ITEM_NOUN
            );
        }
        if self.withdrawal_logged {
            self.withdrawal_logged = false;
            tracing::info!(
                source = S::NAME.as_str(),
                "a poll succeeded again; the source's series are served again"
            );
        }
        let skipped = collection.skipped.len();
        let pages = collection.pages;
        let items = collection.items;
        let state = self.state.clone();
        let mut out_of_range = std::mem::take(&mut self.out_of_range);
        let built = tokio::task::spawn_blocking(move || {
            let snapshot = Snapshot::<S>::of_tenant(state.tenant(), items);
            log_new_out_of_range(&mut out_of_range, &snapshot);
            let counts = (snapshot.series().len(), snapshot.duplicates());
            // The snapshot's items are freed here too, off the poller's runtime.
            match customers {
                Some(customers) => state.record_fanned_out_snapshot(
                    snapshot,
                    skipped as u64,
                    customers,
                    duration,
                    finished_at,
                ),
                None => state.record_snapshot(snapshot, skipped as u64, duration, finished_at),
            }
            (counts, out_of_range)
        })
        .await;
        let (series, duplicates) = match built {
            Ok((counts, out_of_range)) => {
                self.out_of_range = out_of_range;
                counts
            }
            // A panic is a bug: let it end the poller, which stops the exporter.
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            // Cancelled: the runtime is shutting down, nothing is served any more.
            Err(_) => (0, 0),
        };
        if duplicates > 0 {
            tracing::info!(
                source = S::NAME.as_str(),
                duplicates,
                "items repeated the {} of another; the newest processedDateTime was kept",
                S::LABELS.join(", ")
            );
        }
        PollSummary {
            series,
            skipped,
            duplicates,
            pages,
        }
    }
}

/// The interval, or after throttling, longer: doubled for each throttled
/// poll in a row, up to [`MAX_STRETCH`] times, and at least the
/// `Retry-After` asked for (itself capped at the same maximum).
fn next_delay(interval: Duration, throttled_polls: u32, throttled: Option<Duration>) -> Duration {
    if throttled_polls == 0 {
        return interval;
    }
    let longest = interval.saturating_mul(MAX_STRETCH);
    let doubled = interval.saturating_mul(2u32.saturating_pow(throttled_polls));
    doubled
        .max(throttled.unwrap_or(Duration::ZERO))
        .min(longest)
}

/// Logs each series whose value has left its expected range since the
/// last poll; `out_of_range` holds those of the last poll and is replaced
/// by this one's. A value out of range is served as received: the API
/// does not promise the range, and hiding it would hide the upstream
/// problem.
fn log_new_out_of_range<S: Source>(out_of_range: &mut HashSet<OutOfRange>, snapshot: &Snapshot<S>) {
    if S::EXPECTED_RANGES.is_empty() {
        return;
    }
    let mut now_out = HashSet::new();
    let mut newly_out = 0usize;
    for item in snapshot.series() {
        for (index, expected) in S::EXPECTED_RANGES.iter().enumerate() {
            let value = (expected.value)(item);
            if expected.range.contains(&value) {
                continue;
            }
            let labels = S::label_values(item);
            let key: OutOfRange = (
                index,
                labels
                    .as_ref()
                    .iter()
                    .map(|value| (*value).to_owned())
                    .collect(),
            );
            if !out_of_range.contains(&key) {
                newly_out += 1;
                if newly_out <= MAX_SKIPPED_ITEMS_LOGGED {
                    let series: Vec<String> = S::LABELS
                        .iter()
                        .zip(labels.as_ref())
                        .map(|(name, value)| format!("{name}={value}"))
                        .collect();
                    tracing::warn!(
                        source = S::NAME.as_str(),
                        series = %series.join(","),
                        percent = value,
                        "{} is outside {}-{}; served as received",
                        expected.field,
                        expected.range.start(),
                        expected.range.end()
                    );
                }
            }
            now_out.insert(key);
        }
    }
    if newly_out > MAX_SKIPPED_ITEMS_LOGGED {
        tracing::warn!(
            source = S::NAME.as_str(),
            more = newly_out - MAX_SKIPPED_ITEMS_LOGGED,
            "more series have values outside their expected range"
        );
    }
    *out_of_range = now_out;
}

/// When the next poll starts: `delay` after this one started, or, when
/// this poll ran past that, the next start on the same schedule (missed
/// starts are skipped, not made up in a burst).
fn next_start_after(started: Instant, delay: Duration, now: Instant) -> Instant {
    let mut next = started + delay;
    if next <= now && !delay.is_zero() {
        let behind = now.duration_since(next).as_nanos();
        let missed = behind / delay.as_nanos() + 1;
        let missed = u32::try_from(missed).unwrap_or(u32::MAX);
        next += delay.saturating_mul(missed);
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_polls_stretch_the_interval_up_to_its_limit() {
        let minute = Duration::from_secs(60);
        assert_eq!(next_delay(minute, 0, None), minute);
        assert_eq!(next_delay(minute, 1, None), 2 * minute);
        assert_eq!(
            next_delay(minute, 2, Some(Duration::from_secs(1))),
            4 * minute
        );
        assert_eq!(next_delay(minute, 1, Some(5 * minute)), 5 * minute);
        assert_eq!(next_delay(minute, 10, None), MAX_STRETCH * minute);
        assert_eq!(
            next_delay(minute, 1, Some(60 * minute)),
            MAX_STRETCH * minute
        );
    }

    #[test]
    fn an_overrun_poll_skips_to_the_next_start_on_the_schedule() {
        let started = Instant::now();
        let minute = Duration::from_secs(60);
        assert_eq!(
            next_start_after(started, minute, started + Duration::from_secs(5)),
            started + minute
        );
        assert_eq!(
            next_start_after(started, minute, started + Duration::from_secs(150)),
            started + 3 * minute
        );
        assert_eq!(
            next_start_after(started, minute, started + minute),
            started + 2 * minute
        );
    }
}
