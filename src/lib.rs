//! partner-center-exporter: a Prometheus exporter for Microsoft Partner
//! Center's license datasets.
//!
//! Each dataset is a *source*. Pollers fetch every enabled source on its
//! own interval, turn each answer into an immutable snapshot and swap it
//! in whole; the web server only serves what the last polls produced.
//! The data flows one way: collect → partner_center (transport) → sources
//! (decoding, families) → exposition (ready parts) → http.
//!
//! # Layout
//! - [`sources`]: one module per Partner Center dataset (its path, item
//!   decoding, labels and metric families) and the table of them.
//! - [`partner_center`]: the transport: the v1 collection envelope and
//!   its lenient field readers, the HTTP client (authentication, headers,
//!   paging, retries, limits) and the partner tenant's shared throttle.
//! - [`collect`]: the scheduler that polls every enabled source on its
//!   interval on a thread of its own, the per-source pollers and health,
//!   the snapshots, and the state the server reads.
//! - [`exposition`]: the one formatter of exposition text, and `/metrics`
//!   as parts rendered ahead, plain and compressed, put together per
//!   scrape with each family written once; the exporter's own metrics.
//! - [`http`]: the HTTP server and its endpoints (`/metrics`, `/`,
//!   `/healthz`, `/readyz`), and `--web.config.file`.
//! - [`auth`]: where access tokens come from: a token file, or App+User
//!   tokens redeemed at Entra ID from a refresh token that is rotated into
//!   `state_dir`; also the device-code `login` command.
//! - [`upstream`]: what the Partner Center and Entra ID clients share:
//!   bodies read within a limit, log-safe text, the retry loop.
//! - [`config`]: the YAML configuration file, its defaults and validation.
//! - [`cli`]: command-line flags, following the Prometheus exporters' conventions.
//! - [`simulator`]: a simulated Partner Center and Entra ID on raw TCP
//!   (datasets, token endpoint, scripted faults, outage, request record),
//!   shared by the demo, the benchmarks and the tests.
//! - [`demo`]: `--demo`: the simulator in its demo configuration and the
//!   exporter configured for it.
//! - [`app`]: wires the pieces together and runs them.
//! - [`telemetry`], [`shutdown`], [`secret`], [`token_file`],
//!   [`build_info`]: logging set-up; SIGTERM and SIGINT as one cancellation
//!   token; a credential type that never prints its value; reading token
//!   and secret files; version, revision and compiler of this build.

#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod build_info;
pub mod cli;
pub mod collect;
pub mod config;
pub mod demo;
pub mod exposition;
pub mod http;
pub mod partner_center;
pub mod secret;
pub mod shutdown;
pub mod simulator;
pub mod sources;
pub mod telemetry;
pub mod token_file;
pub mod upstream;
