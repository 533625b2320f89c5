//! Proof that a UDP cache hit allocates nothing, on both UDP backends (epoll and io_uring): this
//! test binary installs a counting global allocator that counts only on the node's UDP worker
//! threads (`heimdall-udp-*`, `heimdall-udp-uring-*` on io_uring), runs the node library in
//! process on real sockets against a real authoritative upstream, and sends 10,000 cache hits
//! with the node's stats counters and prefetch enabled. The two tests take turns (one lock), as
//! the counter is process-wide.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use heimdall_node::config::{Config, IoBackend};
use heimdall_tests::{AuthServer, Zone, build_query, unique_addr, wait_until};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
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
    measure(IoBackend::Epoll)
}

/// 10,000 UDP cache hits make zero heap allocations on the io_uring worker thread.
#[test]
fn cache_hits_do_not_allocate_on_io_uring() -> Result<()> {
    if let Err(why) = heimdall_node::server::io_uring_available() {
        println!("SKIPPED: io_uring is not available here ({why})");
        return Ok(());
    }
    measure(IoBackend::Uring)?;
    ensure!(
        SAW_URING_WORKER.load(Ordering::SeqCst),
        "no io_uring worker ran (did the node fall back to epoll?)"
    );
    Ok(())
}

/// Run a node on `backend` and count the allocations of 10,000 cache hits on its worker.
fn measure(backend: IoBackend) -> Result<()> {
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
    config.dns.workers = 1;
    config.upstream.servers = vec![auth.addr()];
    config.node.data_dir = data.path().to_path_buf();
    config.cache.prefetch = true;
    config.dns.io_backend = backend;

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

    // Queries are built before measuring; the client thread's allocations are not counted anyway.
    let queries: Vec<(u16, Vec<u8>)> = (0..NAMES)
        .map(|i| {
            let msg = build_query(
                &format!("n{i}.alloc.test."),
                RecordType::A,
                Some(1232),
                false,
            )?;
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
    let upstream_before = auth.queries();

    let before = WORKER_ALLOCS.load(Ordering::SeqCst);
    let start = Instant::now();
    for i in 0..HITS {
        let (id, q) = &queries[i % NAMES];
        let n = ask(&socket, q, *id, &mut buf)?;
        // Bytes 6..8: ANCOUNT; every hit carries the one A record.
        ensure!(
            n > 12 && buf[3] & 0x0f == 0 && u16::from_be_bytes([buf[6], buf[7]]) == 1,
            "bad hit answer"
        );
    }
    let elapsed = start.elapsed();
    let allocs = WORKER_ALLOCS.load(Ordering::SeqCst) - before;
    println!(
        "{backend:?}: {HITS} cache hits in {elapsed:?}; allocations on the worker thread: {allocs}"
    );

    ensure!(
        auth.queries() == upstream_before,
        "some of the measured queries were misses"
    );
    ensure!(
        WORKER_ALLOCS.load(Ordering::SeqCst) > 0,
        "the counter never saw the worker thread (is it named heimdall-udp-*?)"
    );
    let _ = stop_tx.send(());
    server
        .join()
        .map_err(|_| anyhow::anyhow!("server thread panicked"))??;
    ensure!(
        allocs == 0,
        "{allocs} heap allocations on the worker thread over {HITS} cache hits"
    );
    Ok(())
}
