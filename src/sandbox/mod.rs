//! The one way any plugin reads a user's files: the folders it may read ([`Roots`]), the
//! secrets inside them no tool shows ([`Exclude`]), and walks that honour ignore files
//! ([`walk`]).
//!
//! The files plugin is built on it, and so is everything else that reads a file a model
//! named: the Airtable bulk import reads its CSV through [`Roots::resolve_file`], so a model
//! cannot import `~/.ssh/id_ed25519` or a `.env` any more than it can read one. There is no
//! implicit root: a plugin that was given no folder reads none (only the files plugin,
//! whose whole point is a folder, falls back to the one it was started in).

mod exclude;
mod open;
pub(crate) mod roots;
pub mod walk;

use std::path::{Path, PathBuf};

pub use exclude::Exclude;
pub use roots::{Roots, Target, show};

/// The variable that lists the folders files may be read from (`:`-separated, `;` on
/// Windows); it wins over a plugin's own setting.
pub const ROOTS_ENV: &str = "PLUGBOARD_FILES_ROOTS";

/// The default `exclude` globs: what a project folder holds that must never reach a model.
pub fn default_exclude() -> Vec<String> {
    [
        ".env",
        ".env.*",
        "*.pem",
        "*.key",
        "*.p12",
        "*.pfx",
        "id_rsa*",
        "id_ecdsa*",
        "id_ed25519*",
        ".ssh",
        ".aws",
        ".gnupg",
        ".netrc",
        ".git-credentials",
    ]
    .map(String::from)
    .to_vec()
}

/// The default `include_anyway` globs: templates that document keys without holding them.
pub fn default_include_anyway() -> Vec<String> {
    [".env.example", ".env.sample", ".env.template"]
        .map(String::from)
        .to_vec()
}

/// The folders `list` names (the value of [`ROOTS_ENV`]), empty entries dropped.
pub fn split_roots(list: &str) -> Vec<PathBuf> {
    std::env::split_paths(list)
        .filter(|p| !p.as_os_str().is_empty())
        .collect()
}

/// `~` and `~/…` name the user's home folder (client configs cannot run a shell to expand it).
pub fn expand_home(path: PathBuf) -> PathBuf {
    let home = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE"));
    expand_home_in(path, home.as_deref().map(Path::new))
}

fn expand_home_in(path: PathBuf, home: Option<&Path>) -> PathBuf {
    let Some(home) = home else { return path };
    match path.strip_prefix("~") {
        Ok(rest) => home.join(rest),
        Err(_) => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_is_expanded_only_at_the_start() {
        let home = Some(Path::new("/home/u"));
        assert_eq!(
            expand_home_in("~/docs".into(), home),
            PathBuf::from("/home/u/docs")
        );
        assert_eq!(expand_home_in("~".into(), home), PathBuf::from("/home/u"));
        assert_eq!(expand_home_in("a/~".into(), home), PathBuf::from("a/~"));
        assert_eq!(expand_home_in("~/x".into(), None), PathBuf::from("~/x"));
    }

    #[test]
    fn empty_entries_name_no_folder() {
        let sep = if cfg!(windows) { ";" } else { ":" };
        assert_eq!(
            split_roots(&format!("/a{sep}{sep}/b")),
            [PathBuf::from("/a"), PathBuf::from("/b")]
        );
    }
}
