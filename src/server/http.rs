//! One HTTP port: Streamable HTTP at `/mcp` (both protocol generations) and the legacy
//! HTTP+SSE transport at `/sse` + `/message`, behind the Host/Origin/token guard.

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context, bail};
use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware,
    routing::{get, post},
    serve::ListenerExt,
};
use rmcp::transport::{
    StreamableHttpServerConfig, StreamableHttpService,
    streamable_http_server::session::local::LocalSessionManager,
};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use super::{McpHandler, gate, guard, json_first, sse};
use crate::plugin::{Face, Manager};

/// How many legacy SSE sessions may be open at once unless `--max-sse-sessions` says otherwise:
/// each holds a task pair and two channels, and the transport has no other bound.
pub const DEFAULT_MAX_SSE_SESSIONS: usize = 256;

#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub addr: SocketAddr,
    /// Bearer token; required when `addr` is not loopback. A secret type, so that `Debug` of
    /// the options cannot print it.
    pub token: Option<SecretString>,
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
    /// Legacy SSE sessions open at once; `GET /sse` beyond it is answered 503.
    pub max_sse_sessions: usize,
}

pub fn router(manager: Arc<Manager>, options: &HttpOptions, ct: CancellationToken) -> Router {
    let sessions = Arc::new(LocalSessionManager::default());
    let config = StreamableHttpServerConfig::default()
        .with_json_response(true)
        // The guard checks Host and Origin for every endpoint, /mcp included.
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_max_request_body_bytes(options.max_body_bytes)
        // How soon a client reconnects to a stream that ended early (SEP-1699).
        .with_sse_retry(Some(std::time::Duration::from_secs(1)))
        .with_cancellation_token(ct.child_token());
    let json_first = json_first::JsonFirst {
        streams: json_first::Streams::default(),
        sessions: sessions.clone(),
        keep_alive: config.sse_keep_alive,
        ct: ct.child_token(),
    };
    let factory_manager = manager.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(McpHandler::new(factory_manager.clone()).on(Face::Http)),
        sessions,
        config,
    );
    let guard = guard::Guard::new(
        options.addr.ip(),
        &options.allowed_hosts,
        &options.allowed_origins,
        options.token.as_ref(),
    );
    let legacy = Router::new()
        .route("/sse", get(sse::open))
        .route("/message", post(sse::post))
        .with_state(sse::SseState::new(manager, options.max_sse_sessions, ct));
    let mcp = Router::new()
        .fallback_service(mcp)
        .layer(middleware::from_fn_with_state(
            json_first,
            json_first::prefer_json,
        ))
        .layer(middleware::from_fn_with_state(
            options.max_body_bytes,
            gate::refuse_unknown_methods,
        ));
    Router::new()
        .nest("/mcp", mcp)
        .merge(legacy)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(middleware::from_fn_with_state(guard, guard::guard))
}

/// Serve until `ct` is cancelled.
pub async fn serve_http(
    manager: Arc<Manager>,
    options: HttpOptions,
    ct: CancellationToken,
) -> anyhow::Result<()> {
    if !options.addr.ip().is_loopback()
        && options
            .token
            .as_ref()
            .is_none_or(|t| t.expose_secret().is_empty())
    {
        bail!(
            "refusing to serve on {} without a token: set PLUGBOARD_HTTP_TOKEN (clients then send \
             `Authorization: Bearer <token>`), or bind 127.0.0.1",
            options.addr
        );
    }
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .with_context(|| format!("cannot listen on {}", options.addr))?;
    let local = listener.local_addr()?;
    // Small JSON-RPC messages must not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let app = router(manager, &options, ct.clone());
    // Tests and scripts read this line to learn the port when asked for port 0.
    eprintln!(
        "plugboard: listening on http://{local} (Streamable HTTP at /mcp, legacy SSE at /sse)"
    );
    tracing::info!(addr = %local, "HTTP server listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(ct.cancelled_owned())
        .await
        .context("HTTP server failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_the_options_has_no_token() {
        let options = HttpOptions {
            addr: ([127, 0, 0, 1], 0).into(),
            token: Some(SecretString::from("tok-options-5a4b3c")),
            allowed_hosts: vec![],
            allowed_origins: vec![],
            max_body_bytes: 1024,
            max_sse_sessions: 1,
        };
        let debug = format!("{options:?}");
        assert!(!debug.contains("tok-options-5a4b3c"), "{debug}");
        assert!(debug.contains("REDACTED"), "{debug}");
    }
}
