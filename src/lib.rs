//! plugboard: one MCP server whose tools come from plugins.
//!
//! # Layout
//!
//! - [`cli`]: the command line (`serve`, `plugins`, `tools`, `call`, `ask`, `consensus`,
//!   `import`, `check`, whose `--online` runs each plugin's [`plugin::Plugin::verify`]); it
//!   hands the manager the catalog of plugin kinds.
//! - [`config`]: the environment and `.env`; the real environment wins, values never printed.
//! - [`net`]: what every HTTP client shares: the client, one retry policy, secrets masking.
//! - [`plugin`]: the plugin contract — manifest, [`plugin::Catalog`] of kinds,
//!   [`plugin::Plugin`], [`plugin::ToolDef`], [`plugin::ToolContext`], host services
//!   ([`plugin::Toolbox`], [`plugin::Models`]) — the [`plugin::Manager`] (discovery,
//!   lifecycle, publishing, status) and the one call pipeline every face uses
//!   ([`plugin::Calls`]: filters, schema check, timeout, isolation, observers).
//! - [`sandbox`]: the one way a plugin reads a user's files — roots, secrets excluded inside
//!   them, walks that honour ignore files; the files plugin and the Airtable import use it.
//! - [`plugins`]: the built-in plugins, one folder each, and [`plugins::catalog`]; a plugin
//!   never imports another.
//! - [`agents`]: one module per provider wire format behind one `Agent` trait.
//! - [`orchestrator`]: routing, the tool-calling loop, consensus.
//! - [`server`]: the MCP handler and its transports: stdio, Streamable HTTP (`/mcp`) and
//!   legacy SSE (`/sse` + `/message`) on one axum port, behind the Host/Origin/token guard;
//!   `server::oauth` is the sign-in side of it (access tokens from an identity provider).
//! - `fuzzing` (feature `fuzzing` only): entry points for the fuzz targets in `fuzz/`.
//!
//! No module imports one that imports it back (checked by a test below).

pub mod agents;
pub mod cli;
pub mod config;
pub mod net;
pub mod ops;
pub mod orchestrator;
pub mod plugin;
pub mod plugins;
pub mod sandbox;
pub mod server;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

#[cfg(test)]
mod layout_tests {
    //! The module graph, read from the sources: no module imports one that imports it back.

    use std::collections::{BTreeMap, BTreeSet};

    /// Top-level module → the top-level modules its files name through `crate::`.
    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let rel = path.strip_prefix(&src).unwrap();
                let top = rel
                    .components()
                    .next()
                    .unwrap()
                    .as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_owned();
                if matches!(top.as_str(), "lib" | "main") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let names = graph.entry(top.clone()).or_default();
                for used in crate_references(&text) {
                    if used != top {
                        names.insert(used);
                    }
                }
            }
        }
        graph
    }

    /// The first segment after every `crate::`, including each name of `crate::{a, b::c}`.
    fn crate_references(text: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let ident = |s: &str| -> String {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        };
        for (at, _) in text.match_indices("crate::") {
            let rest = &text[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // Top-level names of the group: those at brace depth 0.
                let mut depth = 0;
                let mut start = true;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => start = true,
                        c if start && depth == 0 && !c.is_whitespace() => {
                            start = false;
                            let name = ident(&group[i..]);
                            if !name.is_empty() {
                                found.insert(name);
                            }
                        }
                        _ => {}
                    }
                }
            } else {
                let name = ident(rest);
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
        found
    }

    #[test]
    fn no_module_imports_one_that_imports_it_back() {
        let graph = graph();
        // A path from `to` back to `from` closes a circle.
        fn reaches(
            graph: &BTreeMap<String, BTreeSet<String>>,
            from: &str,
            to: &str,
            seen: &mut BTreeSet<String>,
        ) -> bool {
            from == to
                || graph
                    .get(from)
                    .into_iter()
                    .flatten()
                    .any(|next| seen.insert(next.clone()) && reaches(graph, next, to, seen))
        }
        let mut circles = Vec::new();
        for (module, uses) in &graph {
            for used in uses {
                if reaches(&graph, used, module, &mut BTreeSet::new()) {
                    circles.push(format!("{module} → {used} → … → {module}"));
                }
            }
        }
        assert!(
            circles.is_empty(),
            "import circles: {circles:?}\ngraph: {graph:#?}"
        );
        // The plugin contract names no plugin, no face and no provider.
        let plugin = &graph["plugin"];
        for other in ["plugins", "server", "cli", "agents", "orchestrator"] {
            assert!(
                !plugin.contains(other),
                "plugin imports {other}: {plugin:?}"
            );
        }
    }

    #[test]
    fn references_are_read_from_groups_and_paths() {
        let text = "use crate::{\n    agents::{a, b},\n    plugin::X,\n};\nfn f() { crate::config::environment(); }";
        let found: Vec<String> = crate_references(text).into_iter().collect();
        assert_eq!(found, ["agents", "config", "plugin"]);
    }
}
