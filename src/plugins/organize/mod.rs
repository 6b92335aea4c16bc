//! `organize`: research into Airtable with AI — `airtable_ai_organize`. One record per document
//! (title, an AI-chosen category, tags, a summary, the file path, a status, links to related
//! documents, a content hash), planned first and written on `apply`.
//!
//! The organizer imports no other plugin: it scans with the files plugin's `files_analyze`,
//! reads and writes Airtable with the airtable plugin's tools (so every write goes through
//! that plugin's pacer, in batches of 10), and asks the host's model service (the configured
//! providers, else the client's model by sampling), all through the manager as a client would.
//!
//! - [`engine`]: scan → compare with the table → classify → plan → apply.
//! - [`model`]: the prompts, and the model's JSON checked against its schema.
//! - [`tags`]: tag normalisation and related documents.
//! - [`report`]: the plan and the report as text.

mod engine;
mod model;
mod report;
mod tags;

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    plugin::{Hints, Models, Plugin, PluginError, PluginSetup, ToolContext, ToolDef, Toolbox},
    sandbox,
};

/// The table's fields, by role.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields, default)]
pub struct FieldNames {
    pub title: String,
    pub category: String,
    pub tags: String,
    pub summary: String,
    /// The key records are upserted on.
    pub path: String,
    pub status: String,
    /// A link to other records of the same table.
    pub related: String,
    pub hash: String,
}

impl Default for FieldNames {
    fn default() -> Self {
        Self {
            title: "Title".into(),
            category: "Category".into(),
            tags: "Tags".into(),
            summary: "Summary".into(),
            path: "File Path".into(),
            status: "Status".into(),
            related: "Related".into(),
            hash: "Content Hash".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    extract_chars: usize,
    summary_words: usize,
    max_tags: usize,
    max_categories: usize,
    max_related: usize,
    /// The model chooses each changed document's links among the documents sharing a tag
    /// with it (false: shared tags and the category alone decide).
    judge_links: bool,
    /// Most candidates the model chooses among, per document.
    link_candidates: usize,
    /// Documents per request when the model relates documents.
    relate_documents: usize,
    status: String,
    create_fields: bool,
    batch_documents: usize,
    batch_chars: usize,
    llm_in_flight: usize,
    writes_in_flight: usize,
    timeout_secs: u64,
    provider: String,
    checkpoint_dir: Option<PathBuf>,
    fields: FieldNames,
    /// Model name prefix → (input, output) US dollars per million tokens.
    prices: BTreeMap<String, (f64, f64)>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            extract_chars: 2000,
            summary_words: 40,
            max_tags: 5,
            max_categories: 8,
            max_related: 5,
            judge_links: true,
            link_candidates: 8,
            relate_documents: 10,
            status: "Organized".into(),
            create_fields: true,
            batch_documents: 8,
            batch_chars: 24_000,
            llm_in_flight: 4,
            writes_in_flight: 4,
            timeout_secs: 1800,
            provider: String::new(),
            checkpoint_dir: None,
            fields: FieldNames::default(),
            prices: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganizeArgs {
    /// Base id (app…).
    pub base: String,
    /// Table (name or id); missing fields are created on apply.
    pub table: String,
    /// Folder inside the files plugin's roots: one record per document, upserted on its path.
    /// Without it, the table's records are organized from their own text.
    #[serde(default)]
    pub path: Option<String>,
    /// Only documents whose path relative to `path` matches, e.g. `**/*.md`.
    #[serde(default)]
    pub glob: Option<String>,
    /// Include what `.gitignore` and `.ignore` files exclude.
    #[serde(default)]
    pub include_ignored: Option<bool>,
    /// Categories to choose from. Default: the table's, else a taxonomy the model proposes.
    #[serde(default)]
    pub categories: Option<Vec<String>>,
    /// Most tags per record (default from the settings: 5).
    #[serde(default)]
    #[schemars(range(min = 1, max = 20))]
    pub max_tags: Option<usize>,
    /// Most words per summary (default from the settings: 40).
    #[serde(default)]
    #[schemars(range(min = 5, max = 300))]
    pub summary_words: Option<usize>,
    /// Link related documents both ways, as the model judges (default true).
    #[serde(default)]
    pub link_related: Option<bool>,
    /// Judge every document's links again, not only new and changed ones'.
    #[serde(default)]
    pub relink: Option<bool>,
    /// Create missing fields and select options (default from the settings: true).
    #[serde(default)]
    pub create_fields: Option<bool>,
    /// Provider (a name or `auto`). Default: the settings', else the client's model by sampling.
    #[serde(default)]
    pub provider: Option<String>,
    /// Write the plan (default: answer with it). The apply reuses the model's answers.
    #[serde(default)]
    pub apply: Option<bool>,
    /// Forget what an earlier dry run or interrupted apply kept; classify afresh.
    #[serde(default)]
    pub restart: Option<bool>,
}

pub fn init(setup: PluginSetup) -> BoxFuture<'static, Result<Arc<dyn Plugin>, PluginError>> {
    Box::pin(async move {
        let settings: Settings = setup.settings()?;
        let checkpoint_dir = settings
            .checkpoint_dir
            .clone()
            .map(sandbox::expand_home)
            .unwrap_or_else(|| crate::config::state_dir("organize"));
        Ok(Arc::new(Organize(Arc::new(Inner {
            settings,
            checkpoints: crate::net::checkpoints::Checkpoints::new(
                "organize",
                checkpoint_dir,
                setup.shared.clone(),
            ),
            toolbox: setup.toolbox(),
            models: setup.models(),
        }))) as Arc<dyn Plugin>)
    })
}

struct Inner {
    settings: Settings,
    /// Interrupted runs, to resume (shared by replicas through Redis when configured).
    checkpoints: crate::net::checkpoints::Checkpoints,
    toolbox: Toolbox,
    models: Models,
}

#[derive(Clone)]
struct Organize(Arc<Inner>);

impl Plugin for Organize {
    fn tools(&self) -> Vec<ToolDef> {
        let inner = self.0.clone();
        vec![
            ToolDef::new::<OrganizeArgs, _, _>(
                "organize",
                "Organize a folder of documents into an Airtable table with AI: one record each \
                 with title, category, tags, summary, path and links to related documents \
                 (without `path`: the table's records, in place). A dry run answers with the plan \
                 and its cost; `apply: true` writes it. Safe to repeat.",
                Hints {
                    read_only: false,
                    destructive: false,
                    idempotent: true,
                    open_world: true,
                },
                move |args: OrganizeArgs, cx: ToolContext| {
                    let inner = inner.clone();
                    async move { engine::organize(inner, args, cx).await }
                },
            )
            .with_title("Organize documents into Airtable with AI")
            .with_timeout(Duration::from_secs(self.0.settings.timeout_secs.max(1)))
            .with_output::<engine::Outcome>(),
        ]
    }
}
