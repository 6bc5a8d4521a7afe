//! Collecting: polling every enabled source on its interval, on a thread
//! of its own, and publishing what each poll produced.
//!
//! - [`scheduler`]: every enabled source's poller, run side by side under
//!   the partner tenant's shared throttle.
//! - [`poller`]: the loop that polls one source, logs what it skipped and
//!   publishes each outcome.
//! - [`customers`]: the partner's customer listing, shared by the
//!   per-customer sources, and its `_info` series.
//! - [`fan_out`]: a per-customer poll: one request per listed customer,
//!   the last good rows kept per customer.
//! - [`lookups`]: details looked up once per item of a per-customer
//!   source (a subscription's SKU), kept in memory and in `state_dir`.
//! - [`poll_thread`]: the pollers' own thread and runtime, at a lower
//!   priority than the server's.
//! - [`snapshot`]: one successful poll of one source, deduplicated and
//!   rendered.
//! - [`health`]: each source's poll health (and per-customer health) and
//!   its metrics.
//! - [`state`]: what the pollers write and the server reads, including
//!   the parts of `/metrics` rendered ahead of the scrapes.

pub mod customers;
pub mod fan_out;
pub mod health;
pub mod lookups;
pub mod poll_thread;
pub mod poller;
pub mod scheduler;
pub mod snapshot;
pub mod state;
