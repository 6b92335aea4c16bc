//! Built-in plugins. Adding one means a folder here and one line in [`BUILTINS`].
//! A plugin never imports another plugin.

use crate::plugin::Init;

pub mod agents;
pub mod airtable;
/// The conformance suite's fixture, only in builds with the `conformance` feature (the suite's
/// script and the test build turn it on; a default release build leaves it out).
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod files;
pub mod github;
pub mod testkit;

/// Every built-in, by the name a manifest's `builtin` (or `name`) selects it with.
pub const BUILTINS: &[(&str, Init)] = &[
    ("agents", agents::init),
    ("airtable", airtable::init),
    #[cfg(feature = "conformance")]
    ("conformance", conformance::init),
    ("files", files::init),
    ("github", github::init),
    ("testkit", testkit::init),
];

pub fn builtin(name: &str) -> Option<Init> {
    BUILTINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, init)| *init)
}

/// The manifests in this repository's `plugins/` folder, built into the binary: used when the
/// plugins folder was not given and `./plugins` does not exist (a client launching the binary
/// from an arbitrary folder).
pub const SHIPPED_MANIFESTS: &[(&str, &str)] = &[
    ("agents", include_str!("../../plugins/agents/plugin.toml")),
    (
        "airtable",
        include_str!("../../plugins/airtable/plugin.toml"),
    ),
    ("files", include_str!("../../plugins/files/plugin.toml")),
    ("github", include_str!("../../plugins/github/plugin.toml")),
    ("testkit", include_str!("../../plugins/testkit/plugin.toml")),
];
