//! `GET /api/v1/events`: what happens on the server as server-sent events — calls started
//! and finished (from every face), plugin status changes, list changes. The dashboard's live
//! log reads it; so can any script.
//!
//! Events carry names, outcomes and durations, never arguments or results: a call's data
//! stays with its caller.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    extract::State,
    response::sse::{Event as SseEvent, KeepAlive, Sse},
};
use futures::{Stream, StreamExt, stream};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};
use utoipa::ToSchema;

use super::Ops;
use crate::plugin::{CallFinished, CallObserver, CallStarted, Change, Manager};

/// One thing that happened.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A call passed the name check and is about to run.
    CallStarted {
        tool: String,
        plugin: String,
        /// `stdio`, `http`, `sse`, `cli`, `agent`, `rest`, `dashboard`.
        face: String,
        /// When (RFC 3339).
        at: String,
    },
    /// A call ended, however it ended.
    CallFinished {
        tool: String,
        /// Empty when no plugin was reached (an unknown tool).
        plugin: String,
        face: String,
        at: String,
        duration_ms: f64,
        /// `ok`, `tool_error`, `unknown_tool`, `invalid_arguments`, `timeout`, `cancelled`,
        /// `panic`, `unavailable`, `failed`.
        outcome: String,
        /// What the caller was told when the call failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A plugin's status changed (it went down, came back, was reloaded).
    PluginStatus { plugin: String, status: String },
    /// The published tools, resources or prompts changed: `tools`, `resources`, `prompts`.
    ListChanged { list: String },
    /// This subscriber fell behind and missed `missed` events.
    Lagged { missed: u64 },
}

/// The bus the call observer writes to and every `events` stream reads from.
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Events {
    /// A bus observing every call of `manager`.
    pub fn observe(manager: &Manager) -> Self {
        let (tx, _) = broadcast::channel(1024);
        let events = Self { tx };
        manager.observers().add(Arc::new(events.clone()));
        events
    }

    fn send(&self, event: impl FnOnce() -> Event) {
        // Nobody listening (the common case): the event is not even built.
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(event());
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl CallObserver for Events {
    fn started(&self, call: &CallStarted<'_>) {
        self.send(|| Event::CallStarted {
            tool: call.tool.to_owned(),
            plugin: call.plugin.to_owned(),
            face: call.caller.face.as_str().to_owned(),
            at: now(),
        });
    }

    fn finished(&self, call: &CallFinished<'_>) {
        self.send(|| Event::CallFinished {
            tool: call.tool.to_owned(),
            plugin: call.plugin.to_owned(),
            face: call.caller.face.as_str().to_owned(),
            at: now(),
            duration_ms: call.duration.as_secs_f64() * 1e3,
            outcome: call.outcome.as_str().to_owned(),
            error: call.error.map(str::to_owned),
        });
    }
}

/// The events of the calls and of the manager's changes, as one stream.
fn events(ops: &Ops) -> impl Stream<Item = Event> + Send + use<> {
    let calls = BroadcastStream::new(ops.events.tx.subscribe()).map(|item| match item {
        Ok(event) => event,
        Err(BroadcastStreamRecvError::Lagged(missed)) => Event::Lagged { missed },
    });
    let manager = ops.manager.clone();
    let changes = BroadcastStream::new(ops.manager.subscribe()).filter_map(move |item| {
        let event = match item {
            Ok(Change::Tools) => Some(list("tools")),
            Ok(Change::Resources) => Some(list("resources")),
            Ok(Change::Prompts) => Some(list("prompts")),
            Ok(Change::Status(plugin)) => {
                let status = manager
                    .statuses()
                    .into_iter()
                    .find(|s| s.name == plugin)
                    .map(|s| s.status)
                    .unwrap_or_else(|| "removed".into());
                Some(Event::PluginStatus { plugin, status })
            }
            Ok(Change::ResourceUpdated(_) | Change::Log(_)) => None,
            Err(BroadcastStreamRecvError::Lagged(missed)) => Some(Event::Lagged { missed }),
        };
        futures::future::ready(event)
    });
    stream::select(calls, changes)
}

fn list(which: &str) -> Event {
    Event::ListChanged { list: which.into() }
}

/// Server-sent events, one per thing that happens (`event:` is the event's `type`).
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    responses(
        (status = 200, description = "A stream of server-sent events; each `data:` is one `Event` as JSON, its `event:` the event's type",
         content_type = "text/event-stream", body = Event),
    )
)]
pub async fn stream_events(
    State(ops): State<Ops>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let stream = events(&ops)
        .take_until(ops.ct.clone().cancelled_owned())
        .map(|event| {
            let name = match &event {
                Event::CallStarted { .. } => "call_started",
                Event::CallFinished { .. } => "call_finished",
                Event::PluginStatus { .. } => "plugin_status",
                Event::ListChanged { .. } => "list_changed",
                Event::Lagged { .. } => "lagged",
            };
            let sse = SseEvent::default()
                .event(name)
                .json_data(&event)
                .unwrap_or_else(|_| SseEvent::default().comment("unencodable event"));
            Ok(sse)
        });
    // A comment every 15 s keeps proxies from closing a quiet stream.
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
