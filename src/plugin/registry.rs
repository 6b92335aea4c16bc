//! The published tool set: an immutable snapshot, swapped whole when plugins change, so a
//! `tools/list` or a call never waits on a reload.

use std::{collections::HashMap, sync::Arc};

use rmcp::model::Tool;

use super::{Handler, ToolDef};

/// One published tool.
pub(crate) struct Entry {
    pub tool: Tool,
    /// Which plugin answers it; used in logs and in error messages.
    pub plugin: Arc<str>,
    pub handler: Handler,
    /// Compiled once, at load, from the tool's input schema.
    pub validator: Arc<jsonschema::Validator>,
}

#[derive(Default)]
pub struct Registry {
    /// In publication order (plugin name, then the plugin's own order).
    pub(crate) tools: Arc<Vec<Tool>>,
    pub(crate) entries: HashMap<String, Entry>,
}

impl Registry {
    pub fn tools(&self) -> Arc<Vec<Tool>> {
        self.tools.clone()
    }

    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.entries.get(name).map(|e| &e.tool)
    }

    pub fn len(&self) -> usize {
        self.tools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

/// Tool names clients accept everywhere: 1-64 characters of `[a-zA-Z0-9_-]`.
pub fn check_tool_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("tool name `{name}` must be 1-64 characters long"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "tool name `{name}` has `{c}`; only a-z, A-Z, 0-9, `_` and `-` are allowed"
        ));
    }
    Ok(())
}

/// Build the published form of a plugin's tool.
pub(crate) fn publish(def: &ToolDef, prefix: &str, plugin: &Arc<str>) -> Result<Entry, String> {
    let name = if prefix.is_empty() {
        def.name.clone()
    } else {
        format!("{prefix}_{}", def.name)
    };
    check_tool_name(&name)?;
    let schema = serde_json::Value::Object((*def.input_schema).clone());
    let validator = jsonschema::validator_for(&schema)
        .map_err(|e| format!("tool `{name}` has an invalid input schema: {e}"))?;
    let mut tool = Tool::new(name, def.description.clone(), def.input_schema.clone())
        .with_annotations(def.annotations.clone());
    if let Some(title) = &def.title {
        tool = tool.with_title(title.clone());
    }
    if let Some(output) = &def.output_schema {
        tool = tool.with_raw_output_schema(output.clone());
    }
    Ok(Entry {
        tool,
        plugin: plugin.clone(),
        handler: def.handler.clone(),
        validator: Arc::new(validator),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_are_checked() {
        assert!(check_tool_name("files_read").is_ok());
        assert!(check_tool_name("a-b_C9").is_ok());
        assert!(check_tool_name("").is_err());
        assert!(check_tool_name(&"x".repeat(65)).is_err());
        assert!(check_tool_name("files.read").unwrap_err().contains('.'));
        assert!(check_tool_name("files read").is_err());
    }
}
