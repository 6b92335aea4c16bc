//! Turning what the plugins offer into the published registry. A tool (prompt, resource,
//! template) with a bad or taken name is refused with the reason and the rest of its plugin
//! is published; a plugin all of whose offer is refused has failed.

use std::{collections::HashMap, sync::Arc};

use super::{Manager, Offer, Slot, Status, status::log_status};
use crate::plugin::{
    Registry, UriTemplate, check_tool_name,
    registry::{self, PromptEntry, ResourceEntry, TemplateEntry},
};

impl Manager {
    /// Publish what every ready plugin offers, in plugin-name order.
    pub(super) fn build_registry(
        &self,
        slots: &mut std::collections::BTreeMap<String, Slot>,
    ) -> Registry {
        let filters = &self.config.filters;
        let mut registry = Registry::default();
        let mut tools = Vec::new();
        let mut resources = Vec::new();
        let mut prompts = Vec::new();
        // Which plugin holds each name, URI and template.
        let mut owner: HashMap<String, String> = HashMap::new();
        for (name, slot) in slots.iter_mut() {
            let Some(manifest) = &slot.manifest else {
                continue;
            };
            if slot.instance.is_none() {
                continue;
            }
            let plugin: Arc<str> = Arc::from(name.as_str());
            let published = publish_offer(&slot.offer, manifest.prefix(), &plugin, &owner);
            let was = std::mem::replace(&mut slot.refused, published.refused);
            if !slot.offer.is_empty() && published.keys.is_empty() {
                slot.status = Status::Failed(slot.refused.join("; "));
                log_status(name, &slot.status);
                continue;
            }
            slot.status = Status::Ready;
            if slot.refused != was {
                for reason in &slot.refused {
                    tracing::warn!(plugin = %name, reason = %reason, "refused part of the plugin's offer");
                }
            }
            for key in published.keys {
                owner.insert(key, name.clone());
            }
            if slot.down.is_some() {
                // Names stay claimed while the plugin is down, so nothing takes them.
                continue;
            }
            // Resources and prompts follow the plugin filter (--toolsets); tools follow
            // every filter.
            for (tool_name, entry) in published.tools {
                if filters.allows(name, &entry.tool) {
                    tools.push(entry.tool.clone());
                    registry.entries.insert(tool_name, entry);
                }
            }
            if filters.shows_plugin(name) {
                for (resource, entry) in published.resources {
                    registry
                        .resource_entries
                        .insert(resource.uri.clone(), entry);
                    resources.push(resource);
                }
                registry.templates.extend(published.templates);
                for entry in published.prompts {
                    prompts.push(entry.prompt.clone());
                    registry
                        .prompt_entries
                        .insert(entry.prompt.name.clone(), entry);
                }
            }
        }
        registry.set_tools(tools);
        registry.resources = Arc::new(resources);
        registry.prompts = Arc::new(prompts);
        registry
    }
}

/// One plugin's offer in published form, checked against what others already publish.
struct Published {
    tools: Vec<(String, registry::Entry)>,
    resources: Vec<(rmcp::model::Resource, ResourceEntry)>,
    templates: Vec<TemplateEntry>,
    prompts: Vec<PromptEntry>,
    /// The owner keys this plugin takes (`tool:…`, `prompt:…`, `resource:…`, `template:…`).
    keys: Vec<String>,
    /// What was not published, and why.
    refused: Vec<String>,
}

fn publish_offer(
    offer: &Offer,
    prefix: &str,
    plugin: &Arc<str>,
    owner: &HashMap<String, String>,
) -> Published {
    let mut out = Published {
        tools: Vec::new(),
        resources: Vec::new(),
        templates: Vec::new(),
        prompts: Vec::new(),
        keys: Vec::new(),
        refused: Vec::new(),
    };
    let claim = |out: &mut Published, kind: &str, what: &str, hint: &str| -> Result<(), String> {
        let key = format!("{kind}:{what}");
        if let Some(other) = owner.get(&key) {
            return Err(format!(
                "{kind} `{what}` is already published by plugin `{other}`; {hint}"
            ));
        }
        if out.keys.contains(&key) {
            return Err(format!("{kind} `{what}` is defined twice"));
        }
        out.keys.push(key);
        Ok(())
    };
    let prefixed = |name: &str| {
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}_{name}")
        }
    };
    for def in &offer.tools {
        let entry = registry::publish(def, prefix, plugin).and_then(|entry| {
            claim(
                &mut out,
                "tool",
                &entry.tool.name,
                "give this plugin another prefix",
            )?;
            Ok(entry)
        });
        match entry {
            Ok(entry) => out.tools.push((entry.tool.name.to_string(), entry)),
            Err(reason) => out.refused.push(reason),
        }
    }
    for def in &offer.resources {
        let uri = def.resource.uri.clone();
        let checked = if uri.contains(':') {
            claim(
                &mut out,
                "resource",
                &uri,
                "two plugins cannot serve the same URI",
            )
        } else {
            Err(format!(
                "resource URI `{uri}` has no scheme (e.g. `myplugin://…`)"
            ))
        };
        match checked {
            Ok(()) => out.resources.push((
                def.resource.clone(),
                ResourceEntry {
                    plugin: plugin.clone(),
                    reader: def.reader.clone(),
                },
            )),
            Err(reason) => out.refused.push(reason),
        }
    }
    for def in &offer.templates {
        let text = def.template.uri_template.clone();
        let checked = UriTemplate::parse(&text).and_then(|pattern| {
            claim(
                &mut out,
                "resource template",
                &text,
                "two plugins cannot serve the same URIs",
            )?;
            Ok(pattern)
        });
        match checked {
            Ok(pattern) => out.templates.push(TemplateEntry {
                template: def.template.clone(),
                pattern,
                plugin: plugin.clone(),
                reader: def.reader.clone(),
                completer: def.completer.clone(),
            }),
            Err(reason) => out.refused.push(reason),
        }
    }
    for def in &offer.prompts {
        let name = prefixed(&def.prompt.name);
        let checked = check_tool_name(&name)
            .map_err(|e| e.replace("tool name", "prompt name"))
            .and_then(|()| claim(&mut out, "prompt", &name, "give this plugin another prefix"));
        match checked {
            Ok(()) => {
                let mut prompt = def.prompt.clone();
                prompt.name = name;
                out.prompts.push(PromptEntry {
                    prompt,
                    plugin: plugin.clone(),
                    handler: def.handler.clone(),
                    completer: def.completer.clone(),
                });
            }
            Err(reason) => out.refused.push(reason),
        }
    }
    out
}
