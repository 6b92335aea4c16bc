//! `airtable`: Airtable bases as tools — schema at the detail a model needs, records (list,
//! get, search, create, update, upsert, delete) in batches of 10, tables and fields, and an
//! exactly-once bulk import. Every request goes through one paced client (see `client.rs`).

mod client;
mod import;
mod tools;

use std::{path::PathBuf, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use serde::Deserialize;

pub use client::{Client, Limits};
pub use import::{BulkImport, Report};

use crate::plugin::{Plugin, PluginError, PluginSetup, ToolDef};

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
    /// plugin's `PLUGBOARD_FILES_ROOTS`, else the current folder.
    import_roots: Vec<PathBuf>,
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
        let client = Client::new(&base_url, token, limits).map_err(PluginError::Init)?;
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let expand = |p: PathBuf| match (&home, p.strip_prefix("~")) {
            (Some(home), Ok(rest)) => home.join(rest),
            _ => p,
        };
        let mut roots: Vec<PathBuf> = if !settings.import_roots.is_empty() {
            settings.import_roots.clone()
        } else if let Some(list) = setup.env("PLUGBOARD_FILES_ROOTS") {
            std::env::split_paths(list)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        } else {
            vec![PathBuf::from(".")]
        };
        roots = roots
            .into_iter()
            .map(expand)
            .filter_map(|p| std::fs::canonicalize(&p).ok())
            .collect();
        let checkpoint_dir = settings.checkpoint_dir.map(expand).unwrap_or_else(|| {
            std::env::var_os("XDG_STATE_HOME")
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".local/state")))
                .unwrap_or_else(std::env::temp_dir)
                .join("plugboard/imports")
        });
        Ok(Arc::new(Airtable {
            client,
            max_records: settings.max_records_per_call.clamp(1, 1000),
            import_roots: roots,
            checkpoint_dir,
        }) as Arc<dyn Plugin>)
    })
}

#[derive(Clone)]
pub(crate) struct Airtable {
    pub client: Arc<Client>,
    pub max_records: usize,
    /// Canonical folders `bulk_import` may read.
    pub import_roots: Vec<PathBuf>,
    pub checkpoint_dir: PathBuf,
}

impl Plugin for Airtable {
    fn tools(&self) -> Vec<ToolDef> {
        tools::all(Arc::new(self.clone()))
    }
}
