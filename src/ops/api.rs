//! The REST API's handlers: plugins, tools, calls, `ask`, `consensus`, batches, reloads.
//!
//! Every call goes through the manager's call pipeline, as an MCP `tools/call` does (the same
//! validation, timeout, isolation, filters and read-only mode); this face only turns the
//! outcome into HTTP. A tool's own error (an upstream 4xx it explains) is the tool's answer:
//! 200 with `isError: true`, as MCP clients see it. A call the pipeline refused or stopped is
//! a problem document with its status: 400 bad arguments, 404 unknown tool, 409 plugin not
//! ready, 429 too many calls, 500 a panic in the plugin, 504 timeout.

// A problem is built once per failed request and turned into a response at once: the size of
// the `Err` it travels in costs nothing worth a box.
#![allow(clippy::result_large_err)]

use std::{collections::BTreeMap, convert::Infallible, sync::Arc};

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use futures::StreamExt;
use rmcp::model::{CallToolResult, JsonObject};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};

use super::{
    Ops,
    problem::{Body, PROBLEM_JSON, Problem},
};
use crate::plugin::{
    Caller, ErrorKind, Face, Outcome, ToolContext,
    manager::{EnvReport, Manager, PluginStatus, Status},
};

/// Most items in one `POST /api/v1/batch`.
pub const MAX_BATCH: usize = 100;
/// Items of one batch running at once.
const BATCH_CONCURRENCY: usize = 16;

/// A plugin as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginInfo {
    pub name: String,
    /// The status in words: `ready`, `unconfigured (set AIRTABLE_API_KEY)`, `failed (…)`.
    pub status: String,
    /// The status alone: `ready`, `disabled`, `unconfigured`, `failed`, `down`, `degraded`.
    pub state: &'static str,
    /// Why it is not simply ready, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub description: String,
    /// The manifest's kind: `builtin` or `mcp`.
    pub kind: String,
    /// What it runs: plugboard's version for a built-in, an MCP server's name and version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// How long its last start took, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_ms: Option<u64>,
    /// Its published tools.
    pub tools: Vec<String>,
    /// What of its offer was not published, and why.
    pub refused: Vec<String>,
    pub resources: Vec<String>,
    pub prompts: Vec<String>,
    /// The variables its manifest declares (whether set; never a value).
    pub env: Vec<EnvInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EnvInfo {
    pub name: String,
    pub set: bool,
    pub required: bool,
    pub secret: bool,
    pub description: String,
}

impl From<EnvReport> for EnvInfo {
    fn from(e: EnvReport) -> Self {
        Self {
            name: e.name,
            set: e.set,
            required: e.required,
            secret: e.secret,
            description: e.description,
        }
    }
}

impl From<PluginStatus> for PluginInfo {
    fn from(p: PluginStatus) -> Self {
        let (state, reason) = match &p.state {
            Status::Ready => ("ready", None),
            Status::Disabled => ("disabled", None),
            Status::Unconfigured(vars) => {
                ("unconfigured", Some(format!("set {}", vars.join(", "))))
            }
            Status::Uninstalled(cmds) => {
                ("unconfigured", Some(format!("install {}", cmds.join(", "))))
            }
            Status::Failed(why) => ("failed", Some(why.clone())),
            Status::Down(why) => ("down", Some(why.clone())),
            Status::Degraded(condition) => ("degraded", Some(condition.clone())),
        };
        Self {
            name: p.name,
            status: p.status,
            state,
            reason,
            description: p.description,
            kind: p.kind,
            version: p.version,
            load_ms: p.load_ms,
            tools: p.tools,
            refused: p.refused,
            resources: p.resources,
            prompts: p.prompts,
            env: p.env.into_iter().map(EnvInfo::from).collect(),
        }
    }
}

/// Every plugin, with its status.
#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins",
    responses((status = 200, body = Vec<PluginInfo>)))]
pub async fn list_plugins(State(ops): State<Ops>) -> Json<Vec<PluginInfo>> {
    Json(
        ops.manager
            .statuses()
            .into_iter()
            .map(PluginInfo::from)
            .collect(),
    )
}

/// One plugin, with its status.
#[utoipa::path(get, path = "/api/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    responses(
        (status = 200, body = PluginInfo),
        (status = 404, body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn get_plugin(
    State(ops): State<Ops>,
    Path(name): Path<String>,
) -> Result<Json<PluginInfo>, Problem> {
    plugin(&ops.manager, &name).map(Json)
}

fn plugin(manager: &Manager, name: &str) -> Result<PluginInfo, Problem> {
    manager
        .statuses()
        .into_iter()
        .find(|p| p.name == name)
        .map(PluginInfo::from)
        .ok_or_else(|| unknown_plugin(manager, name))
}

fn unknown_plugin(manager: &Manager, name: &str) -> Problem {
    let names: Vec<String> = manager.statuses().into_iter().map(|p| p.name).collect();
    Problem::not_found(
        "unknown-plugin",
        format!(
            "no plugin `{}`; the plugins are: {}",
            crate::plugin::clip_name(name),
            names.join(", ")
        ),
    )
}

/// Stop and start a plugin again (its manifest and variables re-read); answers with its
/// status after the start. Clients get `list_changed` if its tools changed.
#[utoipa::path(post, path = "/api/v1/plugins/{name}/reload", tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    responses(
        (status = 200, body = PluginInfo, description = "Restarted; its status now"),
        (status = 404, body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn reload_plugin(
    State(ops): State<Ops>,
    Path(name): Path<String>,
) -> Result<Json<PluginInfo>, Problem> {
    if !ops.manager.restart(&name).await {
        return Err(unknown_plugin(&ops.manager, &name));
    }
    plugin(&ops.manager, &name).map(Json)
}

/// A published tool.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolInfo {
    pub name: String,
    /// The plugin that serves it.
    pub plugin: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub description: String,
    /// What `POST /api/v1/tools/{name}/call` takes as its body (a JSON Schema).
    #[schema(value_type = Object)]
    pub input_schema: serde_json::Value,
    /// The shape of the result's `structuredContent`, when the tool declares one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output_schema: Option<serde_json::Value>,
    /// MCP's hints: `readOnlyHint`, `destructiveHint`, `idempotentHint`, `openWorldHint`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub annotations: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ToolQuery {
    /// Only the tools of this plugin.
    pub plugin: Option<String>,
}

pub fn caller() -> Caller {
    Caller::new(Face::Rest).with_client("rest")
}

/// The tools this caller may call, as `tools/list` shows them over MCP (after the server's
/// filters: `--read-only`, `--tools`, toolsets).
pub fn tools(manager: &Manager, caller: &Caller, only: Option<&str>) -> Vec<ToolInfo> {
    let registry = manager.registry();
    registry
        .tools
        .iter()
        .filter_map(|tool| {
            let plugin = registry.plugin_of(&tool.name)?;
            if only.is_some_and(|p| p != plugin) {
                return None;
            }
            let entry = registry.entries.get(tool.name.as_ref())?;
            if !caller.allows(&entry.plugin, tool) {
                return None;
            }
            Some(ToolInfo {
                name: tool.name.to_string(),
                plugin: plugin.to_owned(),
                title: tool.title.clone(),
                description: tool.description.as_deref().unwrap_or_default().to_owned(),
                input_schema: serde_json::Value::Object((*tool.input_schema).clone()),
                output_schema: tool
                    .output_schema
                    .as_ref()
                    .map(|s| serde_json::Value::Object((**s).clone())),
                annotations: tool
                    .annotations
                    .as_ref()
                    .and_then(|a| serde_json::to_value(a).ok()),
            })
        })
        .collect()
}

/// Every tool this caller may call, with its input schema.
#[utoipa::path(get, path = "/api/v1/tools", tag = "tools", params(ToolQuery),
    responses((status = 200, body = Vec<ToolInfo>)))]
pub async fn list_tools(
    State(ops): State<Ops>,
    Query(query): Query<ToolQuery>,
) -> Json<Vec<ToolInfo>> {
    Json(tools(&ops.manager, &caller(), query.plugin.as_deref()))
}

/// One tool, with its input schema.
#[utoipa::path(get, path = "/api/v1/tools/{name}", tag = "tools",
    params(("name" = String, Path, description = "The tool's full name, e.g. `files_read`")),
    responses(
        (status = 200, body = ToolInfo),
        (status = 404, body = Problem, content_type = PROBLEM_JSON),
        (status = 409, body = Problem, content_type = PROBLEM_JSON, description = "Its plugin is not ready"),
    ))]
pub async fn get_tool(
    State(ops): State<Ops>,
    Path(name): Path<String>,
) -> Result<Json<ToolInfo>, Problem> {
    tools(&ops.manager, &caller(), None)
        .into_iter()
        .find(|t| t.name == name)
        .map(Json)
        .ok_or_else(|| {
            unknown_tool(
                &ops.manager,
                &name,
                format!(
                    "unknown tool `{}`; GET /api/v1/tools lists them",
                    crate::plugin::clip_name(&name)
                ),
            )
        })
}

/// What a call answers: the tool's result as an MCP client gets it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallResult {
    /// Text, images, audio, resource links and embedded resources, as MCP content blocks.
    #[schema(value_type = Vec<Object>)]
    pub content: Vec<serde_json::Value>,
    /// The typed result, for tools that declare an output schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub structured_content: Option<serde_json::Value>,
    /// `true` when the tool answered with an error (it says what went wrong in `content`).
    pub is_error: bool,
}

/// Call a tool. The body is its arguments (a JSON object fitting the tool's input schema; see
/// `GET /api/v1/tools/{name}`). With `Accept: text/event-stream` the answer is a stream of
/// `progress` and `text` events ending with one `result` (or `problem`) event.
#[utoipa::path(post, path = "/api/v1/tools/{name}/call", tag = "tools",
    params(("name" = String, Path, description = "The tool's full name, e.g. `files_read`")),
    request_body(content = Object, description = "The tool's arguments"),
    responses(
        (status = 200, body = CallResult, description = "The tool's answer (`isError: true` when the tool reports an error)"),
        (status = 400, body = Problem, content_type = PROBLEM_JSON, description = "The arguments do not fit the tool's schema, or the body is not a JSON object"),
        (status = 404, body = Problem, content_type = PROBLEM_JSON, description = "No such tool"),
        (status = 409, body = Problem, content_type = PROBLEM_JSON, description = "The tool's plugin is not ready"),
        (status = 413, body = Problem, content_type = PROBLEM_JSON, description = "The body is over the size limit"),
        (status = 415, body = Problem, content_type = PROBLEM_JSON, description = "The body is not sent as JSON"),
        (status = 429, body = Problem, content_type = PROBLEM_JSON, description = "Too many calls in flight"),
        (status = 500, body = Problem, content_type = PROBLEM_JSON, description = "The plugin failed unexpectedly (a panic); the server goes on"),
        (status = 504, body = Problem, content_type = PROBLEM_JSON, description = "The call ran out of time and was stopped"),
    ))]
pub async fn call_tool(
    State(ops): State<Ops>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Body(args): Body<JsonObject>,
) -> Response {
    run(ops, name, args, &headers).await
}

/// Ask one provider (or the best one for the prompt): the body is the arguments of the
/// agents plugin's `ask` tool. Streams with `Accept: text/event-stream`, as tool calls do.
#[utoipa::path(post, path = "/api/v1/ask", tag = "agents",
    request_body(content = Object, description = "The `ask` tool's arguments: `prompt`, and optionally `provider`, `model`, …"),
    responses(
        (status = 200, body = CallResult),
        (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 409, body = Problem, content_type = PROBLEM_JSON, description = "No provider is configured"),
        (status = 413, body = Problem, content_type = PROBLEM_JSON),
        (status = 415, body = Problem, content_type = PROBLEM_JSON),
        (status = 429, body = Problem, content_type = PROBLEM_JSON),
        (status = 500, body = Problem, content_type = PROBLEM_JSON),
        (status = 504, body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn ask(
    State(ops): State<Ops>,
    headers: HeaderMap,
    Body(args): Body<JsonObject>,
) -> Response {
    run_agents(ops, "ask", args, &headers).await
}

/// Ask several providers at once and synthesize their answers: the body is the arguments of
/// the agents plugin's `consensus` tool. With `Accept: text/event-stream`, each provider's
/// answer arrives as a `text` event as it lands.
#[utoipa::path(post, path = "/api/v1/consensus", tag = "agents",
    request_body(content = Object, description = "The `consensus` tool's arguments: `prompt`, and optionally `providers`, …"),
    responses(
        (status = 200, body = CallResult),
        (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 409, body = Problem, content_type = PROBLEM_JSON, description = "No provider is configured"),
        (status = 413, body = Problem, content_type = PROBLEM_JSON),
        (status = 415, body = Problem, content_type = PROBLEM_JSON),
        (status = 429, body = Problem, content_type = PROBLEM_JSON),
        (status = 500, body = Problem, content_type = PROBLEM_JSON),
        (status = 504, body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn consensus(
    State(ops): State<Ops>,
    headers: HeaderMap,
    Body(args): Body<JsonObject>,
) -> Response {
    run_agents(ops, "consensus", args, &headers).await
}

/// Run the agents plugin's `local` tool, or say why there is none.
async fn run_agents(ops: Ops, local: &str, args: JsonObject, headers: &HeaderMap) -> Response {
    match agents_tool(&ops.manager, local) {
        Ok(tool) => run(ops, tool, args, headers).await,
        Err(problem) => problem.into_response(),
    }
}

/// The published name of the agents plugin's `local` tool, or why there is none.
pub fn agents_tool(manager: &Manager, local: &str) -> Result<String, Problem> {
    manager.find_tool("agents", local).ok_or_else(|| {
        let why = manager
            .statuses()
            .into_iter()
            .find(|p| p.name == "agents")
            .map(|p| format!("the agents plugin is {}", p.status))
            .unwrap_or_else(|| "there is no agents plugin".into());
        Problem::new(
            StatusCode::CONFLICT,
            "plugin-not-ready",
            format!(
                "`{local}` needs a model provider and none is ready: {why}; set a provider's \
                 key (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, DEEPSEEK_API_KEY)"
            ),
        )
        .with_plugin("agents")
    })
}

/// One item of a batch: a tool call, an `ask` or a `consensus`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum BatchItem {
    /// Call `tool` with `arguments`.
    Tool {
        tool: String,
        #[serde(default)]
        #[schema(value_type = Option<Object>)]
        arguments: Option<JsonObject>,
    },
    /// The `ask` tool's arguments.
    Ask {
        #[schema(value_type = Object)]
        ask: JsonObject,
    },
    /// The `consensus` tool's arguments.
    Consensus {
        #[schema(value_type = Object)]
        consensus: JsonObject,
    },
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct BatchRequest {
    /// At most 100 items; they run concurrently, the answers come back in this order.
    pub calls: Vec<BatchItem>,
}

/// One item's answer: its status code and either the result or the problem.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchAnswer {
    /// What the same call alone would have answered: 200, 400, 404, 409, 429, 500 or 504.
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<CallResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// One answer per item, in the order of the request.
    pub results: Vec<BatchAnswer>,
}

/// Several calls, asks or consensus requests at once: run concurrently, answered in order.
/// One item's failure is its own answer; the batch itself is 200.
#[utoipa::path(post, path = "/api/v1/batch", tag = "tools",
    request_body = BatchRequest,
    responses(
        (status = 200, body = BatchResponse),
        (status = 400, body = Problem, content_type = PROBLEM_JSON, description = "Not a batch, or over 100 items"),
        (status = 413, body = Problem, content_type = PROBLEM_JSON),
        (status = 415, body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn batch(
    State(ops): State<Ops>,
    Body(batch): Body<BatchRequest>,
) -> Result<Json<BatchResponse>, Problem> {
    if batch.calls.len() > MAX_BATCH {
        return Err(Problem::bad_request(
            "invalid-body",
            format!(
                "{} calls in one batch; send at most {MAX_BATCH}",
                batch.calls.len()
            ),
        ));
    }
    let results = futures::stream::iter(batch.calls)
        .map(|item| {
            let ops = ops.clone();
            async move {
                let named = match item {
                    BatchItem::Tool { tool, arguments } => {
                        Ok((tool, arguments.unwrap_or_default()))
                    }
                    BatchItem::Ask { ask } => agents_tool(&ops.manager, "ask").map(|t| (t, ask)),
                    BatchItem::Consensus { consensus } => {
                        agents_tool(&ops.manager, "consensus").map(|t| (t, consensus))
                    }
                };
                let answered = match named {
                    Ok((tool, args)) => once(&ops, &tool, args, ToolContext::detached()).await,
                    Err(problem) => Err(problem),
                };
                match answered {
                    Ok(result) => BatchAnswer {
                        status: 200,
                        result: Some(call_result(result)),
                        problem: None,
                    },
                    Err(problem) => BatchAnswer {
                        status: problem.status,
                        result: None,
                        problem: Some(problem),
                    },
                }
            }
        })
        .buffered(BATCH_CONCURRENCY)
        .collect()
        .await;
    Ok(Json(BatchResponse { results }))
}

fn call_result(result: CallToolResult) -> CallResult {
    CallResult {
        content: result
            .content
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect(),
        structured_content: result.structured_content,
        is_error: result.is_error == Some(true),
    }
}

/// A call as its own request: answered as JSON, or streamed when the client asks for events.
async fn run(ops: Ops, tool: String, args: JsonObject, headers: &HeaderMap) -> Response {
    if wants_events(headers) {
        return streamed(ops, tool, args).into_response();
    }
    match once(&ops, &tool, args, ToolContext::detached()).await {
        Ok(result) => Json(call_result(result)).into_response(),
        Err(problem) => problem.into_response(),
    }
}

fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

/// Run one call through the pipeline in a server call slot, and turn how it ended into the
/// result or a problem.
async fn once(
    ops: &Ops,
    tool: &str,
    args: JsonObject,
    cx: ToolContext,
) -> Result<CallToolResult, Problem> {
    let Ok(_slot) = ops.manager.call_slots().try_acquire() else {
        let limit = ops.manager.config().max_calls;
        return Err(Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-calls",
            format!(
                "too many tool calls in flight on this server (the limit is {limit}): wait for \
                 one to finish and call again, or raise --max-calls (PLUGBOARD_MAX_CALLS)"
            ),
        )
        .with_tool(tool)
        .retry_after(1));
    };
    let answer = ops
        .manager
        .answer(tool, Some(args), cx.with_caller(caller()))
        .await;
    judge(&ops.manager, tool, answer.result, answer.outcome)
}

/// The result for the caller, or the problem the pipeline had with the call.
fn judge(
    manager: &Manager,
    tool: &str,
    result: CallToolResult,
    outcome: Outcome,
) -> Result<CallToolResult, Problem> {
    let Outcome::Failed(kind) = outcome else {
        return Ok(result);
    };
    let detail = result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default();
    let problem = match kind {
        ErrorKind::UnknownTool => return Err(unknown_tool(manager, tool, detail)),
        ErrorKind::InvalidArguments => Problem::bad_request("invalid-arguments", detail),
        ErrorKind::Unavailable => {
            Problem::new(StatusCode::CONFLICT, "plugin-not-ready", detail).retry_after(5)
        }
        ErrorKind::Timeout => Problem::new(StatusCode::GATEWAY_TIMEOUT, "timeout", detail),
        ErrorKind::Panic => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "panic", detail),
        // The tool failed and said why (`isError: true`), or the caller went away.
        _ => return Ok(result),
    };
    Err(problem.with_tool(tool))
}

/// 404 for a name no plugin serves; 409 when the plugin it belongs to is not ready.
fn unknown_tool(manager: &Manager, tool: &str, detail: String) -> Problem {
    let owner = manager.statuses().into_iter().find(|p| {
        !p.prefix.is_empty()
            && tool
                .strip_prefix(p.prefix.as_str())
                .is_some_and(|rest| rest.starts_with('_'))
    });
    match owner {
        Some(p) if p.state != Status::Ready && p.state != Status::Disabled => Problem::new(
            StatusCode::CONFLICT,
            "plugin-not-ready",
            format!(
                "`{}` belongs to plugin `{}`, which is {}",
                crate::plugin::clip_name(tool),
                p.name,
                p.status
            ),
        )
        .with_plugin(&p.name)
        .with_tool(tool),
        _ => Problem::not_found("unknown-tool", detail).with_tool(tool),
    }
}

/// What a streamed call sends.
enum Streamed {
    Progress(serde_json::Value),
    Text(String),
    Result(CallResult),
    Problem(Problem),
}

/// The call as server-sent events: `progress` ({progress, total, message}) and `text` (a
/// piece of the answer) as they happen, then `result` or `problem`. The call stops when the
/// client goes away.
fn streamed(
    ops: Ops,
    tool: String,
    args: JsonObject,
) -> Sse<impl futures::Stream<Item = Result<SseEvent, Infallible>>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let ct = CancellationToken::new();
    let progress_tx = tx.clone();
    let text_tx = tx.clone();
    let cx = ToolContext::detached()
        .with_progress_sink(Arc::new(move |progress, total, message: &str| {
            let mut event = BTreeMap::new();
            event.insert("progress", serde_json::json!(progress));
            if let Some(total) = total {
                event.insert("total", serde_json::json!(total));
            }
            if !message.is_empty() {
                event.insert("message", serde_json::json!(message));
            }
            let _ = progress_tx.send(Streamed::Progress(serde_json::json!(event)));
        }))
        .with_text_sink(Arc::new(move |text: &str| {
            let _ = text_tx.send(Streamed::Text(text.to_owned()));
        }));
    let stop = ct.clone();
    tokio::spawn(async move {
        let answered = tokio::select! {
            answered = once(&ops, &tool, args, cx) => answered,
            () = stop.cancelled() => return,
        };
        let _ = tx.send(match answered {
            Ok(result) => Streamed::Result(call_result(result)),
            Err(problem) => Streamed::Problem(problem),
        });
    });
    // Dropped with the response body: the client went away, the call stops.
    let guard = ct.drop_guard();
    let events = tokio_stream::wrappers::UnboundedReceiverStream::new(rx).map(move |item| {
        let _keep = &guard;
        let event = match item {
            Streamed::Progress(p) => SseEvent::default().event("progress").json_data(p),
            Streamed::Text(t) => SseEvent::default()
                .event("text")
                .json_data(serde_json::json!({ "text": t })),
            Streamed::Result(r) => SseEvent::default().event("result").json_data(r),
            Streamed::Problem(p) => SseEvent::default().event("problem").json_data(p),
        };
        Ok(event.unwrap_or_else(|_| SseEvent::default().comment("unencodable event")))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
