//! Running one call for the REST API: in a server call slot, through the manager's pipeline,
//! answered as JSON or streamed as server-sent events; the pipeline's outcome turned into
//! the result or a problem document.

// A problem is built once per failed request and turned into a response at once.
#![allow(clippy::result_large_err)]

use std::{collections::BTreeMap, convert::Infallible, sync::Arc};

use axum::{
    Json,
    http::{HeaderMap, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use futures::StreamExt;
use rmcp::model::{CallToolResult, JsonObject};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    Ops,
    api::{CallResult, call_result},
    problem::Problem,
};
use crate::plugin::{
    Caller, ErrorKind, Outcome, ToolContext,
    manager::{Manager, Status},
};

/// A call as its own request: answered as JSON, or streamed when the client asks for events.
pub(super) async fn run(
    ops: Ops,
    tool: String,
    args: JsonObject,
    headers: &HeaderMap,
    caller: Caller,
) -> Response {
    if wants_events(headers) {
        return streamed(ops, tool, args, caller).into_response();
    }
    match once(&ops, &tool, args, ToolContext::detached(), caller).await {
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
pub(super) async fn once(
    ops: &Ops,
    tool: &str,
    args: JsonObject,
    cx: ToolContext,
    caller: Caller,
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
        .answer(tool, Some(args), cx.with_caller(caller))
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
pub(super) fn unknown_tool(manager: &Manager, tool: &str, detail: String) -> Problem {
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
    caller: Caller,
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
            answered = once(&ops, &tool, args, cx, caller) => answered,
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
