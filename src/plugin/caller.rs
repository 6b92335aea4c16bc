//! Who is calling: the face a call came through, the client behind it, and the tools that
//! caller may see — the server's filters narrowed for one session, API token or face.

use std::sync::Arc;

use rmcp::model::Tool;

/// The way a call reached the server. Observers label calls with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Face {
    /// MCP over stdio.
    Stdio,
    /// MCP over Streamable HTTP (`/mcp`).
    Http,
    /// MCP over legacy HTTP+SSE (`/sse` + `/message`).
    Sse,
    /// The command line (`plugboard call`, `ask`, `import`…).
    #[default]
    Cli,
    /// A model's tool call inside the agents' tool-calling loop.
    Agent,
    /// The REST API.
    Rest,
    /// The web dashboard.
    Dashboard,
}

impl Face {
    pub fn as_str(self) -> &'static str {
        match self {
            Face::Stdio => "stdio",
            Face::Http => "http",
            Face::Sse => "sse",
            Face::Cli => "cli",
            Face::Agent => "agent",
            Face::Rest => "rest",
            Face::Dashboard => "dashboard",
        }
    }

    /// Whether calls through this face can reach a client that samples or elicits.
    pub fn reaches_a_client(self) -> bool {
        matches!(self, Face::Stdio | Face::Http | Face::Sse)
    }
}

impl std::fmt::Display for Face {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which tools are published, whatever the plugins offer (`--read-only`, `--tools`, …); the
/// same type narrows what one caller may see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Hide every tool not marked read-only.
    pub read_only: bool,
    /// Publish only these tools (full names); empty means all.
    pub tools: Vec<String>,
    /// Never publish these; wins over everything else.
    pub exclude_tools: Vec<String>,
    /// Publish only the tools of these plugins; empty means all.
    pub toolsets: Vec<String>,
}

impl Filters {
    pub fn allows(&self, plugin: &str, tool: &Tool) -> bool {
        let name = tool.name.as_ref();
        if self.exclude_tools.iter().any(|t| t == name) {
            return false;
        }
        if self.read_only && tool.annotations.as_ref().and_then(|a| a.read_only_hint) != Some(true)
        {
            return false;
        }
        (self.tools.is_empty() || self.tools.iter().any(|t| t == name)) && self.shows_plugin(plugin)
    }

    /// Whether the plugin filter (`--toolsets`) lets `plugin`'s resources and prompts through.
    pub fn shows_plugin(&self, plugin: &str) -> bool {
        self.toolsets.is_empty() || self.toolsets.iter().any(|t| t == plugin)
    }
}

/// The caller of one request. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub face: Face,
    /// The client: its name and session, or the API token's name. For observers and logs.
    pub client: Option<Arc<str>>,
    /// Narrower filters for this caller, on top of the server's (which already decided what
    /// is published): a tool they hide is unknown to this caller.
    pub scope: Option<Arc<Filters>>,
    /// What a signed-in user's token lets them reach (OAuth scopes mapped to toolsets); on top
    /// of `scope`, and just as final: a tool outside it is unknown to this caller.
    pub grants: Option<Arc<Grants>>,
}

impl Caller {
    pub fn new(face: Face) -> Self {
        Self {
            face,
            ..Self::default()
        }
    }

    pub fn with_client(mut self, client: impl Into<Arc<str>>) -> Self {
        self.client = Some(client.into());
        self
    }

    pub fn with_scope(mut self, scope: Filters) -> Self {
        self.scope = Some(Arc::new(scope));
        self
    }

    pub fn with_grants(mut self, grants: Option<Arc<Grants>>) -> Self {
        self.grants = grants;
        self
    }

    /// Whether this caller may see and call `tool` of `plugin`.
    pub fn allows(&self, plugin: &str, tool: &Tool) -> bool {
        self.scope.as_ref().is_none_or(|s| s.allows(plugin, tool))
            && self.grants.as_ref().is_none_or(|g| g.allows(plugin, tool))
    }
}

/// One thing an OAuth scope opens: every tool, every read-only tool, or (all or only the
/// read-only) tools of one plugin. Written `*`, `*:read`, `<plugin>`, `<plugin>:read`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    All { read_only: bool },
    Plugin { plugin: String, read_only: bool },
}

impl std::str::FromStr for Grant {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (name, read_only) = match text.split_once(':') {
            Some((name, "read")) => (name, true),
            Some((_, other)) => {
                return Err(format!(
                    "`{text}`: after `:` only `read` is known (`{other}` is not)"
                ));
            }
            None => (text, false),
        };
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        match name {
            "*" => Ok(Grant::All { read_only }),
            "" => Err(format!("`{text}`: a plugin name, or `*` for all")),
            _ if name.chars().all(valid) => Ok(Grant::Plugin {
                plugin: name.to_owned(),
                read_only,
            }),
            _ => Err(format!("`{text}` is no plugin name")),
        }
    }
}

impl Grant {
    pub fn allows(&self, plugin: &str, tool: &Tool) -> bool {
        let (matches, read_only) = match self {
            Grant::All { read_only } => (true, *read_only),
            Grant::Plugin {
                plugin: p,
                read_only,
            } => (p == plugin, *read_only),
        };
        matches
            && (!read_only
                || tool.annotations.as_ref().and_then(|a| a.read_only_hint) == Some(true))
    }
}

/// Everything a caller's grants open (their union); none opens nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants(pub Vec<Grant>);

impl Grants {
    pub fn allows(&self, plugin: &str, tool: &Tool) -> bool {
        self.0.iter().any(|g| g.allows(plugin, tool))
    }

    /// Whether some grant opens (some of) `plugin`: its resources and prompts then show.
    pub fn shows_plugin(&self, plugin: &str) -> bool {
        self.0.iter().any(|g| match g {
            Grant::All { .. } => true,
            Grant::Plugin { plugin: p, .. } => p == plugin,
        })
    }
}

/// Who signed in with an OAuth access token: the token's subject and scopes, and what those
/// scopes open. The HTTP guard puts it into the request's extensions once the token is
/// validated; the MCP handler and the REST API narrow the request's [`Caller`] by it.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's `sub` (for logs and observers: who called).
    pub subject: Arc<str>,
    /// The token's scopes, as granted by the authorization server.
    pub scopes: Arc<[String]>,
    /// What the scopes open; `None` when the server maps no scopes (a valid token opens all).
    pub grants: Option<Arc<Grants>>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rmcp::model::{Tool, ToolAnnotations};

    use super::*;

    fn tool(name: &str, read_only: bool) -> Tool {
        Tool::new(name.to_owned(), "", Arc::new(serde_json::Map::new()))
            .with_annotations(ToolAnnotations::new().read_only(read_only))
    }

    #[test]
    fn grants_open_whole_plugins_or_their_read_only_tools() {
        let grants = Grants(vec![
            "files:read".parse().unwrap(),
            "github".parse().unwrap(),
        ]);
        assert!(grants.allows("files", &tool("files_read", true)));
        assert!(!grants.allows("files", &tool("files_delete", false)));
        assert!(grants.allows("github", &tool("github_create_issue", false)));
        assert!(!grants.allows("airtable", &tool("airtable_list_records", true)));
        assert!(grants.shows_plugin("files") && !grants.shows_plugin("airtable"));
        let reader = Grants(vec!["*:read".parse().unwrap()]);
        assert!(reader.allows("airtable", &tool("airtable_list_records", true)));
        assert!(!reader.allows("airtable", &tool("airtable_create_records", false)));
        assert!(!Grants::default().allows("files", &tool("files_read", true)));
        assert!("files:write".parse::<Grant>().is_err());
        assert!("a b".parse::<Grant>().is_err());
        assert!("".parse::<Grant>().is_err());
    }

    #[test]
    fn a_caller_needs_both_its_scope_and_its_grants() {
        let caller = Caller::new(Face::Http)
            .with_scope(Filters {
                exclude_tools: vec!["files_search".into()],
                ..Filters::default()
            })
            .with_grants(Some(Arc::new(Grants(vec!["files".parse().unwrap()]))));
        assert!(caller.allows("files", &tool("files_read", true)));
        assert!(!caller.allows("files", &tool("files_search", true)));
        assert!(!caller.allows("testkit", &tool("testkit_echo", true)));
    }
}
