//! Sending the answers of misses resolved on the runtime: one task collects them and sends
//! them in batches (`sendmmsg`, never blocking) on the sockets the queries arrived on, so a
//! burst of upstream replies costs one system call and one wake-up of the client, not one
//! each.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::InFlightGuard;
use super::batch::{BATCH, SendBatch, to_sockaddr};
use crate::resolver::Resolver;

/// A miss's answer on its way to the client.
#[derive(Debug)]
pub struct UdpAnswer {
    /// The socket the query arrived on.
    pub socket: Arc<socket2::Socket>,
    /// The client.
    pub peer: SocketAddr,
    /// When the query arrived, for the latency histogram.
    pub received: Instant,
    /// The answer.
    pub bytes: Vec<u8>,
    /// Keeps shutdown waiting until the answer is sent.
    pub guard: InFlightGuard,
}

/// Send the answers arriving on `rx` until every sender is gone. After the first answer of a
/// batch the task yields once, so that the tasks ready at that moment (typically the queries
/// whose replies one upstream socket read delivered) add theirs to the same `sendmmsg`.
pub async fn send_answers(mut rx: mpsc::UnboundedReceiver<UdpAnswer>, resolver: Arc<Resolver>) {
    let mut batch = SendBatch::new();
    let mut answers = Vec::with_capacity(BATCH);
    loop {
        if rx.recv_many(&mut answers, BATCH).await == 0 {
            return;
        }
        tokio::task::yield_now().await;
        while answers.len() < BATCH {
            match rx.try_recv() {
                Ok(answer) => answers.push(answer),
                Err(_) => break,
            }
        }
        send(&mut batch, &answers);
        let metrics = resolver.metrics().local();
        for answer in answers.drain(..) {
            metrics.record_latency(answer.received.elapsed(), 1);
            drop(answer.guard);
        }
    }
}

/// Send `answers` in order, one `sendmmsg` per run of answers on the same socket.
fn send(batch: &mut SendBatch, answers: &[UdpAnswer]) {
    let mut current: Option<&Arc<socket2::Socket>> = None;
    for answer in answers {
        if let Some(socket) = current
            && !Arc::ptr_eq(socket, &answer.socket)
        {
            batch.flush_nonblocking(socket.as_raw_fd());
        }
        current = Some(&answer.socket);
        let buf = batch.next_buf();
        match buf.get_mut(..answer.bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(&answer.bytes);
                let (peer, peer_len) = to_sockaddr(answer.peer);
                batch.push(answer.bytes.len(), &peer, peer_len);
            }
            // Larger than a batch buffer (a very large max_udp_payload): on its own.
            None => {
                let peer = socket2::SockAddr::from(answer.peer);
                let _ = answer
                    .socket
                    .send_to_with_flags(&answer.bytes, &peer, libc::MSG_DONTWAIT);
            }
        }
    }
    if let Some(socket) = current {
        batch.flush_nonblocking(socket.as_raw_fd());
    }
}
