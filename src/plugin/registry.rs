//! What is published: tools, resources, resource templates and prompts. An immutable
//! snapshot, swapped whole when plugins change, so a list or a call never waits on a reload.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, RwLock},
};

use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};

use super::{
    Handler, ToolDef,
    resource::{Completer, PromptHandler, Reader, UriTemplate},
};

/// One published tool.
pub(crate) struct Entry {
    pub tool: Tool,
    /// Which plugin answers it; used in logs and in error messages.
    pub plugin: Arc<str>,
    pub handler: Handler,
    /// Compiled from the tool's input schema on its first call, then kept.
    validator: OnceLock<Result<jsonschema::Validator, String>>,
    /// The tool's own timeout, if it has one.
    pub timeout: Option<std::time::Duration>,
    /// Listed only to clients that can sample.
    pub sampling_only: bool,
    /// Top-level `null` arguments are dropped before validation ([`ToolDef::null_is_absent`]).
    pub null_is_absent: bool,
}

impl Entry {
    /// The validator for the tool's arguments. Compiling one checks the schema against its
    /// meta-schema and builds a tree of keyword validators: a sixth of start-up's instructions
    /// when done for every tool at load, so it waits for the tool's first call.
    pub fn validator(&self) -> Result<&jsonschema::Validator, &str> {
        self.validator
            .get_or_init(|| {
                let schema = serde_json::Value::Object((*self.tool.input_schema).clone());
                jsonschema::validator_for(&schema).map_err(|e| {
                    format!(
                        "tool `{}` has an invalid input schema ({e}); its plugin `{}` must fix it",
                        self.tool.name, self.plugin
                    )
                })
            })
            .as_ref()
            .map_err(String::as_str)
    }
}

/// One published resource.
pub(crate) struct ResourceEntry {
    pub plugin: Arc<str>,
    pub reader: Reader,
}

/// One published resource template.
pub(crate) struct TemplateEntry {
    pub template: ResourceTemplate,
    pub pattern: UriTemplate,
    pub plugin: Arc<str>,
    pub reader: Reader,
    pub completer: Option<Completer>,
}

/// One published prompt.
pub(crate) struct PromptEntry {
    pub prompt: Prompt,
    pub plugin: Arc<str>,
    pub handler: PromptHandler,
    pub completer: Option<Completer>,
}

/// The registry as last published, shared by the manager (which replaces it) and the call
/// pipeline (which reads it on every call).
#[derive(Clone, Default)]
pub(crate) struct Published(Arc<RwLock<Arc<Registry>>>);

impl Published {
    pub fn get(&self) -> Arc<Registry> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Publish `next`; returns what it replaced.
    pub fn replace(&self, next: Arc<Registry>) -> Arc<Registry> {
        std::mem::replace(
            &mut *self.0.write().unwrap_or_else(|e| e.into_inner()),
            next,
        )
    }
}

#[derive(Default)]
pub struct Registry {
    /// In publication order (plugin name, then the plugin's own order).
    pub(crate) tools: Arc<Vec<Tool>>,
    /// `tools` less those for sampling clients only, prepared once like `tools`: tools/list
    /// is answered from one of the two, never rebuilt per request.
    pub(crate) tools_without_sampling: Arc<Vec<Tool>>,
    pub(crate) entries: HashMap<String, Entry>,
    pub(crate) resources: Arc<Vec<Resource>>,
    pub(crate) resource_entries: HashMap<String, ResourceEntry>,
    /// In publication order; the first that matches a URI answers it.
    pub(crate) templates: Vec<TemplateEntry>,
    pub(crate) prompts: Arc<Vec<Prompt>>,
    pub(crate) prompt_entries: HashMap<String, PromptEntry>,
}

impl Registry {
    pub fn tools(&self) -> Arc<Vec<Tool>> {
        self.tools.clone()
    }

    /// The tools a client is shown: all of them, less those that need sampling when the
    /// client cannot sample.
    pub fn tools_for(&self, can_sample: bool) -> Arc<Vec<Tool>> {
        if can_sample {
            self.tools.clone()
        } else {
            self.tools_without_sampling.clone()
        }
    }

    /// Publish `tools` (in order); prepares both lists [`Registry::tools_for`] answers with.
    pub(crate) fn set_tools(&mut self, tools: Vec<Tool>) {
        let without: Vec<Tool> = tools
            .iter()
            .filter(|t| {
                self.entries
                    .get(t.name.as_ref())
                    .is_none_or(|e| !e.sampling_only)
            })
            .cloned()
            .collect();
        self.tools = Arc::new(tools);
        self.tools_without_sampling = if without.len() == self.tools.len() {
            self.tools.clone()
        } else {
            Arc::new(without)
        };
    }

    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.entries.get(name).map(|e| &e.tool)
    }

    /// The plugin that answers tool `name`.
    pub fn plugin_of(&self, name: &str) -> Option<&str> {
        self.entries.get(name).map(|e| &*e.plugin)
    }

    pub fn len(&self) -> usize {
        self.tools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    pub fn resources(&self) -> Arc<Vec<Resource>> {
        self.resources.clone()
    }

    pub fn resource_templates(&self) -> Vec<ResourceTemplate> {
        self.templates.iter().map(|t| t.template.clone()).collect()
    }

    pub fn prompts(&self) -> Arc<Vec<Prompt>> {
        self.prompts.clone()
    }

    /// Who answers `uri`: a resource with exactly that URI, else the first template it fits,
    /// with the template's variables.
    pub(crate) fn resolve(
        &self,
        uri: &str,
    ) -> Option<(Arc<str>, Reader, std::collections::BTreeMap<String, String>)> {
        if let Some(e) = self.resource_entries.get(uri) {
            return Some((e.plugin.clone(), e.reader.clone(), Default::default()));
        }
        self.templates.iter().find_map(|t| {
            t.pattern
                .matches(uri)
                .map(|vars| (t.plugin.clone(), t.reader.clone(), vars))
        })
    }

    /// Whether anything is published that changes what `resources/list`, templates or
    /// `prompts/list` show, compared with `other`.
    pub(crate) fn differs(&self, other: &Registry) -> (bool, bool, bool) {
        let templates = |r: &Registry| r.resource_templates();
        (
            *self.tools != *other.tools,
            *self.resources != *other.resources || templates(self) != templates(other),
            *self.prompts != *other.prompts,
        )
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
    if def.input_schema.get("type").and_then(|t| t.as_str()) != Some("object") {
        return Err(format!(
            "tool `{name}` has an input schema whose root is not `type: object`"
        ));
    }
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
        validator: OnceLock::new(),
        timeout: def.timeout,
        sampling_only: def.sampling_clients_only,
        null_is_absent: def.null_is_absent,
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

    fn tool_with(schema: serde_json::Value) -> ToolDef {
        let serde_json::Value::Object(schema) = schema else {
            panic!("an object")
        };
        ToolDef::with_schema(
            "t",
            "test",
            schema,
            super::super::Hints::read_only(),
            |_, _| async { Ok(rmcp::model::CallToolResult::success(vec![])) },
        )
    }

    #[test]
    fn validators_are_compiled_on_first_use_and_kept() {
        let plugin: Arc<str> = Arc::from("p");
        let good = publish(
            &tool_with(serde_json::json!({"type": "object", "required": ["a"]})),
            "p",
            &plugin,
        )
        .unwrap();
        let first: *const jsonschema::Validator = good.validator().unwrap();
        assert!(!good.validator().unwrap().is_valid(&serde_json::json!({})));
        assert!(std::ptr::eq(first, good.validator().unwrap()));

        // A schema jsonschema cannot compile is published, and its calls say why.
        let bad = publish(
            &tool_with(serde_json::json!({"type": "object", "properties": {"a": {"type": 5}}})),
            "p",
            &plugin,
        )
        .unwrap();
        let error = bad.validator().unwrap_err();
        assert!(
            error.contains("`p_t` has an invalid input schema"),
            "{error}"
        );
        assert!(error.contains("plugin `p`"), "{error}");
    }
}
