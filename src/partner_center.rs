//! The Partner Center REST API transport: the v1 collection envelope and
//! its lenient field readers, the HTTP client (authentication, headers,
//! paging, retries, limits) and the partner tenant's shared throttle.
//! Nothing here knows a dataset or a metric.

pub mod client;
pub mod collection;
pub mod throttle;
