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
//!   paging, retries, limits), the commercial analytics reports, and the
//!   partner tenant's shared throttle.
//! - [`collect`]: the scheduler that polls every enabled source on its
//!   interval on a thread of its own, the per-source pollers and health,
//!   the customer listing and the per-customer fan-out, the snapshots,
//!   and the state the server reads.
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
//! - [`config`]: the YAML configuration file, its defaults and validation,
//!   and the effective configuration of each of its `tenants`.
//! - [`filters`]: the customer and SKU filters of the per-customer data.
//! - [`cli`]: command-line flags, following the Prometheus exporters' conventions.
//! - [`simulator`]: a simulated Partner Center and Entra ID on raw TCP
//!   (datasets, token endpoint, scripted faults, outage, request record),
//!   shared by the demo, the benchmarks and the tests.
//! - [`demo`]: `--demo`: two simulated partner tenants, each a simulator
//!   in its demo configuration, and the exporter configured for both.
//! - [`app`]: wires the pieces together and runs them, one set of
//!   authenticator, client and scheduler per partner tenant.
//! - [`tenant`]: the `tenant` label of a configuration with `tenants`.
//! - [`telemetry`], [`shutdown`], [`secret`], [`token_file`],
//!   [`state_file`], [`build_info`]: logging set-up; SIGTERM and SIGINT as
//!   one cancellation token; a credential type that never prints its
//!   value; reading token and secret files; files in `state_dir` written
//!   atomically; version, revision and compiler of this build.

#![forbid(unsafe_code)]

mod app;
mod auth;
mod cli;
mod collect;
mod config;
mod exposition;
mod filters;
mod http;
mod partner_center;
mod secret;
mod sources;
mod state_file;
mod tenant;
mod token_file;
mod upstream;

// Small modules the binary calls as they are.
pub mod build_info;
pub mod demo;
pub mod shutdown;
pub mod telemetry;
// The simulated Partner Center: an API of its own, for the demo, the
// benchmarks and the tests.
pub mod simulator;

// What the binary runs: the command line, the configuration, the wiring,
// the `login` command.
pub use app::{AppError, bind_all, run};
pub use auth::login;
pub use cli::{
    Cli, Command, DEFAULT_LISTEN_ADDRESS, EXIT_CONFIG_ERROR, EXIT_INTERRUPTED, LoginArgs,
};
pub use collect::scheduler::Schedule;
pub use config::{
    AuthConfig, AuthMethod, CLIENT_SECRET_ENV, CommercialApiPrefix, Config, ConfigError,
    PartnerCenterConfig, PollConfig, REFRESH_TOKEN_ENV, SecretEnvironment, SourceConfig,
    SourceEntry, SourcesConfig, TenantConfig,
};
pub use http::server::{
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_REQUESTS, DEFAULT_SHUTDOWN_GRACE,
    DEFAULT_WRITE_STALL_TIMEOUT, ServerSettings,
};
pub use http::web::{ReloadOutcome, WebOptions, WebSecurity};

// Credentials and their storage, for the tests of authentication.
pub use auth::Authenticator;
pub use auth::refresh_token_store::{RefreshTokenStore, STATE_FILE_NAME};
pub use secret::Secret;
pub use tenant::TenantLabel;

// The pipeline of a poll, for the benchmarks, the fuzz target and the
// property tests: each source's decoding, the snapshot and the state a
// scrape reads.
pub use collect::snapshot::{Snapshot, fold_items, render};
pub use collect::state::{ExporterState, TenantState};
pub use exposition::metrics::ExporterMetrics;
pub use sources::{
    Source, SourceName, customer_deployment, customer_licenses, customer_usage, license_deployment,
    license_usage, subscriptions,
};
