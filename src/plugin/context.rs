//! What a handler can reach while it runs: progress, client logging, cancellation, and the
//! client itself — sampling (ask the client's model) and elicitation (ask the user).
//!
//! The same calls work on both protocol generations. On 2025-11-25 sessions a sampling or
//! elicitation request goes to the client at once. On 2026-07-28, where a server may not send
//! requests, the call is suspended: the client receives an `input_required` result, answers,
//! and retries with the answers; the handler then continues where it stopped (see `call.rs`).
#![allow(deprecated)] // rmcp marks logging and sampling deprecated (SEP-2577); clients use them.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use rmcp::{
    Peer, RoleServer,
    model::{
        ClientCapabilities, CreateMessageRequest, CreateMessageRequestParams, CreateMessageResult,
        ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationSchema, InputRequest,
        ListRootsRequest, ListRootsResult, LoggingLevel, LoggingMessageNotificationParam,
        ProgressNotificationParam, ProgressToken,
    },
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Caller, Face, ToolError};

/// Handed to every tool call, resource read and prompt. Cheap to clone. Outside an MCP session
/// (the CLI's `call`) it has no client: progress and logs go to the tracing log, and sampling
/// or elicitation fail with a message saying so.
#[derive(Clone)]
pub struct ToolContext {
    /// Fires when the client cancels the request or the call times out.
    ct: CancellationToken,
    /// Who to talk to. Replaced when a suspended 2026-07-28 call resumes on a new request.
    link: Arc<Mutex<Link>>,
    /// How requests to the client travel.
    route: Route,
    /// Time spent waiting for the client or the user; it does not count against the timeout.
    waiting: Arc<Mutex<Waiting>>,
    /// The plugin's name, used as the logger name in client log messages.
    plugin: Arc<str>,
    stream: Option<StreamRelease>,
    /// Where progress goes when there is no client (the CLI's progress bar).
    sink: Option<ProgressSink>,
    /// Where an answer being written goes, piece by piece, when someone shows it live (the
    /// CLI's `ask`). MCP has no partial tool results, so sessions have none.
    text: Option<TextSink>,
    /// When the call started and how long it may run (set by the call driver).
    budget: Option<(Instant, Duration)>,
    /// Who is calling: the face, the client, what it may see.
    caller: Caller,
    /// Set once a notification could not be delivered in time: the rest are skipped.
    muted: Arc<std::sync::atomic::AtomicBool>,
}

/// How long a notification (progress, log) may hold a tool up. rmcp's send waits until the
/// session has written it, and a session being closed writes nothing until its drain ends
/// (seconds): a tool that logs each step would stall that long, its call slot held (found by
/// the soak bench).
const NOTIFY_WAIT: Duration = Duration::from_millis(500);

/// Receives an answer as it is written.
pub type TextSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Receives progress reports outside a client session: (progress, total, message).
pub type ProgressSink = Arc<dyn Fn(f64, Option<f64>, &str) + Send + Sync>;

/// The request's side of the conversation.
#[derive(Clone, Default)]
pub(crate) struct Link {
    pub peer: Option<Peer<RoleServer>>,
    /// Present only when the client asked for progress on this request.
    pub progress_token: Option<ProgressToken>,
    /// The least severe level the client wants; `None` means it wants no log messages.
    pub log_level: Option<LoggingLevel>,
    /// What the client said it can do (sampling, elicitation, ...).
    pub capabilities: Option<ClientCapabilities>,
}

#[derive(Clone)]
enum Route {
    /// No client (CLI, benchmarks).
    None,
    /// A 2025-11-25 session: send requests on the peer.
    Peer,
    /// 2026-07-28: hand the request to the call driver, which returns `input_required`.
    /// The channel is set when the call starts.
    Deferred(Option<mpsc::Sender<Ask>>),
}

/// A request for the client that has to travel as an `input_required` result.
pub(crate) struct Ask {
    pub request: InputRequest,
    pub reply: oneshot::Sender<serde_json::Value>,
}

#[derive(Default)]
struct Waiting {
    total: Duration,
    since: Option<Instant>,
}

impl ToolContext {
    /// A context for a request from a client session.
    pub fn new(
        ct: CancellationToken,
        peer: Option<Peer<RoleServer>>,
        progress_token: Option<ProgressToken>,
        log_level: Option<LoggingLevel>,
    ) -> Self {
        let route = if peer.is_some() {
            Route::Peer
        } else {
            Route::None
        };
        let capabilities = peer
            .as_ref()
            .and_then(|p| p.peer_info().map(|i| i.capabilities.clone()));
        Self {
            ct,
            link: Arc::new(Mutex::new(Link {
                peer,
                progress_token,
                log_level,
                capabilities,
            })),
            route,
            waiting: Arc::default(),
            plugin: Arc::from(""),
            stream: None,
            sink: None,
            text: None,
            budget: None,
            caller: Caller::default(),
            muted: Arc::default(),
        }
    }

    /// Send a notification best-effort: skipped once one was not delivered in time, and never
    /// waited for longer than [`NOTIFY_WAIT`] or past the call's cancellation.
    async fn notify(
        &self,
        peer: &Peer<RoleServer>,
        send: impl std::future::Future<Output = Result<(), rmcp::service::ServiceError>>,
    ) {
        use std::sync::atomic::Ordering;
        if self.muted.load(Ordering::Relaxed) || peer.is_transport_closed() {
            return;
        }
        tokio::select! {
            sent = send => {
                if let Err(e) = sent {
                    tracing::debug!(error = %e, "notification not delivered");
                }
            }
            () = tokio::time::sleep(NOTIFY_WAIT) => {
                tracing::debug!("notification not delivered in time; skipping the rest");
                self.muted.store(true, Ordering::Relaxed);
            }
            () = self.ct.cancelled() => {}
        }
    }

    /// Who is calling (the face, the client, the tools it may see).
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    pub fn with_caller(mut self, caller: Caller) -> Self {
        self.caller = caller;
        self
    }

    /// A context for a call this call makes on its own behalf through `face` (a model's tool
    /// call inside `ask`): cancelled with this one, the same client and scope, but no way to
    /// reach the client — it must not send progress or requests for the outer call, and
    /// sampling or elicitation there say so.
    pub fn inner(&self, face: Face) -> Self {
        let caller = Caller {
            face,
            ..self.caller.clone()
        };
        Self::new(self.ct.child_token(), None, None, None).with_caller(caller)
    }

    /// Send progress to `sink` (for calls without a client, like the CLI's).
    pub fn with_progress_sink(mut self, sink: ProgressSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Show answers as they are written (see [`TextSink`]).
    pub fn with_text_sink(mut self, sink: TextSink) -> Self {
        self.text = Some(sink);
        self
    }

    /// Where to write an answer as it arrives, if anyone is watching.
    pub fn text_sink(&self) -> Option<&TextSink> {
        self.text.as_ref()
    }

    /// A context for calls made outside a client session (CLI, benchmarks).
    pub fn detached() -> Self {
        Self::new(CancellationToken::new(), None, None, None)
    }

    /// What the client declared it supports, when the transport tells (2026-07-28 requests
    /// carry it; sessions have it from `initialize`).
    pub fn with_capabilities(self, capabilities: Option<ClientCapabilities>) -> Self {
        if capabilities.is_some() {
            self.lock().capabilities = capabilities;
        }
        self
    }

    /// Lets a long-running handler release the client's HTTP stream (see [`Self::release_stream`]).
    pub(crate) fn with_stream(mut self, stream: Option<StreamRelease>) -> Self {
        self.stream = stream;
        self
    }

    /// Send client requests to the call driver (2026-07-28) instead of the peer.
    pub(crate) fn deferred(mut self) -> Self {
        self.route = Route::Deferred(None);
        self
    }

    /// Give a deferred context the channel of the call it belongs to.
    pub(crate) fn rerouted(mut self, asks: mpsc::Sender<Ask>) -> Self {
        if let Route::Deferred(_) = self.route {
            self.route = Route::Deferred(Some(asks));
        }
        self
    }

    /// The same context with its own cancellation token, for a call that may outlive the
    /// request that started it.
    pub(crate) fn fresh_cancellation(mut self) -> Self {
        self.ct = CancellationToken::new();
        self
    }

    /// The call may run for `timeout` from now (time spent waiting for the client excluded).
    pub(crate) fn with_budget(mut self, timeout: Duration) -> Self {
        self.budget = Some((Instant::now(), timeout));
        self
    }

    /// How much longer this call may run before it is stopped, if it has a limit. A handler
    /// about to wait (a rate limit) checks this and says so plainly instead of timing out.
    pub fn time_left(&self) -> Option<Duration> {
        let (started, timeout) = self.budget?;
        let (waited, _) = self.waited();
        Some(timeout.saturating_sub(started.elapsed().saturating_sub(waited)))
    }

    pub(crate) fn for_plugin(mut self, plugin: Arc<str>) -> Self {
        self.plugin = plugin;
        self
    }

    /// Point a suspended call at the request that resumes it.
    pub(crate) fn relink(&self, link: Link) {
        *self.lock() = link;
    }

    pub(crate) fn link(&self) -> Link {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn cancellation(&self) -> &CancellationToken {
        &self.ct
    }

    pub fn is_cancelled(&self) -> bool {
        self.ct.is_cancelled()
    }

    /// Report progress, if the client asked for it. Never fails the call.
    pub async fn progress(&self, progress: f64, total: Option<f64>, message: impl Into<String>) {
        let mut message = message.into();
        crate::net::secret::mask_held_in(&mut message);
        if let Some(sink) = &self.sink {
            sink(progress, total, &message);
            return;
        }
        let Link {
            peer: Some(peer),
            progress_token: Some(token),
            ..
        } = self.link()
        else {
            return;
        };
        let mut param = ProgressNotificationParam::new(token, progress).with_message(message);
        if let Some(total) = total {
            param = param.with_total(total);
        }
        self.notify(&peer, peer.notify_progress(param)).await;
    }

    /// Send a log message to the client, if it asked for messages at this level.
    pub async fn log(&self, level: LoggingLevel, mut data: serde_json::Value) {
        crate::net::secret::mask_held_json(&mut data);
        let link = self.link();
        let wanted = link
            .log_level
            .is_some_and(|min| severity(level) >= severity(min));
        match (&link.peer, wanted) {
            (Some(peer), true) => {
                let param = LoggingMessageNotificationParam::new(level, data)
                    .with_logger(self.plugin.to_string());
                self.notify(peer, peer.notify_logging_message(param)).await;
            }
            (None, _) => tracing::info!(plugin = %self.plugin, ?level, %data, "tool log"),
            _ => {}
        }
    }

    /// Ask the client's model for a completion (`sampling/createMessage`). The client shows
    /// the request to its user and may refuse; that comes back as an error.
    pub async fn sample(
        &self,
        params: CreateMessageRequestParams,
    ) -> Result<CreateMessageResult, ToolError> {
        let declared = self.capabilities().map(|c| c.sampling.is_some());
        let deferred = InputRequest::CreateMessage(CreateMessageRequest::new(params.clone()));
        self.ask_client(
            Asking {
                what: "sampling",
                declared,
                without: "so the tool cannot ask its model",
            },
            move |peer| async move { peer.create_message(params).await },
            deferred,
        )
        .await
    }

    /// Ask the user for structured input (`elicitation/create`, form mode). `schema` is the
    /// requested schema: an object of primitive properties, as the MCP spec restricts it.
    /// The result says whether the user accepted, declined or cancelled.
    pub async fn elicit(
        &self,
        message: impl Into<String>,
        schema: serde_json::Value,
    ) -> Result<ElicitResult, ToolError> {
        if self.capabilities().is_some_and(|c| c.elicitation.is_none()) {
            return Err(unsupported("elicitation", ELICIT_WITHOUT));
        }
        let requested_schema: ElicitationSchema = serde_json::from_value(schema).map_err(|e| {
            ToolError::Failed(format!(
                "the plugin's elicitation schema is not one MCP allows: {e}"
            ))
        })?;
        let params = ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: message.into(),
            requested_schema,
        };
        self.elicit_request(params).await
    }

    /// Ask the user through the client with an elicitation request as given (form or URL
    /// mode): for relaying an upstream MCP server's own request.
    pub async fn elicit_request(
        &self,
        params: ElicitRequestParams,
    ) -> Result<ElicitResult, ToolError> {
        let declared = self.capabilities().map(|c| c.elicitation.is_some());
        let deferred = InputRequest::Elicitation(ElicitRequest::new(params.clone()));
        self.ask_client(
            Asking {
                what: "elicitation",
                declared,
                without: ELICIT_WITHOUT,
            },
            move |peer| async move { peer.create_elicitation(params).await },
            deferred,
        )
        .await
    }

    /// The client's roots (`roots/list`): the folders its user has opened.
    pub async fn roots(&self) -> Result<ListRootsResult, ToolError> {
        let declared = self.capabilities().map(|c| c.roots.is_some());
        self.ask_client(
            Asking {
                what: "roots",
                declared,
                without: "so its roots cannot be listed",
            },
            |peer| async move { peer.list_roots().await },
            InputRequest::ListRoots(ListRootsRequest::default()),
        )
        .await
    }

    /// Ask the client something (sampling, elicitation, roots): on a session, as a request
    /// to it (the call's clock stopped while a person answers); on a stateless request, as
    /// the input the call returns for; refused when the client did not declare the
    /// capability.
    async fn ask_client<T, F>(
        &self,
        asking: Asking,
        direct: impl FnOnce(Peer<RoleServer>) -> F,
        deferred: InputRequest,
    ) -> Result<T, ToolError>
    where
        T: serde::de::DeserializeOwned,
        F: Future<Output = Result<T, rmcp::service::ServiceError>>,
    {
        let Asking {
            what,
            declared,
            without,
        } = asking;
        if declared == Some(false) {
            return Err(unsupported(what, without));
        }
        match &self.route {
            Route::None => Err(self.no_client(what)),
            Route::Deferred(None) => Err(only_tools(what)),
            Route::Peer => {
                let peer = self.link().peer.ok_or_else(|| self.no_client(what))?;
                self.waiting_for_client(direct(peer))
                    .await
                    .map_err(|e| ToolError::Failed(format!("the client refused {what}: {e}")))
            }
            Route::Deferred(Some(asks)) => {
                let answer = self.defer(asks, deferred).await?;
                serde_json::from_value(answer).map_err(|e| {
                    ToolError::Failed(format!("the client's {what} answer is malformed: {e}"))
                })
            }
        }
    }

    /// End the client's HTTP response stream now; the call keeps running, and the client
    /// reconnects (`GET` with `Last-Event-ID`, after the `retry` the server announced) to
    /// receive what follows, the result included. For long-running work over Streamable
    /// HTTP sessions (SEP-1699 polling). Returns false where there is no such stream (stdio,
    /// legacy SSE, stateless requests, plain JSON responses): then nothing changes.
    pub async fn release_stream(&self) -> bool {
        match &self.stream {
            Some(stream) => stream.release().await,
            None => false,
        }
    }

    pub(crate) fn stream(&self) -> Option<&StreamRelease> {
        self.stream.as_ref()
    }

    fn capabilities(&self) -> Option<ClientCapabilities> {
        self.lock().capabilities.clone()
    }

    /// Whether a client is there that said it can sample (answer `sampling/createMessage`).
    pub fn client_can_sample(&self) -> bool {
        !matches!(self.route, Route::None)
            && self.capabilities().is_some_and(|c| c.sampling.is_some())
    }

    async fn defer(
        &self,
        asks: &mpsc::Sender<Ask>,
        request: InputRequest,
    ) -> Result<serde_json::Value, ToolError> {
        let (reply, answer) = oneshot::channel();
        asks.send(Ask { request, reply })
            .await
            .map_err(|_| ToolError::Failed("the call ended while asking the client".into()))?;
        self.waiting_for_client(answer)
            .await
            .map_err(|_| ToolError::Failed("the client did not answer".into()))
    }

    /// Run `wait` with the timeout clock stopped: a person answering a form is not a slow tool.
    async fn waiting_for_client<T>(&self, wait: impl Future<Output = T>) -> T {
        self.pause(true);
        let out = wait.await;
        self.pause(false);
        out
    }

    pub(crate) fn pause(&self, on: bool) {
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        match (on, w.since) {
            (true, None) => w.since = Some(Instant::now()),
            (false, Some(since)) => {
                w.total += since.elapsed();
                w.since = None;
            }
            _ => {}
        }
    }

    /// How long the call has waited for the client so far, and whether it is waiting now.
    pub(crate) fn waited(&self) -> (Duration, bool) {
        let w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let now = w.since.map(|s| s.elapsed()).unwrap_or_default();
        (w.total + now, w.since.is_some())
    }
}

/// The HTTP response stream a request is answered on, for handlers that release it early.
/// Made by the HTTP layer, which owns the stream.
pub trait StreamControl: Send + Sync {
    /// End the stream now, keeping the request running; false if this stream cannot be
    /// resumed (then nothing changes).
    fn release(&self) -> BoxFuture<'static, bool>;
    /// Whether [`StreamControl::release`] ended the stream.
    fn released(&self) -> bool;
    /// Completes when the client has reconnected to a released stream (or after `max`).
    fn resumed(&self, max: Duration) -> BoxFuture<'static, bool>;
}

#[derive(Clone)]
pub struct StreamRelease(pub Arc<dyn StreamControl>);

impl StreamRelease {
    pub async fn release(&self) -> bool {
        self.0.release().await
    }

    /// If the stream was released, wait (at most `max`) for the client to come back, so
    /// that the result is not sent while nobody listens. True when it is safe to answer.
    pub async fn settle(&self, max: Duration) -> bool {
        !self.0.released() || self.0.resumed(max).await
    }
}

fn unsupported(what: &str, without: &str) -> ToolError {
    ToolError::Failed(format!(
        "this client does not support {what} (it did not declare the `{what}` capability), \
         {without}"
    ))
}

const ELICIT_WITHOUT: &str = "so the tool cannot ask the user";

/// What [`ToolContext::ask_client`] asks for, and whether the client said it can answer.
struct Asking {
    what: &'static str,
    /// `None`: the client's capabilities are not known (the request is sent anyway).
    declared: Option<bool>,
    /// What the tool cannot do without it, for the error.
    without: &'static str,
}

fn only_tools(what: &str) -> ToolError {
    ToolError::Failed(format!(
        "{what} is available to tools only on protocol 2026-07-28 (through input_required); \
         this request cannot ask the client"
    ))
}

impl ToolContext {
    /// Why `what` cannot be done on a call that has no client to ask, naming the face.
    fn no_client(&self, what: &str) -> ToolError {
        let how = match self.caller.face {
            Face::Agent => "it was made by a model inside `ask`, which has no client to ask",
            Face::Cli => "it was made from the command line, which has no MCP client",
            Face::Rest => "it was made through the REST API, which has no MCP client",
            Face::Dashboard => "it was made from the dashboard, which has no MCP client",
            Face::Stdio | Face::Http | Face::Sse => "its client connection cannot carry requests",
        };
        ToolError::Failed(format!(
            "{what} needs an MCP client that can answer it; {how}"
        ))
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
