//! The Prometheus endpoint: `GET /metrics` over HTTP/1 (axum on the node's tokio runtime),
//! answering the text exposition format 0.0.4 rendered on each scrape.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::resolver::Resolver;

/// The content type of the Prometheus text format.
const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serve /metrics on `listener` until `shutdown` resolves; returns the server's I/O error if it
/// fails.
pub async fn serve(
    listener: TcpListener,
    resolver: Arc<Resolver>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let resolver = Arc::clone(&resolver);
            async move {
                (
                    [(CONTENT_TYPE, CONTENT_TYPE_TEXT)],
                    resolver.metrics().prometheus(),
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
