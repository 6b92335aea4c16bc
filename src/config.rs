//! Where configuration comes from: the process environment, then a `.env` file (dotenvy).
//! The real environment always wins over `.env`. Values are never printed.

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::OnceLock,
};

struct Sources {
    /// Variable names present in the real environment before `.env` was read.
    real: HashSet<String>,
    /// The `.env` file in use, re-read on every reload so SIGHUP picks up edits.
    dotenv: Option<PathBuf>,
}

static SOURCES: OnceLock<Sources> = OnceLock::new();

/// Read `.env` (or `path`) into the process environment without overriding what is set.
/// Call once, early, before threads start: clap reads its `env` fallbacks from there.
pub fn load_dotenv(path: Option<PathBuf>) -> Result<Option<PathBuf>, dotenvy::Error> {
    let real = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    let loaded = match path {
        Some(p) => {
            dotenvy::from_path(&p)?;
            Some(p)
        }
        None => match dotenvy::dotenv() {
            Ok(p) => Some(p),
            Err(e) if e.not_found() => None,
            Err(e) => return Err(e),
        },
    };
    let _ = SOURCES.set(Sources {
        real,
        dotenv: loaded.clone(),
    });
    Ok(loaded)
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
