//! `airtable`: Airtable bases as tools — schema at the detail a model needs, records (list,
//! get, search, create, update, upsert, delete) in batches of 10, tables and fields, and an
//! exactly-once bulk import. Every request goes through one paced client (see `client.rs`);
//! `plugboard check --online` asks Airtable whose token it is and what it may do (`verify.rs`).

pub(crate) mod client;
pub(crate) mod import;
pub(crate) mod tools;
mod verify;

use std::{
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::Duration,
};

use futures::future::BoxFuture;
use serde::Deserialize;

pub use client::{Client, Limits};
pub use import::{BulkImport, Report};

use crate::{
    net::checkpoints::Checkpoints,
    plugin::{Finding, Plugin, PluginError, PluginSetup, ToolDef, ToolError},
    sandbox::{self, Exclude, Roots},
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    /// Seconds Airtable refuses a base after a 429.
    lockout_secs: f64,
    /// Seconds one HTTP request may take.
    request_timeout_secs: f64,
    /// Most records one `list_records` / `search_records` call returns.
    max_records_per_call: usize,
    /// Folders `bulk_import` may read files from (`~` is the home folder). Default: the files
    /// plugin's `PLUGBOARD_FILES_ROOTS`, else none (bulk import then reads only inline rows).
    import_roots: Vec<PathBuf>,
    /// Files inside those folders that are never imported (as the files plugin's `exclude`).
    exclude: Vec<String>,
    /// Globs that win over `exclude` (as the files plugin's `include_anyway`).
    include_anyway: Vec<String>,
    /// Import files that have more than one name (as the files plugin's `allow_hard_links`).
    allow_hard_links: bool,
    /// Where interrupted imports keep their checkpoints. Default:
    /// `$XDG_STATE_HOME/plugboard/imports` (`~/.local/state/plugboard/imports`).
    checkpoint_dir: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lockout_secs: 30.0,
            request_timeout_secs: 30.0,
            max_records_per_call: 100,
            import_roots: Vec::new(),
            exclude: sandbox::default_exclude(),
            include_anyway: sandbox::default_include_anyway(),
            allow_hard_links: false,
            checkpoint_dir: None,
        }
    }
}

pub fn init(setup: PluginSetup) -> BoxFuture<'static, Result<Arc<dyn Plugin>, PluginError>> {
    Box::pin(async move {
        let settings: Settings = setup.settings()?;
        let token = crate::net::SecretString::from(
            setup
                .env("AIRTABLE_API_KEY")
                .ok_or_else(|| PluginError::Init("AIRTABLE_API_KEY is not set".into()))?,
        );
        let base_url = setup
            .env("AIRTABLE_BASE_URL")
            .unwrap_or("https://api.airtable.com")
            .to_owned();
        let positive = |v: f64, name: &str| {
            if v.is_finite() && v > 0.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(PluginError::Init(format!("setting {name} must be > 0")))
            }
        };
        let limits = Limits {
            lockout: positive(settings.lockout_secs, "lockout_secs")?,
            timeout: positive(settings.request_timeout_secs, "request_timeout_secs")?,
            ..Limits::default()
        };
        let client = Client::new(&base_url, token, limits, setup.shared.as_ref())
            .map_err(PluginError::Init)?;
        let files = ImportFolders {
            settings: (
                settings.import_roots.clone(),
                settings.exclude.clone(),
                settings.include_anyway.clone(),
            ),
            env_roots: setup.env(sandbox::ROOTS_ENV).map(str::to_owned),
            hard_links: settings.allow_hard_links,
            roots: OnceLock::new(),
        };
        let checkpoint_dir = settings
            .checkpoint_dir
            .map(sandbox::expand_home)
            .unwrap_or_else(|| crate::config::state_dir("imports"));
        Ok(Arc::new(Airtable {
            client,
            max_records: settings.max_records_per_call.clamp(1, 1000),
            files: Arc::new(files),
            checkpoints: Checkpoints::new("import", checkpoint_dir, setup.shared.clone()),
        }) as Arc<dyn Plugin>)
    })
}

/// The folders bulk import may read — the `import_roots` setting, else `PLUGBOARD_FILES_ROOTS`,
/// else none — built on the first import that names a file: compiling the exclusion globs
/// costs start-up half a millisecond that a server which never imports a file should not pay.
pub(crate) struct ImportFolders {
    /// `import_roots`, `exclude`, `include_anyway`.
    settings: (Vec<PathBuf>, Vec<String>, Vec<String>),
    env_roots: Option<String>,
    hard_links: bool,
    roots: OnceLock<Result<Roots, String>>,
}

impl ImportFolders {
    /// The sandbox the import reads through; a bad glob in the settings is this error.
    pub fn get(&self) -> Result<&Roots, ToolError> {
        self.roots
            .get_or_init(|| self.build())
            .as_ref()
            .map_err(|e| ToolError::Failed(e.clone()))
    }

    /// A folder that does not exist is left out with a warning rather than failing the import
    /// of a file in another.
    fn build(&self) -> Result<Roots, String> {
        let (import_roots, exclude, include_anyway) = &self.settings;
        let paths = if !import_roots.is_empty() {
            import_roots.clone()
        } else {
            self.env_roots
                .as_deref()
                .map(sandbox::split_roots)
                .unwrap_or_default()
        };
        let paths: Vec<PathBuf> = paths
            .into_iter()
            .map(sandbox::expand_home)
            .filter(|p| match std::fs::canonicalize(p) {
                Ok(real) if real.is_dir() => true,
                _ => {
                    tracing::warn!(folder = %p.display(), "an airtable import folder is not a folder that exists; left out");
                    false
                }
            })
            .collect();
        let exclude = Exclude::new(exclude, include_anyway).map_err(|e| format!("airtable {e}"))?;
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        Roots::exactly(&paths, &cwd, exclude).map(|roots| {
            roots
                .owned_by("airtable", "import_roots", None)
                .allowing_hard_links(self.hard_links)
        })
    }
}

#[derive(Clone)]
pub(crate) struct Airtable {
    pub client: Arc<Client>,
    pub max_records: usize,
    /// What `bulk_import` may read: the import folders, secrets excluded.
    pub files: Arc<ImportFolders>,
    /// Interrupted imports, to resume (shared by replicas through Redis when configured).
    pub checkpoints: Checkpoints,
}

impl Plugin for Airtable {
    fn tools(&self) -> Vec<ToolDef> {
        tools::all(Arc::new(self.clone()))
    }

    fn condition(&self) -> Option<String> {
        self.client.condition()
    }

    /// The token against `whoami`: accepted, and with every scope the tools use.
    fn verify(&self) -> BoxFuture<'static, Vec<Finding>> {
        let client = self.client.clone();
        Box::pin(async move { vec![verify::verify(&client).await] })
    }
}
