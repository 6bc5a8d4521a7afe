//! The integration tests, one test binary: a module per area, and `common`,
//! what they share (the harness that starts the exporter in-process or as
//! the built binary and scrapes it, fake upstreams, a throwaway PKI,
//! promtool).
//!
//! Every test of every area runs in this one process, so none may change
//! process-wide state that another could see: no environment variable of
//! this process is set (a child process gets its own through `Command`),
//! and a test that reads the exporter's logs runs in a process of its own
//! (`CapturedLogs::in_own_process`). One area at a time:
//! `cargo test --test it exporter::`.

mod common;

mod auth;
mod cli;
mod customers;
mod decode_properties;
mod deploy_files;
mod ecosystem;
mod exporter;
mod listener;
mod logging;
mod login;
mod resilience;
mod sources;
mod subscriptions;
mod tenants;
mod web_config;
