//! Sampling and elicitation from plugin tools: sent to the client at once on a 2025-11-25
//! session; on 2026-07-28 (no server-to-client requests) carried by an `input_required`
//! result that rmcp's client fulfils through its handler and retries.

#![allow(deprecated)] // rmcp marks sampling deprecated (SEP-2577).

use std::{process::Stdio, time::Duration};

use rmcp::{
    ClientLifecycleMode, ClientServiceExt,
    model::{
        CallToolResponse, CreateMessageResult, ElicitRequestParams, ElicitResult,
        ElicitationAction, InputRequest, InputResponses, ProtocolVersion, SamplingMessage,
    },
    transport::StreamableHttpClientTransport,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::{
    protocol::{Probe, ProbeClient, fixture, stdio},
    scenario::call,
    support::{Fixture, text},
};

const PROMPT: &str = "What is the capital of France?";
const REPLY: &str = "Paris, of course.";

/// Split an elicitation result's text into its action and its content.
fn elicited(text: &str, prefix: &str) -> (String, Value) {
    let rest = text
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{text:?} does not start with {prefix:?}"));
    let (action, content) = rest
        .strip_prefix("action=")
        .and_then(|r| r.split_once(", content="))
        .unwrap_or_else(|| panic!("unexpected text {text:?}"));
    (action.to_owned(), serde_json::from_str(content).unwrap())
}

fn form(request: &ElicitRequestParams) -> (String, Value) {
    match request {
        ElicitRequestParams::FormElicitationParams {
            message,
            requested_schema,
            ..
        } => (
            message.clone(),
            serde_json::to_value(requested_schema).unwrap(),
        ),
        other => panic!("not a form elicitation: {other:?}"),
    }
}

/// `test_sampling` and `test_elicitation` with a client that answers them; the same checks on
/// both protocol generations.
async fn sampling_and_elicitation(sampler: &ProbeClient, asker: &ProbeClient) {
    let sampled = sampler
        .call_tool(call("test_sampling", json!({"prompt": PROMPT})))
        .await
        .unwrap();
    assert_ne!(sampled.is_error, Some(true), "{}", text(&sampled));
    assert_eq!(text(&sampled), format!("LLM response: {REPLY}"));
    {
        let seen = sampler.service().seen();
        assert_eq!(seen.sampling.len(), 1, "the sampling handler ran once");
        let request = &seen.sampling[0];
        assert_eq!(request.max_tokens, 100);
        let messages = serde_json::to_value(&request.messages).unwrap();
        assert_eq!(
            messages,
            json!([{"role": "user", "content": {"type": "text", "text": PROMPT}}])
        );
    }

    let message = "Please tell us who you are";
    let answered = asker
        .call_tool(call("test_elicitation", json!({"message": message})))
        .await
        .unwrap();
    assert_ne!(answered.is_error, Some(true), "{}", text(&answered));
    let (action, content) = elicited(&text(&answered), "User response: ");
    assert_eq!(action, "accept");
    assert_eq!(
        content,
        json!({"username": "ferris", "email": "ferris@example.com"})
    );
    let seen = asker.service().seen();
    assert_eq!(
        seen.elicitation.len(),
        1,
        "the elicitation handler ran once"
    );
    let (asked, schema) = form(&seen.elicitation[0]);
    assert_eq!(asked, message);
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["properties"]["username"]["type"], "string");
    assert_eq!(schema["properties"]["email"]["type"], "string");
    assert_eq!(schema["required"], json!(["username", "email"]));
}

fn ferris() -> Probe {
    Probe::accepting(json!({"username": "ferris", "email": "ferris@example.com"}))
}

#[tokio::test]
async fn sampling_and_elicitation_on_a_session() {
    let fx = fixture("");
    let (sampler, _) = stdio(&fx, Probe::sampling(REPLY)).await;
    let (asker, _) = stdio(&fx, ferris()).await;
    sampling_and_elicitation(&sampler, &asker).await;

    // Declined: the tool hears it.
    let (decliner, _) = stdio(
        &fx,
        Probe::eliciting(ElicitResult::new(ElicitationAction::Decline)),
    )
    .await;
    let declined = decliner
        .call_tool(call("test_elicitation", json!({"message": "Who?"})))
        .await
        .unwrap();
    assert_eq!(
        elicited(&text(&declined), "User response: "),
        ("decline".to_owned(), json!({}))
    );
    assert_eq!(decliner.service().seen().elicitation.len(), 1);

    // A client that declared neither capability is not asked.
    let (plain, _) = stdio(&fx, Probe::default()).await;
    let refused = plain
        .call_tool(call("test_sampling", json!({"prompt": PROMPT})))
        .await
        .unwrap();
    assert_eq!(refused.is_error, Some(true), "{}", text(&refused));
    assert!(
        text(&refused).contains("`sampling` capability"),
        "{}",
        text(&refused)
    );
    let not_asked = plain
        .call_tool(call("test_elicitation", json!({"message": "Who?"})))
        .await
        .unwrap();
    assert_eq!(not_asked.is_error, Some(true), "{}", text(&not_asked));
    assert!(
        text(&not_asked).contains("`elicitation` capability"),
        "{}",
        text(&not_asked)
    );
    {
        let seen = plain.service().seen();
        assert!(seen.sampling.is_empty() && seen.elicitation.is_empty());
    }
    for client in [sampler, asker, decliner, plain] {
        client.cancel().await.unwrap();
    }
}

/// JSON-RPC over the binary's stdin/stdout, byte for byte what the server writes.
struct RawStdio {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl RawStdio {
    async fn start(fx: &Fixture) -> Self {
        let mut child = fx
            .command(&["serve"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        fx.keep(
            "plugboard serve (raw stdio)".into(),
            child.stderr.take().unwrap(),
        );
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            _child: child,
            stdin,
            lines,
        }
    }

    async fn send(&mut self, message: Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
            .await
            .expect("a message within 10 s")
            .unwrap()
            .expect("the server closed stdout");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }
}

/// The schema exactly as it travels: every SEP-1330 enum form intact.
#[tokio::test]
async fn elicitation_enum_schema_arrives_intact() {
    let fx = fixture("");
    let mut raw = RawStdio::start(&fx).await;
    raw.send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {"elicitation": {}},
            "clientInfo": {"name": "raw", "version": "0"}
        }}),
    )
    .await;
    let init = raw.recv().await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    raw.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    raw.send(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "test_elicitation_sep1330_enums", "arguments": {}
        }}),
    )
    .await;

    let request = raw.recv().await;
    assert_eq!(request["method"], "elicitation/create", "{request}");
    let params = &request["params"];
    assert_eq!(params["mode"], "form", "{params}");
    assert_eq!(
        params["message"],
        "Test client enum handling - please choose"
    );
    let schema = &params["requestedSchema"];
    assert_eq!(schema["type"], "object");
    let p = &schema["properties"];
    let names: Vec<&String> = p.as_object().unwrap().keys().collect();
    assert_eq!(names.len(), 5, "{p}");
    assert_eq!(
        p["untitledSingle"],
        json!({"type": "string", "description": "Untitled single-select", "enum": ["option1", "option2", "option3"]})
    );
    assert_eq!(p["titledSingle"]["type"], "string");
    assert_eq!(
        p["titledSingle"]["oneOf"],
        json!([
            {"const": "value1", "title": "First Option"},
            {"const": "value2", "title": "Second Option"},
            {"const": "value3", "title": "Third Option"}
        ])
    );
    assert_eq!(p["legacyEnum"]["enum"], json!(["opt1", "opt2", "opt3"]));
    assert_eq!(
        p["legacyEnum"]["enumNames"],
        json!(["Option One", "Option Two", "Option Three"])
    );
    assert_eq!(p["untitledMulti"]["type"], "array");
    assert_eq!(
        p["untitledMulti"]["items"],
        json!({"type": "string", "enum": ["option1", "option2", "option3"]})
    );
    assert_eq!(p["titledMulti"]["type"], "array");
    assert_eq!(
        p["titledMulti"]["items"]["anyOf"],
        json!([
            {"const": "value1", "title": "First Choice"},
            {"const": "value2", "title": "Second Choice"},
            {"const": "value3", "title": "Third Choice"}
        ])
    );

    let answer = json!({"untitledSingle": "option2", "titledMulti": ["value1", "value3"]});
    raw.send(json!({"jsonrpc": "2.0", "id": request["id"], "result": {
        "action": "accept", "content": answer
    }}))
    .await;
    let response = raw.recv().await;
    assert_eq!(response["id"], 2, "{response}");
    assert_ne!(response["result"]["isError"], true, "{response}");
    let text = response["result"]["content"][0]["text"].as_str().unwrap();
    assert_eq!(
        elicited(text, "Elicitation completed: "),
        ("accept".to_owned(), answer)
    );
}

/// A 2026-07-28 client of the server at `url` (it must agree on that generation).
pub(crate) async fn discover(url: &str, probe: Probe) -> ProbeClient {
    let transport = StreamableHttpClientTransport::from_uri(format!("{url}/mcp"));
    let client = probe
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("discover over HTTP");
    assert_eq!(
        client.peer_info().unwrap().protocol_version,
        ProtocolVersion::V_2026_07_28
    );
    client
}

#[tokio::test]
async fn sampling_and_elicitation_through_input_required() {
    let fx = fixture("");
    let (_child, url) = fx.http(&[]).await;
    let sampler = discover(&url, Probe::sampling(REPLY)).await;
    let asker = discover(&url, ferris()).await;
    sampling_and_elicitation(&sampler, &asker).await;

    // One round at a time: the first answer is input_required, with a state to come back with.
    let first = sampler
        .call_tool_once(call("test_sampling", json!({"prompt": PROMPT})))
        .await
        .unwrap();
    let CallToolResponse::InputRequired(required) = first else {
        panic!("expected input_required, got {first:?}")
    };
    let requests = required.input_requests.clone().unwrap_or_default();
    assert_eq!(requests.len(), 1, "{required:?}");
    let (key, request) = requests.into_iter().next().unwrap();
    let InputRequest::CreateMessage(request) = request else {
        panic!("expected a sampling request, got {request:?}")
    };
    assert_eq!(request.params.max_tokens, 100);
    assert_eq!(
        serde_json::to_value(&request.params.messages).unwrap(),
        json!([{"role": "user", "content": {"type": "text", "text": PROMPT}}])
    );
    let state = required.request_state.clone().expect("a requestState");
    assert!(!state.is_empty());

    let answer = serde_json::to_value(CreateMessageResult::new(
        SamplingMessage::assistant_text("by hand"),
        "manual".into(),
    ))
    .unwrap();
    let retry = |state: &str, answers: Option<InputResponses>| {
        let mut params = call("test_sampling", json!({"prompt": PROMPT}));
        params.request_state = Some(state.to_owned());
        params.input_responses = answers;
        sampler.call_tool_once(params)
    };
    let answers = InputResponses::from([(key.clone(), answer)]);

    // A state the server never issued.
    let bogus = retry("not-a-state", Some(answers.clone())).await.unwrap();
    let CallToolResponse::Complete(bogus) = bogus else {
        panic!("expected a final result, got {bogus:?}")
    };
    assert_eq!(bogus.is_error, Some(true));
    assert!(
        text(&bogus).contains("no longer waiting"),
        "{}",
        text(&bogus)
    );

    // The real state still works after that, once; then it is spent.
    let done = retry(&state, Some(answers.clone())).await.unwrap();
    let CallToolResponse::Complete(done) = done else {
        panic!("expected a final result, got {done:?}")
    };
    assert_eq!(text(&done), "LLM response: by hand");
    let spent = retry(&state, Some(answers)).await.unwrap();
    let CallToolResponse::Complete(spent) = spent else {
        panic!("expected a final result, got {spent:?}")
    };
    assert_eq!(spent.is_error, Some(true));
    assert!(
        text(&spent).contains("no longer waiting"),
        "{}",
        text(&spent)
    );
    // Only the automatic round reached the handler; the manual rounds did not.
    assert_eq!(sampler.service().seen().sampling.len(), 1);

    // A client that declared no sampling capability is refused, not asked.
    let plain = discover(&url, Probe::default()).await;
    let refused = plain
        .call_tool(call("test_sampling", json!({"prompt": PROMPT})))
        .await
        .unwrap();
    assert_eq!(refused.is_error, Some(true), "{}", text(&refused));
    assert!(
        text(&refused).contains("`sampling` capability"),
        "{}",
        text(&refused)
    );
    assert!(plain.service().seen().sampling.is_empty());

    for client in [sampler, asker, plain] {
        client.cancel().await.unwrap();
    }
}
