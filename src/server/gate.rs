//! Answers JSON-RPC methods MCP does not define with -32601 at once, in every phase of the
//! connection. rmcp would answer an unknown method sent before `initialize` with -32602
//! (missing request metadata); SDKs probe with such requests and expect "method not found".

use std::future::Future;

use rmcp::{
    ErrorData, RoleServer,
    model::{ClientRequest, ErrorCode, JsonRpcMessage, ServerJsonRpcMessage},
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::Transport,
};

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
                let error = ErrorData::new(
                    ErrorCode::METHOD_NOT_FOUND,
                    format!("method `{}` is not part of MCP", custom.method),
                    None,
                );
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

/// The same rule for Streamable HTTP: a POST whose JSON-RPC request names a method MCP does
/// not define is answered -32601 before rmcp sees it (rmcp would first ask for a session or
/// for 2026-07-28 request metadata). Bodies over `limit` get 413.
pub async fn refuse_unknown_methods(
    axum::extract::State(limit): axum::extract::State<usize>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::{body::Body, http::StatusCode, response::IntoResponse};

    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
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
    if let Some((id, method)) = unknown_method(&bytes) {
        let error = ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!("method `{method}` is not part of MCP"),
            None,
        );
        let reply = ServerJsonRpcMessage::error(error, Some(id));
        return axum::Json(reply).into_response();
    }
    next.run(axum::extract::Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// MCP methods most requests name, let through without parsing the whole body a second time
/// (a call for one of them with malformed params gets rmcp's own error instead).
const HOT_METHODS: &[&str] = &[
    "tools/call",
    "tools/list",
    "resources/read",
    "resources/list",
    "prompts/get",
    "prompts/list",
    "completion/complete",
    "ping",
];

/// The id and method of a request for a method MCP does not define.
fn unknown_method(body: &[u8]) -> Option<(rmcp::model::RequestId, String)> {
    #[derive(serde::Deserialize)]
    struct Probe<'a> {
        id: Option<serde::de::IgnoredAny>,
        #[serde(borrow)]
        method: Option<std::borrow::Cow<'a, str>>,
    }
    // Cheap first look: only requests (an id and a method) can be unknown methods.
    let probe: Probe = serde_json::from_slice(body).ok()?;
    let (Some(_), Some(method)) = (probe.id, probe.method) else {
        return None;
    };
    // The methods clients send all the time are MCP's: no second parse for them.
    if HOT_METHODS.contains(&method.as_ref()) {
        return None;
    }
    // rmcp recognises a request as unknown only by failing every known shape (params included),
    // so this second parse is of the whole body.
    match serde_json::from_slice::<rmcp::model::ClientJsonRpcMessage>(body).ok()? {
        JsonRpcMessage::Request(request) => match request.request {
            ClientRequest::CustomRequest(custom) => Some((request.id, custom.method)),
            _ => None,
        },
        _ => None,
    }
}
