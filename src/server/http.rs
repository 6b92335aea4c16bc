//! One HTTP port: Streamable HTTP at `/mcp` (both protocol generations) and the legacy
//! HTTP+SSE transport at `/sse` + `/message`, behind the Host/Origin/token guard.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware,
    routing::{get, post},
};
use rmcp::transport::{
    StreamableHttpServerConfig, StreamableHttpService,
    streamable_http_server::session::local::LocalSessionManager,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{
    McpHandler, accept, gate, guard, json_first,
    sessions::{self, SessionLimits, Sessions},
    sse, status,
};
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
    /// Streamable HTTP sessions: caps and idle expiry.
    pub sessions: SessionLimits,
    /// Connections open at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Time for a request's headers, counted from when the connection opens or its previous
    /// response ends: a connection that sends nothing, or its headers too slowly, is closed.
    pub header_timeout: Duration,
    /// Time for a request's body, from the end of its headers.
    pub body_timeout: Duration,
    /// Record metrics and serve `/metrics`.
    pub metrics: bool,
    /// Accept the identity provider's access tokens too, and serve the protected resource
    /// metadata (`--oauth-issuer`, …).
    pub oauth: Option<Arc<super::OAuth>>,
    /// Once told to stop: how long to go on serving while reporting not-ready, so that a
    /// load balancer's health check moves traffic away first.
    pub drain: Duration,
    /// Then: how long calls in flight may take to finish before streams and sessions end.
    pub grace: Duration,
}

impl HttpOptions {
    /// The defaults, on `addr`.
    pub fn on(addr: SocketAddr) -> Self {
        Self {
            addr,
            token: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_body_bytes: 4 * 1024 * 1024,
            max_sse_sessions: DEFAULT_MAX_SSE_SESSIONS,
            sessions: SessionLimits::default(),
            max_connections: 1024,
            header_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(30),
            metrics: true,
            oauth: None,
            drain: Duration::ZERO,
            grace: Duration::from_secs(10),
        }
    }
}

/// How long a finished request's stream can still be resumed.
pub const COMPLETED_STREAM_TTL: Duration = Duration::from_secs(10);

/// The app on the port, and what its status reports. `stopping`: the server was told to
/// stop (readiness turns false); `ct`: streams and sessions end.
pub fn router(
    manager: Arc<Manager>,
    options: &HttpOptions,
    connections: Arc<Semaphore>,
    stopping: CancellationToken,
    ct: CancellationToken,
) -> Router {
    let mut rmcp_sessions = LocalSessionManager::default();
    // Idle sessions are closed by `Sessions`, which knows when one has a stream open or a
    // request in flight; rmcp's own timer would end a session listening on a quiet stream.
    rmcp_sessions.session_config.keep_alive = None;
    // A finished request's stream is kept so a client that lost it can resume (SEP-1699);
    // clients are told to come back within a second (`sse_retry` below). rmcp keeps them a
    // minute, which under load holds every answer of the last minute: 50 clients calling
    // flat out grew RSS 37 → 86 MB. Ten seconds covers a reconnect with margin.
    rmcp_sessions.session_config.completed_cache_ttl = COMPLETED_STREAM_TTL;
    let rmcp_sessions = Arc::new(rmcp_sessions);
    let sessions = Sessions::new(rmcp_sessions.clone(), options.sessions);
    sessions.spawn_sweeper(ct.child_token());
    let config = StreamableHttpServerConfig::default()
        .with_json_response(true)
        // The guard checks Host and Origin for every endpoint, /mcp included.
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_max_request_body_bytes(options.max_body_bytes)
        // How soon a client reconnects to a stream that ended early (SEP-1699).
        .with_sse_retry(Some(Duration::from_secs(1)))
        .with_cancellation_token(ct.child_token());
    let json_first = json_first::JsonFirst {
        streams: json_first::Streams::default(),
        sessions: rmcp_sessions.clone(),
        keep_alive: config.sse_keep_alive,
        ct: ct.child_token(),
    };
    let factory_manager = manager.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(McpHandler::new(factory_manager.clone()).on(Face::Http)),
        rmcp_sessions,
        config,
    );
    let guard = guard::Guard::new(
        options.addr.ip(),
        &options.allowed_hosts,
        &options.allowed_origins,
        options.token.as_ref(),
    )
    .with_oauth(options.oauth.clone());
    let sse = sse::SseState::new(manager.clone(), options.max_sse_sessions, ct.clone());
    let gauges = {
        let (sessions, sse, connections) = (sessions.clone(), sse.clone(), connections.clone());
        let max_connections = connections.available_permits();
        Arc::new(move || {
            let open = sessions.counts().open;
            metrics::gauge!("plugboard_sessions", "transport" => "streamable_http")
                .set(open as f64);
            let legacy = sse
                .max_sessions
                .saturating_sub(sse.slots.available_permits());
            metrics::gauge!("plugboard_sessions", "transport" => "legacy_sse").set(legacy as f64);
            let conns = max_connections.saturating_sub(connections.available_permits());
            metrics::gauge!("plugboard_http_connections").set(conns as f64);
        })
    };
    let step_up = options
        .oauth
        .clone()
        .map(|oauth| super::oauth::step_up::StepUp {
            oauth,
            manager: manager.clone(),
        });
    let ops = crate::ops::router(manager, stopping, ct.child_token(), gauges, options.metrics);
    let status = status::Status::new(sessions.clone(), sse.clone(), connections);
    let legacy = Router::new()
        .route("/sse", get(sse::open))
        .route("/message", post(sse::post))
        .with_state(sse);
    let mcp = Router::new()
        .fallback_service(mcp)
        .layer(middleware::from_fn_with_state(
            json_first,
            json_first::prefer_json,
        ))
        .layer(middleware::from_fn_with_state(sessions, sessions::limit))
        .layer(middleware::from_fn(gate::refuse_unknown_methods));
    let body = gate::BodyLimits {
        max_bytes: options.max_body_bytes,
        timeout: options.body_timeout,
    };
    let mut app = Router::new()
        .nest("/mcp", mcp)
        .merge(legacy)
        .merge(ops)
        .route("/health", get(status::health).with_state(status));
    if let Some(step_up) = step_up {
        app = app
            .merge(super::oauth::routes(step_up.oauth.clone()))
            .layer(middleware::from_fn_with_state(
                step_up,
                super::oauth::step_up::refuse_out_of_scope,
            ));
    }
    app.layer(middleware::from_fn_with_state(body, gate::read_body))
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(middleware::from_fn_with_state(guard, guard::guard))
}

/// Serve until `ct` is cancelled, then stop gracefully: report not-ready for
/// [`HttpOptions::drain`] while still serving, stop accepting connections (requests in flight
/// go on, idle connections close), give calls in flight up to [`HttpOptions::grace`], then end
/// streams and sessions and return.
pub async fn serve_http(
    manager: Arc<Manager>,
    options: HttpOptions,
    ct: CancellationToken,
) -> anyhow::Result<()> {
    if !options.addr.ip().is_loopback()
        && options.oauth.is_none()
        && options
            .token
            .as_ref()
            .is_none_or(|t| t.expose_secret().is_empty())
    {
        bail!(
            "refusing to serve on {} without a token: set PLUGBOARD_HTTP_TOKEN (clients then send \
             `Authorization: Bearer <token>`) or sign-in with PLUGBOARD_OAUTH_ISSUER, or bind \
             127.0.0.1",
            options.addr
        );
    }
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .with_context(|| format!("cannot listen on {}", options.addr))?;
    let local = listener.local_addr()?;
    let connections = Arc::new(Semaphore::new(
        options.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let accepting = CancellationToken::new();
    let streams = CancellationToken::new();
    if let Some(oauth) = &options.oauth {
        oauth.warm_up();
    }
    let app = router(
        manager.clone(),
        &options,
        connections.clone(),
        ct.clone(),
        streams.clone(),
    );
    tokio::spawn(stop_gracefully(
        manager,
        (options.drain, options.grace),
        ct,
        accepting.clone(),
        streams,
    ));
    // Tests and scripts read this line to learn the port when asked for port 0.
    eprintln!(
        "plugboard: listening on http://{local} (Streamable HTTP at /mcp, legacy SSE at /sse)"
    );
    tracing::info!(addr = %local, "HTTP server listening");
    accept::serve(listener, app, &options, connections, accepting).await;
    Ok(())
}

/// The steps of a graceful stop, from `ct` (told to stop) to `streams` (end them).
async fn stop_gracefully(
    manager: Arc<Manager>,
    (drain, grace): (Duration, Duration),
    ct: CancellationToken,
    accepting: CancellationToken,
    streams: CancellationToken,
) {
    ct.cancelled().await;
    if !drain.is_zero() {
        tracing::info!(
            drain_s = drain.as_secs_f64(),
            "stopping: reporting not-ready while still serving"
        );
        tokio::time::sleep(drain).await;
    }
    accepting.cancel();
    let max = manager.config().max_calls.clamp(1, Semaphore::MAX_PERMITS);
    let in_flight = || max.saturating_sub(manager.call_slots().available_permits());
    let deadline = tokio::time::Instant::now() + grace;
    if in_flight() > 0 {
        tracing::info!(
            calls = in_flight(),
            grace_s = grace.as_secs_f64(),
            "stopping: letting calls in flight finish"
        );
    }
    while in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if in_flight() > 0 {
        tracing::warn!(
            calls = in_flight(),
            "stopping with calls still in flight after the grace period"
        );
    }
    streams.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_the_options_has_no_token() {
        let options = HttpOptions {
            token: Some(SecretString::from("tok-options-5a4b3c")),
            ..HttpOptions::on(([127, 0, 0, 1], 0).into())
        };
        let debug = format!("{options:?}");
        assert!(!debug.contains("tok-options-5a4b3c"), "{debug}");
        assert!(debug.contains("REDACTED"), "{debug}");
    }
}
