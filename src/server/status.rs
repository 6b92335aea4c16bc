//! `GET /health`: whether the server is up, and what it holds — connections, sessions per
//! transport, memory — so that an operator (and the soak bench) can see it is bounded.

use std::sync::Arc;

use axum::{Json, extract::State};
use serde_json::{Value, json};
use tokio::{sync::Semaphore, time::Instant};

use super::{sessions::Sessions, sse::SseState};

#[derive(Clone)]
pub struct Status {
    sessions: Arc<Sessions>,
    sse: SseState,
    connections: Arc<Semaphore>,
    max_connections: usize,
    started: Instant,
}

impl Status {
    pub fn new(sessions: Arc<Sessions>, sse: SseState, connections: Arc<Semaphore>) -> Self {
        Self {
            sessions,
            max_connections: connections.available_permits(),
            sse,
            connections,
            started: Instant::now(),
        }
    }
}

pub async fn health(State(status): State<Status>) -> Json<Value> {
    let sse_open = status
        .sse
        .max_sessions
        .saturating_sub(status.sse.slots.available_permits());
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": status.started.elapsed().as_secs(),
        "connections": {
            "open": status.max_connections.saturating_sub(status.connections.available_permits()),
            "max": status.max_connections,
        },
        "sessions": {
            "streamable_http": status.sessions.counts(),
            "legacy_sse": { "open": sse_open, "max": status.sse.max_sessions },
        },
        "calls": {
            "in_flight": status.sse.manager.config().max_calls
                .saturating_sub(status.sse.manager.call_slots().available_permits()),
            "max": status.sse.manager.config().max_calls,
        },
        "memory": { "rss_bytes": rss_bytes() },
        // Every task alive on the runtime: sessions, calls, connections, sweepers.
        "tasks": tokio::runtime::Handle::current().metrics().num_alive_tasks(),
    }))
}

/// Resident memory of this process, where the system says (Linux: `VmRSS`).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}
