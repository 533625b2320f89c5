//! The UDP fast path: one worker thread per socket (SO_REUSEPORT), cache hits answered on the
//! worker, misses handed to the async runtime through a bounded queue. This file holds the
//! per-datagram handling both backends share and the epoll loop (`recvmmsg`/`sendmmsg`);
//! `uring.rs` holds the io_uring loop.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc;

use super::batch::{RecvBatch, SendBatch, to_socket_addr};
use super::{Job, ReplyTo};
use crate::config::WorkerScheduling;
use crate::metrics::Event;
use crate::resolver::{Client, Outcome, Resolver};

/// How often a blocked worker wakes up to check for shutdown.
const RECV_TIMEOUT: Duration = Duration::from_millis(100);

/// Bind `count` UDP sockets to the same address with SO_REUSEPORT, each asking for a receive
/// buffer of `recv_buffer` bytes (0: the system default). When the port is 0, the first
/// socket's kernel-chosen port is used for the rest.
pub fn bind_sockets(
    addr: SocketAddr,
    count: usize,
    recv_buffer: usize,
) -> io::Result<Vec<Arc<Socket>>> {
    let mut sockets = Vec::with_capacity(count);
    let mut addr = addr;
    for i in 0..count.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_port(true)?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_read_timeout(Some(RECV_TIMEOUT))?;
        if recv_buffer > 0 {
            let granted = set_recv_buffer(&socket, recv_buffer)?;
            // Every socket gets the same: say it once. Linux never grants more than
            // INT_MAX / 2, whatever rmem_max says.
            if i == 0 && granted < recv_buffer.min(i32::MAX as usize / 2) {
                tracing::info!(
                    asked = recv_buffer,
                    granted,
                    "dns.udp_recv_buffer capped by the kernel (net.core.rmem_max)"
                );
            }
        }
        socket.bind(&addr.into())?;
        if addr.port() == 0
            && let Some(bound) = socket.local_addr()?.as_socket()
        {
            addr = bound;
        }
        sockets.push(Arc::new(socket));
    }
    Ok(sockets)
}

/// Ask for a receive buffer of `bytes` (a burst of queries waits there while the worker is
/// busy; the system default of about 200 KiB holds only a few hundred datagrams) and return the
/// size granted: the kernel caps it at `net.core.rmem_max`.
fn set_recv_buffer(socket: &Socket, bytes: usize) -> io::Result<usize> {
    socket.set_recv_buffer_size(bytes)?;
    // Linux reports twice the size it granted (the doubling covers its bookkeeping).
    Ok(socket.recv_buffer_size()? / 2)
}

/// Everything one worker thread needs.
pub struct Worker {
    /// Its own socket.
    pub socket: Arc<Socket>,
    /// The shared query engine.
    pub resolver: Arc<Resolver>,
    /// Where misses go (bounded: a full queue sheds load with SERVFAIL).
    pub misses: mpsc::Sender<Job>,
    /// Set when the server shuts down.
    pub stop: Arc<AtomicBool>,
    /// The CPU to pin this worker's thread to, if any.
    pub cpu: Option<usize>,
    /// The scheduling policy of this worker's thread.
    pub scheduling: WorkerScheduling,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("socket", &self.socket)
            .finish()
    }
}

impl Worker {
    /// Pin the calling thread to this worker's CPU, if it has one (a failure is logged).
    pub fn pin(&self) {
        if let Some(cpu) = self.cpu {
            match pin_to_cpu(cpu) {
                Ok(()) => tracing::debug!(cpu, "udp worker pinned"),
                Err(e) => {
                    tracing::warn!(cpu, error = %e, "could not pin udp worker; running unpinned")
                }
            }
        }
    }

    /// Give the calling thread this worker's scheduling policy (a failure is logged; the
    /// thread then keeps `SCHED_OTHER`).
    pub fn set_scheduling(&self) {
        if self.scheduling == WorkerScheduling::Batch {
            match set_sched_batch() {
                Ok(()) => tracing::debug!("udp worker runs SCHED_BATCH"),
                Err(e) => tracing::warn!(
                    error = %e,
                    "could not set SCHED_BATCH on a udp worker (dns.worker_scheduling); it runs SCHED_OTHER"
                ),
            }
        }
    }

    /// The epoll worker loop (`recvmmsg`/`sendmmsg` batches): runs until `stop` is set.
    pub fn run_epoll(&self) {
        let fd = self.socket.as_raw_fd();
        let mut recv = RecvBatch::new();
        let mut send = SendBatch::new();
        // A deadline rather than a duration since the last flush: comparing two instants is
        // cheaper than subtracting them, and this check runs once per batch.
        let mut flush_due = Instant::now() + super::HIT_FLUSH_EVERY;
        while !self.stop.load(Ordering::Relaxed) {
            let n = match recv.recv(fd) {
                Ok(n) => n,
                Err(e) => {
                    match e.kind() {
                        // Idle: hand this thread's buffered cache hits to the SLRU, so a quiet
                        // node's hit counts and hot set stay current.
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                            self.resolver.cache().flush_hits();
                            flush_due = Instant::now() + super::HIT_FLUSH_EVERY;
                        }
                        io::ErrorKind::Interrupted => {}
                        _ => tracing::warn!(error = %e, "udp receive failed"),
                    }
                    continue;
                }
            };
            let now = Instant::now();
            let metrics = self.resolver.metrics().local();
            for i in 0..n {
                let Some((packet, addr, addr_len)) = recv.get(i) else {
                    // Larger than any query we accept.
                    metrics.count(Event::Malformed);
                    continue;
                };
                if send.is_full() {
                    send.flush(fd);
                }
                if let Some(len) = self.handle(packet, send.next_buf(), addr, addr_len, now) {
                    send.push(len, addr, addr_len);
                }
            }
            let answered = send.flush(fd);
            if answered > 0 {
                // One clock read per batch: every answer in it waited from `now` until here.
                metrics.record_latency(now.elapsed(), answered as u64);
            }
            if now >= flush_due {
                self.resolver.cache().flush_hits();
                flush_due = now + super::HIT_FLUSH_EVERY;
            }
        }
    }

    /// Handle one received datagram from `addr` (both backends call this): a cache hit or an
    /// error is answered into `out`, a miss goes to the runtime's queue (a full queue sheds it
    /// with a SERVFAIL written into `out`), and a refresh is queued when the hit asks for one.
    /// Returns the length of the answer in `out` to send back to `addr`, if there is one.
    pub fn handle(
        &self,
        packet: &[u8],
        out: &mut [u8],
        addr: &libc::sockaddr_storage,
        addr_len: libc::socklen_t,
        now: Instant,
    ) -> Option<usize> {
        let metrics = self.resolver.metrics().local();
        metrics.count(Event::UdpQuery);
        let Some(peer) = to_socket_addr(addr, addr_len) else {
            // Not an IPv4 or IPv6 source: nothing to answer to.
            metrics.count(Event::Malformed);
            return None;
        };
        match self
            .resolver
            .process(packet, out, Client::udp(peer.ip()), now)
        {
            Outcome::Reply { len, prefetch } => {
                if let Some(req) = prefetch {
                    // Best effort: a full queue just skips this refresh.
                    let _ = self.misses.try_send(Job {
                        req,
                        reply: ReplyTo::Prefetch,
                    });
                }
                Some(len)
            }
            Outcome::Drop => None,
            Outcome::Miss(req) => {
                let job = Job {
                    req,
                    reply: ReplyTo::Udp {
                        socket: Arc::clone(&self.socket),
                        peer,
                        received: now,
                    },
                };
                let Err(err) = self.misses.try_send(job) else {
                    return None;
                };
                // Shed load: never block the worker on the runtime.
                metrics.count(Event::Shed);
                metrics.count_rcode(heimdall_wire::rcode::SERVFAIL.into());
                let job = match err {
                    mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                };
                Some(job.req.write_servfail(out))
            }
        }
    }
}

/// Switch the calling thread to `SCHED_BATCH` (no privilege needed: it is a normal,
/// non-real-time policy with the same nice value). Such a thread is not allowed to preempt the
/// running thread when it wakes up; it runs when that one blocks or its time slice ends.
fn set_sched_batch() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler(0, ..) changes the calling thread only and reads `param`,
    // which lives for the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pin the calling thread to one CPU.
fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit mask for which all-zero is the empty set; CPU_SET only
    // writes inside it (it ignores indexes past its size), and sched_setaffinity(0, ..) reads it
    // for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `set_sched_batch` switches the calling thread, and only it, to SCHED_BATCH.
    #[test]
    fn sched_batch_is_per_thread() {
        // SAFETY: sched_getscheduler(0) only reads the calling thread's policy.
        let policy = || unsafe { libc::sched_getscheduler(0) };
        let before = policy();
        let in_thread = std::thread::spawn(move || set_sched_batch().map(|()| policy()))
            .join()
            .expect("thread");
        assert_eq!(
            in_thread.expect("SCHED_BATCH needs no privilege"),
            libc::SCHED_BATCH
        );
        assert_eq!(policy(), before, "the spawning thread kept its policy");
    }

    /// A `net.core` setting in bytes (`rmem_max`, `rmem_default`), if this system shows it.
    fn net_core(name: &str) -> Option<usize> {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Every socket gets the receive buffer asked for (up to the kernel's cap), the same port,
    /// and 0 leaves the system default.
    #[test]
    fn sockets_get_the_receive_buffer() {
        let asked = 512 * 1024;
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let sockets = bind_sockets(addr, 2, asked).expect("bind");
        let ports: Vec<_> = sockets
            .iter()
            .map(|s| {
                s.local_addr()
                    .expect("addr")
                    .as_socket()
                    .expect("inet")
                    .port()
            })
            .collect();
        assert_eq!(ports[0], ports[1], "one port for every worker");
        // Inside a container, kernels before 6.10 hide net.core (the host's cap still
        // applies): then the granted size cannot be predicted.
        match net_core("rmem_max") {
            Some(max) => {
                let want = asked.min(max);
                for socket in &sockets {
                    let granted = socket.recv_buffer_size().expect("size") / 2;
                    assert!(granted >= want, "granted {granted}, want {want}");
                }
            }
            None => println!("SKIPPED the size check: net.core.rmem_max is not visible here"),
        }
        let default = bind_sockets(addr, 1, 0).expect("bind");
        if let Some(system) = net_core("rmem_default") {
            let granted = default[0].recv_buffer_size().expect("size");
            assert_eq!(granted, system, "0 keeps the system default");
        }
    }
}
