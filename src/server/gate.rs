//! Answers JSON-RPC methods MCP does not define with -32601 at once, in every phase of the
//! connection, and requests for MCP's methods whose params do not fit with -32602 saying
//! what is wrong. rmcp would answer an unknown method sent before `initialize` with -32602
//! (missing request metadata), and a malformed `tools/call` as an unknown method; SDKs probe
//! with unknown methods and expect "method not found".

use std::{
    future::Future,
    sync::{Arc, Mutex},
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

/// The same rules for Streamable HTTP, applied before rmcp sees the request (rmcp would first
/// ask for a session or for 2026-07-28 request metadata). Bodies over `limit` get 413. A
/// request for one of MCP's common methods is decoded here, once, and handed on with the
/// request as [`Parsed`].
pub async fn refuse_unknown_methods(
    axum::extract::State(limit): axum::extract::State<usize>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::{body::Body, http::StatusCode, response::IntoResponse};

    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {limit} bytes"),
            )
                .into_response();
        }
    };
    match decode::decode(&bytes) {
        Decoded::Refused(reply) => return axum::Json(reply).into_response(),
        Decoded::Request(message) => {
            parts
                .extensions
                .insert(Parsed(Arc::new(Mutex::new(Some(message)))));
        }
        Decoded::Other => {}
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
