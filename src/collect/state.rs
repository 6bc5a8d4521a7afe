//! What the poller has learnt and the web server shows: the outcome of
//! each source's polls, the exporter's metrics, and the `/metrics` body
//! made of parts rendered ahead of the scrapes.
//!
//! The poller publishes each poll's outcome whole: the source's health
//! and, after a success, its snapshot's families, both already rendered
//! and compressed; the other sources' parts stay as they are. The
//! exporter's own metrics are rendered again by the first scrape after
//! they changed, the process metrics at most once a second. A scrape then
//! only puts ready parts together, each family once.
//!
//! With `poll.max_staleness` set, a source's series older than that are
//! withheld at scrape time, so they vanish on time even when no poll
//! finishes; each source's on its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};

use super::health::{CustomerHealth, PollHealth, SlotHealth, render_poll_health};
use crate::collect::snapshot::Snapshot;
use crate::exposition::metrics::{ExporterMetrics, TenantMetrics};
use crate::exposition::{Exposition, Part, RenderedFamilies};
use crate::partner_center::client::{FailureReason, RetryReason};
use crate::sources::{Source, SourceName};
use crate::tenant::TenantLabel;

/// How long a reading of the process metrics is served: they are read
/// from `/proc`, which costs more than the rest of a scrape together.
pub const PROCESS_METRICS_MAX_AGE: Duration = Duration::from_secs(1);

/// The outcome of a source's most recent poll, for the landing page and
/// readiness.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceStatus {
    /// Whose source it is.
    pub tenant: TenantLabel,
    pub source: SourceName,
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
    /// For a source that requests each customer: how many customers it
    /// covers, and how many of them failed their last request.
    pub customers: Option<(usize, usize)>,
}

/// What one source of one partner tenant has published: its last good
/// families and the outcome of its polls.
#[derive(Debug, Clone)]
struct SourceSlot {
    tenant: TenantLabel,
    source: SourceName,
    /// The last successful poll's families, rendered. Only byte buffers:
    /// the snapshot's items stay with the poller, so a scrape that
    /// outlives a swap never has a large structure to free.
    families: RenderedFamilies,
    /// How many series `families` has.
    series: usize,
    health: PollHealth,
    last_poll_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    last_success_at: Option<DateTime<Utc>>,
}

impl SourceSlot {
    fn new(tenant: TenantLabel, source: SourceName) -> Self {
        Self {
            tenant,
            source,
            families: RenderedFamilies::default(),
            series: 0,
            health: PollHealth::default(),
            last_poll_at: None,
            last_error: None,
            last_success_at: None,
        }
    }

    /// Whether the slot holds series older than `max_staleness` at `now`.
    /// Before the first success there is nothing to withdraw.
    fn is_stale(&self, max_staleness: Option<Duration>, now: DateTime<Utc>) -> bool {
        match (max_staleness, self.last_success_at) {
            (Some(limit), Some(success)) => (now - success).to_std().is_ok_and(|age| age > limit),
            _ => false,
        }
    }

    fn status(&self, max_staleness: Option<Duration>, now: DateTime<Utc>) -> SourceStatus {
        SourceStatus {
            tenant: self.tenant.clone(),
            source: self.source,
            last_poll_at: self.last_poll_at,
            last_error: self.last_error.clone(),
            last_success_at: self.last_success_at,
            series: self.series,
            withdrawn: self.is_stale(max_staleness, now),
            customers: self.health.customers.as_ref().map(|health| {
                let failing = health
                    .customers
                    .iter()
                    .filter(|(_, failure)| failure.is_some())
                    .count();
                (health.customers.len(), failing)
            }),
        }
    }
}

/// Everything the polls have published, swapped in as a whole so that a
/// source's series, its health metrics, `/readyz` and the landing page
/// change together.
#[derive(Debug)]
struct Published {
    /// One slot per enabled source of each tenant: the tenants in the
    /// order they were added, each tenant's sources in the order of the
    /// table of sources.
    slots: Vec<SourceSlot>,
    /// Every slot's health, rendered.
    health_part: Part,
    /// `partner_center_customer_info` of each tenant's last customer listing.
    customer_info: Vec<(TenantLabel, RenderedFamilies)>,
}

impl Published {
    fn new(slots: Vec<SourceSlot>, customer_info: Vec<(TenantLabel, RenderedFamilies)>) -> Self {
        let health: Vec<SlotHealth<'_>> = slots
            .iter()
            .map(|slot| (&slot.tenant, slot.source, &slot.health))
            .collect();
        let health_part = Part::new(render_poll_health(&health));
        Self {
            slots,
            health_part,
            customer_info,
        }
    }

    fn slot(&self, tenant: &TenantLabel, source: SourceName) -> Option<&SourceSlot> {
        self.slots
            .iter()
            .find(|slot| slot.source == source && slot.tenant == *tenant)
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
    /// Held while a poll's outcome is merged into `published`: the sources
    /// are polled side by side, and two outcomes merged at once would
    /// lose one.
    publishing: Mutex<()>,
    own: ArcSwap<OwnRendering>,
    process: ArcSwap<ProcessReading>,
    /// Set while one scrape reads the process metrics; the others send
    /// the previous reading meanwhile instead of reading `/proc` too.
    process_reading: AtomicBool,
    /// `poll.max_staleness`: how old a source's last success may be before
    /// its series stop being served.
    max_staleness: Option<Duration>,
}

impl ExporterState {
    /// State without tenants yet; each is added with
    /// [`ExporterState::add_tenant`] before its polls start.
    pub fn new(metrics: ExporterMetrics, max_staleness: Option<Duration>) -> Self {
        Self {
            // Never matches a count, so the first scrape renders.
            own: ArcSwap::from_pointee(OwnRendering {
                changes: u64::MAX,
                part: Part::default(),
            }),
            metrics,
            published: ArcSwap::from_pointee(Published::new(Vec::new(), Vec::new())),
            publishing: Mutex::new(()),
            process: ArcSwap::from_pointee(ProcessReading {
                taken_at: None,
                part: Part::default(),
            }),
            process_reading: AtomicBool::new(false),
            max_staleness,
        }
    }

    /// Adds `tenant` with its enabled `sources`, in the order given, and
    /// registers its own metrics; what its pollers publish goes through
    /// the handle returned. A tenant is added once.
    pub fn add_tenant(
        self: &Arc<Self>,
        tenant: TenantLabel,
        sources: &[SourceName],
    ) -> Result<TenantState, prometheus::Error> {
        // Every retry reason is shown from the first scrape on.
        let reasons: Vec<&str> = RetryReason::ALL.iter().map(|r| r.as_str()).collect();
        let metrics = self.metrics.register_tenant(&tenant, &reasons)?;
        let _publishing = self
            .publishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let previous = self.published.load();
        let mut slots = previous.slots.clone();
        slots.extend(
            sources
                .iter()
                .map(|source| SourceSlot::new(tenant.clone(), *source)),
        );
        self.published.store(Arc::new(Published::new(
            slots,
            previous.customer_info.clone(),
        )));
        Ok(TenantState {
            shared: self.clone(),
            tenant,
            metrics,
        })
    }

    /// The exporter's own metrics, for the parts of a tenant that register
    /// metrics of their own (the token metrics).
    pub fn metrics(&self) -> &ExporterMetrics {
        &self.metrics
    }

    /// Whether, at `now`, `tenant`'s `source`'s last success is older than
    /// `poll.max_staleness`.
    fn is_stale(&self, tenant: &TenantLabel, source: SourceName, now: DateTime<Utc>) -> bool {
        self.published
            .load()
            .slot(tenant, source)
            .is_some_and(|slot| slot.is_stale(self.max_staleness, now))
    }

    /// Replaces `tenant`'s `source`'s slot by what `change` makes of it and
    /// renders the health again, as one swap.
    fn publish(
        &self,
        tenant: &TenantLabel,
        source: SourceName,
        change: impl FnOnce(&mut SourceSlot),
    ) {
        // The data under the lock is `published` itself, valid whatever a
        // panicking holder did.
        let _publishing = self
            .publishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let previous = self.published.load();
        let mut slots = previous.slots.clone();
        let index = match slots
            .iter()
            .position(|slot| slot.source == source && slot.tenant == *tenant)
        {
            Some(index) => index,
            None => {
                slots.push(SourceSlot::new(tenant.clone(), source));
                slots.len() - 1
            }
        };
        change(&mut slots[index]);
        self.published.store(Arc::new(Published::new(
            slots,
            previous.customer_info.clone(),
        )));
    }

    /// Publishes the customer info of `tenant`'s new customer listing,
    /// replacing its previous listing's whole.
    fn record_customer_info(&self, tenant: &TenantLabel, info: RenderedFamilies) {
        let _publishing = self
            .publishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let previous = self.published.load();
        let mut customer_info = previous.customer_info.clone();
        match customer_info.iter_mut().find(|(owner, _)| owner == tenant) {
            Some((_, kept)) => *kept = info,
            None => customer_info.push((tenant.clone(), info)),
        }
        self.published.store(Arc::new(Published {
            slots: previous.slots.clone(),
            health_part: previous.health_part.clone(),
            customer_info,
        }));
    }

    /// Publishes a successful poll of `tenant`'s `S`: its snapshot replaces
    /// the source's previous one whole, and the health is rendered here, once.
    fn record_poll<S: Source>(
        &self,
        tenant: &TenantLabel,
        snapshot: Snapshot<S>,
        skipped: u64,
        customers: Option<CustomerHealth>,
        duration: Duration,
        finished_at: DateTime<Utc>,
    ) {
        let families = snapshot.families().clone();
        let series = snapshot.series().len();
        let processed = snapshot.processed_range();
        self.publish(tenant, S::NAME, |slot| {
            slot.health.up = true;
            slot.health.last_success_at = Some(finished_at);
            slot.health.last_duration_seconds = duration.as_secs_f64();
            slot.health.items_skipped = slot.health.items_skipped.saturating_add(skipped);
            slot.health.processed = processed;
            if customers.is_some() {
                slot.health.customers = customers;
            }
            slot.families = families;
            slot.series = series;
            slot.last_poll_at = Some(finished_at);
            slot.last_error = None;
            slot.last_success_at = Some(finished_at);
        });
    }

    /// Records a failed poll of `tenant`'s `source`. Its last good snapshot
    /// stays in place, and no other slot changes.
    fn record_failure(
        &self,
        tenant: &TenantLabel,
        source: SourceName,
        reason: FailureReason,
        message: String,
        duration: Duration,
        finished_at: DateTime<Utc>,
    ) {
        self.publish(tenant, source, |slot| {
            slot.health.up = false;
            slot.health.last_duration_seconds = duration.as_secs_f64();
            slot.health.count_error(reason);
            slot.last_poll_at = Some(finished_at);
            slot.last_error = Some(message);
        });
    }

    /// What a scrape sends now.
    pub fn exposition(&self) -> Exposition {
        self.exposition_at(Utc::now())
    }

    /// What a scrape at `now` sends: the exporter's own metrics, the
    /// process metrics, the polls' health, and each slot's families unless
    /// they are older than `poll.max_staleness` at `now`.
    pub fn exposition_at(&self, now: DateTime<Utc>) -> Exposition {
        // The polls' outcome first: what a poll counts on the way (its
        // retries) is recorded before its outcome is published, so the own
        // metrics read after it include all of it. Read the other way round,
        // a poll ending in between would show its failure without its retries.
        let published = self.published.load();
        let mut exposition = Exposition::new();
        exposition.push(self.own_part());
        exposition.push(self.process_part());
        exposition.push(published.health_part.clone());
        // Every tenant's slots are put together, so that each family is
        // written once.
        let fresh: Vec<&RenderedFamilies> = published
            .slots
            .iter()
            .filter(|slot| !slot.is_stale(self.max_staleness, now))
            .map(|slot| &slot.families)
            .collect();
        exposition.push_families(&fresh);
        let customer_info: Vec<&RenderedFamilies> = published
            .customer_info
            .iter()
            .map(|(_, info)| info)
            .collect();
        exposition.push_families(&customer_info);
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

    /// True once every enabled source has finished its first poll and at
    /// least one has succeeded: from then on there is data to serve, and
    /// no source is still on its way to its first answer. A source that
    /// requests each customer is not waited for once another has data:
    /// its first poll may take as long as its interval.
    pub fn is_ready(&self) -> bool {
        let published = self.published.load();
        published
            .slots
            .iter()
            .all(|slot| slot.last_poll_at.is_some() || slot.source.is_fanned_out())
            && published
                .slots
                .iter()
                .any(|slot| slot.last_success_at.is_some())
    }

    /// The outcome of `tenant`'s `source`'s most recent poll, if it is enabled.
    pub fn status(&self, tenant: &TenantLabel, source: SourceName) -> Option<SourceStatus> {
        self.published
            .load()
            .slot(tenant, source)
            .map(|slot| slot.status(self.max_staleness, Utc::now()))
    }

    /// The outcome of every enabled source's most recent poll: tenant by
    /// tenant, each in the order of the table of sources.
    pub fn statuses(&self) -> Vec<SourceStatus> {
        let now = Utc::now();
        self.published
            .load()
            .slots
            .iter()
            .map(|slot| slot.status(self.max_staleness, now))
            .collect()
    }
}

/// One partner tenant's handle on the shared state: what its pollers and
/// its customer listing publish, labelled with its name, and its own
/// metrics. Cheap to clone.
#[derive(Clone)]
pub struct TenantState {
    shared: Arc<ExporterState>,
    tenant: TenantLabel,
    metrics: TenantMetrics,
}

impl TenantState {
    /// Whose handle it is.
    pub fn tenant(&self) -> &TenantLabel {
        &self.tenant
    }

    /// The state every tenant shares.
    pub fn shared(&self) -> &Arc<ExporterState> {
        &self.shared
    }

    /// Counts requests that were sent again, one `reason` per retry.
    pub fn record_retries(&self, reasons: &[RetryReason]) {
        let reasons: Vec<&str> = reasons.iter().map(|reason| reason.as_str()).collect();
        self.metrics.count_retries(&reasons);
    }

    /// Publishes the time until `source`'s next poll starts.
    pub fn record_poll_interval(&self, source: SourceName, interval: Duration) {
        self.metrics
            .set_poll_interval(source.as_str(), interval.as_secs_f64());
    }

    /// Whether, at `now`, `source`'s last success is older than `poll.max_staleness`.
    pub fn is_stale(&self, source: SourceName, now: DateTime<Utc>) -> bool {
        self.shared.is_stale(&self.tenant, source, now)
    }

    /// The outcome of `source`'s most recent poll, if it is enabled.
    pub fn status(&self, source: SourceName) -> Option<SourceStatus> {
        self.shared.status(&self.tenant, source)
    }

    /// Publishes the customer info of a new customer listing, replacing
    /// the previous listing's whole.
    pub fn record_customer_info(&self, customer_info: RenderedFamilies) {
        self.shared
            .record_customer_info(&self.tenant, customer_info);
    }

    /// Publishes a successful poll of `S`: its snapshot replaces the
    /// source's previous one whole, and the health is rendered here, once.
    pub fn record_snapshot<S: Source>(
        &self,
        snapshot: Snapshot<S>,
        skipped: u64,
        duration: Duration,
        finished_at: DateTime<Utc>,
    ) {
        self.shared
            .record_poll::<S>(&self.tenant, snapshot, skipped, None, duration, finished_at);
    }

    /// As [`TenantState::record_snapshot`], for a source that requests
    /// each customer: with how each customer fared, in the same swap.
    pub fn record_fanned_out_snapshot<S: Source>(
        &self,
        snapshot: Snapshot<S>,
        skipped: u64,
        customers: CustomerHealth,
        duration: Duration,
        finished_at: DateTime<Utc>,
    ) {
        self.shared.record_poll::<S>(
            &self.tenant,
            snapshot,
            skipped,
            Some(customers),
            duration,
            finished_at,
        );
    }

    /// Records a failed poll of `source`. Its last good snapshot stays in
    /// place, and no other slot changes.
    pub fn record_failure(
        &self,
        source: SourceName,
        reason: FailureReason,
        message: String,
        duration: Duration,
        finished_at: DateTime<Utc>,
    ) {
        self.shared
            .record_failure(&self.tenant, source, reason, message, duration, finished_at);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// State with one unnamed tenant of `sources`, and its handle.
    fn single(
        metrics: ExporterMetrics,
        max_staleness: Option<Duration>,
        sources: &[SourceName],
    ) -> (Arc<ExporterState>, TenantState) {
        let state = Arc::new(ExporterState::new(metrics, max_staleness));
        let tenant = state
            .add_tenant(TenantLabel::NONE, sources)
            .expect("tenant metrics");
        (state, tenant)
    }

    const USAGE: &[SourceName] = &[SourceName::LicenseUsage];
    use crate::sources::license_deployment::{LicenseDeployment, LicenseDeploymentSource};
    use crate::sources::license_usage::{LicenseUsage, LicenseUsageSource};

    fn snapshot_of(workloads: &[&str]) -> Snapshot<LicenseUsageSource> {
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
        let (state, tenant) = single(ExporterMetrics::new().expect("metrics"), None, USAGE);
        assert!(!state.is_ready());
        tenant.record_snapshot(
            snapshot_of(&["Exchange"]),
            2,
            Duration::from_millis(250),
            Utc::now(),
        );
        assert!(state.is_ready());
        let text = body(&state);
        assert!(
            text.contains("partner_center_up{source=\"license_usage\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("partner_center_items_skipped_total{source=\"license_usage\"} 2"),
            "{text}"
        );
        assert!(text.contains("workload=\"Exchange\""), "{text}");

        tenant.record_failure(
            SourceName::LicenseUsage,
            FailureReason::Http,
            "HTTP 500".to_owned(),
            Duration::from_secs(1),
            Utc::now(),
        );
        let text = body(&state);
        assert!(
            text.contains("partner_center_up{source=\"license_usage\"} 0"),
            "{text}"
        );
        assert!(
            text.contains(
                "partner_center_poll_errors_total{source=\"license_usage\",reason=\"http\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("workload=\"Exchange\""),
            "last values are still served: {text}"
        );
        assert!(state.is_ready(), "readiness survives a failed poll");
        let status = state
            .status(&TenantLabel::NONE, SourceName::LicenseUsage)
            .expect("enabled");
        assert_eq!(status.last_error.as_deref(), Some("HTTP 500"));
        assert_eq!(status.series, 1);
    }

    #[test]
    fn new_snapshot_replaces_the_old_one_whole() {
        let (state, tenant) = single(ExporterMetrics::new().expect("metrics"), None, USAGE);
        tenant.record_snapshot(
            snapshot_of(&["Exchange", "SharePoint"]),
            0,
            Duration::ZERO,
            Utc::now(),
        );
        tenant.record_snapshot(snapshot_of(&["Exchange"]), 0, Duration::ZERO, Utc::now());
        let text = body(&state);
        assert!(text.contains("workload=\"Exchange\""), "{text}");
        assert!(
            !text.contains("SharePoint"),
            "vanished series must vanish: {text}"
        );
    }

    #[test]
    fn series_older_than_max_staleness_are_withdrawn_but_health_stays() {
        let (state, tenant) = single(
            ExporterMetrics::new().expect("metrics"),
            Some(Duration::from_secs(3600)),
            USAGE,
        );
        let two_hours_ago = Utc::now() - chrono::Duration::hours(2);
        tenant.record_snapshot(snapshot_of(&["Exchange"]), 0, Duration::ZERO, two_hours_ago);
        tenant.record_failure(
            SourceName::LicenseUsage,
            FailureReason::Http,
            "HTTP 500".to_owned(),
            Duration::ZERO,
            Utc::now(),
        );
        assert!(tenant.is_stale(SourceName::LicenseUsage, Utc::now()));
        assert!(!tenant.is_stale(
            SourceName::LicenseUsage,
            two_hours_ago + chrono::Duration::minutes(30)
        ));
        let text = body(&state);
        assert!(!text.contains("workload=\"Exchange\""), "{text}");
        assert!(
            text.contains("partner_center_up{source=\"license_usage\"} 0"),
            "{text}"
        );
        let expected = format!(
            "partner_center_last_success_timestamp_seconds{{source=\"license_usage\"}} {}",
            two_hours_ago.timestamp_millis() as f64 / 1000.0
        );
        assert!(text.contains(&expected), "{text}");
        assert!(
            state
                .status(&TenantLabel::NONE, SourceName::LicenseUsage)
                .expect("enabled")
                .withdrawn
        );

        tenant.record_snapshot(snapshot_of(&["Exchange"]), 0, Duration::ZERO, Utc::now());
        assert!(body(&state).contains("workload=\"Exchange\""));
        assert!(
            !state
                .status(&TenantLabel::NONE, SourceName::LicenseUsage)
                .expect("enabled")
                .withdrawn
        );
    }

    #[test]
    fn withdrawal_is_decided_at_scrape_time_without_any_new_poll() {
        let (state, tenant) = single(
            ExporterMetrics::new().expect("metrics"),
            Some(Duration::from_secs(3600)),
            USAGE,
        );
        let finished_at = Utc::now();
        tenant.record_snapshot(snapshot_of(&["Exchange"]), 0, Duration::ZERO, finished_at);
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
        assert!(
            later.contains("partner_center_up{source=\"license_usage\"} 1"),
            "{later}"
        );
        assert!(
            at(30).contains("workload=\"Exchange\""),
            "nothing was dropped, only withheld"
        );
    }

    #[test]
    fn counters_changed_between_polls_are_in_the_next_scrape() {
        let metrics = ExporterMetrics::new().expect("metrics");
        let tokens = metrics
            .register_token_metrics(&TenantLabel::NONE, &["success"])
            .expect("token metrics");
        let (state, tenant) = single(metrics, None, USAGE);
        tenant.record_snapshot(snapshot_of(&["Exchange"]), 0, Duration::ZERO, Utc::now());
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

        tenant.record_retries(&[RetryReason::Throttled, RetryReason::Throttled]);
        tenant.record_poll_interval(SourceName::LicenseUsage, Duration::from_secs(600));
        let third = body(&state);
        assert!(
            third.contains("partner_center_request_retries_total{reason=\"throttled\"} 2\n"),
            "{third}"
        );
        assert!(
            third.contains("partner_center_poll_interval_seconds{source=\"license_usage\"} 600\n"),
            "{third}"
        );
        assert!(third.contains("workload=\"Exchange\""), "{third}");
    }

    #[test]
    fn the_compressed_scrape_is_the_plain_one() {
        let metrics = ExporterMetrics::new().expect("metrics");
        metrics
            .register_token_metrics(&TenantLabel::NONE, &["success"])
            .expect("token metrics");
        let (state, tenant) = single(metrics, None, USAGE);
        let workloads: Vec<String> = (0..500).map(|i| format!("Workload {i}")).collect();
        let names: Vec<&str> = workloads.iter().map(String::as_str).collect();
        tenant.record_snapshot(snapshot_of(&names), 3, Duration::ZERO, Utc::now());
        tenant.record_failure(
            SourceName::LicenseUsage,
            FailureReason::Http,
            "HTTP 500".to_owned(),
            Duration::ZERO,
            Utc::now(),
        );
        let exposition = state.exposition();
        let plain = exposition.to_plain();
        let gzip = exposition.gzip_frames().expect("compressed").concat();
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gzip[..]), &mut unzipped)
            .expect("one gzip member");
        assert_eq!(unzipped, plain);
        let text = String::from_utf8(plain).expect("utf-8");
        assert!(text.contains("workload=\"Workload 499\""), "{text}");
        assert!(
            text.contains("partner_center_up{source=\"license_usage\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn without_max_staleness_old_series_stay() {
        let (state, tenant) = single(ExporterMetrics::new().expect("metrics"), None, USAGE);
        let long_ago = Utc::now() - chrono::Duration::days(30);
        tenant.record_snapshot(snapshot_of(&["Exchange"]), 0, Duration::ZERO, long_ago);
        assert!(!tenant.is_stale(SourceName::LicenseUsage, Utc::now()));
        assert!(body(&state).contains("workload=\"Exchange\""));
    }

    fn deployment_snapshot(services: &[&str]) -> Snapshot<LicenseDeploymentSource> {
        Snapshot::from_items(services.iter().map(|service| LicenseDeployment {
            service: (*service).to_owned(),
            channel: "reseller".to_owned(),
            prorated_percent: 40.0,
            licenses_sold: 10.0,
            processed_at: Utc::now(),
        }))
    }

    const BOTH: &[SourceName] = &[SourceName::LicenseUsage, SourceName::LicenseDeployment];

    #[test]
    fn two_tenants_publish_apart_and_each_family_is_written_once() {
        let state = Arc::new(ExporterState::new(
            ExporterMetrics::new().expect("metrics"),
            None,
        ));
        let eu = state
            .add_tenant(TenantLabel::named("contoso-eu"), USAGE)
            .expect("tenant metrics");
        let us = state
            .add_tenant(TenantLabel::named("contoso-us"), USAGE)
            .expect("tenant metrics");
        assert!(
            state
                .add_tenant(TenantLabel::named("contoso-eu"), USAGE)
                .is_err(),
            "a name is added once"
        );
        let of_tenant = |tenant: &TenantState, workload: &str| {
            Snapshot::<LicenseUsageSource>::of_tenant(
                tenant.tenant(),
                vec![LicenseUsage {
                    workload: workload.to_owned(),
                    service: "o365".to_owned(),
                    channel: "reseller".to_owned(),
                    prorated_percent: 50.0,
                    processed_at: Utc::now(),
                }],
            )
        };
        eu.record_snapshot(of_tenant(&eu, "Exchange"), 0, Duration::ZERO, Utc::now());
        us.record_snapshot(of_tenant(&us, "Teams"), 0, Duration::ZERO, Utc::now());
        us.record_failure(
            SourceName::LicenseUsage,
            FailureReason::Throttled,
            "throttled".to_owned(),
            Duration::ZERO,
            Utc::now(),
        );
        eu.record_retries(&[RetryReason::Http]);
        let text = body(&state);
        for expected in [
            "partner_center_up{tenant=\"contoso-eu\",source=\"license_usage\"} 1\n",
            "partner_center_up{tenant=\"contoso-us\",source=\"license_usage\"} 0\n",
            "partner_center_license_usage_prorated_percent{tenant=\"contoso-eu\",channel=\"reseller\",service=\"o365\",workload=\"Exchange\"}",
            "partner_center_license_usage_prorated_percent{tenant=\"contoso-us\",channel=\"reseller\",service=\"o365\",workload=\"Teams\"}",
            "partner_center_request_retries_total{reason=\"http\",tenant=\"contoso-eu\"} 1\n",
            "partner_center_request_retries_total{reason=\"http\",tenant=\"contoso-us\"} 0\n",
        ] {
            assert!(text.contains(expected), "{expected} missing in\n{text}");
        }
        for line in text.lines().filter(|line| line.starts_with("# TYPE ")) {
            assert_eq!(
                text.lines().filter(|other| *other == line).count(),
                1,
                "{line} twice in\n{text}"
            );
        }
        let statuses = state.statuses();
        assert_eq!(statuses.len(), 2);
        assert_eq!(statuses[0].tenant, TenantLabel::named("contoso-eu"));
        assert_eq!(statuses[0].last_error, None);
        assert_eq!(statuses[1].last_error.as_deref(), Some("throttled"));
        assert_eq!(
            statuses[1].series, 1,
            "the throttled tenant keeps its last values"
        );
    }

    #[test]
    fn one_source_failing_leaves_the_others_series_and_health_alone() {
        let (state, tenant) = single(ExporterMetrics::new().expect("metrics"), None, BOTH);
        tenant.record_snapshot(snapshot_of(&["Exchange"]), 0, Duration::ZERO, Utc::now());
        tenant.record_snapshot(
            deployment_snapshot(&["o365"]),
            0,
            Duration::ZERO,
            Utc::now(),
        );
        tenant.record_failure(
            SourceName::LicenseDeployment,
            FailureReason::Http,
            "HTTP 500".to_owned(),
            Duration::ZERO,
            Utc::now(),
        );
        let text = body(&state);
        assert!(
            text.contains("partner_center_up{source=\"license_usage\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("partner_center_up{source=\"license_deployment\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "partner_center_poll_errors_total{source=\"license_usage\",reason=\"http\"} 0\n"
            ),
            "{text}"
        );
        assert!(text.contains("workload=\"Exchange\""), "{text}");
        assert!(
            text.contains("partner_center_license_deployment_licenses_sold{channel=\"reseller\",service=\"o365\"} 10\n"),
            "the failed source's last values stay: {text}"
        );
        let usage = state
            .status(&TenantLabel::NONE, SourceName::LicenseUsage)
            .expect("enabled");
        assert_eq!(usage.last_error, None);
        let deployment = state
            .status(&TenantLabel::NONE, SourceName::LicenseDeployment)
            .expect("enabled");
        assert_eq!(deployment.last_error.as_deref(), Some("HTTP 500"));
        assert_eq!(deployment.series, 1);
        for line in text.lines().filter(|line| line.starts_with("# TYPE ")) {
            assert_eq!(
                text.lines().filter(|other| *other == line).count(),
                1,
                "{line} twice in\n{text}"
            );
        }
    }

    #[test]
    fn ready_once_every_source_has_polled_and_one_has_succeeded() {
        let (state, tenant) = single(ExporterMetrics::new().expect("metrics"), None, BOTH);
        tenant.record_snapshot(snapshot_of(&["Exchange"]), 0, Duration::ZERO, Utc::now());
        assert!(
            !state.is_ready(),
            "license_deployment has not finished a poll"
        );
        tenant.record_failure(
            SourceName::LicenseDeployment,
            FailureReason::Auth,
            "refused".to_owned(),
            Duration::ZERO,
            Utc::now(),
        );
        assert!(state.is_ready());

        let (failing, failing_tenant) =
            single(ExporterMetrics::new().expect("metrics"), None, BOTH);
        for source in BOTH {
            failing_tenant.record_failure(
                *source,
                FailureReason::Http,
                "HTTP 500".to_owned(),
                Duration::ZERO,
                Utc::now(),
            );
        }
        assert!(!failing.is_ready(), "no source has succeeded");
        assert_eq!(failing.statuses().len(), 2);
    }

    #[test]
    fn a_fan_out_still_on_its_first_poll_does_not_hold_readiness_back() {
        let sources = [SourceName::LicenseUsage, SourceName::CustomerLicenses];
        let (state, tenant) = single(ExporterMetrics::new().expect("metrics"), None, &sources);
        assert!(!state.is_ready());
        tenant.record_snapshot(snapshot_of(&["Exchange"]), 0, Duration::ZERO, Utc::now());
        assert!(state.is_ready(), "customer_licenses may take its interval");

        let (alone, _alone_tenant) = single(
            ExporterMetrics::new().expect("metrics"),
            None,
            &[SourceName::CustomerLicenses],
        );
        assert!(!alone.is_ready(), "nothing to serve yet");
    }

    #[test]
    fn customer_health_and_info_are_published_with_the_poll() {
        use crate::collect::health::{CustomerFailure, CustomerHealth};
        use crate::sources::customer_licenses::{CustomerLicensesSource, CustomerSku};
        let (state, tenant) = single(
            ExporterMetrics::new().expect("metrics"),
            None,
            &[SourceName::CustomerLicenses],
        );
        let sku = CustomerSku {
            customer_tenant_id: "a".to_owned(),
            sku_id: "s".to_owned(),
            sku_part_number: "SPE_E3".to_owned(),
            sku_name: "Microsoft 365 E3".to_owned(),
            capability_status: "Enabled".to_owned(),
            active: 10.0,
            warning: 0.0,
            suspended: 0.0,
            consumed: 7.0,
        };
        let mut health = CustomerHealth::default();
        health.count_error(CustomerFailure::Forbidden);
        health.customers = vec![
            ("a".to_owned(), None),
            ("b".to_owned(), Some(CustomerFailure::Forbidden)),
        ];
        tenant.record_fanned_out_snapshot(
            Snapshot::<CustomerLicensesSource>::from_items([sku]),
            0,
            health,
            Duration::ZERO,
            Utc::now(),
        );
        let text = body(&state);
        for expected in [
            "partner_center_customer_up{source=\"customer_licenses\",customer_tenant_id=\"a\"} 1\n",
            "partner_center_customer_up{source=\"customer_licenses\",customer_tenant_id=\"b\"} 0\n",
            "partner_center_customer_error_reason{source=\"customer_licenses\",customer_tenant_id=\"b\",reason=\"forbidden\"} 1\n",
            "partner_center_customer_errors_total{source=\"customer_licenses\",reason=\"forbidden\"} 1\n",
            "partner_center_customer_errors_total{source=\"customer_licenses\",reason=\"not_found\"} 0\n",
            "partner_center_customer_licenses_consumed{customer_tenant_id=\"a\",sku_id=\"s\"} 7\n",
        ] {
            assert!(text.contains(expected), "{expected} missing from\n{text}");
        }
        assert!(
            !text.contains("error_reason{source=\"customer_licenses\",customer_tenant_id=\"a\"")
        );
        assert!(
            !text.contains("partner_center_customer_info"),
            "no listing yet"
        );

        tenant.record_customer_info(crate::collect::customers::render_customer_info(
            &TenantLabel::NONE,
            &[crate::collect::customers::Customer {
                tenant_id: "a".to_owned(),
                name: "Contoso".to_owned(),
                domain: "contoso.onmicrosoft.com".to_owned(),
                relationship: "reseller".to_owned(),
            }],
        ));
        let text = body(&state);
        assert!(
            text.contains(
                "partner_center_customer_info{customer_tenant_id=\"a\",customer_name=\"Contoso\""
            ),
            "{text}"
        );
        assert!(
            text.contains("partner_center_customer_up{"),
            "health kept: {text}"
        );
    }

    #[test]
    fn staleness_withholds_each_source_on_its_own() {
        let (state, tenant) = single(
            ExporterMetrics::new().expect("metrics"),
            Some(Duration::from_secs(3600)),
            BOTH,
        );
        let two_hours_ago = Utc::now() - chrono::Duration::hours(2);
        tenant.record_snapshot(snapshot_of(&["Exchange"]), 0, Duration::ZERO, two_hours_ago);
        tenant.record_snapshot(
            deployment_snapshot(&["o365"]),
            0,
            Duration::ZERO,
            Utc::now(),
        );
        let text = body(&state);
        assert!(!text.contains("workload=\"Exchange\""), "{text}");
        assert!(text.contains("service=\"o365\""), "{text}");
        assert!(
            state
                .status(&TenantLabel::NONE, SourceName::LicenseUsage)
                .expect("enabled")
                .withdrawn
        );
        assert!(
            !state
                .status(&TenantLabel::NONE, SourceName::LicenseDeployment)
                .expect("enabled")
                .withdrawn
        );
    }

    #[test]
    fn exporter_metrics_exist_from_the_start() {
        let (state, tenant) = single(ExporterMetrics::new().expect("metrics"), None, USAGE);
        tenant.record_poll_interval(SourceName::LicenseUsage, Duration::from_secs(900));
        let text = body(&state);
        for expected in [
            "partner_center_up{source=\"license_usage\"} 0",
            "partner_center_items_skipped_total{source=\"license_usage\"} 0",
            "partner_center_poll_errors_total{source=\"license_usage\",reason=\"auth\"} 0",
            "partner_center_poll_errors_total{source=\"license_usage\",reason=\"paging\"} 0",
            "partner_center_poll_interval_seconds{source=\"license_usage\"} 900",
            "partner_center_request_retries_total{reason=\"throttled\"} 0",
            "partner_center_request_retries_total{reason=\"http\"} 0",
            "# TYPE partner_center_poll_interval_seconds gauge",
            "# TYPE partner_center_poll_errors_total counter",
            "# TYPE partner_center_last_success_timestamp_seconds gauge",
            "partner_center_last_success_timestamp_seconds{source=\"license_usage\"} 0",
            "partner_center_poll_duration_seconds{source=\"license_usage\"} 0",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        let build_info = text
            .lines()
            .find(|line| line.starts_with("partner_center_exporter_build_info{"))
            .expect("build info");
        assert!(
            build_info.contains(&format!("version=\"{}\"", crate::build_info::VERSION)),
            "{build_info}"
        );
        assert!(build_info.contains("revision=\""), "{build_info}");
        assert!(build_info.contains("rustversion=\""), "{build_info}");
        assert!(build_info.ends_with("} 1"), "{build_info}");
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }
}
