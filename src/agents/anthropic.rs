//! Anthropic Messages (`POST {base}/v1/messages`), the API of Claude models. The base URL has
//! no `/v1`, as in Anthropic's own SDK.
//!
//! An assistant turn goes back as the content array the model wrote ([`AssistantTurn::raw`]),
//! so thinking blocks keep their signatures; the results of its tool calls go back as one user
//! message of `tool_result` blocks. A streamed answer is rebuilt block by block into that same
//! content array, so it ends in the same [`Reply`] the whole answer would have given.
//!
//! Long because it holds one wire format whole (request, answer, stream, errors) and its
//! unit tests (from `#[cfg(test)]` on): split by direction, each half would need the other's types.
//!
//! One file: the wire format (request, answer, stream events) is ~560 lines and the rest are its
//! tests against recorded bodies; a split would put a format's encoder and decoder apart.

use std::collections::BTreeMap;

use futures::{FutureExt, StreamExt, future::BoxFuture, stream::BoxStream};
use serde_json::{Value, json};

use crate::net::{RetryPolicy, SecretString, Secrets};

use super::{
    Agent, AgentError, AssistantTurn, Conversation, Finish, Message, Reply, StreamEvent, ToolCall,
    ToolResult, Usage, models, parse_arguments, request,
    sse::{self, Decoder, Event},
};

/// The API version every request names (required header).
pub(super) const VERSION: &str = "2023-06-01";

/// `max_tokens` is required by the API; used when the conversation sets none.
const DEFAULT_MAX_TOKENS: u32 = 4096;

/// `Debug` shows no key: it is a [`SecretString`].
#[derive(Debug)]
pub struct Anthropic {
    provider: String,
    model: String,
    /// Without `/v1`: `https://api.anthropic.com`.
    base_url: String,
    /// Proxies in front of the API may need none.
    key: Option<SecretString>,
    /// The key again, to mask out of error texts (a body may repeat the request's headers).
    secrets: Secrets,
    retry: RetryPolicy,
}

impl Anthropic {
    pub fn new(
        provider: &str,
        model: &str,
        base_url: &str,
        key: Option<SecretString>,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            provider: provider.to_owned(),
            model: model.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            secrets: Secrets::new(key.clone()),
            key,
            retry,
        }
    }

    fn body(&self, conversation: &Conversation, stream: bool) -> Value {
        let max_tokens = match conversation.max_tokens {
            0 => DEFAULT_MAX_TOKENS,
            n => n,
        };
        let mut body = json!({
            "model": self.model,
            "max_tokens": max_tokens,
            "messages": messages(&conversation.messages),
            "stream": stream,
        });
        if let Some(system) = &conversation.system {
            body["system"] = system.clone().into();
        }
        if let Some(t) = conversation.temperature {
            body["temperature"] = temperature(t);
        }
        if !conversation.tools.is_empty() {
            body["tools"] = conversation
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name, "description": t.description, "input_schema": t.parameters,
                    })
                })
                .collect();
        }
        body
    }

    fn request(&self, body: &Value) -> BoxFuture<'_, Result<reqwest::Response, AgentError>> {
        let url = format!("{}/v1/messages", self.base_url);
        let body = body.clone();
        async move {
            let decorate =
                |builder: reqwest::RequestBuilder| {
                    let builder = builder.header("anthropic-version", VERSION);
                    match &self.key {
                        Some(key) => Ok(builder
                            .header("x-api-key", request::key_header(&self.provider, "", key)?)),
                        None => Ok(builder),
                    }
                };
            request::post_json(
                &self.provider,
                &self.retry,
                &self.secrets,
                &url,
                &body,
                decorate,
                parse_error,
            )
            .await
        }
        .boxed()
    }
}

impl Agent for Anthropic {
    fn provider(&self) -> &str {
        &self.provider
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn supports_tools(&self) -> bool {
        true
    }

    fn send<'a>(
        &'a self,
        conversation: &'a Conversation,
    ) -> BoxFuture<'a, Result<Reply, AgentError>> {
        async move {
            let response = self.request(&self.body(conversation, false)).await?;
            let value = request::json_body(&self.provider, response).await?;
            parse_reply(&self.provider, &self.model, &value)
        }
        .map(|result| result.map_err(|e| e.masked(&self.secrets)))
        .boxed()
    }

    fn stream<'a>(
        &'a self,
        conversation: &'a Conversation,
    ) -> BoxStream<'a, Result<StreamEvent, AgentError>> {
        let body = self.body(conversation, true);
        let start = async move { self.request(&body).await }.boxed();
        sse::drive(
            &self.provider,
            start,
            Blocks::new(&self.provider, &self.model),
        )
        .map(|item| item.map_err(|e| e.masked(&self.secrets)))
        .boxed()
    }

    fn list_models(&self) -> BoxFuture<'_, Result<models::ModelList, models::ListError>> {
        let lister = models::Lister {
            wire: models::Wire::Anthropic,
            provider: &self.provider,
            base_url: &self.base_url,
            key: self.key.as_ref(),
            secrets: &self.secrets,
            retry: &self.retry,
        };
        async move { lister.list().await }.boxed()
    }
}

/// A temperature as the decimal it was written as (`0.2`, not `0.20000000298023224`).
fn temperature(t: f32) -> Value {
    t.to_string().parse::<f64>().unwrap_or(f64::from(t)).into()
}

/// The conversation's messages in Anthropic's shape: roles `user` and `assistant` only.
fn messages(messages: &[Message]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for message in messages {
        match message {
            Message::User(text) => {
                // After tool results the user speaks in the same message, after the
                // `tool_result` blocks (which must come first): two user messages in a row are
                // not what the API expects.
                let results = out
                    .last_mut()
                    .filter(|m| m["role"] == "user")
                    .and_then(|m| m.get_mut("content"))
                    .and_then(Value::as_array_mut);
                match results {
                    Some(blocks) => {
                        // Empty text blocks are rejected.
                        if !text.is_empty() {
                            blocks.push(json!({"type": "text", "text": text}));
                        }
                    }
                    None => out.push(json!({"role": "user", "content": text})),
                }
            }
            Message::Assistant(turn) => {
                let content = assistant_content(turn);
                // An empty answer (it happens, e.g. `end_turn` right after tool results) cannot
                // be sent back: the API rejects empty content. Leaving it out loses nothing.
                if content.as_array().is_some_and(|c| !c.is_empty()) {
                    out.push(json!({"role": "assistant", "content": content}));
                }
            }
            Message::ToolResults(results) if results.is_empty() => {}
            Message::ToolResults(results) => {
                let blocks: Vec<Value> = results.iter().map(tool_result).collect();
                out.push(json!({"role": "user", "content": blocks}));
            }
        }
    }
    out
}

fn tool_result(r: &ToolResult) -> Value {
    let mut block =
        json!({"type": "tool_result", "tool_use_id": r.call_id, "is_error": r.is_error});
    // `content` is optional; an empty string is better left out than risked.
    if !r.content.is_empty() {
        block["content"] = r.content.clone().into();
    }
    block
}

/// The content array of an assistant turn: the one the model wrote when we have it (thinking
/// blocks and their signatures must go back unchanged), else built from text and tool calls.
fn assistant_content(turn: &AssistantTurn) -> Value {
    if let Some(raw) = turn.raw.as_ref().and_then(raw_content) {
        return raw.clone();
    }
    let mut blocks = Vec::new();
    if !turn.text.is_empty() {
        blocks.push(json!({"type": "text", "text": turn.text}));
    }
    for call in &turn.tool_calls {
        // `input` must be an object; arguments the model wrote that were not an object cannot
        // be sent back as such.
        let input = match &call.arguments {
            Value::Object(_) => call.arguments.clone(),
            _ => json!({}),
        };
        blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
    }
    Value::Array(blocks)
}

/// `raw` as an Anthropic content array: the array itself, or a whole message's `content`.
/// Anything else (another provider's message) is not ours to echo.
fn raw_content(raw: &Value) -> Option<&Value> {
    let content = match raw {
        Value::Array(_) => raw,
        Value::Object(message) => message.get("content")?,
        _ => return None,
    };
    let blocks = content.as_array()?;
    blocks
        .iter()
        .all(|b| b.get("type").is_some_and(Value::is_string))
        .then_some(content)
}

/// An error answer: `{"type":"error","error":{"type","message"},"request_id"}`.
pub fn parse_error(provider: &str, status: u16, body: &[u8]) -> AgentError {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    envelope_error(provider, status, &value).unwrap_or_else(|| AgentError::Api {
        provider: provider.to_owned(),
        status,
        kind: String::new(),
        message: request::body_excerpt(body),
        retry_after: None,
    })
}

fn envelope_error(provider: &str, status: u16, value: &Value) -> Option<AgentError> {
    let error = value.get("error").filter(|e| e.is_object())?;
    let kind = error["type"].as_str().unwrap_or("").to_owned();
    let message = error["message"].as_str().unwrap_or("no message").to_owned();
    Some(AgentError::Api {
        provider: provider.to_owned(),
        // An error inside a 200 answer: the status its type stands for, so that retries and
        // advice treat it as the same error sent with its own status would be.
        status: if status == 200 {
            status_of(&kind)
        } else {
            status
        },
        kind,
        message,
        retry_after: None,
    })
}

/// The HTTP status Anthropic documents for an error type.
fn status_of(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// A whole message: text blocks joined, `tool_use` blocks as calls, the content array kept.
pub(crate) fn parse_reply(provider: &str, model: &str, value: &Value) -> Result<Reply, AgentError> {
    if value["type"] == "error"
        && let Some(error) = envelope_error(provider, 200, value)
    {
        return Err(error);
    }
    let content = value
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| AgentError::Malformed {
            provider: provider.to_owned(),
            message: "the answer has no content".into(),
        })?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in content {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or("")),
            Some("tool_use") => tool_calls.push(ToolCall {
                id: block["id"].as_str().unwrap_or("").to_owned(),
                name: block["name"].as_str().unwrap_or("").to_owned(),
                arguments: match block.get("input") {
                    Some(input) if !input.is_null() => input.clone(),
                    _ => json!({}),
                },
            }),
            // Thinking, redacted thinking, server tools: kept in `raw` only.
            _ => {}
        }
    }
    let finish = finish(value["stop_reason"].as_str(), !tool_calls.is_empty());
    Ok(Reply {
        turn: AssistantTurn {
            text,
            tool_calls,
            reasoning: None,
            raw: Some(Value::Array(content.clone())),
        },
        finish,
        usage: Usage {
            input_tokens: value["usage"]["input_tokens"].as_u64().unwrap_or(0),
            output_tokens: value["usage"]["output_tokens"].as_u64().unwrap_or(0),
        },
        model: value["model"].as_str().unwrap_or(model).to_owned(),
    })
}

fn finish(reason: Option<&str>, has_calls: bool) -> Finish {
    match reason {
        Some("end_turn") | Some("stop_sequence") => Finish::Stop,
        Some("tool_use") => Finish::ToolCalls,
        Some("max_tokens") => Finish::Length,
        None if has_calls => Finish::ToolCalls,
        None => Finish::Stop,
        Some(other) => Finish::Other(other.to_owned()),
    }
}

/// A content block being streamed: the block as `content_block_start` gave it, grown by its
/// deltas, and the `input` JSON of a tool call as written so far.
struct Block {
    value: Value,
    input: Option<String>,
}

/// Reads a streamed message: `message_start`, then per content block `content_block_start`,
/// deltas and `content_block_stop`, then `message_delta` (stop reason, usage) and
/// `message_stop`. Text and thinking pass on at once; the blocks are rebuilt into the content
/// array a whole answer would have had.
pub(crate) struct Blocks {
    provider: String,
    model: String,
    blocks: BTreeMap<u64, Block>,
    stop_reason: Option<String>,
    usage: Usage,
    complete: bool,
}

impl Blocks {
    pub(crate) fn new(provider: &str, model: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            model: model.to_owned(),
            blocks: BTreeMap::new(),
            stop_reason: None,
            usage: Usage::default(),
            complete: false,
        }
    }

    fn delta(&mut self, index: u64, delta: &Value) -> Option<StreamEvent> {
        let block = self.blocks.get_mut(&index)?;
        let grow = |value: &mut Value, key: &str, piece: &str| {
            let mut text = value[key].as_str().unwrap_or("").to_owned();
            text.push_str(piece);
            value[key] = text.into();
        };
        match delta["type"].as_str()? {
            "text_delta" => {
                let text = delta["text"].as_str().filter(|t| !t.is_empty())?;
                grow(&mut block.value, "text", text);
                Some(StreamEvent::Text(text.to_owned()))
            }
            "input_json_delta" => {
                let fragment = delta["partial_json"].as_str().unwrap_or("");
                block.input.get_or_insert_default().push_str(fragment);
                None
            }
            "thinking_delta" => {
                let text = delta["thinking"].as_str().filter(|t| !t.is_empty())?;
                grow(&mut block.value, "thinking", text);
                Some(StreamEvent::Reasoning(text.to_owned()))
            }
            "signature_delta" => {
                // The signature comes whole, as the SDK's accumulator assumes.
                block.value["signature"] = delta["signature"].clone();
                None
            }
            "citations_delta" => {
                let citation = delta.get("citation")?.clone();
                match block.value["citations"].as_array_mut() {
                    Some(citations) => citations.push(citation),
                    None => block.value["citations"] = json!([citation]),
                }
                None
            }
            _ => None,
        }
    }
}

impl Decoder for Blocks {
    fn feed(&mut self, event: Event) -> Result<(Vec<StreamEvent>, bool), AgentError> {
        let data: Value = serde_json::from_str(&event.data).map_err(|e| AgentError::Malformed {
            provider: self.provider.clone(),
            message: format!("a stream event is not JSON ({e})"),
        })?;
        // The data names its own type; the `event:` line says the same.
        let kind = data["type"]
            .as_str()
            .or(event.name.as_deref())
            .unwrap_or("");
        let mut out = Vec::new();
        match kind {
            "message_start" => {
                let message = &data["message"];
                if let Some(model) = message["model"].as_str() {
                    self.model = model.to_owned();
                }
                let usage = &message["usage"];
                self.usage.input_tokens = usage["input_tokens"].as_u64().unwrap_or(0);
                self.usage.output_tokens = usage["output_tokens"].as_u64().unwrap_or(0);
            }
            "content_block_start" => {
                let index = data["index"].as_u64().unwrap_or(self.blocks.len() as u64);
                let value = data["content_block"].clone();
                if value["type"] == "text"
                    && let Some(text) = value["text"].as_str().filter(|t| !t.is_empty())
                {
                    out.push(StreamEvent::Text(text.to_owned()));
                }
                self.blocks.insert(index, Block { value, input: None });
            }
            "content_block_delta" => {
                let index = data["index"].as_u64().unwrap_or(0);
                out.extend(self.delta(index, &data["delta"]));
            }
            "message_delta" => {
                if let Some(reason) = data["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(reason.to_owned());
                }
                // Cumulative counts: the latest is the total.
                let usage = &data["usage"];
                if let Some(n) = usage["output_tokens"].as_u64() {
                    self.usage.output_tokens = n;
                }
                if let Some(n) = usage["input_tokens"].as_u64() {
                    self.usage.input_tokens = n;
                }
            }
            "message_stop" => {
                self.complete = true;
                return Ok((out, true));
            }
            "error" => {
                let error = &data["error"];
                let message = error["message"].as_str().unwrap_or("no message");
                return Err(AgentError::Stream {
                    provider: self.provider.clone(),
                    message: match error["type"].as_str() {
                        Some(kind) => format!("{kind}: {message}"),
                        None => message.to_owned(),
                    },
                });
            }
            // `ping`, `content_block_stop`, and event types added later: nothing to do.
            _ => {}
        }
        Ok((out, false))
    }

    fn finish(&mut self) -> Result<Reply, AgentError> {
        if !self.complete {
            return Err(AgentError::Stream {
                provider: self.provider.clone(),
                message: "the stream ended before the answer was complete".into(),
            });
        }
        // Tool inputs that are not a JSON object: the call gets the text as written (the
        // caller reports it), the content array an empty object (the only `input` the API
        // takes back).
        let mut unreadable = Vec::new();
        let content: Vec<Value> = std::mem::take(&mut self.blocks)
            .into_values()
            .map(|Block { mut value, input }| {
                if let Some(input) = input {
                    let parsed = parse_arguments(&input);
                    if parsed.is_object() {
                        value["input"] = parsed;
                    } else {
                        value["input"] = json!({});
                        unreadable.push((value["id"].clone(), parsed));
                    }
                }
                value
            })
            .collect();
        let message = json!({
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason,
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
            },
        });
        let mut reply = parse_reply(&self.provider, &self.model, &message)?;
        for (id, arguments) in unreadable {
            if let Some(call) = reply
                .turn
                .tool_calls
                .iter_mut()
                .find(|c| id == c.id.as_str())
            {
                call.arguments = arguments;
            }
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::agents::ToolSpec;

    fn agent() -> Anthropic {
        Anthropic::new(
            "anthropic",
            "claude-sonnet-4-5",
            "http://x/",
            Some("sk-ant-test".into()),
            RetryPolicy::default(),
        )
    }

    fn call() -> ToolCall {
        ToolCall {
            id: "toolu_01".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Paris"}),
        }
    }

    #[test]
    fn tool_round_trip_body() {
        let conversation = Conversation {
            system: Some("You are terse.".into()),
            messages: vec![
                Message::User("Weather in Paris?".into()),
                Message::Assistant(AssistantTurn {
                    text: "I'll check".into(),
                    tool_calls: vec![call()],
                    reasoning: None,
                    raw: None,
                }),
                Message::ToolResults(vec![ToolResult {
                    call_id: "toolu_01".into(),
                    name: "get_weather".into(),
                    content: "21°C".into(),
                    is_error: false,
                }]),
                Message::User("And tomorrow?".into()),
            ],
            tools: vec![ToolSpec {
                name: "get_weather".into(),
                description: "Weather now".into(),
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            }],
            max_tokens: 1024,
            temperature: Some(0.2),
            response_schema: None,
        };
        assert_eq!(
            agent().body(&conversation, false),
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 1024,
                "system": "You are terse.",
                "temperature": 0.2,
                "stream": false,
                "tools": [{"name": "get_weather", "description": "Weather now",
                           "input_schema": {"type": "object",
                                            "properties": {"city": {"type": "string"}}}}],
                "messages": [
                    {"role": "user", "content": "Weather in Paris?"},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "I'll check"},
                        {"type": "tool_use", "id": "toolu_01", "name": "get_weather",
                         "input": {"city": "Paris"}},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_01", "content": "21°C",
                         "is_error": false},
                        {"type": "text", "text": "And tomorrow?"},
                    ]},
                ],
            })
        );
    }

    #[test]
    fn raw_content_goes_back_verbatim() {
        let raw = json!([
            {"type": "thinking", "thinking": "hmm", "signature": "sig=="},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather",
             "input": {"city": "Paris"}},
        ]);
        let turn = AssistantTurn {
            text: String::new(),
            tool_calls: vec![call()],
            reasoning: None,
            raw: Some(raw.clone()),
        };
        assert_eq!(assistant_content(&turn), raw);
        // A whole message works too; another provider's message does not.
        let turn = AssistantTurn {
            raw: Some(json!({"role": "assistant", "content": raw})),
            ..turn
        };
        assert_eq!(assistant_content(&turn), raw);
        let turn = AssistantTurn {
            raw: Some(json!({"role": "model", "parts": [{"text": "x"}]})),
            tool_calls: vec![ToolCall {
                arguments: json!("not an object"),
                ..call()
            }],
            ..turn
        };
        assert_eq!(
            assistant_content(&turn),
            json!([{"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}])
        );
        // An empty answer is left out rather than sent back empty.
        let empty = Message::Assistant(AssistantTurn {
            raw: Some(json!([])),
            ..Default::default()
        });
        assert_eq!(
            messages(&[Message::User("hi".into()), empty]),
            vec![json!({"role": "user", "content": "hi"})]
        );
    }

    fn tool_answer() -> Value {
        json!({
            "id": "msg_01", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [
                {"type": "text", "text": "I'll check"},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather",
                 "input": {"location": "Paris"}},
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 377, "output_tokens": 65,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        })
    }

    #[test]
    fn replies() {
        let text = json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "text", "text": "Hi."}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 377, "output_tokens": 10},
        });
        let reply = parse_reply("anthropic", "m", &text).unwrap();
        assert_eq!(reply.turn.text, "Hi.");
        assert!(reply.turn.tool_calls.is_empty());
        assert_eq!(
            reply.turn.raw,
            Some(json!([{"type": "text", "text": "Hi."}]))
        );
        assert_eq!(reply.finish, Finish::Stop);
        assert_eq!(
            reply.usage,
            Usage {
                input_tokens: 377,
                output_tokens: 10
            }
        );
        assert_eq!(reply.model, "claude-x");

        let reply = parse_reply("anthropic", "m", &tool_answer()).unwrap();
        assert_eq!(reply.turn.text, "I'll check");
        assert_eq!(
            reply.turn.tool_calls,
            vec![ToolCall {
                id: "toolu_01".into(),
                name: "get_weather".into(),
                arguments: json!({"location": "Paris"}),
            }]
        );
        assert_eq!(reply.finish, Finish::ToolCalls);
        assert_eq!(reply.turn.raw.as_ref(), tool_answer().get("content"));

        let mut long = tool_answer();
        long["stop_reason"] = "max_tokens".into();
        assert_eq!(parse_reply("a", "m", &long).unwrap().finish, Finish::Length);
        long["stop_reason"] = "refusal".into();
        assert_eq!(
            parse_reply("a", "m", &long).unwrap().finish,
            Finish::Other("refusal".into())
        );
        assert!(matches!(
            parse_reply("a", "m", &json!({"type": "message"})),
            Err(AgentError::Malformed { .. })
        ));
    }

    #[test]
    fn error_envelopes() {
        let body = br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"},"request_id":"req_01"}"#;
        let AgentError::Api {
            status,
            kind,
            message,
            ..
        } = parse_error("anthropic", 401, body)
        else {
            panic!()
        };
        assert_eq!(
            (status, kind.as_str(), message.as_str()),
            (401, "authentication_error", "invalid x-api-key")
        );
        let overloaded =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let e = parse_error("anthropic", 529, overloaded);
        assert!(e.is_transient(), "{e}");
        let e = parse_error("anthropic", 413, b"<html>Request Entity Too Large</html>");
        let AgentError::Api { kind, message, .. } = &e else {
            panic!()
        };
        assert_eq!(
            (kind.as_str(), message.as_str()),
            ("", "<html>Request Entity Too Large</html>")
        );
        // An error inside a 200 answer counts with the status its type stands for.
        let AgentError::Api { status, .. } = parse_reply(
            "anthropic",
            "m",
            &serde_json::from_slice(overloaded).unwrap(),
        )
        .unwrap_err() else {
            panic!()
        };
        assert_eq!(status, 529);
    }

    fn event(name: &str, data: &str) -> Event {
        Event {
            name: Some(name.into()),
            data: data.into(),
        }
    }

    /// Feeds the events; the pieces passed on and the end (reply or error).
    fn decode(events: Vec<Event>) -> (Vec<StreamEvent>, Result<Reply, AgentError>) {
        let mut decoder = Blocks::new("anthropic", "claude-sonnet-4-5");
        let mut out = Vec::new();
        for e in events {
            match decoder.feed(e) {
                Ok((items, complete)) => {
                    out.extend(items);
                    if complete {
                        break;
                    }
                }
                Err(e) => return (out, Err(e)),
            }
        }
        let end = decoder.finish();
        (out, end)
    }

    /// The recorded sequence of a text block then a tool call (first fragment empty).
    fn tool_stream() -> Vec<Event> {
        vec![
            event(
                "message_start",
                r#"{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":377,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}"#,
            ),
            event(
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            event("ping", r#"{"type": "ping"}"#),
            event(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"I'll "}}"#,
            ),
            event(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"check"}}"#,
            ),
            event(
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            event(
                "content_block_start",
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{}}}"#,
            ),
            event(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            ),
            event(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"locati"}}"#,
            ),
            event(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"on\": \"Paris\"}"}}"#,
            ),
            event(
                "content_block_stop",
                r#"{"type":"content_block_stop","index":1}"#,
            ),
            event("future_event", r#"{"type":"future_event","x":1}"#),
            event(
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":65}}"#,
            ),
            event("message_stop", r#"{"type":"message_stop"}"#),
        ]
    }

    #[test]
    fn stream_ends_in_the_reply_the_whole_answer_gives() {
        let (out, end) = decode(tool_stream());
        let reply = end.unwrap();
        assert_eq!(
            out,
            vec![
                StreamEvent::Text("I'll ".into()),
                StreamEvent::Text("check".into())
            ]
        );
        assert_eq!(
            reply,
            parse_reply("anthropic", "m", &tool_answer()).unwrap()
        );
    }

    /// The same answer as bytes on the wire, with `\r\n` line ends and a comment, through the
    /// SSE parser and `drive`.
    #[tokio::test]
    async fn stream_over_the_wire_with_crlf() {
        use futures::StreamExt;
        let mut wire = String::from(": hello\r\n\r\n");
        for e in tool_stream() {
            let name = e.name.unwrap_or_default();
            wire.push_str(&format!("event: {name}\r\ndata: {}\r\n\r\n", e.data));
        }
        let response = reqwest::Response::from(axum::http::Response::new(wire));
        let start = async move { Ok(response) }.boxed();
        let items: Vec<_> = sse::drive("anthropic", start, Blocks::new("anthropic", "m"))
            .collect()
            .await;
        let items: Vec<StreamEvent> = items.into_iter().map(Result::unwrap).collect();
        let reply = parse_reply("anthropic", "m", &tool_answer()).unwrap();
        assert_eq!(
            items,
            vec![
                StreamEvent::Text("I'll ".into()),
                StreamEvent::Text("check".into()),
                StreamEvent::Done(reply),
            ]
        );
    }

    #[test]
    fn stream_keeps_thinking_with_its_signature() {
        let (out, end) = decode(vec![
            event(
                "message_start",
                r#"{"type":"message_start","message":{"model":"claude-x","content":[],"usage":{"input_tokens":5,"output_tokens":1}}}"#,
            ),
            event(
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#,
            ),
            event(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me think"}}"#,
            ),
            event(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB=="}}"#,
            ),
            event(
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            event(
                "content_block_start",
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
            ),
            event(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"42"}}"#,
            ),
            event(
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":30}}"#,
            ),
            event("message_stop", r#"{"type":"message_stop"}"#),
        ]);
        assert_eq!(
            out,
            vec![
                StreamEvent::Reasoning("Let me think".into()),
                StreamEvent::Text("42".into())
            ]
        );
        let reply = end.unwrap();
        assert_eq!(reply.turn.text, "42");
        assert_eq!(reply.finish, Finish::Stop);
        assert_eq!(
            reply.usage,
            Usage {
                input_tokens: 5,
                output_tokens: 30
            }
        );
        assert_eq!(
            reply.turn.raw,
            Some(json!([
                {"type": "thinking", "thinking": "Let me think", "signature": "EqQB=="},
                {"type": "text", "text": "42"},
            ]))
        );
    }

    #[test]
    fn stream_errors() {
        let mut events = tool_stream();
        events.truncate(4);
        events.push(event(
            "error",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ));
        let (out, end) = decode(events);
        assert_eq!(out, vec![StreamEvent::Text("I'll ".into())]);
        let Err(AgentError::Stream { message, .. }) = end else {
            panic!("{end:?}")
        };
        assert_eq!(message, "overloaded_error: Overloaded");

        let mut events = tool_stream();
        events.pop();
        let (_, end) = decode(events);
        let Err(AgentError::Stream { message, .. }) = end else {
            panic!("{end:?}")
        };
        assert_eq!(message, "the stream ended before the answer was complete");

        let (_, end) = decode(vec![event("message_start", "{not json")]);
        assert!(matches!(end, Err(AgentError::Malformed { .. })), "{end:?}");
    }

    use super::super::test_server::{quick_retries, serve};
    #[tokio::test]
    async fn over_http() {
        use futures::StreamExt;
        let wire: String = tool_stream()
            .into_iter()
            .map(|e| {
                format!(
                    "event: {}\ndata: {}\n\n",
                    e.name.unwrap_or_default(),
                    e.data
                )
            })
            .collect();
        let overloaded =
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let (base, seen) = serve(vec![
            (529, "application/json", overloaded.into()),
            (200, "application/json", tool_answer().to_string()),
            (200, "text/event-stream", wire),
        ])
        .await;
        let agent = Anthropic::new(
            "anthropic",
            "claude-sonnet-4-5",
            &base,
            Some("sk-ant-test".into()),
            quick_retries(),
        );
        let conversation = Conversation {
            messages: vec![Message::User("Weather in Paris?".into())],
            max_tokens: 100,
            ..Default::default()
        };
        let whole = agent.send(&conversation).await.unwrap();
        assert_eq!(
            whole,
            parse_reply("anthropic", "m", &tool_answer()).unwrap()
        );
        let streamed: Vec<_> = agent.stream(&conversation).collect().await;
        let Some(Ok(StreamEvent::Done(reply))) = streamed.last() else {
            panic!("{streamed:?}")
        };
        assert_eq!(reply, &whole);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3, "the 529 was retried");
        for (i, (path, headers, body)) in seen.iter().enumerate() {
            assert_eq!(path, "/v1/messages");
            assert_eq!(headers["x-api-key"], "sk-ant-test");
            assert_eq!(headers["anthropic-version"], "2023-06-01");
            assert_eq!(headers["content-type"], "application/json");
            assert_eq!(body["stream"], i == 2);
            assert_eq!(body["max_tokens"], 100);
        }
    }
}
