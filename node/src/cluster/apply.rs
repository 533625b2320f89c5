//! Live apply: every committed change to the cluster state reaches this node's query engine
//! without a restart.
//!
//! [`LiveApply`] follows the state machine's published [`ClusterState`] and, on each change,
//! swaps the upstream list ([`Forwarder::set_upstreams`](crate::upstream::Forwarder)), the
//! cache policy ([`Cache::set_policy`](crate::cache::Cache::set_policy)) and the access and
//! rate-limit policy ([`Guard::set_policy`](crate::guard::Guard::set_policy)); all are arc-swaps,
//! so a query in flight finishes on what it started with and none is dropped. Cluster-wide
//! flushes newer than the last one applied here are applied to the local cache.

use std::net::SocketAddr;
use std::sync::Arc;

use heimdall_wire::MAX_NAME_LEN;

use super::settings::ClusterSettings;
use super::state::{ClusterState, FlushCatchUp, FlushEpoch, FlushScope};
use crate::cache::FlushTarget;
use crate::config::{Config, RESOLV_CONF, parse_resolv_conf};
use crate::guard::GuardPolicy;
use crate::resolver::Resolver;

/// Applies cluster state changes to one node's resolver.
#[derive(Debug)]
pub struct LiveApply {
    /// The query engine whose upstreams and cache policy are swapped.
    resolver: Arc<Resolver>,
    /// The cluster settings this node's own configuration asks for (what it would seed).
    file_settings: ClusterSettings,
    /// The node's configured upstreams, used when the cluster leaves the list empty and
    /// /etc/resolv.conf has none.
    node_upstreams: Vec<SocketAddr>,
    /// The settings last applied (`None`: still running on the node's own file values).
    applied: Option<ClusterSettings>,
    /// The last flush epoch applied to the local cache.
    flush_epoch: u64,
}

impl LiveApply {
    /// Starts from the node's configuration; flushes up to `state`'s epoch are taken as done
    /// (the cache starts empty at process start).
    pub fn new(
        resolver: Arc<Resolver>,
        config: &Config,
        file_settings: ClusterSettings,
        state: &ClusterState,
    ) -> Self {
        Self {
            resolver,
            file_settings,
            node_upstreams: config.upstream.servers.clone(),
            applied: None,
            flush_epoch: state.flush_epoch,
        }
    }

    /// Applies `state`: settings when they changed (and once seeded), then new flushes.
    pub fn apply(&mut self, state: &ClusterState) {
        if state.version > 0 && self.applied.as_ref() != Some(&state.settings) {
            if self.applied.is_none() {
                self.report_ignored_file_values(&state.settings, state.version);
            }
            self.apply_settings(&state.settings, state.version);
            self.applied = Some(state.settings.clone());
        }
        if state.flush_epoch > self.flush_epoch {
            match state.flushes_after(self.flush_epoch) {
                FlushCatchUp::All => {
                    tracing::info!(
                        epoch = state.flush_epoch,
                        "flush epochs were missed: clearing the whole cache"
                    );
                    self.resolver.cache().clear();
                }
                FlushCatchUp::Flushes(flushes) => {
                    for flush in flushes {
                        self.apply_flush(flush);
                    }
                }
            }
            self.flush_epoch = state.flush_epoch;
        }
        // Gossip stamps outgoing entries with it: the cache has survived every flush up to it.
        self.resolver.cache().set_flush_epoch(self.flush_epoch);
    }

    /// Logs, once, which of this node's file values the cluster's settings override.
    fn report_ignored_file_values(&self, cluster: &ClusterSettings, version: u64) {
        let changes = self.file_settings.diff(cluster);
        if changes.is_empty() {
            return;
        }
        let listed: Vec<String> = changes
            .iter()
            .map(|c| format!("{} (file {}, cluster {})", c.key, c.old, c.new))
            .collect();
        tracing::warn!(
            version,
            "the cluster's settings win over this node's configuration file; ignoring: {}",
            listed.join("; ")
        );
    }

    /// Swaps in the upstreams, the cache policy and the local records of `settings`.
    fn apply_settings(&self, settings: &ClusterSettings, version: u64) {
        let authority = self.resolver.authority();
        crate::authority::apply_local_records(authority, self.applied.as_ref(), settings, version);
        let upstreams = if settings.upstreams.is_empty() && self.node_upstreams.is_empty() {
            // Only an authoritative-only node (a zone, no upstream) has none: it never forwards.
            Vec::new()
        } else if settings.upstreams.is_empty() {
            let text = std::fs::read_to_string(RESOLV_CONF).unwrap_or_default();
            let from_resolv = parse_resolv_conf(&text);
            if from_resolv.is_empty() {
                self.node_upstreams.clone()
            } else {
                from_resolv
            }
        } else {
            settings.upstreams.clone()
        };
        let forwarder = self.resolver.forwarder();
        if forwarder.upstream_addrs() != upstreams {
            forwarder.set_upstreams(&upstreams);
            tracing::info!(version, upstreams = ?upstreams, "upstreams applied");
        }
        let cache = self.resolver.cache();
        let policy = settings.cache_policy();
        if *cache.policy() != policy {
            cache.set_policy(policy);
            tracing::info!(version, cache = ?settings.cache, "cache policy applied");
        }
        if self
            .resolver
            .guard()
            .set_policy(GuardPolicy::from(settings))
        {
            tracing::info!(
                version,
                acl = ?settings.acl.allow_from,
                rate_limit = ?settings.rate_limit,
                "access and rate-limit policy applied"
            );
        }
    }

    /// Removes what one flush covers from the local cache (every DO/CD variant).
    fn apply_flush(&self, flush: &FlushEpoch) {
        let cache = self.resolver.cache();
        let removed = with_flush_target(&flush.scope, |target| cache.flush(target)).unwrap_or(0);
        tracing::info!(epoch = flush.epoch, scope = ?flush.scope, removed, "flush applied");
    }
}

/// Calls `f` with the cache target of a flush `scope` (names lower-cased in wire form);
/// `None` when the scope's name is not a valid domain name.
pub fn with_flush_target<R>(scope: &FlushScope, f: impl FnOnce(FlushTarget<'_>) -> R) -> Option<R> {
    let mut wire = [0u8; MAX_NAME_LEN];
    let mut lower = |name: &str| -> Option<usize> {
        let len = heimdall_wire::name_from_str(name, &mut wire).ok()?;
        wire.get_mut(..len)?.make_ascii_lowercase();
        Some(len)
    };
    let target = match scope {
        FlushScope::All => FlushTarget::All,
        FlushScope::Type(qtype) => FlushTarget::Type(*qtype),
        FlushScope::Name(name) => {
            let len = lower(name)?;
            FlushTarget::Name(wire.get(..len)?)
        }
        FlushScope::Subtree(name) => {
            let len = lower(name)?;
            FlushTarget::Subtree(wire.get(..len)?)
        }
        FlushScope::NameType(name, qtype) => {
            let len = lower(name)?;
            FlushTarget::NameType(wire.get(..len)?, *qtype)
        }
    };
    Some(f(target))
}
