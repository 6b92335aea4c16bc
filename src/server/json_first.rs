//! Plain request/response over Streamable HTTP as `application/json`, on both generations.
//!
//! rmcp answers stateless (2026-07-28) requests with JSON when it can, but session
//! (2025-11-25) requests always as an SSE stream, even when the stream carries nothing but the
//! response. This layer looks at the first message of such a stream: if it is the response,
//! the client gets it as a JSON body; if the server sends anything first (progress, a log
//! message), the stream is passed on untouched. Clients must accept both (the spec requires
//! `Accept: application/json, text/event-stream`); one that does not accept JSON keeps SSE.
//!
//! The same layer lets a handler release its stream early (SEP-1699 polling): the SSE body
//! ends after the events sent so far, rmcp keeps the request and caches what follows, and
//! the client reconnects with `GET` + `Last-Event-ID` to receive the rest. The result waits
//! until the client is back (see `StreamRelease::settle`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::Response,
};
use futures::{FutureExt, StreamExt, future::BoxFuture, stream};
use tokio_util::sync::CancellationToken;

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

pub async fn prefer_json(
    State(streams): State<Streams>,
    mut request: Request,
    next: Next,
) -> Response {
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
