//! The node's gRPC server: one tonic server on `node.grpc_listen` carrying every service.
//!
//! [`serve`] takes a bound listener and a set of [`Routes`]: the cluster registers the
//! internal Raft service there and the control plane adds its own (`heimdall.v1.Control`,
//! `grpc.health.v1`, server reflection; see [`crate::admin`]), so every gRPC service of a
//! node shares one port. With `[tls]` the listener speaks TLS only (rustls through tonic,
//! see [`crate::tls`]); a plain-text client fails its handshake and is dropped.

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Server, ServerTlsConfig};

/// A server builder for `tls` (None: plain text); fails when rustls refuses the certificate
/// or key (validation has built the same configuration once already).
pub fn builder(tls: Option<ServerTlsConfig>) -> Result<Server, tonic::transport::Error> {
    match tls {
        Some(tls) => Server::builder().tls_config(tls),
        None => Ok(Server::builder()),
    }
}

/// Serves `routes` on `listener` with `server` until `stop` turns true (or its sender is
/// dropped).
pub async fn serve(
    mut server: Server,
    listener: TcpListener,
    routes: Routes,
    mut stop: watch::Receiver<bool>,
) {
    let addr = listener.local_addr().ok();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let shutdown = async move {
        while !*stop.borrow_and_update() {
            if stop.changed().await.is_err() {
                return;
            }
        }
    };
    let result = server
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    match result {
        Ok(()) => tracing::debug!(?addr, "grpc server stopped"),
        Err(e) => tracing::error!(?addr, "grpc server failed: {e}"),
    }
}
