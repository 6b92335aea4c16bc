//! The legacy HTTP+SSE transport (protocol 2024-11-05), which rmcp no longer ships: a client
//! opens `GET /sse`, learns its `POST /message?sessionId=…` address from the first event, and
//! receives every server message as an SSE `message` event.

use std::{collections::HashMap, convert::Infallible, sync::Arc};

use axum::{
    body::Bytes,
    extract::{Query, State},
    http::StatusCode,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{Stream, StreamExt, stream};
use rmcp::{
    ServiceExt,
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    transport::sink_stream::SinkStreamTransport,
};
use tokio::sync::{RwLock, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, PollSender};

use super::{
    McpHandler,
    decode::{self, Decoded},
    gate::MethodGate,
};
use crate::plugin::{Face, Manager};

#[derive(Clone)]
pub struct SseState {
    pub manager: Arc<Manager>,
    /// Open sessions: where to deliver the messages POSTed for each.
    pub sessions: Arc<RwLock<HashMap<String, mpsc::Sender<ClientJsonRpcMessage>>>>,
    /// One permit per open session, so that a client opening streams in a loop cannot grow
    /// the server without bound; a session gives its permit back when its stream closes.
    pub slots: Arc<Semaphore>,
    /// The number of permits, for the refusal's text.
    pub max_sessions: usize,
    /// Cancelled on server shutdown: ends every session.
    pub ct: CancellationToken,
}

impl SseState {
    pub fn new(manager: Arc<Manager>, max_sessions: usize, ct: CancellationToken) -> Self {
        Self {
            manager,
            sessions: Arc::default(),
            slots: Arc::new(Semaphore::new(max_sessions.min(Semaphore::MAX_PERMITS))),
            max_sessions,
            ct,
        }
    }
}

pub async fn open(
    State(state): State<SseState>,
    principal: Option<axum::Extension<crate::plugin::Principal>>,
) -> Response {
    let Ok(slot) = state.slots.clone().try_acquire_owned() else {
        tracing::warn!(
            limit = state.max_sessions,
            "legacy SSE session refused: too many open"
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many legacy SSE sessions open (the limit is {}): close one, raise \
                 --max-sse-sessions (PLUGBOARD_MAX_SSE_SESSIONS), or use Streamable HTTP at /mcp",
                state.max_sessions
            ),
        )
            .into_response();
    };
    let principal = principal.map(|axum::Extension(p)| p);
    session(state, slot, principal).await.into_response()
}

async fn session(
    state: SseState,
    slot: tokio::sync::OwnedSemaphorePermit,
    principal: Option<crate::plugin::Principal>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (to_server, from_client) = mpsc::channel::<ClientJsonRpcMessage>(64);
    let (to_client, from_server) = mpsc::channel::<ServerJsonRpcMessage>(64);
    state.sessions.write().await.insert(id.clone(), to_server);

    let transport = MethodGate::new(SinkStreamTransport::new(
        PollSender::new(to_client.clone()),
        ReceiverStream::new(from_client),
    ));
    // The user who opened the session: its messages come on other requests, each with a
    // token the guard checked, but what the session may reach is what this one opened.
    let handler = McpHandler::new(state.manager.clone())
        .on(Face::Sse)
        .signed_in(principal.as_ref());
    let ct = state.ct.child_token();
    tokio::spawn(async move {
        match handler.serve_with_ct(transport, ct).await {
            Ok(service) => {
                let _ = service.waiting().await;
            }
            Err(e) => tracing::debug!(error = %e, "legacy SSE session ended before initialize"),
        }
    });
    // When the client drops the stream, forget the session; the server then sees the end of
    // its input and stops.
    let sessions = state.sessions.clone();
    let session_id = id.clone();
    tokio::spawn(async move {
        to_client.closed().await;
        sessions.write().await.remove(&session_id);
        drop(slot);
    });
    tracing::debug!(session = %id, "legacy SSE session opened");

    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("/message?sessionId={id}"));
    let messages = ReceiverStream::new(from_server).map(|message| {
        let data = serde_json::to_string(&message).unwrap_or_else(|e| {
            tracing::error!(error = %e, "could not encode a server message");
            String::new()
        });
        Ok(Event::default().event("message").data(data))
    });
    Sse::new(stream::once(async move { Ok(endpoint) }).chain(messages))
        .keep_alive(KeepAlive::default())
}

#[derive(serde::Deserialize)]
pub struct SessionQuery {
    #[serde(rename = "sessionId")]
    session_id: String,
}

pub async fn post(
    State(state): State<SseState>,
    Query(query): Query<SessionQuery>,
    body: Bytes,
) -> Response {
    let decoded = match decode::decode(&body) {
        Decoded::Request(message) => Ok(message),
        // Refusals are answered on the stream, by the session's gate.
        Decoded::Refused(_) | Decoded::Other => serde_json::from_slice(&body),
    };
    let message: ClientJsonRpcMessage = match decoded {
        Ok(message) => message,
        Err(e) => {
            let error = serde_json::json!({
                "jsonrpc": "2.0",
                "id": null,
                "error": { "code": if e.is_syntax() || e.is_eof() { -32700 } else { -32600 }, "message": e.to_string() }
            });
            return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
        }
    };
    let sender = state.sessions.read().await.get(&query.session_id).cloned();
    match sender {
        Some(sender) if sender.send(message).await.is_ok() => StatusCode::ACCEPTED.into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            "unknown or closed session; open GET /sse again",
        )
            .into_response(),
    }
}
