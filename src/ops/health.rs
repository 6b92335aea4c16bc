//! `/health/live` and `/health/ready`, for load balancers and orchestrators.
//!
//! Live: the process answers. Ready: every enabled plugin has settled (started, or failed
//! for a reason it states) and no reload is under way, and the server is not stopping. The
//! body lists each plugin's state either way.

use axum::{Json, extract::State, http::StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use super::Ops;

#[derive(Debug, Serialize, ToSchema)]
pub struct Live {
    /// Always `live`.
    pub status: &'static str,
    pub version: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready`, `reloading` or `stopping`.
    pub status: &'static str,
    pub plugins: Vec<PluginState>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PluginState {
    pub name: String,
    /// `ready`, `disabled`, `unconfigured (set X)`, `failed (why)`, `down (why)`, …
    pub status: String,
}

/// The process is up and answering.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, body = Live)))]
pub async fn live() -> Json<Live> {
    Json(Live {
        status: "live",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Whether to send traffic here: 200 when every enabled plugin has settled, 503 while
/// plugins are being (re)loaded or the server is stopping.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, body = Ready, description = "Ready: every plugin has settled"),
        (status = 503, body = Ready, description = "Not ready: reloading or stopping"),
    ))]
pub async fn ready(State(ops): State<Ops>) -> (StatusCode, Json<Ready>) {
    let status = if ops.stopping.is_cancelled() || ops.ct.is_cancelled() {
        "stopping"
    } else if ops.manager.is_reloading() {
        "reloading"
    } else {
        "ready"
    };
    let plugins = ops
        .manager
        .statuses()
        .into_iter()
        .map(|p| PluginState {
            name: p.name,
            status: p.status,
        })
        .collect();
    let code = if status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(Ready { status, plugins }))
}
