//! A per-customer poll: list the customers, request each one's
//! collection with bounded concurrency under the tenant's request budget,
//! keep the last good rows per customer, drop customers that left the
//! listing, and count one customer's failure without failing the others.
//!
//! Up to `partner_center.max_concurrent_requests` customers are in
//! flight at once, enough to keep the budget's pace (the client spaces
//! the requests themselves); each customer's request, with its retries,
//! has `poll.timeout`. A customer whose request fails keeps its last good
//! rows, `partner_center_customer_up` goes to 0 for it, the reason is
//! counted, and the log says once per customer and reason what to do.
//!
//! A source with a [`Lookup`] has one more request per item not seen
//! before, made once every customer's collection is in, under the same
//! budget and in the time the fan-out has left; the answers are kept
//! ([`KeptLookups`]) and put into every poll's rows. A failed lookup, or
//! one the time did not reach, leaves that item's detail out until a later
//! poll gets it, and fails neither the customer nor the poll.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;
use uuid::Uuid;

use crate::auth::Authenticator;
use crate::collect::customers::{CUSTOMERS_PATH, CustomerDirectory};
use crate::collect::health::{CustomerFailure, CustomerHealth, LookupCounts};
use crate::collect::lookups::KeptLookups;
use crate::filters::Filters;
use crate::partner_center::client::{Client, ClientError, Collection, FetchTrace};
use crate::partner_center::collection::SkippedItem;
use crate::sources::{Lookup, Source, parts_left_out_of};

/// One customer's part of the source: its rows from the last request that
/// worked, and how the last request went.
struct CustomerRows<T> {
    rows: Vec<T>,
    failure: Option<CustomerFailure>,
}

/// What a fan-out needs of the exporter.
pub struct FanOutContext<'a> {
    pub client: &'a Client,
    pub authenticator: &'a Authenticator,
    pub directory: &'a CustomerDirectory,
    pub filters: &'a Filters,
    /// `poll.timeout`: the limit for one customer's request, retries included.
    pub request_limit: Duration,
}

/// The per-customer state of one fan-out source, kept across polls.
pub struct FanOut<S: Source> {
    customers: BTreeMap<String, CustomerRows<S::Item>>,
    /// Failed requests by reason, summed over all polls.
    health: CustomerHealth,
    /// Customer and reason pairs already logged; a customer's are
    /// forgotten when a request for it works again.
    logged: HashSet<(String, CustomerFailure)>,
    /// The answers of the source's lookups, if it has any.
    lookups: Option<Arc<KeptLookups>>,
    /// Whether a failure to write the kept lookups has been logged.
    save_failure_logged: bool,
}

/// The lookups of one poll.
#[derive(Debug, Default)]
struct LookupTally {
    asked: usize,
    failed: usize,
    /// Left for the next poll: the fan-out's time ran out first.
    deferred: usize,
    /// What went wrong with the first that failed.
    first_failure: Option<String>,
}

/// What one customer's request brought.
struct Outcome<T> {
    customer: Arc<str>,
    result: Result<Collection<T>, ClientError>,
    trace: FetchTrace,
}

impl<S: Source> FanOut<S> {
    /// A fan-out with nothing polled yet; the source's kept lookups are
    /// read from `state_dir`, if given.
    pub fn new(state_dir: Option<&std::path::Path>) -> Self {
        Self {
            customers: BTreeMap::new(),
            health: CustomerHealth {
                lookups: S::LOOKUP.map(|_| LookupCounts::default()),
                ..CustomerHealth::default()
            },
            logged: HashSet::new(),
            lookups: S::LOOKUP.map(|lookup| Arc::new(KeptLookups::load(state_dir, lookup.file))),
            save_failure_logged: false,
        }
    }

    /// One poll: the listing (whose failure fails the poll), then every
    /// covered customer's collection at `v1/customers/{id}/{path}`, until
    /// `deadline`; customers not reached by then count as timed out.
    /// Returns every customer's rows (the last good ones of those that
    /// failed) and the per-customer health.
    pub async fn poll(
        &mut self,
        context: &FanOutContext<'_>,
        path: &str,
        correlation_id: Uuid,
        deadline: Instant,
        trace: &mut FetchTrace,
    ) -> Result<(Collection<S::Item>, CustomerHealth), ClientError> {
        let listing_deadline = deadline.min(Instant::now() + context.request_limit);
        let customers = context
            .directory
            .customers(correlation_id, listing_deadline, trace)
            .await?;
        // Owned IDs: a stream over borrowed customers would make the
        // poller's future lose `Send` to a higher-ranked lifetime.
        let ids: Vec<Arc<str>> = customers
            .iter()
            .map(|customer| Arc::from(customer.tenant_id.as_str()))
            .collect();
        let mut outcomes = futures_util::stream::iter(ids)
            .map(|customer| fetch_customer::<S>(context, customer, path, correlation_id))
            .buffer_unordered(context.client.throttle().max_concurrent());
        let mut done: HashSet<Arc<str>> = HashSet::new();
        let mut collection = Collection::default();
        loop {
            let next = tokio::select! {
                next = outcomes.next() => next,
                () = tokio::time::sleep_until(deadline) => None,
            };
            let Some(outcome) = next else {
                break;
            };
            let customer = outcome.customer;
            trace.retries.extend(outcome.trace.retries);
            if let Some(throttled) = outcome.trace.throttled {
                trace.throttled = Some(trace.throttled.map_or(throttled, |t| t.max(throttled)));
            }
            match outcome.result {
                // Without a token no customer can be asked: the poll's
                // failure, not the customers'.
                Err(err @ ClientError::Auth(_)) => return Err(err),
                Ok(mut fetched) => {
                    collection.pages += fetched.pages;
                    collection.skipped.append(&mut fetched.skipped);
                    let parts_left_out = self.succeeded(&customer, fetched.items, context.filters);
                    collection.skipped.extend(parts_left_out);
                }
                Err(err) => self.failed(&customer, &err),
            }
            done.insert(customer);
        }
        drop(outcomes);
        for customer in customers.iter() {
            if !done.contains(customer.tenant_id.as_str()) {
                self.failed(
                    &Arc::from(customer.tenant_id.as_str()),
                    &ClientError::DeadlineReached,
                );
            }
        }
        // Customers that left the listing leave the source with it.
        let listed: HashSet<&str> = customers.iter().map(|c| c.tenant_id.as_str()).collect();
        self.customers
            .retain(|customer, _| listed.contains(customer.as_str()));
        self.logged
            .retain(|(customer, _)| listed.contains(customer.as_str()));
        // The customers' rows first, then their lookups, in the time left:
        // a customer's series never wait for them.
        if let (Some(lookup), Some(kept)) = (S::LOOKUP, self.lookups.clone()) {
            let tally = self
                .look_up_new(context, &lookup, &kept, correlation_id, deadline, trace)
                .await;
            log_lookups::<S>(&tally);
            if let Some(counts) = &mut self.health.lookups {
                counts.succeeded += (tally.asked - tally.failed) as u64;
                counts.failed += tally.failed as u64;
            }
        }
        let mut health = self.health.clone();
        health.customers = self
            .customers
            .iter()
            .map(|(customer, rows)| (customer.clone(), rows.failure))
            .collect();
        collection.items = self
            .customers
            .values()
            .flat_map(|customer| customer.rows.iter().cloned())
            .collect();
        if let (Some(lookup), Some(kept)) = (S::LOOKUP, &self.lookups) {
            apply_kept(&lookup, kept, &mut collection.items);
            self.save_lookups(kept.clone()).await;
        }
        Ok((collection, health))
    }

    /// Looks up what the rows need and `kept` does not hold yet, as many
    /// at a time as customers are requested, until `deadline`; the rest
    /// are left for the next poll.
    async fn look_up_new(
        &self,
        context: &FanOutContext<'_>,
        lookup: &Lookup<S::Item>,
        kept: &KeptLookups,
        correlation_id: Uuid,
        deadline: Instant,
        trace: &mut FetchTrace,
    ) -> LookupTally {
        let mut wanted: Vec<(String, String)> = Vec::new();
        let mut seen = HashSet::new();
        for (customer, rows) in &self.customers {
            for row in &rows.rows {
                if let Some(key) = (lookup.key)(row)
                    && kept.get(key).is_none()
                    && seen.insert(key)
                {
                    let path = format!("{CUSTOMERS_PATH}/{customer}/{}", (lookup.path)(row));
                    wanted.push((key.to_owned(), path));
                }
            }
        }
        let mut tally = LookupTally {
            deferred: wanted.len(),
            ..LookupTally::default()
        };
        let mut answers = futures_util::stream::iter(wanted)
            .map(|(key, path)| async move {
                let answer = look_up(context, lookup, path, correlation_id, deadline).await;
                (key, answer)
            })
            .buffer_unordered(context.client.throttle().max_concurrent());
        loop {
            let next = tokio::select! {
                next = answers.next() => next,
                () = tokio::time::sleep_until(deadline) => None,
            };
            let Some((key, (detail, lookup_trace, without_token))) = next else {
                break;
            };
            tally.deferred -= 1;
            tally.asked += 1;
            trace.retries.extend(lookup_trace.retries);
            if let Some(throttled) = lookup_trace.throttled {
                trace.throttled = Some(trace.throttled.map_or(throttled, |t| t.max(throttled)));
            }
            match detail {
                Ok(detail) => kept.insert(&key, detail),
                Err(message) => {
                    tracing::debug!(
                        source = S::NAME.as_str(),
                        key,
                        error = %message,
                        "a {} lookup failed",
                        lookup.what
                    );
                    tally.failed += 1;
                    tally.first_failure.get_or_insert(message);
                }
            }
            // Without a token the rest would fail the same way.
            if without_token {
                break;
            }
        }
        tally
    }

    /// Writes the kept lookups if they changed, off the runtime's threads.
    async fn save_lookups(&mut self, kept: Arc<KeptLookups>) {
        match tokio::task::spawn_blocking(move || kept.save()).await {
            Ok(Ok(())) => self.save_failure_logged = false,
            Ok(Err(message)) => {
                if !std::mem::replace(&mut self.save_failure_logged, true) {
                    tracing::warn!(
                        source = S::NAME.as_str(),
                        error = %message,
                        "cannot keep the looked-up details in state_dir; they are kept in \
                         memory and asked for again after a restart"
                    );
                }
            }
            // Cancelled: the runtime is shutting down.
            Err(_) => {}
        }
    }

    /// Takes a customer's new rows, and returns why parts of them were
    /// left out, as skipped items (by their place among the rows).
    fn succeeded(
        &mut self,
        customer: &str,
        mut rows: Vec<S::Item>,
        filters: &Filters,
    ) -> Vec<(u32, SkippedItem)> {
        for row in &mut rows {
            S::assign_customer(row, customer);
        }
        rows.retain(|row| S::admit(row, filters));
        let parts_left_out = parts_left_out_of::<S>(&rows);
        self.logged.retain(|(logged, _)| logged != customer);
        self.customers.insert(
            customer.to_owned(),
            CustomerRows {
                rows,
                failure: None,
            },
        );
        parts_left_out
    }

    fn failed(&mut self, customer: &Arc<str>, error: &ClientError) {
        let reason = CustomerFailure::of(error);
        self.health.count_error(reason);
        if self.logged.insert((customer.to_string(), reason)) {
            let ids = error.response_ids().cloned().unwrap_or_default();
            tracing::warn!(
                source = S::NAME.as_str(),
                customer_tenant_id = %customer,
                reason = reason.as_str(),
                error = %error,
                ms_request_id = ids.request_id.as_deref().unwrap_or(""),
                ms_correlation_id = ids.correlation_id.as_deref().unwrap_or(""),
                advice = reason.advice(),
                "a customer's request failed; its last good series stay"
            );
        }
        self.customers
            .entry(customer.to_string())
            .or_insert_with(|| CustomerRows {
                rows: Vec::new(),
                failure: None,
            })
            .failure = Some(reason);
    }
}

/// Requests one customer's collection, with a deadline of its own.
async fn fetch_customer<S: Source>(
    context: &FanOutContext<'_>,
    customer: Arc<str>,
    path: &str,
    correlation_id: Uuid,
) -> Outcome<S::Item> {
    let mut trace = FetchTrace::default();
    let started = Instant::now();
    let full_path = format!(
        "{CUSTOMERS_PATH}/{customer}/{}",
        path.trim_start_matches('/')
    );
    let result = match tokio::time::timeout_at(
        started + context.request_limit,
        context.client.fetch_collection(
            &full_path,
            S::decode_item,
            context.authenticator,
            correlation_id,
            started + context.request_limit,
            &mut trace,
        ),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(ClientError::DeadlineReached),
    };
    Outcome {
        customer,
        result,
        trace,
    }
}

/// One lookup: the detail its answer gives (`None`: the item has none),
/// or why it failed.
async fn look_up<I>(
    context: &FanOutContext<'_>,
    lookup: &Lookup<I>,
    path: String,
    correlation_id: Uuid,
    deadline: Instant,
) -> (Result<Option<String>, String>, FetchTrace, bool) {
    let mut trace = FetchTrace::default();
    let limit = deadline.min(Instant::now() + context.request_limit);
    let answer = tokio::time::timeout_at(
        limit,
        context.client.fetch_resource(
            &path,
            context.authenticator,
            correlation_id,
            limit,
            &mut trace,
        ),
    )
    .await
    .unwrap_or(Err(ClientError::DeadlineReached));
    let without_token = matches!(answer, Err(ClientError::Auth(_)));
    let detail = answer
        .map_err(|err| err.to_string())
        .and_then(|body| (lookup.decode)(&body));
    (detail, trace, without_token)
}

/// Puts the kept details into the items that have one.
fn apply_kept<I>(lookup: &Lookup<I>, kept: &KeptLookups, items: &mut [I]) {
    let mut seen = HashSet::new();
    for item in items.iter_mut() {
        let Some(key) = (lookup.key)(item) else {
            continue;
        };
        seen.insert(key.to_owned());
        if let Some(Some(detail)) = kept.get(key) {
            (lookup.apply)(item, &detail);
        }
    }
    kept.retain(|key| seen.contains(key));
}

/// Says how a poll's lookups went, when it made any.
fn log_lookups<S: Source>(tally: &LookupTally) {
    let Some(lookup) = S::LOOKUP else {
        return;
    };
    if tally.failed > 0 {
        tracing::warn!(
            source = S::NAME.as_str(),
            asked = tally.asked,
            failed = tally.failed,
            deferred = tally.deferred,
            first_error = tally.first_failure.as_deref().unwrap_or(""),
            "some {} lookups failed; those {}s go without it until a later poll gets it",
            lookup.what,
            S::ITEM_NOUN
        );
    } else if tally.asked > 0 || tally.deferred > 0 {
        tracing::info!(
            source = S::NAME.as_str(),
            asked = tally.asked,
            deferred = tally.deferred,
            "looked up the {} of {}s not seen before",
            lookup.what,
            S::ITEM_NOUN
        );
    }
}
