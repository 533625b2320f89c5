//! Warm start: a starting node loads a live peer's hot set over the authenticated internal
//! gRPC service (`RaftService/HotEntries`) before it reports ready.
//!
//! The server side ([`hot_set`]) lists the fresh entries that were hit at least
//! [`GOSSIP_HITS`] times or were learned by gossip (hot on some node), most-hit first. The
//! client side ([`warm_start`]) asks the other members one at a time, in random order, until
//! one answers, and admits every entry under the same rules as a gossiped one (max TTL, at
//! least a second left, flush epochs, TTL never extended). The whole attempt is bounded by
//! [`WARM_START_BOUND`]; the node reports ready afterwards whatever happened.

use std::time::{Duration, Instant};

use heimdall_proto::v1::{HotEntriesRequest, HotEntry};
use rand::seq::SliceRandom;

use super::receive::admit;
use super::wire::WireEntry;
use crate::cache::{Cache, GOSSIP_HITS, Source};
use crate::cluster::ClusterHandle;
use crate::cluster::auth::unix_ms;
use crate::cluster::network::method;

/// Most entries one HotEntries answer carries.
pub const HOT_SET_LIMIT: usize = 10_000;
/// How long a starting node spends on warm start at most before it reports ready.
pub const WARM_START_BOUND: Duration = Duration::from_secs(5);

/// The hot set of `cache` at `now` (`now_ms` on the wall clock), most-hit first, at most
/// `limit` entries (0: [`HOT_SET_LIMIT`]).
pub fn hot_set(cache: &Cache, limit: usize, now: Instant, now_ms: u64) -> Vec<HotEntry> {
    let limit = if limit == 0 {
        HOT_SET_LIMIT
    } else {
        limit.min(HOT_SET_LIMIT)
    };
    let mut hot: Vec<_> = cache
        .fresh_entries(now)
        .into_iter()
        .filter(|(_, e)| e.hits() >= GOSSIP_HITS || e.source() == Source::Gossip)
        .collect();
    hot.sort_unstable_by_key(|(_, e)| std::cmp::Reverse(e.hits()));
    hot.truncate(limit);
    let flush_epoch = cache.flush_epoch();
    let mut buf = vec![0u8; 65_535];
    hot.into_iter()
        .filter_map(|(key, entry)| {
            let len = entry.to_message(&key, now, &mut buf);
            let ttl_ms = u32::try_from(entry.remaining(now).as_millis()).unwrap_or(u32::MAX);
            (len > 0).then(|| HotEntry {
                key: key.to_vec(),
                message: buf[..len].to_vec(),
                ttl_ms,
                flush_epoch,
                sent_at_unix_ms: now_ms,
            })
        })
        .collect()
}

/// Load the hot set of one live member into `cache`, within [`WARM_START_BOUND`]; returns
/// how many entries were stored. Does nothing when this node knows no other member.
pub async fn warm_start(cluster: &ClusterHandle, cache: &Cache) -> usize {
    let started = Instant::now();
    match tokio::time::timeout(WARM_START_BOUND, load(cluster, cache)).await {
        Ok(Some((peer, stored))) => {
            tracing::info!(
                peer,
                stored,
                took_ms = started.elapsed().as_millis() as u64,
                "warm start: loaded a peer's hot set"
            );
            stored
        }
        Ok(None) => 0,
        Err(_) => {
            tracing::warn!(
                bound_ms = WARM_START_BOUND.as_millis() as u64,
                "warm start: no peer answered in time; ready with a cold cache"
            );
            0
        }
    }
}

/// Ask the members in random order until one streams its hot set; `(peer id, stored)`.
async fn load(cluster: &ClusterHandle, cache: &Cache) -> Option<(u64, usize)> {
    let mut members: Vec<_> = cluster
        .members()
        .into_iter()
        .filter(|m| m.id != cluster.id())
        .collect();
    members.shuffle(&mut rand::rng());
    for member in members {
        match fetch(cluster, &member.member.grpc_addr).await {
            Ok(entries) => {
                let state = cluster.state();
                let now = Instant::now();
                let now_ms = unix_ms();
                let stored = entries
                    .iter()
                    .filter(|e| {
                        let entry = WireEntry {
                            key: &e.key,
                            flush_epoch: e.flush_epoch,
                            ttl_ms: e.ttl_ms,
                            message: &e.message,
                        };
                        let age_ms = now_ms.saturating_sub(e.sent_at_unix_ms);
                        admit(&entry, age_ms, cache, &state, now).is_ok()
                    })
                    .count();
                return Some((member.id, stored));
            }
            Err(status) => tracing::info!(
                peer = member.id,
                addr = %member.member.grpc_addr,
                "warm start: {}: {}",
                status.code(),
                status.message()
            ),
        }
    }
    None
}

/// The hot set of the member at `addr`.
async fn fetch(cluster: &ClusterHandle, addr: &str) -> Result<Vec<HotEntry>, tonic::Status> {
    let peers = cluster.peers();
    let mut client = peers.client(addr)?;
    let request = peers.request(method::HOT_ENTRIES, HotEntriesRequest { limit: 0 });
    let mut stream = client.hot_entries(request).await?.into_inner();
    let mut entries = Vec::new();
    while let Some(entry) = stream.message().await? {
        entries.push(entry);
    }
    Ok(entries)
}
