//! 2026-07-28 continuations across replicas sharing a Redis: a retry carrying `requestState`
//! may reach any replica behind the load balancer; the one that does not hold the parked
//! call forwards it, through Redis, to the one that does, and relays its answer.

#![allow(deprecated)] // rmcp marks sampling deprecated (SEP-2577).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, CreateMessageResult,
        ElicitRequestParams, ElicitResult, ElicitationAction, Implementation, InputRequest,
        InputRequiredResult, InputResponses, ListToolsResult, PaginatedRequestParams,
        SamplingMessage, ServerCapabilities, ServerConfig, Tool,
    },
    service::RequestContext,
    transport::{
        StreamableHttpServerConfig, StreamableHttpService,
        streamable_http_server::session::local::LocalSessionManager,
    },
};
use serde_json::{Value, json};
use tokio::process::Child;

use crate::{
    protocol::{Probe, ProbeClient, fixture},
    protocol_input::discover,
    scenario::call,
    shared::RedisServer,
    support::{Fixture, text},
};

const PROMPT: &str = "What is the capital of France?";

/// One `plugboard serve --http` replica, sharing `redis` when given.
async fn replica(fx: &Fixture, redis: Option<&RedisServer>) -> (Child, String) {
    match redis {
        Some(redis) => fx.http(&["--redis-url", &redis.url]).await,
        None => fx.http(&[]).await,
    }
}

/// The input one round asks for: its key, its request, and the state to come back with.
fn required(response: CallToolResponse) -> (String, InputRequest, String) {
    let CallToolResponse::InputRequired(InputRequiredResult {
        input_requests,
        request_state,
        ..
    }) = response
    else {
        panic!("expected input_required, got {response:?}")
    };
    let mut requests = input_requests.unwrap_or_default();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let (key, request) = requests.pop_first().unwrap();
    (key, request, request_state.expect("a requestState"))
}

fn complete(response: CallToolResponse) -> CallToolResult {
    let CallToolResponse::Complete(result) = response else {
        panic!("expected a final result, got {response:?}")
    };
    result
}

/// The tool called again with `state` and the answer to `key`.
fn retry(
    mut params: CallToolRequestParams,
    state: &str,
    key: &str,
    answer: Value,
) -> CallToolRequestParams {
    params.request_state = Some(state.to_owned());
    params.input_responses = Some(InputResponses::from([(key.to_owned(), answer)]));
    params
}

/// The part of a state that routes it (what the replica that made it is called).
fn route(state: &str) -> &str {
    state
        .split_once('.')
        .unwrap_or_else(|| panic!("{state:?} names no replica"))
        .0
}

fn sampled(reply: &str) -> Value {
    serde_json::to_value(CreateMessageResult::new(
        SamplingMessage::assistant_text(reply),
        "manual".into(),
    ))
    .unwrap()
}

fn accepted(content: Value) -> Value {
    serde_json::to_value(ElicitResult::new(ElicitationAction::Accept).with_content(content))
        .unwrap()
}

fn assert_gone(result: &CallToolResult) {
    assert_eq!(result.is_error, Some(true), "{}", text(result));
    assert!(
        text(result).contains("no longer waiting for input")
            && text(result).contains("call the tool again"),
        "{}",
        text(result)
    );
}

/// A call that asked for input on replica A is answered on replica B: B forwards the
/// continuation to A, A's parked handler goes on, and B's client gets the result — for
/// sampling and for elicitation. The state is spent once used, on every replica.
#[tokio::test]
async fn a_continuation_sent_to_another_replica_reaches_the_call() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let fx = fixture("");
    let (_a, a_url) = replica(&fx, Some(&redis)).await;
    let (_b, b_url) = replica(&fx, Some(&redis)).await;
    // Clients that can do both (their own answers are never used: every round is manual).
    let both = || {
        let mut probe = Probe::sampling("unused");
        probe.elicit_answer = Some(ElicitResult::new(ElicitationAction::Decline));
        probe
    };
    let a = discover(&a_url, both()).await;
    let b = discover(&b_url, both()).await;

    let sampling = call("test_sampling", json!({"prompt": PROMPT}));
    let (key, request, state) = required(a.call_tool_once(sampling.clone()).await.unwrap());
    assert!(
        matches!(request, InputRequest::CreateMessage(_)),
        "{request:?}"
    );
    route(&state);
    let answer = retry(sampling, &state, &key, sampled("Paris, by B's client"));
    let done = complete(b.call_tool_once(answer.clone()).await.unwrap());
    assert_eq!(text(&done), "LLM response: Paris, by B's client");
    // Spent: neither replica holds it any more.
    assert_gone(&complete(b.call_tool_once(answer.clone()).await.unwrap()));
    assert_gone(&complete(a.call_tool_once(answer).await.unwrap()));

    let asking = call("test_elicitation", json!({"message": "Who are you?"}));
    let (key, request, state) = required(a.call_tool_once(asking.clone()).await.unwrap());
    let InputRequest::Elicitation(request) = request else {
        panic!("expected an elicitation, got {request:?}")
    };
    let ElicitRequestParams::FormElicitationParams { message, .. } = &request.params else {
        panic!("expected a form, got {request:?}")
    };
    assert_eq!(message, "Who are you?");
    let who = json!({"username": "ferris", "email": "ferris@example.com"});
    let done = complete(
        b.call_tool_once(retry(asking, &state, &key, accepted(who.clone())))
            .await
            .unwrap(),
    );
    assert_eq!(
        text(&done),
        format!("User response: action=accept, content={who}")
    );
    for client in [&a, &b] {
        let seen = client.service().seen();
        assert!(seen.sampling.is_empty() && seen.elicitation.is_empty());
    }
    for client in [a, b] {
        client.cancel().await.unwrap();
    }
}

/// An upstream MCP server whose one tool asks the user twice (first name, then last name)
/// before it answers: a call of two input rounds once plugboard hosts it.
/// Its second tool, `greet_slowly`, asks once and then waits to be cancelled, which it
/// records.
#[derive(Clone, Default)]
struct TwoQuestions {
    stopped: Arc<std::sync::atomic::AtomicBool>,
}

async fn ask_name(peer: &rmcp::Peer<RoleServer>, message: &str) -> Result<String, ErrorData> {
    let requested_schema = serde_json::from_value(json!({
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"]
    }))
    .unwrap();
    let answer = peer
        .create_elicitation(ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: message.to_owned(),
            requested_schema,
        })
        .await
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
    Ok(answer
        .content
        .and_then(|c| c["name"].as_str().map(str::to_owned))
        .unwrap_or_default())
}

impl ServerHandler for TwoQuestions {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("two-questions", "1"))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = json!({"type": "object", "properties": {}});
        let schema = Arc::new(schema.as_object().unwrap().clone());
        Ok(ListToolsResult::with_all_items(vec![
            Tool::new(
                "greet",
                "Asks for a first and a last name, then greets",
                schema.clone(),
            ),
            Tool::new(
                "greet_slowly",
                "Asks for a first name, then takes its time",
                schema,
            ),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name == "greet_slowly" {
            ask_name(&cx.peer, "Your first name?").await?;
            tokio::select! {
                () = cx.ct.cancelled() => {
                    self.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                () = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
            return Ok(CallToolResult::success(vec![ContentBlock::text("too slow")]).into());
        }
        let first = ask_name(&cx.peer, "Your first name?").await?;
        let last = ask_name(&cx.peer, "Your last name?").await?;
        Ok(
            CallToolResult::success(vec![ContentBlock::text(format!("Hello, {first} {last}"))])
                .into(),
        )
    }
}

/// `server` over Streamable HTTP on a free port: its URL.
/// Two replicas sharing `redis`, each hosting `server` (the two-question MCP server) as
/// plugin `twice`, and a 2026-07-28 client of each once `tool` is listed; the fixture and the
/// replicas' processes live as long as the first part.
async fn two_replicas_of(
    server: TwoQuestions,
    redis: &RedisServer,
    tool: &str,
) -> ((Fixture, Child, Child), ProbeClient, ProbeClient) {
    let upstream = two_questions(server).await;
    let fx = Fixture::empty();
    fx.manifest(
        "twice",
        &format!("name = \"twice\"\nkind = \"mcp\"\nprefix = \"tw\"\n[mcp]\nurl = {upstream:?}\n"),
    );
    let (a_child, a_url) = replica(&fx, Some(redis)).await;
    let (b_child, b_url) = replica(&fx, Some(redis)).await;
    let a = discover(&a_url, Probe::accepting(json!({"name": "unused"}))).await;
    let b = discover(&b_url, Probe::accepting(json!({"name": "unused"}))).await;
    until_listed(&a, tool).await;
    until_listed(&b, tool).await;
    ((fx, a_child, b_child), a, b)
}

async fn two_questions(server: TwoQuestions) -> String {
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

/// Wait until `client`'s replica lists `tool` (a hosted server joins when it is ready).
async fn until_listed(client: &ProbeClient, tool: &str) {
    let started = Instant::now();
    loop {
        let tools = client.list_all_tools().await.unwrap();
        if tools.iter().any(|t| t.name == tool) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{tool} never listed: {:?}",
            tools.iter().map(|t| &t.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A call of two input rounds, its answers sent to alternating replicas: started on A,
/// the first answer through B (forwarded; A's next question comes back with a state that
/// still names A), the second on A itself — or through B again. The greeting is whole.
#[tokio::test]
async fn a_two_round_continuation_alternates_replicas() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let (_replicas, a, b) = two_replicas_of(TwoQuestions::default(), &redis, "tw_greet").await;

    let question = |request: &InputRequest| match request {
        InputRequest::Elicitation(e) => match &e.params {
            ElicitRequestParams::FormElicitationParams { message, .. } => message.clone(),
            other => panic!("not a form: {other:?}"),
        },
        other => panic!("not an elicitation: {other:?}"),
    };
    for (last_on, last_name) in [(&a, "Lovelace"), (&b, "Byron")] {
        let greet = call("tw_greet", json!({}));
        let (key, request, first_state) = required(a.call_tool_once(greet.clone()).await.unwrap());
        assert_eq!(question(&request), "Your first name?");
        let second = b
            .call_tool_once(retry(
                greet.clone(),
                &first_state,
                &key,
                accepted(json!({"name": "Ada"})),
            ))
            .await
            .unwrap();
        let (key, request, second_state) = required(second);
        assert_eq!(question(&request), "Your last name?");
        assert_ne!(second_state, first_state, "each round has its own state");
        assert_eq!(
            route(&second_state),
            route(&first_state),
            "the call is still A's"
        );
        let done = last_on
            .call_tool_once(retry(
                greet,
                &second_state,
                &key,
                accepted(json!({"name": last_name})),
            ))
            .await
            .unwrap();
        assert_eq!(text(&complete(done)), format!("Hello, Ada {last_name}"));
    }
    for client in [a, b] {
        client.cancel().await.unwrap();
    }
}

/// The replica holding a call is killed: the answer sent to the other replica gets the clear
/// error result at once (nobody is subscribed any more), not a hang.
#[tokio::test]
async fn a_continuation_whose_replica_died_is_told_to_call_again() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let fx = fixture("");
    let (mut a_child, a_url) = replica(&fx, Some(&redis)).await;
    let (_b, b_url) = replica(&fx, Some(&redis)).await;
    let a = discover(&a_url, Probe::sampling("unused")).await;
    let b = discover(&b_url, Probe::sampling("unused")).await;
    let sampling = call("test_sampling", json!({"prompt": PROMPT}));
    let (key, _, state) = required(a.call_tool_once(sampling.clone()).await.unwrap());
    a_child.kill().await.unwrap();
    let sent = Instant::now();
    let answered = tokio::time::timeout(
        Duration::from_secs(10),
        b.call_tool_once(retry(sampling, &state, &key, sampled("too late"))),
    )
    .await
    .expect("an answer within 10 s, not a hang")
    .unwrap();
    assert_gone(&complete(answered));
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "the error took {:?}",
        sent.elapsed()
    );
    drop(a);
    b.cancel().await.unwrap();
}

/// Everything published on the replicas' call channels, counted.
async fn watch_channels(server: &RedisServer) -> Arc<std::sync::atomic::AtomicUsize> {
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut pubsub = redis::Client::open(server.url.as_str())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    pubsub.psubscribe("plugboard:calls:*").await.unwrap();
    let counted = seen.clone();
    tokio::spawn(async move {
        let mut messages = pubsub.on_message();
        while futures::StreamExt::next(&mut messages).await.is_some() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    seen
}

/// States no live call has — made up, naming a replica that is there, naming the replica
/// asked, naming none that exists — all get the same error, each forwarded at most once (a
/// replica handed a forwarded continuation never forwards it on). A real state sent with
/// another tool's name is refused without disturbing the call, which then goes on.
#[tokio::test]
async fn forged_states_get_the_same_error_without_a_forwarding_storm() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let fx = fixture("");
    let (_a, a_url) = replica(&fx, Some(&redis)).await;
    let (_b, b_url) = replica(&fx, Some(&redis)).await;
    let a = discover(&a_url, Probe::sampling("unused")).await;
    let b = discover(&b_url, Probe::sampling("unused")).await;
    let sampling = call("test_sampling", json!({"prompt": PROMPT}));
    let (key, _, a_state) = required(a.call_tool_once(sampling.clone()).await.unwrap());
    let (_, _, b_state) = required(b.call_tool_once(sampling.clone()).await.unwrap());
    let (a_route, b_route) = (route(&a_state).to_owned(), route(&b_state).to_owned());
    assert_ne!(a_route, b_route);
    let published = watch_channels(&redis).await;
    let random = "0123456789abcdef0123456789abcdef";
    for (forged, forwarded) in [
        ("not-a-state".to_owned(), 0),
        (format!("{a_route}.{random}"), 1),
        (format!("{b_route}.{random}"), 0),
        (format!("fedcba9876543210.{random}"), 1),
    ] {
        let before = published.load(std::sync::atomic::Ordering::SeqCst);
        let answered = b
            .call_tool_once(retry(sampling.clone(), &forged, &key, sampled("forged")))
            .await
            .unwrap();
        assert_gone(&complete(answered));
        // Time for any further hop to show.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = published.load(std::sync::atomic::Ordering::SeqCst) - before;
        assert_eq!(sent, forwarded, "{forged}: {sent} messages");
    }

    // The real state under another tool's name: refused, and the call still waits.
    let other = retry(
        call("test_elicitation", json!({"message": "Who?"})),
        &a_state,
        &key,
        sampled("wrong tool"),
    );
    let refused = complete(b.call_tool_once(other).await.unwrap());
    assert_eq!(refused.is_error, Some(true), "{}", text(&refused));
    assert!(
        text(&refused).contains("belongs to a call of `test_sampling`"),
        "{}",
        text(&refused)
    );
    let done = complete(
        b.call_tool_once(retry(sampling, &a_state, &key, sampled("still there")))
            .await
            .unwrap(),
    );
    assert_eq!(text(&done), "LLM response: still there");
    for client in [a, b] {
        client.cancel().await.unwrap();
    }
}

/// The control: two replicas without a shared Redis. B cannot know A's calls; the retry it
/// receives gets the error that says to call the tool again, and A's states name no replica.
#[tokio::test]
async fn without_redis_another_replica_answers_the_error() {
    let fx = fixture("");
    let (_a, a_url) = replica(&fx, None).await;
    let (_b, b_url) = replica(&fx, None).await;
    let a = discover(&a_url, Probe::sampling("unused")).await;
    let b = discover(&b_url, Probe::sampling("unused")).await;
    let sampling = call("test_sampling", json!({"prompt": PROMPT}));
    let (key, _, state) = required(a.call_tool_once(sampling.clone()).await.unwrap());
    assert!(!state.contains('.'), "{state}");
    let answer = retry(sampling, &state, &key, sampled("Paris"));
    assert_gone(&complete(b.call_tool_once(answer.clone()).await.unwrap()));
    // A still holds it.
    let done = complete(a.call_tool_once(answer).await.unwrap());
    assert_eq!(text(&done), "LLM response: Paris");
    for client in [a, b] {
        client.cancel().await.unwrap();
    }
}

/// A forwarded round the client cancels is cancelled on the replica holding the call: the
/// hosted server's handler, waiting after its question was answered through B, is told to
/// stop.
#[tokio::test]
async fn cancelling_a_forwarded_round_stops_the_call_where_it_runs() {
    use rmcp::model::{ClientRequest, Request};
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let server = TwoQuestions::default();
    let (_replicas, a, b) = two_replicas_of(server.clone(), &redis, "tw_greet_slowly").await;
    let slow = call("tw_greet_slowly", json!({}));
    let (key, _, state) = required(a.call_tool_once(slow.clone()).await.unwrap());
    let answer = retry(slow, &state, &key, accepted(json!({"name": "Ada"})));
    let handle = b
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(answer)),
            rmcp::service::PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!server.stopped.load(std::sync::atomic::Ordering::SeqCst));
    handle.cancel(Some("changed my mind".into())).await.unwrap();
    let started = Instant::now();
    while !server.stopped.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the call on replica A was not stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for client in [a, b] {
        client.cancel().await.unwrap();
    }
}
