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
                    "setting `{setting}`: glob `{pattern}` is not valid: {}",
                    e.kind()
                )
            })?;
        set.add(glob);
    }
    set.build()
        .map_err(|e| format!("setting `{setting}` cannot be compiled: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Exclude {
        Exclude::new(
            &super::super::default_exclude(),
            &super::super::default_include_anyway(),
        )
        .unwrap()
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
}
