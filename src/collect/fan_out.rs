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

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;
use uuid::Uuid;

use crate::auth::Authenticator;
use crate::collect::customers::{CUSTOMERS_PATH, CustomerDirectory};
use crate::collect::health::{CustomerFailure, CustomerHealth};
use crate::filters::Filters;
use crate::partner_center::client::{Client, ClientError, Collection, FetchTrace};
use crate::sources::Source;

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
}

impl<S: Source> Default for FanOut<S> {
    fn default() -> Self {
        Self {
            customers: BTreeMap::new(),
            health: CustomerHealth::default(),
            logged: HashSet::new(),
        }
    }
}

/// What one customer's request brought.
type Outcome<T> = (Arc<str>, Result<Collection<T>, ClientError>, FetchTrace);

impl<S: Source> FanOut<S> {
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
            let Some((customer, result, customer_trace)) = next else {
                break;
            };
            trace.retries.extend(customer_trace.retries);
            if let Some(throttled) = customer_trace.throttled {
                trace.throttled = Some(trace.throttled.map_or(throttled, |t| t.max(throttled)));
            }
            match result {
                // Without a token no customer can be asked: the poll's
                // failure, not the customers'.
                Err(err @ ClientError::Auth(_)) => return Err(err),
                Ok(mut fetched) => {
                    collection.pages += fetched.pages;
                    collection.skipped.append(&mut fetched.skipped);
                    self.succeeded(&customer, fetched.items, context.filters);
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
        Ok((collection, health))
    }

    fn succeeded(&mut self, customer: &str, mut rows: Vec<S::Item>, filters: &Filters) {
        for row in &mut rows {
            S::assign_customer(row, customer);
        }
        rows.retain(|row| S::admit(row, filters));
        self.logged.retain(|(logged, _)| logged != customer);
        self.customers.insert(
            customer.to_owned(),
            CustomerRows {
                rows,
                failure: None,
            },
        );
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
    (customer, result, trace)
}
