//! A plugin's way to use the other plugins' tools (the agents' tool-calling loop): the same
//! published set clients see, called through the manager with the same validation, timeout
//! and isolation as a client's call.

use std::sync::{Arc, Weak};

use rmcp::model::{CallToolResult, JsonObject, Tool};

use super::{Caller, Manager, ToolContext};

#[derive(Clone)]
pub struct Toolbox {
    manager: Weak<Manager>,
    /// The plugin holding the toolbox: its own tools are left out, so a model cannot make a
    /// tool call itself.
    own: Arc<str>,
}

impl Toolbox {
    pub(crate) fn new(manager: Weak<Manager>, own: &str) -> Self {
        Self {
            manager,
            own: Arc::from(own),
        }
    }

    /// A toolbox with no tools (unit tests, plugins set up outside a manager).
    pub fn empty() -> Self {
        Self::new(Weak::new(), "")
    }

    /// The published tools `caller` may call, except the holder's own: a session or token
    /// scoped to fewer tools sees only those here too, so a model working for it is never
    /// offered a tool its call would be refused.
    pub fn tools(&self, caller: &Caller) -> Vec<Tool> {
        let Some(manager) = self.manager.upgrade() else {
            return Vec::new();
        };
        let registry = manager.registry();
        registry
            .tools()
            .iter()
            .filter(|t| {
                registry
                    .entries
                    .get(t.name.as_ref())
                    .is_some_and(|e| *e.plugin != *self.own && caller.allows(&e.plugin, t))
            })
            .cloned()
            .collect()
    }

    /// The published name of tool `local` of the plugin running built-in `kind` (whatever
    /// prefix its manifest gives it), if it is published.
    pub fn find_tool(&self, kind: &str, local: &str) -> Option<String> {
        self.manager.upgrade()?.find_tool(kind, local)
    }

    /// Call a published tool. Failures (unknown tool, bad arguments, errors inside the tool)
    /// come back as `isError: true` results, as they do for clients.
    pub async fn call(&self, name: &str, args: JsonObject, cx: ToolContext) -> CallToolResult {
        let own = self.manager.upgrade().and_then(|m| {
            m.registry()
                .entries
                .get(name)
                .map(|e| *e.plugin == *self.own)
        });
        match (self.manager.upgrade(), own) {
            (Some(_), Some(true)) => CallToolResult::error(vec![rmcp::model::ContentBlock::text(
                format!("`{name}` cannot be called from here"),
            )]),
            (Some(manager), _) => manager.call(name, Some(args), cx).await,
            (None, _) => CallToolResult::error(vec![rmcp::model::ContentBlock::text(
                "the server is shutting down",
            )]),
        }
    }
}
