//! The plugin contract: what a plugin gives the manager, and what the manager gives back.
//!
//! A plugin is initialised from its manifest ([`PluginSetup`]) and hands over its tools
//! ([`ToolDef`]). The manager publishes them under the plugin's prefix, validates every call
//! against the tool's schema, runs it with a timeout in its own task (so a panic stays inside
//! the call), and turns every failure into a tool result the client can act on.

mod call;
mod context;
mod error;
pub mod manager;
pub mod manifest;
mod registry;
pub mod schema;
mod tool;

use std::{collections::BTreeMap, fmt, path::PathBuf, sync::Arc};

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;

pub use context::{ToolContext, severity};
pub use error::{PluginError, ToolError};
pub use manager::{Filters, Manager, ManagerConfig, PluginStatus, Status};
pub use manifest::Manifest;
pub use registry::{Registry, check_tool_name};
pub use tool::{Handler, Hints, ToolDef, ToolOutcome};

/// A loaded plugin.
pub trait Plugin: Send + Sync + 'static {
    /// The tools this plugin offers, unprefixed. Called once after init.
    fn tools(&self) -> Vec<ToolDef>;

    /// Release what the plugin holds (connections, children). Called when it is unloaded.
    fn shutdown(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// How a built-in plugin is started: from its setup to a running plugin.
pub type Init = fn(PluginSetup) -> BoxFuture<'static, Result<Arc<dyn Plugin>, PluginError>>;

/// Everything a plugin is initialised with.
pub struct PluginSetup {
    pub name: String,
    /// The manifest's folder, for plugins that keep files beside their manifest.
    pub dir: PathBuf,
    pub manifest_path: PathBuf,
    /// The manifest's text; [`PluginSetup::settings`] reads `[settings]` from it.
    pub manifest_source: String,
    /// The values of the variables the manifest declares, as far as they are set.
    pub env: BTreeMap<String, String>,
}

impl PluginSetup {
    /// Deserialize the manifest's `[settings]` into the plugin's own type. Errors name the
    /// manifest's line and column, like the manifest's own.
    pub fn settings<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        #[derive(serde::Deserialize)]
        struct Only<T> {
            settings: Option<T>,
        }
        let error = |message: String| PluginError::Settings {
            path: self.manifest_path.clone(),
            message,
        };
        match toml::from_str::<Only<T>>(&self.manifest_source) {
            Ok(Only {
                settings: Some(settings),
            }) => Ok(settings),
            Ok(Only { settings: None }) => toml::Table::new()
                .try_into()
                .map_err(|e: toml::de::Error| error(e.message().to_owned())),
            Err(e) => Err(error(manifest::located(&self.manifest_source, &e))),
        }
    }

    pub fn env(&self, key: &str) -> Option<&str> {
        self.env
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

impl fmt::Debug for PluginSetup {
    // Env values can be secrets: show only which are set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginSetup")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("manifest", &self.manifest_path)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}
