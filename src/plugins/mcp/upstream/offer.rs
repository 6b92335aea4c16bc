//! What the upstream offers, published as plugboard's: its tools (named under the prefix,
//! filtered), resources, templates and prompts, each answered by relaying to it; and the list
//! a lazy server's tools are published from before it runs.

#![allow(deprecated)] // rmcp marks sampling, roots and logging deprecated (SEP-2577); upstreams use them.

use super::*;

/// List the upstream's tools and publish them (clients hear `list_changed`).
pub(super) async fn publish(
    shared: &Arc<Shared>,
    peer: &Peer<RoleClient>,
    restarted: bool,
) -> Result<(), String> {
    let listed = match peer.peer_info().and_then(|i| i.capabilities.tools.clone()) {
        Some(_) => peer
            .list_all_tools()
            .await
            .map_err(|e| with_stderr(shared, format!("tools/list failed: {e}")))?,
        None => Vec::new(),
    };
    if let Some(cache) = &shared.cache {
        write_cache(cache, &listed);
    }
    let defs = list_tools(shared, listed);
    if restarted
        && defs.is_empty()
        && !shared
            .tools
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    {
        return Err(with_stderr(
            shared,
            "it started again but serves no tools (it served some before)".into(),
        ));
    }
    *shared.tools.write().unwrap_or_else(|e| e.into_inner()) = defs;

    let capabilities = peer
        .peer_info()
        .map(|i| i.capabilities.clone())
        .unwrap_or_default();
    let completes = capabilities.completions.is_some();
    let (mut resources, mut templates, mut prompts) = (Vec::new(), Vec::new(), Vec::new());
    if capabilities.resources.is_some() {
        resources = peer
            .list_all_resources()
            .await
            .map_err(|e| with_stderr(shared, format!("resources/list failed: {e}")))?;
        templates = peer
            .list_all_resource_templates()
            .await
            .map_err(|e| with_stderr(shared, format!("resources/templates/list failed: {e}")))?;
    }
    if capabilities.prompts.is_some() {
        prompts = peer
            .list_all_prompts()
            .await
            .map_err(|e| with_stderr(shared, format!("prompts/list failed: {e}")))?;
    }
    *shared.resources.write().unwrap_or_else(|e| e.into_inner()) = resources
        .into_iter()
        .map(|r| resource_def(shared, r))
        .collect();
    *shared.templates.write().unwrap_or_else(|e| e.into_inner()) = templates
        .into_iter()
        .map(|t| template_def(shared, t, completes))
        .collect();
    *shared.prompts.write().unwrap_or_else(|e| e.into_inner()) = prompts
        .into_iter()
        .map(|p| prompt_def(shared, p, completes))
        .collect();
    shared.events.list_changed();
    Ok(())
}

/// Reads `uri` from the upstream.
pub(super) fn reader(shared: &Arc<Shared>) -> crate::plugin::resource::Reader {
    let owner = shared.clone();
    Arc::new(move |uri: String, _vars, cx: ToolContext| {
        let owner = owner.clone();
        Box::pin(async move {
            let what = format!("reading `{uri}`");
            let request = ClientRequest::ReadResourceRequest(Request::new(
                ReadResourceRequestParams::new(uri),
            ));
            match owner.relay(request, cx, &what).await? {
                ServerResult::ReadResourceResult(result) => Ok(result.contents),
                _ => Err(owner.failure(&what, ServiceError::UnexpectedResponse)),
            }
        })
    })
}

/// Asks the upstream to complete an argument of `reference`.
pub(super) fn completer(
    shared: &Arc<Shared>,
    reference: Reference,
) -> crate::plugin::resource::Completer {
    let owner = shared.clone();
    Arc::new(move |c: Completion| {
        let owner = owner.clone();
        let reference = reference.clone();
        Box::pin(async move {
            let mut params =
                CompleteRequestParams::new(reference, ArgumentInfo::new(c.argument, c.value));
            if !c.context.is_empty() {
                params.context = Some(CompletionContext::with_arguments(
                    c.context.into_iter().collect(),
                ));
            }
            let request = ClientRequest::CompleteRequest(Request::new(params));
            // Completions have no client of their own to relay to; a failure suggests nothing.
            match owner
                .relay(request, ToolContext::detached(), "completing")
                .await
            {
                Ok(ServerResult::CompleteResult(result)) => result.completion.values,
                Ok(_) => Vec::new(),
                Err(e) => {
                    tracing::debug!(plugin = %owner.plugin, error = %e, "upstream completion failed");
                    Vec::new()
                }
            }
        })
    })
}

pub(super) fn resource_def(shared: &Arc<Shared>, resource: Resource) -> ResourceDef {
    ResourceDef {
        resource,
        reader: reader(shared),
    }
}

pub(super) fn template_def(
    shared: &Arc<Shared>,
    template: ResourceTemplate,
    completes: bool,
) -> TemplateDef {
    let reference = Reference::Resource(ResourceTemplateReference::new(
        template.uri_template.clone(),
    ));
    TemplateDef {
        template,
        reader: reader(shared),
        completer: completes.then(|| completer(shared, reference)),
    }
}

/// One upstream prompt (the manager adds the prefix to its name).
pub(super) fn prompt_def(shared: &Arc<Shared>, prompt: Prompt, completes: bool) -> PromptDef {
    let owner = shared.clone();
    let name = prompt.name.clone();
    let reference = Reference::for_prompt(name.clone());
    PromptDef {
        prompt,
        handler: Arc::new(move |args, cx| {
            let owner = owner.clone();
            let name = name.clone();
            Box::pin(async move {
                let what = format!("prompt `{name}`");
                let mut params = GetPromptRequestParams::new(name);
                if !args.is_empty() {
                    params.arguments = Some(
                        args.into_iter()
                            .map(|(k, v)| (k, serde_json::Value::String(v)))
                            .collect(),
                    );
                }
                let request = ClientRequest::GetPromptRequest(Request::new(params));
                match owner.relay(request, cx, &what).await? {
                    ServerResult::GetPromptResult(result) => Ok(result),
                    _ => Err(owner.failure(&what, ServiceError::UnexpectedResponse)),
                }
            })
        }),
        completer: completes.then(|| completer(shared, reference)),
    }
}

/// The upstream's tools as plugboard tools: filtered, named under the prefix.
pub(super) fn list_tools(shared: &Arc<Shared>, listed: Vec<Tool>) -> Vec<ToolDef> {
    let mut defs: Vec<ToolDef> = Vec::new();
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    for tool in listed {
        let upstream = tool.name.to_string();
        if !wanted(&shared.config, &upstream) {
            continue;
        }
        let local = names::local_name(&upstream, shared.room);
        if let Some(first) = taken.get(&local) {
            tracing::warn!(plugin = %shared.plugin, tool = %upstream, other = %first,
                "upstream tool not published: its name is taken");
            continue;
        }
        taken.insert(local.clone(), upstream.clone());
        defs.push(tool_def(shared, tool, local));
    }
    defs
}

/// Where a lazy server's tools are kept between runs: plugboard's state folder, one file per
/// plugin and server (its `[mcp]` table hashed: another server is another file).
pub(super) fn cache_path(plugin: &str, config: &McpConfig) -> PathBuf {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{config:?}").as_bytes());
    let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    crate::config::state_dir("mcp").join(format!("{plugin}-{short}.json"))
}

pub(super) fn read_cache(path: &std::path::Path) -> Option<Vec<Tool>> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

pub(super) fn write_cache(path: &std::path::Path, tools: &[Tool]) {
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(path.parent().unwrap_or(std::path::Path::new(".")))?;
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, serde_json::to_vec(tools)?)?;
        std::fs::rename(temporary, path)
    };
    if let Err(e) = write() {
        tracing::warn!(path = %path.display(), error = %e, "could not keep the server's tools for a lazy start");
    }
}

pub(super) fn wanted(config: &McpConfig, name: &str) -> bool {
    config
        .tools
        .as_ref()
        .is_none_or(|only| only.iter().any(|t| t == name))
        && !config.exclude_tools.iter().any(|t| t == name)
}

/// One upstream tool as a plugboard tool: its schemas and annotations as the server gave
/// them, a handler that calls it and returns its result unchanged.
pub(super) fn tool_def(shared: &Arc<Shared>, tool: Tool, local: String) -> ToolDef {
    let upstream = tool.name.clone();
    let owner = shared.clone();
    let mut def = ToolDef::with_schema(
        &local,
        tool.description.as_deref().unwrap_or(""),
        (*tool.input_schema).clone(),
        crate::plugin::Hints::additive(),
        move |args, cx: ToolContext| {
            let owner = owner.clone();
            let name = upstream.clone();
            async move {
                let what = format!("calling `{name}`");
                let params = CallToolRequestParams::new(name).with_arguments(args);
                let request = ClientRequest::CallToolRequest(Request::new(params));
                match owner.relay(request, cx, &what).await? {
                    ServerResult::CallToolResult(result) => Ok(result),
                    _ => Err(owner.failure(&what, ServiceError::UnexpectedResponse)),
                }
            }
        },
    );
    // As the server said, or nothing: a tool without annotations is taken as MCP says
    // (may write, may destroy), never as read-only.
    def.annotations = tool.annotations.unwrap_or_default();
    def.title = tool.title;
    def.output_schema = tool.output_schema;
    def
}
