//! Paths inside the roots the model must never see: `.env` files, private keys, credential
//! folders. The default root is often a project folder, and those hold API keys.
//!
//! A glob of the `exclude` setting hides a path when it matches the path relative to its root,
//! or the name of any folder on the way to it: `.env` hides `sub/.env`, `.ssh` hides the folder
//! and everything under it. A glob of `include_anyway` rescues a path that an `exclude` glob
//! matched at the same level, so `.env.example` stays readable while `.env.*` hides
//! `.env.local`; it never rescues what sits inside an excluded folder. Matching ignores case,
//! because on case-insensitive file systems `.ENV` opens `.env`.

use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// The compiled `exclude` and `include_anyway` settings.
#[derive(Debug, Clone)]
pub struct Exclude {
    hide: GlobSet,
    /// Wins over `hide`: templates such as `.env.example` document keys without holding them.
    keep: GlobSet,
}

impl Exclude {
    /// Compile the two settings; an invalid glob is an error naming its setting.
    pub fn new(exclude: &[String], include_anyway: &[String]) -> Result<Self, String> {
        Ok(Self {
            hide: compile("exclude", exclude)?,
            keep: compile("include_anyway", include_anyway)?,
        })
    }

    /// Hide nothing.
    pub fn nothing() -> Self {
        Self {
            hide: GlobSet::empty(),
            keep: GlobSet::empty(),
        }
    }

    /// Whether `rel` (relative to a root) or a folder above it is excluded.
    pub fn hides(&self, rel: &Path) -> bool {
        if self.hide.is_empty() {
            return false;
        }
        let mut prefix = PathBuf::new();
        for component in rel.components() {
            if let Component::Normal(name) = component {
                prefix.push(name);
                if self.hides_entry(&prefix) {
                    return true;
                }
            }
        }
        false
    }

    /// Whether `rel` itself is excluded, without looking at the folders above it: enough for a
    /// walk, which never enters an excluded folder.
    pub fn hides_entry(&self, rel: &Path) -> bool {
        let Some(name) = rel.file_name() else {
            return false;
        };
        let matches = |set: &GlobSet| set.is_match(rel) || set.is_match(name);
        matches(&self.hide) && !matches(&self.keep)
    }
}

fn compile(setting: &str, globs: &[String]) -> Result<GlobSet, String> {
    let mut set = GlobSetBuilder::new();
    for pattern in globs {
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .case_insensitive(true)
            .build()
            .map_err(|e| {
                format!(
                    "files setting `{setting}`: glob `{pattern}` is not valid: {}",
                    e.kind()
                )
            })?;
        set.add(glob);
    }
    set.build()
        .map_err(|e| format!("files setting `{setting}` cannot be compiled: {e}"))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use serde_json::json;

    use super::super::{FilesSettings, tests::*};
    use super::*;
    use crate::plugin::ToolError;

    fn defaults() -> Exclude {
        let settings = FilesSettings::default();
        Exclude::new(&settings.exclude, &settings.include_anyway).unwrap()
    }

    #[test]
    fn globs_match_the_path_or_any_folder_on_the_way() {
        let exclude = defaults();
        for hidden in [
            ".env",
            "sub/.env",
            "sub/.env.local",
            ".ENV",
            "certs/server.pem",
            ".ssh",
            ".ssh/config",
            "home/.ssh/known_hosts",
            ".ssh/.env.example",
            "keys/id_ed25519.pub",
        ] {
            assert!(
                exclude.hides(Path::new(hidden)),
                "{hidden} should be hidden"
            );
        }
        for shown in [
            "",
            ".env.example",
            "sub/.env.sample",
            "environment.md",
            "src/main.rs",
            "docs/ssh.md",
        ] {
            assert!(!exclude.hides(Path::new(shown)), "{shown} should be shown");
        }
        let custom = Exclude::new(&["config/prod.yaml".into(), "*.log".into()], &[]).unwrap();
        assert!(custom.hides(Path::new("config/prod.yaml")));
        assert!(!custom.hides(Path::new("other/config/prod.yaml")));
        assert!(custom.hides(Path::new("logs/today.log")));
        assert!(!Exclude::nothing().hides(Path::new(".env")));
        let bad = Exclude::new(&["[".into()], &[]).unwrap_err();
        assert!(bad.contains("`exclude`"), "{bad}");
    }

    fn project() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("sub")).unwrap();
        fs::create_dir_all(dir.path().join(".ssh")).unwrap();
        fs::write(dir.path().join(".env"), "API_KEY=sk-secret\n").unwrap();
        fs::write(dir.path().join("sub/.env.local"), "API_KEY=sk-secret\n").unwrap();
        fs::write(dir.path().join(".ssh/id_rsa"), "API_KEY=sk-secret\n").unwrap();
        fs::write(dir.path().join(".ssh/readme.txt"), "API_KEY=sk-secret\n").unwrap();
        fs::write(dir.path().join(".env.example"), "API_KEY=\n").unwrap();
        fs::write(
            dir.path().join("notes.md"),
            "# Notes\n\nAPI_KEY goes in .env\n",
        )
        .unwrap();
        dir
    }

    fn refusal(result: crate::plugin::ToolOutcome) -> String {
        match result {
            Err(ToolError::Forbidden(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn excluded_files_are_refused_by_read() {
        let dir = project();
        let plugin = plugin(dir.path(), FilesSettings::default());
        let absolute = dir.path().join(".env");
        for path in [
            ".env",
            "sub/.env.local",
            ".ssh/id_rsa",
            ".ssh",
            absolute.to_str().unwrap(),
        ] {
            let message = refusal(call(&plugin, "read", json!({"path": path})).await);
            assert!(message.contains("`exclude` setting"), "{message}");
            assert!(!message.contains("sk-secret"), "{message}");
        }
        let missing = call(&plugin, "read", json!({"path": "other/.env"})).await;
        assert!(matches!(missing, Err(ToolError::Forbidden(_))));
        let listing = call(&plugin, "list", json!({"path": ".ssh"})).await;
        assert!(matches!(listing, Err(ToolError::Forbidden(_))));
        let example = call_ok(&plugin, "read", json!({"path": ".env.example"})).await;
        assert_eq!(example["text"], "API_KEY=\n");
    }

    #[tokio::test]
    async fn excluded_files_are_absent_from_list_search_and_analyze() {
        let dir = project();
        let plugin = plugin(dir.path(), FilesSettings::default());
        let listed = call_ok(&plugin, "list", json!({"depth": 5})).await;
        assert_eq!(
            paths_in(&listed, "entries"),
            [".env.example", "notes.md", "sub"]
        );
        let found = call_ok(&plugin, "search", json!({"pattern": "API_KEY"})).await;
        assert_eq!(paths_in(&found, "hits"), [".env.example", "notes.md"]);
        assert!(!found.to_string().contains("sk-secret"));
        let analyzed = call_ok(&plugin, "analyze", json!({"path": "."})).await;
        assert_eq!(analyzed["documents"][0]["path"], "notes.md");
        assert_eq!(analyzed["total_found"], 1);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn links_to_excluded_files_are_excluded() {
        use std::os::unix::fs::symlink;
        let dir = project();
        symlink(dir.path().join(".env"), dir.path().join("innocent.txt")).unwrap();
        symlink(dir.path().join(".ssh"), dir.path().join("keys")).unwrap();
        let plugin = plugin(dir.path(), FilesSettings::default());
        for path in ["innocent.txt", "keys", "keys/id_rsa"] {
            let message = refusal(call(&plugin, "read", json!({"path": path})).await);
            assert!(message.contains("`exclude` setting"), "{message}");
        }
        let listed = call_ok(&plugin, "list", json!({})).await.to_string();
        assert!(
            !listed.contains("innocent") && !listed.contains("keys"),
            "{listed}"
        );
        let found = call_ok(&plugin, "search", json!({"pattern": "sk-secret"})).await;
        assert_eq!(found["hits"], json!([]));
        let analyzed = call_ok(&plugin, "analyze", json!({"path": "."})).await;
        assert_eq!(analyzed["total_found"], 1, "{analyzed}");
    }

    #[tokio::test]
    async fn an_empty_exclude_setting_shows_everything() {
        let dir = project();
        let settings = FilesSettings {
            exclude: Vec::new(),
            ..FilesSettings::default()
        };
        let plugin = plugin(dir.path(), settings);
        let env = call_ok(&plugin, "read", json!({"path": ".env"})).await;
        assert_eq!(env["text"], "API_KEY=sk-secret\n");
        let found = call_ok(&plugin, "search", json!({"pattern": "sk-secret"})).await;
        assert_eq!(found["hits"].as_array().unwrap().len(), 4);
        let analyzed = call_ok(&plugin, "analyze", json!({"path": "."})).await;
        assert_eq!(analyzed["total_found"], 2, "{analyzed}");
    }
}
