//! Serving DNS: per-core UDP workers and a TCP listener, started and stopped by [`run`].

mod answers;
mod batch;
mod tcp;
mod udp;
#[cfg(feature = "uring")]
mod uring;

pub use tcp::TcpLimits;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};

use crate::cache::{Cache, CachePolicy};
use crate::cluster::settings::CacheSettings;
use crate::config::{Config, IoBackend};
use crate::resolver::Resolver;
use crate::upstream::{Forwarder, ForwarderTimeouts};

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The metrics listener (`node.metrics_listen`) could not be bound.
    #[error("cannot listen on {addr} (node.metrics_listen, http): {source}")]
    MetricsBind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A listening socket could not be created.
    #[error("cannot listen on {addr} ({proto}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// "udp" or "tcp".
        proto: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A worker thread could not be started.
    #[error("cannot start worker thread: {0}")]
    Thread(std::io::Error),
    /// The cluster member (Raft, its store or its gRPC server) could not start.
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A miss on its way to the async runtime, and where its answer goes.
#[derive(Debug)]
pub struct Job {
    /// The query to resolve.
    pub req: crate::resolver::MissRequest,
    /// Where to send the answer.
    pub reply: ReplyTo,
}

/// The destination of an answer produced on the runtime.
#[derive(Debug)]
pub enum ReplyTo {
    /// Send on the worker's own UDP socket to the client.
    Udp {
        /// The socket the query arrived on.
        socket: Arc<socket2::Socket>,
        /// The client.
        peer: SocketAddr,
        /// When the query arrived (the worker's clock read for its batch), for the latency
        /// histogram.
        received: Instant,
    },
    /// A background refresh: nobody waits for the answer.
    Prefetch,
}

/// Counts work still in progress (answers being resolved, connections writing), so shutdown
/// can wait for it.
#[derive(Clone, Debug, Default)]
pub struct InFlight {
    /// The count and a wake-up for waiters.
    inner: Arc<(AtomicUsize, Notify)>,
}

/// Decrements the in-flight count when dropped.
#[derive(Debug)]
pub struct InFlightGuard {
    /// The tracker.
    inner: Arc<(AtomicUsize, Notify)>,
}

impl InFlight {
    /// Mark one more piece of work as started.
    pub fn enter(&self) -> InFlightGuard {
        self.inner.0.fetch_add(1, Ordering::SeqCst);
        InFlightGuard {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Wait until nothing is in flight or the timeout passes; returns what is still running.
    pub async fn wait_idle(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.1.notified();
            let n = self.inner.0.load(Ordering::SeqCst);
            if n == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.inner.0.load(Ordering::SeqCst);
            }
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.inner.0.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.1.notify_waiters();
        }
    }
}

/// A running server's addresses, for logs and tests.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    /// Where UDP and TCP DNS are served.
    pub dns: SocketAddr,
}

/// The UDP loop the workers run, chosen once at start by [`choose_backend`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpBackend {
    /// `recvmmsg`/`sendmmsg` on a blocking socket (`udp.rs`).
    Epoll,
    /// io_uring: multishot receive into a provided buffer ring, batched sends (`uring.rs`).
    #[cfg(feature = "uring")]
    Uring,
}

impl UdpBackend {
    /// The name used in logs.
    pub fn name(self) -> &'static str {
        match self {
            UdpBackend::Epoll => "epoll",
            #[cfg(feature = "uring")]
            UdpBackend::Uring => "io_uring",
        }
    }
}

/// How often a busy UDP worker hands its buffered cache hits to the SLRU (an idle one does it
/// when its wait times out). Without it, a steadily loaded worker would apply hits only when
/// its log and the store's inbox fill, so entries would turn hot (and be gossiped, and have
/// their refreshes gossiped) long after they were.
pub const HIT_FLUSH_EVERY: Duration = Duration::from_millis(100);

/// How long shutdown waits for the cluster member (gRPC server, gossip, Raft) to stop.
const CLUSTER_SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Whether this binary and kernel can run the io_uring UDP backend; Err says why not
/// (built without the `uring` feature, or the probe failed, e.g. under a seccomp filter).
pub fn io_uring_available() -> Result<(), String> {
    #[cfg(feature = "uring")]
    return uring::probe();
    #[cfg(not(feature = "uring"))]
    Err("this binary was built without the `uring` feature".to_owned())
}

/// Decide the UDP loop for `dns.io_backend`: epoll (the default) when asked for; io_uring when
/// `auto` or `uring` is asked for, compiled in and the probe succeeds; otherwise epoll, logged
/// (INFO for `auto`, WARN for `uring`). Never fails: the node always starts.
pub fn choose_backend(requested: IoBackend) -> UdpBackend {
    if requested == IoBackend::Epoll {
        return UdpBackend::Epoll;
    }
    let reason = match io_uring_available() {
        Ok(()) => return UdpBackend::Uring,
        Err(reason) => reason,
    };
    if requested == IoBackend::Uring {
        tracing::warn!(
            "dns.io_backend is uring but io_uring is unavailable ({reason}), using epoll"
        );
    } else {
        tracing::info!("io_uring unavailable ({reason}), using epoll");
    }
    UdpBackend::Epoll
}

/// Build the query engine (cache + forwarder) from the configuration.
pub fn build_resolver(config: &Config) -> Resolver {
    let cache = Cache::new(
        usize::try_from(config.cache.max_bytes).unwrap_or(usize::MAX),
        CachePolicy::from(&CacheSettings::from(&config.cache)),
    );
    let forwarder = Forwarder::new(
        &config.upstream.servers,
        ForwarderTimeouts {
            attempt: Duration::from_millis(config.upstream.timeout_ms),
            total: Duration::from_millis(config.upstream.resolve_timeout_ms),
        },
    );
    let stale_after = config.cache.stale_answer_after_ms;
    let mut resolver = Resolver::new(cache, forwarder, config.dns.max_udp_payload)
        .with_stale_answer_after((stale_after > 0).then(|| Duration::from_millis(stale_after)));
    if let Some(secret) = &config.cluster.secret {
        // Every node of the cluster makes and accepts the same DNS server cookies; during a
        // rotation of the cluster secret, cookies of the previous one stay valid as long as
        // the previous secret is accepted for RPCs.
        let until = crate::guard::cookie::unix_now() + config.cluster.previous_secret_grace_s;
        let retired = config
            .cluster
            .previous_secret
            .as_ref()
            .map(|previous| (previous.expose(), until));
        resolver = resolver.with_cookie_master(secret.expose(), retired);
    }
    crate::authority::install_zone(resolver.authority(), config);
    resolver
}

/// Rotate the DNS cookie secrets at every period boundary (hourly) until shutdown. The
/// secret of a period derives from the node's master key, so nodes sharing the cluster
/// secret rotate to the same secret.
async fn rotate_cookie_secrets(resolver: Arc<Resolver>, mut shutdown: watch::Receiver<bool>) {
    use crate::guard::cookie::{ROTATION_SECS, unix_now};
    loop {
        let now = unix_now();
        // Wake just after the next boundary (a second late absorbs timer slack).
        let wait = ROTATION_SECS - now % ROTATION_SECS + 1;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        if resolver.guard().cookies().rotate(unix_now()) {
            tracing::debug!("dns cookie secret rotated");
        }
    }
}

/// Run a node until `shutdown` resolves: bind UDP (one SO_REUSEPORT socket per worker) and
/// TCP, serve, then stop accepting, finish in-flight queries and return.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    std::fs::create_dir_all(&config.node.data_dir).map_err(|source| ServerError::DataDir {
        path: config.node.data_dir.clone(),
        source,
    })?;
    let resolver = Arc::new(build_resolver(&config));
    let cluster = crate::cluster::start(&config, &resolver).await?;
    let workers = config.dns.workers.max(1);
    let listen = config.dns.listen;
    let sockets =
        udp::bind_sockets(listen, workers, config.dns.udp_recv_buffer).map_err(|source| {
            ServerError::Bind {
                addr: listen,
                proto: "udp",
                source,
            }
        })?;
    let dns_addr = sockets
        .first()
        .and_then(|s| s.local_addr().ok())
        .and_then(|a| a.as_socket())
        .unwrap_or(listen);
    let listener = TcpListener::bind(dns_addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: dns_addr,
            proto: "tcp",
            source,
        })?;

    let metrics_listener = TcpListener::bind(config.node.metrics_listen)
        .await
        .map_err(|source| ServerError::MetricsBind {
            addr: config.node.metrics_listen,
            source,
        })?;
    let metrics_addr = metrics_listener
        .local_addr()
        .unwrap_or(config.node.metrics_listen);

    let stop = Arc::new(AtomicBool::new(false));
    let inflight = InFlight::default();
    let (miss_tx, miss_rx) = mpsc::channel::<Job>(config.dns.miss_queue.max(1));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let backend = choose_backend(config.dns.io_backend);
    tracing::info!(workers, "udp backend: {}", backend.name());
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let mut threads = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let worker = udp::Worker {
            socket,
            resolver: Arc::clone(&resolver),
            misses: miss_tx.clone(),
            stop: Arc::clone(&stop),
            cpu: config.dns.cpu_affinity.then_some(i % cpus),
            scheduling: config.dns.worker_scheduling,
        };
        // Worker threads are named `heimdall-udp-*` (`heimdall-udp-uring-*` on io_uring).
        let name = match backend {
            UdpBackend::Epoll => format!("heimdall-udp-{i}"),
            #[cfg(feature = "uring")]
            UdpBackend::Uring => format!("heimdall-udp-uring-{i}"),
        };
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                worker.pin();
                worker.set_scheduling();
                match backend {
                    UdpBackend::Epoll => worker.run_epoll(),
                    #[cfg(feature = "uring")]
                    UdpBackend::Uring => uring::run(&worker),
                }
            })
            .map_err(ServerError::Thread)?;
        threads.push(handle);
    }
    drop(miss_tx);

    let dispatcher = tokio::spawn(dispatch(miss_rx, Arc::clone(&resolver), inflight.clone()));
    let tcp_task = tokio::spawn(tcp::serve(
        listener,
        Arc::clone(&resolver),
        TcpLimits {
            idle_timeout: Duration::from_millis(config.dns.tcp_idle_timeout_ms),
            max_connections: config.dns.tcp_max_connections,
        },
        inflight.clone(),
        shutdown_rx.clone(),
    ));
    let rotation_task = tokio::spawn(rotate_cookie_secrets(
        Arc::clone(&resolver),
        shutdown_rx.clone(),
    ));
    let metrics_task = tokio::spawn({
        let mut stop_rx = shutdown_rx;
        crate::metrics::serve(metrics_listener, Arc::clone(&resolver), async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        })
    });

    tracing::info!(
        dns = %dns_addr,
        metrics = %metrics_addr,
        workers,
        runtime_threads = config.dns.runtime_threads,
        upstreams = ?config.upstream.servers,
        cache_bytes = config.cache.max_bytes,
        "heimdall ready"
    );

    shutdown.await;
    tracing::info!("shutting down: no new queries, finishing the ones in flight");
    stop.store(true, Ordering::SeqCst);
    let _ = shutdown_tx.send(true);
    let _ = tcp_task.await;
    let _ = rotation_task.await;
    if let Ok(Err(e)) = metrics_task.await {
        tracing::warn!(error = %e, "metrics endpoint failed");
    }
    // Worker threads notice `stop` within their receive timeout; their queue senders drop
    // with them, which ends the dispatcher once the queue is drained.
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
    let _ = dispatcher.await;
    let grace = Duration::from_millis(config.upstream.resolve_timeout_ms) + Duration::from_secs(1);
    let left = inflight.wait_idle(grace).await;
    if left > 0 {
        tracing::warn!(
            left,
            "shutdown grace period over with answers still in flight"
        );
    }
    // Stop the cluster member in order (gRPC, background tasks, then Raft's core), rather
    // than leaving its tasks to die with the runtime mid-report.
    if tokio::time::timeout(CLUSTER_SHUTDOWN_GRACE, cluster.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "cluster member did not stop within {CLUSTER_SHUTDOWN_GRACE:?}; stopping anyway"
        );
    }
    let totals = resolver.metrics().snapshot();
    let count = |label: &str| {
        totals
            .queries_by_protocol
            .iter()
            .find(|c| c.label == label)
            .map_or(0, |c| c.count)
    };
    tracing::info!(
        udp_queries = count("udp"),
        tcp_queries = count("tcp"),
        "stopped"
    );
    Ok(())
}

/// Take misses off the queue and resolve each on its own task; UDP answers go to one task
/// that sends them in batches ([`answers::send_answers`]).
async fn dispatch(mut rx: mpsc::Receiver<Job>, resolver: Arc<Resolver>, inflight: InFlight) {
    // The sender ends when the last task holding a handle has sent its answer.
    let (answers_tx, answers_rx) = mpsc::unbounded_channel();
    tokio::spawn(answers::send_answers(answers_rx, Arc::clone(&resolver)));
    while let Some(job) = rx.recv().await {
        let resolver = Arc::clone(&resolver);
        let guard = inflight.enter();
        let answers = answers_tx.clone();
        tokio::spawn(async move {
            match job.reply {
                ReplyTo::Udp {
                    socket,
                    peer,
                    received,
                } => {
                    let bytes = resolver.resolve_miss(&job.req).await;
                    // The sender task ends only after every handle is gone: this cannot fail.
                    let _ = answers.send(answers::UdpAnswer {
                        socket,
                        peer,
                        received,
                        bytes,
                        guard,
                    });
                }
                ReplyTo::Prefetch => {
                    resolver.prefetch(&job.req).await;
                    drop(guard);
                }
            }
        });
    }
}
