//! Plain request/response over Streamable HTTP as `application/json`, on both generations.
//!
//! rmcp answers stateless (2026-07-28) requests with JSON when it can, but session
//! (2025-11-25) requests always as an SSE stream, even when the stream carries nothing but the
//! response. This layer looks at the first message of such a stream: if it is the response,
//! the client gets it as a JSON body; if the server sends anything first (progress, a log
//! message), the stream is passed on untouched. Clients must accept both (the spec requires
//! `Accept: application/json, text/event-stream`); one that does not accept JSON keeps SSE.
//!
//! A session request that the gate has already decoded (one of MCP's common methods, see
//! `decode`) is handed to its session here, as rmcp would hand it, and its response read
//! straight off the session's stream: no second decoding, no SSE encoding to undo.
//!
//! The same layer lets a handler release its stream early (SEP-1699 polling): the SSE body
//! ends after the events sent so far, rmcp keeps the request and caches what follows, and
//! the client reconnects with `GET` + `Last-Event-ID` to receive the rest. The result waits
//! until the client is back (see `StreamRelease::settle`).

use std::{
    collections::HashMap,
    convert::Infallible,
    pin::Pin,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use futures::{FutureExt, StreamExt, future::BoxFuture, stream};
use rmcp::{
    model::{ClientJsonRpcMessage, GetExtensions, GetMeta, JsonRpcMessage, ProtocolVersion},
    transport::{
        common::server_side_http::{ServerSseMessage, SessionId},
        streamable_http_server::session::{SessionManager, local::LocalSessionManager},
    },
};
use sse_stream::{KeepAlive, Sse, SseBody};
use tokio_util::sync::CancellationToken;

use super::gate::Parsed;
use crate::plugin::{StreamControl, StreamRelease};

/// Released streams waiting for their client, by session and rmcp's request-stream number.
#[derive(Clone, Default)]
pub struct Streams(Arc<Mutex<StreamMap>>);

/// (session id, stream number) → the released stream.
type StreamMap = HashMap<(String, String), Arc<Stream>>;

/// One POST's response stream.
struct Stream {
    session: String,
    /// rmcp's number for this request stream, from the priming event's id (`0/<n>`).
    key: OnceLock<String>,
    known: tokio::sync::Notify,
    release: CancellationToken,
    resumed: CancellationToken,
    streams: Streams,
}

/// What a handler holds: the stream's state.
struct Handle(Arc<Stream>);

impl StreamControl for Handle {
    fn release(&self) -> BoxFuture<'static, bool> {
        let me = self.0.clone();
        async move {
            // The priming event is the stream's first; the layer reads it at once.
            let known = me.known.notified();
            if me.key.get().is_none() {
                let _ = tokio::time::timeout(Duration::from_secs(1), known).await;
            }
            let Some(key) = me.key.get() else {
                return false;
            };
            me.streams
                .lock()
                .insert((me.session.clone(), key.clone()), me.clone());
            me.release.cancel();
            true
        }
        .boxed()
    }

    fn released(&self) -> bool {
        self.0.release.is_cancelled()
    }

    fn resumed(&self, max: Duration) -> BoxFuture<'static, bool> {
        let me = self.0.clone();
        async move {
            let back = tokio::time::timeout(max, me.resumed.cancelled())
                .await
                .is_ok();
            if let Some(key) = me.key.get() {
                me.streams.lock().remove(&(me.session.clone(), key.clone()));
            }
            back
        }
        .boxed()
    }
}

impl Streams {
    fn lock(&self) -> std::sync::MutexGuard<'_, StreamMap> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the layer needs: released streams, and rmcp's sessions to hand decoded requests to.
#[derive(Clone)]
pub struct JsonFirst {
    pub streams: Streams,
    pub sessions: Arc<LocalSessionManager>,
    /// How often an idle SSE response gets a keep-alive comment (rmcp's `sse_keep_alive`).
    pub keep_alive: Option<Duration>,
    /// Ends the server's response streams on shutdown.
    pub ct: CancellationToken,
}

pub async fn prefer_json(
    State(layer): State<JsonFirst>,
    mut request: Request,
    next: Next,
) -> Response {
    let streams = layer.streams.clone();
    let accepts_json = request.method() == Method::POST
        && request
            .headers()
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("application/json") || v.contains("*/*"));
    let session = request
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if request.method() == Method::GET {
        return resume(streams, session, request, next).await;
    }
    let control = session
        .filter(|_| request.method() == Method::POST)
        .map(|session| {
            Arc::new(Stream {
                session,
                key: OnceLock::new(),
                known: tokio::sync::Notify::new(),
                release: CancellationToken::new(),
                resumed: CancellationToken::new(),
                streams: streams.clone(),
            })
        });
    if let Some(control) = &control {
        request
            .extensions_mut()
            .insert(StreamRelease(Arc::new(Handle(control.clone()))));
    }
    let parsed = request
        .extensions_mut()
        .remove::<Parsed>()
        .and_then(|parsed| parsed.take());
    if let (Some(message), Some(control)) = (parsed, &control)
        && accepts_json
    {
        match direct(&layer, request, message, control).await {
            Ok(response) => return response,
            Err(back) => request = back,
        }
    }
    let response = next.run(request).await;
    let is_sse = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !is_sse {
        return response;
    }

    let (mut parts, body) = response.into_parts();
    let released = control
        .as_ref()
        .map(|c| c.release.clone())
        .unwrap_or_default();
    let mut rest = body
        .into_data_stream()
        .take_until(released.clone().cancelled_owned())
        .boxed();
    let mut seen: Vec<Bytes> = Vec::new();
    let mut pending = Vec::new();
    'read: while let Some(chunk) = rest.next().await {
        let Ok(chunk) = chunk else { break };
        pending.extend_from_slice(&chunk);
        seen.push(chunk);
        while let Some(end) = find(&pending, b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            let data = event_data(&event);
            if data.is_empty() {
                // The priming event: an id to resume from, no message.
                if let (Some(control), Some(id)) = (&control, event_field(&event, b"id:")) {
                    if let Some((_, key)) = id.split_once('/') {
                        let _ = control.key.set(key.to_owned());
                    }
                    control.known.notify_waiters();
                }
                if accepts_json {
                    continue;
                }
                break 'read; // an SSE client: nothing more to learn
            }
            if accepts_json && is_response(&data) {
                parts.headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                parts.headers.remove(header::CACHE_CONTROL);
                parts.headers.remove("x-accel-buffering");
                parts.headers.remove(header::TRANSFER_ENCODING);
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(data.len()));
                return Response::from_parts(parts, Body::from(data));
            }
            // Something comes before the response: keep streaming, losing nothing.
            break 'read;
        }
    }
    // The stream ended or was released, or the client wants SSE: pass on what there was
    // and whatever follows.
    let replay = stream::iter(seen.into_iter().map(Ok::<_, axum::Error>));
    Response::from_parts(parts, Body::from_stream(replay.chain(rest)))
}

/// Serve a decoded request of session `control.session` as rmcp's own POST handler would,
/// reading its response straight from the session: a JSON body when the response comes
/// first, else the stream as SSE (which ends early if the handler releases it). `Err` gives
/// back a request rmcp must serve itself (other headers, a per-request protocol version, a
/// session this process does not hold).
async fn direct(
    layer: &JsonFirst,
    request: Request,
    mut message: ClientJsonRpcMessage,
    control: &Arc<Stream>,
) -> Result<Response, Request> {
    let JsonRpcMessage::Request(call) = &mut message else {
        return Err(request);
    };
    if !session_headers_fit(request.headers())
        || call.request.get_meta().protocol_version().is_some()
    {
        return Err(request);
    }
    let session: SessionId = control.session.as_str().into();
    if !layer.sessions.has_session(&session).await.unwrap_or(false) {
        return Err(request);
    }
    let (parts, _body) = request.into_parts();
    call.request.extensions_mut().insert(parts);
    let mut stream = match layer.sessions.create_stream(&session, message).await {
        Ok(stream) => stream.boxed(),
        Err(e) => {
            tracing::error!(error = %e, "could not hand a request to its session");
            return Ok((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the session could not take the request: {e}"),
            )
                .into_response());
        }
    };
    let mut seen = Vec::new();
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            () = control.release.cancelled() => None,
        };
        let Some(event) = next else { break };
        let Some(reply) = &event.message else {
            // The priming event names the stream, which a handler releasing it needs.
            if let Some((_, key)) = event.event_id.as_deref().and_then(|id| id.split_once('/')) {
                let _ = control.key.set(key.to_owned());
                control.known.notify_waiters();
            }
            seen.push(event);
            continue;
        };
        if matches!(
            **reply,
            JsonRpcMessage::Response(_) | JsonRpcMessage::Error(_)
        ) {
            return Ok(match serde_json::to_vec(&**reply) {
                Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
            });
        }
        seen.push(event);
        break;
    }
    // What a released stream sent so far, then nothing more.
    let rest = stream.take_until(control.release.clone().cancelled_owned());
    Ok(sse_response(
        stream::iter(seen).chain(rest),
        layer.keep_alive,
        layer.ct.child_token(),
    ))
}

/// Headers under which rmcp serves a session request as a plain one of its session: JSON
/// in, both answers accepted, a protocol version (if named) from before 2026-07-28.
fn session_headers_fit(headers: &HeaderMap) -> bool {
    let is = |value: &str, media_type: &str| {
        let essence = value.split(';').next().unwrap_or("").trim();
        essence.eq_ignore_ascii_case(media_type)
    };
    let json_in = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| is(v, "application/json"));
    let accepts = |media_type: &str| {
        headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|a| is(a, media_type))
    };
    let accepts_both = accepts("application/json") && accepts("text/event-stream");
    let version_fits = match headers.get("mcp-protocol-version") {
        None => true,
        Some(v) => v.to_str().is_ok_and(|v| {
            v < ProtocolVersion::V_2026_07_28.as_str()
                && ProtocolVersion::KNOWN_VERSIONS
                    .iter()
                    .any(|k| k.as_str() == v)
        }),
    };
    json_in && accepts_both && version_fits
}

/// The session's events as an SSE body, as rmcp writes them.
fn sse_response(
    events: impl futures::Stream<Item = ServerSseMessage> + Send + 'static,
    keep_alive: Option<Duration>,
    ct: CancellationToken,
) -> Response {
    let events = events
        .map(|event| {
            let data = match &event.message {
                Some(message) => serde_json::to_string(&**message).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "could not encode a server message");
                    String::new()
                }),
                None => String::new(),
            };
            let mut sse = Sse::default().data(data);
            sse.id = event.event_id;
            sse.retry = event.retry.map(|r| r.as_millis() as u64);
            Ok::<_, Infallible>(sse)
        })
        .take_until(ct.cancelled_owned());
    let body = SseBody::new(events);
    let body = match keep_alive {
        Some(every) => Body::new(body.with_keep_alive::<Tick>(KeepAlive::new().interval(every))),
        None => Body::new(body),
    };
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}

/// sse-stream's keep-alive clock, on tokio's timer.
struct Tick(Pin<Box<tokio::time::Sleep>>);

impl std::future::Future for Tick {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl sse_stream::Timer for Tick {
    fn reset(mut self: Pin<&mut Self>, when: std::time::Instant) {
        self.0.as_mut().reset(when.into());
    }

    fn from_duration(every: Duration) -> Self {
        Self(Box::pin(tokio::time::sleep(every)))
    }
}

/// A `GET` with `Last-Event-ID` resumes a stream; tell a released one its client is back.
async fn resume(
    streams: Streams,
    session: Option<String>,
    request: Request,
    next: Next,
) -> Response {
    let key = request
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|id| id.split_once('/'))
        .map(|(_, key)| key.to_owned());
    let response = next.run(request).await;
    if response.status() == StatusCode::OK
        && let (Some(session), Some(key)) = (session, key)
        && let Some(stream) = streams.lock().remove(&(session, key))
    {
        stream.resumed.cancel();
    }
    response
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `data:` lines of one SSE event, joined.
fn event_data(event: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(value) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
        }
    }
    data
}

/// The value of one field (`id:`) of an SSE event.
fn event_field(event: &[u8], name: &[u8]) -> Option<String> {
    event.split(|b| *b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let value = line.strip_prefix(name)?;
        let value = value.strip_prefix(b" ").unwrap_or(value);
        String::from_utf8(value.to_vec()).ok()
    })
}

/// A JSON-RPC response or error (has an id and no method).
fn is_response(data: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        id: Option<serde::de::IgnoredAny>,
        method: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Probe>(data).is_ok_and(|p| p.id.is_some() && p.method.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_response_after_the_priming_event() {
        let priming = b"data: \nid: 0\nretry: 3000\n\n";
        assert!(event_data(priming).is_empty());
        let response = b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\nid: 1\n\n";
        assert!(is_response(&event_data(response)));
        let note =
            b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n";
        assert!(!is_response(&event_data(note)));
        let request =
            b"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"sampling/createMessage\"}\n\n";
        assert!(!is_response(&event_data(request)));
    }
}
