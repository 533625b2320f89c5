//! The node's gRPC server: one tonic server on `node.grpc_listen` carrying every service.
//!
//! [`serve`] takes a bound listener and a set of [`Routes`]: the cluster registers the
//! internal Raft service there, and the control plane will add its services to the same
//! routes, so every gRPC service of a node shares one port.

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

/// Serves `routes` on `listener` until `stop` turns true (or its sender is dropped).
pub async fn serve(listener: TcpListener, routes: Routes, mut stop: watch::Receiver<bool>) {
    let addr = listener.local_addr().ok();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let shutdown = async move {
        while !*stop.borrow_and_update() {
            if stop.changed().await.is_err() {
                return;
            }
        }
    };
    let result = Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    match result {
        Ok(()) => tracing::debug!(?addr, "grpc server stopped"),
        Err(e) => tracing::error!(?addr, "grpc server failed: {e}"),
    }
}
