//! DNS over TCP (RFC 7766): length-prefixed messages, several queries per connection answered
//! as they complete (possibly out of order), idle timeout and a connection limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};

use super::InFlight;
use crate::metrics::Event;
use crate::resolver::{Client, MAX_TCP_MESSAGE, Outcome, Resolver};

/// Answers queued per connection before the reader waits for the writer.
const WRITE_QUEUE: usize = 64;

/// Limits of the TCP listener.
#[derive(Clone, Copy, Debug)]
pub struct TcpLimits {
    /// A connection with no complete query for this long is closed; also the deadline for
    /// the rest of a message once its first byte arrived (slow senders are cut off).
    pub idle_timeout: Duration,
    /// Connections served at once; more are closed immediately.
    pub max_connections: usize,
}

/// Accept connections until shutdown.
pub async fn serve(
    listener: TcpListener,
    resolver: Arc<Resolver>,
    limits: TcpLimits,
    inflight: InFlight,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "tcp accept failed");
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            resolver.metrics().count(Event::TcpRefused);
            drop(stream);
            continue;
        };
        resolver.metrics().count(Event::TcpConnection);
        let conn = Connection {
            resolver: Arc::clone(&resolver),
            limits,
            inflight: inflight.clone(),
            shutdown: shutdown.clone(),
            peer,
        };
        tokio::spawn(async move {
            if let Err(e) = conn.run(stream).await {
                tracing::debug!(%peer, error = %e, "tcp connection ended with an error");
            }
            drop(permit);
        });
    }
}

/// One client connection.
struct Connection {
    /// The shared query engine.
    resolver: Arc<Resolver>,
    /// Timeouts.
    limits: TcpLimits,
    /// Tracks answers still being produced, so shutdown can wait for them.
    inflight: InFlight,
    /// Fires on shutdown: stop reading new queries.
    shutdown: watch::Receiver<bool>,
    /// The client's address (the ACL and cookies are per address).
    peer: std::net::SocketAddr,
}

impl Connection {
    /// Read queries until EOF, idle timeout, a framing error or shutdown; answers are written by
    /// a separate task as they complete.
    async fn run(mut self, stream: TcpStream) -> std::io::Result<()> {
        stream.set_nodelay(true)?;
        let (mut reader, mut writer) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
        let guard = self.inflight.enter();
        let write_task = tokio::spawn(async move {
            let _guard = guard;
            while let Some(frame) = rx.recv().await {
                if writer.write_all(&frame).await.is_err() {
                    break;
                }
            }
            let _ = writer.shutdown().await;
        });
        let mut msg = vec![0u8; MAX_TCP_MESSAGE];
        let mut out = vec![0u8; MAX_TCP_MESSAGE + 2];
        loop {
            let mut prefix = [0u8; 2];
            let first = tokio::select! {
                r = tokio::time::timeout(self.limits.idle_timeout, reader.read_exact(&mut prefix)) => r,
                _ = self.shutdown.changed() => break,
            };
            match first {
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => break, // EOF, reset or idle timeout
            }
            let len = usize::from(u16::from_be_bytes(prefix));
            if len == 0 {
                // A zero-length message cannot be a query: close the connection.
                self.resolver.metrics().count(Event::TcpBadFrame);
                break;
            }
            let body = &mut msg[..len];
            match tokio::time::timeout(self.limits.idle_timeout, reader.read_exact(body)).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => {
                    self.resolver.metrics().count(Event::TcpBadFrame);
                    break;
                }
            }
            self.resolver.metrics().count(Event::TcpQuery);
            let now = Instant::now();
            match self.resolver.process(
                &msg[..len],
                &mut out[2..],
                Client::tcp(self.peer.ip()),
                now,
            ) {
                Outcome::Reply { len, prefetch } => {
                    if let Some(req) = prefetch {
                        let resolver = Arc::clone(&self.resolver);
                        let guard = self.inflight.enter();
                        tokio::spawn(async move {
                            resolver.prefetch(&req).await;
                            drop(guard);
                        });
                    }
                    if tx.send(frame(&out[2..2 + len])).await.is_err() {
                        break;
                    }
                    // Handed to the connection's writer.
                    self.resolver.metrics().record_latency(now.elapsed(), 1);
                }
                Outcome::Drop => {}
                Outcome::Miss(req) => {
                    let resolver = Arc::clone(&self.resolver);
                    let tx = tx.clone();
                    let guard = self.inflight.enter();
                    tokio::spawn(async move {
                        let answer = resolver.resolve_miss(&req).await;
                        if tx.send(frame(&answer)).await.is_ok() {
                            resolver.metrics().record_latency(now.elapsed(), 1);
                        }
                        drop(guard);
                    });
                }
            }
        }
        drop(tx);
        let _ = write_task.await;
        Ok(())
    }
}

/// Prefix a message with its 2-byte length.
fn frame(message: &[u8]) -> Vec<u8> {
    let len = u16::try_from(message.len()).unwrap_or(u16::MAX);
    let mut v = Vec::with_capacity(message.len() + 2);
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(message.get(..usize::from(len)).unwrap_or(message));
    v
}
