//! The integration tests, one test binary: a module per area, and `common`,
//! the harness they share (the exporter in-process and as the built binary,
//! scraping, fake upstreams, a throwaway PKI, promtool).
//!
//! Every test of every area runs in this one process, so none may change
//! process-wide state that another could see: no environment variables set
//! here (the binary's environment is set per child process), and tests that
//! read the exporter's logs run in a process of their own
//! (`common::logs::CapturedLogs::isolated`). One area at a time:
//! `cargo test --test it exporter::`.

mod common;

mod auth;
mod cli;
mod decode_properties;
mod deploy_files;
mod ecosystem;
mod exporter;
mod listener;
mod logging;
mod login;
mod resilience;
mod web_config;
