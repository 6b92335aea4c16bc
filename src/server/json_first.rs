//! Plain request/response over Streamable HTTP as `application/json`, on both generations.
//!
//! rmcp answers stateless (2026-07-28) requests with JSON when it can, but session
//! (2025-11-25) requests always as an SSE stream, even when the stream carries nothing but the
//! response. This layer looks at the first message of such a stream: if it is the response,
//! the client gets it as a JSON body; if the server sends anything first (progress, a log
//! message), the stream is passed on untouched. Clients must accept both (the spec requires
//! `Accept: application/json, text/event-stream`); one that does not accept JSON keeps SSE.

use axum::{
    body::{Body, Bytes},
    extract::Request,
    http::{HeaderValue, Method, header},
    middleware::Next,
    response::Response,
};
use futures::{StreamExt, stream};

pub async fn prefer_json(request: Request, next: Next) -> Response {
    let accepts_json = request.method() == Method::POST
        && request
            .headers()
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("application/json") || v.contains("*/*"));
    let response = next.run(request).await;
    let is_sse = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !accepts_json || !is_sse {
        return response;
    }

    let (mut parts, body) = response.into_parts();
    let mut rest = body.into_data_stream();
    let mut seen: Vec<Bytes> = Vec::new();
    let mut pending = Vec::new();
    while let Some(chunk) = rest.next().await {
        let Ok(chunk) = chunk else { break };
        pending.extend_from_slice(&chunk);
        seen.push(chunk);
        while let Some(end) = find(&pending, b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            let data = event_data(&event);
            if data.is_empty() {
                continue; // the priming event (an id for resumption, no message)
            }
            if is_response(&data) {
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
            let replay = stream::iter(seen.into_iter().map(Ok::<_, axum::Error>));
            return Response::from_parts(parts, Body::from_stream(replay.chain(rest)));
        }
    }
    // The stream ended without a message: hand back what there was.
    let replay = stream::iter(seen.into_iter().map(Ok::<_, axum::Error>));
    Response::from_parts(parts, Body::from_stream(replay))
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
