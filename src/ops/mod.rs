//! The operations face on the HTTP port: the REST API (`/api/v1`) with its OpenAPI document,
//! the live event stream, the health checks for load balancers, the metrics, and the web
//! dashboard that shows them. Behind the same Host/Origin/token guard as `/mcp` (the
//! dashboard's page and assets load without the token); every call goes through the
//! manager's call pipeline.

pub mod api;
pub mod dashboard;
pub mod events;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod problem;
mod run;

use std::sync::Arc;

use axum::{Router, routing::get};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::plugin::Manager;
pub use events::Events;
pub use problem::Problem;

/// What the handlers share.
#[derive(Clone)]
pub struct Ops {
    pub manager: Arc<Manager>,
    pub events: Events,
    /// Cancelled when the server is told to stop: readiness turns false.
    pub stopping: CancellationToken,
    /// Cancelled when streams end (after the drain and grace periods).
    pub ct: CancellationToken,
    /// The generated part of the OpenAPI document.
    openapi: Arc<serde_json::Value>,
    /// The process's Prometheus recorder, when it could be installed.
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Sets the gauges only the server knows (sessions, connections) before a scrape.
    gauges: Gauges,
}

/// See [`Ops::gauges`].
pub type Gauges = Arc<dyn Fn() + Send + Sync>;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "plugboard",
        description = "plugboard's REST API: the plugins, their tools and the model providers of one \
                       plugboard server, called through the same pipeline as MCP's `tools/call`. \
                       Errors are problem documents (RFC 9457). Send `Authorization: Bearer <token>` \
                       when the server has a token (PLUGBOARD_HTTP_TOKEN).",
        license(name = "MIT OR Apache-2.0"),
    ),
    tags(
        (name = "plugins", description = "What is loaded and how it is doing"),
        (name = "tools", description = "The published tools, and calling them"),
        (name = "agents", description = "Model providers: one answer, or several and a synthesis"),
        (name = "events", description = "What happens on the server, live"),
        (name = "health", description = "For load balancers and orchestrators"),
    )
)]
struct ApiDoc;

/// The routes of this face, with their state. `gauges` sets the server's own gauges before
/// each scrape of `/metrics`; without `with_metrics` nothing is recorded (`/metrics` is 404).
pub fn router(
    manager: Arc<Manager>,
    stopping: CancellationToken,
    ct: CancellationToken,
    gauges: Gauges,
    with_metrics: bool,
) -> Router {
    let metrics = if with_metrics {
        metrics::install()
    } else {
        None
    };
    if metrics.is_some() {
        metrics::observe(&manager);
    }
    let (routes, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(api::list_plugins))
        .routes(routes!(api::get_plugin))
        .routes(routes!(api::reload_plugin))
        .routes(routes!(api::list_tools))
        .routes(routes!(api::get_tool))
        .routes(routes!(api::call_tool))
        .routes(routes!(api::providers))
        .routes(routes!(api::ask))
        .routes(routes!(api::consensus))
        .routes(routes!(api::batch))
        .routes(routes!(events::stream_events))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .split_for_parts();
    let mut doc = serde_json::to_value(&doc).unwrap_or_default();
    // The document itself, documented by hand: it is the one route utoipa does not see.
    doc["paths"]["/api/v1/openapi.json"] = serde_json::json!({
        "get": {
            "tags": ["tools"],
            "operationId": "openapi",
            "summary": "This document",
            "responses": { "200": { "description": "The OpenAPI 3.1 document of this server",
                "content": { "application/json": { "schema": { "type": "object" } } } } }
        }
    });
    let ops = Ops {
        events: Events::observe(&manager),
        manager,
        stopping,
        ct,
        openapi: Arc::new(doc),
        metrics,
        gauges,
    };
    routes
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/metrics", get(metrics::render))
        .route("/", get(dashboard::page))
        .route("/assets/{name}", get(dashboard::asset))
        .with_state(ops)
}
