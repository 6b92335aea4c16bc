//! Hot reload without SIGHUP: the plugins folder and the `.env` file are watched, and a change
//! (debounced: an editor's save is several events) reloads the plugins as SIGHUP does. Only
//! the plugins whose manifest or variables changed restart; clients get `list_changed`.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use notify::{EventKind, RecursiveMode, Watcher};

use crate::plugin::Manager;

/// Events closer together than this are one change.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Whether a changed `path` can change what the manager loads: a manifest, a plugin's folder
/// appearing or going, or the `.env` file.
fn matters(path: &Path, plugins: &Path, dotenv: Option<&Path>) -> bool {
    if dotenv.is_some_and(|d| d == path) {
        return true;
    }
    path.file_name().is_some_and(|n| n == "plugin.toml") || path.parent() == Some(plugins)
}

/// Start watching; the watch lasts as long as the server (the task holds it).
pub fn spawn(manager: Arc<Manager>) {
    let plugins = manager.config().plugins_dir.clone();
    let plugins = plugins.canonicalize().unwrap_or(plugins);
    let dotenv: Option<PathBuf> =
        crate::config::dotenv_path().map(|p| p.canonicalize().unwrap_or(p));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let filter_plugins = plugins.clone();
    let filter_dotenv = dotenv.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            // Reading a manifest is an event too (an access): only changes count, or each
            // reload would set off the next.
            Ok(event) if matches!(event.kind, EventKind::Access(_) | EventKind::Other) => {}
            Ok(event) => {
                if event
                    .paths
                    .iter()
                    .any(|p| matters(p, &filter_plugins, filter_dotenv.as_deref()))
                {
                    let _ = tx.send(());
                }
            }
            Err(e) => tracing::warn!(error = %e, "watching the plugins folder failed"),
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the plugins folder; reload with SIGHUP");
            return;
        }
    };
    let mut watching = Vec::new();
    if plugins.is_dir() {
        match watcher.watch(&plugins, RecursiveMode::Recursive) {
            Ok(()) => watching.push(plugins.display().to_string()),
            Err(e) => tracing::warn!(error = %e, dir = %plugins.display(), "cannot watch"),
        }
    }
    // The folder, not the file: editors replace a file by renaming another over it.
    if let Some(folder) = dotenv.as_deref().and_then(Path::parent)
        && !folder.starts_with(&plugins)
    {
        match watcher.watch(folder, RecursiveMode::NonRecursive) {
            Ok(()) => watching.push(dotenv.as_ref().unwrap().display().to_string()),
            Err(e) => tracing::warn!(error = %e, dir = %folder.display(), "cannot watch"),
        }
    }
    if watching.is_empty() {
        return;
    }
    tracing::info!(watching = %watching.join(", "), "reloading plugins when these change");
    tokio::spawn(async move {
        let _watcher = watcher;
        while rx.recv().await.is_some() {
            // An editor's save is several events: wait for them to settle, then reload once
            // for all of them.
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            tracing::info!("plugins or .env changed: reloading");
            manager.reload().await;
            tracing::info!(tools = manager.tools().len(), "plugins reloaded");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_folders_and_the_env_file_matter() {
        let plugins = Path::new("/p/plugins");
        let dotenv = Path::new("/p/.env");
        assert!(matters(
            Path::new("/p/plugins/gh/plugin.toml"),
            plugins,
            Some(dotenv)
        ));
        assert!(matters(Path::new("/p/plugins/new"), plugins, Some(dotenv)));
        assert!(matters(dotenv, plugins, Some(dotenv)));
        assert!(!matters(
            Path::new("/p/plugins/gh/server.py"),
            plugins,
            Some(dotenv)
        ));
        assert!(!matters(Path::new("/p/notes.txt"), plugins, Some(dotenv)));
    }
}
