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

use std::sync::{Mutex, PoisonError};

use tokio::time::Instant;

/// When requests may be sent again, and how throttled the recent polls were.
#[derive(Debug, Default)]
pub struct TenantThrottle {
    state: Mutex<ThrottleState>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    /// No request is sent before this.
    not_before: Option<Instant>,
    /// Polls in a row, of any source, that met throttling.
    throttled_polls: u32,
}

impl TenantThrottle {
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

    #[test]
    fn throttled_polls_count_in_a_row() {
        let throttle = TenantThrottle::default();
        assert_eq!(throttle.record_poll(true), 1);
        assert_eq!(throttle.record_poll(true), 2);
        assert_eq!(throttle.record_poll(false), 0);
        assert_eq!(throttle.record_poll(true), 1);
    }
}
