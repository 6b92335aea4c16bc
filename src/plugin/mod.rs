//! The plugin contract: what a plugin gives the manager, and what the manager gives back.
//!
//! A plugin is initialised from its manifest ([`PluginSetup`]) and hands over what it offers:
//! tools ([`ToolDef`]), resources and resource templates ([`ResourceDef`], [`TemplateDef`]),
//! and prompts ([`PromptDef`]), each optionally with argument completions. The manager
//! publishes them (tool and prompt names under the plugin's prefix), validates every call
//! against the tool's schema, runs it with a timeout in its own task (so a panic stays inside
//! the call), and turns every failure into a result the client can act on. While it runs, a
//! handler reaches the client through its [`ToolContext`]: progress, log messages, sampling,
//! elicitation. A plugin tells clients about changes through [`PluginEvents`], and uses the
//! host's services through its [`PluginSetup`]: the other plugins' tools ([`Toolbox`]) and
//! a model ([`Models`]).
//!
//! - `catalog.rs`: the kinds of plugin the binary offers ([`Catalog`], [`PluginKind`]).
//! - `manifest.rs`: `plugin.toml`.
//! - `manager/`: discovery, lifecycle, publishing, status.
//! - `calls.rs`: the one call pipeline; `caller.rs` who calls; `observe.rs` its observers.
//! - `isolate.rs`: own task, time limit, panic message.
//! - `registry.rs`: the published snapshot; `requests.rs`: resources, prompts, completion.
//! - `context.rs`: what a handler reaches while it runs.
//! - `models.rs`: the host's model service.
//! - `verify.rs`: what a plugin's online check found (`plugboard check --online`).

mod caller;
pub(crate) mod calls;
pub mod catalog;
mod context;
mod error;
pub mod isolate;
pub mod manager;
pub mod manifest;
mod models;
pub mod observe;
mod registry;
mod requests;
pub mod resource;
pub mod schema;
mod tool;
mod toolbox;
pub mod verify;

use std::{collections::BTreeMap, fmt, path::PathBuf, sync::Arc};

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;

pub use caller::{Caller, Face, Filters, Grant, Grants, Principal};
pub use calls::{Answer, Calls, MAX_SHOWN_NAME, clip_name};
pub use catalog::{Builtins, Catalog, Init, Needs, PluginKind};
pub use context::{ProgressSink, StreamControl, StreamRelease, TextSink, ToolContext, severity};
pub use error::{PluginError, ToolError};
pub use manager::{
    DEFAULT_MAX_CALLS, DEFAULT_MAX_CALLS_PER_SESSION, Manager, ManagerConfig, PluginStatus, Status,
};
pub use manifest::Manifest;
pub use models::{ModelReply, ModelRequest, ModelService, Models, sampled_text};
pub use observe::{CallFinished, CallObserver, CallStarted, ErrorKind, Observers, Outcome};
pub use registry::{Registry, check_tool_name};
pub use resource::{Completion, PromptDef, ResourceDef, TemplateDef, UriTemplate};
pub use tool::{Handler, Hints, ToolDef, ToolOutcome};
pub use toolbox::Toolbox;
pub use verify::{Finding, Verdict};

/// A loaded plugin. The manager asks for its offer after init and again whenever the plugin
/// calls [`PluginEvents::list_changed`].
pub trait Plugin: Send + Sync + 'static {
    /// The tools this plugin offers, unprefixed.
    fn tools(&self) -> Vec<ToolDef>;

    /// Resources with fixed URIs.
    fn resources(&self) -> Vec<ResourceDef> {
        Vec::new()
    }

    /// Families of resources named by URI templates.
    fn resource_templates(&self) -> Vec<TemplateDef> {
        Vec::new()
    }

    /// Prompt templates, unprefixed.
    fn prompts(&self) -> Vec<PromptDef> {
        Vec::new()
    }

    /// How the plugin is doing, when it is not simply ready but still serves (an upstream
    /// being started again: `restarting (attempt 3, next in 8 s): …`). Shown as its status;
    /// its tools stay published.
    fn condition(&self) -> Option<String> {
        None
    }

    /// What it runs, when that is not plugboard's own code: an MCP server's name and version
    /// as it reported them (`mcp-servers/everything 2.0.0`).
    fn version(&self) -> Option<String> {
        None
    }

    /// A client subscribed to `uri`, one of this plugin's resources (`subscribed`), or the
    /// last subscriber left. A plugin whose resources change on their own says so with
    /// [`PluginEvents::resource_updated`] whether anyone listens or not; this is for one that
    /// must ask for updates (an upstream MCP server is asked to `resources/subscribe`).
    fn watch(&self, uri: &str, subscribed: bool) -> BoxFuture<'static, ()> {
        let _ = (uri, subscribed);
        Box::pin(async {})
    }

    /// A client said its roots changed (`notifications/roots/list_changed`); `client` asks
    /// it for them ([`ToolContext::roots`]). For a plugin that passes roots on (an upstream
    /// MCP server is told, and asks again).
    fn roots_changed(&self, client: &ToolContext) -> BoxFuture<'static, ()> {
        let _ = client;
        Box::pin(async {})
    }

    /// Try the configuration against the service the plugin talks to (`plugboard check
    /// --online`): whether a key is accepted, has the permissions the plugin's tools need,
    /// names a model that is offered. One finding per thing checked, through the plugin's own
    /// client and base URL; none by default (nothing to check). Findings never hold a secret.
    fn verify(&self) -> BoxFuture<'static, Vec<Finding>> {
        Box::pin(async { Vec::new() })
    }

    /// Release what the plugin holds (connections, children). Called when it is unloaded.
    fn shutdown(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// Everything a plugin is initialised with.
pub struct PluginSetup {
    pub name: String,
    /// The manifest's kind (`builtin`, `mcp`, …).
    pub kind: String,
    /// Which implementation of the kind runs (a built-in's name; for other kinds their own).
    pub implementation: String,
    /// The manifest's folder, for plugins that keep files beside their manifest.
    pub dir: PathBuf,
    pub manifest_path: PathBuf,
    /// The manifest's text; [`PluginSetup::settings`] reads `[settings]` from it.
    pub manifest_source: String,
    /// The values of the variables the manifest declares, as far as they are set.
    pub env: BTreeMap<String, String>,
    /// For telling clients that something the plugin offers changed.
    pub events: PluginEvents,
    /// The host is serving clients (not a one-off command): a plugin whose start takes long
    /// should join when it is ready instead of holding the others up.
    pub serving: bool,
    /// Where limits are shared with other replicas of this server (`PLUGBOARD_REDIS_URL`);
    /// `None`: they are this process's own.
    pub shared: Option<crate::net::shared::Redis>,
}

/// What connected clients are told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Tools,
    Resources,
    Prompts,
    /// The contents of this resource changed (sent to clients subscribed to it).
    ResourceUpdated(String),
    /// This plugin's status changed (it went down or came back).
    Status(String),
    /// A log message from a plugin outside any request (an upstream MCP server's): sent
    /// to every client whose session's level admits it.
    Log(LogMessage),
}

#[derive(Debug, Clone, PartialEq)]
#[allow(deprecated)] // rmcp marks MCP logging deprecated (SEP-2577); clients still use it.
pub struct LogMessage {
    pub plugin: String,
    pub level: rmcp::model::LoggingLevel,
    pub data: serde_json::Value,
}

impl Eq for LogMessage {}

/// A plugin's way to tell clients that what it offers changed. Cheap to clone; keeps working
/// (doing nothing) after the server has gone.
#[derive(Clone)]
pub struct PluginEvents {
    changes: tokio::sync::broadcast::Sender<Change>,
    manager: std::sync::Weak<Manager>,
    /// The plugin these events are about.
    plugin: Arc<str>,
}

impl PluginEvents {
    pub(crate) fn new(
        changes: tokio::sync::broadcast::Sender<Change>,
        manager: std::sync::Weak<Manager>,
        plugin: &str,
    ) -> Self {
        Self {
            changes,
            manager,
            plugin: Arc::from(plugin),
        }
    }

    /// A plugin set up outside a manager (unit tests): events go nowhere.
    pub fn detached() -> Self {
        Self::new(
            tokio::sync::broadcast::channel(1).0,
            std::sync::Weak::new(),
            "",
        )
    }

    /// The plugin cannot serve now (an upstream died, a connection was lost): its tools are
    /// withheld, clients get `list_changed`, and its status says `down (reason)` until
    /// [`PluginEvents::came_back`].
    pub fn went_down(&self, reason: impl Into<String>) {
        self.set_down(Some(reason.into()));
    }

    /// The plugin serves again after [`PluginEvents::went_down`].
    pub fn came_back(&self) {
        self.set_down(None);
    }

    fn set_down(&self, down: Option<String>) {
        if let Some(manager) = self.manager.upgrade() {
            let plugin = self.plugin.clone();
            tokio::spawn(async move { manager.set_down(&plugin, down).await });
        }
    }

    /// The contents of `uri` changed: clients subscribed to it get
    /// `notifications/resources/updated`.
    pub fn resource_updated(&self, uri: impl Into<String>) {
        // No receivers just means nobody is connected.
        let _ = self.changes.send(Change::ResourceUpdated(uri.into()));
    }

    /// A log message for every connected client (at its session's level), for what a
    /// plugin hears outside any request. Secrets the process holds are masked.
    #[allow(deprecated)]
    pub fn log(&self, level: rmcp::model::LoggingLevel, mut data: serde_json::Value) {
        crate::net::secret::mask_held_json(&mut data);
        let _ = self.changes.send(Change::Log(LogMessage {
            plugin: self.plugin.to_string(),
            level,
            data,
        }));
    }

    /// The plugin's tools, resources or prompts changed: the manager asks for them again and
    /// clients get the matching `list_changed` notifications.
    pub fn list_changed(&self) {
        if let Some(manager) = self.manager.upgrade() {
            tokio::spawn(async move { manager.republish().await });
        }
    }
}

impl PluginSetup {
    /// Deserialize the manifest's `[settings]` into the plugin's own type. Errors name the
    /// manifest's line and column, like the manifest's own.
    pub fn settings<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        #[derive(serde::Deserialize)]
        struct Only<T> {
            settings: Option<T>,
        }
        let error = |message: String| PluginError::Settings {
            path: self.manifest_path.clone(),
            message,
        };
        match toml::from_str::<Only<T>>(&self.manifest_source) {
            Ok(Only {
                settings: Some(settings),
            }) => Ok(settings),
            Ok(Only { settings: None }) => toml::Table::new()
                .try_into()
                .map_err(|e: toml::de::Error| error(e.message().to_owned())),
            Err(e) => Err(error(manifest::located(&self.manifest_source, &e))),
        }
    }

    /// The other plugins' tools, for a plugin that lets a model use them.
    pub fn toolbox(&self) -> Toolbox {
        Toolbox::new(self.events.manager.clone(), &self.name)
    }

    /// The host's model service: for a plugin that needs a completion (the configured
    /// providers, else the client's model by sampling).
    pub fn models(&self) -> Models {
        Models::new(self.events.manager.clone())
    }

    /// Offer `service` as the host's model service (the agents plugin does). Withdrawn when
    /// this plugin stops.
    pub fn provide_models(&self, service: Arc<dyn ModelService>) {
        if let Some(manager) = self.events.manager.upgrade() {
            manager.provide_models(&self.name, service);
        }
    }

    /// The manifest's `[<kind>]` table as the kind's own type (errors name line and column).
    pub fn kind_table<T: DeserializeOwned>(&self) -> Result<Option<T>, PluginError> {
        let manifest = Manifest::parse(&self.manifest_path, &self.manifest_source)?;
        manifest
            .kind_table()
            .map_err(|message| PluginError::Settings {
                path: self.manifest_path.clone(),
                message,
            })
    }

    pub fn env(&self, key: &str) -> Option<&str> {
        self.env
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

impl fmt::Debug for PluginSetup {
    // Env values can be secrets: show only which are set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginSetup")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("implementation", &self.implementation)
            .field("dir", &self.dir)
            .field("manifest", &self.manifest_path)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}
