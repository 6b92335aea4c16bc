//! Where each plugin stands, as `plugboard plugins`, `check` and the API show it.

use std::{fmt, path::PathBuf};

use super::Manager;

/// Where a plugin stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ready,
    Disabled,
    /// Required environment variables that are not set.
    Unconfigured(Vec<String>),
    /// Programs it needs that are not installed (not on PATH).
    Uninstalled(Vec<String>),
    Failed(String),
    /// Running, but it reports it cannot serve now (an upstream died); its tools are
    /// withheld until it is back.
    Down(String),
    /// Running and published, in the condition it reports (`restarting (attempt 2, …)`).
    Degraded(String),
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Ready => f.write_str("ready"),
            Status::Disabled => f.write_str("disabled"),
            Status::Unconfigured(missing) => write!(f, "unconfigured (set {})", missing.join(", ")),
            Status::Uninstalled(missing) => {
                write!(f, "unconfigured (install {})", missing.join(", "))
            }
            Status::Failed(reason) => write!(f, "failed ({reason})"),
            Status::Down(reason) => write!(f, "down ({reason})"),
            Status::Degraded(condition) => f.write_str(condition),
        }
    }
}

/// A plugin as `plugboard plugins` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginStatus {
    pub name: String,
    /// The status in words: `ready`, `ready (1 tool refused: …)`, `down (…)`, `failed (…)`.
    pub status: String,
    #[serde(skip)]
    pub state: Status,
    pub description: String,
    pub manifest: PathBuf,
    /// The manifest's kind (`builtin`, `mcp`, …).
    pub kind: String,
    /// What its tools' names start with (`<prefix>_`); empty for none.
    #[serde(skip)]
    pub prefix: String,
    /// Published tool names (after filters).
    pub tools: Vec<String>,
    /// What of its offer was not published, and why.
    pub refused: Vec<String>,
    /// Published resource URIs and URI templates.
    pub resources: Vec<String>,
    /// Published prompt names.
    pub prompts: Vec<String>,
    /// The variables the manifest declares: name, whether set, required, secret. Never values.
    pub env: Vec<EnvReport>,
    /// What it runs: plugboard's version for a built-in, an MCP server's name and version as
    /// it reported them.
    pub version: Option<String>,
    /// How long its last start took, in milliseconds (`None` when it did not start).
    pub load_ms: Option<u64>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct EnvReport {
    pub name: String,
    pub set: bool,
    pub required: bool,
    pub secret: bool,
    pub description: String,
}

impl Manager {
    /// The plugins whose manifests put their tools behind the discovery tools.
    pub fn discovery_plugins(&self) -> Vec<String> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots
            .iter()
            .filter(|(_, slot)| slot.manifest.as_ref().is_some_and(|m| m.tool_discovery))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Whether any plugin puts its tools behind the discovery tools (asked on every call:
    /// no allocation).
    pub fn any_discovery_plugin(&self) -> bool {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots
            .values()
            .any(|slot| slot.manifest.as_ref().is_some_and(|m| m.tool_discovery))
    }

    /// Every plugin's status, for `plugboard plugins` and `plugboard check`.
    pub fn statuses(&self) -> Vec<PluginStatus> {
        let registry = self.registry();
        let env = (self.env)();
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots
            .iter()
            .map(|(name, slot)| {
                let condition = slot.instance.as_ref().and_then(|p| p.condition());
                let state = match (&slot.status, &slot.down, condition) {
                    (Status::Ready, Some(reason), _) => Status::Down(reason.clone()),
                    (Status::Ready, None, Some(condition)) => Status::Degraded(condition),
                    (status, _, _) => status.clone(),
                };
                let status = match &state {
                    Status::Ready if !slot.refused.is_empty() => {
                        let n = slot.refused.len();
                        let all_tools = slot.refused.iter().all(|r| r.starts_with("tool"));
                        let noun = match (all_tools, n) {
                            (true, 1) => "tool",
                            (true, _) => "tools",
                            (false, 1) => "item",
                            (false, _) => "items",
                        };
                        format!("ready ({n} {noun} refused: {})", slot.refused.join("; "))
                    }
                    state => state.to_string(),
                };
                let owned = |plugin: &str| plugin == name.as_str();
                PluginStatus {
                    name: name.clone(),
                    status,
                    state,
                    description: slot
                        .manifest
                        .as_ref()
                        .map(|m| m.description.clone())
                        .unwrap_or_default(),
                    manifest: slot.path.clone(),
                    kind: slot
                        .manifest
                        .as_ref()
                        .map(|m| m.kind.clone())
                        .unwrap_or_default(),
                    prefix: slot
                        .manifest
                        .as_ref()
                        .map(|m| m.prefix().to_owned())
                        .unwrap_or_default(),
                    tools: registry
                        .tools
                        .iter()
                        .filter(|t| {
                            registry
                                .entries
                                .get(t.name.as_ref())
                                .is_some_and(|e| owned(&e.plugin))
                        })
                        .map(|t| t.name.to_string())
                        .collect(),
                    refused: slot.refused.clone(),
                    resources: registry
                        .resources
                        .iter()
                        .filter(|r| {
                            registry
                                .resource_entries
                                .get(&r.uri)
                                .is_some_and(|e| owned(&e.plugin))
                        })
                        .map(|r| r.uri.clone())
                        .chain(
                            registry
                                .templates
                                .iter()
                                .filter(|t| owned(&t.plugin))
                                .map(|t| t.template.uri_template.clone()),
                        )
                        .collect(),
                    prompts: registry
                        .prompts
                        .iter()
                        .filter(|p| {
                            registry
                                .prompt_entries
                                .get(&p.name)
                                .is_some_and(|e| owned(&e.plugin))
                        })
                        .map(|p| p.name.clone())
                        .collect(),
                    env: slot
                        .manifest
                        .iter()
                        .flat_map(|m| m.env.iter())
                        .map(|(k, v)| EnvReport {
                            name: k.clone(),
                            set: env.get(k).is_some_and(|v| !v.is_empty()),
                            required: v.required,
                            secret: v.secret,
                            description: v.description.clone(),
                        })
                        .collect(),
                    version: slot.instance.as_ref().map(|p| {
                        p.version()
                            .unwrap_or_else(|| format!("plugboard {}", env!("CARGO_PKG_VERSION")))
                    }),
                    load_ms: slot.loaded.map(|d| d.as_millis() as u64),
                }
            })
            .collect()
    }
}

pub(super) fn log_status(name: &str, status: &Status) {
    match status {
        Status::Ready => tracing::info!(plugin = %name, "plugin ready"),
        Status::Disabled => tracing::debug!(plugin = %name, "plugin disabled"),
        Status::Unconfigured(_) | Status::Uninstalled(_) => {
            tracing::warn!(plugin = %name, status = %status, "plugin not configured")
        }
        Status::Failed(_) | Status::Down(_) => {
            tracing::error!(plugin = %name, status = %status, "plugin failed")
        }
        Status::Degraded(_) => tracing::warn!(plugin = %name, status = %status, "plugin degraded"),
    }
}
