//! Hot-cache gossip: nodes send each other the cache entries that became hot or were
//! refreshed, in authenticated UDP datagrams, so a fleet pays upstream for a popular name once.
//!
//! - [`wire`]: the versioned datagram format (header, entries, HMAC-SHA256 tag) and a decoder
//!   that never panics.
//! - [`replay`]: the time window and the per-(sender, boot epoch) sliding sequence window.
//! - [`send`]: the pending queue, packing into datagrams, the bandwidth bound.
//! - [`receive`]: authentication, freshness and the per-entry admission rules.
//! - [`swim`]: SWIM failure detection (foca); members it declares down are skipped.
//! - [`stats`]: counters, rejections by reason.
//! - [`warm`]: warm start, the hot set streamed from a peer over the internal gRPC service.
//!
//! [`start`] binds `node.gossip_listen` and runs one sender task (every `gossip.interval_ms`
//! it sends the pending entries to `gossip.fanout` random members that are not down, taken
//! from the Raft membership's gossip addresses), one receiver task and the SWIM task. A node
//! without a cluster secret does not gossip, and says so at start.
//!
//! Liveness: peers are the Raft members; SWIM ([`swim`], foca) probes them over the same
//! socket in authenticated datagrams and declares unresponsive ones down (after direct and
//! indirect probes and a suspicion period); they get gossip again once SWIM sees them up.

pub mod receive;
pub mod replay;
pub mod send;
pub mod stats;
pub mod swim;
pub mod warm;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::seq::IndexedRandom;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use stats::{GossipSnapshot, GossipStats, Reject};

use crate::cluster::ClusterHandle;
use crate::cluster::auth::{Keyring, unix_ms};
use crate::config::Config;
use crate::resolver::Resolver;

/// Why gossip could not start.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// The gossip socket could not be bound.
    #[error("cannot listen on {addr} (node.gossip_listen, udp): {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What both gossip tasks share.
#[derive(Debug)]
struct Shared {
    /// The cluster: id, secret, members, settings and flush epochs.
    cluster: ClusterHandle,
    /// The secret datagrams are signed with, and during a rotation the previous one that is
    /// still accepted.
    keys: Keyring,
    /// Whose cache is spread and filled.
    resolver: Arc<Resolver>,
    /// The gossip socket (both directions).
    socket: UdpSocket,
    /// The members SWIM declared down (written by the SWIM task, read by the sender).
    down: swim::Down,
}

/// Bind the gossip socket and start the sender, receiver and SWIM tasks (they stop when
/// `stop` turns true). Without a cluster secret nothing starts and no task is returned.
pub async fn start(
    config: &Config,
    resolver: Arc<Resolver>,
    cluster: ClusterHandle,
    stop: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, GossipError> {
    let Some(keys) = cluster.keyring().cloned() else {
        tracing::info!(
            "no cluster secret: hot-cache gossip is off (it is authenticated with the secret)"
        );
        return Ok(Vec::new());
    };
    let addr = config.node.gossip_listen;
    let socket = UdpSocket::bind(addr)
        .await
        .map_err(|source| GossipError::Bind { addr, source })?;
    tracing::info!(listen = %addr, "hot-cache gossip on");
    let shared = Arc::new(Shared {
        cluster,
        keys,
        resolver,
        socket,
        down: swim::Down::default(),
    });
    let (swim_tx, swim_rx) = mpsc::channel(swim::EVENT_QUEUE);
    Ok(vec![
        tokio::spawn(send_loop(Arc::clone(&shared), stop.clone())),
        tokio::spawn(swim::run(
            Arc::clone(&shared),
            swim_rx,
            swim_tx.clone(),
            stop.clone(),
        )),
        tokio::spawn(receive_loop(shared, swim_tx, stop)),
    ])
}

/// The ids and gossip addresses of every other member that announced one.
async fn peers(cluster: &ClusterHandle) -> Vec<(u64, SocketAddr)> {
    let mut out = Vec::new();
    for info in cluster.members() {
        if info.id == cluster.id() || info.member.gossip_addr.is_empty() {
            continue;
        }
        let text = &info.member.gossip_addr;
        match text.parse::<SocketAddr>() {
            Ok(addr) => out.push((info.id, addr)),
            Err(_) => match tokio::net::lookup_host(text.as_str()).await {
                Ok(mut addrs) => out.extend(addrs.next().map(|addr| (info.id, addr))),
                Err(e) => tracing::debug!(peer = info.id, addr = %text, "gossip peer: {e}"),
            },
        }
    }
    out
}

/// Every `gossip.interval_ms`: collect hot keys, pick `fanout` peers, send what the
/// bandwidth bound allows.
async fn send_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let cache = shared.resolver.cache();
    let stats = cache.gossip_stats();
    let mut sender = send::Sender::new(shared.cluster.id(), rand::random());
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let mut second = (Instant::now(), 0u64);
    loop {
        let settings = shared.cluster.settings().gossip;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(settings.interval_ms)) => {}
            _ = stop.changed() => return,
        }
        sender.collect(cache);
        let mut peers = peers(&shared.cluster).await;
        let now = Instant::now();
        peers.retain(|(id, _)| !shared.down.contains(*id));
        if cache
            .refreshers()
            .set(shared.cluster.id(), peers.iter().map(|(id, _)| *id))
        {
            tracing::debug!(peers = ?peers, "refresh owners recomputed over the live members");
        }
        if peers.is_empty() {
            sender.clear();
            continue;
        }
        let fanout = usize::try_from(settings.fanout).unwrap_or(1);
        let chosen: Vec<(u64, SocketAddr)> =
            peers.choose_multiple(&mut rng, fanout).copied().collect();
        let datagrams = sender.round(
            cache,
            &settings,
            shared.keys.current(),
            chosen.len(),
            now,
            unix_ms(),
        );
        for datagram in &datagrams {
            for (_, peer) in &chosen {
                if let Err(e) = shared.socket.send_to(datagram, peer).await {
                    tracing::debug!(%peer, "gossip send: {e}");
                }
            }
        }
        let sent = stats.bytes_sent.load(std::sync::atomic::Ordering::Relaxed);
        if second.0.elapsed() >= Duration::from_secs(1) {
            let rate = sent - second.1;
            stats
                .bytes_per_sec
                .store(rate, std::sync::atomic::Ordering::Relaxed);
            second = (Instant::now(), sent);
        }
    }
}

/// Receive datagrams until stopped: admit their entries, hand SWIM messages to the SWIM
/// task (dropped when its queue is full: SWIM tolerates loss).
async fn receive_loop(
    shared: Arc<Shared>,
    swim: mpsc::Sender<swim::Event>,
    mut stop: watch::Receiver<bool>,
) {
    let cache = shared.resolver.cache();
    let mut receiver = receive::Receiver::new(shared.cluster.id());
    let mut buf = vec![0u8; 65_535];
    loop {
        tokio::select! {
            received = shared.socket.recv_from(&mut buf) => match received {
                Ok((len, _)) => {
                    let state = shared.cluster.state();
                    let datagram = buf.get(..len).unwrap_or_default();
                    receiver.handle(datagram, &shared.keys, cache, &state, Instant::now(), unix_ms());
                    if receiver.last_kind() == Some(wire::Kind::Swim) {
                        let message = receiver.swim_message().to_vec();
                        let _ = swim.try_send(swim::Event::Data(message));
                    }
                }
                Err(e) => tracing::debug!("gossip receive: {e}"),
            },
            _ = stop.changed() => return,
        }
    }
}
