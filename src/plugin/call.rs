//! Running one tool call: schema check, its own task (a panic stays inside), timeout,
//! cancellation, and an error result that says what to fix for every failure.

use std::time::Instant;

use rmcp::model::{CallToolResult, ContentBlock, JsonObject};

use super::{Manager, Registry, ToolContext, manager::panic_message};

impl Manager {
    /// Run one tool call. Always answers with a result: failures are `isError: true` results
    /// whose text says what to fix.
    pub async fn call(
        &self,
        name: &str,
        args: Option<JsonObject>,
        cx: ToolContext,
    ) -> CallToolResult {
        let registry = self.registry();
        let Some(entry) = registry.entries.get(name) else {
            tracing::info!(tool = %name, ok = false, "tool call to an unknown tool");
            return error_result(unknown_tool(name, &registry));
        };
        let args = args.unwrap_or_default();
        let instance = serde_json::Value::Object(args);
        let problems: Vec<String> = entry
            .validator
            .iter_errors(&instance)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if !problems.is_empty() {
            tracing::info!(plugin = %entry.plugin, tool = %name, ok = false, "tool call with invalid arguments");
            return error_result(format!(
                "invalid arguments for `{name}`: {}. Call tools/list for the input schema.",
                problems.join("; ")
            ));
        }
        let serde_json::Value::Object(args) = instance else {
            unreachable!("built from an object")
        };

        let started = Instant::now();
        let plugin = entry.plugin.clone();
        let ct = cx.cancellation().clone();
        let task = tokio::spawn((entry.handler)(args, cx.for_plugin(plugin.clone())));
        let abort = task.abort_handle();
        let timeout = self.config().call_timeout;
        let outcome = tokio::select! {
            joined = tokio::time::timeout(timeout, task) => match joined {
                Ok(Ok(Ok(result))) => Ok(result),
                Ok(Ok(Err(e))) => Err(e.to_string()),
                Ok(Err(join)) if join.is_panic() => {
                    let message = panic_message(join);
                    tracing::error!(plugin = %plugin, tool = %name, panic = %message, "tool handler panicked");
                    Err(format!("the `{plugin}` plugin failed inside `{name}` ({message}); nothing else was affected, and the call can be retried or reported"))
                }
                Ok(Err(_)) => Err(format!("`{name}` was stopped before it finished")),
                Err(_) => {
                    ct.cancel();
                    abort.abort();
                    Err(format!("`{name}` did not finish within {} s and was stopped; try a smaller request", timeout.as_secs_f64()))
                }
            },
            _ = ct.cancelled() => {
                abort.abort();
                Err(format!("`{name}` was cancelled by the client"))
            }
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match outcome {
            Ok(result) => {
                tracing::info!(plugin = %plugin, tool = %name, ms, ok = result.is_error != Some(true), "tool call");
                result
            }
            Err(message) => {
                tracing::info!(plugin = %plugin, tool = %name, ms, ok = false, error = %message, "tool call");
                error_result(message)
            }
        }
    }
}

fn error_result(message: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

fn unknown_tool(name: &str, registry: &Registry) -> String {
    let mut close: Vec<&str> = registry
        .tools
        .iter()
        .map(|t| t.name.as_ref())
        .filter(|t| {
            let stem = name.split('_').next().unwrap_or(name);
            t.contains(name) || name.contains(*t) || t.starts_with(stem)
        })
        .take(5)
        .collect();
    close.sort_unstable();
    if close.is_empty() {
        format!(
            "unknown tool `{name}`; call tools/list to see the {} available tools",
            registry.len()
        )
    } else {
        format!("unknown tool `{name}`; did you mean {}?", close.join(", "))
    }
}
