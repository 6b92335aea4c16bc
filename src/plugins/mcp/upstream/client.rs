//! What plugboard is to the upstream: the client that answers its requests (sampling,
//! elicitation, roots: passed to the client of a call in flight) and hears its notifications.

#![allow(deprecated)] // rmcp marks sampling, roots and logging deprecated (SEP-2577); upstreams use them.

use super::*;

/// What plugboard is to the upstream: a client that hears about list changes.
#[derive(Clone)]
pub(super) struct Client {
    pub(super) shared: Arc<Shared>,
    pub(super) relist: Arc<tokio::sync::Notify>,
}

impl Client {
    /// `transport`, its progress notifications taken off as they are read and passed on in
    /// order by a task of their own (which ends with the transport).
    pub(super) fn ordered<T, E, A>(
        &self,
        transport: T,
    ) -> Ordered<impl rmcp::transport::Transport<RoleClient, Error = E> + use<T, E, A>>
    where
        T: rmcp::transport::IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let (queue, queued) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(forward_progress(self.shared.clone(), queued));
        Ordered {
            inner: transport.into_transport(),
            relay: self.shared.progress.clone(),
            queue,
        }
    }

    /// The client to ask on the upstream's behalf: that of the request relayed last.
    pub(super) fn asking(&self, what: &str) -> Result<ToolContext, ErrorData> {
        self.shared.active.latest().ok_or_else(|| {
            ErrorData::invalid_request(
                format!(
                    "plugboard relays {what} to the client whose request is in flight, and \
                     none is"
                ),
                None,
            )
        })
    }
}

/// A client's refusal, as the upstream hears it.
pub(super) fn refused(e: ToolError) -> ErrorData {
    ErrorData::invalid_request(e.to_string(), None)
}

impl ClientHandler for Client {
    fn get_info(&self) -> ClientConfig {
        // What plugboard relays to its clients (each client's own capabilities are checked
        // when the upstream asks).
        let capabilities = ClientCapabilities::builder()
            .enable_roots()
            .enable_roots_list_changed()
            .enable_sampling()
            .enable_elicitation()
            .build();
        ClientConfig::new(
            capabilities,
            Implementation::new("plugboard", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let cx = self.asking("sampling")?;
        cx.sample(params).await.map_err(refused)
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let cx = self.asking("elicitation")?;
        cx.elicit_request(request).await.map_err(refused)
    }

    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        // Asked with no request in flight: the roots of the client that last said its roots
        // changed (the server asks again on hearing it). With none (at connection time,
        // typically), plugboard cannot know whose roots to give: the error tells the server
        // to ask again during a call.
        let cx = match self.asking("roots/list") {
            Ok(cx) => cx,
            Err(e) => self
                .shared
                .roots_from
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .ok_or(e)?,
        };
        cx.roots().await.map_err(refused)
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let level = params.level;
        let data = log_data(params);
        // During a request: to its client, at that client's level. Otherwise: to every
        // client at its session's level.
        match self.shared.active.latest() {
            Some(cx) => cx.log(level, data).await,
            None => self.shared.events.log(level, data),
        }
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.shared.events.resource_updated(params.uri);
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.relist.notify_one();
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.relist.notify_one();
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        tracing::debug!(plugin = %self.shared.plugin, "upstream tool list changed");
        self.relist.notify_one();
    }
}

/// A log message of the server's as plugboard passes it on: its data, under its logger's name
/// when it gives one.
pub(super) fn log_data(params: LoggingMessageNotificationParam) -> serde_json::Value {
    match params.logger {
        Some(logger) => serde_json::json!({ "logger": logger, "data": params.data }),
        None => params.data,
    }
}
