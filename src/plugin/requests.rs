//! Resource reads, prompts and completions: routed to the plugin that published them, run in
//! their own task with the call timeout, and every failure answered with a JSON-RPC error
//! that says what to fix (these requests have no `isError` result).

use std::{collections::BTreeMap, future::Future, sync::Arc};

use rmcp::{
    ErrorData,
    model::{
        CompleteRequestParams, CompleteResult, CompletionInfo, GetPromptRequestParams,
        GetPromptResult, JsonObject, ReadResourceResult, Reference,
    },
};

use super::{
    Manager, ToolContext, ToolError,
    isolate::panic_message,
    resource::{Completer, Completion},
};

impl Manager {
    /// `resources/read`: a resource with exactly this URI, else the first template it fits.
    pub async fn read_resource(
        &self,
        uri: &str,
        cx: ToolContext,
    ) -> Result<ReadResourceResult, ErrorData> {
        let registry = self.registry();
        let Some((plugin, reader, vars)) = registry.resolve(uri) else {
            return Err(ErrorData::resource_not_found(
                format!(
                    "unknown resource `{}`; resources/list and resources/templates/list show \
                     the {} resources and {} templates available",
                    super::clip_name(uri),
                    registry.resources.len(),
                    registry.templates.len()
                ),
                Some(serde_json::json!({ "uri": super::clip_name(uri) })),
            ));
        };
        let what = format!("reading `{uri}`");
        let contents = self
            .run(
                &plugin,
                &what,
                &cx,
                reader(uri.to_owned(), vars, cx.clone()),
            )
            .await?;
        if contents.is_empty() {
            return Err(ErrorData::internal_error(
                format!("the `{plugin}` plugin returned nothing for `{uri}`"),
                None,
            ));
        }
        Ok(ReadResourceResult::new(contents))
    }

    /// `prompts/get`: checks the required arguments, then asks the plugin.
    pub async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        cx: ToolContext,
    ) -> Result<GetPromptResult, ErrorData> {
        let registry = self.registry();
        let name = request.name.as_str();
        let Some(entry) = registry.prompt_entries.get(name) else {
            let known: Vec<&str> = registry.prompts.iter().map(|p| p.name.as_str()).collect();
            return Err(ErrorData::invalid_params(
                format!(
                    "unknown prompt `{}`; available: {}",
                    super::clip_name(name),
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
                None,
            ));
        };
        let args = string_arguments(name, request.arguments)?;
        let declared = entry.prompt.arguments.as_deref().unwrap_or_default();
        let missing: Vec<&str> = declared
            .iter()
            .filter(|a| a.required == Some(true) && !args.contains_key(&a.name))
            .map(|a| a.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(ErrorData::invalid_params(
                format!(
                    "prompt `{name}` needs the argument(s) {}",
                    missing.join(", ")
                ),
                None,
            ));
        }
        if let Some(unknown) = args
            .keys()
            .find(|k| !declared.iter().any(|a| &a.name == *k))
        {
            let names: Vec<&str> = declared.iter().map(|a| a.name.as_str()).collect();
            return Err(ErrorData::invalid_params(
                format!(
                    "prompt `{name}` has no argument `{unknown}` (it takes: {})",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
                None,
            ));
        }
        let what = format!("prompt `{name}`");
        self.run(&entry.plugin, &what, &cx, (entry.handler)(args, cx.clone()))
            .await
    }

    /// `completion/complete` for a prompt argument or a template variable. Things without
    /// completions answer with no values, as the spec asks.
    pub async fn complete(
        &self,
        request: CompleteRequestParams,
        cx: ToolContext,
    ) -> Result<CompleteResult, ErrorData> {
        let registry = self.registry();
        let argument = request.argument.name.clone();
        let (completer, plugin): (Option<Completer>, Arc<str>) = match &request.r#ref {
            Reference::Prompt(p) => {
                let entry = registry.prompt_entries.get(&p.name).ok_or_else(|| {
                    ErrorData::invalid_params(
                        format!("unknown prompt `{}`", super::clip_name(&p.name)),
                        None,
                    )
                })?;
                let declared = entry.prompt.arguments.as_deref().unwrap_or_default();
                if !declared.iter().any(|a| a.name == argument) {
                    return Err(ErrorData::invalid_params(
                        format!(
                            "prompt `{}` has no argument `{}`",
                            p.name,
                            super::clip_name(&argument)
                        ),
                        None,
                    ));
                }
                (entry.completer.clone(), entry.plugin.clone())
            }
            Reference::Resource(r) => {
                let entry = registry
                    .templates
                    .iter()
                    .find(|t| t.template.uri_template == r.uri)
                    .ok_or_else(|| {
                        ErrorData::invalid_params(
                            format!(
                                "unknown resource template `{}`; see resources/templates/list",
                                super::clip_name(&r.uri)
                            ),
                            None,
                        )
                    })?;
                if !entry.pattern.variables().any(|v| v == argument) {
                    return Err(ErrorData::invalid_params(
                        format!("template `{}` has no variable `{argument}`", r.uri),
                        None,
                    ));
                }
                (entry.completer.clone(), entry.plugin.clone())
            }
            _ => return Ok(CompleteResult::default()),
        };
        let Some(completer) = completer else {
            return Ok(CompleteResult::default());
        };
        let completion = Completion {
            argument,
            value: request.argument.value,
            context: request
                .context
                .and_then(|c| c.arguments)
                .unwrap_or_default()
                .into_iter()
                .collect(),
        };
        let values = self
            .run(&plugin, "completion", &cx, async move {
                Ok(completer(completion).await)
            })
            .await?;
        let total = values.len();
        let mut values = values;
        values.truncate(CompletionInfo::MAX_VALUES);
        let has_more = total > values.len();
        let info = CompletionInfo::with_pagination(
            values,
            Some(u32::try_from(total).unwrap_or(u32::MAX)),
            has_more,
        )
        .map_err(|e| ErrorData::internal_error(e, None))?;
        Ok(CompleteResult::new(info))
    }

    /// Run plugin code in its own task, with the call timeout and the request's cancellation.
    async fn run<T: Send + 'static>(
        &self,
        plugin: &str,
        what: &str,
        cx: &ToolContext,
        work: impl Future<Output = Result<T, ToolError>> + Send + 'static,
    ) -> Result<T, ErrorData> {
        let task = tokio::spawn(work);
        let abort = task.abort_handle();
        let timeout = self.config().call_timeout;
        tokio::select! {
            joined = tokio::time::timeout(timeout, task) => match joined {
                Ok(Ok(Ok(value))) => Ok(value),
                Ok(Ok(Err(e))) => Err(match e {
                    ToolError::NotFound(m) => ErrorData::resource_not_found(m, None),
                    ToolError::InvalidArguments(m) => ErrorData::invalid_params(m, None),
                    other => ErrorData::internal_error(format!("{what}: {other}"), None),
                }),
                Ok(Err(join)) => {
                    let message = panic_message(join);
                    tracing::error!(plugin = %plugin, what = %what, panic = %message, "plugin panicked");
                    Err(ErrorData::internal_error(
                        format!("the `{plugin}` plugin failed while {what} ({message}); nothing else was affected"),
                        None,
                    ))
                }
                Err(_) => {
                    cx.cancellation().cancel();
                    abort.abort();
                    Err(ErrorData::internal_error(
                        format!("{what} did not finish within {} s", timeout.as_secs_f64()),
                        None,
                    ))
                }
            },
            _ = cx.cancellation().cancelled() => {
                abort.abort();
                Err(ErrorData::internal_error(format!("{what} was cancelled"), None))
            }
        }
    }
}

/// Prompt arguments are strings on the wire; say which one is not.
fn string_arguments(
    prompt: &str,
    args: Option<JsonObject>,
) -> Result<BTreeMap<String, String>, ErrorData> {
    args.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            other => Err(ErrorData::invalid_params(
                format!("argument `{k}` of prompt `{prompt}` must be a string, not {other}"),
                None,
            )),
        })
        .collect()
}
