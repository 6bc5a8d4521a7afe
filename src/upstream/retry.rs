//! When to try an upstream request again, how long to wait first, and the
//! loop that does it.
//!
//! Microsoft's advice for Partner Center: never retry 400, 401, 403, 404 or
//! 409; retry other failures with exponential backoff; after a 429, wait what
//! `Retry-After` says, then back off. Every wait is also bounded by the
//! caller's deadline, so retrying never makes a poll overrun `poll.timeout`.
//!
//! [`RetryLoop`] runs the tries for both upstreams, Partner Center and
//! Entra ID's token endpoint; each caller says which of its failures are
//! worth another try and logs and counts the retries its own way.

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
    #[cfg(test)]
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

/// A failure worth another try, as the caller's classification says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retryable<R> {
    /// What to call the failure in logs and metrics, such as a timeout.
    pub reason: R,
    /// The server's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
}

/// A retry about to be waited for, handed to the caller to log and count.
#[derive(Debug)]
pub struct Retrying<'a, E, R> {
    /// 1 for the first retry.
    pub retry: u32,
    /// The [`Retryable::reason`] of the failure.
    pub reason: R,
    /// The wait before the retry is sent.
    pub wait: Wait,
    /// The failure that is retried.
    pub error: &'a E,
}

/// Why [`RetryLoop::run`] gave up.
#[derive(Debug, PartialEq, Eq)]
pub enum GaveUp<E> {
    /// A try failed and no retry follows it: the failure is not worth one,
    /// no retry is left, or its wait would end after the deadline.
    Failed(E),
    /// The deadline came while a try was under way. `previous` is the
    /// failure that try retried, `None` when it was the first.
    DeadlineReached { previous: Option<E> },
}

/// Tries a request until it succeeds, fails in a way not worth another
/// try, runs out of retries, or runs out of time.
#[derive(Debug, Clone, Copy)]
pub struct RetryLoop {
    policy: RetryPolicy,
    deadline: Instant,
}

impl RetryLoop {
    /// Retries under `policy` until `deadline`.
    pub fn new(policy: RetryPolicy, deadline: Instant) -> Self {
        Self { policy, deadline }
    }

    /// Runs the tries. Neither a try nor a wait goes on past the deadline:
    /// a try still under way then is dropped.
    ///
    /// - `attempt` starts a try; it is given the failure the try retries
    ///   (`None` for the first), so that it can reuse what may be reused.
    /// - `retryable` tells the failures worth another try from the others.
    /// - `on_retry` is called once per retry, before its wait.
    pub async fn run<T, E, R: Copy, Fut>(
        &self,
        attempt: impl FnMut(Option<&E>) -> Fut,
        retryable: impl FnMut(&E) -> Option<Retryable<R>>,
        on_retry: impl FnMut(&Retrying<'_, E, R>),
    ) -> Result<T, GaveUp<E>>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        self.drive(true, attempt, retryable, on_retry).await
    }

    /// Like [`RetryLoop::run`], but the deadline bounds only the waits: a
    /// try under way at the deadline runs to its own timeout, and no retry
    /// follows it. For requests whose caller bounds them as a whole anyway.
    pub async fn run_letting_tries_finish<T, E, R: Copy, Fut>(
        &self,
        attempt: impl FnMut(Option<&E>) -> Fut,
        retryable: impl FnMut(&E) -> Option<Retryable<R>>,
        on_retry: impl FnMut(&Retrying<'_, E, R>),
    ) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        match self.drive(false, attempt, retryable, on_retry).await {
            Ok(answer) => Ok(answer),
            Err(GaveUp::Failed(error)) => Err(error),
            Err(GaveUp::DeadlineReached { .. }) => {
                unreachable!("a try is only dropped at the deadline when tries are cut short")
            }
        }
    }

    async fn drive<T, E, R: Copy, Fut>(
        &self,
        cut_tries_short: bool,
        mut attempt: impl FnMut(Option<&E>) -> Fut,
        mut retryable: impl FnMut(&E) -> Option<Retryable<R>>,
        mut on_retry: impl FnMut(&Retrying<'_, E, R>),
    ) -> Result<T, GaveUp<E>>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let mut retry = 0;
        let mut previous: Option<E> = None;
        loop {
            let tried = attempt(previous.as_ref());
            let outcome = if cut_tries_short {
                match tokio::time::timeout_at(self.deadline, tried).await {
                    Ok(outcome) => outcome,
                    Err(_) => return Err(GaveUp::DeadlineReached { previous }),
                }
            } else {
                tried.await
            };
            let error = match outcome {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            let Some(Retryable {
                reason,
                retry_after,
            }) = retryable(&error)
            else {
                return Err(GaveUp::Failed(error));
            };
            retry += 1;
            let Some(wait) = self.policy.wait_before(retry, retry_after, self.deadline) else {
                return Err(GaveUp::Failed(error));
            };
            on_retry(&Retrying {
                retry,
                reason,
                wait,
                error: &error,
            });
            tokio::time::sleep(wait.duration()).await;
            previous = Some(error);
        }
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

    /// Paused time still moves in the timer's steps of a millisecond.
    fn assert_about(elapsed: Duration, expected: Duration) {
        assert!(
            elapsed >= expected && elapsed < expected + Duration::from_millis(50),
            "{elapsed:?}, not {expected:?}"
        );
    }

    /// A try that fails at once, or after `takes`, with `error`.
    async fn failing(takes: Duration, error: &'static str) -> Result<(), &'static str> {
        tokio::time::sleep(takes).await;
        Err(error)
    }

    /// Every failure but `"fatal"` is worth another try.
    fn unless_fatal(error: &&'static str) -> Option<Retryable<&'static str>> {
        (*error != "fatal").then_some(Retryable {
            reason: "network",
            retry_after: None,
        })
    }

    #[tokio::test]
    async fn the_loop_retries_until_a_try_succeeds_and_hands_each_try_its_predecessor() {
        tokio::time::pause();
        let mut seen: Vec<Option<&'static str>> = Vec::new();
        let mut retries = Vec::new();
        let answer = RetryLoop::new(policy(), far())
            .run(
                |previous: Option<&&'static str>| {
                    seen.push(previous.copied());
                    let try_number = seen.len();
                    async move {
                        match try_number {
                            1 => Err("first"),
                            2 => Err("second"),
                            _ => Ok(try_number),
                        }
                    }
                },
                unless_fatal,
                |retrying| retries.push((retrying.retry, retrying.reason, *retrying.error)),
            )
            .await;
        assert_eq!(answer, Ok(3));
        assert_eq!(seen, [None, Some("first"), Some("second")]);
        assert_eq!(retries, [(1, "network", "first"), (2, "network", "second")]);
    }

    #[tokio::test]
    async fn a_failure_not_worth_a_retry_ends_the_loop_at_once() {
        tokio::time::pause();
        let mut tries = 0;
        let mut retries = 0;
        let outcome = RetryLoop::new(policy(), far())
            .run(
                |_| {
                    tries += 1;
                    failing(Duration::ZERO, "fatal")
                },
                unless_fatal,
                |_| retries += 1,
            )
            .await;
        assert_eq!(outcome, Err(GaveUp::Failed("fatal")));
        assert_eq!((tries, retries), (1, 0));
    }

    #[tokio::test]
    async fn the_loop_stops_when_no_retry_is_left() {
        tokio::time::pause();
        let mut tries = 0;
        let outcome = RetryLoop::new(policy(), far())
            .run(
                |_| {
                    tries += 1;
                    failing(Duration::ZERO, "busy")
                },
                unless_fatal,
                |_| {},
            )
            .await;
        assert_eq!(outcome, Err(GaveUp::Failed("busy")));
        assert_eq!(tries, 4, "one try and max_retries retries");
    }

    #[tokio::test]
    async fn retry_after_sets_the_wait_and_no_wait_ends_after_the_deadline() {
        tokio::time::pause();
        let start = Instant::now();
        let mut waits = Vec::new();
        let outcome = RetryLoop::new(policy(), start + Duration::from_secs(15))
            .run(
                |_| failing(Duration::ZERO, "throttled"),
                |_| {
                    Some(Retryable {
                        reason: "throttled",
                        retry_after: Some(Duration::from_secs(10)),
                    })
                },
                |retrying| waits.push(retrying.wait),
            )
            .await;
        assert_eq!(outcome, Err(GaveUp::Failed("throttled")));
        assert_eq!(
            waits,
            [Wait::RetryAfter(Duration::from_secs(10))],
            "a second wait of 10s would end after the deadline"
        );
        assert_about(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_try_under_way_at_the_deadline_is_dropped_and_the_failure_it_retried_kept() {
        tokio::time::pause();
        let start = Instant::now();
        let deadline = start + Duration::from_secs(30);
        let mut tries = 0;
        let outcome = RetryLoop::new(policy(), deadline)
            .run(
                |_| {
                    tries += 1;
                    let takes = if tries == 1 {
                        Duration::ZERO
                    } else {
                        Duration::from_secs(3600)
                    };
                    failing(takes, if tries == 1 { "first" } else { "hung" })
                },
                unless_fatal,
                |_| {},
            )
            .await;
        assert_eq!(
            outcome,
            Err(GaveUp::DeadlineReached {
                previous: Some("first")
            })
        );
        assert_eq!(tries, 2);
        assert_about(start.elapsed(), deadline - start);

        let outcome = RetryLoop::new(policy(), Instant::now() + Duration::from_secs(30))
            .run(
                |_| failing(Duration::from_secs(3600), "hung"),
                unless_fatal,
                |_| {},
            )
            .await;
        assert_eq!(outcome, Err(GaveUp::DeadlineReached { previous: None }));
    }

    #[tokio::test]
    async fn letting_tries_finish_bounds_only_the_waits() {
        tokio::time::pause();
        let start = Instant::now();
        let mut tries = 0;
        let outcome = RetryLoop::new(policy(), start + Duration::from_secs(5))
            .run_letting_tries_finish(
                |_| {
                    tries += 1;
                    failing(Duration::from_secs(10), "slow")
                },
                unless_fatal,
                |_| {},
            )
            .await;
        assert_eq!(
            outcome,
            Err("slow"),
            "the try's own failure, not the deadline"
        );
        assert_eq!(tries, 1, "no retry starts after the deadline");
        assert_about(start.elapsed(), Duration::from_secs(10));
    }
}
