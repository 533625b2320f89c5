//! The io_uring UDP loop (cargo feature `uring`) and the start-up probe that decides whether it
//! can run: one ring per worker thread on the worker's own SO_REUSEPORT socket, a multishot
//! `recvmsg` into a ring of provided buffers, answers sent as `sendmsg` requests from a fixed
//! pool of slots, one submit per batch of completions. Everything is allocated at start.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::collections::VecDeque;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::types::{BufRingEntry, Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, cqueue, opcode, squeue};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::batch::BUF_LEN;
use super::udp::Worker;
use crate::metrics::Event;

/// Receive buffers in each worker's provided buffer ring (a power of two, at most 32768).
const RECV_BUFS: u16 = 256;
/// Answers a worker can have queued or in flight at once.
const SEND_SLOTS: usize = 64;
/// Submission queue entries: every send slot, the receive and a cancel fit at once.
const SQ_ENTRIES: u32 = 128;
/// Completion queue entries: a completion for every receive buffer and send slot fits at once.
const CQ_ENTRIES: u32 = 512;
/// Receive completions waiting to be handled: each holds a buffer, plus the receive's last one.
const PENDING_CAP: usize = RECV_BUFS as usize + 8;
/// The buffer group of the receive buffers (each worker has its own ring, so one group).
const BUF_GROUP: u16 = 0;
/// Room for the source address in each receive buffer (IPv4 or IPv6).
const NAME_LEN: usize = size_of::<libc::sockaddr_in6>();
/// The `io_uring_recvmsg_out` header the kernel writes at the start of each receive buffer.
const RECVMSG_OUT_LEN: usize = 16;
/// One receive buffer: the kernel's header, the source address, then the datagram.
const RECV_BUF_LEN: usize = RECVMSG_OUT_LEN + NAME_LEN + BUF_LEN;
/// How often a waiting worker wakes up to check for shutdown.
const WAIT_TIMEOUT: Duration = Duration::from_millis(100);
/// Receive errors in a row (no datagram in between) after which the worker gives up on
/// io_uring and continues on epoll, rather than re-arming a receive that keeps failing.
const MAX_RECV_ERRORS: u32 = 64;
/// How long shutdown waits for the kernel to let go of the receive and the sends.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);
/// How long the probe waits for its own datagram: it returns as soon as the datagram is back
/// (well under a millisecond), so the bound only matters on a loaded machine, where a short
/// one made a working io_uring look broken and the node fall back to epoll.
const PROBE_WAIT: Duration = Duration::from_secs(5);
/// `user_data` of the multishot receive (send slots use their index).
const RECV_TAG: u64 = u64::MAX;
/// `user_data` of the request cancelling the receive at shutdown.
const CANCEL_TAG: u64 = u64::MAX - 1;

/// Check that this kernel and process can run the io_uring loop: the ring can be created (a
/// seccomp filter such as Docker's default answers EPERM, old kernels ENOSYS), the opcodes
/// exist, and a real round trip on loopback works: a `sendmsg` from a send slot received by a
/// multishot `recvmsg` into a registered buffer ring (neither the buffer ring nor multishot
/// receive can be probed by opcode). The error says why not.
pub fn probe() -> Result<(), String> {
    let mut ring = new_ring().map_err(|e| format!("io_uring_setup: {e}"))?;
    if !ring.params().is_feature_ext_arg() {
        return Err("the kernel lacks IORING_FEAT_EXT_ARG (Linux 5.11)".to_owned());
    }
    let mut ops = Probe::new();
    ring.submitter()
        .register_probe(&mut ops)
        .map_err(|e| format!("io_uring probe: {e}"))?;
    for (code, name) in [
        (opcode::RecvMsg::CODE, "RECVMSG"),
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    ] {
        if !ops.is_supported(code) {
            return Err(format!("the kernel lacks the io_uring opcode {name}"));
        }
    }
    round_trip(&mut ring).map_err(|e| format!("loopback round trip: {e}"))
}

/// Send one datagram to ourselves through `ring` and receive it with the worker's multishot
/// receive; Ok when it arrives intact and the receive stays armed.
fn round_trip(ring: &mut IoUring) -> io::Result<()> {
    /// The probe's datagram.
    const HELLO: &[u8] = b"heimdall io_uring probe";
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.bind(&SockAddr::from(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))?;
    let to = socket.local_addr()?;
    let fd = socket.as_raw_fd();
    let recv = RecvRing::new()?;
    recv.register(ring)?;
    let mut send = SendPool::new();
    let slot = send
        .acquire()
        .ok_or_else(|| io::Error::other("no send slot"))?;
    send.buf(slot)[..HELLO.len()].copy_from_slice(HELLO);
    send.set_addr(slot, to.as_ptr().cast(), to.len());
    let sends = send.prepare(slot, HELLO.len(), fd);
    push(ring, &recv.arm(fd))?;
    push(ring, &sends)?;
    let deadline = Instant::now() + PROBE_WAIT;
    let timeout = Timespec::from(WAIT_TIMEOUT);
    let args = SubmitArgs::new().timespec(&timeout);
    let mut result = Err(io::Error::from(io::ErrorKind::TimedOut));
    let (mut received_last, mut sent, mut cancelled) = (false, false, false);
    while !(received_last && sent) {
        if !cancelled && !received_last && (result.is_ok() || Instant::now() >= deadline) {
            // Release the receive before its buffers go away.
            let cancel = opcode::AsyncCancel::new(RECV_TAG)
                .build()
                .user_data(CANCEL_TAG);
            push(ring, &cancel)?;
            cancelled = true;
        }
        if Instant::now() >= deadline + SHUTDOWN_WAIT {
            return Err(io::Error::other("the kernel kept the receive after cancel"));
        }
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if is_wait_interruption(&e) => {}
            Err(e) => return Err(e),
        }
        for cqe in ring.completion() {
            match cqe.user_data() {
                RECV_TAG => {
                    received_last |= !cqueue::more(cqe.flags());
                    if result.is_err() && !cancelled {
                        result = check_probe_datagram(&recv, &cqe, HELLO);
                    }
                }
                CANCEL_TAG => {}
                _ => {
                    sent = true;
                    if cqe.result() < 0 {
                        result = Err(io::Error::from_raw_os_error(-cqe.result()));
                    }
                }
            }
        }
    }
    ring.submitter().unregister_buf_ring(BUF_GROUP)?;
    drop((recv, send));
    result
}

/// Whether the probe's receive completion carries `hello` and leaves the receive armed.
fn check_probe_datagram(recv: &RecvRing, cqe: &cqueue::Entry, hello: &[u8]) -> io::Result<()> {
    if cqe.result() < 0 {
        return Err(io::Error::from_raw_os_error(-cqe.result()));
    }
    let bid = cqueue::buffer_select(cqe.flags())
        .ok_or_else(|| io::Error::other("receive completion without a buffer"))?;
    let len = usize::try_from(cqe.result()).unwrap_or(0);
    let payload = recv
        .get(bid, len)
        .and_then(|buf| RecvMsgOut::parse(buf, &recv.msghdr).ok())
        .map(|msg| msg.payload_data() == hello);
    if payload != Some(true) {
        return Err(io::Error::other(
            "the received datagram differs from the one sent",
        ));
    }
    if !cqueue::more(cqe.flags()) {
        return Err(io::Error::other(
            "multishot receive ended after one datagram",
        ));
    }
    Ok(())
}

/// Run `worker` on io_uring until its stop flag is set. If the ring cannot be set up, or the
/// receive keeps failing, the worker says so and continues on the epoll loop.
pub fn run(worker: &Worker) {
    let result = UringLoop::new(worker).and_then(|mut ring| ring.serve());
    if let Err(error) = result {
        tracing::warn!(%error, "io_uring worker failed; this worker continues on epoll");
        worker.run_epoll();
    }
}

/// Create a ring: a single issuer (the worker thread) whose completions run when it waits,
/// or a plain ring on kernels without those flags.
fn new_ring() -> io::Result<IoUring> {
    let tuned = IoUring::builder()
        .setup_cqsize(CQ_ENTRIES)
        .setup_coop_taskrun()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(SQ_ENTRIES);
    match tuned {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .build(SQ_ENTRIES),
        other => other,
    }
}

/// Queue one request, handing the queue to the kernel first if it is full.
fn push(ring: &mut IoUring, sqe: &squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: every request queued here points only at memory its owner keeps alive and
        // unmoved until the request's completion arrives: the receive's msghdr and buffer ring
        // (RecvRing, held for the ring's whole life) and a send slot's msghdr, iovec, address
        // and buffer (SendPool, whose slot is not reused before its completion).
        if unsafe { ring.submission().push(sqe) }.is_ok() {
            return Ok(());
        }
        match ring.submit() {
            Ok(_) => {}
            Err(e) if is_wait_interruption(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Errors of `io_uring_enter` that only mean "nothing happened yet": a timeout, a signal, or
/// completions that must be reaped before more can be submitted.
fn is_wait_interruption(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
    )
}

/// The size of a memory page (the buffer ring must be page aligned).
fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

/// Zeroed, page-aligned memory that a worker lends to the kernel.
struct PageMem {
    /// Start of the memory.
    ptr: NonNull<u8>,
    /// Its size and alignment, for `dealloc`.
    layout: Layout,
}

impl PageMem {
    /// Allocate `len` zeroed bytes aligned to a page.
    fn new(len: usize) -> io::Result<PageMem> {
        let layout = Layout::from_size_align(len.max(1), page_size()).map_err(io::Error::other)?;
        // SAFETY: the layout's size is not zero.
        let ptr = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        Ok(PageMem { ptr, layout })
    }
}

impl Drop for PageMem {
    /// Free the memory (the ring that used it is gone by then).
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed` with this very layout and is freed only here.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// The provided buffer ring: RECV_BUFS entries telling the kernel where it may write the next
/// datagrams, the buffers themselves, and the msghdr the multishot receive was armed with.
struct RecvRing {
    /// The ring of `BufRingEntry`s shared with the kernel (its tail lives in entry 0).
    entries: PageMem,
    /// RECV_BUFS buffers of RECV_BUF_LEN bytes; buffer `bid` starts at `bid * RECV_BUF_LEN`.
    bufs: PageMem,
    /// Our copy of the tail: entries before it are the kernel's once published.
    tail: u16,
    /// What the receive reserves in each buffer (address length, no control data); the kernel
    /// reads it when the receive is armed, `RecvMsgOut::parse` when a datagram arrives.
    msghdr: Box<libc::msghdr>,
}

impl RecvRing {
    /// Allocate the ring and the buffers and give every buffer to the kernel.
    fn new() -> io::Result<RecvRing> {
        let entries = PageMem::new(usize::from(RECV_BUFS) * size_of::<BufRingEntry>())?;
        let bufs = PageMem::new(usize::from(RECV_BUFS) * RECV_BUF_LEN)?;
        // SAFETY: all-zero bytes are a valid msghdr (null pointers, zero lengths).
        let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { zeroed() });
        msghdr.msg_namelen = NAME_LEN as libc::socklen_t;
        let mut ring = RecvRing {
            entries,
            bufs,
            tail: 0,
            msghdr,
        };
        for bid in 0..RECV_BUFS {
            ring.give(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// Register the ring with `ring` as buffer group BUF_GROUP.
    fn register(&self, ring: &IoUring) -> io::Result<()> {
        // SAFETY: `entries` is page aligned, holds RECV_BUFS entries, and outlives the
        // registration: the ring is dropped (closing the io_uring) before this RecvRing.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                self.entries.ptr.as_ptr() as u64,
                RECV_BUFS,
                BUF_GROUP,
                0,
            )
        }
    }

    /// The multishot receive on `fd`, picking buffers from this ring.
    fn arm(&self, fd: RawFd) -> squeue::Entry {
        opcode::RecvMsgMulti::new(Fd(fd), &*self.msghdr, BUF_GROUP)
            .build()
            .user_data(RECV_TAG)
    }

    /// Hand buffer `bid` back to the kernel (visible to it after `publish`).
    fn give(&mut self, bid: u16) {
        if bid >= RECV_BUFS {
            return;
        }
        let index = usize::from(self.tail & (RECV_BUFS - 1));
        // SAFETY: `index` < RECV_BUFS, so the entry lies inside `entries`; the kernel only reads
        // entries between its head and our published tail, and this one is past that tail.
        let entry = unsafe { &mut *self.entries.ptr.as_ptr().cast::<BufRingEntry>().add(index) };
        // SAFETY: `bid` < RECV_BUFS, so the buffer lies inside `bufs`.
        let addr = unsafe { self.bufs.ptr.as_ptr().add(usize::from(bid) * RECV_BUF_LEN) };
        entry.set_addr(addr as u64);
        entry.set_len(RECV_BUF_LEN as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Let the kernel see every buffer given back so far.
    fn publish(&self) {
        // SAFETY: `entries` holds initialised entries; the tail is the u16 inside entry 0
        // (2-byte aligned), which the kernel reads atomically: the release store makes the
        // entries written before it visible first.
        unsafe {
            let tail = BufRingEntry::tail(self.entries.ptr.as_ptr().cast::<BufRingEntry>());
            (*tail.cast::<AtomicU16>()).store(self.tail, Ordering::Release);
        }
    }

    /// The first `len` bytes of buffer `bid`, as the kernel filled it; None if out of range.
    fn get(&self, bid: u16, len: usize) -> Option<&[u8]> {
        if bid >= RECV_BUFS || len > RECV_BUF_LEN {
            return None;
        }
        // SAFETY: the range lies inside `bufs`; the kernel wrote this buffer before posting the
        // completion that named it and does not touch it again until `give` returns it.
        Some(unsafe {
            std::slice::from_raw_parts(
                self.bufs.ptr.as_ptr().add(usize::from(bid) * RECV_BUF_LEN),
                len,
            )
        })
    }
}

/// The send side: SEND_SLOTS answer buffers with their destination, iovec and msghdr, each
/// slot free or owned by one `sendmsg` in flight.
struct SendPool {
    /// Answer buffers.
    bufs: Box<[[u8; BUF_LEN]]>,
    /// Destination of each answer.
    addrs: Box<[libc::sockaddr_storage]>,
    /// One iovec per buffer (its length set per answer).
    iovecs: Box<[libc::iovec]>,
    /// The headers the kernel reads.
    hdrs: Box<[libc::msghdr]>,
    /// Free slots (capacity SEND_SLOTS, so pushing never reallocates).
    free: Vec<usize>,
}

impl SendPool {
    /// Allocate every slot and wire its header to its buffer, address and iovec.
    fn new() -> SendPool {
        let mut bufs: Box<[[u8; BUF_LEN]]> = vec![[0u8; BUF_LEN]; SEND_SLOTS].into_boxed_slice();
        // SAFETY: all-zero bytes are a valid sockaddr_storage.
        let mut addrs: Box<[libc::sockaddr_storage]> =
            (0..SEND_SLOTS).map(|_| unsafe { zeroed() }).collect();
        let mut iovecs: Box<[libc::iovec]> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: 0,
            })
            .collect();
        let hdrs: Box<[libc::msghdr]> = iovecs
            .iter_mut()
            .zip(addrs.iter_mut())
            .map(|(iov, addr)| {
                // SAFETY: all-zero is a valid msghdr; the pointers set below stay valid because
                // the boxed slices they point into are never reallocated.
                let mut h: libc::msghdr = unsafe { zeroed() };
                h.msg_name = (addr as *mut libc::sockaddr_storage).cast();
                h.msg_iov = iov as *mut libc::iovec;
                h.msg_iovlen = 1;
                h
            })
            .collect();
        let mut free = Vec::with_capacity(SEND_SLOTS);
        free.extend((0..SEND_SLOTS).rev());
        SendPool {
            bufs,
            addrs,
            iovecs,
            hdrs,
            free,
        }
    }

    /// Take a free slot.
    fn acquire(&mut self) -> Option<usize> {
        self.free.pop()
    }

    /// Return a slot (its send completed, or it had nothing to send).
    fn release(&mut self, slot: usize) {
        if slot < SEND_SLOTS && self.free.len() < SEND_SLOTS {
            self.free.push(slot);
        }
    }

    /// How many sends are in flight.
    fn in_flight(&self) -> usize {
        SEND_SLOTS - self.free.len()
    }

    /// The answer buffer of `slot`.
    fn buf(&mut self, slot: usize) -> &mut [u8] {
        &mut self.bufs[slot]
    }

    /// Copy a destination of `len` bytes at `addr` into `slot` (cut to a sockaddr_storage).
    fn set_addr(&mut self, slot: usize, addr: *const u8, len: libc::socklen_t) {
        let len = (len as usize).min(size_of::<libc::sockaddr_storage>());
        let dst = &mut self.addrs[slot];
        // SAFETY: the caller's `addr` holds `len` readable bytes and the destination is a
        // sockaddr_storage, at least `len` bytes; the two never overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                addr,
                (dst as *mut libc::sockaddr_storage).cast::<u8>(),
                len,
            );
        }
        self.hdrs[slot].msg_namelen = len as libc::socklen_t;
    }

    /// The `sendmsg` of the `len` bytes written into `slot`'s buffer, on `fd`. MSG_DONTWAIT:
    /// a full socket buffer loses the answer like the network would, and the slot comes back.
    fn prepare(&mut self, slot: usize, len: usize, fd: RawFd) -> squeue::Entry {
        self.iovecs[slot].iov_len = len.min(BUF_LEN);
        opcode::SendMsg::new(Fd(fd), &self.hdrs[slot])
            .flags(libc::MSG_DONTWAIT as u32)
            .build()
            .user_data(slot as u64)
    }
}

/// One worker's io_uring state. The ring comes first so it is dropped (and the kernel lets go
/// of the buffers) before the memory it points into.
struct UringLoop<'w> {
    /// The worker's ring.
    ring: IoUring,
    /// Receive buffers lent to the kernel.
    recv: RecvRing,
    /// Answer slots.
    send: SendPool,
    /// Receive completions reaped but not handled yet (capacity PENDING_CAP, never grown).
    pending: VecDeque<cqueue::Entry>,
    /// Whether the multishot receive is armed (its last completion had the MORE flag).
    armed: bool,
    /// Receive errors since the last datagram.
    errors: u32,
    /// The worker: its socket, resolver, queue, counters and stop flag.
    worker: &'w Worker,
    /// The worker's socket.
    fd: RawFd,
}

impl<'w> UringLoop<'w> {
    /// Create the ring and the buffers and register the buffer ring.
    fn new(worker: &'w Worker) -> io::Result<UringLoop<'w>> {
        let ring = new_ring()?;
        let recv = RecvRing::new()?;
        recv.register(&ring)?;
        Ok(UringLoop {
            ring,
            recv,
            send: SendPool::new(),
            pending: VecDeque::with_capacity(PENDING_CAP),
            armed: false,
            errors: 0,
            fd: worker.socket.as_raw_fd(),
            worker,
        })
    }

    /// The loop: (re-)arm the receive, publish returned buffers, submit the queued sends and
    /// wait (at most WAIT_TIMEOUT) in one call, then handle every completion. Runs until the
    /// worker's stop flag is set.
    fn serve(&mut self) -> io::Result<()> {
        let timeout = Timespec::from(WAIT_TIMEOUT);
        let args = SubmitArgs::new().timespec(&timeout);
        let mut flush_due = Instant::now() + super::HIT_FLUSH_EVERY;
        while !self.worker.stop.load(Ordering::Relaxed) {
            if !self.armed {
                push(&mut self.ring, &self.recv.arm(self.fd))?;
                self.armed = true;
            }
            self.recv.publish();
            let waited_out = match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => false,
                Err(e) if is_wait_interruption(&e) => e.raw_os_error() == Some(libc::ETIME),
                Err(e) => return Err(e),
            };
            self.reap();
            let now = Instant::now();
            if (waited_out && self.pending.is_empty()) || now >= flush_due {
                // Idle (the wait timed out), or busy for a while: hand this thread's buffered
                // cache hits to the SLRU.
                self.worker.resolver.cache().flush_hits();
                flush_due = now + super::HIT_FLUSH_EVERY;
            }
            let mut answered = 0u64;
            while let Some(cqe) = self.pending.pop_front() {
                answered += u64::from(self.on_receive(&cqe, now)?);
            }
            if answered > 0 {
                // One clock read per batch: its answers are queued for the next submit, which
                // follows at once.
                let metrics = self.worker.resolver.metrics();
                metrics.record_latency(now.elapsed(), answered);
            }
        }
        self.shutdown();
        Ok(())
    }

    /// Take every completion off the queue: finished sends free their slot, receives wait in
    /// `pending`.
    fn reap(&mut self) {
        for cqe in self.ring.completion() {
            match cqe.user_data() {
                RECV_TAG if self.pending.len() < PENDING_CAP => self.pending.push_back(cqe),
                RECV_TAG => {
                    // Cannot happen (each pending completion holds one of RECV_BUFS buffers),
                    // but never grow the queue: drop the datagram.
                    if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
                        self.recv.give(bid);
                    }
                    if !cqueue::more(cqe.flags()) {
                        self.armed = false;
                    }
                    // Dropped for lack of room: counted as load shed.
                    self.worker.resolver.metrics().count(Event::Shed);
                }
                CANCEL_TAG => {}
                slot => self.send.release(slot as usize),
            }
        }
    }

    /// A free send slot; when all are in flight, submit and reap until one comes back.
    fn acquire_slot(&mut self) -> io::Result<usize> {
        loop {
            if let Some(slot) = self.send.acquire() {
                return Ok(slot);
            }
            self.recv.publish();
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if is_wait_interruption(&e) => {}
                Err(e) => return Err(e),
            }
            self.reap();
        }
    }

    /// Handle one receive completion: answer its datagram through a send slot and give the
    /// buffer back. Returns whether an answer was queued; fails only when the receive keeps
    /// failing or the ring does.
    fn on_receive(&mut self, cqe: &cqueue::Entry, now: Instant) -> io::Result<bool> {
        let flags = cqe.flags();
        if !cqueue::more(flags) {
            self.armed = false;
        }
        let res = cqe.result();
        if res < 0 {
            let errno = -res;
            // ENOBUFS: every buffer is taken; the datagrams wait in the socket until the
            // receive is re-armed after this batch gave buffers back.
            if !matches!(errno, libc::ENOBUFS | libc::ECANCELED | libc::EINTR) {
                self.errors += 1;
                let error = io::Error::from_raw_os_error(errno);
                if self.errors >= MAX_RECV_ERRORS {
                    return Err(error);
                }
                tracing::debug!(%error, "io_uring receive failed; re-arming");
            }
            return Ok(false);
        }
        let Some(bid) = cqueue::buffer_select(flags) else {
            return Ok(false);
        };
        self.errors = 0;
        let slot = match self.acquire_slot() {
            Ok(slot) => slot,
            Err(e) => {
                self.recv.give(bid);
                return Err(e);
            }
        };
        let len = usize::try_from(res).unwrap_or(0);
        let msg = self
            .recv
            .get(bid, len)
            .and_then(|buf| RecvMsgOut::parse(buf, &self.recv.msghdr).ok())
            .filter(|msg| !msg.is_payload_truncated() && !msg.is_name_data_truncated());
        let answer = match msg {
            Some(msg) => {
                let name = msg.name_data();
                self.send
                    .set_addr(slot, name.as_ptr(), name.len() as libc::socklen_t);
                let addr_len = self.send.hdrs[slot].msg_namelen;
                self.worker.handle(
                    msg.payload_data(),
                    &mut self.send.bufs[slot],
                    &self.send.addrs[slot],
                    addr_len,
                    now,
                )
            }
            None => {
                // Larger than any query we accept (or an address we cannot answer).
                self.worker.resolver.metrics().count(Event::Malformed);
                None
            }
        };
        self.recv.give(bid);
        match answer {
            Some(len) if len > 0 => {
                let sqe = self.send.prepare(slot, len, self.fd);
                push(&mut self.ring, &sqe)?;
                Ok(true)
            }
            _ => {
                self.send.release(slot);
                Ok(false)
            }
        }
    }

    /// Cancel the receive and wait (bounded) until the kernel has let go of it and of every
    /// send, so the buffers can be freed. Datagrams still queued are dropped, as on epoll.
    fn shutdown(&mut self) {
        let _ = self.ring.submit();
        if self.armed
            && push(
                &mut self.ring,
                &opcode::AsyncCancel::new(RECV_TAG)
                    .build()
                    .user_data(CANCEL_TAG),
            )
            .is_err()
        {
            return;
        }
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        let timeout = Timespec::from(WAIT_TIMEOUT);
        let args = SubmitArgs::new().timespec(&timeout);
        while (self.armed || self.send.in_flight() > 0) && Instant::now() < deadline {
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if is_wait_interruption(&e) => {}
                Err(_) => return,
            }
            self.reap();
            while let Some(cqe) = self.pending.pop_front() {
                if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
                    self.recv.give(bid);
                }
                if !cqueue::more(cqe.flags()) {
                    self.armed = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The send pool hands out every slot once and takes them back.
    #[test]
    fn send_pool_slots() {
        let mut pool = SendPool::new();
        let mut taken = Vec::new();
        while let Some(slot) = pool.acquire() {
            taken.push(slot);
        }
        assert_eq!(taken.len(), SEND_SLOTS);
        assert_eq!(pool.in_flight(), SEND_SLOTS);
        for slot in taken {
            pool.release(slot);
        }
        assert_eq!(pool.in_flight(), 0);
        pool.release(0);
        assert_eq!(pool.in_flight(), 0, "a double release is ignored");
    }
}
