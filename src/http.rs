//! The exporter's HTTP side: the server that only serves what the last
//! polls produced and never calls upstream, and exporter-toolkit's web
//! configuration that protects it.
//!
//! - [`server`]: listeners, connections (TLS, timeouts, stalls), graceful
//!   shutdown.
//! - [`routes`]: the endpoints: `/metrics`, `/`, `/healthz`, `/readyz`.
//! - [`body`]: the response body that sends ready frames and holds the
//!   scrape's slot until it is written.
//! - [`web`]: `--web.config.file`: TLS and client certificates, basic
//!   auth, response headers and rate limit, re-read when the files change.

pub mod body;
pub mod routes;
pub mod server;
pub mod web;
