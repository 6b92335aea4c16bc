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
    Change, Plugin, PluginError, PluginEvents, PluginSetup, PromptDef, ResourceDef, TemplateDef,
    ToolDef, UriTemplate, check_tool_name,
    manifest::{self, Kind, Manifest},
    registry::{self, PromptEntry, Registry, ResourceEntry, TemplateEntry},
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
    /// Published resource URIs and URI templates.
    pub resources: Vec<String>,
    /// Published prompt names.
    pub prompts: Vec<String>,
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
    offer: Offer,
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
}

pub struct Manager {
    config: ManagerConfig,
    slots: RwLock<BTreeMap<String, Slot>>,
    /// The published snapshot; replaced whole on every change.
    registry: RwLock<Arc<Registry>>,
    /// Fires whenever something clients see changes (`list_changed`, resource updates).
    changed: broadcast::Sender<Change>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    env: Box<dyn Fn() -> HashMap<String, String> + Send + Sync>,
    /// For the plugins' [`PluginEvents`].
    me: std::sync::Weak<Manager>,
    /// 2026-07-28 tool calls waiting for the client's input (see `call.rs`).
    pub(super) suspended: super::call::Suspended,
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
        let manager = Arc::new_cyclic(|me| Self {
            config,
            slots: RwLock::new(BTreeMap::new()),
            registry: RwLock::new(Arc::default()),
            changed: broadcast::channel(64).0,
            reloading: tokio::sync::Mutex::new(()),
            env,
            me: me.clone(),
            suspended: Default::default(),
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

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
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
                offer: Offer::default(),
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
        self.swap(registry);
    }

    /// Ask every running plugin for its offer again and publish it (a plugin called
    /// [`PluginEvents::list_changed`]).
    pub(crate) async fn republish(&self) {
        let _guard = self.reloading.lock().await;
        let instances: Vec<(String, Arc<dyn Plugin>)> = self
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|(n, s)| s.instance.clone().map(|i| (n.clone(), i)))
            .collect();
        let mut offers = HashMap::new();
        for (name, plugin) in instances {
            // Its own task: a panic while listing fails this plugin only.
            match tokio::spawn(async move { Offer::of(&*plugin) }).await {
                Ok(offer) => {
                    offers.insert(name, Ok(offer));
                }
                Err(join) => {
                    offers.insert(name, Err(panic_message(join)));
                }
            }
        }
        let mut slots = std::mem::take(&mut *self.slots.write().unwrap_or_else(|e| e.into_inner()));
        for (name, offer) in offers {
            if let Some(slot) = slots.get_mut(&name) {
                match offer {
                    Ok(offer) => slot.offer = offer,
                    Err(panic) => {
                        slot.instance = None;
                        slot.offer = Offer::default();
                        slot.status = Status::Failed(format!("panicked while listing: {panic}"));
                    }
                }
            }
        }
        let registry = self.build_registry(&mut slots);
        *self.slots.write().unwrap_or_else(|e| e.into_inner()) = slots;
        self.swap(registry);
    }

    /// Publish `registry` and tell clients what changed.
    fn swap(&self, registry: Registry) {
        let registry = Arc::new(registry);
        let previous = std::mem::replace(
            &mut *self.registry.write().unwrap_or_else(|e| e.into_inner()),
            registry.clone(),
        );
        let (tools, resources, prompts) = registry.differs(&previous);
        // No receivers is fine: nobody is connected yet.
        for (changed, change) in [
            (tools, Change::Tools),
            (resources, Change::Resources),
            (prompts, Change::Prompts),
        ] {
            if changed {
                let _ = self.changed.send(change);
            }
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
            events: PluginEvents::new(self.changed.clone(), self.me.clone()),
        };
        // Its own task: a panic during init fails this plugin only.
        let task = tokio::spawn(async move {
            let plugin = init(setup).await?;
            let offer = Offer::of(&*plugin);
            Ok::<_, PluginError>((plugin, offer))
        });
        let started = Instant::now();
        match tokio::time::timeout(self.config.init_timeout, task).await {
            Ok(Ok(Ok((plugin, offer)))) => {
                tracing::debug!(plugin = %manifest.name, ms = started.elapsed().as_millis() as u64, "plugin initialised");
                slot.instance = Some(plugin);
                slot.offer = offer;
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

    /// Publish what every ready plugin offers, in plugin-name order. A plugin with an invalid
    /// or already-taken tool name, prompt name, resource URI or template fails whole, with the
    /// reason; the others are unaffected.
    fn build_registry(&self, slots: &mut BTreeMap<String, Slot>) -> Registry {
        let mut registry = Registry::default();
        let mut tools = Vec::new();
        let mut resources = Vec::new();
        let mut prompts = Vec::new();
        // Which plugin holds each name, URI and template.
        let mut owner: HashMap<String, String> = HashMap::new();
        for (name, slot) in slots.iter_mut() {
            let Some(manifest) = &slot.manifest else {
                continue;
            };
            if slot.instance.is_none() {
                continue;
            }
            let plugin: Arc<str> = Arc::from(name.as_str());
            match publish_offer(&slot.offer, manifest.prefix(), &plugin, &owner) {
                Err(reason) => {
                    slot.status = Status::Failed(reason);
                    log_status(name, &slot.status);
                }
                Ok(published) => {
                    slot.status = Status::Ready;
                    // Resources and prompts follow the plugin filter (--toolsets); tools
                    // follow every filter.
                    let plugin_shown = self.config.filters.toolsets.is_empty()
                        || self.config.filters.toolsets.iter().any(|t| t == name);
                    for key in published.keys {
                        owner.insert(key, name.clone());
                    }
                    for (tool_name, entry) in published.tools {
                        if self.config.filters.allows(name, &entry.tool) {
                            tools.push(entry.tool.clone());
                            registry.entries.insert(tool_name, entry);
                        }
                    }
                    if plugin_shown {
                        for (resource, entry) in published.resources {
                            registry
                                .resource_entries
                                .insert(resource.uri.clone(), entry);
                            resources.push(resource);
                        }
                        registry.templates.extend(published.templates);
                        for entry in published.prompts {
                            prompts.push(entry.prompt.clone());
                            registry
                                .prompt_entries
                                .insert(entry.prompt.name.clone(), entry);
                        }
                    }
                }
            }
        }
        registry.set_tools(tools);
        registry.resources = Arc::new(resources);
        registry.prompts = Arc::new(prompts);
        registry
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
                resources: registry
                    .resources
                    .iter()
                    .filter(|r| {
                        registry
                            .resource_entries
                            .get(&r.uri)
                            .is_some_and(|e| *e.plugin == **name)
                    })
                    .map(|r| r.uri.clone())
                    .chain(
                        registry
                            .templates
                            .iter()
                            .filter(|t| *t.plugin == **name)
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
                            .is_some_and(|e| *e.plugin == **name)
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
            })
            .collect()
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

    /// Stop every plugin (on server exit).
    pub async fn shutdown(&self) {
        let slots = std::mem::take(&mut *self.slots.write().unwrap_or_else(|e| e.into_inner()));
        for (name, slot) in slots {
            stop(&name, slot).await;
        }
    }
}

/// One plugin's offer in published form, checked against what others already publish.
struct Published {
    tools: Vec<(String, registry::Entry)>,
    resources: Vec<(rmcp::model::Resource, ResourceEntry)>,
    templates: Vec<TemplateEntry>,
    prompts: Vec<PromptEntry>,
    /// The owner keys this plugin takes (`tool:…`, `prompt:…`, `resource:…`, `template:…`).
    keys: Vec<String>,
}

fn publish_offer(
    offer: &Offer,
    prefix: &str,
    plugin: &Arc<str>,
    owner: &HashMap<String, String>,
) -> Result<Published, String> {
    let mut out = Published {
        tools: Vec::new(),
        resources: Vec::new(),
        templates: Vec::new(),
        prompts: Vec::new(),
        keys: Vec::new(),
    };
    let mut claim = |kind: &str, what: &str, hint: &str| -> Result<(), String> {
        let key = format!("{kind}:{what}");
        if let Some(other) = owner.get(&key) {
            return Err(format!(
                "{kind} `{what}` is already published by plugin `{other}`; {hint}"
            ));
        }
        if out.keys.contains(&key) {
            return Err(format!("{kind} `{what}` is defined twice"));
        }
        out.keys.push(key);
        Ok(())
    };
    let prefixed = |name: &str| {
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}_{name}")
        }
    };
    for def in &offer.tools {
        let entry = registry::publish(def, prefix, plugin)?;
        let tool_name = entry.tool.name.to_string();
        claim("tool", &tool_name, "give this plugin another prefix")?;
        out.tools.push((tool_name, entry));
    }
    for def in &offer.resources {
        let uri = def.resource.uri.clone();
        if !uri.contains(':') {
            return Err(format!(
                "resource URI `{uri}` has no scheme (e.g. `myplugin://…`)"
            ));
        }
        claim("resource", &uri, "two plugins cannot serve the same URI")?;
        out.resources.push((
            def.resource.clone(),
            ResourceEntry {
                plugin: plugin.clone(),
                reader: def.reader.clone(),
            },
        ));
    }
    for def in &offer.templates {
        let text = def.template.uri_template.clone();
        let pattern = UriTemplate::parse(&text)?;
        claim(
            "resource template",
            &text,
            "two plugins cannot serve the same URIs",
        )?;
        out.templates.push(TemplateEntry {
            template: def.template.clone(),
            pattern,
            plugin: plugin.clone(),
            reader: def.reader.clone(),
            completer: def.completer.clone(),
        });
    }
    for def in &offer.prompts {
        let name = prefixed(&def.prompt.name);
        check_tool_name(&name).map_err(|e| e.replace("tool name", "prompt name"))?;
        claim("prompt", &name, "give this plugin another prefix")?;
        let mut prompt = def.prompt.clone();
        prompt.name = name;
        out.prompts.push(PromptEntry {
            prompt,
            plugin: plugin.clone(),
            handler: def.handler.clone(),
            completer: def.completer.clone(),
        });
    }
    Ok(out)
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
        Ok(payload) => payload_message(&*payload),
        Err(e) => e.to_string(),
    }
}

/// The message a panic was raised with.
pub(super) fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}
