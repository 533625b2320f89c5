//! Proof that a UDP cache hit allocates nothing, on both UDP backends (epoll and io_uring): this
//! test binary installs a counting global allocator that counts only on the node's UDP worker
//! threads (`heimdall-udp-*`, `heimdall-udp-uring-*` on io_uring), runs the node library in
//! process on real sockets against a real authoritative upstream, and sends 10,000 cache hits
//! (mixed, in one test, with answers from a zone the node serves itself) with prefetch and
//! everything the node counts on a hit (per-worker counters by protocol, type and rcode, the
//! latency histogram and the top-names sketch, which are always on), and with the access and
//! abuse controls on: an ACL whose matching network is listed last, rate limiting with the
//! loopback exemption off (at a rate the test never reaches), and DNS cookies (half the
//! queries earn a fresh server cookie, half present a valid one). The tests take turns (one
//! lock), as the counter is process-wide.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use heimdall_node::authority::demo::DEMO_ZONE;
use heimdall_node::config::{Config, IoBackend, Secret};
use heimdall_proto::v1::ConfigSetRequest;
use heimdall_tests::control::{Control, authed};
use heimdall_tests::node::TEST_ADMIN_TOKEN;
use heimdall_tests::prom::scrape_parsed;
use heimdall_tests::{AuthServer, Zone, build_query, unique_addr, wait_until};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{RData, RecordType};
use tokio::sync::oneshot;

/// Allocations made on UDP worker threads since the process started.
static WORKER_ALLOCS: AtomicU64 = AtomicU64::new(0);

/// Set when an io_uring worker thread (`heimdall-udp-uring-*`) is first seen.
static SAW_URING_WORKER: AtomicBool = AtomicBool::new(false);

/// Lets one test at a time run a node (the counter is shared by the whole process).
static ONE_NODE: Mutex<()> = Mutex::new(());

/// What the allocator knows about the current thread.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ThreadKind {
    /// Not looked at yet.
    Unknown,
    /// Being looked at (allocations made while reading the thread's name are not counted).
    Checking,
    /// A `heimdall-udp-*` worker: its allocations count.
    Worker,
    /// Any other thread.
    Other,
}

thread_local! {
    /// This thread's kind, decided on its first allocation.
    static KIND: Cell<ThreadKind> = const { Cell::new(ThreadKind::Unknown) };
}

/// Counts allocations on worker threads, then defers to the system allocator.
struct CountingAlloc;

/// Count one allocation if the calling thread is a UDP worker.
fn count() {
    let _ = KIND.try_with(|kind| match kind.get() {
        ThreadKind::Worker => {
            WORKER_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        ThreadKind::Unknown => {
            kind.set(ThreadKind::Checking);
            let current = std::thread::current();
            let name = current.name();
            let worker = name.is_some_and(|n| n.starts_with("heimdall-udp"));
            if name.is_some_and(|n| n.starts_with("heimdall-udp-uring")) {
                SAW_URING_WORKER.store(true, Ordering::Relaxed);
            }
            kind.set(if worker {
                ThreadKind::Worker
            } else {
                ThreadKind::Other
            });
            if worker {
                WORKER_ALLOCS.fetch_add(1, Ordering::Relaxed);
            }
        }
        ThreadKind::Checking | ThreadKind::Other => {}
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting has no effect on
// the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Names in the test zone; the hits cycle over them.
const NAMES: usize = 64;
/// Cache hits measured.
const HITS: usize = 10_000;
/// The client cookie every query carries (RFC 7873 option 10).
const CLIENT_COOKIE: [u8; 8] = [0x41, 0x4c, 0x4c, 0x4f, 0x43, 0x2d, 0x30, 0x31];

/// Send `query` and wait for its answer (2 s per try, 3 tries).
fn ask(socket: &UdpSocket, query: &[u8], id: u16, buf: &mut [u8]) -> Result<usize> {
    for _ in 0..3 {
        socket.send(query)?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match socket.recv(buf) {
                Ok(n) if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id => return Ok(n),
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    bail!("no answer to query id {id}")
}

/// 10,000 UDP cache hits make zero heap allocations on the epoll worker thread.
#[test]
fn cache_hits_do_not_allocate() -> Result<()> {
    measure(IoBackend::Epoll, false)
}

/// With a zone loaded, cache hits for names outside it (which pass through the authority
/// lookup) and the zone's own answers make zero heap allocations on the worker thread.
#[test]
fn cache_hits_and_zone_answers_do_not_allocate() -> Result<()> {
    measure(IoBackend::Epoll, true)
}

/// 10,000 UDP cache hits make zero heap allocations on the io_uring worker thread.
#[test]
fn cache_hits_do_not_allocate_on_io_uring() -> Result<()> {
    if let Err(why) = heimdall_node::server::io_uring_available() {
        println!("SKIPPED: io_uring is not available here ({why})");
        return Ok(());
    }
    measure(IoBackend::Uring, false)?;
    ensure!(
        SAW_URING_WORKER.load(Ordering::SeqCst),
        "no io_uring worker ran (did the node fall back to epoll?)"
    );
    Ok(())
}

/// Run a node on `backend` (serving the demo zone too when `with_zone`, and then asking
/// for one of its names as well) and count the allocations of 10,000 answers on its worker.
fn measure(backend: IoBackend, with_zone: bool) -> Result<()> {
    let _one = ONE_NODE.lock().unwrap_or_else(PoisonError::into_inner);
    SAW_URING_WORKER.store(false, Ordering::SeqCst);
    let mut zone = Zone::new("alloc.test.").soa(3600, 300);
    for i in 0..NAMES {
        let ip = Ipv4Addr::new(198, 18, 0, i as u8);
        zone = zone.add(&format!("n{i}"), 3600, RData::A(A(ip)));
    }
    let auth = AuthServer::start(zone)?;
    let listen = unique_addr(5353)?;
    let data = tempfile::tempdir()?;

    let mut config = Config::default();
    config.dns.listen = listen;
    config.node.metrics_listen = SocketAddr::new(listen.ip(), 9153);
    config.node.grpc_listen = SocketAddr::new(listen.ip(), 50051);
    config.node.gossip_listen = SocketAddr::new(listen.ip(), 7946);
    config.admin.token = Some(Secret::new(TEST_ADMIN_TOKEN));
    config.dns.workers = 1;
    config.upstream.servers = vec![auth.addr()];
    config.node.data_dir = data.path().to_path_buf();
    config.cache.prefetch = true;
    config.dns.io_backend = backend;
    if with_zone {
        let records = heimdall_node::authority::zonefile::parse(DEMO_ZONE, None)?;
        config.authority.zone = Some(Arc::new(heimdall_node::authority::Zone::from_records(
            records,
        )?));
    }

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = std::thread::Builder::new()
        .name("node-runtime".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .context("runtime")?;
            rt.block_on(heimdall_node::server::run(config, async {
                let _ = stop_rx.await;
            }))
            .context("server")
        })?;

    // The node stops on every path out of the measurement, so a failure here never leaves a
    // node running into the next test.
    let outcome = drive(backend, &listen, &auth, with_zone);
    let _ = stop_tx.send(());
    server
        .join()
        .map_err(|_| anyhow::anyhow!("server thread panicked"))??;
    let allocs = outcome?;
    ensure!(
        allocs == 0,
        "{allocs} heap allocations on the worker thread over {HITS} cache hits"
    );
    Ok(())
}

/// Warms the cache of the node at `listen`, sends the measured queries and checks the node
/// counted them; returns the allocations made on the worker thread meanwhile.
fn drive(
    backend: IoBackend,
    listen: &SocketAddr,
    auth: &AuthServer,
    with_zone: bool,
) -> Result<u64> {
    let listen = *listen;
    // Queries are built before measuring; the client thread's allocations are not counted anyway.
    let mut names: Vec<String> = (0..NAMES).map(|i| format!("n{i}.alloc.test.")).collect();
    if with_zone {
        names.push("www.demo.heimdall.test.".to_owned());
    }
    let queries: Vec<(u16, Vec<u8>)> = names
        .iter()
        .map(|name| {
            let msg = build_query(name, RecordType::A, Some(1232), false)?;
            let id = msg.metadata.id;
            Ok((id, msg.to_vec()?))
        })
        .collect::<Result<_>>()?;
    let socket = UdpSocket::bind((listen.ip(), 0))?;
    socket.connect(listen)?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buf = vec![0u8; 4096];

    // Wait for the node, then warm the cache with one miss per name.
    wait_until(Duration::from_secs(20), "node answers", || {
        let (id, q) = &queries[0];
        ask(&socket, q, *id, &mut buf).is_ok()
    })?;
    for (id, q) in &queries {
        let n = ask(&socket, q, *id, &mut buf)?;
        let reply = Message::from_vec(&buf[..n])?;
        ensure!(
            reply.metadata.response_code == ResponseCode::NoError && reply.answers.len() == 1,
            "warm-up answer: {reply:?}"
        );
    }
    guard_on(&listen, &socket, &queries, &mut buf)?;
    // The measured queries: each name once with only the client cookie (the node makes a
    // fresh server cookie, and rate limiting and the size cap apply) and once with the
    // server cookie the node gave (checked, echoed, exempt).
    let (first_id, first) = with_cookie(&names[0], &CLIENT_COOKIE)?;
    let n = ask(&socket, &first, first_id, &mut buf)?;
    let reply = Message::from_vec(&buf[..n])?;
    let cookie = match reply.edns.as_ref().and_then(|e| e.option(EdnsCode::Cookie)) {
        Some(EdnsOption::Unknown(_, value)) if value.len() == 24 => value.clone(),
        other => bail!("no server cookie in the answer: {other:?}"),
    };
    let queries: Vec<(u16, Vec<u8>)> = names
        .iter()
        .flat_map(|name| {
            [
                with_cookie(name, &CLIENT_COOKIE),
                with_cookie(name, &cookie),
            ]
        })
        .collect::<Result<_>>()?;
    let upstream_before = auth.queries();
    let before_cookies = cookie_counts(SocketAddr::new(listen.ip(), 9153))?;

    let before = WORKER_ALLOCS.load(Ordering::SeqCst);
    let start = Instant::now();
    for i in 0..HITS {
        let (id, q) = &queries[i % queries.len()];
        let n = ask(&socket, q, *id, &mut buf)?;
        // Bytes 6..8: ANCOUNT; every hit carries the one A record.
        ensure!(
            n > 12 && buf[3] & 0x0f == 0 && u16::from_be_bytes([buf[6], buf[7]]) == 1,
            "bad hit answer"
        );
    }
    let elapsed = start.elapsed();
    let allocs = WORKER_ALLOCS.load(Ordering::SeqCst) - before;
    let after_cookies = cookie_counts(SocketAddr::new(listen.ip(), 9153))?;
    println!(
        "{backend:?}: {HITS} cache hits in {elapsed:?}; allocations on the worker thread: {allocs}"
    );

    ensure!(
        auth.queries() == upstream_before,
        "some of the measured queries were misses"
    );
    // The counting really ran on those hits: the node's /metrics shows them all, in the
    // counters and in the latency histogram (recorded just after each batch's send).
    let metrics = SocketAddr::new(listen.ip(), 9153);
    let exp = scrape_parsed(metrics)?;
    // The zone's own name (the last queries, when there is one) is answered by the authority
    // lookup, not the cache.
    let zone_answers = if with_zone {
        // The zone's name comes last, in its two cookie variants.
        (0..HITS)
            .filter(|i| i % queries.len() >= queries.len() - 2)
            .count()
    } else {
        0
    };
    let hits = exp.value("heimdall_cache_hits_total", &[])?;
    ensure!(
        hits >= (HITS - zone_answers) as f64,
        "the cache hit counter counted {hits} of the {} hits",
        HITS - zone_answers
    );
    wait_until(
        Duration::from_secs(10),
        "every hit in the latency histogram",
        || {
            scrape_parsed(metrics).is_ok_and(|exp| {
                exp.get("heimdall_query_duration_seconds_count", &[])
                    .is_some_and(|n| n >= (HITS + NAMES) as f64)
            })
        },
    )?;
    // Half the measured queries earned a fresh server cookie, half presented a valid one,
    // and none was rate limited.
    let issued = after_cookies.0 - before_cookies.0;
    let valid = after_cookies.1 - before_cookies.1;
    ensure!(
        issued >= (HITS / 2) as f64 && valid >= (HITS / 2) as f64,
        "cookies over the measured hits: {issued} issued, {valid} valid"
    );
    ensure!(
        after_cookies.2 == before_cookies.2,
        "queries were rate limited during the measurement"
    );
    ensure!(
        WORKER_ALLOCS.load(Ordering::SeqCst) > 0,
        "the counter never saw the worker thread (is it named heimdall-udp-*?)"
    );
    Ok(allocs)
}

/// A query for `name` (A, EDNS 1232) carrying `cookie` as its COOKIE option; its id and bytes.
fn with_cookie(name: &str, cookie: &[u8]) -> Result<(u16, Vec<u8>)> {
    let mut msg = build_query(name, RecordType::A, Some(1232), false)?;
    let edns = msg.edns.as_mut().context("the query has EDNS")?;
    edns.options_mut()
        .insert(EdnsOption::Unknown(10, cookie.to_vec()));
    Ok((msg.metadata.id, msg.to_vec()?))
}

/// Cookies issued, cookies valid, and rate-limited queries (dropped + slipped) so far.
fn cookie_counts(metrics: SocketAddr) -> Result<(f64, f64, f64)> {
    let exp = scrape_parsed(metrics)?;
    let get = |name: &str, labels: &[(&str, &str)]| exp.get(name, labels).unwrap_or(0.0);
    Ok((
        get("heimdall_cookies_total", &[("result", "issued")]),
        get("heimdall_cookies_total", &[("result", "valid")]),
        get("heimdall_rate_limited_total", &[("action", "dropped")])
            + get("heimdall_rate_limited_total", &[("action", "slipped")]),
    ))
}

/// Turns the access and abuse controls on through Raft, as an operator would, and waits until
/// they apply: the ACL lists the client's network last, the loopback exemption from rate
/// limiting and the size cap is off, and, once limiting is seen to bite at 1 query per second,
/// the rate goes up to one the test never reaches.
fn guard_on(
    listen: &SocketAddr,
    socket: &UdpSocket,
    queries: &[(u16, Vec<u8>)],
    buf: &mut [u8],
) -> Result<()> {
    let ctl = Control::new(SocketAddr::new(listen.ip(), 50051))?;
    // A write that beat the bootstrap seed would leave the cluster without upstreams.
    ctl.wait_seeded(Duration::from_secs(20))?;
    let set = |key: &str, value: &str| -> Result<()> {
        let request = ConfigSetRequest {
            key: key.to_owned(),
            value: value.to_owned(),
            expect_version: None,
        };
        wait_until(
            Duration::from_secs(20),
            &format!("config set {key}"),
            || {
                let request = request.clone();
                ctl.call(|mut c| async move { c.config_set(authed(request)).await })
                    .is_ok()
            },
        )?;
        Ok(())
    };
    set(
        "acl.allow_from",
        "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7,fe80::/10,127.0.0.0/8",
    )?;
    set("rate_limit.enabled", "true")?;
    set("rate_limit.qps_per_prefix", "1")?;
    set("rate_limit.burst", "1")?;
    set("rate_limit.exempt_loopback", "false")?;
    let (_, q) = &queries[0];
    // The settings reach the rate limiter asynchronously (live apply): send a few queries
    // per round until the node counts one as limited (a slow answer is not proof).
    wait_until(Duration::from_secs(20), "rate limiting to bite", || {
        for _ in 0..3 {
            if socket.send(q).is_ok() {
                // Answered (truncated or not) or dropped: the counter below decides.
                let _ = socket.recv(buf);
            }
        }
        cookie_counts(SocketAddr::new(listen.ip(), 9153)).is_ok_and(|counts| counts.2 > 0.0)
    })?;
    set("rate_limit.qps_per_prefix", "1000000")?;
    set("rate_limit.burst", "1000000")?;
    wait_until(
        Duration::from_secs(20),
        "every query answered again",
        || {
            queries
                .iter()
                .all(|(id, q)| ask(socket, q, *id, buf).is_ok_and(|n| n > 3 && buf[2] & 0x02 == 0))
        },
    )?;
    Ok(())
}
