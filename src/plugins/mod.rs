//! Built-in plugins. Adding one means a folder here and one line in [`catalog`].
//! A plugin never imports another plugin.

use crate::plugin::{Builtins, Catalog};

pub mod agents;
pub mod airtable;
/// The conformance suite's fixture, only in builds with the `conformance` feature (the suite's
/// script and the test build turn it on; a default release build leaves it out).
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod files;
pub mod github;
pub mod mcp;
pub mod organize;
pub mod testkit;

/// The plugin kinds this binary offers its manager, with the manifests in this repository's
/// `plugins/` folder built in (used when the plugins folder was not given and `./plugins`
/// does not exist: a client launching the binary from an arbitrary folder).
pub fn catalog() -> Catalog {
    let builtins = Builtins::new()
        .with("agents", agents::init)
        .with("airtable", airtable::init)
        .with("files", files::init)
        .with("github", github::init)
        .with("organize", organize::init)
        .with("testkit", testkit::init);
    #[cfg(feature = "conformance")]
    let builtins = builtins.with("conformance", conformance::init);
    Catalog::new()
        .with_kind("builtin", builtins)
        .with_kind("mcp", mcp::McpKind)
        .with_shipped("agents", include_str!("../../plugins/agents/plugin.toml"))
        .with_shipped(
            "airtable",
            include_str!("../../plugins/airtable/plugin.toml"),
        )
        .with_shipped("files", include_str!("../../plugins/files/plugin.toml"))
        .with_shipped("github", include_str!("../../plugins/github/plugin.toml"))
        .with_shipped(
            "organize",
            include_str!("../../plugins/organize/plugin.toml"),
        )
        .with_shipped("testkit", include_str!("../../plugins/testkit/plugin.toml"))
}
