//! The plugin manager: discovers manifests, checks what each plugin needs, starts the plugins
//! concurrently through the kinds of its [`Catalog`], keeps a status per plugin and
//! publishes what they offer; calls go through its [`Calls`] pipeline.
//!
//! One plugin's failure (a bad manifest, a failed init, a panic, a tool it names badly)
//! never reaches another plugin or the server.
//!
//! - `discovery.rs`: finding and reading manifests, the checks before a plugin starts.
//! - `lifecycle.rs`: starting, reloading, re-listing and stopping plugins.
//! - `publish.rs`: turning the plugins' offers into the published registry.
//! - `status.rs`: where each plugin stands, for `plugboard plugins`, `check` and the API.
//! - `watches.rs`: resource subscriptions counted across clients.

mod discovery;
mod lifecycle;
mod publish;
mod status;
mod watches;

pub use watches::Watch;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
    time::Duration,
};

use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, JsonObject, Tool};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use status::{EnvReport, PluginStatus, Status};

use super::{
    Catalog, Change, Filters, Finding, Manifest, ModelService, Plugin, PromptDef, ResourceDef,
    TemplateDef, ToolContext, ToolDef,
    calls::{Answer, Calls},
    observe::Observers,
    registry::{Published, Registry},
};

/// What the manager is started with.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub plugins_dir: std::path::PathBuf,
    /// When `plugins_dir` does not exist, load the manifests shipped inside the binary (the
    /// catalog's), so a bare binary works from any folder.
    pub shipped_fallback: bool,
    pub filters: Filters,
    pub init_timeout: Duration,
    pub call_timeout: Duration,
    /// The kinds of plugin this manager can start, and the shipped manifests.
    pub catalog: Catalog,
    /// Tool calls in flight at once, server-wide, over MCP; one more is refused with a tool
    /// error until one ends.
    pub max_calls: usize,
    /// Tool calls in flight at once on one MCP session.
    pub max_calls_per_session: usize,
    /// Serving clients: a plugin slow to start (an MCP server that takes its time to
    /// answer `initialize`) joins when it is ready rather than holding up the server.
    pub serving: bool,
    /// Show clients three tools (find, describe, call) instead of every tool's schema.
    pub discovery: bool,
    /// The Redis replicas share their limits through (`PLUGBOARD_REDIS_URL`), handed to
    /// plugins that pace requests.
    pub shared: Option<crate::net::shared::Redis>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            plugins_dir: std::path::PathBuf::from("plugins"),
            shipped_fallback: false,
            filters: Filters::default(),
            init_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(120),
            catalog: Catalog::default(),
            max_calls: DEFAULT_MAX_CALLS,
            max_calls_per_session: DEFAULT_MAX_CALLS_PER_SESSION,
            serving: false,
            discovery: false,
            shared: None,
        }
    }
}

/// One discovered plugin.
struct Slot {
    /// What it is listed and kept under: the manifest's name, or, when there is none (or it is
    /// taken), its folder's.
    name: String,
    /// `None` when the manifest itself could not be read.
    manifest: Option<Manifest>,
    path: std::path::PathBuf,
    /// Manifest plus the values of its variables: a change means re-initialising.
    fingerprint: String,
    status: Status,
    instance: Option<Arc<dyn Plugin>>,
    offer: Offer,
    /// Why tools (or prompts, resources) of its offer were not published.
    refused: Vec<String>,
    /// Set while the running plugin reports itself down (an upstream died): its tools are
    /// withheld until it reports it is back.
    down: Option<String>,
    /// How long its last start took.
    loaded: Option<std::time::Duration>,
}

/// Everything a plugin offers, as it last said.
#[derive(Default, Clone)]
struct Offer {
    tools: Vec<ToolDef>,
    resources: Vec<ResourceDef>,
    templates: Vec<TemplateDef>,
    prompts: Vec<PromptDef>,
}

impl Offer {
    fn of(plugin: &dyn Plugin) -> Self {
        Self {
            tools: plugin.tools(),
            resources: plugin.resources(),
            templates: plugin.resource_templates(),
            prompts: plugin.prompts(),
        }
    }

    fn is_empty(&self) -> bool {
        self.tools.is_empty()
            && self.resources.is_empty()
            && self.templates.is_empty()
            && self.prompts.is_empty()
    }
}

/// `--max-calls`: every call holds a task and what it has read.
pub const DEFAULT_MAX_CALLS: usize = 256;
/// `--max-calls-per-session`.
pub const DEFAULT_MAX_CALLS_PER_SESSION: usize = 64;

pub struct Manager {
    config: ManagerConfig,
    /// One permit per MCP tool call in flight (`max_calls`).
    call_slots: Arc<tokio::sync::Semaphore>,
    slots: RwLock<BTreeMap<String, Slot>>,
    /// The published snapshot; replaced whole on every change.
    published: Published,
    /// Every call, from every face.
    calls: Calls,
    /// Fires whenever something clients see changes (`list_changed`, resource updates,
    /// plugin status).
    changed: broadcast::Sender<Change>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    env: Box<dyn Fn() -> HashMap<String, String> + Send + Sync>,
    /// For the plugins' [`super::PluginEvents`].
    me: std::sync::Weak<Manager>,
    /// The host's model service, once a plugin provides one (the agents plugin).
    models: RwLock<Option<(String, Arc<dyn ModelService>)>>,
    /// Subscribers per resource URI, over every client ([`Manager::watch`]).
    watches: std::sync::Mutex<HashMap<String, usize>>,
}

impl Manager {
    /// Discover and start every plugin. Never fails: problems become plugin statuses.
    pub async fn start(config: ManagerConfig) -> Arc<Self> {
        Self::start_with_env(config, Box::new(crate::config::environment)).await
    }

    /// As [`Manager::start`], reading variables through `env` instead of the process's.
    pub async fn start_with_env(
        config: ManagerConfig,
        env: Box<dyn Fn() -> HashMap<String, String> + Send + Sync>,
    ) -> Arc<Self> {
        let published = Published::default();
        let calls = Calls::new(published.clone(), config.call_timeout, Observers::default());
        let call_slots = Arc::new(tokio::sync::Semaphore::new(
            config
                .max_calls
                .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
        ));
        let manager = Arc::new_cyclic(|me| Self {
            call_slots,
            config,
            slots: RwLock::new(BTreeMap::new()),
            published,
            calls,
            changed: broadcast::channel(64).0,
            reloading: tokio::sync::Mutex::new(()),
            env,
            me: me.clone(),
            models: RwLock::new(None),
            watches: std::sync::Mutex::default(),
        });
        manager.load_first().await;
        manager
    }

    pub fn config(&self) -> &ManagerConfig {
        &self.config
    }

    /// The server-wide places for MCP tool calls in flight.
    pub fn call_slots(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.call_slots
    }

    /// The current published tool set.
    pub fn registry(&self) -> Arc<Registry> {
        self.published.get()
    }

    pub fn tools(&self) -> Arc<Vec<Tool>> {
        self.registry().tools()
    }

    /// Whether a reload (of every plugin or of one) is under way.
    pub fn is_reloading(&self) -> bool {
        self.reloading.try_lock().is_err()
    }

    /// The call pipeline: what every face calls tools through.
    pub fn calls(&self) -> &Calls {
        &self.calls
    }

    /// Observers of every call (logs, metrics, live events).
    pub fn observers(&self) -> &Observers {
        self.calls.observers()
    }

    /// Run one tool call (see [`Calls::call`]).
    pub async fn call(
        &self,
        name: &str,
        args: Option<JsonObject>,
        cx: ToolContext,
    ) -> CallToolResult {
        self.calls.call(name, args, cx).await
    }

    /// Run one tool call and say how it ended (see [`Calls::answer`]).
    pub async fn answer(&self, name: &str, args: Option<JsonObject>, cx: ToolContext) -> Answer {
        self.calls.answer(name, args, cx).await
    }

    /// Run or resume a 2026-07-28 tool call (see [`Calls::call_stateless`]).
    pub async fn call_stateless(
        &self,
        request: CallToolRequestParams,
        link: ToolContext,
        round: CancellationToken,
    ) -> CallToolResponse {
        self.calls.call_stateless(request, link, round).await
    }

    /// While serving with a Redis shared by replicas: give states that name this replica,
    /// and resume the continuations other replicas forward here (`net::relay_calls`) until
    /// `ct` is cancelled. Returns once subscribed; without a Redis, does nothing.
    pub async fn relay_calls(self: &Arc<Self>, ct: CancellationToken) {
        let Some(redis) = &self.config.shared else {
            return;
        };
        let relay = crate::net::relay_calls::CallRelay::new(redis);
        let me = Arc::downgrade(self);
        let resume = move |continuation, round| {
            let me = me.clone();
            async move {
                match me.upgrade() {
                    Some(manager) => manager.resume_forwarded(continuation, round).await,
                    None => CallToolResult::error(vec![rmcp::model::ContentBlock::text(
                        "the replica holding this call is shutting down; call the tool again",
                    )])
                    .into(),
                }
            }
        };
        relay.listen(resume, ct).await;
        self.calls.relay_through(relay);
    }

    /// A continuation another replica forwarded: resumed like one of this replica's own,
    /// within the same server-wide bound on calls in flight.
    async fn resume_forwarded(
        &self,
        continuation: crate::net::relay_calls::Continuation,
        round: CancellationToken,
    ) -> CallToolResponse {
        let Ok(_slot) = self.call_slots.try_acquire() else {
            let message = format!(
                "too many tool calls in flight on the replica holding this call (at most {}); \
                 send the same answer again in a moment",
                self.config.max_calls
            );
            return CallToolResult::error(vec![rmcp::model::ContentBlock::text(message)]).into();
        };
        self.calls.resume_forwarded(continuation, round).await
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changed.subscribe()
    }

    /// The host's model service, if a plugin provides one: `(plugin, service)`.
    pub fn models(&self) -> Option<(String, Arc<dyn ModelService>)> {
        self.models
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn provide_models(&self, plugin: &str, service: Arc<dyn ModelService>) {
        *self.models.write().unwrap_or_else(|e| e.into_inner()) =
            Some((plugin.to_owned(), service));
    }

    /// The published name of tool `local` of the plugin running implementation `kind_name`
    /// (a built-in's name, e.g. `agents`), whatever its manifest calls it or prefixes it with:
    /// for callers that must not hard-code a prefix a manifest can change (the CLI).
    pub fn find_tool(&self, kind_name: &str, local: &str) -> Option<String> {
        let registry = self.registry();
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots.values().find_map(|slot| {
            let m = slot.manifest.as_ref()?;
            if m.builtin() != kind_name {
                return None;
            }
            let name = if m.prefix().is_empty() {
                local.to_owned()
            } else {
                format!("{}_{local}", m.prefix())
            };
            registry.entries.contains_key(&name).then_some(name)
        })
    }

    /// Every running plugin's online check ([`Plugin::verify`]), all at once, each in its own
    /// task for at most `limit`: `(plugin, findings)` in name order. A check that panics or
    /// does not finish in time is a failed finding saying so; every finding is masked.
    pub async fn verify(&self, limit: Duration) -> Vec<(String, Vec<Finding>)> {
        let running: Vec<(String, Arc<dyn Plugin>)> = self
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, slot)| slot.down.is_none())
            .filter_map(|(name, slot)| slot.instance.clone().map(|i| (name.clone(), i)))
            .collect();
        let checks = running.into_iter().map(|(name, plugin)| async move {
            let findings = match super::isolate::spawn_limited(limit, plugin.verify()).await {
                Ok(findings) => findings,
                Err(super::isolate::Isolated::TimedOut(after)) => vec![Finding::failed(
                    "",
                    format!("no answer within {} s", after.as_secs_f64()),
                )],
                Err(super::isolate::Isolated::Panicked(message)) => {
                    vec![Finding::failed(
                        "",
                        format!("the check panicked: {message}"),
                    )]
                }
                Err(super::isolate::Isolated::Stopped) => {
                    vec![Finding::failed("", "the check was stopped")]
                }
            };
            (name, findings.into_iter().map(Finding::masked).collect())
        });
        futures::future::join_all(checks).await
    }
}
