//! Peer liveness by SWIM failure detection (the foca crate): the gossip sender skips members
//! that SWIM declares down and sends to them again once they are back up.
//!
//! Foca runs on one task that owns it. Its messages travel in authenticated gossip datagrams
//! of kind [`Kind::Swim`](super::wire::Kind) on the gossip socket, with their own boot epoch
//! and sequence numbers (so they pass the same HMAC and replay checks as entries); the receive
//! loop hands them over through a bounded channel. SWIM identities are node ids plus a random
//! per-process boot number, and messages are addressed by node id through the gossip
//! addresses recorded in the Raft membership, so only cluster members ever take part. Every
//! second the task announces itself to members SWIM does not know yet (at start, after a
//! member is added or comes back).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use foca::{AccumulatingRuntime, Config, Foca, Identity, OwnedNotification, PostcardCodec, Timer};
use rand_swim::SeedableRng;
use rand_swim::rngs::SmallRng;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::Shared;
use super::wire::{DatagramWriter, HEADER_LEN, Header, TAG_LEN};
use crate::cluster::auth::unix_ms;

/// SWIM messages waiting for the task; more are dropped (SWIM tolerates loss).
pub const EVENT_QUEUE: usize = 1024;
/// How often the task announces itself to members SWIM does not know yet.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// A member SWIM has never heard from (it died before it could join, or cannot be reached)
/// is treated as down after this long, and up as soon as SWIM hears from it.
const UNSEEN_DOWN_AFTER: Duration = Duration::from_secs(5);
/// Largest gossip datagram (as for entries); foca's messages fit what is left of it.
const MAX_DATAGRAM: usize = 1232;

/// A member as SWIM knows it: its node id and its process start time, so a restarted member
/// is a new identity that wins over the old one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SwimId {
    /// The Raft node id.
    pub node: u64,
    /// The process start, Unix ms (0: "whoever runs as this node", used to announce).
    pub boot: u64,
}

impl Identity for SwimId {
    type Addr = u64;

    /// After being declared down, rejoin as a new identity.
    fn renew(&self) -> Option<Self> {
        Some(SwimId {
            node: self.node,
            boot: self.boot.wrapping_add(1),
        })
    }

    /// Identities of one node are the same member.
    fn addr(&self) -> u64 {
        self.node
    }

    /// Of two identities of one node, the later boot wins.
    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.boot > adversary.boot
    }
}

/// What the SWIM task is told.
#[derive(Debug)]
pub enum Event {
    /// A SWIM message received from a member.
    Data(Vec<u8>),
    /// One of foca's timers fired.
    Timer(Timer<SwimId>),
}

/// The members SWIM has declared down, by node id (read by the sender each round).
#[derive(Debug, Default)]
pub struct Down(Mutex<HashSet<u64>>);

impl Down {
    /// Whether `node` is down.
    pub fn contains(&self, node: u64) -> bool {
        self.set().contains(&node)
    }

    /// The set, locked.
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// foca's LAN settings for `members` members, with messages sized to fit a gossip datagram.
fn config(members: usize) -> Config {
    let size = NonZeroU32::new(u32::try_from(members.max(1)).unwrap_or(u32::MAX))
        .unwrap_or(NonZeroU32::MIN);
    let mut config = Config::new_lan(size);
    if let Some(max) = NonZeroUsize::new(MAX_DATAGRAM - HEADER_LEN - TAG_LEN) {
        config.max_packet_size = max;
    }
    config
}

/// Runs the failure detector until `stop`: handles received messages and timers, announces
/// this node to members it does not know, and records who is down in `shared.down`.
pub(super) async fn run(
    shared: Arc<Shared>,
    mut events: mpsc::Receiver<Event>,
    timers: mpsc::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let me = SwimId {
        node: shared.cluster.id(),
        // Later starts win over earlier identities of this node: the start time, in ms.
        boot: unix_ms().max(1),
    };
    let mut foca = Foca::new(
        me,
        config(shared.cluster.members().len()),
        SmallRng::seed_from_u64(rand::random()),
        PostcardCodec,
    );
    let mut runtime = AccumulatingRuntime::new();
    let mut out = Outbox::new(me.boot);
    let mut announce = tokio::time::interval(ANNOUNCE_EVERY);
    let mut unseen: HashMap<u64, Instant> = HashMap::new();
    loop {
        tokio::select! {
            event = events.recv() => {
                let result = match event {
                    Some(Event::Data(bytes)) => foca.handle_data(&bytes, &mut runtime),
                    Some(Event::Timer(timer)) => foca.handle_timer(timer, &mut runtime),
                    None => return,
                };
                if let Err(e) = result {
                    tracing::debug!("swim: {e}");
                }
            }
            _ = announce.tick() => {
                let peers = super::peers(&shared.cluster).await;
                let known: HashSet<u64> = foca.iter_members().map(|m| m.id().node).collect();
                let now = Instant::now();
                unseen.retain(|node, _| !known.contains(node));
                for (node, _) in &peers {
                    if known.contains(node) {
                        continue;
                    }
                    if let Err(e) = foca.announce(SwimId { node: *node, boot: 0 }, &mut runtime) {
                        tracing::debug!(peer = node, "swim announce: {e}");
                    }
                    let since = *unseen.entry(*node).or_insert(now);
                    if now.duration_since(since) >= UNSEEN_DOWN_AFTER
                        && shared.down.set().insert(*node)
                    {
                        tracing::info!(
                            peer = node,
                            reason = "never answered",
                            "gossip peer down (SWIM): skipped"
                        );
                    }
                }
                if let Err(e) = foca.set_config(config(peers.len() + 1)) {
                    tracing::debug!("swim config: {e}");
                }
            }
            _ = stop.changed() => {
                if let Err(e) = foca.leave_cluster(&mut runtime) {
                    tracing::debug!("swim leave: {e}");
                }
                out.flush(&shared, &mut runtime, &timers).await;
                return;
            }
        }
        out.flush(&shared, &mut runtime, &timers).await;
    }
}

/// Sends what foca produced: messages, timers, and membership changes.
struct Outbox {
    /// The boot epoch of this node's SWIM datagram stream.
    epoch: u64,
    /// The last sequence number used in it.
    sequence: AtomicU64,
    /// The boot number of each member's identity last seen up, so that the old identity of a
    /// restarted member going down does not mark the new one down.
    up: HashMap<u64, u64>,
}

impl Outbox {
    /// A stream with boot epoch `epoch`.
    fn new(epoch: u64) -> Outbox {
        Outbox {
            epoch,
            sequence: AtomicU64::new(0),
            up: HashMap::new(),
        }
    }

    /// Sends foca's messages to their members' gossip addresses, arms its timers, and
    /// applies its notifications to `shared.down`.
    async fn flush(
        &mut self,
        shared: &Shared,
        runtime: &mut AccumulatingRuntime<SwimId>,
        timers: &mpsc::Sender<Event>,
    ) {
        while let Some((after, timer)) = runtime.to_schedule() {
            let timers = timers.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = timers.send(Event::Timer(timer)).await;
            });
        }
        while let Some(notification) = runtime.to_notify() {
            match notification {
                OwnedNotification::MemberUp(id) => {
                    self.up.insert(id.node, id.boot);
                    if shared.down.set().remove(&id.node) {
                        tracing::info!(peer = id.node, "gossip peer up again (SWIM)");
                    }
                }
                OwnedNotification::MemberDown(id) => {
                    // A newer identity of the same node may already be up.
                    let newer_up = self.up.get(&id.node).is_some_and(|boot| *boot != id.boot);
                    if !newer_up && shared.down.set().insert(id.node) {
                        tracing::info!(peer = id.node, "gossip peer down (SWIM): skipped");
                    }
                }
                other => tracing::debug!("swim: {other:?}"),
            }
        }
        let mut addresses: Option<Vec<(u64, SocketAddr)>> = None;
        while let Some((to, message)) = runtime.to_send() {
            if addresses.is_none() {
                addresses = Some(super::peers(&shared.cluster).await);
            }
            let Some(addr) = addresses
                .iter()
                .flatten()
                .find_map(|(node, addr)| (*node == to.node).then_some(*addr))
            else {
                continue;
            };
            let header = Header {
                sender: shared.cluster.id(),
                boot_epoch: self.epoch,
                timestamp_ms: unix_ms(),
                sequence: self.sequence.fetch_add(1, Ordering::Relaxed) + 1,
            };
            let datagram = DatagramWriter::swim(&header, &message, shared.keys.current().expose());
            if let Err(e) = shared.socket.send_to(&datagram, addr).await {
                tracing::debug!(peer = to.node, %addr, "swim send: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two identities of one node are one member; the later boot wins; a renewed identity is
    /// a new one of the same node.
    #[test]
    fn identities() {
        let old = SwimId { node: 3, boot: 10 };
        let new = SwimId { node: 3, boot: 11 };
        assert_eq!(old.addr(), new.addr());
        assert!(new.win_addr_conflict(&old) && !old.win_addr_conflict(&new));
        assert_eq!(old.renew(), Some(new));
    }

    /// foca's messages, with our header and tag, fit a gossip datagram.
    #[test]
    fn messages_fit_a_datagram() {
        assert_eq!(
            config(3).max_packet_size.get() + HEADER_LEN + TAG_LEN,
            MAX_DATAGRAM
        );
    }
}
