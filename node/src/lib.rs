//! Heimdall node library: config, cache, upstream forwarding and serving.

pub mod cache;
pub mod cluster;
pub mod config;
pub mod resolver;
pub mod server;
pub mod stats;
pub mod upstream;
