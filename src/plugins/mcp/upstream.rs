//! One upstream MCP server over stdio: started, initialized, its tools published, watched.
//!
//! A supervisor task owns the connection. When the child exits (or its pipe closes) the tools
//! stay listed and answer an error that says the server is restarting and why it stopped (its
//! last stderr lines); the supervisor starts it again after a back-off (1 s doubling to 30 s,
//! reset once it has served a minute) and publishes its tools afresh. Stopping the plugin
//! kills the child's whole process group.
//!
//! One file on purpose, for now: the supervisor, the relay of requests and of progress, and
//! the client handler that answers the upstream all work on one `Shared` state and its
//! invariants (a call is registered before it is sent and forgotten when it ends; progress
//! read before an answer goes out before it). Its seams, for the split this file is due:
//! the progress relay (`ProgressRelay`, `Ordered`, `forward_progress`), the client handler
//! (`Client`), and the lazy-start cache (`cache_path`, `read_cache`, `write_cache`).

#![allow(deprecated)] // rmcp marks sampling, roots and logging deprecated (SEP-2577); upstreams use them.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use futures::future::BoxFuture;
use rmcp::{
    ClientHandler, ErrorData, ServiceExt,
    model::{
        ArgumentInfo, CallToolRequestParams, CancelledNotificationParam, ClientCapabilities,
        ClientConfig, ClientRequest, CompleteRequestParams, CompletionContext,
        CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult,
        ErrorCode, GetPromptRequestParams, Implementation, ListRootsResult,
        LoggingMessageNotificationParam, NumberOrString, ProgressNotificationParam, ProgressToken,
        Prompt, ReadResourceRequestParams, Reference, Request, Resource, ResourceTemplate,
        ResourceTemplateReference, ResourceUpdatedNotificationParam, ServerResult,
        SubscribeRequestParams, Tool, UnsubscribeRequestParams,
    },
    service::{
        NotificationContext, Peer, PeerRequestOptions, RequestContext, RoleClient, RunningService,
        ServiceError,
    },
    transport::TokioChildProcess,
};
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

use super::{McpConfig, expand, names};
use crate::{
    net::Secrets,
    plugin::{
        Completion, Manifest, Plugin, PluginError, PluginEvents, PluginSetup, PromptDef,
        ResourceDef, TemplateDef, ToolContext, ToolDef, ToolError,
    },
};

/// The variables a child inherits from plugboard (as Claude Desktop passes them).
const INHERITED: [&str; 12] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TMPDIR",
    "TZ",
    "XDG_RUNTIME_DIR",
];

/// Lines of the child's stderr kept for the status and errors.
const STDERR_LINES: usize = 20;
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Serving this long resets the back-off.
const HEALTHY: Duration = Duration::from_secs(60);
/// How often a server is pinged by default, and the longest it has to answer.
const PING_EVERY: Duration = Duration::from_secs(30);
const PING_TIMEOUT_MAX: Duration = Duration::from_secs(10);
/// How long `plugboard serve` waits for a server to start before serving without it (its
/// tools join when it is up).
const STARTUP_GRACE: Duration = Duration::from_secs(2);

/// How the child is started (resolved once, at start).
struct Launch {
    /// A remote server instead of a child.
    remote: Option<super::remote::Remote>,
    /// How often the server is pinged (none: never).
    ping: Option<Duration>,
    program: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: PathBuf,
    init_timeout: Duration,
}

/// The upstream's state, shared by the plugin, its tools and the supervisor.
struct Shared {
    plugin: String,
    config: McpConfig,
    /// Room for a local tool name (64 less the prefix and its `_`).
    room: usize,
    /// The live connection, or why there is none.
    peer: RwLock<Result<Peer<RoleClient>, String>>,
    tools: RwLock<Vec<ToolDef>>,
    resources: RwLock<Vec<ResourceDef>>,
    templates: RwLock<Vec<TemplateDef>>,
    prompts: RwLock<Vec<PromptDef>>,
    stderr: Mutex<VecDeque<String>>,
    /// The values given to the child: masked out of what its stderr says.
    secrets: Secrets,
    events: PluginEvents,
    stop: CancellationToken,
    /// The running child's process group (its pid: it leads the group).
    group: Mutex<Option<u32>>,
    /// Calls in flight by the progress token sent upstream: the upstream's progress goes to
    /// the client that made the call.
    calls: Mutex<HashMap<String, ToolContext>>,
    /// The upstream's progress, passed on in order.
    progress: Arc<ProgressRelay>,
    /// Set while the server is down and being started again, for the plugin's status.
    condition: Mutex<Option<Condition>>,
    /// Lazy and not started yet: the first request wakes the supervisor.
    dormant: std::sync::atomic::AtomicBool,
    wake: tokio::sync::Notify,
    /// Notified each time a connection is made.
    connected: tokio::sync::Notify,
    /// Where the tools a lazy server listed last are kept.
    cache: Option<PathBuf>,
    init_timeout: Duration,
    /// Requests being relayed, oldest first: the upstream's own requests (sampling,
    /// elicitation, roots) and its log messages go to the client of the latest.
    active: Active,
    /// Requests relayed over Streamable HTTP, for the response streams the server releases.
    releases: Arc<super::remote::Releases>,
    /// The upstream's resources some client is subscribed to: subscribed upstream now, and
    /// again after each reconnection.
    watched: Mutex<std::collections::BTreeSet<String>>,
    /// The client that last said its roots changed: whose roots the server gets when it asks
    /// with no call in flight.
    roots_from: Mutex<Option<ToolContext>>,
}

/// A server that is down: which attempt to start it comes next, when, and why it went.
struct Condition {
    attempt: u32,
    next: tokio::time::Instant,
    why: String,
}

/// The clients of the requests being relayed to the upstream, in the order they came.
#[derive(Default)]
struct Active {
    next: std::sync::atomic::AtomicU64,
    by_order: Mutex<BTreeMap<u64, ToolContext>>,
}

impl Active {
    fn register(&self, cx: ToolContext) -> Registered<'_> {
        let order = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.by_order
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(order, cx);
        Registered {
            active: self,
            order,
        }
    }

    /// The client of the request relayed last, if one is in flight. MCP links a server's
    /// request to the client request it serves on HTTP streams only (never on stdio), so
    /// with several in flight the latest is the best guess.
    fn latest(&self) -> Option<ToolContext> {
        self.by_order
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_key_value()
            .map(|(_, cx)| cx.clone())
    }
}

/// Removes a relayed request from [`Active`] when it ends.
struct Registered<'a> {
    active: &'a Active,
    order: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.active
            .by_order
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.order);
    }
}

/// The upstream's progress notifications, passed on in the order they arrived.
///
/// rmcp hands each notification to a task of its own, so two of them can reach a handler in
/// either order, and a call's last progress can reach its client after the result (whose
/// token is dead by then). So progress is taken off the transport as it is read
/// ([`Ordered`]) and forwarded by one task, in order; a call's answer, read after its
/// progress, waits until what was read before it has gone out.
#[derive(Default)]
struct ProgressRelay {
    /// Read from the transport so far.
    read: std::sync::atomic::AtomicU64,
    /// Passed on (or dropped, for a call that has ended) so far.
    sent: std::sync::atomic::AtomicU64,
    caught_up: tokio::sync::Notify,
}

impl ProgressRelay {
    /// Wait until everything read so far has been passed on; bounded, so that a client
    /// that does not read cannot hold the call.
    async fn catch_up(&self) {
        let target = self.read.load(std::sync::atomic::Ordering::SeqCst);
        let wait = async {
            loop {
                let notified = self.caught_up.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.sent.load(std::sync::atomic::Ordering::SeqCst) >= target {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
    }
}

/// A transport whose progress notifications go to the [`ProgressRelay`]'s queue, in the
/// order they are read, instead of to rmcp's handler tasks.
struct Ordered<T> {
    inner: T,
    relay: Arc<ProgressRelay>,
    queue: tokio::sync::mpsc::UnboundedSender<ProgressNotificationParam>,
}

impl<T: rmcp::transport::Transport<RoleClient>> rmcp::transport::Transport<RoleClient>
    for Ordered<T>
{
    type Error = T::Error;

    fn send(
        &mut self,
        item: rmcp::service::TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<rmcp::service::RxJsonRpcMessage<RoleClient>> {
        loop {
            let message = self.inner.receive().await?;
            if let rmcp::model::JsonRpcMessage::Notification(n) = &message
                && let rmcp::model::ServerNotification::ProgressNotification(p) = &n.notification
            {
                self.relay
                    .read
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = self.queue.send(p.params.clone());
                continue;
            }
            return Some(message);
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// Pass the upstream's progress on to the clients of the calls it is about, in order.
async fn forward_progress(
    shared: Arc<Shared>,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<ProgressNotificationParam>,
) {
    let relay = shared.progress.clone();
    let sent = |relay: &ProgressRelay| {
        relay.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        relay.caught_up.notify_waiters();
    };
    while let Some(params) = queue.recv().await {
        let token = token_key(&params.progress_token);
        let cx = shared
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&token)
            .cloned();
        if let Some(cx) = cx {
            cx.progress(
                params.progress,
                params.total,
                params.message.unwrap_or_default(),
            )
            .await;
        }
        sent(&relay);
    }
    // The connection is gone: what it read and did not pass on never will be.
    relay.sent.store(
        relay.read.load(std::sync::atomic::Ordering::SeqCst),
        std::sync::atomic::Ordering::SeqCst,
    );
    relay.caught_up.notify_waiters();
}

/// A progress token as a map key.
fn token_key(token: &ProgressToken) -> String {
    match &token.0 {
        NumberOrString::Number(n) => n.to_string(),
        NumberOrString::String(s) => format!("s:{s}"),
    }
}

/// Tells the upstream to stop a call whose caller went away (dropped unless disarmed).
struct Abandon {
    peer: Option<Peer<RoleClient>>,
    id: rmcp::model::RequestId,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(peer) = self.peer.take() {
            let id = self.id.clone();
            tokio::spawn(async move {
                let _ = peer
                    .notify_cancelled(CancelledNotificationParam::new(
                        Some(id),
                        Some("the client cancelled the call".into()),
                    ))
                    .await;
            });
        }
    }
}

/// Forgets a call's progress token when the call ends (or is dropped: cancelled, timed out).
struct InFlight<'a> {
    shared: &'a Shared,
    token: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.shared
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.token);
    }
}

impl Shared {
    fn set_condition(&self, condition: Option<Condition>) {
        *self.condition.lock().unwrap_or_else(|e| e.into_inner()) = condition;
    }

    /// The connection, or an error saying the server is down and being started again.
    async fn connection(&self) -> Result<Peer<RoleClient>, ToolError> {
        let connected = self.connected.notified();
        tokio::pin!(connected);
        connected.as_mut().enable();
        // A lazy server starts with its first request.
        if self
            .dormant
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            self.wake.notify_one();
        }
        // Starting for the first time (on first use, or still when serving began): the
        // request waits for it, as long as it has to answer `initialize`.
        let starting = self.peer.read().unwrap_or_else(|e| e.into_inner()).is_err()
            && self
                .condition
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_some_and(|c| c.attempt == 0);
        if starting {
            let _ =
                tokio::time::timeout(self.init_timeout + Duration::from_secs(1), connected).await;
        }
        let peer = self.peer.read().unwrap_or_else(|e| e.into_inner()).clone();
        peer.map_err(|why| {
            let why = self.condition().unwrap_or(why);
            ToolError::Upstream(format!(
                "the MCP server of plugin {} is not running ({why}); it is being started \
                 again, try again shortly",
                self.plugin
            ))
        })
    }

    /// `restarting (attempt 3, next in 8 s): why`, while the server is being started again.
    fn condition(&self) -> Option<String> {
        let condition = self.condition.lock().unwrap_or_else(|e| e.into_inner());
        condition.as_ref().map(|c| {
            let left = c
                .next
                .saturating_duration_since(tokio::time::Instant::now());
            let when = if left.is_zero() {
                "starting now".to_owned()
            } else {
                format!("next in {} s", left.as_secs_f64().ceil())
            };
            if self.dormant.load(std::sync::atomic::Ordering::SeqCst) {
                "idle (lazy: the server starts with the first request)".to_owned()
            } else if c.attempt == 0 {
                "starting: waiting for the server to answer initialize".to_owned()
            } else {
                format!("restarting (attempt {}, {when}): {}", c.attempt, c.why)
            }
        })
    }

    /// Send `request` upstream for `cx`'s client and wait for the answer. The upstream's
    /// progress goes to that client; if the caller goes away first (the client cancelled,
    /// the call timed out), the upstream is told to stop.
    async fn relay(
        &self,
        request: ClientRequest,
        cx: ToolContext,
        what: &str,
    ) -> Result<ServerResult, ToolError> {
        let peer = self.connection().await?;
        let _active = self.active.register(cx.clone());
        let handle = peer
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await
            .map_err(|e| self.failure(what, e))?;
        let _released = self.releases.register(handle.id.clone(), cx.clone());
        let token = token_key(&handle.progress_token);
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.clone(), cx);
        let _in_flight = InFlight {
            shared: self,
            token,
        };
        let mut abandon = Abandon {
            peer: Some(peer.clone()),
            id: handle.id.clone(),
        };
        let answer = handle.await_response().await;
        abandon.peer = None;
        // The progress read before the answer goes out before it (the client's token is
        // dead once the result is sent).
        self.progress.catch_up().await;
        answer.map_err(|e| self.failure(what, e))
    }

    /// What the client is told when a relayed request failed.
    fn failure(&self, what: &str, e: ServiceError) -> ToolError {
        match e {
            ServiceError::TransportClosed => ToolError::Upstream(format!(
                "the MCP server of plugin {} is not running (it stopped during the call); it \
                 is being started again, try again shortly",
                self.plugin
            )),
            // The connection failed on this request: say how (an answer past the size
            // limit, one that is not JSON, …).
            ServiceError::TransportSend(e) => ToolError::Upstream(format!(
                "the MCP server of plugin {} is not running (the connection failed during the \
                 call: {}); it is being started again, try again shortly",
                self.plugin,
                clip(&tidy(&e.to_string()), 300)
            )),
            // The upstream's own word on what was wrong with the request.
            ServiceError::McpError(e) if e.code == ErrorCode::INVALID_PARAMS => {
                ToolError::InvalidArguments(format!("{what}: {}", e.message))
            }
            ServiceError::McpError(e) if e.code == ErrorCode::RESOURCE_NOT_FOUND => {
                ToolError::NotFound(format!("{what}: {}", e.message))
            }
            ServiceError::McpError(e) => {
                ToolError::Upstream(format!("{}: {what} failed: {}", self.plugin, e.message))
            }
            e => ToolError::Upstream(format!("{}: {what} failed: {e}", self.plugin)),
        }
    }

    /// Kill what is left of the child's process group (grandchildren a server started, or
    /// a child that would not stop).
    fn kill_group(&self) {
        if let Some(pid) = self.group.lock().unwrap_or_else(|e| e.into_inner()).take()
            && let Some(pid) = rustix::process::Pid::from_raw(pid as i32)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

pub struct Upstream {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Upstream {
    pub async fn start(setup: PluginSetup) -> Result<Self, PluginError> {
        let config: McpConfig = setup
            .kind_table()?
            .ok_or_else(|| PluginError::Init("no [mcp] table".into()))?;
        config.validate().map_err(PluginError::Init)?;
        let manifest = Manifest::parse(&setup.manifest_path, &setup.manifest_source)?;
        let prefix = manifest
            .prefix
            .clone()
            .unwrap_or_else(|| manifest.name.clone());
        let room = if prefix.is_empty() {
            64
        } else {
            64usize.saturating_sub(prefix.len() + 1)
        };
        let lookup = |name: &str| {
            setup
                .env
                .get(name)
                .cloned()
                .or_else(|| std::env::var(name).ok())
        };
        let mut env = BTreeMap::new();
        for (key, value) in &config.env {
            let value = expand(value, lookup)
                .map_err(|e| PluginError::Init(format!("[mcp] env.{key}: {e}")))?;
            env.insert(key.clone(), value);
        }
        let mut headers = BTreeMap::new();
        for (key, value) in &config.headers {
            let value = expand(value, lookup)
                .map_err(|e| PluginError::Init(format!("[mcp] headers.{key}: {e}")))?;
            headers.insert(key.clone(), value);
        }
        let remote = match &config.url {
            Some(url) => Some(
                super::remote::Remote::new(url, &headers, config.transport)
                    .map_err(PluginError::Init)?,
            ),
            None => None,
        };
        let command = config.command.clone().unwrap_or_default();
        let program = if command.contains('/') {
            setup.dir.join(&command)
        } else {
            PathBuf::from(&command)
        };
        let launch = Launch {
            ping: match config.ping_secs {
                Some(s) if s <= 0.0 => None,
                Some(s) => Duration::try_from_secs_f64(s).ok(),
                None => Some(PING_EVERY),
            },
            remote,
            program,
            args: config.args.clone(),
            cwd: config
                .cwd
                .as_ref()
                .map_or_else(|| setup.dir.clone(), |c| setup.dir.join(c)),
            init_timeout: config
                .init_timeout_secs
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(30)),
            env,
        };
        // A token in a header may be all of the value or follow `Bearer `: both are masked.
        let bearer: Vec<String> = headers
            .values()
            .filter_map(|v| v.split_once(' ').map(|(_, t)| t.to_owned()))
            .collect();
        let secrets = Secrets::new(
            launch
                .env
                .values()
                .chain(headers.values())
                .chain(&bearer)
                .filter(|v| v.len() >= 8)
                .map(|v| secrecy::SecretString::from(v.clone())),
        );
        let cache = config.lazy.then(|| cache_path(&setup.name, &config));
        let shared = Arc::new(Shared {
            plugin: setup.name.clone(),
            config,
            room,
            peer: RwLock::new(Err("starting".into())),
            tools: RwLock::new(Vec::new()),
            resources: RwLock::new(Vec::new()),
            templates: RwLock::new(Vec::new()),
            prompts: RwLock::new(Vec::new()),
            stderr: Mutex::new(VecDeque::new()),
            secrets,
            events: setup.events.clone(),
            stop: CancellationToken::new(),
            group: Mutex::new(None),
            calls: Mutex::new(HashMap::new()),
            progress: Arc::default(),
            active: Active::default(),
            releases: Arc::default(),
            watched: Mutex::default(),
            roots_from: Mutex::default(),
            condition: Mutex::new(None),
            dormant: std::sync::atomic::AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            connected: tokio::sync::Notify::new(),
            cache,
            init_timeout: launch.init_timeout,
        });
        // Lazy, with the tools of an earlier run: published now, the server started on first
        // use. Without them, it starts now, to learn them.
        if let Some(tools) = shared.cache.as_deref().and_then(read_cache) {
            shared
                .dormant
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let defs = list_tools(&shared, tools);
            *shared.tools.write().unwrap_or_else(|e| e.into_inner()) = defs;
            shared.set_condition(Some(Condition {
                attempt: 0,
                next: tokio::time::Instant::now(),
                why: String::new(),
            }));
            let (ready, _) = tokio::sync::oneshot::channel();
            let supervisor = tokio::spawn(supervise(shared.clone(), launch, ready));
            return Ok(Self {
                shared,
                supervisor: Mutex::new(Some(supervisor)),
            });
        }
        // The first start is the plugin's: a failure within the wait is the plugin's status.
        // Serving clients, the wait is short: a server slow to answer joins when it does
        // (clients get list_changed) rather than holding up the others.
        let wait = if setup.serving {
            STARTUP_GRACE.min(launch.init_timeout)
        } else {
            launch.init_timeout + Duration::from_secs(1)
        };
        let (ready, started) = tokio::sync::oneshot::channel();
        let supervisor = tokio::spawn(supervise(shared.clone(), launch, ready));
        match tokio::time::timeout(wait, started).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                shared.kill_group();
                return Err(PluginError::Init(e));
            }
            Ok(Err(_)) => {
                shared.kill_group();
                return Err(PluginError::Init(
                    "the MCP server's supervisor ended".into(),
                ));
            }
            Err(_) => {
                tracing::info!(plugin = %shared.plugin, "the MCP server is still starting; its tools join when it answers");
            }
        }
        Ok(Self {
            shared,
            supervisor: Mutex::new(Some(supervisor)),
        })
    }
}

impl Plugin for Upstream {
    fn tools(&self) -> Vec<ToolDef> {
        self.shared
            .tools
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn condition(&self) -> Option<String> {
        self.shared.condition()
    }

    fn resources(&self) -> Vec<ResourceDef> {
        self.shared
            .resources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn resource_templates(&self) -> Vec<TemplateDef> {
        self.shared
            .templates
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn prompts(&self) -> Vec<PromptDef> {
        self.shared
            .prompts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn roots_changed(&self, client: &ToolContext) -> BoxFuture<'static, ()> {
        *self
            .shared
            .roots_from
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(client.clone());
        let peer = self
            .shared
            .peer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let plugin = self.shared.plugin.clone();
        Box::pin(async move {
            if let Ok(peer) = peer
                && let Err(e) = peer.notify_roots_list_changed().await
            {
                tracing::debug!(plugin = %plugin, error = %e, "roots/list_changed not passed on");
            }
        })
    }

    fn watch(&self, uri: &str, subscribed: bool) -> BoxFuture<'static, ()> {
        let shared = self.shared.clone();
        let uri = uri.to_owned();
        {
            let mut watched = shared.watched.lock().unwrap_or_else(|e| e.into_inner());
            if subscribed {
                watched.insert(uri.clone());
            } else {
                watched.remove(&uri);
            }
        }
        Box::pin(async move {
            // Not connected: the subscriptions are made when it is.
            let peer = shared
                .peer
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Ok(peer) = peer {
                subscription(&shared, &peer, uri, subscribed).await;
            }
        })
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        let shared = self.shared.clone();
        let supervisor = self
            .supervisor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        Box::pin(async move {
            *shared.peer.write().unwrap_or_else(|e| e.into_inner()) =
                Err("the plugin was stopped".into());
            shared.stop.cancel();
            // The supervisor closes the child's stdin and gives it a moment to exit (as MCP
            // asks); then whatever is left of its process group is killed.
            if let Some(supervisor) = supervisor {
                let _ = tokio::time::timeout(Duration::from_secs(4), supervisor).await;
            }
            shared.kill_group();
        })
    }
}

/// What plugboard is to the upstream: a client that hears about list changes.
#[derive(Clone)]
struct Client {
    shared: Arc<Shared>,
    relist: Arc<tokio::sync::Notify>,
}

impl Client {
    /// `transport`, its progress notifications taken off as they are read and passed on in
    /// order by a task of their own (which ends with the transport).
    fn ordered<T, E, A>(
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
    fn asking(&self, what: &str) -> Result<ToolContext, ErrorData> {
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
fn refused(e: ToolError) -> ErrorData {
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
        let mut data = params.data;
        if let Some(logger) = params.logger {
            data = serde_json::json!({ "logger": logger, "data": data });
        }
        // During a request: to its client, at that client's level. Otherwise: to every
        // client at its session's level.
        match self.shared.active.latest() {
            Some(cx) => cx.log(params.level, data).await,
            None => self.shared.events.log(params.level, data),
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

type Service = (RunningService<RoleClient, Client>, Arc<tokio::sync::Notify>);

/// Connect to the server (start the child, or reach the remote one), initialize it, list
/// what it offers and publish it.
async fn connect(shared: &Arc<Shared>, launch: &Launch, first: bool) -> Result<Service, String> {
    let relist = Arc::new(tokio::sync::Notify::new());
    let client = Client {
        shared: shared.clone(),
        relist: relist.clone(),
    };
    let service = match &launch.remote {
        Some(remote) => connect_remote(launch, remote, client).await?,
        None => connect_child(shared, launch, client).await?,
    };
    let peer = service.peer().clone();
    // Back serving nothing where it served tools before: not back (its tools stay listed,
    // answering that it is being started again, rather than vanishing from clients' lists).
    publish(shared, &peer, !first).await?;
    *shared.peer.write().unwrap_or_else(|e| e.into_inner()) = Ok(peer.clone());
    shared.connected.notify_waiters();
    // What clients were subscribed to before (a restarted server has forgotten it).
    let watched: Vec<String> = shared
        .watched
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    if !watched.is_empty() {
        let shared = shared.clone();
        tokio::spawn(async move {
            for uri in watched {
                subscription(&shared, &peer, uri, true).await;
            }
        });
    }
    Ok((service, relist))
}

/// Ask the upstream to send (or stop sending) `notifications/resources/updated` for `uri`,
/// if it offers subscriptions. A server without them may still send updates; they are
/// relayed all the same.
async fn subscription(shared: &Shared, peer: &Peer<RoleClient>, uri: String, subscribed: bool) {
    let offered = peer
        .peer_info()
        .and_then(|info| {
            info.capabilities
                .resources
                .as_ref()
                .and_then(|r| r.subscribe)
        })
        .unwrap_or(false);
    if !offered {
        return;
    }
    let asked = if subscribed {
        peer.subscribe(SubscribeRequestParams::new(uri.clone()))
            .await
    } else {
        peer.unsubscribe(UnsubscribeRequestParams::new(uri.clone()))
            .await
    };
    if let Err(e) = asked {
        tracing::warn!(
            plugin = %shared.plugin,
            uri = %crate::plugin::clip_name(&uri),
            error = %e,
            "the MCP server refused a resource subscription change"
        );
    }
}

/// Start the child and initialize it over its stdio.
async fn connect_child(
    shared: &Arc<Shared>,
    launch: &Launch,
    client: Client,
) -> Result<RunningService<RoleClient, Client>, String> {
    let mut command = tokio::process::Command::new(&launch.program);
    // The child gets what a program needs to run and what its manifest gives it: never
    // plugboard's own keys (an MCP server sees a token only when its manifest names it).
    command.env_clear();
    for key in INHERITED {
        if let Some(value) = std::env::var_os(key) {
            command.env(key, value);
        }
    }
    command
        .args(&launch.args)
        .envs(&launch.env)
        .current_dir(&launch.cwd);
    let mut wrapped = process_wrap::tokio::CommandWrap::from(command);
    // Its own process group: stopping it stops whatever it started (npx → node).
    wrapped.wrap(process_wrap::tokio::ProcessGroup::leader());
    let (transport, stderr) = TokioChildProcess::builder(wrapped)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start `{}`: {e}", launch.program.display()))?;
    *shared.group.lock().unwrap_or_else(|e| e.into_inner()) = transport.id();
    if let Some(stderr) = stderr {
        tokio::spawn(read_stderr(shared.clone(), stderr));
    }
    let transport = client.ordered(transport);
    initialize(launch, client.serve(transport))
        .await
        .map_err(|e| with_stderr(shared, e))
}

/// The `initialize` handshake, within the manifest's time.
async fn initialize<E: std::fmt::Display>(
    launch: &Launch,
    serve: impl Future<Output = Result<RunningService<RoleClient, Client>, E>>,
) -> Result<RunningService<RoleClient, Client>, String> {
    match tokio::time::timeout(launch.init_timeout, serve).await {
        Ok(Ok(service)) => Ok(service),
        Ok(Err(e)) => Err(format!("initialize failed: {}", tidy(&e.to_string()))),
        Err(_) => Err(format!(
            "the server did not answer initialize within {} s",
            launch.init_timeout.as_secs_f64()
        )),
    }
}

/// At most `max` characters of `text` (an upstream's words can be long).
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// rmcp's transport errors without the type names they carry
/// (`Send message error Transport [rmcp::…] error: Client error: …`).
fn tidy(error: &str) -> String {
    let error = match error.rfind("] error: ") {
        Some(at) => &error[at + "] error: ".len()..],
        None => error,
    };
    error
        .trim_start_matches("Client error: ")
        .trim_end_matches(", when send initialize request")
        .to_owned()
}

/// Reach a remote server: Streamable HTTP, or legacy SSE when the manifest says so or the
/// server does not speak Streamable HTTP.
async fn connect_remote(
    launch: &Launch,
    remote: &super::remote::Remote,
    client: Client,
) -> Result<RunningService<RoleClient, Client>, String> {
    use super::remote::Transport;
    let streamable = async |client: Client| {
        let transport = client.ordered(remote.streamable(client.shared.releases.clone())?);
        initialize(launch, client.serve(transport)).await
    };
    let sse = async |client: Client| {
        let transport = remote.sse(launch.init_timeout).await?;
        let transport = client.ordered(transport);
        initialize(launch, client.serve(transport)).await
    };
    match remote.transport {
        Some(Transport::StreamableHttp) => streamable(client).await,
        Some(Transport::Sse) => sse(client).await,
        None => match streamable(client.clone()).await {
            Ok(service) => Ok(service),
            Err(first) => match sse(client).await {
                Ok(service) => {
                    tracing::info!(plugin = %remote.url, "the server speaks legacy SSE, not Streamable HTTP (set transport = \"sse\" to skip the first try)");
                    Ok(service)
                }
                Err(second) => Err(format!(
                    "{}: Streamable HTTP: {first}; legacy SSE: {second}",
                    remote.url
                )),
            },
        },
    }
}

/// List the upstream's tools and publish them (clients hear `list_changed`).
async fn publish(
    shared: &Arc<Shared>,
    peer: &Peer<RoleClient>,
    restarted: bool,
) -> Result<(), String> {
    let listed = match peer.peer_info().and_then(|i| i.capabilities.tools.clone()) {
        Some(_) => peer
            .list_all_tools()
            .await
            .map_err(|e| with_stderr(shared, format!("tools/list failed: {e}")))?,
        None => Vec::new(),
    };
    if let Some(cache) = &shared.cache {
        write_cache(cache, &listed);
    }
    let defs = list_tools(shared, listed);
    if restarted
        && defs.is_empty()
        && !shared
            .tools
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    {
        return Err(with_stderr(
            shared,
            "it started again but serves no tools (it served some before)".into(),
        ));
    }
    *shared.tools.write().unwrap_or_else(|e| e.into_inner()) = defs;

    let capabilities = peer
        .peer_info()
        .map(|i| i.capabilities.clone())
        .unwrap_or_default();
    let completes = capabilities.completions.is_some();
    let (mut resources, mut templates, mut prompts) = (Vec::new(), Vec::new(), Vec::new());
    if capabilities.resources.is_some() {
        resources = peer
            .list_all_resources()
            .await
            .map_err(|e| with_stderr(shared, format!("resources/list failed: {e}")))?;
        templates = peer
            .list_all_resource_templates()
            .await
            .map_err(|e| with_stderr(shared, format!("resources/templates/list failed: {e}")))?;
    }
    if capabilities.prompts.is_some() {
        prompts = peer
            .list_all_prompts()
            .await
            .map_err(|e| with_stderr(shared, format!("prompts/list failed: {e}")))?;
    }
    *shared.resources.write().unwrap_or_else(|e| e.into_inner()) = resources
        .into_iter()
        .map(|r| resource_def(shared, r))
        .collect();
    *shared.templates.write().unwrap_or_else(|e| e.into_inner()) = templates
        .into_iter()
        .map(|t| template_def(shared, t, completes))
        .collect();
    *shared.prompts.write().unwrap_or_else(|e| e.into_inner()) = prompts
        .into_iter()
        .map(|p| prompt_def(shared, p, completes))
        .collect();
    shared.events.list_changed();
    Ok(())
}

/// Reads `uri` from the upstream.
fn reader(shared: &Arc<Shared>) -> crate::plugin::resource::Reader {
    let owner = shared.clone();
    Arc::new(move |uri: String, _vars, cx: ToolContext| {
        let owner = owner.clone();
        Box::pin(async move {
            let what = format!("reading `{uri}`");
            let request = ClientRequest::ReadResourceRequest(Request::new(
                ReadResourceRequestParams::new(uri),
            ));
            match owner.relay(request, cx, &what).await? {
                ServerResult::ReadResourceResult(result) => Ok(result.contents),
                _ => Err(owner.failure(&what, ServiceError::UnexpectedResponse)),
            }
        })
    })
}

/// Asks the upstream to complete an argument of `reference`.
fn completer(shared: &Arc<Shared>, reference: Reference) -> crate::plugin::resource::Completer {
    let owner = shared.clone();
    Arc::new(move |c: Completion| {
        let owner = owner.clone();
        let reference = reference.clone();
        Box::pin(async move {
            let mut params =
                CompleteRequestParams::new(reference, ArgumentInfo::new(c.argument, c.value));
            if !c.context.is_empty() {
                params.context = Some(CompletionContext::with_arguments(
                    c.context.into_iter().collect(),
                ));
            }
            let request = ClientRequest::CompleteRequest(Request::new(params));
            // Completions have no client of their own to relay to; a failure suggests nothing.
            match owner
                .relay(request, ToolContext::detached(), "completing")
                .await
            {
                Ok(ServerResult::CompleteResult(result)) => result.completion.values,
                Ok(_) => Vec::new(),
                Err(e) => {
                    tracing::debug!(plugin = %owner.plugin, error = %e, "upstream completion failed");
                    Vec::new()
                }
            }
        })
    })
}

fn resource_def(shared: &Arc<Shared>, resource: Resource) -> ResourceDef {
    ResourceDef {
        resource,
        reader: reader(shared),
    }
}

fn template_def(shared: &Arc<Shared>, template: ResourceTemplate, completes: bool) -> TemplateDef {
    let reference = Reference::Resource(ResourceTemplateReference::new(
        template.uri_template.clone(),
    ));
    TemplateDef {
        template,
        reader: reader(shared),
        completer: completes.then(|| completer(shared, reference)),
    }
}

/// One upstream prompt (the manager adds the prefix to its name).
fn prompt_def(shared: &Arc<Shared>, prompt: Prompt, completes: bool) -> PromptDef {
    let owner = shared.clone();
    let name = prompt.name.clone();
    let reference = Reference::for_prompt(name.clone());
    PromptDef {
        prompt,
        handler: Arc::new(move |args, cx| {
            let owner = owner.clone();
            let name = name.clone();
            Box::pin(async move {
                let what = format!("prompt `{name}`");
                let mut params = GetPromptRequestParams::new(name);
                if !args.is_empty() {
                    params.arguments = Some(
                        args.into_iter()
                            .map(|(k, v)| (k, serde_json::Value::String(v)))
                            .collect(),
                    );
                }
                let request = ClientRequest::GetPromptRequest(Request::new(params));
                match owner.relay(request, cx, &what).await? {
                    ServerResult::GetPromptResult(result) => Ok(result),
                    _ => Err(owner.failure(&what, ServiceError::UnexpectedResponse)),
                }
            })
        }),
        completer: completes.then(|| completer(shared, reference)),
    }
}

/// The upstream's tools as plugboard tools: filtered, named under the prefix.
fn list_tools(shared: &Arc<Shared>, listed: Vec<Tool>) -> Vec<ToolDef> {
    let mut defs: Vec<ToolDef> = Vec::new();
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    for tool in listed {
        let upstream = tool.name.to_string();
        if !wanted(&shared.config, &upstream) {
            continue;
        }
        let local = names::local_name(&upstream, shared.room);
        if let Some(first) = taken.get(&local) {
            tracing::warn!(plugin = %shared.plugin, tool = %upstream, other = %first,
                "upstream tool not published: its name is taken");
            continue;
        }
        taken.insert(local.clone(), upstream.clone());
        defs.push(tool_def(shared, tool, local));
    }
    defs
}

/// Where a lazy server's tools are kept between runs: plugboard's state folder, one file per
/// plugin and server (its `[mcp]` table hashed: another server is another file).
fn cache_path(plugin: &str, config: &McpConfig) -> PathBuf {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{config:?}").as_bytes());
    let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    crate::config::state_dir("mcp").join(format!("{plugin}-{short}.json"))
}

fn read_cache(path: &std::path::Path) -> Option<Vec<Tool>> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_cache(path: &std::path::Path, tools: &[Tool]) {
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(path.parent().unwrap_or(std::path::Path::new(".")))?;
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, serde_json::to_vec(tools)?)?;
        std::fs::rename(temporary, path)
    };
    if let Err(e) = write() {
        tracing::warn!(path = %path.display(), error = %e, "could not keep the server's tools for a lazy start");
    }
}

fn wanted(config: &McpConfig, name: &str) -> bool {
    config
        .tools
        .as_ref()
        .is_none_or(|only| only.iter().any(|t| t == name))
        && !config.exclude_tools.iter().any(|t| t == name)
}

/// One upstream tool as a plugboard tool: its schemas and annotations as the server gave
/// them, a handler that calls it and returns its result unchanged.
fn tool_def(shared: &Arc<Shared>, tool: Tool, local: String) -> ToolDef {
    let upstream = tool.name.clone();
    let owner = shared.clone();
    let mut def = ToolDef::with_schema(
        &local,
        tool.description.as_deref().unwrap_or(""),
        (*tool.input_schema).clone(),
        crate::plugin::Hints::additive(),
        move |args, cx: ToolContext| {
            let owner = owner.clone();
            let name = upstream.clone();
            async move {
                let what = format!("calling `{name}`");
                let params = CallToolRequestParams::new(name).with_arguments(args);
                let request = ClientRequest::CallToolRequest(Request::new(params));
                match owner.relay(request, cx, &what).await? {
                    ServerResult::CallToolResult(result) => Ok(result),
                    _ => Err(owner.failure(&what, ServiceError::UnexpectedResponse)),
                }
            }
        },
    );
    // As the server said, or nothing: a tool without annotations is taken as MCP says
    // (may write, may destroy), never as read-only.
    def.annotations = tool.annotations.unwrap_or_default();
    def.title = tool.title;
    def.output_schema = tool.output_schema;
    def
}

/// Keep the connection: restart the child when it goes, until the plugin stops.
async fn supervise(
    shared: Arc<Shared>,
    launch: Launch,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
) {
    let mut backoff = BACKOFF_FIRST;
    let mut attempt = 0u32;
    let mut why = String::new();
    if shared.dormant.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            () = shared.wake.notified() => {}
        }
        tracing::info!(plugin = %shared.plugin, "first request: starting the MCP server");
    }
    shared.set_condition(Some(Condition {
        attempt: 0,
        next: tokio::time::Instant::now(),
        why: String::new(),
    }));
    let mut service = None;
    match connect(&shared, &launch, true).await {
        Ok(s) => {
            let _ = ready.send(Ok(()));
            service = Some(s);
        }
        Err(e) => {
            shared.kill_group();
            // Still waited for: the plugin fails with this. Otherwise it is served
            // already, and the server is started again, as after a crash.
            if ready.send(Err(e.clone())).is_ok() {
                return;
            }
            tracing::warn!(plugin = %shared.plugin, error = %e, "MCP server did not start");
            why = e;
            *shared.peer.write().unwrap_or_else(|e| e.into_inner()) = Err(why.clone());
        }
    }
    loop {
        if let Some((running, relist)) = service.take() {
            shared.set_condition(None);
            let since = tokio::time::Instant::now();
            let token = running.cancellation_token();
            let peer = running.peer().clone();
            let closed = running.waiting();
            tokio::pin!(closed);
            // Health: a ping on an interval; no answer in time is a hung server.
            let mut pings = launch.ping.map(|every| {
                let mut ticker =
                    tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                (ticker, every.min(PING_TIMEOUT_MAX))
            });
            let ping = async |pings: &mut Option<(tokio::time::Interval, Duration)>| match pings {
                Some((ticker, _)) => {
                    ticker.tick().await;
                }
                None => std::future::pending().await,
            };
            why = loop {
                tokio::select! {
                    _ = shared.stop.cancelled() => {
                        token.cancel();
                        let _ = closed.await;
                        return;
                    }
                    () = ping(&mut pings) => {
                        let wait = pings.as_ref().map_or(PING_TIMEOUT_MAX, |p| p.1);
                        let request = ClientRequest::PingRequest(Default::default());
                        let answered = tokio::time::timeout(wait, peer.send_request(request)).await;
                        if !matches!(answered, Ok(Ok(_))) {
                            token.cancel();
                            break format!(
                                "it stopped answering (no answer to a ping within {} s)",
                                wait.as_secs_f64()
                            );
                        }
                    }
                    _ = relist.notified() => {
                        if let Err(e) = publish(&shared, &peer, false).await {
                            tracing::warn!(plugin = %shared.plugin, error = %e, "could not list the upstream's tools again");
                        }
                    }
                    quit = &mut closed => break match &launch.remote {
                        Some(remote) => format!("the connection to {} ended ({quit:?})", remote.url),
                        None => format!("it exited ({quit:?})"),
                    },
                }
            };
            // Anything the server started is stopped with it before it starts again.
            shared.kill_group();
            why = with_stderr(&shared, why);
            tracing::warn!(plugin = %shared.plugin, reason = %why, "MCP server stopped; starting it again");
            *shared.peer.write().unwrap_or_else(|e| e.into_inner()) = Err(why.clone());
            if since.elapsed() >= HEALTHY {
                backoff = BACKOFF_FIRST;
                attempt = 0;
            }
        }
        attempt += 1;
        shared.set_condition(Some(Condition {
            attempt,
            next: tokio::time::Instant::now() + backoff,
            why: why.clone(),
        }));
        // Requests waiting for a first start hear that it failed.
        shared.connected.notify_waiters();
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        match connect(&shared, &launch, false).await {
            Ok(s) => {
                tracing::info!(plugin = %shared.plugin, attempt, "MCP server started again");
                service = Some(s);
            }
            Err(e) => {
                shared.kill_group();
                tracing::warn!(plugin = %shared.plugin, attempt, next_in_s = backoff.as_secs(), error = %e, "MCP server did not start");
                why = e;
                *shared.peer.write().unwrap_or_else(|e| e.into_inner()) =
                    Err(format!("restarting (attempt {attempt}): {why}"));
            }
        }
    }
}

/// The child's stderr: logged (secrets masked) and its last lines kept.
async fn read_stderr(shared: Arc<Shared>, stderr: tokio::process::ChildStderr) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = shared.secrets.mask(&line).into_owned();
        let line: String = line.chars().take(500).collect();
        tracing::debug!(plugin = %shared.plugin, "upstream stderr: {}", line.escape_debug());
        let mut kept = shared.stderr.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() == STDERR_LINES {
            kept.pop_front();
        }
        kept.push_back(line);
    }
}

/// `reason`, and what the child last said on stderr.
fn with_stderr(shared: &Shared, reason: String) -> String {
    let kept = shared.stderr.lock().unwrap_or_else(|e| e.into_inner());
    let last: Vec<&str> = kept
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(String::as_str)
        .collect();
    if last.is_empty() {
        reason
    } else {
        format!("{reason}; its stderr ended: {}", last.join(" / "))
    }
}
