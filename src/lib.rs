//! plugboard: one MCP server whose tools come from plugins.
//!
//! # Layout
//!
//! - [`cli`]: the command line (`serve`, `plugins`, `tools`, `call`, `check`).
//! - [`config`]: the environment and `.env`; the real environment wins, values never printed.
//! - [`net`]: what every HTTP client shares: the client, one retry policy, secrets masking.
//! - [`plugin`]: the plugin contract (manifest, [`plugin::Plugin`], [`plugin::ToolDef`],
//!   [`plugin::ToolContext`]) and the [`plugin::Manager`] that loads plugins, publishes their
//!   tools and runs every call (schema check, timeout, panic isolation).
//! - [`plugins`]: the built-in plugins, one folder each (`files`, `testkit`).
//! - [`server`]: the MCP handler and its transports: stdio, Streamable HTTP (`/mcp`) and
//!   legacy SSE (`/sse` + `/message`) on one axum port, behind the Host/Origin/token guard.

pub mod agents;
pub mod cli;
pub mod config;
pub mod net;
pub mod orchestrator;
pub mod plugin;
pub mod plugins;
pub mod server;
