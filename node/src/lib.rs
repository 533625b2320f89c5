//! Heimdall node library: config, cache, upstream forwarding and serving.
