//! The upstream UDP socket pool: a bounded set of long-lived connected sockets per upstream,
//! each bound to a random port, with one receive task per socket that hands every reply to the
//! query waiting for its ID and question. Sockets are retired after a number of queries or an
//! age, so the source ports keep changing.
//!
//! Anti-spoofing is that of a fresh socket per query: each socket is `connect`ed to the
//! upstream (the kernel drops datagrams from any other address or port), every query gets a
//! random 16-bit ID that is unique among the socket's queries in flight, and a reply is only
//! taken when its ID and question (case-insensitively) match a waiting query; anything else
//! (wrong ID, wrong question, a late reply to a query that already ended) is counted as
//! mismatched and ignored, and never ends a wait.
//!
//! An ICMP error (port or host unreachable) shows up on a connected socket as an error of its
//! next `recv` or `send`, without saying which query caused it. It fails every query waiting on
//! that socket at once, as a fresh socket per query did for its one query, and the socket is
//! retired: the upstream is not listening, so the waiting queries would only time out, and
//! the forwarder moves on to the next upstream at once.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{Notify, oneshot};
use tokio::time::{Instant, timeout_at};

use super::exchange::{ExchangeError, MAX_QUERY_LEN, ReplyKey, UDP_RECV_LEN, build_query};
use super::{ForwarderStats, Question};

/// How many sockets, queries and seconds the pool of one upstream uses.
///
/// The defaults ([`SocketLimits::DEFAULT`]): 32 sockets per upstream, each retired after 1,000
/// queries or 10 seconds, whichever comes first. 32 sockets spread a busy node's misses so that
/// no socket has more than a few hundred queries in flight (IDs stay easy to keep unique, and
/// a socket's receive buffer is not the bottleneck). Retiring after 1,000 queries or 10 s keeps
/// the ports moving like Unbound's per-query ports do in spirit, while the socket's
/// life cycle (bind, connect, epoll registration, close: the cost this pool removes) is spread
/// over up to 1,000 queries instead of paid for each: at 30k misses/s a node opens about 30
/// sockets a second instead of 30,000. An off-path attacker who learns a port has at most 10 s
/// and 1,000 queries to use it, and must still guess the ID of a question in flight on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketLimits {
    /// Sockets kept open per upstream (queries are spread over them in turn).
    pub sockets: usize,
    /// Queries one socket sends before it is retired.
    pub max_queries: u32,
    /// Age after which a socket takes no new query.
    pub max_age: Duration,
}

impl SocketLimits {
    /// The limits every upstream uses (see the type's documentation for why).
    pub const DEFAULT: SocketLimits = SocketLimits {
        sockets: 32,
        max_queries: 1_000,
        max_age: Duration::from_secs(10),
    };
}

/// The connected UDP sockets of one upstream. Sockets are opened on first use, so a pool costs
/// nothing until its upstream is asked; dropping the pool retires every socket (each closes
/// once its queries in flight have ended).
#[derive(Debug)]
pub struct SocketPool {
    /// The upstream every socket is connected to.
    upstream: SocketAddr,
    /// Size, query budget and age limit of the sockets.
    limits: SocketLimits,
    /// The sockets in use; `None` until first use and after a retirement.
    slots: Box<[Mutex<Option<Arc<Channel>>>]>,
    /// Which slot the next query takes (round robin).
    next: AtomicUsize,
}

/// One connected socket and the queries waiting on it.
#[derive(Debug)]
struct Channel {
    /// The socket, bound to a random port and connected to the upstream.
    socket: UdpSocket,
    /// When it was opened, for the age limit.
    opened: Instant,
    /// The queries in flight and the retirement state.
    state: Mutex<ChannelState>,
    /// Wakes the receive task when the socket is retired, so it can end once idle.
    retired: Notify,
}

/// The mutable part of a [`Channel`].
#[derive(Debug, Default)]
struct ChannelState {
    /// Queries in flight by ID.
    waiting: HashMap<u16, Waiter>,
    /// Queries sent so far (the retirement budget).
    sent: u32,
    /// Takes no new query; the receive task ends when `waiting` is empty.
    retired: bool,
    /// The token of the next waiter.
    next_token: u64,
}

/// A query waiting for its reply.
#[derive(Debug)]
struct Waiter {
    /// Its question, which the reply must echo.
    question: Question,
    /// Tells a registration apart from a later one that got the same ID.
    token: u64,
    /// Where the reply (or the socket's error) goes.
    reply: oneshot::Sender<Result<Box<[u8]>, ExchangeError>>,
}

/// Removes its waiter when the query ends in any way (answer, timeout, error, cancellation).
struct Registration<'a> {
    /// The socket the query waits on.
    channel: &'a Channel,
    /// The query's ID.
    id: u16,
    /// The waiter's token: the ID may already belong to another query.
    token: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut state = self.channel.lock();
        if state
            .waiting
            .get(&self.id)
            .is_some_and(|w| w.token == self.token)
        {
            state.waiting.remove(&self.id);
        }
        self.channel.unlock(state);
    }
}

impl SocketPool {
    /// A pool for `upstream`; no socket is opened yet.
    pub fn new(upstream: SocketAddr, limits: SocketLimits) -> SocketPool {
        SocketPool {
            upstream,
            limits,
            slots: (0..limits.sockets.max(1))
                .map(|_| Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Send `question` on one of the pool's sockets and wait until `deadline` for the reply
    /// that matches its ID and question. Must run on a tokio runtime (a new socket spawns its
    /// receive task).
    pub(super) async fn query(
        &self,
        question: &Question,
        deadline: Instant,
        stats: &Arc<ForwarderStats>,
    ) -> Result<Box<[u8]>, ExchangeError> {
        let (channel, id, token, reply) = self.register(question, stats)?;
        let _registration = Registration {
            channel: &channel,
            id,
            token,
        };
        let mut query = [0u8; MAX_QUERY_LEN];
        let len = build_query(question, id, &mut query).map_err(ExchangeError::Build)?;
        stats.queries.incr();
        if let Err(e) = channel.socket.send(&query[..len]).await {
            // Most likely an ICMP error from an earlier query: the socket is of no more use.
            let error = ExchangeError::from(e);
            channel.fail(&error);
            return Err(error);
        }
        match timeout_at(deadline, reply).await {
            Ok(Ok(result)) => result,
            // The sender is only dropped with the socket's receive task (runtime shutdown).
            Ok(Err(_)) => Err(ExchangeError::Io("upstream socket closed".to_owned())),
            Err(_) => Err(ExchangeError::Timeout),
        }
    }

    /// Pick a socket (opening one if its slot is empty or retired) and register a waiter for
    /// `question` under a fresh random ID. Returns the socket, the ID, the waiter's token and
    /// the receiver of the reply.
    #[allow(clippy::type_complexity)]
    fn register(
        &self,
        question: &Question,
        stats: &Arc<ForwarderStats>,
    ) -> Result<
        (
            Arc<Channel>,
            u16,
            u64,
            oneshot::Receiver<Result<Box<[u8]>, ExchangeError>>,
        ),
        ExchangeError,
    > {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let Some(slot) = self.slots.get(i) else {
            return Err(ExchangeError::Io("no socket slot".to_owned()));
        };
        let mut slot = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        // At most two rounds: a socket that is retired (or retires now) is replaced once.
        for _ in 0..2 {
            let channel = match &*slot {
                Some(channel) => Arc::clone(channel),
                None => {
                    let channel = Channel::open(self.upstream)?;
                    tokio::spawn(receive(Arc::clone(&channel), Arc::clone(stats)));
                    *slot = Some(Arc::clone(&channel));
                    channel
                }
            };
            let (tx, rx) = oneshot::channel();
            if let Some((id, token)) = channel.add(question, tx, &self.limits, now) {
                return Ok((channel, id, token, rx));
            }
            *slot = None;
        }
        Err(ExchangeError::Io(
            "a new upstream socket refused a query".to_owned(),
        ))
    }

    /// The local ports of the sockets open now (in slot order), for tests.
    #[cfg(test)]
    fn ports(&self) -> Vec<Option<u16>> {
        self.slots
            .iter()
            .map(|slot| {
                let slot = slot.lock().unwrap_or_else(|p| p.into_inner());
                slot.as_ref()
                    .and_then(|c| c.socket.local_addr().ok())
                    .map(|a| a.port())
            })
            .collect()
    }
}

impl Drop for SocketPool {
    /// Retire every socket: each closes when its last query in flight has ended.
    fn drop(&mut self) {
        for slot in self.slots.iter() {
            let slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(channel) = &*slot {
                channel.retire();
            }
        }
    }
}

impl Channel {
    /// Open a socket on a random port (the kernel's choice) connected to `upstream`.
    fn open(upstream: SocketAddr) -> Result<Arc<Channel>, ExchangeError> {
        let local: SocketAddr = match upstream.ip() {
            IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = std::net::UdpSocket::bind(local)?;
        socket.connect(upstream)?;
        socket.set_nonblocking(true)?;
        Ok(Arc::new(Channel {
            socket: UdpSocket::from_std(socket)?,
            opened: Instant::now(),
            state: Mutex::new(ChannelState::default()),
            retired: Notify::new(),
        }))
    }

    /// The state, even if a thread panicked while holding it (it stays consistent).
    fn lock(&self) -> MutexGuard<'_, ChannelState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Release `state`; when the socket is retired and no query waits on it any more, wake
    /// the receive task so it can end and the socket close.
    fn unlock(&self, state: MutexGuard<'_, ChannelState>) {
        let idle = state.retired && state.waiting.is_empty();
        drop(state);
        if idle {
            self.retired.notify_one();
        }
    }

    /// Register a waiter for `question` under a random ID unique among this socket's queries
    /// in flight; None when the socket is retired (or its budget or age is used up).
    fn add(
        &self,
        question: &Question,
        reply: oneshot::Sender<Result<Box<[u8]>, ExchangeError>>,
        limits: &SocketLimits,
        now: Instant,
    ) -> Option<(u16, u64)> {
        let mut state = self.lock();
        if state.retired
            || state.sent >= limits.max_queries
            || now.saturating_duration_since(self.opened) >= limits.max_age
        {
            if !state.retired {
                state.retired = true;
                self.unlock(state);
            }
            return None;
        }
        // The budget caps the queries in flight far below the 65,536 IDs, so this ends fast.
        let id = loop {
            let id: u16 = rand::random();
            if !state.waiting.contains_key(&id) {
                break id;
            }
        };
        let token = state.next_token;
        state.next_token += 1;
        state.sent += 1;
        if state.sent >= limits.max_queries {
            // The last query of its budget: the next one opens a new socket.
            state.retired = true;
        }
        state.waiting.insert(
            id,
            Waiter {
                question: question.clone(),
                token,
                reply,
            },
        );
        Some((id, token))
    }

    /// Take no new query; the receive task ends (and the socket closes) once idle.
    fn retire(&self) {
        let mut state = self.lock();
        state.retired = true;
        drop(state);
        self.retired.notify_one();
    }

    /// Hand `reply` to the query it answers, or count it as mismatched.
    fn deliver(&self, reply: &[u8], stats: &ForwarderStats) {
        let Some(key) = ReplyKey::read(reply) else {
            stats.mismatched.incr();
            return;
        };
        let mut state = self.lock();
        let waiter = match state.waiting.get(&key.id()) {
            Some(waiter) if key.answers(key.id(), &waiter.question) => {
                state.waiting.remove(&key.id())
            }
            _ => None,
        };
        self.unlock(state);
        match waiter {
            Some(waiter) => {
                // The query may have given up just now; then the reply is simply dropped.
                let _ = waiter.reply.send(Ok(reply.into()));
            }
            None => stats.mismatched.incr(),
        }
    }

    /// The socket failed (an ICMP error, see the module documentation): fail every query
    /// waiting on it with `error` and retire it.
    fn fail(&self, error: &ExchangeError) {
        let mut state = self.lock();
        state.retired = true;
        let waiting = std::mem::take(&mut state.waiting);
        drop(state);
        for (_, waiter) in waiting {
            let _ = waiter.reply.send(Err(error.clone()));
        }
        self.retired.notify_one();
    }

    /// Whether the socket is retired and no query waits on it any more.
    fn finished(&self) -> bool {
        let state = self.lock();
        state.retired && state.waiting.is_empty()
    }
}

/// The receive task of one socket: read replies and hand each to its query until the socket
/// is retired and idle; then the socket closes.
async fn receive(channel: Arc<Channel>, stats: Arc<ForwarderStats>) {
    let mut buf = vec![0u8; UDP_RECV_LEN];
    loop {
        tokio::select! {
            biased;
            received = channel.socket.recv(&mut buf) => match received {
                Ok(n) => channel.deliver(buf.get(..n).unwrap_or_default(), &stats),
                Err(e) => channel.fail(&ExchangeError::from(e)),
            },
            () = channel.retired.notified() => {}
        }
        if channel.finished() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// A question for `name` (lower-case, dotted, no trailing dot), type A.
    fn question(name: &str) -> Question {
        let mut wire = Vec::new();
        for label in name.split('.') {
            wire.push(label.len() as u8);
            wire.extend_from_slice(label.as_bytes());
        }
        wire.push(0);
        Question {
            name: wire.into_boxed_slice(),
            qtype: 1,
            qclass: 1,
            dnssec_ok: false,
            checking_disabled: false,
        }
    }

    /// The query turned into its reply: QR set, no records (the OPT record dropped).
    fn reply_to(query: &[u8]) -> Vec<u8> {
        let mut reply = query.to_vec();
        reply[2] |= 0x80;
        // arcount = 0: cut the OPT record (the question ends 4 bytes after the name's root).
        reply[10] = 0;
        reply[11] = 0;
        let name_end = 12
            + reply[12..]
                .iter()
                .position(|&b| b == 0)
                .expect("the name ends")
            + 1;
        reply.truncate(name_end + 4);
        reply
    }

    /// The ID of a message.
    fn id_of(msg: &[u8]) -> u16 {
        u16::from_be_bytes([msg[0], msg[1]])
    }

    /// A fake upstream on loopback.
    async fn upstream() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind the fake upstream")
    }

    /// Receive one query at the fake upstream.
    async fn recv_query(upstream: &UdpSocket) -> (Vec<u8>, SocketAddr) {
        let mut buf = vec![0u8; 2048];
        let (n, from) = upstream.recv_from(&mut buf).await.expect("a query arrives");
        buf.truncate(n);
        (buf, from)
    }

    fn limits(sockets: usize, max_queries: u32, max_age: Duration) -> SocketLimits {
        SocketLimits {
            sockets,
            max_queries,
            max_age,
        }
    }

    /// A fake upstream, a pool of sockets to it and the counters.
    struct Fixture {
        /// The fake upstream.
        server: UdpSocket,
        /// The pool under test.
        pool: Arc<SocketPool>,
        /// The counters its receive tasks write.
        stats: Arc<ForwarderStats>,
    }

    impl Fixture {
        /// A fake upstream and a pool with `limits` in front of it.
        async fn start(limits: SocketLimits) -> Fixture {
            let server = upstream().await;
            let pool = Arc::new(SocketPool::new(
                server.local_addr().expect("upstream address"),
                limits,
            ));
            Fixture {
                server,
                pool,
                stats: Arc::new(ForwarderStats::default()),
            }
        }

        /// Query `name` on a task, with 5 s to get the reply.
        fn spawn(&self, name: &str) -> tokio::task::JoinHandle<Result<Box<[u8]>, ExchangeError>> {
            let (pool, stats) = (Arc::clone(&self.pool), Arc::clone(&self.stats));
            let q = question(name);
            let deadline = Instant::now() + Duration::from_secs(5);
            tokio::spawn(async move { pool.query(&q, deadline, &stats).await })
        }
    }

    /// IDs registered on one socket are unique among its queries in flight, even when many
    /// are in flight at once.
    #[tokio::test]
    async fn ids_are_unique_per_socket() {
        let f = Fixture::start(limits(1, 100_000, Duration::from_secs(60))).await;
        let q = question("example.test");
        let mut held = Vec::new();
        let mut ids = HashSet::new();
        for _ in 0..5_000 {
            let (channel, id, token, rx) = f.pool.register(&q, &f.stats).expect("register");
            assert!(ids.insert(id), "id {id} handed out twice while in flight");
            held.push((channel, id, token, rx));
        }
        let channel = Arc::clone(&held[0].0);
        assert!(held.iter().all(|h| Arc::ptr_eq(&h.0, &channel)));
        assert_eq!(channel.lock().waiting.len(), 5_000);
        // Ending the queries frees their IDs.
        for (channel, id, token, _) in &held {
            drop(Registration {
                channel,
                id: *id,
                token: *token,
            });
        }
        assert!(channel.lock().waiting.is_empty());
    }

    /// Replies answered out of order on one socket reach the query each belongs to.
    #[tokio::test]
    async fn replies_are_demultiplexed_by_id_and_question() {
        let f = Fixture::start(limits(1, 1_000, Duration::from_secs(60))).await;
        let names = ["a.test", "b.test", "c.test", "d.test"];
        let tasks: Vec<_> = names.iter().map(|name| f.spawn(name)).collect();
        let mut queries = Vec::new();
        for _ in names {
            queries.push(recv_query(&f.server).await);
        }
        let port = queries[0].1;
        assert!(queries.iter().all(|(_, from)| *from == port), "one socket");
        for (query, from) in queries.iter().rev() {
            f.server
                .send_to(&reply_to(query), from)
                .await
                .expect("send a reply");
        }
        for (task, name) in tasks.into_iter().zip(names) {
            let reply = task.await.expect("task").expect("reply");
            let key = ReplyKey::read(&reply).expect("a readable reply");
            assert!(
                key.answers(key.id(), &question(name)),
                "{name} got another reply"
            );
        }
        assert_eq!(f.stats.mismatched.get(), 0);
    }

    /// Queries take the pool's sockets in turn, each on its own random port.
    #[tokio::test]
    async fn queries_spread_over_the_sockets() {
        let f = Fixture::start(limits(4, 1_000, Duration::from_secs(60))).await;
        let tasks: Vec<_> = (0..8).map(|i| f.spawn(&format!("n{i}.test"))).collect();
        let mut ports = HashSet::new();
        for _ in 0..8 {
            let (query, from) = recv_query(&f.server).await;
            ports.insert(from.port());
            f.server
                .send_to(&reply_to(&query), from)
                .await
                .expect("send a reply");
        }
        assert_eq!(ports.len(), 4, "8 queries on 4 sockets");
        for task in tasks {
            task.await.expect("task").expect("reply");
        }
    }

    /// A reply with a waiting query's ID but another question, and one with an unknown ID,
    /// are counted and ignored; the query still gets its real reply afterwards. A perfect
    /// forgery after the answer finds no waiting query and is counted too.
    #[tokio::test]
    async fn mismatched_replies_are_ignored_and_counted() {
        let f = Fixture::start(SocketLimits::DEFAULT).await;
        let task = f.spawn("real.test");
        let (query, from) = recv_query(&f.server).await;
        let real = reply_to(&query);
        let mut wrong_question = real.clone();
        wrong_question[13] = b'f'; // "real" -> "feal"
        let mut wrong_id = real.clone();
        wrong_id[..2].copy_from_slice(&id_of(&real).wrapping_add(1).to_be_bytes());
        for forged in [&wrong_question[..], &wrong_id[..], b"junk"] {
            f.server.send_to(forged, from).await.expect("send a reply");
        }
        // The upper-cased question still matches (the question is compared case-insensitively).
        let mut upper = real.clone();
        upper[13..17].copy_from_slice(b"REAL");
        f.server.send_to(&upper, from).await.expect("send a reply");
        let reply = task.await.expect("task").expect("reply");
        assert_eq!(&reply[..], &upper[..]);
        assert_eq!(f.stats.mismatched.get(), 3);
        f.server.send_to(&real, from).await.expect("send a reply");
        tokio::time::timeout(Duration::from_secs(5), async {
            while f.stats.mismatched.get() < 4 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the late forgery is read and counted");
    }

    /// Whether nothing listens at `addr` any more: a datagram to it draws an ICMP port
    /// unreachable, which a connected probe socket sees as ECONNREFUSED.
    fn port_closed(addr: SocketAddr) -> bool {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind the probe");
        probe.connect(addr).expect("connect the probe");
        probe
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set the probe timeout");
        (0..50).any(|_| {
            let _ = probe.send(b"x");
            let mut buf = [0u8; 16];
            probe
                .recv(&mut buf)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
        })
    }

    /// A socket is replaced after its query budget (a new random port), and the retired one
    /// still delivers the replies of its queries in flight, then closes.
    #[tokio::test]
    async fn sockets_retire_after_their_budget() {
        let f = Fixture::start(limits(1, 2, Duration::from_secs(60))).await;
        let first = f.spawn("one.test");
        let (q1, from1) = recv_query(&f.server).await;
        let second = f.spawn("two.test");
        let (q2, from2) = recv_query(&f.server).await;
        assert_eq!(from1, from2, "the budget of 2 is shared by one socket");
        let third = f.spawn("three.test");
        let (q3, from3) = recv_query(&f.server).await;
        assert_ne!(
            from1.port(),
            from3.port(),
            "the third query opens a new socket"
        );
        assert_eq!(f.pool.ports(), vec![Some(from3.port())]);
        // The retired socket still answers its queries in flight.
        for (query, from) in [(&q2, from2), (&q1, from1), (&q3, from3)] {
            f.server
                .send_to(&reply_to(query), from)
                .await
                .expect("send a reply");
        }
        for task in [first, second, third] {
            task.await.expect("task").expect("reply");
        }
        // Idle and retired: its receive task ends and the port is closed.
        let closed = tokio::task::spawn_blocking(move || port_closed(from1));
        assert!(
            closed.await.expect("probe task"),
            "the retired socket was closed"
        );
        assert_eq!(f.stats.mismatched.get(), 0);
    }

    /// A socket older than its age limit takes no new query.
    #[tokio::test(start_paused = true)]
    async fn sockets_retire_after_their_age() {
        let f = Fixture::start(limits(1, 1_000, Duration::from_secs(10))).await;
        let q = question("age.test");
        let first = f.pool.register(&q, &f.stats).expect("register");
        let before = f.pool.ports();
        tokio::time::advance(Duration::from_secs(11)).await;
        let second = f.pool.register(&q, &f.stats).expect("register");
        assert!(!Arc::ptr_eq(&first.0, &second.0));
        assert_ne!(before, f.pool.ports());
        assert!(first.0.lock().retired);
    }

    /// An ICMP port unreachable (nothing listens at the upstream) fails the waiting queries at
    /// once instead of letting them time out, and the socket is replaced.
    #[tokio::test]
    async fn unreachable_upstream_fails_fast() {
        let gone = upstream().await;
        let addr = gone.local_addr().expect("address");
        drop(gone);
        let pool = SocketPool::new(addr, limits(1, 1_000, Duration::from_secs(60)));
        let stats = Arc::new(ForwarderStats::default());
        let started = Instant::now();
        let deadline = started + Duration::from_secs(5);
        let result = pool.query(&question("x.test"), deadline, &stats).await;
        assert!(
            matches!(result, Err(ExchangeError::Io(_))),
            "got {result:?} after {:?}",
            started.elapsed()
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        // The next query gets a new socket.
        let before = pool.ports();
        let _ = pool.query(&question("y.test"), deadline, &stats).await;
        assert_ne!(before, pool.ports());
    }
}
