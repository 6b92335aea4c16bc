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

    /// Whether this caller may see and call `tool` of `plugin`.
    pub fn allows(&self, plugin: &str, tool: &Tool) -> bool {
        self.scope.as_ref().is_none_or(|s| s.allows(plugin, tool))
    }
}
