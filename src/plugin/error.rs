//! Errors of the plugin layer. Every message is written for the person or model that has to
//! act on it, and none carries a secret.

use std::path::PathBuf;

/// Why a tool call failed. The manager turns each into a tool result with `isError: true`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("refused: {0}")]
    Forbidden(String),
    #[error("upstream error: {0}")]
    Upstream(String),
    /// The plugin cannot serve now and says when it might (a server restarting).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
}

impl From<std::io::Error> for ToolError {
    fn from(e: std::io::Error) -> Self {
        ToolError::Failed(e.to_string())
    }
}

/// Why a plugin could not be loaded. One plugin's error never stops another.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    #[error("{path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("bad settings in {path}: {message}")]
    Settings { path: PathBuf, message: String },
    #[error("{0}")]
    Init(String),
}
