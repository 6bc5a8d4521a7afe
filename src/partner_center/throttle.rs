//! The partner tenant's throttle, shared by every request to it.
//!
//! Partner Center's rate limits belong to the partner tenant, not to one
//! dataset, and every tool of the partner spends them. So a 429 on any
//! source's request holds back every request to that tenant until its
//! `Retry-After` has passed, and the throttled polls are counted per
//! tenant: a source whose poll meets throttling polls less often the
//! longer the run of throttled polls, of any source, has lasted (see
//! `crate::collect::poller`). A poll that is not throttled ends the run:
//! it shows the tenant's limit has room again.
//!
//! Before any 429, the tenant's request budget keeps the exporter within
//! what the operator allows it (`partner_center.max_requests_per_minute`
//! and `max_concurrent_requests`, all sources together): requests are
//! spaced evenly, one every minute ÷ the budget, so no minute holds more
//! than the budget and a long run of requests goes at the budget, and at
//! most so many are in flight at once.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// When requests may be sent again, how throttled the recent polls were,
/// and the request budget.
#[derive(Debug)]
pub struct TenantThrottle {
    state: Mutex<ThrottleState>,
    /// The time between two requests' starts; `None` without a budget.
    spacing: Option<Duration>,
    /// Requests in flight, at most `max_concurrent_requests`.
    in_flight: Arc<Semaphore>,
    /// The most in flight at once.
    concurrent: usize,
}

impl Default for TenantThrottle {
    /// No budget: requests go as soon as no 429 holds them back.
    fn default() -> Self {
        Self::new(0, Semaphore::MAX_PERMITS)
    }
}

/// A request's admission under the budget: its place among those in
/// flight, given back when it is dropped.
#[derive(Debug)]
pub struct Admission {
    _in_flight: Option<OwnedSemaphorePermit>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    /// No request is sent before this.
    not_before: Option<Instant>,
    /// Polls in a row, of any source, that met throttling.
    throttled_polls: u32,
    /// The start the budget gives the next request.
    next_slot: Option<Instant>,
}

impl TenantThrottle {
    /// A throttle with a budget of `per_minute` requests a minute (0: no
    /// budget) and `concurrent` in flight at once (at least one).
    pub fn new(per_minute: u32, concurrent: usize) -> Self {
        let spacing = (per_minute > 0).then(|| Duration::from_secs(60) / per_minute);
        let concurrent = concurrent.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            state: Mutex::new(ThrottleState::default()),
            spacing,
            in_flight: Arc::new(Semaphore::new(concurrent)),
            concurrent,
        }
    }

    /// The most requests in flight at once: what a fan-out keeps going.
    pub fn max_concurrent(&self) -> usize {
        self.concurrent
    }

    /// Waits until a request may be sent: a place among those in flight,
    /// then the end of any hold a 429 put on the tenant, then its slot
    /// under the budget. Hold the admission until the answer has been read.
    pub async fn admit(&self) -> Admission {
        // The semaphore is never closed, so this only fails if it were.
        let in_flight = self.in_flight.clone().acquire_owned().await.ok();
        // A slot is taken only once no hold is in force, and taken anew
        // when a hold began while waiting for it: slots taken before a
        // hold all come due during it, and the requests that waited it out
        // would then go at once, faster than the budget, just when the
        // tenant's limit has been reached.
        loop {
            self.wait().await;
            if let Some(spacing) = self.spacing {
                let slot = {
                    let mut state = self.state();
                    let now = Instant::now();
                    let slot = state.next_slot.map_or(now, |next| next.max(now));
                    state.next_slot = Some(slot + spacing);
                    slot
                };
                tokio::time::sleep_until(slot).await;
            }
            if self.not_before().is_none() {
                break;
            }
        }
        Admission {
            _in_flight: in_flight,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ThrottleState> {
        // The state is two plain values, valid whatever a panicking holder did.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds back every request until `until` (or later, if already held longer).
    pub fn hold_until(&self, until: Instant) {
        let mut state = self.state();
        state.not_before = Some(state.not_before.map_or(until, |held| held.max(until)));
    }

    /// When requests may be sent again, if they are held back.
    pub fn not_before(&self) -> Option<Instant> {
        self.state()
            .not_before
            .filter(|not_before| *not_before > Instant::now())
    }

    /// Waits until requests may be sent. A hold that grows while waiting
    /// is waited for too.
    pub async fn wait(&self) {
        while let Some(not_before) = self.not_before() {
            tokio::time::sleep_until(not_before).await;
        }
    }

    /// Records how a poll ended and returns the polls in a row, of any
    /// source, that met throttling: 0 once one did not.
    pub fn record_poll(&self, throttled: bool) -> u32 {
        let mut state = self.state();
        state.throttled_polls = if throttled {
            state.throttled_polls.saturating_add(1)
        } else {
            0
        };
        state.throttled_polls
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_hold_delays_every_waiter_and_only_grows() {
        let throttle = TenantThrottle::default();
        let start = Instant::now();
        throttle.hold_until(start + Duration::from_millis(300));
        throttle.hold_until(start + Duration::from_millis(50));
        assert_eq!(
            throttle.not_before(),
            Some(start + Duration::from_millis(300))
        );
        throttle.wait().await;
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(throttle.not_before(), None, "a hold ends");
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_spaces_requests_evenly_and_never_exceeds_a_minute() {
        let throttle = Arc::new(TenantThrottle::new(60, 100));
        let start = Instant::now();
        let mut admitted = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..150 {
            let throttle = throttle.clone();
            tasks.spawn(async move {
                let _admission = throttle.admit().await;
                Instant::now()
            });
        }
        while let Some(at) = tasks.join_next().await {
            admitted.push(at.expect("admitted"));
        }
        admitted.sort();
        // One a second: 60 in the first minute, and in every minute after.
        for (index, at) in admitted.iter().enumerate() {
            assert_eq!(at.duration_since(start), Duration::from_secs(index as u64));
        }
        for window in admitted.windows(61) {
            assert!(window[60].duration_since(window[0]) >= Duration::from_secs(60));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_the_concurrent_requests_are_in_flight() {
        let throttle = Arc::new(TenantThrottle::new(0, 2));
        let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (throttle, in_flight, most) = (throttle.clone(), in_flight.clone(), most.clone());
            tasks.spawn(async move {
                let _admission = throttle.admit().await;
                let now = in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
                in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        while tasks.join_next().await.is_some() {}
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_hold_comes_on_top_of_the_budget() {
        let throttle = TenantThrottle::new(60, 4);
        let start = Instant::now();
        drop(throttle.admit().await);
        throttle.hold_until(start + Duration::from_secs(5));
        drop(throttle.admit().await);
        assert_eq!(Instant::now(), start + Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn requests_that_waited_out_a_hold_go_at_the_budget_not_at_once() {
        let throttle = Arc::new(TenantThrottle::new(60, 4));
        let start = Instant::now();
        drop(throttle.admit().await);
        throttle.hold_until(start + Duration::from_secs(5));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..3 {
            let throttle = throttle.clone();
            tasks.spawn(async move {
                let _admission = throttle.admit().await;
                Instant::now().duration_since(start)
            });
        }
        let mut admitted = Vec::new();
        while let Some(at) = tasks.join_next().await {
            admitted.push(at.expect("admitted"));
        }
        admitted.sort();
        assert_eq!(
            admitted,
            [5, 6, 7].map(Duration::from_secs),
            "one a second from the end of the hold"
        );
    }

    #[test]
    fn throttled_polls_count_in_a_row() {
        let throttle = TenantThrottle::default();
        assert_eq!(throttle.record_poll(true), 1);
        assert_eq!(throttle.record_poll(true), 2);
        assert_eq!(throttle.record_poll(false), 0);
        assert_eq!(throttle.record_poll(true), 1);
    }
}
