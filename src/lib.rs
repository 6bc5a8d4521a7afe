//! partner-center-exporter: a Prometheus exporter for Microsoft Partner
//! Center license usage analytics.
//!
//! A background poller fetches `GET /v1/analytics/licenses/usage`, turns
//! each answer into an immutable snapshot and swaps it in whole; the web
//! server only serves what the last poll produced.
//!
//! # Layout
//! - [`cli`]: command-line flags, following the Prometheus exporters' conventions.
//! - [`config`]: the YAML configuration file, its defaults and validation.
//! - [`telemetry`]: logging set-up (logfmt or JSON on standard error).
//! - [`shutdown`]: SIGTERM and SIGINT turned into one cancellation token.
//! - [`secret`]: a credential type that never prints its value.
//! - [`token_file`]: credentials read from files, for [`config`]'s checks
//!   and for [`auth`].
//! - [`auth`]: where access tokens come from: a token file, or App+User
//!   tokens redeemed at Entra ID from a refresh token that is rotated into
//!   `state_dir`; also the device-code `login` command.
//! - [`partner_center`]: the upstream API: response model with lenient
//!   decoding, and the HTTP client with paging and typed errors.
//! - [`snapshot`]: one poll's series, deduplicated and pre-rendered.
//! - [`metrics`]: every published metric and its exposition rendering.
//! - [`exposition`]: rendered parts of `/metrics`, plain and compressed,
//!   put together per scrape without copying or compressing.
//! - [`state`]: what the poller writes and the server reads, including
//!   the parts of `/metrics` rendered ahead of the scrapes.
//! - [`poller`]: the polling loop, stretched while Partner Center throttles.
//! - [`poll_thread`]: the poller's own thread and runtime, at a lower
//!   priority than the server's.
//! - [`retry`]: which upstream failures are tried again, the waits between,
//!   and the loop that runs the tries for Partner Center and Entra ID.
//! - [`server`]: the HTTP endpoints (`/metrics`, `/`, `/healthz`, `/readyz`).
//! - [`web`]: `--web.config.file`, exporter-toolkit's web configuration:
//!   TLS and client certificates (rustls), basic auth (bcrypt), response
//!   headers and rate limit, re-read when the files change.
//! - [`simulator`]: a simulated Partner Center and Entra ID on raw TCP
//!   (datasets, token endpoint, scripted faults, outage, request record),
//!   shared by the demo, the benchmarks and the tests.
//! - [`demo`]: `--demo`: the simulator in its demo configuration and the
//!   exporter configured for it.
//! - [`app`]: wires the pieces together and runs them.
//! - [`upstream`]: upstream answers read within a size limit, their text
//!   made fit for one log line.
//! - [`build_info`]: version, revision and compiler of this build.

#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod build_info;
pub mod cli;
pub mod config;
pub mod demo;
pub mod exposition;
pub mod metrics;
pub mod partner_center;
pub mod poll_thread;
pub mod poller;
pub mod retry;
pub mod scheduler;
pub mod secret;
pub mod server;
pub mod shutdown;
pub mod simulator;
pub mod snapshot;
pub mod sources;
pub mod state;
pub mod telemetry;
pub mod token_file;
pub mod upstream;
pub mod web;
