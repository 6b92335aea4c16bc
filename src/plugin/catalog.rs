//! The plugin kinds a manager can start, handed to it by the binary: the manager itself names
//! no plugin. A kind is an entry — `builtin` (the plugins compiled in), and next `mcp` (any
//! MCP server) or `wasm` — each checking its own part of a manifest and starting plugins.

use std::{collections::BTreeMap, fmt, sync::Arc};

use futures::future::BoxFuture;

use super::{Manifest, Plugin, PluginError, PluginSetup};

/// How a built-in plugin is started: from its setup to a running plugin.
pub type Init = fn(PluginSetup) -> BoxFuture<'static, Result<Arc<dyn Plugin>, PluginError>>;

/// One kind of plugin (`kind = "…"` in a manifest).
pub trait PluginKind: Send + Sync + 'static {
    /// Check this kind's part of a manifest (its keys, its `[<kind>]` table) before anything
    /// starts; errors name what to fix, with the line and column where there is one.
    fn check(&self, manifest: &Manifest) -> Result<(), String> {
        let _ = manifest;
        Ok(())
    }

    /// What a plugin of this kind needs beyond its manifest's `[env]` and `[dependencies]`
    /// (an MCP server's command, the variables its `${…}` values name): a plugin missing
    /// them is `unconfigured`, saying what to set or install.
    fn needs(&self, manifest: &Manifest) -> Needs {
        let _ = manifest;
        Needs::default()
    }

    /// Start one plugin of this kind.
    fn start(&self, setup: PluginSetup)
    -> BoxFuture<'static, Result<Arc<dyn Plugin>, PluginError>>;
}

/// Programs (on PATH, or paths relative to the manifest's folder) and variables a plugin
/// needs.
#[derive(Debug, Default)]
pub struct Needs {
    pub commands: Vec<String>,
    pub variables: Vec<String>,
}

/// What the binary offers the manager: kinds by name, and the manifests built into it.
#[derive(Clone, Default)]
pub struct Catalog {
    kinds: BTreeMap<String, Arc<dyn PluginKind>>,
    /// `(folder name, manifest text)`: loaded when the plugins folder was not given and
    /// `./plugins` does not exist (a client launching the binary from any folder).
    shipped: Vec<(String, String)>,
}

impl Catalog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) the kind `name`.
    pub fn with_kind(mut self, name: &str, kind: impl PluginKind) -> Self {
        self.kinds.insert(name.to_owned(), Arc::new(kind));
        self
    }

    pub fn with_shipped(mut self, folder: &str, manifest: &str) -> Self {
        self.shipped.push((folder.to_owned(), manifest.to_owned()));
        self
    }

    pub fn kind(&self, name: &str) -> Option<&Arc<dyn PluginKind>> {
        self.kinds.get(name)
    }

    pub fn kind_names(&self) -> Vec<&str> {
        self.kinds.keys().map(String::as_str).collect()
    }

    pub fn shipped(&self) -> &[(String, String)] {
        &self.shipped
    }
}

impl fmt::Debug for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Catalog")
            .field("kinds", &self.kind_names())
            .field(
                "shipped",
                &self.shipped.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The `builtin` kind: plugins compiled into the binary, chosen by the manifest's `builtin`
/// key (default: its name).
#[derive(Clone, Default)]
pub struct Builtins {
    inits: BTreeMap<&'static str, Init>,
}

impl Builtins {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, name: &'static str, init: Init) -> Self {
        self.inits.insert(name, init);
        self
    }
}

impl PluginKind for Builtins {
    fn check(&self, manifest: &Manifest) -> Result<(), String> {
        let name = manifest.builtin();
        if self.inits.contains_key(name) {
            return Ok(());
        }
        Err(format!(
            "no built-in plugin named `{name}` (built-ins: {})",
            self.inits.keys().copied().collect::<Vec<_>>().join(", ")
        ))
    }

    fn start(
        &self,
        setup: PluginSetup,
    ) -> BoxFuture<'static, Result<Arc<dyn Plugin>, PluginError>> {
        match self.inits.get(setup.implementation.as_str()) {
            Some(init) => init(setup),
            None => {
                let message = format!("no built-in plugin named `{}`", setup.implementation);
                Box::pin(async move { Err(PluginError::Init(message)) })
            }
        }
    }
}
