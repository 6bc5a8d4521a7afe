//! Collecting: polling every enabled source on its interval, on a thread
//! of its own, and publishing what each poll produced.
//!
//! - [`scheduler`]: every enabled source's poller, run side by side under
//!   the partner tenant's shared throttle.
//! - [`poller`]: the loop that polls one source, logs what it skipped and
//!   publishes each outcome.
//! - [`poll_thread`]: the pollers' own thread and runtime, at a lower
//!   priority than the server's.
//! - [`snapshot`]: one successful poll of one source, deduplicated and
//!   rendered.
//! - [`health`]: each source's poll health and its metrics.
//! - [`state`]: what the pollers write and the server reads, including
//!   the parts of `/metrics` rendered ahead of the scrapes.

pub mod health;
pub mod poll_thread;
pub mod poller;
pub mod scheduler;
pub mod snapshot;
pub mod state;
