//! `plugboard serve`: MCP over stdio, or over HTTP with `--http`.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use super::clean;
use crate::{plugin::Manager, server};

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Do not watch the plugins folder and `.env` for changes (reload with SIGHUP only).
    #[arg(long, env = "PLUGBOARD_NO_WATCH")]
    no_watch: bool,
    /// Do not record metrics: no `/metrics` (it answers 404), nothing counted on the hot path.
    #[arg(long, env = "PLUGBOARD_NO_METRICS")]
    no_metrics: bool,
    /// Serve HTTP on this address instead of stdio: Streamable HTTP at /mcp, legacy SSE at /sse.
    #[arg(long, env = "PLUGBOARD_HTTP", value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Bearer token HTTP clients must send; required off loopback.
    // A secret type, so that `Debug` of these arguments cannot print it.
    #[arg(long, env = "PLUGBOARD_HTTP_TOKEN", hide_env_values = true, value_parser = secret)]
    token: Option<SecretString>,
    /// Extra Host names HTTP requests may use (comma-separated; `*` for any).
    #[arg(long, env = "PLUGBOARD_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Extra browser origins allowed (comma-separated, e.g. `https://app.example.com`).
    #[arg(long, env = "PLUGBOARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Largest message accepted, in bytes: an HTTP request body, or one line on stdio.
    #[arg(long, env = "PLUGBOARD_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Most legacy SSE sessions (GET /sse) open at once; one more is answered 503 until a
    /// session closes.
    #[arg(long, env = "PLUGBOARD_MAX_SSE_SESSIONS", default_value_t = server::DEFAULT_MAX_SSE_SESSIONS)]
    max_sse_sessions: usize,
    /// Most Streamable HTTP sessions open at once; one more `initialize` is answered 503.
    #[arg(long, env = "PLUGBOARD_MAX_SESSIONS", default_value_t = server::SessionLimits::default().max)]
    max_sessions: usize,
    /// Most Streamable HTTP sessions open at once from one client address.
    #[arg(long, env = "PLUGBOARD_MAX_SESSIONS_PER_CLIENT", default_value_t = server::SessionLimits::default().per_client)]
    max_sessions_per_client: usize,
    /// Seconds a Streamable HTTP session may sit unused (no request in flight, no stream
    /// open) before it is closed; its id then gets 404 and the client initializes again.
    #[arg(long, env = "PLUGBOARD_SESSION_IDLE_SECS", default_value_t = server::SessionLimits::default().idle.as_secs())]
    session_idle_secs: u64,
    /// Most HTTP connections open at once; one more is answered 503 and closed.
    #[arg(long, env = "PLUGBOARD_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Seconds allowed for a request's headers, from when the connection opens or its last
    /// response ends: a connection that sends nothing is closed after this.
    #[arg(long, env = "PLUGBOARD_HEADER_TIMEOUT_SECS", default_value_t = 15)]
    header_timeout_secs: u64,
    /// Seconds allowed for a request's body, after its headers; slower is answered 408.
    #[arg(long, env = "PLUGBOARD_BODY_TIMEOUT_SECS", default_value_t = 30)]
    body_timeout_secs: u64,
    /// Sign-in for remote clients: accept access tokens (JWTs) from this OAuth issuer
    /// (compared exactly with a token's `iss`), besides the static token.
    #[arg(
        long,
        env = "PLUGBOARD_OAUTH_ISSUER",
        value_name = "URL",
        requires = "oauth_resource"
    )]
    oauth_issuer: Option<String>,
    /// This server's canonical URL as clients reach it (`https://mcp.example.com/mcp`): a
    /// token's audience must name it.
    #[arg(
        long,
        env = "PLUGBOARD_OAUTH_RESOURCE",
        value_name = "URL",
        requires = "oauth_issuer"
    )]
    oauth_resource: Option<String>,
    /// The issuer's JWKS, when its metadata (`/.well-known/oauth-authorization-server` or
    /// `openid-configuration`) is not to be asked.
    #[arg(long, env = "PLUGBOARD_OAUTH_JWKS_URL", value_name = "URL")]
    oauth_jwks_url: Option<String>,
    /// What each scope opens, comma-separated `scope=toolset` (`files=files`,
    /// `gh.read=github:read` for the read-only tools, `admin=*`); none: a token opens all.
    #[arg(long, env = "PLUGBOARD_OAUTH_SCOPES", value_delimiter = ',')]
    oauth_scopes: Vec<String>,
    /// Scopes every token must carry (comma-separated).
    #[arg(long, env = "PLUGBOARD_OAUTH_REQUIRED_SCOPES", value_delimiter = ',')]
    oauth_required_scopes: Vec<String>,
    /// Seconds the issuer's keys are used before they are read again (an unknown key id
    /// reads them sooner).
    #[arg(long, env = "PLUGBOARD_OAUTH_JWKS_REFRESH_SECS", default_value_t = server::oauth::DEFAULT_JWKS_REFRESH.as_secs())]
    oauth_jwks_refresh_secs: u64,
    /// Seconds to go on serving after SIGTERM while `/health/ready` answers 503, so that a
    /// load balancer moves traffic away before connections close (a second signal stops at
    /// once).
    #[arg(long, env = "PLUGBOARD_DRAIN_SECS", default_value_t = 0.0)]
    drain_secs: f64,
    /// Then, seconds calls in flight may take to finish before streams and sessions end.
    #[arg(long, env = "PLUGBOARD_SHUTDOWN_GRACE_SECS", default_value_t = 10.0)]
    shutdown_grace_secs: f64,
}

/// A number of seconds a user gave, as a duration (`name` says which, when it is no number
/// of seconds).
fn seconds(value: f64, name: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .with_context(|| format!("{name} must be a number of seconds, 0 or more (got {value})"))
}

/// The OAuth resource server the `--oauth-*` flags configure, if they do.
fn oauth(args: &ServeArgs) -> anyhow::Result<Option<Arc<server::OAuth>>> {
    let (Some(issuer), Some(resource)) = (&args.oauth_issuer, &args.oauth_resource) else {
        return Ok(None);
    };
    let mut config = server::OAuthConfig::new(issuer, resource)
        .and_then(|c| c.with_scopes(&args.oauth_scopes))
        .and_then(|c| c.with_required_scopes(&args.oauth_required_scopes))
        .map_err(anyhow::Error::msg)?
        .with_jwks_refresh(Duration::from_secs(args.oauth_jwks_refresh_secs));
    if let Some(jwks) = &args.oauth_jwks_url {
        config = config.with_jwks_url(jwks).map_err(anyhow::Error::msg)?;
    }
    server::OAuth::new(config)
        .map(Some)
        .map_err(anyhow::Error::msg)
}

fn secret(value: &str) -> Result<SecretString, Infallible> {
    Ok(SecretString::from(value))
}

pub(super) async fn run(
    manager: Arc<Manager>,
    args: ServeArgs,
) -> anyhow::Result<std::process::ExitCode> {
    // Served from a worker thread rather than from the thread that started the runtime, whose
    // future is woken through a futex of its own: one thread hop less per request.
    match tokio::spawn(serve_on_worker(manager, args)).await {
        Ok(served) => served.map(|()| std::process::ExitCode::SUCCESS),
        Err(e) => Err(anyhow::anyhow!("the server stopped: {e}")),
    }
}

async fn serve_on_worker(manager: Arc<Manager>, args: ServeArgs) -> anyhow::Result<()> {
    let ct = CancellationToken::new();
    spawn_signal_handlers(manager.clone(), ct.clone())?;
    if !args.no_watch {
        super::watch::spawn(manager.clone());
    }
    match args.http {
        None => {
            tracing::info!(tools = manager.tools().len(), "serving MCP on stdio");
            tokio::select! {
                served = server::serve_stdio(manager, args.max_body_bytes) => served,
                _ = ct.cancelled() => Ok(()),
            }
        }
        Some(addr) => {
            if let Some(token) = &args.token {
                crate::net::secret::hold(token.expose_secret());
            }
            let oauth = oauth(&args)?;
            let options = server::HttpOptions {
                addr,
                token: args.token.filter(|t| !t.expose_secret().is_empty()),
                allowed_hosts: clean(&args.allowed_hosts),
                allowed_origins: clean(&args.allowed_origins),
                max_body_bytes: args.max_body_bytes,
                max_sse_sessions: args.max_sse_sessions,
                sessions: server::SessionLimits {
                    max: args.max_sessions,
                    per_client: args.max_sessions_per_client,
                    idle: Duration::from_secs(args.session_idle_secs.max(1)),
                },
                max_connections: args.max_connections,
                header_timeout: Duration::from_secs(args.header_timeout_secs.max(1)),
                body_timeout: Duration::from_secs(args.body_timeout_secs.max(1)),
                metrics: !args.no_metrics,
                oauth,
                drain: seconds(args.drain_secs, "--drain-secs")?,
                grace: seconds(args.shutdown_grace_secs, "--shutdown-grace-secs")?,
            };
            server::serve_http(manager, options, ct).await
        }
    }
}

/// SIGHUP reloads the plugins; SIGINT/SIGTERM stop the HTTP server gracefully.
fn spawn_signal_handlers(manager: Arc<Manager>, ct: CancellationToken) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        let stopping = manager.clone();
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading plugins");
                manager.reload().await;
                tracing::info!(tools = manager.tools().len(), "plugins reloaded");
            }
        });
        let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("shutting down");
            ct.cancel();
            // A second signal: whoever sent it does not want to wait for the drain.
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::warn!("second signal: stopping now");
            // The plugins still stop (no MCP server it started is left behind).
            stopping.shutdown().await;
            std::process::exit(1);
        });
    }
    #[cfg(not(unix))]
    {
        let _ = manager;
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            ct.cancel();
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn debug_of_the_serve_arguments_has_no_token() {
        let parsed = Wrapper::try_parse_from(["serve", "--token", "tok-debug-9f8e7d"])
            .expect("valid arguments");
        assert_eq!(
            parsed
                .serve
                .token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
            Some("tok-debug-9f8e7d".to_owned())
        );
        let debug = format!("{parsed:?}");
        assert!(!debug.contains("tok-debug-9f8e7d"), "{debug}");
        assert!(debug.contains("REDACTED"), "{debug}");
    }
}
