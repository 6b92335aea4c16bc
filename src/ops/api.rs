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

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use rmcp::model::{CallToolResult, JsonObject};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    Ops,
    problem::{Body, PROBLEM_JSON, Problem},
    run::{once, run, unknown_tool},
};
use crate::plugin::{
    Caller, Face, Principal, ToolContext,
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
    pub env: Vec<EnvReport>,
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
            env: p.env,
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

/// The user the HTTP guard signed in with an OAuth access token, if any: the REST face
/// narrows its calls to what the token's scopes open, as the MCP face does.
#[derive(Debug, Clone, Default)]
pub struct SignedIn(pub Option<Principal>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for SignedIn {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<Principal>().cloned()))
    }
}

/// Who is calling: the dashboard says so (`X-Plugboard-Client: dashboard`), so its calls
/// show as its own face in events and metrics; anything else is a REST client. A signed-in
/// user reaches only what their token's scopes open.
pub fn caller(headers: &HeaderMap, signed_in: &SignedIn) -> Caller {
    let dashboard = headers
        .get("x-plugboard-client")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"dashboard"));
    let caller = if dashboard {
        Caller::new(Face::Dashboard).with_client("dashboard")
    } else {
        Caller::new(Face::Rest).with_client("rest")
    };
    caller.with_grants(signed_in.0.as_ref().and_then(|p| p.grants.clone()))
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
    headers: HeaderMap,
    signed_in: SignedIn,
) -> Json<Vec<ToolInfo>> {
    Json(tools(
        &ops.manager,
        &caller(&headers, &signed_in),
        query.plugin.as_deref(),
    ))
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
    headers: HeaderMap,
    signed_in: SignedIn,
) -> Result<Json<ToolInfo>, Problem> {
    tools(&ops.manager, &caller(&headers, &signed_in), None)
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
    signed_in: SignedIn,
    Body(args): Body<JsonObject>,
) -> Response {
    let caller = caller(&headers, &signed_in);
    run(ops, name, args, &headers, caller).await
}

/// The model providers: which are available (and if not, what to set), their models and
/// prices, and what each has done since start — requests, errors, tokens, latency, cost —
/// with the totals. The agents plugin's `plugboard://providers` resource.
#[utoipa::path(get, path = "/api/v1/providers", tag = "agents",
    responses(
        (status = 200, body = Object, description = "`{providers: [{name, format, model, available, reason?, price?: {input, output}, stats: {requests, errors, timeouts, input_tokens, output_tokens, latency_ms_total, latency_ms_max, cost_usd?}}], synthesizer, totals: {requests, input_tokens, output_tokens, cost_usd}}`; prices and costs in US dollars (per million tokens)"),
        (status = 409, body = Problem, content_type = PROBLEM_JSON, description = "The agents plugin is not running"),
    ))]
pub async fn providers(State(ops): State<Ops>) -> Result<Json<serde_json::Value>, Problem> {
    let uri = crate::plugins::agents::PROVIDERS_URI;
    let not_running = || {
        let status = ops
            .manager
            .statuses()
            .into_iter()
            .find(|p| p.name == "agents")
            .map_or_else(|| "not loaded".to_owned(), |p| p.status);
        Problem::new(
            StatusCode::CONFLICT,
            "plugin-not-ready",
            format!("the agents plugin is {status}"),
        )
        .with_plugin("agents")
    };
    let read = ops
        .manager
        .read_resource(uri, ToolContext::detached())
        .await
        .map_err(|_| not_running())?;
    read.contents
        .first()
        .and_then(|c| match c {
            rmcp::model::ResourceContents::TextResourceContents { text, .. } => {
                serde_json::from_str(text).ok()
            }
            _ => None,
        })
        .map(Json)
        .ok_or_else(not_running)
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
    signed_in: SignedIn,
    Body(args): Body<JsonObject>,
) -> Response {
    let caller = caller(&headers, &signed_in);
    run_agents(ops, "ask", args, &headers, caller).await
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
    signed_in: SignedIn,
    Body(args): Body<JsonObject>,
) -> Response {
    let caller = caller(&headers, &signed_in);
    run_agents(ops, "consensus", args, &headers, caller).await
}

/// Run the agents plugin's `local` tool, or say why there is none.
async fn run_agents(
    ops: Ops,
    local: &str,
    args: JsonObject,
    headers: &HeaderMap,
    caller: Caller,
) -> Response {
    match agents_tool(&ops.manager, local) {
        Ok(tool) => run(ops, tool, args, headers, caller).await,
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
    headers: HeaderMap,
    signed_in: SignedIn,
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
            let caller = caller(&headers, &signed_in);
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
                    Ok((tool, args)) => {
                        once(&ops, &tool, args, ToolContext::detached(), caller).await
                    }
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

pub(super) fn call_result(result: CallToolResult) -> CallResult {
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
