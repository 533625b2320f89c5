//! Heimdall node library: config, cache, upstream forwarding, authoritative answers and serving.

pub mod admin;
pub mod authority;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod gossip;
pub mod guard;
pub mod metrics;
pub mod resolver;
pub mod server;
pub mod stats;
pub mod tls;
pub mod upstream;
