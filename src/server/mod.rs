//! The transports: stdio, and on one HTTP port Streamable HTTP (`/mcp`) plus the legacy
//! HTTP+SSE transport (`GET /sse`, `POST /message`).

mod accept;
pub(crate) mod decode;
mod discovery;
pub(crate) mod gate;
pub(crate) mod guard;
mod handler;
mod http;
mod json_first;
pub(crate) mod lines;
pub mod oauth;
mod sessions;
mod sse;
mod status;

use std::sync::Arc;

use rmcp::{ServiceExt, service::ServerInitializeError};

pub use handler::McpHandler;
pub use http::{DEFAULT_MAX_SSE_SESSIONS, HttpOptions, serve_http};
pub use oauth::{OAuth, OAuthConfig};
pub use sessions::SessionLimits;

use crate::plugin::Manager;

/// Serve one client over stdin/stdout until it closes its end and every request it sent
/// has been answered. `max_line` bounds one message (one line).
pub async fn serve_stdio(manager: Arc<Manager>, max_line: usize) -> anyhow::Result<()> {
    let (stdin, stdout) = rmcp::transport::stdio_pipes();
    serve_lines(manager, stdin, stdout, max_line).await
}

/// [`serve_stdio`] over any pair of streams (tests use an in-memory duplex).
pub async fn serve_lines<R, W>(
    manager: Arc<Manager>,
    read: R,
    write: W,
    max_line: usize,
) -> anyhow::Result<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let transport = gate::MethodGate::new(lines::Lines::new(read, write, max_line));
    let service = match McpHandler::new(manager)
        .on(crate::plugin::Face::Stdio)
        .serve(transport)
        .await
    {
        Ok(service) => service,
        // The client went away before initializing: nothing to serve, not a failure.
        Err(ServerInitializeError::ConnectionClosed(_)) => {
            tracing::debug!("stdin closed before initialize");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let reason = service.waiting().await?;
    tracing::debug!(?reason, "stdio session ended");
    Ok(())
}
