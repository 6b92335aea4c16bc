//! What a tool handler can reach while it runs: progress, client logging, cancellation.
#![allow(deprecated)] // rmcp marks MCP logging deprecated (SEP-2577); clients still use it.

use std::sync::Arc;

use rmcp::{
    Peer, RoleServer,
    model::{
        LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken,
    },
};
use tokio_util::sync::CancellationToken;

/// Handed to every tool call. Cheap to clone. Outside an MCP session (the CLI's `call`) it has
/// no peer, and progress and logs go to the tracing log instead.
#[derive(Clone)]
pub struct ToolContext {
    /// Fires when the client cancels the request or the call times out.
    ct: CancellationToken,
    /// Present only when the client asked for progress on this request.
    progress_token: Option<ProgressToken>,
    peer: Option<Peer<RoleServer>>,
    /// The least severe level the client wants; `None` means it wants no log messages.
    log_level: Option<LoggingLevel>,
    /// The plugin's name, used as the logger name in client log messages.
    plugin: Arc<str>,
}

impl ToolContext {
    pub fn new(
        ct: CancellationToken,
        peer: Option<Peer<RoleServer>>,
        progress_token: Option<ProgressToken>,
        log_level: Option<LoggingLevel>,
    ) -> Self {
        Self {
            ct,
            progress_token,
            peer,
            log_level,
            plugin: Arc::from(""),
        }
    }

    /// A context for calls made outside a client session (CLI, benchmarks).
    pub fn detached() -> Self {
        Self::new(CancellationToken::new(), None, None, None)
    }

    pub(crate) fn for_plugin(mut self, plugin: Arc<str>) -> Self {
        self.plugin = plugin;
        self
    }

    pub fn cancellation(&self) -> &CancellationToken {
        &self.ct
    }

    pub fn is_cancelled(&self) -> bool {
        self.ct.is_cancelled()
    }

    /// Report progress, if the client asked for it. Never fails the call.
    pub async fn progress(&self, progress: f64, total: Option<f64>, message: impl Into<String>) {
        let (Some(peer), Some(token)) = (&self.peer, &self.progress_token) else {
            return;
        };
        let mut param =
            ProgressNotificationParam::new(token.clone(), progress).with_message(message);
        if let Some(total) = total {
            param = param.with_total(total);
        }
        if let Err(e) = peer.notify_progress(param).await {
            tracing::debug!(error = %e, "progress notification not delivered");
        }
    }

    /// Send a log message to the client, if it asked for messages at this level.
    pub async fn log(&self, level: LoggingLevel, data: serde_json::Value) {
        let wanted = self
            .log_level
            .is_some_and(|min| severity(level) >= severity(min));
        match (&self.peer, wanted) {
            (Some(peer), true) => {
                let param = LoggingMessageNotificationParam::new(level, data)
                    .with_logger(self.plugin.to_string());
                if let Err(e) = peer.notify_logging_message(param).await {
                    tracing::debug!(error = %e, "log notification not delivered");
                }
            }
            (None, _) => tracing::info!(plugin = %self.plugin, ?level, %data, "tool log"),
            _ => {}
        }
    }
}

/// RFC 5424 order, least severe first.
pub fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}
