//! The one call pipeline every face uses (MCP on each transport, the CLI, the agents' tool
//! loop, and next REST and the dashboard): filters (server-wide, narrowed per caller),
//! schema check, its own task (a panic stays inside), timeout, cancellation, an error result
//! that says what to fix for every failure, and observers told of every call's start and end.
//!
//! On 2026-07-28 a server may not send requests to the client. When a handler asks for
//! sampling or elicitation there, its task is parked here and the client gets an
//! `input_required` result naming what is needed and an opaque `requestState`. The client
//! answers and calls again with that state; the parked handler continues from where it was.
//! The state is only a handle (an unguessable id): nothing the client sends back is trusted.
//!
//! Replicas behind a load balancer: the retry may reach another replica than the one holding
//! the parked task, which cannot travel. When they share a Redis, a state names the replica
//! that made it, and one that does not hold it forwards the retry there and relays the
//! answer (`net::relay_calls`); the holder checks the tool and the caller as for its own
//! clients. Without Redis, or when the holder is gone, the client is told to call again.
//!
//! One file (a little over 800 lines with its tests): `begin`, `drive` and `end` are
//! one state machine over `Running`, and the parked 2026-07-28 calls are its fourth state;
//! split, each part would have to reach into the others' private fields.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, InputRequiredResult,
    JsonObject,
};
use tokio::time::Instant;
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use crate::net::relay_calls::{self, CallRelay, Continuation};

use super::{
    Registry, ToolContext, ToolOutcome,
    context::{Ask, Link},
    isolate::{panic_message, payload_message},
    observe::{CallFinished, CallStarted, ErrorKind, Observers, Outcome},
    registry::Published,
};

/// How long a parked call waits for the client to come back with its answer.
const INPUT_WAIT: Duration = Duration::from_secs(600);
/// At most this many parked calls; beyond it the oldest is stopped.
const MAX_SUSPENDED: usize = 256;

/// Parked 2026-07-28 calls by their `requestState`.
#[derive(Default)]
pub(crate) struct Suspended(Mutex<HashMap<String, Parked>>);

struct Parked {
    running: Running,
    /// The key of the input request in `inputRequests`, and where its answer goes.
    key: String,
    reply: oneshot::Sender<serde_json::Value>,
    since: Instant,
    /// Who may resume it ([`owner`] of the caller that started it).
    owner: String,
}

/// A handler in flight.
struct Running {
    name: String,
    plugin: Arc<str>,
    task: JoinHandle<ToolOutcome>,
    asks: mpsc::Receiver<Ask>,
    cx: ToolContext,
    started: Instant,
    timeout: Duration,
}

impl Drop for Running {
    fn drop(&mut self) {
        // Whoever drops a call without its result stops it.
        self.task.abort();
    }
}

/// Where a call stands after a round.
enum Step {
    Done(Answer),
    Ask(Box<Running>, Ask),
}

/// A call's result with how it ended, for faces that say more than the result (the REST
/// API's status codes).
#[derive(Debug)]
pub struct Answer {
    pub result: CallToolResult,
    pub outcome: Outcome,
}

/// Runs calls against the published registry.
pub struct Calls {
    /// The registry as last published; swapped whole by the manager.
    published: Published,
    /// `--call-timeout`, for tools without their own.
    call_timeout: Duration,
    /// Told of every call (logs, metrics, live events).
    observers: Observers,
    /// 2026-07-28 tool calls waiting for the client's input.
    suspended: Suspended,
    /// Set while serving with a Redis shared by replicas: states name this replica, and a
    /// state naming another is forwarded there.
    relay: OnceLock<CallRelay>,
}

impl Calls {
    pub(crate) fn new(published: Published, call_timeout: Duration, observers: Observers) -> Self {
        Self {
            published,
            call_timeout,
            observers,
            suspended: Suspended::default(),
            relay: OnceLock::new(),
        }
    }

    pub fn observers(&self) -> &Observers {
        &self.observers
    }

    /// Run one tool call and answer with its result. Failures are `isError: true` results
    /// whose text says what to fix. Used on sessions (stdio, SSE, HTTP 2025-11-25) and by the
    /// CLI, where the handler reaches the client directly.
    pub async fn call(
        &self,
        name: &str,
        args: Option<JsonObject>,
        cx: ToolContext,
    ) -> CallToolResult {
        self.answer(name, args, cx).await.result
    }

    /// As [`Calls::call`], saying how the call ended.
    pub async fn answer(&self, name: &str, args: Option<JsonObject>, cx: ToolContext) -> Answer {
        let round = cx.cancellation().clone();
        let running = match self.begin(name, args, cx) {
            Ok(running) => running,
            Err(answer) => return answer,
        };
        match self.drive(running, &round).await {
            Step::Done(answer) => answer,
            Step::Ask(running, _) => self.finish(
                &running,
                Err((
                    ErrorKind::Failed,
                    "the tool asked the client for input on a connection that cannot carry it"
                        .into(),
                )),
            ),
        }
    }

    /// Run or resume a 2026-07-28 tool call. `link` reaches the client of this request;
    /// `round` is this request's cancellation. A state this replica does not hold is
    /// forwarded to the replica it names, when they share a Redis (`net::relay_calls`).
    pub async fn call_stateless(
        &self,
        request: CallToolRequestParams,
        link: ToolContext,
        round: CancellationToken,
    ) -> CallToolResponse {
        let name = request.name.to_string();
        let running = match request.request_state {
            Some(state) => {
                let owner = owner(link.caller());
                let parked = match self.suspended.take(&state, &name, &owner) {
                    Ok(parked) => parked,
                    Err(Refused::Missing) => {
                        let continuation = Continuation {
                            request_state: state,
                            tool: name,
                            input_responses: request.input_responses,
                            owner,
                            capabilities: link.link().capabilities,
                        };
                        return self.forward(continuation, &round).await;
                    }
                    Err(refused) => return refused.result(&name).into(),
                };
                match self.resume(parked, request.input_responses, link.link()) {
                    Ok(running) => running,
                    Err(response) => return response,
                }
            }
            None => {
                // Our own token: the call may outlive this request (when it is parked).
                let cx = link.fresh_cancellation().deferred();
                match self.begin(&name, request.arguments, cx) {
                    Ok(running) => running,
                    Err(answer) => return answer.result.into(),
                }
            }
        };
        self.drive_round(running, &round).await
    }

    /// Resume a call parked here for a client of another replica, which forwarded its
    /// continuation. Its progress and log messages stay here (in this replica's log): the
    /// client's stream is the other replica's.
    pub(crate) async fn resume_forwarded(
        &self,
        continuation: Continuation,
        round: CancellationToken,
    ) -> CallToolResponse {
        let Continuation {
            request_state,
            tool,
            input_responses,
            owner,
            capabilities,
        } = continuation;
        let parked = match self.suspended.take(&request_state, &tool, &owner) {
            Ok(parked) => parked,
            // Never forwarded again: one hop at most, whatever the state says.
            Err(refused) => return refused.result(&tool).into(),
        };
        let link = Link {
            capabilities,
            ..Link::default()
        };
        match self.resume(parked, input_responses, link) {
            Ok(running) => self.drive_round(running, &round).await,
            Err(response) => response,
        }
    }

    /// Name this replica in the states it gives, and forward the states it does not hold.
    pub(crate) fn relay_through(&self, relay: CallRelay) {
        let _ = self.relay.set(relay);
    }

    /// Hand a continuation to the replica its state names, when that is another replica
    /// sharing the Redis; else, or when none answers, the call is gone.
    async fn forward(
        &self,
        continuation: Continuation,
        round: &CancellationToken,
    ) -> CallToolResponse {
        let name = continuation.tool.clone();
        let holder = self.relay.get().and_then(|relay| {
            relay_calls::holder_of(&continuation.request_state)
                .filter(|holder| *holder != relay.route())
                .map(|holder| (relay, holder.to_owned()))
        });
        let Some((relay, holder)) = holder else {
            return Refused::Missing.result(&name).into();
        };
        // The holder runs the call until it ends or asks again: as long as the tool may run.
        let registry = self.published.get();
        let timeout = registry
            .entries
            .get(name.as_str())
            .and_then(|e| e.timeout)
            .unwrap_or(self.call_timeout);
        let wait = timeout + Duration::from_secs(10);
        match relay.forward(&holder, continuation, wait, round).await {
            Some(response) => response,
            None => Refused::Missing.result(&name).into(),
        }
    }

    /// Give a parked call the client's answer and point it at the request resuming it.
    #[allow(clippy::result_large_err)]
    fn resume(
        &self,
        parked: Parked,
        answers: Option<rmcp::model::InputResponses>,
        link: Link,
    ) -> Result<Running, CallToolResponse> {
        let answer = answers.and_then(|mut answers| answers.remove(&parked.key));
        let Some(answer) = answer else {
            let running = parked.running;
            return Err(self
                .finish(
                    &running,
                    Err((
                        ErrorKind::InvalidArguments,
                        format!(
                            "the client called again without answering input request `{}`",
                            parked.key
                        ),
                    )),
                )
                .result
                .into());
        };
        parked.running.cx.relink(link);
        parked.running.cx.pause(false);
        let _ = parked.reply.send(answer);
        Ok(parked.running)
    }

    /// Drive a call for one request: its result, or `input_required` with a new state when
    /// it asks the client something (the call parked here until the client answers).
    async fn drive_round(&self, running: Running, round: &CancellationToken) -> CallToolResponse {
        match self.drive(running, round).await {
            Step::Done(answer) => answer.result.into(),
            Step::Ask(running, ask) => {
                running.cx.pause(true);
                let owner = owner(running.cx.caller());
                let random = uuid::Uuid::new_v4().simple().to_string();
                let key = format!("input-{}", &random[..8]);
                let state = match self.relay.get() {
                    Some(relay) => relay.new_state(),
                    None => random,
                };
                let requests = BTreeMap::from([(key.clone(), ask.request)]);
                self.suspended.park(
                    state.clone(),
                    Parked {
                        running: *running,
                        key,
                        reply: ask.reply,
                        since: Instant::now(),
                        owner,
                    },
                );
                InputRequiredResult::new(Some(requests), Some(state)).into()
            }
        }
    }

    /// Check the arguments and start the handler in its own task.
    // The `Err` is the call's answer, returned once: boxing it would cost an allocation on
    // every refused call to save a copy.
    #[allow(clippy::result_large_err)]
    fn begin(
        &self,
        name: &str,
        args: Option<JsonObject>,
        cx: ToolContext,
    ) -> Result<Running, Answer> {
        let registry = self.published.get();
        let caller = cx.caller().clone();
        let entry = registry
            .entries
            .get(name)
            .filter(|e| caller.allows(&e.plugin, &e.tool));
        let Some(entry) = entry else {
            // The name is the client's: shown clipped, and masked like any output.
            let shown = clip_name(name);
            let mut message = unknown_tool(&shown, &registry, &caller);
            crate::net::secret::mask_held_in(&mut message);
            self.refused("", &shown, &cx, ErrorKind::UnknownTool, &message);
            return Err(Answer {
                result: error_result(message),
                outcome: Outcome::Failed(ErrorKind::UnknownTool),
            });
        };
        self.observers.started(&CallStarted {
            plugin: &entry.plugin,
            tool: name,
            caller: &caller,
        });
        let started = Instant::now();
        let validator = match entry.validator() {
            Ok(v) => v,
            Err(e) => {
                let e = e.to_owned();
                return Err(self.end(
                    &entry.plugin,
                    name,
                    &cx,
                    started,
                    Err((ErrorKind::Failed, e)),
                ));
            }
        };
        let mut args = args.unwrap_or_default();
        if entry.null_is_absent {
            // Only the tool's own arguments: an unknown key stays, for the schema to refuse
            // (schemathesis sent `{"": null}`, which was dropped and then accepted).
            let properties = entry
                .tool
                .input_schema
                .get("properties")
                .and_then(|p| p.as_object());
            args.retain(|key, value| {
                !(value.is_null() && properties.is_some_and(|p| p.contains_key(key)))
            });
        }
        let instance = serde_json::Value::Object(args);
        let problems = argument_problems(validator, &instance);
        if !problems.is_empty() {
            let message = format!(
                "invalid arguments for `{name}`: {}. Call tools/list for the input schema.",
                problems.join("; ")
            );
            return Err(self.end(
                &entry.plugin,
                name,
                &cx,
                started,
                Err((ErrorKind::InvalidArguments, message)),
            ));
        }
        let serde_json::Value::Object(args) = instance else {
            unreachable!("built from an object")
        };
        let (asks_tx, asks) = mpsc::channel(1);
        let timeout = entry.timeout.unwrap_or(self.call_timeout);
        let cx = cx
            .for_plugin(entry.plugin.clone())
            .rerouted(asks_tx)
            .with_budget(timeout);
        let mut handler = (entry.handler)(args, cx.clone());
        // A handler that answers from memory is done on its first poll: answer it here. Its
        // own task (the spawn, the join, waking another worker thread) would be most of such a
        // call's latency. A handler that must wait goes on in its own task, where the next
        // poll registers the task's waker in place of this no-op one.
        let mut first = std::task::Context::from_waker(std::task::Waker::noop());
        let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handler.as_mut().poll(&mut first)
        })) {
            Ok(std::task::Poll::Pending) => None,
            Ok(std::task::Poll::Ready(Ok(result))) => Some(Ok(result)),
            Ok(std::task::Poll::Ready(Err(e))) => Some(Err((ErrorKind::of(&e), e.to_string()))),
            Err(payload) => Some(Err((
                ErrorKind::Panic,
                panicked(&entry.plugin, name, payload_message(&*payload)),
            ))),
        };
        if let Some(outcome) = outcome {
            return Err(self.end(&entry.plugin, name, &cx, started, outcome));
        }
        Ok(Running {
            name: name.to_owned(),
            plugin: entry.plugin.clone(),
            task: tokio::spawn(handler),
            asks,
            cx,
            started,
            timeout,
        })
    }

    /// Wait for the handler to finish, ask the client something, time out, or be cancelled
    /// (`round` is the current request's token).
    async fn drive(&self, mut running: Running, round: &CancellationToken) -> Step {
        let timeout = running.timeout;
        loop {
            // Time spent waiting for the client does not count.
            let (waited, waiting) = running.cx.waited();
            let active = running.started.elapsed().saturating_sub(waited);
            let left = if waiting {
                Duration::from_secs(1)
            } else {
                timeout.saturating_sub(active)
            };
            if left.is_zero() && !waiting {
                running.cx.cancellation().cancel();
                let message = format!(
                    "`{}` did not finish within {} s and was stopped; try a smaller request",
                    running.name,
                    timeout.as_secs_f64()
                );
                return Step::Done(self.finish(&running, Err((ErrorKind::Timeout, message))));
            }
            tokio::select! {
                joined = &mut running.task => {
                    let outcome = match joined {
                        Ok(Ok(result)) => Ok(result),
                        Ok(Err(e)) => Err((ErrorKind::of(&e), e.to_string())),
                        Err(join) if join.is_panic() => Err((
                            ErrorKind::Panic,
                            panicked(&running.plugin, &running.name, panic_message(join)),
                        )),
                        Err(_) => Err((
                            ErrorKind::Cancelled,
                            format!("`{}` was stopped before it finished", running.name),
                        )),
                    };
                    return Step::Done(self.finish(&running, outcome));
                }
                Some(ask) = running.asks.recv() => return Step::Ask(Box::new(running), ask),
                _ = tokio::time::sleep(left) => continue,
                _ = round.cancelled() => {
                    running.cx.cancellation().cancel();
                    let message = format!("`{}` was cancelled by the client", running.name);
                    return Step::Done(self.finish(&running, Err((ErrorKind::Cancelled, message))));
                }
            }
        }
    }
}

impl Calls {
    /// Tell the observers how the call ended and turn its outcome into the result the
    /// client sees.
    fn finish(
        &self,
        running: &Running,
        outcome: Result<CallToolResult, (ErrorKind, String)>,
    ) -> Answer {
        self.end(
            &running.plugin,
            &running.name,
            &running.cx,
            running.started,
            outcome,
        )
    }

    fn end(
        &self,
        plugin: &str,
        tool: &str,
        cx: &ToolContext,
        started: Instant,
        outcome: Result<CallToolResult, (ErrorKind, String)>,
    ) -> Answer {
        let (result, outcome) = match outcome {
            Ok(result) if result.is_error == Some(true) => (result, Outcome::ToolError),
            Ok(result) => (result, Outcome::Ok),
            Err((kind, message)) => {
                let result = error_result(message);
                (result, Outcome::Failed(kind))
            }
        };
        let size = result_size(&result);
        let (result, outcome) = if size > MAX_RESULT_BYTES {
            let message = format!(
                "`{tool}` returned {} MiB, over the {} MiB a result may hold; ask for less (a \
                 smaller range, page or limit)",
                size >> 20,
                MAX_RESULT_BYTES >> 20
            );
            (error_result(message), Outcome::Failed(ErrorKind::Failed))
        } else {
            (result, outcome)
        };
        let mut result = result;
        mask_result(&mut result);
        let error = match outcome {
            Outcome::Failed(_) => result
                .content
                .first()
                .and_then(|c| c.as_text())
                .map(|t| t.text.as_str()),
            _ => None,
        };
        self.observers.finished(&CallFinished {
            plugin,
            tool,
            caller: cx.caller(),
            duration: started.elapsed(),
            outcome,
            error,
        });
        Answer { result, outcome }
    }

    /// A call that never reached a tool (unknown, or hidden from this caller).
    fn refused(&self, plugin: &str, tool: &str, cx: &ToolContext, kind: ErrorKind, message: &str) {
        self.observers.finished(&CallFinished {
            plugin,
            tool,
            caller: cx.caller(),
            duration: Duration::ZERO,
            outcome: Outcome::Failed(kind),
            error: Some(message),
        });
    }
}

impl Suspended {
    fn park(&self, state: String, parked: Parked) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, p| p.since.elapsed() < INPUT_WAIT);
        if map.len() >= MAX_SUSPENDED
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, p)| p.since)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(state, parked);
    }

    /// The call parked under `state`, if it is a call of `tool` by `owner`. A call asked for
    /// by another tool or caller stays parked: only its own client can resume or end it.
    fn take(&self, state: &str, tool: &str, owner: &str) -> Result<Parked, Refused> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, p| p.since.elapsed() < INPUT_WAIT);
        let parked = map.get(state).ok_or(Refused::Missing)?;
        if parked.running.name != tool {
            return Err(Refused::OtherTool(parked.running.name.clone()));
        }
        if parked.owner != owner {
            return Err(Refused::OtherCaller);
        }
        map.remove(state).ok_or(Refused::Missing)
    }
}

/// Why a continuation does not resume a call.
enum Refused {
    /// No call is parked under the state (here, or on the replica it names).
    Missing,
    /// The call parked there is one of this tool.
    OtherTool(String),
    /// The call belongs to another caller.
    OtherCaller,
}

impl Refused {
    fn result(&self, tool: &str) -> CallToolResult {
        let tool = clip_name(tool);
        error_result(match self {
            Refused::Missing => format!(
                "this call of `{tool}` is no longer waiting for input (it finished, expired \
                 after {} s, or the server restarted); call the tool again",
                INPUT_WAIT.as_secs()
            ),
            Refused::OtherTool(parked) => {
                format!("the requestState belongs to a call of `{parked}`, not `{tool}`")
            }
            Refused::OtherCaller => {
                format!("the requestState belongs to a call of `{tool}` by another caller")
            }
        })
    }
}

/// Who a call belongs to, as compared when a continuation resumes it (and carried to the
/// replica holding it): the face, the client and the tools it may see (its scope, and a
/// signed-in user's grants — written as Rust shows them, which replicas of one version share).
fn owner(caller: &super::Caller) -> String {
    let scope = caller.scope.as_ref().map(|s| {
        serde_json::json!({
            "read_only": s.read_only,
            "tools": s.tools,
            "exclude_tools": s.exclude_tools,
            "toolsets": s.toolsets,
        })
    });
    serde_json::json!({
        "face": caller.face.as_str(),
        "client": caller.client.as_deref(),
        "scope": scope,
        "grants": caller.grants.as_deref().map(|g| format!("{g:?}")),
    })
    .to_string()
}

/// What the client is told when a handler panicked (the panic is logged).
/// What is wrong with a call's arguments by its tool's input schema, each problem with where
/// it is; none when they fit.
pub(crate) fn argument_problems(
    validator: &jsonschema::Validator,
    instance: &serde_json::Value,
) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            }
        })
        .collect()
}

fn panicked(plugin: &str, tool: &str, message: String) -> String {
    tracing::error!(plugin = %plugin, tool = %tool, panic = %message, "tool handler panicked");
    format!(
        "the `{plugin}` plugin failed inside `{tool}` ({message}); nothing else was affected, and the call can be retried or reported"
    )
}

fn error_result(message: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

/// Every held secret masked out of a tool's result: its text, embedded text resources and
/// structured content (`net::secret::mask_held`).
pub(crate) fn mask_result(result: &mut CallToolResult) {
    use crate::net::secret::{mask_held_in, mask_held_json};
    use rmcp::model::{ContentBlock, ResourceContents};
    for block in &mut result.content {
        match block {
            ContentBlock::Text(text) => mask_held_in(&mut text.text),
            ContentBlock::Resource(embedded) => {
                if let ResourceContents::TextResourceContents { text, .. } = &mut embedded.resource
                {
                    mask_held_in(text);
                }
            }
            _ => {}
        }
    }
    if let Some(structured) = &mut result.structured_content {
        mask_held_json(structured);
    }
}

/// The most a tool's result may hold (its content and structured content together): more
/// would be refused by clients anyway (rmcp's reads events of up to 16 MiB).
pub const MAX_RESULT_BYTES: usize = 16 * 1024 * 1024;

/// About how many bytes `result` takes on the wire (its texts, data and structured content).
fn result_size(result: &CallToolResult) -> usize {
    use rmcp::model::{ContentBlock, ResourceContents};
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut size = 0;
    for block in &result.content {
        size += match block {
            ContentBlock::Text(t) => t.text.len(),
            ContentBlock::Image(i) => i.data.len(),
            ContentBlock::Audio(a) => a.data.len(),
            ContentBlock::Resource(r) => match &r.resource {
                ResourceContents::TextResourceContents { text, .. } => text.len(),
                ResourceContents::BlobResourceContents { blob, .. } => blob.len(),
                _ => 0,
            },
            _ => 0,
        };
    }
    if let Some(structured) = &result.structured_content {
        let mut count = Count(0);
        let _ = serde_json::to_writer(&mut count, structured);
        size += count.0;
    }
    size
}

/// Longest name echoed back in an error or a log line; a client can send a megabyte.
pub const MAX_SHOWN_NAME: usize = 128;

/// `name` as it may be shown: up to [`MAX_SHOWN_NAME`] bytes, then how long it was.
pub fn clip_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.len() <= MAX_SHOWN_NAME {
        return name.into();
    }
    let mut end = MAX_SHOWN_NAME;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &name[..end], name.len()).into()
}

fn unknown_tool(name: &str, registry: &Registry, caller: &super::Caller) -> String {
    let visible = || {
        registry.tools.iter().filter(|t| {
            registry
                .entries
                .get(t.name.as_ref())
                .is_some_and(|e| caller.allows(&e.plugin, t))
        })
    };
    let mut close: Vec<&str> = visible()
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
            visible().count()
        )
    } else {
        format!("unknown tool `{name}`; did you mean {}?", close.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::owner;
    use crate::plugin::{Caller, Face, Filters, Grant, Grants};

    /// A continuation resumes a call only for the caller that started it: the same face,
    /// client and scope.
    #[test]
    fn a_call_belongs_to_its_face_client_and_scope() {
        let http = || Caller::new(Face::Http).with_client("claude");
        assert_eq!(owner(&http()), owner(&http()));
        let read_only = Filters {
            read_only: true,
            ..Filters::default()
        };
        for other in [
            Caller::new(Face::Http),
            Caller::new(Face::Sse).with_client("claude"),
            http().with_client("cursor"),
            http().with_scope(read_only.clone()),
            http().with_grants(Some(std::sync::Arc::new(Grants(vec![Grant::All {
                read_only: true,
            }])))),
        ] {
            assert_ne!(owner(&http()), owner(&other), "{other:?}");
        }
        assert_eq!(
            owner(&http().with_scope(read_only.clone())),
            owner(&http().with_scope(read_only))
        );
    }
}
