//! The Partner Center REST API transport: the v1 collection envelope and
//! its lenient field readers, the HTTP client (authentication, headers,
//! paging, retries, limits), the commercial analytics reports' roots and
//! paging, and the partner tenant's shared throttle.
//! Nothing here knows a dataset or a metric.

pub mod client;
pub mod collection;
pub mod commercial;
pub mod throttle;
