//! The protocol surface the plugin contract carries, checked against the `conformance` fixture
//! plugin (the official suite's fixtures) through a real rmcp client and the built binary:
//! tool contents, logging, progress, schemas, resources, subscriptions, prompts, completions,
//! list changes. Sampling and elicitation are in `protocol_input.rs`, stream release in
//! `protocol_stream.rs`.
//!
//! The expected values are written out here, not imported from the plugin: these tests are the
//! oracle the suite is not (it passes some scenarios without looking at the content).

#![allow(deprecated)] // rmcp marks logging, sampling and resources/subscribe deprecated (SEP-2577).

use std::{
    process::Stdio,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use base64::Engine;
use rmcp::{
    ClientHandler, ErrorData, RoleClient, ServiceExt,
    model::{
        ClientCapabilities, ClientConfig, ClientRequest, CreateMessageRequestMethod,
        CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult,
        ElicitationAction, ErrorCode, GetPromptRequestParams, Implementation, LoggingLevel,
        LoggingMessageNotificationParam, ProgressNotificationParam, ReadResourceRequestParams,
        Request, ResourceContents, ResourceUpdatedNotificationParam, SamplingMessage, ServerResult,
        SetLevelRequestParams, SubscribeRequestParams, UnsubscribeRequestParams,
    },
    service::{
        NotificationContext, PeerRequestOptions, RequestContext, RunningService, ServiceError,
    },
    transport::TokioChildProcess,
};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::{
    scenario::call,
    support::{Fixture, args, sighup, text},
};

/// The suite's manifest, as `tests/conformance/run` uses it.
pub const MANIFEST: &str = include_str!("../conformance/plugins/conformance/plugin.toml");

/// A 1x1 red PNG, base64.
pub const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
/// Eight samples of 8-bit mono silence, base64.
pub const WAV: &str = "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgICAgICAgA==";
pub const WATCHED: &str = "test://watched-resource";
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// A home whose only plugin is `conformance`, with these `[settings]` lines. The watched
/// resource's timer is off unless `settings` turns it on.
pub fn fixture(settings: &str) -> Fixture {
    let fx = Fixture::empty();
    fx.manifest("conformance", &manifest(settings));
    fx
}

pub fn manifest(settings: &str) -> String {
    let settings = if settings.contains("watched_interval_ms") {
        settings.to_owned()
    } else {
        format!("watched_interval_ms = 0\n{settings}")
    };
    format!("{MANIFEST}\n[settings]\n{settings}\n")
}

pub type ProbeClient = RunningService<RoleClient, Probe>;

/// A client handler that answers sampling and elicitation as configured and keeps everything
/// the server sent it. Declares the `sampling` / `elicitation` capabilities only when it has
/// an answer for them.
#[derive(Clone, Default)]
pub struct Probe {
    pub sampling_reply: Option<String>,
    pub elicit_answer: Option<ElicitResult>,
    seen: Arc<Mutex<Seen>>,
    /// Wakes [`Probe::until`] after each thing kept.
    heard: Arc<Notify>,
}

#[derive(Default)]
pub struct Seen {
    pub progress: Vec<ProgressNotificationParam>,
    pub logs: Vec<LoggingMessageNotificationParam>,
    pub updated: Vec<String>,
    /// "tools", "resources" or "prompts", in arrival order.
    pub list_changed: Vec<&'static str>,
    pub sampling: Vec<CreateMessageRequestParams>,
    pub elicitation: Vec<ElicitRequestParams>,
}

impl Probe {
    pub fn sampling(reply: &str) -> Self {
        Self {
            sampling_reply: Some(reply.to_owned()),
            ..Self::default()
        }
    }

    pub fn eliciting(answer: ElicitResult) -> Self {
        Self {
            elicit_answer: Some(answer),
            ..Self::default()
        }
    }

    pub fn accepting(content: Value) -> Self {
        Self::eliciting(ElicitResult::new(ElicitationAction::Accept).with_content(content))
    }

    pub fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap()
    }

    /// Wait until `done` holds for what the client has received, checked now and after each
    /// thing it receives (an event, not a poll). The 10 s only make a broken test fail
    /// instead of hanging.
    pub async fn until(&self, what: &str, done: impl Fn(&Seen) -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let heard = self.heard.notified();
                tokio::pin!(heard);
                heard.as_mut().enable();
                if done(&self.seen()) {
                    return;
                }
                heard.await;
            }
        })
        .await;
        assert!(waited.is_ok(), "timed out waiting for {what}");
    }

    /// Keep something the server sent, and wake [`Probe::until`].
    fn keep(&self, keep: impl FnOnce(&mut Seen)) {
        keep(&mut self.seen());
        self.heard.notify_waiters();
    }
}

impl ClientHandler for Probe {
    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        if self.sampling_reply.is_some() {
            capabilities.sampling = Some(Default::default());
        }
        if self.elicit_answer.is_some() {
            capabilities.elicitation = Some(Default::default());
        }
        ClientConfig::new(capabilities, Implementation::new("probe", "0"))
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _cx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.keep(|s| s.sampling.push(params));
        match &self.sampling_reply {
            Some(reply) => Ok(CreateMessageResult::new(
                SamplingMessage::assistant_text(reply.clone()),
                "probe-model".into(),
            )
            .with_stop_reason(CreateMessageResult::STOP_REASON_END_TURN)),
            None => Err(ErrorData::method_not_found::<CreateMessageRequestMethod>()),
        }
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _cx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        self.keep(|s| s.elicitation.push(request));
        Ok(self
            .elicit_answer
            .clone()
            .unwrap_or_else(|| ElicitResult::new(ElicitationAction::Decline)))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        self.keep(|s| s.progress.push(params));
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        self.keep(|s| s.logs.push(params));
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        self.keep(|s| s.updated.push(params.uri));
    }

    async fn on_tool_list_changed(&self, _cx: NotificationContext<RoleClient>) {
        self.keep(|s| s.list_changed.push("tools"));
    }

    async fn on_resource_list_changed(&self, _cx: NotificationContext<RoleClient>) {
        self.keep(|s| s.list_changed.push("resources"));
    }

    async fn on_prompt_list_changed(&self, _cx: NotificationContext<RoleClient>) {
        self.keep(|s| s.list_changed.push("prompts"));
    }
}

/// `plugboard serve` on stdio (a 2025-11-25 session) with `probe` as the client.
pub async fn stdio(fx: &Fixture, probe: Probe) -> (ProbeClient, u32) {
    let (transport, stderr) = TokioChildProcess::builder(fx.command(&["serve"]))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = transport.id().unwrap();
    fx.keep(
        format!("plugboard serve (probe, pid {pid})"),
        stderr.expect("stderr piped"),
    );
    let client = probe.serve(transport).await.expect("initialize over stdio");
    (client, pid)
}

/// The JSON-RPC error a request failed with.
pub fn rpc_error<T: std::fmt::Debug>(outcome: Result<T, ServiceError>) -> ErrorData {
    match outcome {
        Err(ServiceError::McpError(e)) => e,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

pub fn decode(b64: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("valid base64")
}

/// A result's content blocks as the client received them, as JSON.
fn blocks(result: &rmcp::model::CallToolResult) -> Vec<Value> {
    result
        .content
        .iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .collect()
}

async fn call_ok(client: &ProbeClient, name: &str) -> rmcp::model::CallToolResult {
    let result = client.call_tool(call(name, json!({}))).await.unwrap();
    assert_ne!(result.is_error, Some(true), "{name}: {}", text(&result));
    result
}

#[tokio::test]
async fn tool_contents_are_exact() {
    let fx = fixture("");
    let (client, _) = stdio(&fx, Probe::default()).await;
    assert_eq!(
        client.peer_info().unwrap().protocol_version,
        rmcp::model::ProtocolVersion::V_2025_11_25
    );

    let simple = call_ok(&client, "test_simple_text").await;
    assert_eq!(
        blocks(&simple),
        [json!({"type": "text", "text": "This is a simple text response for testing."})]
    );

    let image = call_ok(&client, "test_image_content").await;
    let image = blocks(&image);
    assert_eq!(image.len(), 1, "{image:?}");
    assert_eq!(image[0]["type"], "image");
    assert_eq!(image[0]["mimeType"], "image/png");
    assert_eq!(image[0]["data"], PNG);
    assert!(decode(image[0]["data"].as_str().unwrap()).starts_with(PNG_SIGNATURE));

    let audio = call_ok(&client, "test_audio_content").await;
    let audio = blocks(&audio);
    assert_eq!(audio.len(), 1, "{audio:?}");
    assert_eq!(audio[0]["type"], "audio");
    assert_eq!(audio[0]["mimeType"], "audio/wav");
    assert_eq!(audio[0]["data"], WAV);
    let wav = decode(audio[0]["data"].as_str().unwrap());
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(&wav[8..12], b"WAVE");

    let embedded = call_ok(&client, "test_embedded_resource").await;
    let embedded = blocks(&embedded);
    assert_eq!(embedded.len(), 1, "{embedded:?}");
    assert_eq!(embedded[0]["type"], "resource");
    assert_eq!(
        embedded[0]["resource"],
        json!({
            "uri": "test://embedded-resource",
            "mimeType": "text/plain",
            "text": "This is an embedded resource content."
        })
    );

    let multiple = call_ok(&client, "test_multiple_content_types").await;
    let multiple = blocks(&multiple);
    let kinds: Vec<&str> = multiple
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["text", "image", "resource"]);
    assert_eq!(multiple[0]["text"], "Multiple content types test:");
    assert_eq!(multiple[1]["data"], PNG);
    assert_eq!(multiple[1]["mimeType"], "image/png");
    let resource = &multiple[2]["resource"];
    assert_eq!(resource["mimeType"], "application/json");
    let data: Value = serde_json::from_str(resource["text"].as_str().unwrap()).unwrap();
    assert_eq!(data, json!({"test": "data", "value": 123}));

    let failed = client
        .call_tool(call("test_error_handling", json!({})))
        .await
        .unwrap();
    assert_eq!(failed.is_error, Some(true));
    assert_eq!(
        text(&failed),
        "This tool intentionally returns an error for testing"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn logging_follows_the_level_and_progress_is_reported() {
    let fx = fixture("");
    let probe = Probe::default();
    let (client, _) = stdio(&fx, probe.clone()).await;

    client
        .set_level(SetLevelRequestParams::new(LoggingLevel::Info))
        .await
        .unwrap();
    let logged = call_ok(&client, "test_tool_with_logging").await;
    assert_eq!(text(&logged), "Tool with logging executed successfully");
    probe.until("3 log messages", |s| s.logs.len() >= 3).await;
    {
        let seen = probe.seen();
        let messages: Vec<(&Value, Option<&str>, LoggingLevel)> = seen
            .logs
            .iter()
            .map(|l| (&l.data, l.logger.as_deref(), l.level))
            .collect();
        let info = LoggingLevel::Info;
        assert_eq!(
            messages,
            [
                (&json!("Tool execution started"), Some("conformance"), info),
                (&json!("Tool processing data"), Some("conformance"), info),
                (
                    &json!("Tool execution completed"),
                    Some("conformance"),
                    info
                ),
            ]
        );
    }

    // Above the messages' level: none of them is sent.
    client
        .set_level(SetLevelRequestParams::new(LoggingLevel::Error))
        .await
        .unwrap();
    call_ok(&client, "test_tool_with_logging").await;
    // Notifications travel before the result on stdio; one more round trip and a moment for
    // the client to dispatch whatever came.
    client.list_all_tools().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        probe.seen().logs.len(),
        3,
        "log messages below the session's level were sent"
    );

    // Progress, with the token the client sent.
    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(call(
                "test_tool_with_progress",
                json!({}),
            ))),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    let token = handle.progress_token.clone();
    let ServerResult::CallToolResult(done) = handle.await_response().await.unwrap() else {
        panic!("not a tool result")
    };
    assert_eq!(text(&done), "Tool with progress executed successfully");
    probe
        .until("3 progress notifications", |s| s.progress.len() >= 3)
        .await;
    let progress: Vec<(f64, Option<f64>)> = probe
        .seen()
        .progress
        .iter()
        .map(|p| {
            assert_eq!(p.progress_token, token);
            (p.progress, p.total)
        })
        .collect();
    assert_eq!(
        progress,
        [
            (0.0, Some(100.0)),
            (50.0, Some(100.0)),
            (100.0, Some(100.0))
        ]
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn json_schema_2020_12_is_published_and_enforced() {
    let fx = fixture("");
    let (client, _) = stdio(&fx, Probe::default()).await;
    let tools = client.list_all_tools().await.unwrap();
    let tool = tools
        .iter()
        .find(|t| t.name == "json_schema_2020_12_tool")
        .expect("json_schema_2020_12_tool listed");
    let schema = Value::Object((*tool.input_schema).clone());
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(
        schema["$defs"]["address"],
        json!({
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}}
        })
    );
    assert_eq!(
        schema["properties"]["address"],
        json!({"$ref": "#/$defs/address"})
    );
    assert_eq!(schema["additionalProperties"], false);

    let extra = client
        .call_tool(call(
            "json_schema_2020_12_tool",
            json!({"name": "Ann", "nickname": "A"}),
        ))
        .await
        .unwrap();
    assert_eq!(extra.is_error, Some(true));
    let message = text(&extra);
    assert!(
        message.contains("invalid arguments for `json_schema_2020_12_tool`")
            && message.contains("nickname"),
        "{message}"
    );

    // The $ref into $defs is followed: the address's fields are checked.
    let wrong = client
        .call_tool(call(
            "json_schema_2020_12_tool",
            json!({"address": {"city": 5}}),
        ))
        .await
        .unwrap();
    assert_eq!(wrong.is_error, Some(true), "{}", text(&wrong));
    assert!(text(&wrong).contains("/address/city"), "{}", text(&wrong));

    let valid = json!({"name": "Ann", "address": {"street": "1 Main St", "city": "Springfield"}});
    let ok = client
        .call_tool(call("json_schema_2020_12_tool", valid.clone()))
        .await
        .unwrap();
    assert_ne!(ok.is_error, Some(true), "{}", text(&ok));
    let received = text(&ok);
    let echoed: Value = serde_json::from_str(
        received
            .strip_prefix("Received: ")
            .unwrap_or_else(|| panic!("{received}")),
    )
    .unwrap();
    assert_eq!(echoed, valid);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn resources_are_listed_and_read_exactly() {
    let fx = fixture("");
    let (client, _) = stdio(&fx, Probe::default()).await;

    let resources = client.list_all_resources().await.unwrap();
    let mut uris: Vec<&str> = resources.iter().map(|r| r.uri.as_str()).collect();
    uris.sort_unstable();
    assert_eq!(
        uris,
        [
            "test://static-binary",
            "test://static-text",
            "test://watched-resource"
        ]
    );
    for (uri, mime) in [
        ("test://static-text", "text/plain"),
        ("test://static-binary", "image/png"),
        (WATCHED, "text/plain"),
    ] {
        let r = resources.iter().find(|r| r.uri == uri).unwrap();
        assert!(!r.name.is_empty(), "{uri} has no name");
        assert!(
            r.description.as_deref().is_some_and(|d| !d.is_empty()),
            "{uri} has no description"
        );
        assert_eq!(r.mime_type.as_deref(), Some(mime), "{uri}");
    }

    let templates = client.list_all_resource_templates().await.unwrap();
    assert_eq!(templates.len(), 1, "{templates:?}");
    assert_eq!(templates[0].uri_template, "test://template/{id}/data");
    assert_eq!(templates[0].mime_type.as_deref(), Some("application/json"));

    let read = |uri: &str| client.read_resource(ReadResourceRequestParams::new(uri));

    let static_text = read("test://static-text").await.unwrap();
    assert_eq!(static_text.contents.len(), 1);
    let ResourceContents::TextResourceContents {
        uri,
        mime_type,
        text,
        ..
    } = &static_text.contents[0]
    else {
        panic!("not text: {static_text:?}")
    };
    assert_eq!(uri, "test://static-text");
    assert_eq!(mime_type.as_deref(), Some("text/plain"));
    assert_eq!(text, "This is the content of the static text resource.");

    let binary = read("test://static-binary").await.unwrap();
    assert_eq!(binary.contents.len(), 1);
    let ResourceContents::BlobResourceContents {
        uri,
        mime_type,
        blob,
        ..
    } = &binary.contents[0]
    else {
        panic!("not a blob: {binary:?}")
    };
    assert_eq!(uri, "test://static-binary");
    assert_eq!(mime_type.as_deref(), Some("image/png"));
    assert_eq!(blob, PNG);
    assert!(decode(blob).starts_with(PNG_SIGNATURE));

    let templated = read("test://template/123/data").await.unwrap();
    assert_eq!(templated.contents.len(), 1);
    let ResourceContents::TextResourceContents {
        uri,
        mime_type,
        text,
        ..
    } = &templated.contents[0]
    else {
        panic!("not text: {templated:?}")
    };
    assert_eq!(uri, "test://template/123/data");
    assert_eq!(mime_type.as_deref(), Some("application/json"));
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap(),
        json!({"id": "123", "templateTest": true, "data": "Data for ID: 123"})
    );

    for unknown in ["test://nope", "test://template/1/2/data"] {
        let error = rpc_error(read(unknown).await);
        assert_eq!(error.code, ErrorCode::RESOURCE_NOT_FOUND, "{error:?}");
        assert!(error.message.contains(unknown), "{}", error.message);
    }
    client.cancel().await.unwrap();
}

/// The version number in the watched resource's text.
async fn watched_version(client: &ProbeClient) -> u64 {
    let read = client
        .read_resource(ReadResourceRequestParams::new(WATCHED))
        .await
        .unwrap();
    let ResourceContents::TextResourceContents { text, .. } = &read.contents[0] else {
        panic!("not text: {read:?}")
    };
    text.strip_prefix("Watched resource, version ")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unexpected text {text:?}"))
}

#[tokio::test]
async fn subscriptions_deliver_updates_until_unsubscribed() {
    const INTERVAL_MS: u64 = 100;
    let fx = fixture(&format!("watched_interval_ms = {INTERVAL_MS}"));
    let probe = Probe::default();
    let (client, _) = stdio(&fx, probe.clone()).await;

    // Not subscribed yet: the resource changes, but nobody is told.
    let before = watched_version(&client).await;
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS * 3)).await;
    assert!(
        probe.seen().updated.is_empty(),
        "updates without a subscription"
    );

    client
        .subscribe(SubscribeRequestParams::new(WATCHED))
        .await
        .unwrap();
    probe
        .until("two notifications/resources/updated", |s| {
            s.updated.len() >= 2
        })
        .await;
    assert!(
        probe.seen().updated.iter().all(|u| u == WATCHED),
        "{:?}",
        probe.seen().updated
    );
    let after = watched_version(&client).await;
    assert!(
        after > before,
        "the resource did not change: {before} then {after}"
    );

    client
        .unsubscribe(UnsubscribeRequestParams::new(WATCHED))
        .await
        .unwrap();
    // Let a notification already on its way arrive, then expect silence.
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS)).await;
    let count = probe.seen().updated.len();
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS * 4)).await;
    assert_eq!(
        probe.seen().updated.len(),
        count,
        "updates kept coming after unsubscribe"
    );
    assert!(watched_version(&client).await > after, "the timer stopped");

    let error = rpc_error(
        client
            .subscribe(SubscribeRequestParams::new("test://nope"))
            .await,
    );
    assert_eq!(error.code, ErrorCode::RESOURCE_NOT_FOUND, "{error:?}");
    assert!(error.message.contains("test://nope"), "{}", error.message);
    client.cancel().await.unwrap();
}

/// The messages of a `prompts/get` result, as JSON.
async fn prompt(client: &ProbeClient, name: &str, arguments: Value) -> Result<Value, ErrorData> {
    let mut params = GetPromptRequestParams::new(name);
    if arguments != json!({}) {
        params = params.with_arguments(args(arguments));
    }
    match client.get_prompt(params).await {
        Ok(result) => Ok(serde_json::to_value(result.messages).unwrap()),
        Err(e) => Err(rpc_error::<()>(Err(e))),
    }
}

#[tokio::test]
async fn prompts_are_listed_and_rendered_exactly() {
    let fx = fixture("");
    let (client, _) = stdio(&fx, Probe::default()).await;

    let prompts = client.list_all_prompts().await.unwrap();
    let mut names: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "test_prompt_with_arguments",
            "test_prompt_with_embedded_resource",
            "test_prompt_with_image",
            "test_simple_prompt"
        ]
    );
    let with_args = prompts
        .iter()
        .find(|p| p.name == "test_prompt_with_arguments")
        .unwrap();
    let declared: Vec<(&str, Option<bool>)> = with_args
        .arguments
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|a| (a.name.as_str(), a.required))
        .collect();
    assert_eq!(declared, [("arg1", Some(true)), ("arg2", Some(true))]);

    let user_text = |t: &str| json!({"role": "user", "content": {"type": "text", "text": t}});

    assert_eq!(
        prompt(&client, "test_simple_prompt", json!({}))
            .await
            .unwrap(),
        json!([user_text("This is a simple prompt for testing.")])
    );
    assert_eq!(
        prompt(
            &client,
            "test_prompt_with_arguments",
            json!({"arg1": "hello", "arg2": "world"})
        )
        .await
        .unwrap(),
        json!([user_text(
            "Prompt with arguments: arg1='hello', arg2='world'"
        )])
    );

    let embedded = prompt(
        &client,
        "test_prompt_with_embedded_resource",
        json!({"resourceUri": "test://example/doc"}),
    )
    .await
    .unwrap();
    assert_eq!(embedded.as_array().unwrap().len(), 2, "{embedded}");
    assert_eq!(embedded[0]["role"], "user");
    assert_eq!(embedded[0]["content"]["type"], "resource");
    assert_eq!(
        embedded[0]["content"]["resource"],
        json!({
            "uri": "test://example/doc",
            "mimeType": "text/plain",
            "text": "Embedded resource content for testing."
        })
    );
    assert_eq!(
        embedded[1],
        user_text("Please process the embedded resource above.")
    );

    let image = prompt(&client, "test_prompt_with_image", json!({}))
        .await
        .unwrap();
    assert_eq!(image.as_array().unwrap().len(), 2, "{image}");
    assert_eq!(image[0]["role"], "user");
    assert_eq!(image[0]["content"]["type"], "image");
    assert_eq!(image[0]["content"]["mimeType"], "image/png");
    assert_eq!(image[0]["content"]["data"], PNG);
    assert_eq!(image[1], user_text("Please analyze the image above."));

    let missing = prompt(&client, "test_prompt_with_arguments", json!({"arg1": "x"}))
        .await
        .unwrap_err();
    assert_eq!(missing.code, ErrorCode::INVALID_PARAMS, "{missing:?}");
    assert!(missing.message.contains("arg2"), "{}", missing.message);
    assert!(!missing.message.contains("arg1"), "{}", missing.message);

    let unknown = prompt(&client, "test_no_such_prompt", json!({}))
        .await
        .unwrap_err();
    assert_eq!(unknown.code, ErrorCode::INVALID_PARAMS, "{unknown:?}");
    for name in [
        "test_no_such_prompt",
        "test_simple_prompt",
        "test_prompt_with_arguments",
    ] {
        assert!(unknown.message.contains(name), "{}", unknown.message);
    }
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn completions_come_from_the_plugin() {
    let fx = fixture("");
    let (client, _) = stdio(&fx, Probe::default()).await;

    let arg1 = client
        .complete_prompt_argument("test_prompt_with_arguments", "arg1", "par", None)
        .await
        .unwrap();
    assert_eq!(arg1.values, ["paris", "park", "party"]);
    assert!(!arg1.values.iter().any(|v| v == "test"));

    let id = client
        .complete_resource_argument("test://template/{id}/data", "id", "1", None)
        .await
        .unwrap();
    assert_eq!(id.values, ["1", "123"]);

    let error = rpc_error(
        client
            .complete_prompt_argument("test_prompt_with_arguments", "arg9", "x", None)
            .await,
    );
    assert_eq!(error.code, ErrorCode::INVALID_PARAMS, "{error:?}");
    assert!(error.message.contains("arg9"), "{}", error.message);

    let error = rpc_error(
        client
            .complete_resource_argument("test://template/{id}/data", "name", "x", None)
            .await,
    );
    assert_eq!(error.code, ErrorCode::INVALID_PARAMS, "{error:?}");
    assert!(error.message.contains("name"), "{}", error.message);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn reconnection_over_stdio_has_no_stream_to_release() {
    let fx = fixture("reconnection_ms = 10");
    let (client, _) = stdio(&fx, Probe::default()).await;
    let result = call_ok(&client, "test_reconnection").await;
    assert_eq!(
        text(&result),
        "Reconnection test completed (this transport has no stream to release)"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn enabling_the_plugin_announces_its_resources_and_prompts() {
    let fx = Fixture::empty();
    fx.manifest(
        "conformance",
        &manifest("").replace("kind = \"builtin\"", "kind = \"builtin\"\nenabled = false"),
    );
    let probe = Probe::default();
    let (client, pid) = stdio(&fx, probe.clone()).await;
    assert!(client.list_all_resources().await.unwrap().is_empty());
    assert!(client.list_all_prompts().await.unwrap().is_empty());

    fx.manifest("conformance", &manifest(""));
    sighup(pid);
    probe
        .until("resources, prompts and tools list_changed", |s| {
            ["resources", "prompts", "tools"]
                .iter()
                .all(|k| s.list_changed.contains(k))
        })
        .await;
    assert_eq!(client.list_all_resources().await.unwrap().len(), 3);
    assert_eq!(client.list_all_prompts().await.unwrap().len(), 4);
    assert_eq!(client.list_all_resource_templates().await.unwrap().len(), 1);
    client.cancel().await.unwrap();
}

/// 2026-07-28 over Streamable HTTP: resources, prompts and completions answer as on sessions,
/// and `subscriptions/listen` carries resource updates for the URIs the server acknowledged.
#[tokio::test]
async fn stateless_generation_reads_resources_and_hears_updates() {
    use rmcp::{
        ClientLifecycleMode, ClientServiceExt,
        model::{
            ArgumentInfo, CompleteRequestParams, ProtocolVersion, Reference, ServerNotification,
            SubscriptionFilter,
        },
        transport::StreamableHttpClientTransport,
    };

    let fx = fixture("watched_interval_ms = 100");
    let (_child, url) = fx.http(&[]).await;
    let client = Probe::default()
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_uri(format!("{url}/mcp")),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("discover over HTTP");

    let read = client
        .read_resource(ReadResourceRequestParams::new("test://template/42/data"))
        .await
        .unwrap();
    let ResourceContents::TextResourceContents { text, .. } = &read.contents[0] else {
        panic!("{read:?}")
    };
    assert_eq!(
        serde_json::from_str::<Value>(text.as_str()).unwrap(),
        json!({"id": "42", "templateTest": true, "data": "Data for ID: 42"})
    );
    let prompt = client
        .get_prompt(
            GetPromptRequestParams::new("test_prompt_with_arguments")
                .with_arguments(args(json!({"arg1": "a", "arg2": "b"}))),
        )
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&prompt.messages[0].content).unwrap()["text"],
        "Prompt with arguments: arg1='a', arg2='b'"
    );
    let completion = client
        .complete(CompleteRequestParams::new(
            Reference::for_prompt("test_prompt_with_arguments"),
            ArgumentInfo::new("arg1", "pa"),
        ))
        .await
        .unwrap();
    assert_eq!(completion.completion.values, ["paris", "park", "party"]);

    let mut subscription = client
        .peer()
        .listen(
            SubscriptionFilter::builder()
                .resources_list_changed()
                .prompts_list_changed()
                .resource_subscriptions([WATCHED.to_owned(), "test://nope".to_owned()])
                .build(),
        )
        .await
        .expect("listen");
    // Only the resource somebody serves is acknowledged.
    assert_eq!(
        subscription.acknowledged().resource_subscriptions,
        Some(vec![WATCHED.to_owned()])
    );
    let note = tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .expect("an update within 10 s")
        .expect("subscription alive")
        .expect("a notification");
    let ServerNotification::ResourceUpdatedNotification(updated) = note else {
        panic!("{note:?}")
    };
    assert_eq!(updated.params.uri, WATCHED);
    drop(subscription);
    client.cancel().await.unwrap();
}

/// The legacy HTTP+SSE transport carries the same: a resource, a prompt, and a tool that asks
/// the client's model (the request travels on the SSE stream, the answer on `POST /message`).
#[tokio::test]
async fn legacy_sse_carries_resources_prompts_and_sampling() {
    let fx = fixture("");
    let (_child, url) = fx.http(&[]).await;
    let probe = Probe::sampling("over SSE");
    let client = probe
        .clone()
        .serve(crate::sse_client::connect(&url).await)
        .await
        .expect("initialize over legacy SSE");
    let read = client
        .read_resource(ReadResourceRequestParams::new("test://static-text"))
        .await
        .unwrap();
    assert!(
        matches!(&read.contents[0], ResourceContents::TextResourceContents { text, .. }
            if text == "This is the content of the static text resource."),
        "{read:?}"
    );
    let prompt = client
        .get_prompt(GetPromptRequestParams::new("test_simple_prompt"))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&prompt.messages[0].content).unwrap()["text"],
        "This is a simple prompt for testing."
    );
    let sampled = client
        .call_tool(call("test_sampling", json!({"prompt": "Hi"})))
        .await
        .unwrap();
    assert_eq!(text(&sampled), "LLM response: over SSE");
    assert_eq!(probe.seen().sampling.len(), 1);
    client.cancel().await.unwrap();
}
