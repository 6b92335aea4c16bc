//! The MCP face of the plugin manager: one `ServerHandler` serves every transport.

#![allow(deprecated)] // rmcp marks MCP logging deprecated (SEP-2577); clients still use it.

use std::sync::{Arc, Mutex};

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult, LoggingLevel,
        PaginatedRequestParams, ProtocolVersion, ServerCapabilities, ServerConfig,
        SetLevelRequestParams, SubscriptionFilter, Tool,
    },
    service::{NotificationContext, RequestContext, SubscriptionContext},
};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::plugin::{Manager, ToolContext};

/// One per connection (stdio, SSE session, HTTP session or stateless request); cheap to make.
#[derive(Clone)]
pub struct McpHandler {
    manager: Arc<Manager>,
    /// The level a 2025-11-25 client chose with `logging/setLevel`; 2026-07-28 clients send
    /// theirs with each request instead.
    session_log_level: Arc<Mutex<LoggingLevel>>,
    /// Subscribed to registry changes when the handler is made, i.e. before rmcp acknowledges
    /// a `subscriptions/listen` or answers `initialize`: a reload right after the ack is not
    /// missed. Taken by the first listener; later ones subscribe afresh.
    changes: Arc<Mutex<Option<broadcast::Receiver<()>>>>,
}

impl McpHandler {
    pub fn new(manager: Arc<Manager>) -> Self {
        let changes = Arc::new(Mutex::new(Some(manager.subscribe())));
        Self {
            manager,
            session_log_level: Arc::new(Mutex::new(LoggingLevel::Info)),
            changes,
        }
    }

    fn changes(&self) -> broadcast::Receiver<()> {
        self.changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| self.manager.subscribe())
    }

    fn log_level(&self, cx: &RequestContext<RoleServer>) -> Option<LoggingLevel> {
        if let Some(level) = cx.meta.log_level() {
            return Some(level);
        }
        let stateless = cx
            .protocol_version()
            .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str());
        // On 2026-07-28 a client that names no level wants no log messages.
        (!stateless).then(|| {
            *self
                .session_log_level
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        })
    }
}

impl ServerHandler for McpHandler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_logging()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(
            Implementation::new("plugboard", env!("CARGO_PKG_VERSION")).with_title("plugboard"),
        )
        .with_instructions(
            "plugboard publishes the tools of its plugins as <plugin>_<tool>. Tool failures come back \
             as results with isError: true and say what to change.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            (*self.manager.tools()).clone(),
        ))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.manager.registry().get(name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let tool_cx = ToolContext::new(
            cx.ct.clone(),
            Some(cx.peer.clone()),
            cx.meta.get_progress_token(),
            self.log_level(&cx),
        );
        Ok(self
            .manager
            .call(&request.name, request.arguments, tool_cx)
            .await
            .into())
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        *self
            .session_log_level
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = request.level;
        Ok(())
    }

    // 2025-11-25 and older: push `tools/list_changed` on the session for as long as it lives.
    async fn on_initialized(&self, cx: NotificationContext<RoleServer>) {
        let mut changes = self.changes();
        let peer = cx.peer.clone();
        tokio::spawn(async move {
            // Ends when the manager is dropped or the client goes away.
            while let Ok(()) | Err(RecvError::Lagged(_)) = changes.recv().await {
                if peer.notify_tool_list_changed().await.is_err() {
                    break;
                }
            }
        });
    }

    // 2026-07-28: the client opens `subscriptions/listen`; changes stream on that request.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    async fn listen(&self, cx: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.changes();
        loop {
            tokio::select! {
                _ = cx.cancelled() => return Ok(()),
                change = changes.recv() => match change {
                    Ok(()) | Err(RecvError::Lagged(_)) => {
                        if cx.accepted().tools_list_changed == Some(true) {
                            cx.sink()
                                .notify_tool_list_changed()
                                .await
                                .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
                        }
                    }
                    Err(RecvError::Closed) => return Ok(()),
                },
            }
        }
    }
}
