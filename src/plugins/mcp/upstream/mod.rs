//! One upstream MCP server (a child over stdio, or a remote one): started, initialized, what
//! it offers published, its requests relayed, watched.
//!
//! A supervisor task owns the connection. When the child exits (or its pipe closes) the tools
//! stay listed and answer an error that says the server is restarting and why it stopped (its
//! last stderr lines); the supervisor starts it again after a back-off (1 s doubling to 30 s,
//! reset once it has served a minute) and publishes its tools afresh. Stopping the plugin
//! kills the child's whole process group.
//!
//! Everything works on one [`Shared`] state, kept here with the relay of requests and its
//! invariants (a call is registered before it is sent and forgotten when it ends; progress
//! read before an answer goes out before it):
//! - `supervisor.rs`: connecting (child or remote), initializing, the supervisor;
//! - `offer.rs`: what the server offers, published (and the lazy-start tool cache);
//! - `client.rs`: plugboard as the server's client (its requests and notifications);
//! - `progress.rs`: the server's progress, relayed in order;
//! - `direct.rs`: tool calls posted on a Streamable HTTP session by the caller's task.
//!
//! This file stays near 700 lines on purpose: `Shared`, its fields and the relay that keeps
//! their invariants are one unit, and the `Plugin` impl is only their accessors.
//!
//! One file for the handle (`Upstream`, `Shared`) and the plugin's face of it; the supervisor,
//! offer, client, progress and direct-call parts are already their own modules.

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

mod client;
mod direct;
mod offer;
mod progress;
mod supervisor;

use crate::{
    net::Secrets,
    plugin::{
        Completion, Manifest, Plugin, PluginError, PluginEvents, PluginSetup, PromptDef,
        ResourceDef, TemplateDef, ToolContext, ToolDef, ToolError,
    },
};
use client::*;
use direct::*;
use offer::*;
use progress::*;
use supervisor::*;

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
    /// A Streamable HTTP connection's link and its list-change signal: tool calls are posted
    /// on it directly.
    direct: Mutex<Option<(super::remote::LinkSlot, Arc<tokio::sync::Notify>)>>,
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
            ToolError::Unavailable(format!(
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
        let request = match request {
            ClientRequest::CallToolRequest(call) => match self.link() {
                Some(link) => {
                    match self
                        .call_directly(link, &peer, call.params, cx.clone(), what)
                        .await
                    {
                        Direct::Answered(answer) => return *answer,
                        Direct::NotTaken(params) => {
                            ClientRequest::CallToolRequest(Request::new(params))
                        }
                    }
                }
                None => ClientRequest::CallToolRequest(call),
            },
            other => other,
        };
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

    /// The link tool calls are posted on directly, when the server is reached over
    /// Streamable HTTP on a session.
    fn link(&self) -> Option<super::remote::Link> {
        let (slot, relist) = self
            .direct
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        let mut link = slot.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        link.relist = Some(relist);
        Some(link)
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
            direct: Mutex::default(),
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

    fn version(&self) -> Option<String> {
        let peer = self.shared.peer.read().unwrap_or_else(|e| e.into_inner());
        let info = peer.as_ref().ok()?.peer_info()?;
        let server = info.server_info.as_ref()?;
        Some(format!("{} {}", server.name, server.version))
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

type Service = (RunningService<RoleClient, Client>, Arc<tokio::sync::Notify>);
