//! The plugin manager: discovers manifests, checks what each plugin needs, initialises the
//! plugins concurrently, keeps a status per plugin, publishes their tools and runs calls.
//!
//! One plugin's failure (a bad manifest, a failed init, a panic in a call) never reaches
//! another plugin or the server.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt,
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use rmcp::model::Tool;
use tokio::sync::broadcast;

use super::{
    Plugin, PluginError, PluginSetup, ToolDef,
    manifest::{self, Kind, Manifest},
    registry::{self, Registry},
};

/// What the manager is started with.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub plugins_dir: PathBuf,
    /// When `plugins_dir` does not exist, load the manifests shipped inside the binary
    /// (`plugins/*/plugin.toml` at build time), so a bare binary works from any folder.
    pub shipped_fallback: bool,
    pub filters: Filters,
    pub init_timeout: Duration,
    pub call_timeout: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            plugins_dir: PathBuf::from("plugins"),
            shipped_fallback: false,
            filters: Filters::default(),
            init_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(120),
        }
    }
}

/// Which tools are published, whatever the plugins offer (`--read-only`, `--tools`, …).
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Hide every tool not marked read-only.
    pub read_only: bool,
    /// Publish only these tools (full names); empty means all.
    pub tools: Vec<String>,
    /// Never publish these; wins over everything else.
    pub exclude_tools: Vec<String>,
    /// Publish only the tools of these plugins; empty means all.
    pub toolsets: Vec<String>,
}

impl Filters {
    fn allows(&self, plugin: &str, tool: &Tool) -> bool {
        let name = tool.name.as_ref();
        if self.exclude_tools.iter().any(|t| t == name) {
            return false;
        }
        if self.read_only && tool.annotations.as_ref().and_then(|a| a.read_only_hint) != Some(true)
        {
            return false;
        }
        (self.tools.is_empty() || self.tools.iter().any(|t| t == name))
            && (self.toolsets.is_empty() || self.toolsets.iter().any(|t| t == plugin))
    }
}

/// Where a plugin stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ready,
    Disabled,
    /// Required environment variables that are not set.
    Unconfigured(Vec<String>),
    Failed(String),
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Ready => f.write_str("ready"),
            Status::Disabled => f.write_str("disabled"),
            Status::Unconfigured(missing) => write!(f, "unconfigured (set {})", missing.join(", ")),
            Status::Failed(reason) => write!(f, "failed ({reason})"),
        }
    }
}

/// A plugin as `plugboard plugins` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginStatus {
    pub name: String,
    pub status: String,
    #[serde(skip)]
    pub state: Status,
    pub description: String,
    pub manifest: PathBuf,
    /// Published tool names (after filters).
    pub tools: Vec<String>,
    /// The variables the manifest declares: name, whether set, required, secret. Never values.
    pub env: Vec<EnvReport>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EnvReport {
    pub name: String,
    pub set: bool,
    pub required: bool,
    pub secret: bool,
    pub description: String,
}

/// One discovered plugin.
struct Slot {
    /// `None` when the manifest itself could not be read.
    manifest: Option<Manifest>,
    path: PathBuf,
    /// Manifest plus the values of its variables: a change means re-initialising.
    fingerprint: u64,
    status: Status,
    instance: Option<Arc<dyn Plugin>>,
    tools: Vec<ToolDef>,
}

pub struct Manager {
    config: ManagerConfig,
    slots: RwLock<BTreeMap<String, Slot>>,
    /// The published snapshot; replaced whole on every change.
    registry: RwLock<Arc<Registry>>,
    /// Fires whenever the published tool list changes (for `tools/list_changed`).
    changed: broadcast::Sender<()>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    env: Box<dyn Fn() -> HashMap<String, String> + Send + Sync>,
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
        let manager = Arc::new(Self {
            config,
            slots: RwLock::new(BTreeMap::new()),
            registry: RwLock::new(Arc::default()),
            changed: broadcast::channel(16).0,
            reloading: tokio::sync::Mutex::new(()),
            env,
        });
        manager.reload().await;
        manager
    }

    pub fn config(&self) -> &ManagerConfig {
        &self.config
    }

    /// The current published tool set.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn tools(&self) -> Arc<Vec<Tool>> {
        self.registry().tools()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<()> {
        self.changed.subscribe()
    }

    /// Re-read the manifests and apply the difference: new plugins start, removed ones stop,
    /// changed ones (manifest or variables) restart, the rest keep running untouched.
    pub async fn reload(&self) {
        let _guard = self.reloading.lock().await;
        let env = (self.env)();
        let found = self.discover();

        let mut old = std::mem::take(&mut *self.slots.write().unwrap_or_else(|e| e.into_inner()));
        let mut kept = BTreeMap::new();
        let mut fresh = Vec::new();
        for (name, path, manifest) in found {
            let fingerprint = fingerprint(&manifest, &env);
            match old.remove(&name) {
                Some(slot) if slot.fingerprint == fingerprint && slot.path == path => {
                    kept.insert(name, slot);
                }
                previous => {
                    if let Some(prev) = previous {
                        stop(&name, prev).await;
                    }
                    fresh.push((name, path, manifest, fingerprint));
                }
            }
        }
        for (name, slot) in old {
            tracing::info!(plugin = %name, "plugin removed");
            stop(&name, slot).await;
        }

        // Plugins that depend on others start in waves, after those are ready.
        let mut pending: Vec<Slot> = Vec::new();
        for (_name, path, manifest, fingerprint) in fresh {
            let status = match &manifest {
                Err(e) => Status::Failed(e.to_string()),
                Ok(m) => precheck(m, &env),
            };
            pending.push(Slot {
                manifest: manifest.ok(),
                path,
                fingerprint,
                status,
                instance: None,
                tools: Vec::new(),
            });
        }
        let mut waiting: Vec<Slot> = Vec::new();
        for slot in pending {
            if slot.status == Status::Ready {
                waiting.push(slot);
            } else {
                let name = slot_name(&slot);
                log_status(&name, &slot.status);
                kept.insert(name, slot);
            }
        }
        while !waiting.is_empty() {
            let (ready_now, blocked): (Vec<Slot>, Vec<Slot>) =
                waiting.into_iter().partition(|slot| {
                    deps(slot)
                        .iter()
                        .all(|d| kept.get(d).is_some_and(|s| s.status == Status::Ready))
                });
            if ready_now.is_empty() {
                for mut slot in blocked {
                    let missing: Vec<String> = deps(&slot)
                        .iter()
                        .filter(|d| !kept.get(*d).is_some_and(|s| s.status == Status::Ready))
                        .map(|d| match kept.get(d) {
                            Some(s) => format!("`{d}` ({})", s.status),
                            None => format!("`{d}` (not found)"),
                        })
                        .collect();
                    slot.status = Status::Failed(format!("needs plugin {}", missing.join(", ")));
                    let name = slot_name(&slot);
                    log_status(&name, &slot.status);
                    kept.insert(name, slot);
                }
                break;
            }
            let started =
                futures::future::join_all(ready_now.into_iter().map(|slot| self.init(slot, &env)))
                    .await;
            for slot in started {
                let name = slot_name(&slot);
                log_status(&name, &slot.status);
                kept.insert(name, slot);
            }
            waiting = blocked;
        }

        let registry = self.build_registry(&mut kept);
        *self.slots.write().unwrap_or_else(|e| e.into_inner()) = kept;
        let previous = std::mem::replace(
            &mut *self.registry.write().unwrap_or_else(|e| e.into_inner()),
            Arc::new(registry),
        );
        if *previous.tools != *self.tools() {
            // No receivers is fine: nobody is connected yet.
            let _ = self.changed.send(());
        }
    }

    fn discover(&self) -> Vec<(String, PathBuf, Result<Manifest, PluginError>)> {
        let dir = &self.config.plugins_dir;
        let manifests: Vec<(PathBuf, Result<Manifest, PluginError>)> = if self
            .config
            .shipped_fallback
            && !dir.is_dir()
        {
            tracing::info!(dir = %dir.display(), "no plugins folder; using the manifests shipped in the binary");
            crate::plugins::SHIPPED_MANIFESTS
                .iter()
                .map(|(name, text)| {
                    let path = PathBuf::from(format!("(shipped)/{name}/plugin.toml"));
                    let manifest = Manifest::parse(&path, text);
                    (path, manifest)
                })
                .collect()
        } else {
            match manifest::discover(dir) {
                Ok(paths) => paths
                    .into_iter()
                    .map(|path| {
                        let manifest = Manifest::load(&path);
                        (path, manifest)
                    })
                    .collect(),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot read the plugins folder; no plugins loaded");
                    return Vec::new();
                }
            }
        };
        let mut seen = HashSet::new();
        let mut found = Vec::new();
        for (path, manifest) in manifests {
            let folder = folder_name(&path);
            let name = manifest.as_ref().map(|m| m.name.clone()).unwrap_or(folder);
            if !seen.insert(name.clone()) {
                tracing::error!(plugin = %name, path = %path.display(), "a plugin of this name is already loaded; ignoring this manifest");
                continue;
            }
            found.push((name, path, manifest));
        }
        found
    }

    async fn init(&self, mut slot: Slot, env: &HashMap<String, String>) -> Slot {
        let Some(manifest) = &slot.manifest else {
            return slot;
        };
        let Some(init) = crate::plugins::builtin(manifest.builtin()) else {
            slot.status = Status::Failed(format!(
                "no built-in plugin named `{}` (built-ins: {})",
                manifest.builtin(),
                crate::plugins::BUILTINS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            return slot;
        };
        let setup = PluginSetup {
            name: manifest.name.clone(),
            dir: manifest
                .path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            manifest_path: manifest.path.clone(),
            manifest_source: manifest.source.clone(),
            env: manifest
                .env
                .keys()
                .filter_map(|k| env.get(k).map(|v| (k.clone(), v.clone())))
                .collect(),
        };
        // Its own task: a panic during init fails this plugin only.
        let task = tokio::spawn(async move {
            let plugin = init(setup).await?;
            let tools = plugin.tools();
            Ok::<_, PluginError>((plugin, tools))
        });
        let started = Instant::now();
        match tokio::time::timeout(self.config.init_timeout, task).await {
            Ok(Ok(Ok((plugin, tools)))) => {
                tracing::debug!(plugin = %manifest.name, ms = started.elapsed().as_millis() as u64, "plugin initialised");
                slot.instance = Some(plugin);
                slot.tools = tools;
                slot.status = Status::Ready;
            }
            Ok(Ok(Err(e))) => slot.status = Status::Failed(e.to_string()),
            Ok(Err(join)) => {
                slot.status = Status::Failed(format!("init panicked: {}", panic_message(join)))
            }
            Err(_) => {
                slot.status = Status::Failed(format!(
                    "init did not finish within {} s",
                    self.config.init_timeout.as_secs_f64()
                ))
            }
        }
        slot
    }

    /// Publish the tools of every ready plugin, in plugin-name order. A plugin with an invalid
    /// or already-taken tool name fails whole, with the reason.
    fn build_registry(&self, slots: &mut BTreeMap<String, Slot>) -> Registry {
        let mut tools = Vec::new();
        let mut entries = HashMap::new();
        let mut owner: HashMap<String, String> = HashMap::new();
        for (name, slot) in slots.iter_mut() {
            let Some(manifest) = &slot.manifest else {
                continue;
            };
            if slot.instance.is_none() {
                continue;
            }
            let plugin: Arc<str> = Arc::from(name.as_str());
            let mut published = Vec::new();
            let mut problem = None;
            for def in &slot.tools {
                match registry::publish(def, manifest.prefix(), &plugin) {
                    Ok(entry) => {
                        let tool_name = entry.tool.name.to_string();
                        if let Some(other) = owner.get(&tool_name) {
                            problem = Some(format!(
                                "tool `{tool_name}` is already published by plugin `{other}`; give this plugin another prefix"
                            ));
                            break;
                        }
                        if published.iter().any(|(n, _): &(String, _)| *n == tool_name) {
                            problem = Some(format!("tool `{tool_name}` is defined twice"));
                            break;
                        }
                        published.push((tool_name, entry));
                    }
                    Err(reason) => {
                        problem = Some(reason);
                        break;
                    }
                }
            }
            if let Some(reason) = problem {
                slot.status = Status::Failed(reason);
                log_status(name, &slot.status);
                continue;
            }
            slot.status = Status::Ready;
            for (tool_name, entry) in published {
                owner.insert(tool_name.clone(), name.clone());
                if self.config.filters.allows(name, &entry.tool) {
                    tools.push(entry.tool.clone());
                    entries.insert(tool_name, entry);
                }
            }
        }
        Registry {
            tools: Arc::new(tools),
            entries,
        }
    }

    /// Every plugin's status, for `plugboard plugins` and `plugboard check`.
    pub fn statuses(&self) -> Vec<PluginStatus> {
        let registry = self.registry();
        let env = (self.env)();
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots
            .iter()
            .map(|(name, slot)| PluginStatus {
                name: name.clone(),
                status: slot.status.to_string(),
                state: slot.status.clone(),
                description: slot
                    .manifest
                    .as_ref()
                    .map(|m| m.description.clone())
                    .unwrap_or_default(),
                manifest: slot.path.clone(),
                tools: registry
                    .tools
                    .iter()
                    .filter(|t| {
                        registry
                            .entries
                            .get(t.name.as_ref())
                            .is_some_and(|e| *e.plugin == **name)
                    })
                    .map(|t| t.name.to_string())
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
            })
            .collect()
    }

    /// Stop every plugin (on server exit).
    pub async fn shutdown(&self) {
        let slots = std::mem::take(&mut *self.slots.write().unwrap_or_else(|e| e.into_inner()));
        for (name, slot) in slots {
            stop(&name, slot).await;
        }
    }
}

/// Why a plugin cannot start, before starting it; `Ready` means "go ahead".
fn precheck(manifest: &Manifest, env: &HashMap<String, String>) -> Status {
    if !manifest.enabled {
        return Status::Disabled;
    }
    if manifest.kind == Kind::Mcp {
        return Status::Failed("plugins of kind `mcp` are not supported by this version".into());
    }
    let missing: Vec<String> = manifest
        .env
        .iter()
        .filter(|(k, v)| v.required && env.get(*k).is_none_or(|v| v.is_empty()))
        .map(|(k, _)| k.clone())
        .collect();
    if !missing.is_empty() {
        return Status::Unconfigured(missing);
    }
    let absent: Vec<&str> = manifest
        .dependencies
        .commands
        .iter()
        .map(String::as_str)
        .filter(|c| !on_path(c))
        .collect();
    if !absent.is_empty() {
        return Status::Failed(format!("needs `{}` on PATH", absent.join("`, `")));
    }
    Status::Ready
}

fn on_path(command: &str) -> bool {
    if command.contains('/') {
        return Path::new(command).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(command).is_file()))
}

fn fingerprint(manifest: &Result<Manifest, PluginError>, env: &HashMap<String, String>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match manifest {
        Ok(m) => {
            format!("{m:?}").hash(&mut h);
            for key in m.env.keys() {
                (key, env.get(key)).hash(&mut h);
            }
        }
        Err(e) => e.to_string().hash(&mut h),
    }
    h.finish()
}

fn deps(slot: &Slot) -> &[String] {
    slot.manifest
        .as_ref()
        .map_or(&[], |m| &m.dependencies.plugins)
}

fn slot_name(slot: &Slot) -> String {
    slot.manifest
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_else(|| folder_name(&slot.path))
}

fn folder_name(manifest_path: &Path) -> String {
    manifest_path
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn log_status(name: &str, status: &Status) {
    match status {
        Status::Ready => tracing::info!(plugin = %name, "plugin ready"),
        Status::Disabled => tracing::debug!(plugin = %name, "plugin disabled"),
        Status::Unconfigured(_) => {
            tracing::warn!(plugin = %name, status = %status, "plugin not configured")
        }
        Status::Failed(_) => tracing::error!(plugin = %name, status = %status, "plugin failed"),
    }
}

async fn stop(name: &str, slot: Slot) {
    if let Some(plugin) = slot.instance {
        // A hanging or panicking shutdown must not hold up the others.
        let task = tokio::spawn(plugin.shutdown());
        if tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .is_err()
        {
            tracing::warn!(plugin = %name, "plugin did not shut down within 5 s");
        }
    }
}

pub(super) fn panic_message(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into()),
        Err(e) => e.to_string(),
    }
}
