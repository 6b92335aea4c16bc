//! The transports: stdio, and on one HTTP port Streamable HTTP (`/mcp`) plus the legacy
//! HTTP+SSE transport (`GET /sse`, `POST /message`).

mod accept;
mod decode;
mod gate;
mod guard;
mod handler;
mod http;
mod json_first;
mod sessions;
mod sse;
mod status;

use std::sync::Arc;

use rmcp::{ServiceExt, service::ServerInitializeError, transport::async_rw::AsyncRwTransport};

pub use handler::McpHandler;
pub use http::{DEFAULT_MAX_SSE_SESSIONS, HttpOptions, serve_http};
pub use sessions::SessionLimits;

use crate::plugin::Manager;

/// Serve one client over stdin/stdout until it closes the stream.
pub async fn serve_stdio(manager: Arc<Manager>) -> anyhow::Result<()> {
    let (stdin, stdout) = rmcp::transport::stdio_pipes();
    let transport = gate::MethodGate::new(AsyncRwTransport::new_server(stdin, stdout));
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
