//! Answers JSON-RPC methods MCP does not define with -32601 at once, in every phase of the
//! connection, and requests for MCP's methods whose params do not fit with -32602 saying
//! what is wrong. rmcp would answer an unknown method sent before `initialize` with -32602
//! (missing request metadata), and a malformed `tools/call` as an unknown method; SDKs probe
//! with unknown methods and expect "method not found".

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use rmcp::{
    RoleServer,
    model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage, ServerJsonRpcMessage},
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::Transport,
};

use super::decode::{self, Decoded};

pub struct MethodGate<T> {
    inner: T,
}

impl<T> MethodGate<T> {
    pub fn new(inner: T) -> Self {
        Self { inner }
    }
}

impl<T: Transport<RoleServer>> Transport<RoleServer> for MethodGate<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            let message = self.inner.receive().await?;
            if let JsonRpcMessage::Request(request) = &message
                && let ClientRequest::CustomRequest(custom) = &request.request
            {
                let error = decode::custom_request_error(&custom.method, custom.params.as_ref());
                let reply = ServerJsonRpcMessage::error(error, Some(request.id.clone()));
                if self.inner.send(reply).await.is_err() {
                    return None;
                }
                continue;
            }
            return Some(message);
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// How much of a request body is read, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    /// From the end of the headers to the body's last byte; a body trickled slower is cut off.
    pub timeout: Duration,
}

/// Read a POST's whole body before anything else sees it: over `max_bytes` is 413, slower
/// than `timeout` is 408. What follows gets the body in memory.
pub async fn read_body(
    axum::extract::State(limits): axum::extract::State<BodyLimits>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::{body::Body, http::StatusCode, response::IntoResponse};

    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes =
        match tokio::time::timeout(limits.timeout, axum::body::to_bytes(body, limits.max_bytes))
            .await
        {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(_)) => {
                let detail = format!(
                    "request body over {} bytes, the limit (--max-body-bytes)",
                    limits.max_bytes
                );
                let mut response = if parts.uri.path().starts_with("/api/") {
                    crate::ops::Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body-too-large",
                        detail,
                    )
                    .into_response()
                } else {
                    (StatusCode::PAYLOAD_TOO_LARGE, detail).into_response()
                };
                // The rest of the body is not read: the connection cannot carry another
                // request, and the client is told so rather than finding out on its next one.
                response.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
                return response;
            }
            Err(_) => {
                tracing::warn!("HTTP request body not received in time");
                return (
                    StatusCode::REQUEST_TIMEOUT,
                    [(axum::http::header::CONNECTION, "close")],
                    format!(
                        "request body not received within {} s (--body-timeout-secs)",
                        limits.timeout.as_secs()
                    ),
                )
                    .into_response();
            }
        };
    next.run(axum::extract::Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The same rules for Streamable HTTP, applied before rmcp sees the request (rmcp would first
/// ask for a session or for 2026-07-28 request metadata). A request for one of MCP's common
/// methods is decoded here, once, and handed on with the request as [`Parsed`]; a body that
/// is no JSON-RPC message is answered 400 with the JSON-RPC error.
pub async fn refuse_unknown_methods(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::{body::Body, http::StatusCode, response::IntoResponse};

    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    // Already in memory (`read_body`).
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match decode::decode(&bytes) {
        Decoded::Refused(reply) => return axum::Json(reply).into_response(),
        Decoded::Request(message) => {
            parts
                .extensions
                .insert(Parsed(Arc::new(Mutex::new(Some(message)))));
        }
        Decoded::Other => match decode::decode_rest(&bytes) {
            // Not JSON, or no JSON-RPC message: 400 with the JSON-RPC error (rmcp would say
            // 415, which is about the content type).
            Err(reply) => return (StatusCode::BAD_REQUEST, axum::Json(reply)).into_response(),
            Ok(JsonRpcMessage::Request(request))
                if matches!(request.request, ClientRequest::InitializeRequest(_)) =>
            {
                parts.extensions.insert(super::sessions::Initialize);
            }
            Ok(_) => {}
        },
    }
    next.run(axum::extract::Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// A request body already decoded, for whoever serves it to take.
#[derive(Clone)]
pub struct Parsed(Arc<Mutex<Option<ClientJsonRpcMessage>>>);

impl Parsed {
    pub fn take(&self) -> Option<ClientJsonRpcMessage> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}
