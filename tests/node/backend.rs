//! The UDP I/O backends: the node says which one runs (`--io-backend uring` or `epoll`), both
//! answer misses, hits and bursts, and with io_uring blocked by a real seccomp filter (what
//! Docker's default profile does) the node logs the fallback and serves on epoll. The
//! workers run the scheduling policy `dns.worker_scheduling` asks for.

use std::collections::HashSet;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use heimdall_tests::{NodeOpts, build_query, query_udp};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::{Setup, zone};

/// The log line of a node running io_uring workers.
const URING_LINE: &str = "udp backend: io_uring";
/// The log line of a node running epoll workers.
const EPOLL_LINE: &str = "udp backend: epoll";
/// Queries per burst, all sent before the first answer is read.
const BURST: usize = 100;
/// Bursts sent: together far more datagrams than receive buffers and send slots per worker.
const BURSTS: usize = 30;

/// Options that start the node with `--io-backend <backend>`.
fn backend_opts(backend: &str) -> NodeOpts {
    NodeOpts {
        extra_args: vec!["--io-backend".into(), backend.into()],
        ..NodeOpts::default()
    }
}

/// A miss reaches the upstream once, the hit that follows does not, and both carry the
/// upstream's two A records.
fn miss_then_hit(s: &Setup) -> Result<()> {
    let name = "www.example.test.";
    for round in ["miss", "hit"] {
        let reply = query_udp(s.node.dns_addr(), name, RecordType::A, None, false)?;
        ensure!(
            reply.response_code == ResponseCode::NoError && reply.answers.len() == 2,
            "{round}: {reply}"
        );
    }
    let upstream = s.auth.count(name, RecordType::A);
    ensure!(upstream == 1, "the upstream saw {upstream} queries, want 1");
    Ok(())
}

/// BURSTS bursts of BURST cache hits with distinct IDs, each burst sent at once: every query
/// is answered, with its own ID.
fn bursts_of_hits(s: &Setup) -> Result<()> {
    let query = build_query("www.example.test.", RecordType::A, Some(1232), false)?.to_vec()?;
    let socket = UdpSocket::bind((s.node.dns_addr().ip(), 0))?;
    socket.connect(s.node.dns_addr())?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    for burst in 0..BURSTS {
        let mut waiting = HashSet::new();
        let mut datagram = query.clone();
        for i in 0..BURST {
            let id = u16::try_from(burst * BURST + i).context("id")?;
            datagram[..2].copy_from_slice(&id.to_be_bytes());
            socket.send(&datagram)?;
            waiting.insert(id);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !waiting.is_empty() {
            if Instant::now() >= deadline {
                bail!("burst {burst}: {} of {BURST} unanswered", waiting.len());
            }
            let Ok(n) = socket.recv(&mut buf) else {
                continue;
            };
            ensure!(n > 12, "short answer of {n} bytes");
            // Byte 3 low nibble: RCODE; bytes 6..8: ANCOUNT.
            ensure!(
                buf[3] & 0x0f == 0 && u16::from_be_bytes([buf[6], buf[7]]) == 2,
                "bad hit answer"
            );
            waiting.remove(&u16::from_be_bytes([buf[0], buf[1]]));
        }
    }
    println!(
        "{} hits in bursts of {BURST} answered in {:?}",
        BURST * BURSTS,
        started.elapsed()
    );
    Ok(())
}

/// `--io-backend uring` on this machine runs io_uring workers (no fallback), which answer a
/// miss, a hit and bursts of hits.
#[test]
fn uring_backend_serves() -> Result<()> {
    if let Err(why) = heimdall_node::server::io_uring_available() {
        println!("SKIPPED: io_uring is not available here ({why})");
        return Ok(());
    }
    let setup = Setup::with(zone(), backend_opts("uring"))?;
    setup.run(|s| {
        let log = s.node.log();
        ensure!(log.contains(URING_LINE), "no {URING_LINE:?} in the log");
        ensure!(!log.contains("using epoll"), "fell back to epoll");
        miss_then_hit(s)?;
        bursts_of_hits(s)
    })
}

/// `--io-backend epoll` runs epoll workers without probing io_uring, which answer a miss, a
/// hit and bursts of hits.
#[test]
fn epoll_backend_serves() -> Result<()> {
    let setup = Setup::with(zone(), backend_opts("epoll"))?;
    setup.run(|s| {
        let log = s.node.log();
        ensure!(log.contains(EPOLL_LINE), "no {EPOLL_LINE:?} in the log");
        ensure!(
            !log.contains("io_uring"),
            "io_uring mentioned with epoll chosen"
        );
        miss_then_hit(s)?;
        bursts_of_hits(s)
    })
}

/// Start a node under the seccomp filter that denies io_uring; check that the filter is in
/// place, that the log has `line` (the fallback, with the EPERM reason) and the epoll
/// backend, and that the node answers.
fn check_fallback(backend: &str, line: &str) -> Result<()> {
    let opts = NodeOpts {
        deny_io_uring: true,
        ..backend_opts(backend)
    };
    let setup = Setup::with(zone(), opts)?;
    setup.run(|s| {
        let status = std::fs::read_to_string(format!("/proc/{}/status", s.node.pid()))?;
        ensure!(
            status.lines().any(|l| l == "Seccomp:\t2"),
            "the node runs without a seccomp filter:\n{status}"
        );
        let log = s.node.log();
        let fallback = log
            .lines()
            .find(|l| l.contains(line))
            .with_context(|| format!("no {line:?} in the log"))?;
        println!("{backend}: {fallback}");
        ensure!(
            fallback.contains("Operation not permitted"),
            "the reason is not EPERM"
        );
        ensure!(log.contains(EPOLL_LINE), "no {EPOLL_LINE:?} in the log");
        miss_then_hit(s)?;
        bursts_of_hits(s)
    })
}

/// With io_uring denied by seccomp, `auto` logs at INFO that io_uring is unavailable and why,
/// and serves on epoll.
#[test]
fn auto_falls_back_under_seccomp() -> Result<()> {
    check_fallback(
        "auto",
        "INFO heimdall_node::server: io_uring unavailable (io_uring_setup: ",
    )
}

/// With io_uring denied by seccomp, an explicit `uring` logs a WARN and still starts, on
/// epoll.
#[test]
fn explicit_uring_falls_back_under_seccomp() -> Result<()> {
    check_fallback(
        "uring",
        "WARN heimdall_node::server: dns.io_backend is uring but io_uring is unavailable (io_uring_setup: ",
    )
}

/// `SCHED_OTHER` and `SCHED_BATCH` as /proc/PID/task/TID/stat reports them (field 41).
const SCHED_OTHER: u32 = 0;
const SCHED_BATCH: u32 = 3;

/// The scheduling policy of every thread of `pid`, by thread name.
fn thread_policies(pid: u32) -> Result<Vec<(String, u32)>> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = std::fs::read_to_string(task?.path().join("stat"))?;
        // "TID (COMM) STATE ...": the name may hold spaces and parentheses, so split at the
        // last ')'; after it, field 3 (state) comes first and field 41 (policy) 38 later.
        let (head, rest) = stat.rsplit_once(')').context("no ')' in stat")?;
        let name = head.split_once('(').map_or("", |(_, n)| n).to_owned();
        let policy = rest
            .split_whitespace()
            .nth(38)
            .context("stat has no policy field")?
            .parse()?;
        threads.push((name, policy));
    }
    Ok(threads)
}

/// Check that every UDP worker thread runs `worker_policy`, every other thread SCHED_OTHER,
/// and that the node answers.
fn check_policies(opts: NodeOpts, worker_policy: u32) -> Result<()> {
    let setup = Setup::with(zone(), opts)?;
    setup.run(|s| {
        miss_then_hit(s)?;
        let threads = thread_policies(s.node.pid())?;
        println!("threads and policies: {threads:?}");
        let workers = threads
            .iter()
            .filter(|(name, _)| name.starts_with("heimdall-udp"))
            .count();
        ensure!(workers >= 1, "no heimdall-udp thread in {threads:?}");
        for (name, policy) in &threads {
            let want = if name.starts_with("heimdall-udp") {
                worker_policy
            } else {
                SCHED_OTHER
            };
            ensure!(
                *policy == want,
                "thread {name} has policy {policy}, want {want}"
            );
        }
        Ok(())
    })
}

/// By default the UDP workers run SCHED_BATCH and the rest of the node SCHED_OTHER.
#[test]
fn workers_run_sched_batch_by_default() -> Result<()> {
    check_policies(NodeOpts::default(), SCHED_BATCH)
}

/// `--worker-scheduling normal` leaves the workers on SCHED_OTHER.
#[test]
fn worker_scheduling_normal_keeps_sched_other() -> Result<()> {
    let opts = NodeOpts {
        extra_args: vec!["--worker-scheduling".into(), "normal".into()],
        ..NodeOpts::default()
    };
    check_policies(opts, SCHED_OTHER)
}
