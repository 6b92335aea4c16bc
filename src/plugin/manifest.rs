//! `plugins/<name>/plugin.toml`: what a plugin is, what it needs, how it is set up.
//!
//! ```toml
//! name = "airtable"
//! kind = "builtin"            # a kind of the binary's catalog: builtin, mcp, …
//! enabled = true
//! prefix = "airtable"         # optional; default: the name; "" publishes bare tool names
//! description = "Airtable bases"
//!
//! [env.AIRTABLE_API_KEY]
//! required = true
//! secret = true
//! description = "Personal access token"
//!
//! [settings]                  # free-form, checked by the plugin itself
//! rate_limit = 5
//!
//! [dependencies]
//! commands = ["git"]          # must be on PATH
//! plugins = ["files"]         # must be ready first
//!
//! [mcp]                       # the kind's own table, named after the kind; checked by it
//! command = "npx"
//! ```

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use super::PluginError;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    /// Which kind of the catalog starts it (`builtin`, `mcp`, …).
    pub kind: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The `builtin` kind's key: which built-in implementation to run; defaults to `name`, so
    /// two manifests can run the same built-in with different settings (say `docs` and
    /// `code`, both `files`).
    pub builtin: Option<String>,
    pub prefix: Option<String>,
    /// Its tools are not listed but found through the discovery tools (find, describe,
    /// call), as `--tool-discovery` does for all: for servers with many tools.
    #[serde(default)]
    pub tool_discovery: bool,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub env: BTreeMap<String, EnvVar>,
    #[serde(default)]
    pub settings: toml::Table,
    #[serde(default)]
    pub dependencies: Dependencies,
    /// Where it was read from; not part of the file.
    #[serde(skip)]
    pub path: PathBuf,
    /// The file's text, so a plugin's own settings errors can name the line too.
    #[serde(skip)]
    pub source: String,
    /// Whether the file has a table named after its kind (`[mcp]`): the kind reads it with
    /// [`Manifest::kind_table`].
    #[serde(skip)]
    pub has_kind_table: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    #[serde(default)]
    pub required: bool,
    /// Never printed, logged or put in an error.
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependencies {
    #[serde(default)]
    pub commands: Vec<String>,
    #[serde(default)]
    pub plugins: Vec<String>,
}

fn yes() -> bool {
    true
}

impl Manifest {
    /// Parse a manifest; errors name the file, line and column. The table named after the
    /// manifest's kind (`[mcp]` for `kind = "mcp"`) is left to that kind.
    pub fn parse(path: &Path, text: &str) -> Result<Self, PluginError> {
        let error = |message: String| PluginError::Manifest {
            path: path.to_owned(),
            message,
        };
        let mut root = toml::de::DeTable::parse(text).map_err(|e| error(located(text, &e)))?;
        let has_kind_table = take_kind_table(root.get_mut()).is_some();
        let mut manifest = Manifest::deserialize(toml::de::Deserializer::from(root))
            .map_err(|e| error(located(text, &e)))?;
        manifest.path = path.to_owned();
        manifest.source = text.to_owned();
        manifest.has_kind_table = has_kind_table;
        manifest.check()?;
        Ok(manifest)
    }

    /// The manifest's `[<kind>]` table as the kind's own type; `Ok(None)` when there is none.
    /// Errors name the line and column.
    pub fn kind_table<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, String> {
        let mut root =
            toml::de::DeTable::parse(&self.source).map_err(|e| located(&self.source, &e))?;
        let Some(table) = take_kind_table(root.get_mut()) else {
            return Ok(None);
        };
        T::deserialize(toml::de::Deserializer::from(table))
            .map(Some)
            .map_err(|e| format!("[{}] {}", self.kind, located(&self.source, &e)))
    }

    pub fn load(path: &Path) -> Result<Self, PluginError> {
        let text = std::fs::read_to_string(path).map_err(|e| PluginError::Manifest {
            path: path.to_owned(),
            message: unreadable(path, &e),
        })?;
        Self::parse(path, &text)
    }

    /// The tool-name prefix: the name unless the manifest says otherwise.
    pub fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or(&self.name)
    }

    pub fn builtin(&self) -> &str {
        self.builtin.as_deref().unwrap_or(&self.name)
    }

    fn check(&self) -> Result<(), PluginError> {
        let bad = |message: String| PluginError::Manifest {
            path: self.path.clone(),
            message,
        };
        if !is_identifier(&self.name) {
            return Err(bad(format!(
                "name `{}` must be 1-32 characters of a-z, 0-9, `_` or `-`",
                self.name
            )));
        }
        if let Some(prefix) = &self.prefix
            && !prefix.is_empty()
            && !is_identifier(prefix)
        {
            return Err(bad(format!(
                "prefix `{prefix}` must be 1-32 characters of a-z, 0-9, `_` or `-`"
            )));
        }
        for key in self.env.keys() {
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(bad(format!("env `{key}` is not a valid variable name")));
            }
        }
        Ok(())
    }
}

/// Remove the table named after the document's `kind` from it, spans kept.
fn take_kind_table<'i>(
    root: &mut toml::de::DeTable<'i>,
) -> Option<toml::Spanned<toml::de::DeTable<'i>>> {
    let kind = root.iter().find_map(|(k, v)| match v.get_ref() {
        toml::de::DeValue::String(kind) if k.get_ref() == "kind" => Some(kind.to_string()),
        _ => None,
    })?;
    let key = root
        .iter()
        .find(|(k, v)| {
            k.get_ref() == kind.as_str() && matches!(v.get_ref(), toml::de::DeValue::Table(_))
        })?
        .0
        .clone();
    let value = root.remove(&key)?;
    let span = value.span();
    match value.into_inner() {
        toml::de::DeValue::Table(table) => Some(toml::Spanned::new(span, table)),
        _ => None,
    }
}

fn is_identifier(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A TOML error as `line L, column C: message`.
pub(crate) fn located(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            format!("line {line}, column {col}: {}", e.message())
        }
        None => e.message().to_owned(),
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, col)
}

/// Find every `<dir>/<name>/plugin.toml`, in name order.
/// Why a manifest that is there cannot be read, in words (asked only after reading failed, so
/// a readable one costs no extra look at the disk).
fn unreadable(path: &Path, error: &std::io::Error) -> String {
    let linked = path.symlink_metadata().is_ok_and(|m| m.is_symlink());
    match std::fs::metadata(path) {
        Err(_) if linked => "is a symlink to nothing (its target does not exist)".into(),
        Ok(meta) if meta.is_dir() => {
            "is a folder; a manifest is a file (plugins/<name>/plugin.toml)".into()
        }
        Ok(meta) if !meta.is_file() => "is not a regular file".into(),
        _ => error.to_string(),
    }
}

pub fn discover(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let manifest = entry?.path().join("plugin.toml");
        // Anything named `plugin.toml` is a plugin, even one that cannot be read (a folder, a
        // broken symlink): it gets a status saying so rather than vanishing.
        if manifest.symlink_metadata().is_ok() {
            found.push(manifest);
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_file_and_line() {
        let text = "name = \"x\"\nkind = \"builtin\"\ncolour = \"red\"\n";
        let err = Manifest::parse(Path::new("plugins/x/plugin.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("plugins/x/plugin.toml: line 3, column 1: unknown field `colour`"),
            "{err}"
        );
    }

    #[test]
    fn a_kind_table_is_the_kinds_own() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Mcp {
            command: String,
        }
        let text = "name = \"x\"\nkind = \"mcp\"\n[mcp]\ncommand = \"npx\"\n";
        let m = Manifest::parse(Path::new("p.toml"), text).unwrap();
        assert_eq!(m.kind, "mcp");
        assert!(m.has_kind_table);
        assert_eq!(m.kind_table::<Mcp>().unwrap().unwrap().command, "npx");

        // Unknown keys in the kind's table name the line and column, as elsewhere.
        let text = "name = \"x\"\nkind = \"mcp\"\n[mcp]\ncommand = \"npx\"\ncolour = 1\n";
        let m = Manifest::parse(Path::new("p.toml"), text).unwrap();
        let err = m.kind_table::<Mcp>().unwrap_err();
        assert!(
            err.contains("line 5, column 1") && err.contains("colour"),
            "{err}"
        );

        // Another kind's table is an unknown key of the manifest.
        let text = "name = \"x\"\nkind = \"builtin\"\n[mcp]\ncommand = \"npx\"\n";
        let err = Manifest::parse(Path::new("p.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3") && err.contains("unknown field `mcp`"),
            "{err}"
        );
    }

    #[test]
    fn full_manifest_round_trips() {
        let text = r#"
name = "airtable"
kind = "builtin"
prefix = ""
[env.AIRTABLE_API_KEY]
required = true
secret = true
[settings]
rate = 5
[dependencies]
commands = ["git"]
"#;
        let m = Manifest::parse(Path::new("p.toml"), text).unwrap();
        assert!(m.enabled);
        assert_eq!(m.prefix(), "");
        assert!(m.env["AIRTABLE_API_KEY"].secret);
        assert_eq!(m.settings["rate"].as_integer(), Some(5));
        assert_eq!(m.dependencies.commands, ["git"]);
    }
}
