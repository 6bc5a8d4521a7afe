//! The Partner Center REST API: the documents it sends and the client that fetches them.

pub mod client;
pub mod model;
