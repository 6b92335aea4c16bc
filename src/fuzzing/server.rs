//! The server's parsers of a client's bytes: JSON-RPC decoding, the stdio framing, the HTTP
//! guard.

use std::{
    collections::VecDeque,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use rmcp::{
    model::{ClientJsonRpcMessage, ClientRequest, ErrorCode, JsonRpcMessage},
    transport::Transport,
};
use secrecy::SecretString;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::server::{
    decode::{self, Decoded},
    gate::MethodGate,
    guard::{self, Guard},
    lines::Lines,
};

/// The line limit the stdio target runs with: small, so that over-long lines are exercised.
const FUZZ_MAX_LINE: usize = 4096;

/// One message as Streamable HTTP decodes it: the fast path first, rmcp's decoding for what
/// it leaves. A request the fast path decodes is the one rmcp decodes; a request it refuses
/// rmcp cannot serve either, and the stdio gate refuses it with the same code.
pub fn jsonrpc(bytes: &[u8]) {
    let rmcp = serde_json::from_slice::<ClientJsonRpcMessage>(bytes);
    match decode::decode(bytes) {
        Decoded::Request(ours) => {
            let Ok(rmcp) = rmcp else {
                panic!("the fast path decoded what rmcp refuses: {rmcp:?}");
            };
            assert_eq!(
                serde_json::to_value(&ours).ok(),
                serde_json::to_value(&rmcp).ok(),
                "the fast path and rmcp decode differently"
            );
        }
        Decoded::Refused(reply) => {
            let JsonRpcMessage::Error(refusal) = &reply else {
                panic!("a refusal that is not an error: {reply:?}");
            };
            assert!(!refusal.error.message.is_empty());
            // Otherwise rmcp has no request to serve either (it answers a malformed message
            // itself).
            if let Ok(JsonRpcMessage::Request(request)) = rmcp {
                let ClientRequest::CustomRequest(custom) = request.request else {
                    panic!("refused a request rmcp serves: {:?}", request.request);
                };
                let gate = decode::custom_request_error(&custom.method, custom.params.as_ref());
                assert_eq!(
                    gate.code, refusal.error.code,
                    "HTTP refuses with {:?} ({}), stdio with {:?} ({})",
                    refusal.error.code, refusal.error.message, gate.code, gate.message
                );
            }
        }
        Decoded::Other => {
            if let Ok(JsonRpcMessage::Request(request)) = rmcp
                && let ClientRequest::CustomRequest(custom) = request.request
            {
                let gate = decode::custom_request_error(&custom.method, custom.params.as_ref());
                assert!(!gate.message.is_empty());
                assert!(matches!(
                    gate.code,
                    ErrorCode::INVALID_PARAMS | ErrorCode::METHOD_NOT_FOUND
                ));
            }
        }
    }
}

/// A stdin that hands over its bytes in the pieces given, as a pipe may.
struct Pieces(VecDeque<Vec<u8>>);

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(mut piece) = self.0.pop_front() {
            let take = piece.len().min(buf.remaining());
            buf.put_slice(&piece[..take]);
            if take < piece.len() {
                self.0.push_front(piece.split_off(take));
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// A stdout that keeps what is written to it.
#[derive(Clone, Default)]
struct Written(Arc<Mutex<Vec<u8>>>);

impl AsyncWrite for Written {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What the stdio transport (our line framing behind our method gate) makes of a stdin that
/// delivers `pieces`: the messages handed to the server (each request answered at once, as
/// the server would, so that the end of input is reported), and what was written.
fn stdio_session(pieces: Vec<&[u8]>) -> (Vec<String>, Vec<u8>) {
    let out = Written::default();
    let read = Pieces(pieces.into_iter().map(<[u8]>::to_vec).collect());
    let mut transport = MethodGate::new(Lines::new(read, out.clone(), FUZZ_MAX_LINE));
    let received = super::block_on(async {
        let mut received = Vec::new();
        while let Some(message) = transport.receive().await {
            received.push(serde_json::to_string(&message).unwrap_or_default());
            if let JsonRpcMessage::Request(request) = message {
                let answer = rmcp::model::ServerJsonRpcMessage::response(
                    rmcp::model::ServerResult::empty(()),
                    request.id,
                );
                let _ = transport.send(answer).await;
            }
        }
        received
    });
    drop(transport);
    let written = out.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (received, written)
}

/// The stdio framing: the first line gives the sizes of the pieces stdin delivers the rest in.
/// However a pipe splits the bytes, the server sees the same messages and the client gets
/// the same answers; every answer is a line of JSON.
pub fn stdio(bytes: &[u8]) {
    let (sizes, input) = super::first_line(bytes);
    let whole = stdio_session(vec![input]);
    let split = stdio_session(super::pieces(input, sizes));
    assert_eq!(whole, split, "the messages depend on how stdin was split");
    let answers: Vec<&[u8]> = whole
        .1
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    for line in &answers {
        assert!(
            serde_json::from_slice::<serde_json::Value>(line).is_ok(),
            "an answer that is not JSON: {}",
            String::from_utf8_lossy(line)
        );
    }
}

/// The HTTP guard. Lines: allowed hosts (`,`-separated), allowed origins, the token (empty for
/// none), then headers as `name: value`. A request let through was addressed to an allowed
/// host, from an allowed origin, with the token.
pub fn guard(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.split('\n');
    let list = |line: Option<&str>| -> Vec<String> {
        line.unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let hosts = list(lines.next());
    let origins = list(lines.next());
    let token = lines
        .next()
        .filter(|t| !t.is_empty())
        .map(SecretString::from);
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_bytes(value.trim_start().as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    for value in headers.get_all(header::HOST) {
        if let Ok(host) = value.to_str() {
            let name = guard::strip_port(host);
            assert!(host.contains(name), "strip_port invented `{name}`");
        }
    }
    if let Some(authorization) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(given) = guard::bearer(authorization)
    {
        assert!(authorization.contains(given));
    }
    for bind in ["127.0.0.1", "0.0.0.0", "192.0.2.7"] {
        let g = Guard::new(
            bind.parse().expect("an address"),
            &hosts,
            &origins,
            token.as_ref(),
        );
        if g.check(&headers).is_err() {
            continue;
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        assert!(
            g.host_allowed(host),
            "let in for a host not allowed: {host:?}"
        );
        if !hosts.iter().any(|h| h.trim() == "*") {
            assert!(
                host.parse::<axum::http::uri::Authority>().is_ok(),
                "let in for a Host that is no host name: {host:?}"
            );
        }
        if let Some(token) = &token {
            use secrecy::ExposeSecret;
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok())
                .and_then(guard::bearer);
            assert_eq!(
                given,
                Some(token.expose_secret()),
                "let in without the token"
            );
        }
    }
}
