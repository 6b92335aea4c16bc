//! Finding the manifests and deciding, before anything starts, whether a plugin can.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use super::{Manager, Status};
use crate::plugin::{Catalog, Manifest, PluginError, manifest};

/// A manifest found, by plugin name: `(name, path, manifest or why it could not be read)`.
pub(super) type Found = (String, PathBuf, Result<Manifest, PluginError>);

impl Manager {
    pub(super) fn discover(&self) -> Vec<Found> {
        let dir = &self.config.plugins_dir;
        let manifests: Vec<(PathBuf, Result<Manifest, PluginError>)> = if self
            .config
            .shipped_fallback
            && !dir.is_dir()
        {
            tracing::info!(dir = %dir.display(), "no plugins folder; using the manifests shipped in the binary");
            self.config
                .catalog
                .shipped()
                .iter()
                .map(|(name, text)| {
                    let path = PathBuf::from(format!("(shipped)/{name}/plugin.toml"));
                    let manifest = Manifest::parse(&path, text);
                    (path, manifest)
                })
                .collect()
        } else {
            match manifest::discover(dir) {
                Ok(paths) => paths
                    .into_iter()
                    .map(|path| {
                        let manifest = Manifest::load(&path);
                        (path, manifest)
                    })
                    .collect(),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot read the plugins folder; no plugins loaded");
                    return Vec::new();
                }
            }
        };
        let mut seen: HashMap<String, PathBuf> = HashMap::new();
        let mut found = Vec::new();
        for (path, manifest) in manifests {
            let folder = folder_name(&path);
            let name = manifest
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or(folder.clone());
            match seen.get(&name) {
                // A second plugin of the same name: listed (under its folder) as failed, so
                // the user sees both, and the first keeps running.
                Some(first) => {
                    let message = format!(
                        "a plugin named `{name}` is already loaded from {}; give one of them \
                         another `name`",
                        first.display()
                    );
                    let mut key = format!("{folder} (duplicate)");
                    while seen.contains_key(&key) {
                        key.push('+');
                    }
                    seen.insert(key.clone(), path.clone());
                    let error = PluginError::Manifest {
                        path: path.clone(),
                        message,
                    };
                    found.push((key, path, Err(error)));
                }
                None => {
                    seen.insert(name.clone(), path.clone());
                    found.push((name, path, manifest));
                }
            }
        }
        found
    }
}

/// Why a plugin cannot start, before starting it; `Ready` means "go ahead".
pub(super) fn precheck(
    manifest: &Manifest,
    catalog: &Catalog,
    env: &HashMap<String, String>,
) -> Status {
    if !manifest.enabled {
        return Status::Disabled;
    }
    let Some(kind) = catalog.kind(&manifest.kind) else {
        return Status::Failed(format!(
            "{}: no plugin kind `{}` in this build (kinds: {})",
            manifest.path.display(),
            manifest.kind,
            catalog.kind_names().join(", ")
        ));
    };
    if let Err(reason) = kind.check(manifest) {
        return Status::Failed(reason);
    }
    let needs = kind.needs(manifest);
    let mut missing: Vec<String> = manifest
        .env
        .iter()
        .filter(|(k, v)| v.required && env.get(*k).is_none_or(|v| v.is_empty()))
        .map(|(k, _)| k.clone())
        .collect();
    for variable in needs.variables {
        let set = env.get(&variable).is_some_and(|v| !v.is_empty())
            || std::env::var_os(&variable).is_some_and(|v| !v.is_empty());
        if !set && !missing.contains(&variable) {
            missing.push(variable);
        }
    }
    if !missing.is_empty() {
        return Status::Unconfigured(missing);
    }
    let mut absent: Vec<String> = Vec::new();
    for command in manifest.dependencies.commands.iter().chain(&needs.commands) {
        let found = if command.contains('/') {
            manifest
                .path
                .parent()
                .unwrap_or(Path::new("."))
                .join(command)
                .is_file()
        } else {
            on_path(command)
        };
        if !found && !absent.contains(command) {
            absent.push(command.clone());
        }
    }
    if !absent.is_empty() {
        return Status::Uninstalled(absent);
    }
    Status::Ready
}

fn on_path(command: &str) -> bool {
    if command.contains('/') {
        return Path::new(command).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(command).is_file()))
}

/// What decides whether a running plugin must restart: its manifest and the values of the
/// variables it declares. Kept in memory only, compared whole (no hash to collide).
/// The variables a plugin sees: those its manifest declares, and those its kind needs (an
/// MCP server's `${…}` values).
pub(super) fn variables(manifest: &Manifest, catalog: &Catalog) -> Vec<String> {
    let mut keys: Vec<String> = manifest.env.keys().cloned().collect();
    if let Some(kind) = catalog.kind(&manifest.kind) {
        for key in kind.needs(manifest).variables {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys
}

pub(super) fn fingerprint(
    manifest: &Result<Manifest, PluginError>,
    env: &HashMap<String, String>,
    catalog: &Catalog,
) -> String {
    match manifest {
        Ok(m) => {
            let mut text = format!("{m:?}");
            for key in variables(m, catalog) {
                text.push_str(&format!("\n{key}={:?}", env.get(&key)));
            }
            text
        }
        Err(e) => e.to_string(),
    }
}

pub(super) fn folder_name(manifest_path: &Path) -> String {
    manifest_path
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
