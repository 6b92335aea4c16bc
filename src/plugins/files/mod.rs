//! The built-in `files` plugin: list, read, search and summarise local files, never outside the
//! configured roots.
//!
//! # Layout
//! - [`crate::sandbox`] (not here: every plugin that reads a user's file shares it): the roots,
//!   every requested path going through [`Roots::resolve`]; the secrets inside them (`.env`,
//!   keys) that no tool ever shows; walks that honour ignore files.
//! - `list`, `read`, `search`, `analyze`: one tool each, with its arguments and output.
//! - `document`: titles, word counts and extracts for `analyze`.
//!
//! Adding a tool means one new file and one line in [`FilesPlugin::tools`].

mod analyze;
mod document;
#[cfg(test)]
mod exclude_tests;
pub mod extract;
#[cfg(test)]
mod ignore_tests;
mod list;
mod read;
mod search;

pub use extract::{EXTRACT_ARG, child_main as extract_child_main};

use std::{path::PathBuf, sync::Arc};

use futures::future::BoxFuture;
use rmcp::model::{CallToolResult, ContentBlock};
use serde::{Deserialize, Serialize};

use crate::sandbox::{self, show, walk};
pub use crate::sandbox::{Exclude, ROOTS_ENV, Roots, Target};

use crate::plugin::{Plugin, PluginError, PluginSetup, ToolDef, ToolError, ToolOutcome};

/// `[settings]` of the plugin's manifest.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesSettings {
    /// Folders that may be read; relative ones resolve against the current directory.
    pub roots: Vec<PathBuf>,
    /// The most `read` returns in one call.
    pub max_read_bytes: u64,
    /// Entries per `list` page when the call does not say.
    pub list_limit: usize,
    /// Default and ceiling of `search` hits.
    pub search_max_hits: usize,
    /// `search` skips bigger files: they are logs or data, and would stall the call.
    pub search_max_file_bytes: u64,
    /// Default number of documents `analyze` summarises.
    pub analyze_limit: usize,
    /// Globs of paths no tool shows: a project folder often holds `.env` files and keys. A glob
    /// matches the path relative to its root or the name of any folder on the way.
    pub exclude: Vec<String>,
    /// Globs that win over `exclude`: templates that document keys without holding them.
    pub include_anyway: Vec<String>,
    /// Walks leave out what `.gitignore`, `.ignore` and `.git/info/exclude` files name: pointed
    /// at a project, `target/` or `node_modules/` would drown what the model is after.
    pub respect_ignore_files: bool,
    /// Read regular files that have more than one name (hard links). Off: a hard link inside
    /// a root to a file outside it passes every path check, so such files are refused.
    pub allow_hard_links: bool,
}

impl Default for FilesSettings {
    fn default() -> Self {
        Self {
            roots: Vec::new(),
            max_read_bytes: 1024 * 1024,
            list_limit: 200,
            search_max_hits: 100,
            search_max_file_bytes: 4 * 1024 * 1024,
            analyze_limit: 200,
            exclude: sandbox::default_exclude(),
            include_anyway: sandbox::default_include_anyway(),
            respect_ignore_files: true,
            allow_hard_links: false,
        }
    }
}

impl FilesSettings {
    fn check(&self) -> Result<(), String> {
        let limits = [
            ("max_read_bytes", self.max_read_bytes),
            ("list_limit", self.list_limit as u64),
            ("search_max_hits", self.search_max_hits as u64),
            ("search_max_file_bytes", self.search_max_file_bytes),
            ("analyze_limit", self.analyze_limit as u64),
        ];
        match limits.iter().find(|(_, value)| *value == 0) {
            Some((name, _)) => Err(format!("files setting `{name}` must be greater than 0")),
            None => Ok(()),
        }
    }

    /// The compiled `exclude` and `include_anyway` globs.
    fn exclusions(&self) -> Result<Exclude, String> {
        Exclude::new(&self.exclude, &self.include_anyway).map_err(|e| format!("files {e}"))
    }
}

/// What every tool of the plugin shares.
#[derive(Debug)]
struct Files {
    /// Shared with the walks, whose entry filters must own what they use.
    roots: Arc<Roots>,
    settings: FilesSettings,
}

impl Files {
    /// Whether a walk leaves out ignored entries, given a call's `include_ignored`.
    fn respects_ignore_files(&self, include_ignored: Option<bool>) -> bool {
        self.settings.respect_ignore_files && !include_ignored.unwrap_or(false)
    }
}

/// The running plugin.
pub struct FilesPlugin {
    files: Arc<Files>,
}

/// Start the plugin from its manifest: roots from `PLUGBOARD_FILES_ROOTS`, else the `roots`
/// setting, else the current directory.
pub fn init(setup: PluginSetup) -> BoxFuture<'static, Result<Arc<dyn Plugin>, PluginError>> {
    Box::pin(async move {
        let plugin = tokio::task::spawn_blocking(move || FilesPlugin::from_setup(&setup))
            .await
            .map_err(|e| PluginError::Init(format!("files plugin start-up failed: {e}")))??;
        Ok(Arc::new(plugin) as Arc<dyn Plugin>)
    })
}

impl FilesPlugin {
    /// The plugin over `roots`, which carry the exclusions (built from the same `settings`, as
    /// `init` does).
    pub fn new(roots: Roots, settings: FilesSettings) -> Self {
        Self {
            files: Arc::new(Files {
                roots: Arc::new(roots),
                settings,
            }),
        }
    }

    fn from_setup(setup: &PluginSetup) -> Result<Self, PluginError> {
        let settings: FilesSettings = setup.settings()?;
        settings.check().map_err(PluginError::Init)?;
        let paths: Vec<PathBuf> = match setup.env(ROOTS_ENV) {
            Some(list) => sandbox::split_roots(list),
            None => settings.roots.clone(),
        };
        let paths: Vec<PathBuf> = paths.into_iter().map(sandbox::expand_home).collect();
        let cwd = std::env::current_dir()
            .map_err(|e| PluginError::Init(format!("cannot read the current directory: {e}")))?;
        let exclude = settings.exclusions().map_err(PluginError::Init)?;
        let roots = Roots::new(&paths, &cwd, exclude)
            .map_err(PluginError::Init)?
            .allowing_hard_links(settings.allow_hard_links);
        Ok(Self::new(roots, settings))
    }
}

impl Plugin for FilesPlugin {
    fn tools(&self) -> Vec<ToolDef> {
        vec![
            list::tool(self.files.clone()),
            read::tool(self.files.clone()),
            search::tool(self.files.clone()),
            analyze::tool(self.files.clone()),
        ]
    }
}

/// Run blocking filesystem work off the async threads.
async fn blocking<T, F>(work: F) -> Result<T, ToolError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ToolError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ToolError::Failed(format!("the file operation stopped unexpectedly: {e}")))?
}

/// A result with readable text for the model and the same facts as `structuredContent`.
fn outcome<T: Serialize>(text: Vec<String>, structured: &T) -> ToolOutcome {
    let value = serde_json::to_value(structured)
        .map_err(|e| ToolError::Failed(format!("cannot encode the result: {e}")))?;
    let mut result = CallToolResult::structured(value);
    result.content = text.into_iter().map(ContentBlock::text).collect();
    Ok(result)
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, path::Path};

    use rmcp::model::JsonObject;

    use super::*;
    use crate::plugin::ToolContext;

    /// A plugin over one temporary root, with some settings changed.
    pub(super) fn plugin(root: &Path, settings: FilesSettings) -> FilesPlugin {
        let exclude = settings.exclusions().unwrap();
        FilesPlugin::new(
            Roots::new(&[root.to_owned()], Path::new("/"), exclude).unwrap(),
            settings,
        )
    }

    /// Call a tool the way the manager does: JSON arguments through the type-erased handler.
    pub(super) async fn call(
        plugin: &FilesPlugin,
        tool: &str,
        args: serde_json::Value,
    ) -> ToolOutcome {
        let def = plugin.tools().into_iter().find(|t| t.name == tool).unwrap();
        let serde_json::Value::Object(args) = args else {
            panic!("arguments must be an object")
        };
        (def.handler)(args as JsonObject, ToolContext::detached()).await
    }

    /// The `path` of every item under `key` (`entries`, `hits`, `documents`) of an output.
    pub(super) fn paths_in(output: &serde_json::Value, key: &str) -> Vec<String> {
        output[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["path"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The structured content of a successful call.
    pub(super) async fn call_ok(
        plugin: &FilesPlugin,
        tool: &str,
        args: serde_json::Value,
    ) -> serde_json::Value {
        match call(plugin, tool, args).await {
            Ok(result) => result.structured_content.unwrap(),
            Err(e) => panic!("{tool} failed: {e}"),
        }
    }

    fn setup(settings: toml::Table, env: &[(&str, &str)]) -> PluginSetup {
        PluginSetup {
            name: "files".into(),
            kind: "builtin".into(),
            implementation: "files".into(),
            dir: PathBuf::from("plugins/files"),
            manifest_path: PathBuf::from("plugins/files/plugin.toml"),
            manifest_source: toml::to_string(&toml::Table::from_iter([(
                "settings".to_owned(),
                toml::Value::Table(settings),
            )]))
            .unwrap(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            events: crate::plugin::PluginEvents::detached(),
            serving: false,
            shared: None,
        }
    }

    #[tokio::test]
    async fn env_roots_win_over_settings() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let settings: toml::Table = toml::from_str(&format!(
            "roots = [{:?}]\nlist_limit = 5",
            a.path().display().to_string()
        ))
        .unwrap();
        let env = std::env::join_paths([b.path()]).unwrap();
        let plugin = FilesPlugin::from_setup(&setup(
            settings.clone(),
            &[(ROOTS_ENV, env.to_str().unwrap())],
        ))
        .unwrap();
        assert_eq!(
            plugin.files.roots.root_display(0),
            b.path().canonicalize().unwrap().display().to_string()
        );
        assert_eq!(plugin.files.settings.list_limit, 5);
        let plugin = FilesPlugin::from_setup(&setup(settings, &[])).unwrap();
        assert_eq!(
            plugin.files.roots.root_display(0),
            a.path().canonicalize().unwrap().display().to_string()
        );
        assert_eq!(plugin.tools().len(), 4);
    }

    #[tokio::test]
    async fn bad_roots_and_settings_fail_init() {
        let missing = setup(toml::Table::new(), &[(ROOTS_ENV, "/definitely/not/here")]);
        let Err(error) = init(missing).await else {
            panic!("a missing root must fail init")
        };
        assert!(
            matches!(error, PluginError::Init(ref m) if m.contains("/definitely/not/here")),
            "{error}"
        );
        let unknown = setup(toml::from_str("colour = 'red'").unwrap(), &[]);
        assert!(matches!(
            init(unknown).await,
            Err(PluginError::Settings { .. })
        ));
        let zero = setup(toml::from_str("list_limit = 0").unwrap(), &[]);
        assert!(matches!(init(zero).await, Err(PluginError::Init(_))));
        let glob = setup(toml::from_str("exclude = ['[']").unwrap(), &[]);
        assert!(matches!(
            init(glob).await,
            Err(PluginError::Init(ref m)) if m.contains("`exclude`")
        ));
    }

    #[test]
    fn default_settings_round_trip() {
        let parsed: FilesSettings = toml::Table::new().try_into().unwrap();
        assert_eq!(parsed, FilesSettings::default());
        let manifest = include_str!("../../../plugins/files/plugin.toml");
        let manifest: toml::Table = toml::from_str(manifest).unwrap();
        let settings = manifest
            .get("settings")
            .cloned()
            .unwrap_or(toml::Value::Table(toml::Table::new()));
        let parsed: FilesSettings = settings.try_into().unwrap();
        assert_eq!(parsed, FilesSettings::default());
    }

    #[test]
    fn tool_schemas_describe_every_argument() {
        let dir = tempfile::tempdir().unwrap();
        for tool in plugin(dir.path(), FilesSettings::default()).tools() {
            assert!(
                tool.output_schema.is_some(),
                "{} has no output schema",
                tool.name
            );
            assert_eq!(tool.annotations.read_only_hint, Some(true));
            let properties = tool.input_schema["properties"].as_object().unwrap();
            for (name, schema) in properties {
                assert!(
                    schema.get("description").is_some(),
                    "{}.{name} has no description",
                    tool.name
                );
            }
            assert_eq!(
                tool.input_schema["additionalProperties"], false,
                "{}",
                tool.name
            );
        }
    }
}
