//! The record of the requests a simulator received: for tests' assertions
//! (which requests, with which headers, how many per path) and for the
//! benchmarks' timings (when each request arrived and its answer left).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::http::{Body, Request, header_in, path_of};

/// Requests kept in the record by default; older ones are forgotten (the
/// counts are kept whole), so a long-running demo does not grow without end.
pub const DEFAULT_RECORD_LIMIT: usize = 10_000;

/// One request as received.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub method: String,
    /// The request target: path and query, e.g. `/v1/analytics/licenses/usage`.
    pub target: String,
    /// Header names in lower case, values as sent.
    pub headers: Vec<(String, String)>,
    /// The body as received (at most [`super::http::MAX_BODY_BYTES`];
    /// empty when there was none or it could not be kept).
    pub body: Vec<u8>,
    /// When the request had been read (head and body).
    pub at: Instant,
    /// When its answer had been handed to the socket, for well-formed
    /// answers and [`super::Step::Raw`]; `None` for the other fault steps
    /// and until then.
    pub answered_at: Option<Instant>,
}

impl ReceivedRequest {
    /// The target's path, without the query.
    pub fn path(&self) -> &str {
        path_of(&self.target)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    /// The body's form parameters, decoded, in order (a token request's).
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    /// The first value of form parameter `name`.
    pub fn form_value(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(&self.body)
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }
}

/// When one request arrived and when its answer left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub at: Instant,
    pub answered_at: Option<Instant>,
}

/// Fewer requests arrived than waited for.
#[derive(Debug, Clone)]
pub struct WaitTimedOut {
    pub wanted: u64,
    pub waited: Duration,
    /// The requests counted (all of them, or those to the path waited on).
    pub got: u64,
    /// The requests in the record when the wait ended.
    pub received: Vec<ReceivedRequest>,
}

impl fmt::Display for WaitTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "expected {} requests within {:?}, got {}: {:#?}",
            self.wanted, self.waited, self.got, self.received
        )
    }
}

impl std::error::Error for WaitTimedOut {}

/// Every request received, the most recent [`DEFAULT_RECORD_LIMIT`] (or
/// the configured limit) in full, and a count per path of all of them.
pub struct RequestLog {
    inner: Mutex<Inner>,
    /// The total so far, for waiters.
    arrivals: watch::Sender<u64>,
    limit: usize,
}

struct Inner {
    /// The retained requests, oldest first.
    requests: VecDeque<ReceivedRequest>,
    /// The sequence number of `requests[0]`.
    first: u64,
    /// Requests per path, since the start.
    counts: BTreeMap<String, u64>,
    total: u64,
}

impl RequestLog {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                requests: VecDeque::new(),
                first: 0,
                counts: BTreeMap::new(),
                total: 0,
            }),
            arrivals: watch::channel(0).0,
            limit: limit.max(1),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while the lock is held; should that ever change,
        // the record is still consistent, so it is used on.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `request`; returns its sequence number, for [`Self::answered`].
    pub(crate) fn push(&self, request: &Request) -> u64 {
        let total = {
            let mut inner = self.inner();
            let sequence = inner.total;
            inner.total += 1;
            *inner.counts.entry(request.path().to_owned()).or_default() += 1;
            if inner.requests.len() >= self.limit {
                inner.requests.pop_front();
                inner.first += 1;
            }
            inner.requests.push_back(ReceivedRequest {
                method: request.method.clone(),
                target: request.target.clone(),
                headers: request.headers.clone(),
                body: match &request.body {
                    Body::Complete(body) => body.clone(),
                    Body::TooLarge | Body::Unreadable(_) => Vec::new(),
                },
                at: request.at,
                answered_at: None,
            });
            debug_assert_eq!(inner.first + inner.requests.len() as u64, sequence + 1);
            sequence + 1
        };
        self.arrivals.send_replace(total);
        total - 1
    }

    /// Notes when the answer to request `sequence` had been sent.
    pub(crate) fn answered(&self, sequence: u64, at: Instant) {
        let mut inner = self.inner();
        let Some(index) = sequence.checked_sub(inner.first) else {
            return;
        };
        if let Some(request) = usize::try_from(index)
            .ok()
            .and_then(|index| inner.requests.get_mut(index))
        {
            request.answered_at = Some(at);
        }
    }

    /// The requests in the record, oldest first.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.inner().requests.iter().cloned().collect()
    }

    /// The requests in the record to `path` (without query), oldest first.
    pub fn requests_to(&self, path: &str) -> Vec<ReceivedRequest> {
        let path = normalise(path);
        self.inner()
            .requests
            .iter()
            .filter(|request| request.path() == path)
            .cloned()
            .collect()
    }

    /// When the requests in the record to `path` arrived and were
    /// answered, oldest first; cheaper than [`Self::requests_to`].
    pub fn timings(&self, path: &str) -> Vec<Timing> {
        let path = normalise(path);
        self.inner()
            .requests
            .iter()
            .filter(|request| request.path() == path)
            .map(|request| Timing {
                at: request.at,
                answered_at: request.answered_at,
            })
            .collect()
    }

    /// All requests received since the start.
    pub fn total(&self) -> u64 {
        self.inner().total
    }

    /// The requests to `path` (without query) since the start.
    pub fn count(&self, path: &str) -> u64 {
        self.inner()
            .counts
            .get(normalise(path).as_ref())
            .copied()
            .unwrap_or(0)
    }

    /// The requests per path since the start.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.inner().counts.clone()
    }

    /// Waits until at least `count` requests have arrived, or `limit` has passed.
    pub async fn wait_for(&self, count: u64, limit: Duration) -> Result<(), WaitTimedOut> {
        self.wait_until(count, limit, || self.total()).await
    }

    /// Waits until at least `count` requests to `path` have arrived, or
    /// `limit` has passed.
    pub async fn wait_for_path(
        &self,
        path: &str,
        count: u64,
        limit: Duration,
    ) -> Result<(), WaitTimedOut> {
        self.wait_until(count, limit, || self.count(path)).await
    }

    async fn wait_until(
        &self,
        count: u64,
        limit: Duration,
        counted: impl Fn() -> u64,
    ) -> Result<(), WaitTimedOut> {
        // Subscribed before looking, so an arrival in between wakes the wait.
        let mut arrivals = self.arrivals.subscribe();
        let deadline = Instant::now() + limit;
        loop {
            let got = counted();
            if got >= count {
                return Ok(());
            }
            let woken = tokio::time::timeout_at(deadline, arrivals.changed()).await;
            if !matches!(woken, Ok(Ok(()))) {
                return Err(WaitTimedOut {
                    wanted: count,
                    waited: limit,
                    got: counted(),
                    received: self.requests(),
                });
            }
        }
    }
}

/// `path` with one leading `/`, as request paths are recorded.
pub(crate) fn normalise(path: &str) -> std::borrow::Cow<'_, str> {
    if path.starts_with('/') {
        std::borrow::Cow::Borrowed(path)
    } else {
        std::borrow::Cow::Owned(format!("/{path}"))
    }
}
