//! The MCP face of the plugin manager: one `ServerHandler` serves every transport.
//!
//! One file (a little under 700 lines): it is rmcp's `ServerHandler`, one method per MCP
//! request, and each narrows by the same per-request caller (session scope, signed-in
//! user's grants); split by request kind, every part would need those private helpers.

#![allow(deprecated)] // rmcp marks MCP logging deprecated (SEP-2577); clients still use it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use rmcp::{
    ErrorData, Peer, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult,
        GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
        ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, LoggingLevel,
        PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse,
        ResourceUpdatedNotificationParam, ServerCapabilities, ServerConfig, SetLevelRequestParams,
        SubscribeRequestParams, SubscriptionFilter, Tool, UnsubscribeRequestParams,
    },
    service::{NotificationContext, RequestContext, SubscriptionContext},
};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::plugin::{
    Caller, Change, Face, Filters, Grants, Manager, Principal, StreamRelease, ToolContext,
    manager::Watch,
};

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
    changes: Arc<Mutex<Option<broadcast::Receiver<Change>>>>,
    /// Resource URIs this session subscribed to (2025-11-25 `resources/subscribe`), each
    /// counted by the manager while the session holds it (the plugin serving it hears of its
    /// first subscriber and its last).
    subscriptions: Arc<Mutex<HashMap<String, Watch>>>,
    /// The transport this handler serves, for the calls' observers.
    face: Face,
    /// Narrower filters for this connection's client than the server's, if any.
    scope: Option<Arc<Filters>>,
    /// What the signed-in user who opened this connection may reach (legacy SSE, where the
    /// token comes with `GET /sse`); over Streamable HTTP each request's own token decides.
    grants: Option<Arc<Grants>>,
    /// One permit per tool call in flight on this session (`max_calls_per_session`).
    call_slots: Arc<tokio::sync::Semaphore>,
    /// Cancelled when the last clone of this handler is dropped, i.e. when its session has
    /// ended: what the session's own tasks (the change pusher) stop on.
    ended: tokio_util::sync::CancellationToken,
    _ended_guard: Arc<tokio_util::sync::DropGuard>,
}

impl McpHandler {
    pub fn new(manager: Arc<Manager>) -> Self {
        let changes = Arc::new(Mutex::new(Some(manager.subscribe())));
        let per_session = manager.config().max_calls_per_session;
        let ended = tokio_util::sync::CancellationToken::new();
        Self {
            _ended_guard: Arc::new(ended.clone().drop_guard()),
            ended,
            call_slots: Arc::new(tokio::sync::Semaphore::new(
                per_session.clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
            )),
            manager,
            session_log_level: Arc::new(Mutex::new(LoggingLevel::Info)),
            changes,
            subscriptions: Arc::default(),
            face: Face::Stdio,
            scope: None,
            grants: None,
        }
    }

    /// Show and allow this connection's client only what `scope` lets through (on top of the
    /// server's filters).
    pub fn scoped(mut self, scope: Filters) -> Self {
        self.scope = Some(Arc::new(scope));
        self
    }

    /// Show and allow only what a signed-in user's scopes open (legacy SSE: the user who
    /// opened the session).
    pub fn signed_in(mut self, principal: Option<&Principal>) -> Self {
        self.grants = principal.and_then(|p| p.grants.clone());
        self
    }

    /// What this request's signed-in user may reach: the grants of the token it came with
    /// (Streamable HTTP puts the request's parts, where the guard left the user, into its
    /// context), else the session's.
    fn grants(&self, cx: &RequestContext<RoleServer>) -> Option<Arc<Grants>> {
        cx.extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Principal>())
            .map(|p| p.grants.clone())
            .unwrap_or_else(|| self.grants.clone())
    }

    /// Serving calls that come through `face` (the transport).
    pub fn on(mut self, face: Face) -> Self {
        self.face = face;
        self
    }

    fn changes(&self) -> broadcast::Receiver<Change> {
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
        // On 2026-07-28 a client that names no level wants no log messages.
        (!stateless(cx)).then(|| {
            *self
                .session_log_level
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        })
    }

    /// Whether the discovery tools are offered: to all (`--tool-discovery`), or for the
    /// plugins whose manifests ask for it.
    fn discovering(&self) -> bool {
        self.manager.config().discovery || self.manager.any_discovery_plugin()
    }

    /// The tools this request's client may see and call: the server's, less those of other
    /// scopes and those that need sampling when it cannot sample.
    fn visible(&self, cx: &RequestContext<RoleServer>) -> Vec<Tool> {
        let can_sample = cx
            .client_capabilities()
            .is_some_and(|c| c.sampling.is_some());
        let registry = self.manager.registry();
        let tools = registry.tools_for(can_sample);
        let grants = self.grants(cx);
        if self.scope.is_none() && grants.is_none() {
            return (*tools).clone();
        }
        let caller = Caller {
            scope: self.scope.clone(),
            grants,
            ..Caller::new(self.face)
        };
        tools
            .iter()
            .filter(|t| {
                registry
                    .plugin_of(&t.name)
                    .is_some_and(|p| caller.allows(p, t))
            })
            .cloned()
            .collect()
    }

    /// What a handler gets to reach the client of this request.
    fn context(&self, cx: &RequestContext<RoleServer>) -> ToolContext {
        let stream = cx
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<StreamRelease>())
            .cloned();
        let context = ToolContext::new(
            cx.ct.clone(),
            Some(cx.peer.clone()),
            cx.meta.get_progress_token(),
            self.log_level(cx),
        )
        .with_capabilities(cx.client_capabilities())
        .with_stream(stream)
        .with_caller(self.caller(cx));
        // 2026-07-28 forbids requests to the client; tool calls ask through input_required.
        if stateless(cx) {
            context.deferred()
        } else {
            context
        }
    }

    /// Who sends this request: the transport, and the client's name when it gave one.
    fn caller(&self, cx: &RequestContext<RoleServer>) -> Caller {
        let caller = Caller {
            scope: self.scope.clone(),
            grants: self.grants(cx),
            ..Caller::new(self.face)
        };
        match cx.peer.peer_info() {
            Some(info) => caller.with_client(info.client_info.name.as_str()),
            None => caller,
        }
    }

    fn subscribed(&self) -> std::sync::MutexGuard<'_, HashMap<String, Watch>> {
        self.subscriptions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A signed-in user reaches the resources and prompts of the plugins their scopes open
    /// (some of) the tools of; to them the others do not exist. `plugin_of` names the plugin
    /// the request is for (`None`: nobody serves it, which the request's own answer says).
    fn hidden(
        &self,
        cx: &RequestContext<RoleServer>,
        plugin_of: impl FnOnce(&crate::plugin::Registry) -> Option<Arc<str>>,
    ) -> bool {
        let Some(grants) = self.grants(cx) else {
            return false;
        };
        plugin_of(&self.manager.registry()).is_some_and(|plugin| !grants.shows_plugin(&plugin))
    }

    /// Subscribing to something nobody serves is a mistake worth reporting.
    fn check_known(&self, uri: &str) -> Result<(), ErrorData> {
        match self.manager.registry().resolve(uri) {
            Some(_) => Ok(()),
            None => Err(ErrorData::resource_not_found(
                format!(
                    "unknown resource `{}`; see resources/list and resources/templates/list",
                    crate::plugin::clip_name(uri)
                ),
                Some(serde_json::json!({ "uri": crate::plugin::clip_name(uri) })),
            )),
        }
    }
}

/// How long a result waits for a client to reconnect to a released stream.
const RESUME_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// A 2026-07-28 request: no session, no server-to-client requests.
fn stateless(cx: &RequestContext<RoleServer>) -> bool {
    cx.protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// Forward one change to a 2025-11-25 session. False when the client has gone.
async fn push(
    peer: &Peer<RoleServer>,
    change: Change,
    subscribed: &Mutex<HashMap<String, Watch>>,
    level: &Mutex<LoggingLevel>,
) -> bool {
    let sent = match change {
        Change::Tools => peer.notify_tool_list_changed().await,
        Change::Resources => peer.notify_resource_list_changed().await,
        Change::Prompts => peer.notify_prompt_list_changed().await,
        Change::ResourceUpdated(uri) => {
            let wanted = subscribed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&uri);
            if !wanted {
                return true;
            }
            peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                .await
        }
        Change::Log(message) => {
            let min = *level.lock().unwrap_or_else(|e| e.into_inner());
            if crate::plugin::severity(message.level) < crate::plugin::severity(min) {
                return true;
            }
            peer.notify_logging_message(
                rmcp::model::LoggingMessageNotificationParam::new(message.level, message.data)
                    .with_logger(message.plugin),
            )
            .await
        }
        // Status reaches clients through list_changed when the tool set changes.
        Change::Status(_) => return true,
    };
    sent.is_ok()
}

/// The answer to a call over a limit on calls in flight.
fn too_many(where_: &str, limit: usize, setting: &str) -> CallToolResponse {
    rmcp::model::CallToolResult::error(vec![rmcp::model::ContentBlock::text(format!(
        "too many tool calls in flight {where_} (the limit is {limit}): wait for one to finish \
         and call again, or raise {setting}"
    ))])
    .into()
}

impl ServerHandler for McpHandler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_logging()
                .enable_completions()
                .enable_prompts()
                .enable_prompts_list_changed()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_resources_list_changed()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(
            Implementation::new("plugboard", env!("CARGO_PKG_VERSION")).with_title("plugboard"),
        )
        .with_instructions(
            "plugboard publishes the tools and prompts of its plugins as <plugin>_<name>, and their \
             resources under the plugins' own URIs. Tool failures come back as results with \
             isError: true and say what to change.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        if self.manager.config().discovery {
            return Ok(ListToolsResult::with_all_items(super::discovery::tools()));
        }
        // Plugins whose manifests ask for it are found through the discovery tools; the
        // others are listed as they are.
        let hidden = self.manager.discovery_plugins();
        let visible = self.visible(&cx);
        if hidden.is_empty() {
            return Ok(ListToolsResult::with_all_items(visible));
        }
        let registry = self.manager.registry();
        let mut shown: Vec<Tool> = visible
            .into_iter()
            .filter(|t| {
                registry
                    .plugin_of(&t.name)
                    .is_none_or(|p| !hidden.iter().any(|h| h == p))
            })
            .collect();
        shown.extend(super::discovery::tools());
        Ok(ListToolsResult::with_all_items(shown))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        if self.discovering() && super::discovery::is_meta(name) {
            return super::discovery::tools()
                .into_iter()
                .find(|t| t.name == name);
        }
        let registry = self.manager.registry();
        let tool = registry.get(name)?;
        let plugin = registry.plugin_of(name)?;
        self.scope
            .as_ref()
            .is_none_or(|s| s.allows(plugin, tool))
            .then(|| tool.clone())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        // Bounded: a client firing calls without waiting gets an answer, not a task each.
        let Ok(_session_slot) = self.call_slots.try_acquire() else {
            return Ok(too_many(
                "on this session",
                self.manager.config().max_calls_per_session,
                "--max-calls-per-session (PLUGBOARD_MAX_CALLS_PER_SESSION)",
            ));
        };
        let Ok(_server_slot) = self.manager.call_slots().try_acquire() else {
            return Ok(too_many(
                "on this server",
                self.manager.config().max_calls,
                "--max-calls (PLUGBOARD_MAX_CALLS)",
            ));
        };
        // Discovery: find and describe are answered here; call runs the tool it names.
        let mut request = request;
        if self.discovering() && super::discovery::is_meta(&request.name) {
            match super::discovery::handle(request, &self.visible(&cx)) {
                super::discovery::Meta::Answer(result) => return Ok(result.into()),
                super::discovery::Meta::Call(inner) => request = inner,
            }
        }
        let tool_cx = self.context(&cx);
        if stateless(&cx) {
            return Ok(self
                .manager
                .call_stateless(request, tool_cx, cx.ct.clone())
                .await);
        }
        let stream = tool_cx.stream().cloned();
        let result = self
            .manager
            .call(&request.name, request.arguments, tool_cx)
            .await;
        // A handler that released its HTTP stream: answer once the client is back.
        if let Some(stream) = stream
            && !stream.settle(RESUME_WAIT).await
        {
            tracing::warn!(tool = %request.name, "the client did not reconnect to its released stream within {} s; the result may be lost", RESUME_WAIT.as_secs());
        }
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let registry = self.manager.registry();
        let mut resources = (*registry.resources()).clone();
        if let Some(grants) = self.grants(&cx) {
            resources.retain(|r| {
                registry
                    .resource_entries
                    .get(r.uri.as_str())
                    .is_some_and(|e| grants.shows_plugin(&e.plugin))
            });
        }
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let registry = self.manager.registry();
        let grants = self.grants(&cx);
        Ok(ListResourceTemplatesResult::with_all_items(
            registry
                .templates
                .iter()
                .filter(|t| grants.as_ref().is_none_or(|g| g.shows_plugin(&t.plugin)))
                .map(|t| t.template.clone())
                .collect(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        if self.hidden(&cx, |r| r.resolve(&request.uri).map(|(p, ..)| p)) {
            return Err(ErrorData::resource_not_found(
                format!(
                    "unknown resource `{}`; see resources/list and resources/templates/list",
                    crate::plugin::clip_name(&request.uri)
                ),
                None,
            ));
        }
        let read = self.manager.read_resource(&request.uri, self.context(&cx));
        let mut read = read.await?;
        for contents in &mut read.contents {
            if let rmcp::model::ResourceContents::TextResourceContents { text, .. } = contents {
                crate::net::secret::mask_held_in(text);
            }
        }
        Ok(read.into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.check_known(&request.uri)?;
        if let std::collections::hash_map::Entry::Vacant(entry) =
            self.subscribed().entry(request.uri)
        {
            let watch = self.manager.watch(entry.key());
            entry.insert(watch);
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Unsubscribing from something not subscribed is harmless.
        self.subscribed().remove(&request.uri);
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let registry = self.manager.registry();
        let mut prompts = (*registry.prompts()).clone();
        if let Some(grants) = self.grants(&cx) {
            prompts.retain(|p| {
                registry
                    .prompt_entries
                    .get(p.name.as_str())
                    .is_some_and(|e| grants.shows_plugin(&e.plugin))
            });
        }
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let hidden = self.hidden(&cx, |r| {
            r.prompt_entries
                .get(request.name.as_str())
                .map(|e| e.plugin.clone())
        });
        if hidden {
            return Err(ErrorData::invalid_params(
                format!(
                    "unknown prompt `{}`; see prompts/list",
                    crate::plugin::clip_name(&request.name)
                ),
                None,
            ));
        }
        let prompt = self.manager.get_prompt(request, self.context(&cx));
        Ok(crate::net::secret::mask_held_serde(prompt.await?).into())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let hidden = self.hidden(&cx, |r| match &request.r#ref {
            rmcp::model::Reference::Prompt(p) => r
                .prompt_entries
                .get(p.name.as_str())
                .map(|e| e.plugin.clone()),
            rmcp::model::Reference::Resource(t) => r
                .templates
                .iter()
                .find(|e| e.template.uri_template == t.uri)
                .map(|e| e.plugin.clone()),
            _ => None,
        });
        if hidden {
            return Err(ErrorData::invalid_params(
                "nothing to complete for this caller: its plugin is not open to the token",
                None,
            ));
        }
        self.manager.complete(request, self.context(&cx)).await
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

    /// Hosted MCP servers ask for roots again.
    async fn on_roots_list_changed(&self, cx: NotificationContext<RoleServer>) {
        let client = ToolContext::new(
            tokio_util::sync::CancellationToken::new(),
            Some(cx.peer.clone()),
            None,
            Some(
                *self
                    .session_log_level
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            ),
        )
        .with_capabilities(cx.peer.peer_info().map(|info| info.capabilities.clone()));
        self.manager.roots_changed(&client);
    }

    // 2025-11-25 and older: push list changes and subscribed resource updates on the
    // session for as long as it lives.
    async fn on_initialized(&self, cx: NotificationContext<RoleServer>) {
        let mut changes = self.changes();
        let peer = cx.peer.clone();
        let subscribed = self.subscriptions.clone();
        let level = self.session_log_level.clone();
        let ended = self.ended.clone();
        tokio::spawn(async move {
            // Ends with the session (its handler dropped), when the manager is dropped, or when
            // a push finds the client gone. Waiting on changes alone kept one task (and its
            // peer) per ended session alive until the next reload — found by the soak bench.
            loop {
                let change = tokio::select! {
                    change = changes.recv() => change,
                    () = ended.cancelled() => break,
                };
                let change = match change {
                    Ok(change) => change,
                    // Missed some: say everything may have changed.
                    Err(RecvError::Lagged(_)) => Change::Tools,
                    Err(RecvError::Closed) => break,
                };
                if !push(&peer, change, &subscribed, &level).await {
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
        let mut accepted = requested.supported_by(&self.get_info().capabilities);
        // Only resources someone serves; the acknowledgement tells the client which.
        let registry = self.manager.registry();
        if let Some(uris) = accepted.resource_subscriptions.as_mut() {
            uris.retain(|uri| registry.resolve(uri).is_some());
            if uris.is_empty() {
                accepted.resource_subscriptions = None;
            }
        }
        Some(accepted)
    }

    async fn listen(&self, cx: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.changes();
        // Counted for as long as the client listens.
        let _watches: Vec<Watch> = cx
            .accepted()
            .resource_subscriptions
            .iter()
            .flatten()
            .map(|uri| self.manager.watch(uri))
            .collect();
        loop {
            tokio::select! {
                _ = cx.cancelled() => return Ok(()),
                change = changes.recv() => {
                    let change = match change {
                        Ok(change) => change,
                        Err(RecvError::Lagged(_)) => Change::Tools,
                        Err(RecvError::Closed) => return Ok(()),
                    };
                    let accepted = cx.accepted();
                    let sink = cx.sink();
                    let sent = match change {
                        Change::Tools if accepted.tools_list_changed == Some(true) => {
                            sink.notify_tool_list_changed().await
                        }
                        Change::Resources if accepted.resources_list_changed == Some(true) => {
                            sink.notify_resource_list_changed().await
                        }
                        Change::Prompts if accepted.prompts_list_changed == Some(true) => {
                            sink.notify_prompt_list_changed().await
                        }
                        Change::ResourceUpdated(uri)
                            if accepted
                                .resource_subscriptions
                                .as_ref()
                                .is_some_and(|uris| uris.contains(&uri)) =>
                        {
                            sink.notify_resource_updated(uri).await
                        }
                        _ => Ok(()),
                    };
                    sent.map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
                }
            }
        }
    }
}
