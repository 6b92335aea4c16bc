//! Where configuration comes from: the process environment, then a `.env` file (dotenvy).
//! The real environment always wins over `.env`. Values are never printed.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::OnceLock,
};

/// Why the `.env` file could not be read. Never carries the file's text: a malformed line
/// may hold a secret, so only its number is named.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DotenvError {
    #[error("{}: line {line} is not `NAME=value`", path.display())]
    Line { path: PathBuf, line: usize },
    #[error("{}: a line is not `NAME=value`", path.display())]
    Unlocated { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

struct Sources {
    /// Variable names present in the real environment before `.env` was read.
    real: HashSet<String>,
    /// The `.env` file in use, re-read on every reload so SIGHUP picks up edits.
    dotenv: Option<PathBuf>,
}

static SOURCES: OnceLock<Sources> = OnceLock::new();

/// Read `.env` (or `path`) into the process environment without overriding what is set.
/// Call once, early, before threads start: clap reads its `env` fallbacks from there.
pub fn load_dotenv(path: Option<PathBuf>) -> Result<Option<PathBuf>, DotenvError> {
    let real = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    let loaded = match path.or_else(find_dotenv) {
        Some(p) => {
            dotenvy::from_path(&p).map_err(|e| describe(&p, e))?;
            Some(p)
        }
        None => None,
    };
    let _ = SOURCES.set(Sources {
        real,
        dotenv: loaded.clone(),
    });
    Ok(loaded)
}

/// Where plugboard keeps state that must outlive a run (checkpoints), for `what`:
/// `$XDG_STATE_HOME/plugboard/<what>`, else `~/.local/state/plugboard/<what>`, else the
/// temporary folder's.
pub fn state_dir(what: &str) -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir)
        .join("plugboard")
        .join(what)
}

/// The `.env` file in use (re-read on every reload), if there is one.
pub fn dotenv_path() -> Option<PathBuf> {
    SOURCES.get().and_then(|s| s.dotenv.clone())
}

/// The current environment: the process's, with `.env` edits since start-up applied to the
/// variables the real environment does not set.
pub fn environment() -> HashMap<String, String> {
    let mut env: HashMap<String, String> = std::env::vars().collect();
    if let Some(Sources {
        real,
        dotenv: Some(path),
    }) = SOURCES.get()
        && let Ok(iter) = dotenvy::from_path_iter(path)
    {
        for (key, value) in iter.flatten() {
            if !real.contains(&key) {
                env.insert(key, value);
            }
        }
    }
    env
}

/// `.env` in the current folder or the nearest parent that has one, as dotenvy looks for it.
fn find_dotenv() -> Option<PathBuf> {
    let here = std::env::current_dir().ok()?;
    here.ancestors()
        .map(|dir| dir.join(".env"))
        .find(|candidate| candidate.is_file())
}

/// dotenvy's error without its text, which quotes the malformed line whole.
fn describe(path: &Path, error: dotenvy::Error) -> DotenvError {
    let contents = std::fs::read_to_string(path).ok();
    describe_in(path, contents.as_deref(), error)
}

/// [`describe`] with the file's `contents` already read (`None` when they cannot be).
pub(crate) fn describe_in(
    path: &Path,
    contents: Option<&str>,
    error: dotenvy::Error,
) -> DotenvError {
    let path = path.to_path_buf();
    match error {
        dotenvy::Error::LineParse(text, _) => match contents.and_then(|c| line_number(c, &text)) {
            Some(line) => DotenvError::Line { path, line },
            None => DotenvError::Unlocated { path },
        },
        dotenvy::Error::Io(source) => DotenvError::Io { path, source },
        // `EnvVar` (and what a later dotenvy adds) may quote a value too.
        _ => DotenvError::Unlocated { path },
    }
}

/// The 1-based number of the line where `text` (a logical line dotenvy refused) starts.
fn line_number(contents: &str, text: &str) -> Option<usize> {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    contents
        .lines()
        .position(|line| line.trim() == first)
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_line_is_named_by_number_without_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "# keys\nGOOD=1\n\nAPI_KEY sk-unit-0a9b8c7d\n").unwrap();
        let error = dotenvy::from_path_iter(&path)
            .unwrap()
            .find_map(Result::err)
            .unwrap();
        let message = describe(&path, error).to_string();
        assert_eq!(
            message,
            format!("{}: line 4 is not `NAME=value`", path.display())
        );
    }
}
