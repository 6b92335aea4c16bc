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
