//! `kind = "mcp"`: any MCP server as a plugboard plugin. The manifest names the server's
//! command (a child over stdio); plugboard starts it, initializes it as an MCP client, and
//! publishes its tools under the plugin's prefix with the same filters, limits, isolation and
//! observers as a built-in's. Results come back as the server wrote them (text, images,
//! audio, embedded resources, structured content).
//!
//! The child runs in its own process group, killed with the group when the plugin stops (a
//! server that forks — `npx` starting `node` — leaves nothing behind). A child that dies is
//! started again with back-off; meanwhile its tools stay listed and answer a clear error.
//!
//! ```toml
//! name = "everything"
//! kind = "mcp"
//! prefix = "ev"
//! [mcp]
//! command = "npx"
//! args = ["-y", "@modelcontextprotocol/server-everything"]
//! env = { GITHUB_TOKEN = "${GITHUB_TOKEN}" }   # values may name variables
//! cwd = "."                                     # relative to the manifest's folder
//! exclude_tools = ["longRunningOperation"]
//! ```
//!
//! or a remote server, over Streamable HTTP (legacy HTTP+SSE when that is all it speaks):
//!
//! ```toml
//! [mcp]
//! url = "https://mcp.example.com/mcp"
//! headers = { Authorization = "Bearer ${EXAMPLE_TOKEN}" }
//! # transport = "sse"                         # only legacy SSE: skip the first try
//! ```

mod names;
mod remote;
mod upstream;

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use futures::future::BoxFuture;
use serde::Deserialize;

use crate::plugin::{Manifest, Needs, Plugin, PluginError, PluginKind, PluginSetup};

/// The `[mcp]` table of a manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct McpConfig {
    /// The server's program, found on PATH (or a path, relative to the manifest's folder).
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Variables for the child; `${NAME}` in a value is the variable `NAME` (from the
    /// environment or `.env`). The child sees these and PATH, HOME, … — not plugboard's keys.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The child's working folder, relative to the manifest's folder. Default: that folder.
    pub cwd: Option<PathBuf>,
    /// A remote server (Streamable HTTP, falling back to legacy SSE).
    pub url: Option<String>,
    /// Headers for every request to `url` (values may name variables:
    /// `Authorization = "Bearer ${TOKEN}"`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `streamable-http` or `sse` (legacy HTTP+SSE); default: Streamable HTTP, then SSE.
    pub transport: Option<remote::Transport>,
    /// Only these upstream tools (by their upstream names).
    pub tools: Option<Vec<String>>,
    /// Never these upstream tools.
    #[serde(default)]
    pub exclude_tools: Vec<String>,
    /// Seconds the server has to start and answer `initialize` (default 30).
    pub init_timeout_secs: Option<f64>,
    /// Start the server on first use instead of at start-up, publishing the tools it listed
    /// last time (kept in plugboard's state folder); the first start learns them.
    #[serde(default)]
    pub lazy: bool,
    /// Seconds between pings (default 30; 0: none). A server that does not answer one within
    /// the same time (at most 10 s) is taken as hung: killed and started again.
    pub ping_secs: Option<f64>,
}

impl McpConfig {
    fn validate(&self) -> Result<(), String> {
        match (&self.command, &self.url) {
            (Some(c), None) if !c.trim().is_empty() => {
                if !self.headers.is_empty() || self.transport.is_some() {
                    return Err(
                        "[mcp] `headers` and `transport` are for a remote server (`url`); a \
                         child gets variables through `env`"
                            .into(),
                    );
                }
                Ok(())
            }
            (Some(_), None) => Err("[mcp] command is empty".into()),
            (None, Some(_)) => {
                if !self.args.is_empty() || !self.env.is_empty() || self.cwd.is_some() {
                    return Err(
                        "[mcp] `args`, `env` and `cwd` are for a child (`command`); a remote \
                         server (`url`) takes `headers`"
                            .into(),
                    );
                }
                Ok(())
            }
            (Some(_), Some(_)) => {
                Err("[mcp] has both `command` and `url`: a plugin is one server, give one".into())
            }
            (None, None) => Err(
                "[mcp] needs the server's `command` (and `args`), e.g. command = \"npx\", \
                 args = [\"-y\", \"@modelcontextprotocol/server-everything\"]"
                    .into(),
            ),
        }
    }
}

/// The `mcp` kind of the catalog.
#[derive(Debug, Clone, Copy, Default)]
pub struct McpKind;

impl PluginKind for McpKind {
    fn check(&self, manifest: &Manifest) -> Result<(), String> {
        match manifest.kind_table::<McpConfig>()? {
            Some(config) => {
                config.validate()?;
                if let Some(url) = &config.url {
                    // Reached when started; only its form is checked here.
                    return remote::Remote::new(url, &BTreeMap::new(), config.transport)
                        .map(|_| ());
                }
                Ok(())
            }
            None => Err(
                "a `kind = \"mcp\"` plugin needs an [mcp] table naming the server's `command`"
                    .into(),
            ),
        }
    }

    fn needs(&self, manifest: &Manifest) -> Needs {
        let Ok(Some(config)) = manifest.kind_table::<McpConfig>() else {
            return Needs::default();
        };
        let mut variables = Vec::new();
        for value in config.env.values().chain(config.headers.values()) {
            for name in referenced(value) {
                if !variables.contains(&name) {
                    variables.push(name);
                }
            }
        }
        Needs {
            commands: config.command.into_iter().collect(),
            variables,
        }
    }

    fn start(
        &self,
        setup: PluginSetup,
    ) -> BoxFuture<'static, Result<Arc<dyn Plugin>, PluginError>> {
        Box::pin(async move {
            let upstream = upstream::Upstream::start(setup).await?;
            Ok(Arc::new(upstream) as Arc<dyn Plugin>)
        })
    }
}

/// The variables `${NAME}` in `value` names.
fn referenced(value: &str) -> Vec<String> {
    let names = std::cell::RefCell::new(Vec::new());
    let _ = expand(value, |name| {
        names.borrow_mut().push(name.to_owned());
        Some(String::new())
    });
    names.take()
}

/// `${NAME}` in `value` replaced by the variable's value (`lookup`); `$$` is a `$`.
pub(crate) fn expand(
    value: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let Some(end) = inner.find('}') else {
                return Err(format!("`{value}`: `${{` without its `}}`"));
            };
            let name = &inner[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`${{{name}}}` is not a variable name"));
            }
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => return Err(format!("the variable {name} is not set")),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_expanded_and_a_missing_one_is_named() {
        let lookup = |n: &str| (n == "TOKEN").then(|| "t0k".to_owned());
        assert_eq!(expand("Bearer ${TOKEN}", lookup).unwrap(), "Bearer t0k");
        assert_eq!(expand("$$5 and $x", lookup).unwrap(), "$5 and $x");
        let err = expand("${NOPE}", lookup).unwrap_err();
        assert_eq!(err, "the variable NOPE is not set");
        assert!(expand("${TOKEN", lookup).is_err());
        assert!(expand("${a b}", lookup).is_err());
    }

    #[test]
    fn a_manifest_names_one_server() {
        let parse = |t: &str| -> McpConfig { toml::from_str(t).unwrap() };
        assert!(parse("command = \"npx\"").validate().is_ok());
        assert!(parse("url = \"http://x\"").validate().is_ok());
        assert!(
            parse("url = \"http://x\"\nargs = [\"a\"]")
                .validate()
                .unwrap_err()
                .contains("for a child")
        );
        assert!(
            parse("command = \"x\"\ntransport = \"sse\"")
                .validate()
                .unwrap_err()
                .contains("for a remote server")
        );
        assert!(toml::from_str::<McpConfig>("url = \"http://x\"\ntransport = \"ws\"").is_err());
        assert!(
            parse("")
                .validate()
                .unwrap_err()
                .contains("needs the server's `command`")
        );
        assert!(toml::from_str::<McpConfig>("command = \"x\"\ncolour = 1").is_err());
    }
}
