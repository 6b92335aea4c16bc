//! `ask`: one prompt to one provider (named, or picked by the routing rules), with the
//! plugins' tools. The tool-calling loop: the model's calls run through the plugin manager
//! (validation, timeout, isolation, as for a client), their results go back to the model, and
//! the loop ends at a final answer or at the step limit.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use rmcp::model::{CallToolResult, JsonObject};
use schemars::JsonSchema;
use serde::Serialize;
use tokio::time::Instant;

use super::Orchestrator;
use crate::{
    agents::{
        Agent, AgentError, Conversation, Finish, Message, ToolCall, ToolResult, ToolSpec, Usage,
    },
    plugin::{Face, TextSink, ToolContext},
};

#[derive(Debug, Clone, Default)]
pub struct AskRequest {
    pub prompt: String,
    /// A provider's name; `None` or `auto` lets the routing rules pick.
    pub provider: Option<String>,
    /// Let the model call the plugins' tools.
    pub use_tools: bool,
    pub system: Option<String>,
    /// The answer is to be one JSON object matching this schema ([`Conversation`]'s).
    pub response_schema: Option<serde_json::Value>,
}

/// What `ask` returns.
#[derive(Debug, Clone, Serialize, serde::Deserialize, JsonSchema)]
pub struct Answer {
    pub provider: String,
    pub model: String,
    /// The model's final answer.
    pub answer: String,
    /// Why this provider: named by the caller, or which routing rule chose it.
    pub routed_by: String,
    /// Providers tried first that failed, with the reason.
    pub fell_back_from: Vec<String>,
    /// The tool calls the model made, in order.
    pub tool_calls: Vec<ToolStep>,
    /// Set when the loop stopped before the model gave a final answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// What the answer cost in US dollars, by the price table; absent when the model has no
    /// price there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    pub latency_ms: u64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, JsonSchema)]
pub struct ToolStep {
    pub tool: String,
    pub arguments: serde_json::Value,
    pub is_error: bool,
}

impl Orchestrator {
    /// Answer `request`. An error names every provider tried and why it failed.
    pub async fn ask(&self, request: &AskRequest, cx: &ToolContext) -> Result<Answer, String> {
        let available = self.agents.available();
        let named = request
            .provider
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty() && *p != "auto");
        let (candidates, routed_by) = match named {
            Some(name) => {
                if self.agents.get(name).is_none() {
                    return Err(self.agents.why_unavailable(name));
                }
                (vec![name.to_owned()], "named by the caller".to_owned())
            }
            None if available.is_empty() => return Err(self.none_available()),
            None => self.settings.routing.pick(&request.prompt, &available),
        };
        let mut failures = Vec::new();
        for name in &candidates {
            let Some(agent) = self.agents.get(name) else {
                continue;
            };
            match self.run(agent, request, cx).await {
                Ok(mut answer) => {
                    answer.routed_by = routed_by;
                    answer.fell_back_from = failures;
                    return Ok(answer);
                }
                // Another provider may do better; a streamed answer already shown may not be
                // taken back, and the caller's own cancellation ends the search.
                Err((e, wrote)) => {
                    let retry_elsewhere = e.is_transient() && !wrote && !cx.is_cancelled();
                    failures.push(format!("{name}: {e}"));
                    if !retry_elsewhere || named.is_some() {
                        break;
                    }
                }
            }
        }
        Err(failures.join("; "))
    }

    /// The tool-calling loop with one provider. The error says whether text was already
    /// streamed to the caller.
    async fn run(
        &self,
        agent: &Arc<dyn Agent>,
        request: &AskRequest,
        cx: &ToolContext,
    ) -> Result<Answer, (AgentError, bool)> {
        let started = Instant::now();
        let deadline = self.agents.timeout(agent.provider());
        let tools = if request.use_tools && agent.supports_tools() {
            self.tool_specs(cx)
        } else {
            Vec::new()
        };
        let mut conversation = Conversation {
            system: request.system.clone(),
            messages: vec![Message::User(request.prompt.clone())],
            tools,
            max_tokens: self.settings.max_tokens,
            temperature: None,
            response_schema: request.response_schema.clone(),
        };
        let wrote = Arc::new(AtomicBool::new(false));
        let sink: Option<TextSink> = cx.text_sink().map(|sink| {
            let (sink, wrote) = (sink.clone(), wrote.clone());
            Arc::new(move |text: &str| {
                wrote.store(true, Ordering::Relaxed);
                sink(text)
            }) as TextSink
        });
        let mut usage = Usage::default();
        let mut steps = Vec::new();
        let mut model = agent.model().to_owned();
        for _ in 0..self.settings.max_steps.max(1) {
            let reply = self
                .turn(agent, &conversation, deadline, cx, sink.as_ref())
                .await
                .map_err(|e| (e, wrote.load(Ordering::Relaxed)))?;
            usage.add(reply.usage);
            model = reply.model.clone();
            let calls = reply.turn.tool_calls.clone();
            if calls.is_empty() || conversation.tools.is_empty() {
                let stopped = match &reply.finish {
                    Finish::Length => Some("the answer reached the token limit".to_owned()),
                    Finish::Other(reason) => Some(format!("the provider stopped: {reason}")),
                    _ => None,
                };
                return Ok(self.answer(
                    agent,
                    model,
                    reply.turn.text,
                    steps,
                    stopped,
                    usage,
                    started,
                ));
            }
            conversation.messages.push(Message::Assistant(reply.turn));
            let results =
                futures::future::join_all(calls.iter().map(|c| self.run_tool(c, cx))).await;
            for (call, result) in calls.iter().zip(&results) {
                steps.push(ToolStep {
                    tool: call.name.clone(),
                    arguments: call.arguments.clone(),
                    is_error: result.is_error,
                });
            }
            conversation.messages.push(Message::ToolResults(results));
        }
        let stopped = format!(
            "stopped after {} tool-calling steps without a final answer",
            self.settings.max_steps.max(1)
        );
        let last_text = String::new();
        Ok(self.answer(
            agent,
            model,
            last_text,
            steps,
            Some(stopped),
            usage,
            started,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn answer(
        &self,
        agent: &Arc<dyn Agent>,
        model: String,
        text: String,
        tool_calls: Vec<ToolStep>,
        stopped: Option<String>,
        usage: Usage,
        started: Instant,
    ) -> Answer {
        Answer {
            provider: agent.provider().to_owned(),
            model,
            answer: text,
            routed_by: String::new(),
            fell_back_from: Vec::new(),
            tool_calls,
            stopped,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cost_usd: self.agents.cost(agent.provider(), usage),
            latency_ms: started.elapsed().as_millis() as u64,
        }
    }

    /// The tools a model may call: the published ones its caller may call (but the agents'
    /// own), read-only ones only unless configured otherwise.
    fn offered_tools(&self, cx: &ToolContext) -> Vec<rmcp::model::Tool> {
        self.toolbox
            .tools(cx.caller())
            .into_iter()
            .filter(|t| {
                !self.settings.read_only_tools
                    || t.annotations
                        .as_ref()
                        .is_some_and(|a| a.read_only_hint == Some(true))
            })
            .collect()
    }

    /// The offered tools as the model sees them.
    fn tool_specs(&self, cx: &ToolContext) -> Vec<ToolSpec> {
        self.offered_tools(cx)
            .into_iter()
            .map(|t| ToolSpec {
                name: t.name.to_string(),
                description: t.description.as_deref().unwrap_or("").to_owned(),
                parameters: serde_json::Value::Object((*t.input_schema).clone()),
            })
            .collect()
    }

    /// Run one of the model's tool calls through the manager; its result as text for the
    /// model (errors included: the model may correct itself).
    async fn run_tool(&self, call: &ToolCall, cx: &ToolContext) -> ToolResult {
        let result = |content: String, is_error: bool| ToolResult {
            call_id: call.id.clone(),
            name: call.name.clone(),
            content,
            is_error,
        };
        let args: JsonObject = match &call.arguments {
            serde_json::Value::Object(args) => args.clone(),
            serde_json::Value::String(raw) => {
                return result(
                    format!("the arguments are not valid JSON: {raw}; send a JSON object"),
                    true,
                );
            }
            other => {
                return result(
                    format!("the arguments must be a JSON object, not {other}"),
                    true,
                );
            }
        };
        let offered = self.offered_tools(cx);
        if !offered.iter().any(|t| t.name == call.name) {
            let names: Vec<&str> = offered.iter().map(|t| t.name.as_ref()).collect();
            return result(
                format!(
                    "there is no tool `{}` you may call; the tools are: {}",
                    call.name,
                    names.join(", ")
                ),
                true,
            );
        }
        // The inner call has no client of its own: it must not send progress or requests on
        // the outer call's behalf. It is cancelled with the outer call.
        let inner = cx.inner(Face::Agent);
        let outcome = self.toolbox.call(&call.name, args, inner).await;
        tracing::info!(tool = %call.name, is_error = outcome.is_error == Some(true), "model's tool call");
        let text = self.tool_text(&outcome);
        result(text, outcome.is_error == Some(true))
    }

    fn tool_text(&self, outcome: &CallToolResult) -> String {
        let mut parts: Vec<String> = outcome
            .content
            .iter()
            .map(|block| match block.as_text() {
                Some(t) => t.text.clone(),
                None => serde_json::to_string(block).unwrap_or_default(),
            })
            .collect();
        if parts.is_empty()
            && let Some(structured) = &outcome.structured_content
        {
            parts.push(structured.to_string());
        }
        let text = parts.join("\n");
        let max = self.settings.max_tool_result_chars;
        match text.char_indices().nth(max) {
            Some((cut, _)) => format!(
                "{}\n[… cut: the result has {} characters, only the first {max} are shown]",
                &text[..cut],
                text.chars().count()
            ),
            None => text,
        }
    }
}
