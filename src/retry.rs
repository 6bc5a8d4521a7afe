//! When to try an upstream request again, and how long to wait first.
//!
//! Microsoft's advice for Partner Center: never retry 400, 401, 403, 404 or
//! 409; retry other failures with exponential backoff; after a 429, wait what
//! `Retry-After` says, then back off. Every wait is also bounded by the
//! caller's deadline, so retrying never makes a poll overrun `poll.timeout`.

use std::time::Duration;

use tokio::time::Instant;

/// How many times to retry and how long to wait in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Further tries after the first; 0 turns retrying off.
    pub max_retries: u32,
    /// The nominal wait before the first retry; it doubles for each further one.
    pub initial_backoff: Duration,
    /// No computed backoff waits longer than this.
    pub max_backoff: Duration,
    /// The longest `Retry-After` obeyed; a longer one is taken as this long.
    pub max_retry_after: Duration,
}

/// Why the next wait is as long as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Exponential backoff with jitter.
    Backoff(Duration),
    /// What the server asked for with `Retry-After`, after the cap.
    RetryAfter(Duration),
}

impl Wait {
    pub fn duration(self) -> Duration {
        match self {
            Self::Backoff(wait) | Self::RetryAfter(wait) => wait,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub const NONE: Self = Self {
        max_retries: 0,
        initial_backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
        max_retry_after: Duration::ZERO,
    };

    /// The wait before retry number `retry` (1 for the first retry), or
    /// `None` when no retry is left or the wait would end after `deadline`.
    ///
    /// `retry_after` is the server's `Retry-After`, if it sent one.
    pub fn wait_before(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        deadline: Instant,
    ) -> Option<Wait> {
        if retry == 0 || retry > self.max_retries {
            return None;
        }
        let wait = match retry_after {
            Some(asked) => Wait::RetryAfter(asked.min(self.max_retry_after)),
            None => Wait::Backoff(self.backoff(retry)),
        };
        (Instant::now() + wait.duration() < deadline).then_some(wait)
    }

    /// `initial_backoff × 2^(retry-1)`, capped, then spread by ±50 % so
    /// that exporters which failed together do not retry together.
    fn backoff(&self, retry: u32) -> Duration {
        let doubling = 2u32.saturating_pow(retry.saturating_sub(1));
        let nominal = self
            .initial_backoff
            .saturating_mul(doubling)
            .min(self.max_backoff);
        nominal.mul_f64(0.5 + fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stops_after_the_last_retry() {
        for _ in 0..200 {
            for (retry, nominal_ms) in [(1u32, 500u64), (2, 1000), (3, 2000)] {
                let Some(Wait::Backoff(wait)) = policy().wait_before(retry, None, far()) else {
                    panic!("retry {retry} must back off");
                };
                let nominal = Duration::from_millis(nominal_ms);
                assert!(
                    wait >= nominal / 2 && wait < nominal * 3 / 2,
                    "retry {retry}: {wait:?}"
                );
            }
            assert_eq!(policy().wait_before(4, None, far()), None);
        }
        assert_eq!(policy().wait_before(0, None, far()), None);
        assert_eq!(RetryPolicy::NONE.wait_before(1, None, far()), None);
    }

    #[test]
    fn backoff_is_capped() {
        let policy = RetryPolicy {
            max_retries: 40,
            ..policy()
        };
        let wait = policy.wait_before(40, None, far()).expect("retry");
        assert!(wait.duration() < Duration::from_secs(15), "{wait:?}");
    }

    #[test]
    fn retry_after_is_obeyed_up_to_the_cap() {
        assert_eq!(
            policy().wait_before(1, Some(Duration::from_secs(7)), far()),
            Some(Wait::RetryAfter(Duration::from_secs(7)))
        );
        assert_eq!(
            policy().wait_before(1, Some(Duration::from_secs(3600)), far()),
            Some(Wait::RetryAfter(Duration::from_secs(60)))
        );
    }

    #[test]
    fn no_wait_ends_after_the_deadline() {
        let soon = Instant::now() + Duration::from_millis(200);
        assert_eq!(
            policy().wait_before(1, Some(Duration::from_secs(1)), soon),
            None
        );
        assert_eq!(policy().wait_before(3, None, soon), None);
    }
}
