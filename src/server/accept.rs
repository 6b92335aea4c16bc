//! The HTTP accept loop: HTTP/1.1 with a deadline for each request's headers, a cap on open
//! connections, and a graceful end. `axum::serve` has neither the deadline nor the cap: a
//! client sending its headers a byte every two seconds, or nothing at all, held a connection
//! (and a file descriptor) for as long as it liked.

use std::{pin::pin, sync::Arc, time::Duration};

use axum::{Router, extract::ConnectInfo};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt;

use super::HttpOptions;

/// How long connections may take to close once calls in flight had their grace period.
const CLOSE: Duration = Duration::from_secs(5);

/// Accept connections until `ct` is cancelled, then let open ones finish: requests in flight
/// are answered and their connections closed (up to the grace period and [`CLOSE`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: &HttpOptions,
    connections: Arc<Semaphore>,
    ct: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout);
    let max = options.max_connections;
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, mostly: wait for some to be given back rather
                    // than spin.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = ct.cancelled() => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = max, "HTTP connection refused: too many open");
            tracker.spawn(refuse(tcp, max));
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request.map(axum::body::Body::new))
        });
        let connection = http
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades();
        let ct = ct.clone();
        tracker.spawn(async move {
            let mut connection = pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = ct.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
            drop(permit);
        });
    }
    tracker.close();
    if tokio::time::timeout(options.grace + CLOSE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain; stopping anyway");
    }
}

/// Answer a connection over the cap with 503 and close it, without reading its request.
async fn refuse(mut tcp: TcpStream, max: usize) {
    let text = format!(
        "too many HTTP connections open (the limit is {max}): retry shortly, or raise \
         --max-connections (PLUGBOARD_MAX_CONNECTIONS)\n"
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{text}",
        text.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = tcp.write_all(response.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}
