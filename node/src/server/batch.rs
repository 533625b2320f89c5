//! Batched UDP receive and send (`recvmmsg`/`sendmmsg`) into buffers allocated once per worker.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::ptr::null_mut;

/// Datagrams per batch.
pub const BATCH: usize = 32;
/// Size of each buffer: the largest query we accept and the largest answer we send over UDP.
pub const BUF_LEN: usize = 4096;

/// One slot's bytes.
type Buf = [u8; BUF_LEN];

/// Length of a `sockaddr_storage`, as the kernel wants it.
const STORAGE_LEN: libc::socklen_t = size_of::<libc::sockaddr_storage>() as libc::socklen_t;

/// Receive side: BATCH buffers, their source addresses, and the kernel's headers pointing at them.
pub struct RecvBatch {
    /// Datagram buffers.
    bufs: Box<[Buf]>,
    /// Source address of each datagram.
    addrs: Box<[libc::sockaddr_storage]>,
    /// One iovec per buffer.
    iovecs: Box<[libc::iovec]>,
    /// The headers recvmmsg fills in.
    hdrs: Box<[libc::mmsghdr]>,
    /// How many slots the last receive filled: the only headers the kernel wrote since they
    /// were last reset.
    filled: usize,
}

// SAFETY: the raw pointers inside `iovecs`/`hdrs` point only into this struct's own boxed
// slices, which move with it; nothing is shared with another thread.
unsafe impl Send for RecvBatch {}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("filled", &self.filled)
            .finish()
    }
}

impl RecvBatch {
    /// Allocate the buffers and wire the headers to them (once, at worker start).
    pub fn new() -> RecvBatch {
        let mut bufs: Box<[Buf]> = vec![[0u8; BUF_LEN]; BATCH].into_boxed_slice();
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero
        // bytes are a valid value.
        let mut addrs: Box<[libc::sockaddr_storage]> =
            (0..BATCH).map(|_| unsafe { zeroed() }).collect();
        let mut iovecs: Box<[libc::iovec]> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: BUF_LEN,
            })
            .collect();
        let hdrs: Box<[libc::mmsghdr]> = iovecs
            .iter_mut()
            .zip(addrs.iter_mut())
            .map(|(iov, addr)| {
                // SAFETY: all-zero is a valid mmsghdr; the pointers set below stay valid
                // because the boxed slices they point into are never reallocated.
                let mut h: libc::mmsghdr = unsafe { zeroed() };
                h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = STORAGE_LEN;
                h.msg_hdr.msg_iov = iov as *mut libc::iovec;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        RecvBatch {
            bufs,
            addrs,
            iovecs,
            hdrs,
            filled: 0,
        }
    }

    /// Receive up to BATCH datagrams, blocking until the first one arrives (or the socket's
    /// receive timeout passes: `WouldBlock`). Returns how many arrived.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // The kernel writes only the headers of the datagrams it returns (none when the call
        // fails): at a low rate that is one or two of the BATCH, so resetting all of them would
        // be most of this loop's work.
        for h in self.hdrs.iter_mut().take(self.filled) {
            h.msg_hdr.msg_namelen = STORAGE_LEN;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        debug_assert_eq!(self.iovecs.len(), BATCH);
        // SAFETY: `hdrs` holds BATCH initialised headers whose buffers and address storage are
        // owned by `self` and outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                null_mut(),
            )
        };
        if n < 0 {
            self.filled = 0;
            return Err(io::Error::last_os_error());
        }
        self.filled = n as usize;
        Ok(self.filled)
    }

    /// The `i`-th datagram of the last receive and its source address; None for a datagram
    /// that did not fit the buffer (it is dropped: no valid query is that large).
    pub fn get(&self, i: usize) -> Option<(&[u8], &libc::sockaddr_storage, libc::socklen_t)> {
        if i >= self.filled {
            return None;
        }
        let h = self.hdrs.get(i)?;
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let len = (h.msg_len as usize).min(BUF_LEN);
        Some((
            self.bufs.get(i)?.get(..len)?,
            self.addrs.get(i)?,
            h.msg_hdr.msg_namelen,
        ))
    }
}

/// Send side: BATCH answer buffers with their destinations, flushed with one sendmmsg.
pub struct SendBatch {
    /// Answer buffers.
    bufs: Box<[Buf]>,
    /// Destination of each answer.
    addrs: Box<[libc::sockaddr_storage]>,
    /// One iovec per buffer (its length set per answer).
    iovecs: Box<[libc::iovec]>,
    /// The headers sendmmsg reads.
    hdrs: Box<[libc::mmsghdr]>,
    /// How many answers are queued.
    queued: usize,
}

// SAFETY: as for RecvBatch, the raw pointers point only into this struct's own boxed slices.
unsafe impl Send for SendBatch {}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("queued", &self.queued)
            .finish()
    }
}

impl SendBatch {
    /// Allocate the buffers and wire the headers to them.
    pub fn new() -> SendBatch {
        let mut bufs: Box<[Buf]> = vec![[0u8; BUF_LEN]; BATCH].into_boxed_slice();
        // SAFETY: all-zero bytes are valid for these C structs.
        let mut addrs: Box<[libc::sockaddr_storage]> =
            (0..BATCH).map(|_| unsafe { zeroed() }).collect();
        let mut iovecs: Box<[libc::iovec]> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: 0,
            })
            .collect();
        let hdrs: Box<[libc::mmsghdr]> = iovecs
            .iter_mut()
            .zip(addrs.iter_mut())
            .map(|(iov, addr)| {
                // SAFETY: as in RecvBatch::new.
                let mut h: libc::mmsghdr = unsafe { zeroed() };
                h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_iov = iov as *mut libc::iovec;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        SendBatch {
            bufs,
            addrs,
            iovecs,
            hdrs,
            queued: 0,
        }
    }

    /// The buffer the next answer is written into (before `push`).
    pub fn next_buf(&mut self) -> &mut [u8] {
        let i = self.queued.min(BATCH - 1);
        &mut self.bufs[i]
    }

    /// Queue the answer just written into `next_buf` (`len` bytes) for `addr`.
    /// The caller flushes when `is_full`.
    pub fn push(&mut self, len: usize, addr: &libc::sockaddr_storage, addr_len: libc::socklen_t) {
        let i = self.queued;
        if i >= BATCH || len == 0 {
            return;
        }
        self.addrs[i] = *addr;
        self.iovecs[i].iov_len = len.min(BUF_LEN);
        self.hdrs[i].msg_hdr.msg_namelen = addr_len;
        self.queued += 1;
    }

    /// Whether the batch is full and must be flushed before the next answer.
    pub fn is_full(&self) -> bool {
        self.queued >= BATCH
    }

    /// Send every queued answer. Answers the kernel refuses (full buffer) are dropped, like a
    /// lost datagram; returns how many were sent.
    pub fn flush(&mut self, fd: RawFd) -> usize {
        self.flush_with(fd, 0)
    }

    /// [`SendBatch::flush`] that never blocks (MSG_DONTWAIT), for the async runtime's threads:
    /// a full socket buffer drops the answers that do not fit.
    pub fn flush_nonblocking(&mut self, fd: RawFd) -> usize {
        self.flush_with(fd, libc::MSG_DONTWAIT)
    }

    /// Send every queued answer with `sendmmsg(flags)`; returns how many were queued.
    fn flush_with(&mut self, fd: RawFd, flags: libc::c_int) -> usize {
        let mut sent = 0;
        while sent < self.queued {
            // SAFETY: hdrs[sent..queued] are initialised and point into buffers owned by self.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs.as_mut_ptr().add(sent),
                    (self.queued - sent) as libc::c_uint,
                    flags,
                )
            };
            if n <= 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Skip the datagram that failed (e.g. an unreachable destination) and go on.
                sent += 1;
                continue;
            }
            sent += n as usize;
        }
        let done = self.queued;
        self.queued = 0;
        done
    }
}

/// Convert a std socket address to a kernel one and its length (the inverse of
/// [`to_socket_addr`]).
pub fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than sockaddr_in and aligned for it.
            let sin: &mut libc::sockaddr_in =
                unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than sockaddr_in6 and aligned for it.
            let sin6: &mut libc::sockaddr_in6 =
                unsafe { &mut *(&mut storage as *mut libc::sockaddr_storage).cast() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Convert a kernel socket address to a std one (IPv4 or IPv6); None for other families.
pub fn to_socket_addr(addr: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match i32::from(addr.ss_family) {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says this storage holds a sockaddr_in, and it is large enough.
            let a: &libc::sockaddr_in = unsafe { &*(addr as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says this storage holds a sockaddr_in6, and it is large enough.
            let a: &libc::sockaddr_in6 =
                unsafe { &*(addr as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    /// Receive once and check that `want` datagrams came in (the sender's datagrams are already
    /// queued on loopback when it returns, so one call takes them all).
    fn recv_exactly(batch: &mut RecvBatch, socket: &UdpSocket, want: usize) {
        let n = batch.recv(socket.as_raw_fd()).expect("recvmmsg");
        assert_eq!(n, want, "datagrams in one receive");
    }

    /// Each receive's datagrams are its own whatever the sizes of the batches before it:
    /// lengths, sources and truncation are per call, and slots past the last receive are
    /// empty. (Linux rewrites the length, flags and address length of every header it fills,
    /// so resetting only the headers the last call filled is a precaution, not a necessity.)
    #[test]
    fn each_receive_sees_only_its_own_datagrams() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let to = server.local_addr().expect("addr");
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut batch = RecvBatch::new();

        for len in [10, BUF_LEN + 1, 30] {
            a.send_to(&vec![7u8; len], to).expect("send");
        }
        recv_exactly(&mut batch, &server, 3);
        assert_eq!(batch.get(0).map(|(p, _, _)| p.len()), Some(10));
        assert!(batch.get(1).is_none(), "the oversized datagram is dropped");
        assert_eq!(batch.get(2).map(|(p, _, _)| p.len()), Some(30));

        // One datagram in slot 0, then three again: slot 1 held the truncated one before.
        b.send_to(&[1u8; 5], to).expect("send");
        recv_exactly(&mut batch, &server, 1);
        let (packet, addr, addr_len) = batch.get(0).expect("one datagram");
        assert_eq!(packet, [1u8; 5]);
        assert_eq!(
            to_socket_addr(addr, addr_len),
            Some(b.local_addr().expect("addr"))
        );
        assert!(batch.get(1).is_none(), "only the last receive's datagrams");

        for len in [1, 2, 3] {
            a.send_to(&vec![9u8; len], to).expect("send");
        }
        recv_exactly(&mut batch, &server, 3);
        for (i, len) in [1, 2, 3].into_iter().enumerate() {
            let (packet, addr, addr_len) = batch.get(i).expect("a datagram");
            assert_eq!(packet, vec![9u8; len], "slot {i}");
            assert_eq!(
                to_socket_addr(addr, addr_len),
                Some(a.local_addr().expect("addr"))
            );
        }
    }

    /// `to_sockaddr` and `to_socket_addr` are inverses for IPv4 and IPv6 addresses.
    #[test]
    fn socket_addresses_round_trip() {
        for addr in ["192.0.2.7:5353", "[2001:db8::1]:53", "[fe80::1%3]:853"] {
            let addr: SocketAddr = addr.parse().expect("a socket address");
            let (storage, len) = to_sockaddr(addr);
            assert_eq!(to_socket_addr(&storage, len), Some(addr));
        }
    }
}
