//! Google Gemini (Developer API): `POST {base}/v1beta/models/{model}:generateContent`, and
//! `:streamGenerateContent?alt=sse` for a streamed answer. The base URL has no version. The key
//! goes in the `x-goog-api-key` header, never in the URL (URLs end up in logs and errors).
//!
//! A model turn goes back as the `content` the model wrote ([`AssistantTurn::raw`]): Gemini 3
//! requires the `thoughtSignature` of its parts back unchanged. Tool results go back as
//! `functionResponse` parts of a user turn, matched by name (Gemini gives calls an id only
//! sometimes; when it does, the id goes back too). Errors are google.rpc statuses; the wait a
//! 429 asks for is in the body (`RetryInfo.retryDelay`), not in a header.
//!
//! Long because it holds one wire format whole (request, answer, stream, errors) and its
//! unit tests (from `#[cfg(test)]` on): split by direction, each half would need the other's types.
//!
//! One file: the wire format (request, answer, stream chunks, thought signatures) is ~630 lines
//! and the rest are its tests; a split would put a format's encoder and decoder apart.

use futures::{FutureExt, StreamExt, future::BoxFuture, stream::BoxStream};
use serde_json::{Map, Value, json};

use crate::net::{RetryPolicy, SecretString, Secrets};

use super::{
    Agent, AgentError, AssistantTurn, Conversation, Finish, Message, Reply, StreamEvent, ToolCall,
    ToolResult, Usage, models, request,
    sse::{self, Decoder, Event},
};

/// `Debug` shows no key: it is a [`SecretString`].
#[derive(Debug)]
pub struct Gemini {
    provider: String,
    model: String,
    /// Without a version: `https://generativelanguage.googleapis.com`.
    base_url: String,
    key: Option<SecretString>,
    /// The key again, to mask out of error texts (a body may repeat the request's headers).
    secrets: Secrets,
    retry: RetryPolicy,
    /// Pass a conversation's answer schema as `responseSchema`.
    json_schema: bool,
}

impl Gemini {
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
            json_schema: true,
        }
    }

    /// Whether to pass a conversation's answer schema as `responseSchema`.
    pub fn with_json_schema(mut self, json_schema: bool) -> Self {
        self.json_schema = json_schema;
        self
    }

    /// The method's URL. A model named with its resource path (`models/gemini-2.5-flash`,
    /// `tunedModels/x`) is used as it is; a bare name goes under `models/`.
    fn url(&self, stream: bool) -> String {
        let model = if self.model.contains('/') {
            self.model.clone()
        } else {
            format!("models/{}", self.model)
        };
        let method = if stream {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        format!("{}/v1beta/{model}:{method}", self.base_url)
    }

    fn body(&self, conversation: &Conversation) -> Value {
        let mut body = json!({"contents": contents(&conversation.messages)});
        if let Some(system) = &conversation.system {
            body["systemInstruction"] = json!({"parts": [{"text": system}]});
        }
        if !conversation.tools.is_empty() {
            // `parametersJsonSchema` takes JSON Schema as it is; `parameters` only an OpenAPI
            // subset that rejects much of what tools declare.
            let declarations: Vec<Value> = conversation
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name,
                        "description": t.description,
                        "parametersJsonSchema": t.parameters,
                    })
                })
                .collect();
            body["tools"] = json!([{"functionDeclarations": declarations}]);
        }
        let mut config = Map::new();
        // Zero means the conversation sets no limit: the model's own applies.
        if conversation.max_tokens > 0 {
            config.insert("maxOutputTokens".into(), conversation.max_tokens.into());
        }
        if let Some(t) = conversation.temperature {
            config.insert("temperature".into(), temperature(t));
        }
        // An answer held to a schema (not beside tools: a turn may call them instead).
        if let Some(schema) = &conversation.response_schema
            && self.json_schema
            && conversation.tools.is_empty()
        {
            config.insert("responseMimeType".into(), "application/json".into());
            config.insert("responseSchema".into(), response_schema(schema));
        }
        if !config.is_empty() {
            body["generationConfig"] = Value::Object(config);
        }
        body
    }

    fn request(
        &self,
        body: &Value,
        stream: bool,
    ) -> BoxFuture<'_, Result<reqwest::Response, AgentError>> {
        let url = self.url(stream);
        let body = body.clone();
        async move {
            // The key goes in a header, never in the URL (URLs end up in errors and logs).
            let decorate = |builder: reqwest::RequestBuilder| match &self.key {
                Some(key) => Ok(builder.header(
                    "x-goog-api-key",
                    request::key_header(&self.provider, "", key)?,
                )),
                None => Ok(builder),
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

impl Agent for Gemini {
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
            let response = self.request(&self.body(conversation), false).await?;
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
        let body = self.body(conversation);
        let start = async move { self.request(&body, true).await }.boxed();
        sse::drive(
            &self.provider,
            start,
            Chunks::new(&self.provider, &self.model),
        )
        .map(|item| item.map_err(|e| e.masked(&self.secrets)))
        .boxed()
    }

    fn list_models(&self) -> BoxFuture<'_, Result<models::ModelList, models::ListError>> {
        let lister = models::Lister {
            wire: models::Wire::Gemini,
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

/// The conversation as Gemini `contents`: roles `user` and `model`.
fn contents(messages: &[Message]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    // The call ids the last model turn carried on the wire: only those go back on results.
    let mut wire_ids: Vec<String> = Vec::new();
    for message in messages {
        match message {
            Message::User(text) => {
                // Right after tool results the user speaks in the same turn, after the
                // `functionResponse` parts, rather than in a second user turn.
                let results = out
                    .last_mut()
                    .filter(|c| c["role"] == "user")
                    .and_then(|c| c.get_mut("parts"))
                    .and_then(Value::as_array_mut)
                    .filter(|parts| parts.iter().any(|p| p.get("functionResponse").is_some()));
                match results {
                    Some(parts) => {
                        // Empty text parts are rejected.
                        if !text.is_empty() {
                            parts.push(json!({"text": text}));
                        }
                    }
                    None => out.push(json!({"role": "user", "parts": [{"text": text}]})),
                }
            }
            Message::Assistant(turn) => {
                let content = model_content(turn);
                let parts = content["parts"].as_array();
                wire_ids = parts
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["functionCall"]["id"].as_str().map(str::to_owned))
                    .collect();
                // A turn without parts (an answer cut off while thinking has none) is rejected
                // if sent back; leaving it out loses nothing.
                if parts.is_some_and(|p| !p.is_empty()) {
                    out.push(content);
                }
            }
            Message::ToolResults(results) if results.is_empty() => {}
            Message::ToolResults(results) => {
                let parts: Vec<Value> = results
                    .iter()
                    .map(|r| function_response(r, &wire_ids))
                    .collect();
                out.push(json!({"role": "user", "parts": parts}));
            }
        }
    }
    out
}

/// A model turn: the content the model wrote when we have it (thought signatures must go back
/// unchanged), else built from text and tool calls.
fn model_content(turn: &AssistantTurn) -> Value {
    if let Some(raw) = &turn.raw
        && (raw.get("parts").is_some_and(Value::is_array) || raw["role"] == "model")
    {
        return raw.clone();
    }
    let mut parts = Vec::new();
    if !turn.text.is_empty() {
        parts.push(json!({"text": turn.text}));
    }
    for call in &turn.tool_calls {
        // `args` must be an object. Ids made by us or by another provider mean nothing to
        // Gemini, so none go with a built turn.
        let args = match &call.arguments {
            Value::Object(_) => call.arguments.clone(),
            _ => json!({}),
        };
        parts.push(json!({"functionCall": {"name": call.name, "args": args}}));
    }
    json!({"role": "model", "parts": parts})
}

/// A tool's result: `{"result": …}` (the content as JSON when it is JSON, else the text), or
/// `{"error": …}`, as Google's SDK sends them.
fn function_response(r: &ToolResult, wire_ids: &[String]) -> Value {
    let response = if r.is_error {
        json!({"error": r.content})
    } else {
        let result =
            serde_json::from_str::<Value>(&r.content).unwrap_or_else(|_| r.content.clone().into());
        json!({"result": result})
    };
    let mut part = json!({"name": r.name, "response": response});
    if wire_ids.contains(&r.call_id) {
        part["id"] = r.call_id.clone().into();
    }
    json!({"functionResponse": part})
}

/// An error answer: a google.rpc status `{"error":{code,message,status,details}}`.
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
    // Some Google front ends wrap the status in a one-element array.
    let value = match value {
        Value::Array(items) => items.first()?,
        other => other,
    };
    let error = value.get("error").filter(|e| e.is_object())?;
    let details = error["details"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let detail = |kind: &str| {
        details.iter().find(|d| {
            d["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with(&format!("google.rpc.{kind}")))
        })
    };
    // A bad key is a plain 400 INVALID_ARGUMENT; only the ErrorInfo tells it apart.
    let kind = match detail("ErrorInfo").and_then(|d| d["reason"].as_str()) {
        Some("API_KEY_INVALID") => "API_KEY_INVALID",
        _ => error["status"].as_str().unwrap_or(""),
    };
    let retry_after = detail("RetryInfo")
        .and_then(|d| d["retryDelay"].as_str())
        .and_then(crate::net::retry::google_duration);
    Some(AgentError::Api {
        provider: provider.to_owned(),
        // An error inside a 200 answer carries its own code.
        status: match (status, error["code"].as_u64()) {
            (200, Some(code)) => u16::try_from(code).unwrap_or(500),
            (200, None) => 500,
            (status, _) => status,
        },
        kind: kind.to_owned(),
        message: error["message"].as_str().unwrap_or("no message").to_owned(),
        retry_after,
    })
}

/// A whole answer: the first candidate's text parts joined (thoughts left out), its
/// `functionCall` parts as calls, its content kept to send back.
pub(crate) fn parse_reply(provider: &str, model: &str, value: &Value) -> Result<Reply, AgentError> {
    if let Some(error) = envelope_error(provider, 200, value) {
        return Err(error);
    }
    let model = value["modelVersion"].as_str().unwrap_or(model).to_owned();
    let usage = usage(&value["usageMetadata"]);
    let Some(candidate) = value["candidates"].get(0) else {
        // A blocked prompt gets no candidates. That is an answer, not a failure of the
        // provider: an empty reply whose finish says why, as a candidate stopped for SAFETY
        // says it. Another provider would not answer differently, so nothing to retry.
        let reason = value["promptFeedback"]["blockReason"]
            .as_str()
            .ok_or_else(|| AgentError::Malformed {
                provider: provider.to_owned(),
                message: "no candidates in the answer".into(),
            })?;
        return Ok(Reply {
            turn: AssistantTurn::default(),
            finish: Finish::Other(format!("blocked: {reason}")),
            usage,
            model,
        });
    };
    let content = candidate.get("content");
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let parts = content
        .and_then(|c| c["parts"].as_array())
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for part in parts {
        if let Some(call) = part.get("functionCall") {
            tool_calls.push(ToolCall {
                // Gemini matches results by name; an id is only needed on our side.
                id: call["id"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("call_{}", tool_calls.len())),
                name: call["name"].as_str().unwrap_or("").to_owned(),
                arguments: match call.get("args") {
                    Some(args) if !args.is_null() => args.clone(),
                    _ => json!({}),
                },
            });
        } else if part["thought"] != true
            && let Some(t) = part["text"].as_str()
        {
            text.push_str(t);
        }
    }
    let finish = finish(candidate["finishReason"].as_str(), !tool_calls.is_empty());
    Ok(Reply {
        turn: AssistantTurn {
            text,
            tool_calls,
            reasoning: None,
            raw: content.cloned(),
        },
        finish,
        usage,
        model,
    })
}

/// `finishReason`: Gemini has no tool-specific reason, a turn with calls stops with `STOP`.
fn finish(reason: Option<&str>, has_calls: bool) -> Finish {
    match reason {
        Some("STOP") | None if has_calls => Finish::ToolCalls,
        Some("STOP") | None => Finish::Stop,
        Some("MAX_TOKENS") => Finish::Length,
        Some(other) => Finish::Other(other.to_owned()),
    }
}

/// Thinking counts as output, as it is billed.
fn usage(value: &Value) -> Usage {
    let count = |key: &str| value[key].as_u64().unwrap_or(0);
    Usage {
        input_tokens: count("promptTokenCount"),
        output_tokens: count("candidatesTokenCount") + count("thoughtsTokenCount"),
    }
}

/// Reads streamed `GenerateContentResponse` chunks. Text arrives in pieces and passes on at
/// once; the parts are merged into the content a whole answer would have had. There is no end
/// marker: the answer is complete when the body ends after a chunk with a `finishReason`.
pub(crate) struct Chunks {
    provider: String,
    model: String,
    role: Option<Value>,
    parts: Vec<Value>,
    finish: Option<String>,
    block_reason: Option<String>,
    usage: Option<Value>,
}

impl Chunks {
    pub(crate) fn new(provider: &str, model: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            model: model.to_owned(),
            role: None,
            parts: Vec::new(),
            finish: None,
            block_reason: None,
            usage: None,
        }
    }

    /// Adds a part. A text piece continues the text part before it (same `thought` flag, no
    /// signature yet): the whole answer has one part where the stream had many. A signature
    /// closes a part, as it does in a whole answer.
    fn push(&mut self, part: &Value) {
        let is_text = |p: &Value| {
            p["text"].is_string()
                && p.as_object().is_some_and(|o| {
                    o.keys()
                        .all(|k| matches!(k.as_str(), "text" | "thought" | "thoughtSignature"))
                })
        };
        if is_text(part)
            && let Some(last) = self.parts.last_mut()
            && is_text(last)
            && last["thought"] == part["thought"]
            && last.get("thoughtSignature").is_none()
        {
            let mut text = last["text"].as_str().unwrap_or("").to_owned();
            text.push_str(part["text"].as_str().unwrap_or(""));
            last["text"] = text.into();
            if let Some(signature) = part.get("thoughtSignature") {
                last["thoughtSignature"] = signature.clone();
            }
            return;
        }
        self.parts.push(part.clone());
    }
}

impl Decoder for Chunks {
    fn feed(&mut self, event: Event) -> Result<(Vec<StreamEvent>, bool), AgentError> {
        let chunk: Value =
            serde_json::from_str(&event.data).map_err(|e| AgentError::Malformed {
                provider: self.provider.clone(),
                message: format!("a stream chunk is not JSON ({e})"),
            })?;
        if let Some(AgentError::Api { message, kind, .. }) =
            envelope_error(&self.provider, 200, &chunk)
        {
            return Err(AgentError::Stream {
                provider: self.provider.clone(),
                message: if kind.is_empty() {
                    message
                } else {
                    format!("{kind}: {message}")
                },
            });
        }
        if let Some(model) = chunk["modelVersion"].as_str() {
            self.model = model.to_owned();
        }
        if chunk["usageMetadata"].is_object() {
            self.usage = Some(chunk["usageMetadata"].clone());
        }
        if let Some(reason) = chunk["promptFeedback"]["blockReason"].as_str() {
            self.block_reason = Some(reason.to_owned());
        }
        let mut out = Vec::new();
        let Some(candidate) = chunk["candidates"].get(0) else {
            return Ok((out, false));
        };
        let content = &candidate["content"];
        if let Some(role) = content.get("role") {
            self.role = Some(role.clone());
        }
        for part in content["parts"].as_array().into_iter().flatten() {
            if let Some(text) = part["text"].as_str().filter(|t| !t.is_empty()) {
                out.push(if part["thought"] == true {
                    StreamEvent::Reasoning(text.to_owned())
                } else {
                    StreamEvent::Text(text.to_owned())
                });
            }
            self.push(part);
        }
        if let Some(reason) = candidate["finishReason"].as_str() {
            self.finish = Some(reason.to_owned());
        }
        // Not complete yet even with a finishReason: usage may still follow.
        Ok((out, false))
    }

    fn finish(&mut self) -> Result<Reply, AgentError> {
        let mut answer = json!({"modelVersion": self.model});
        if let Some(usage) = self.usage.take() {
            answer["usageMetadata"] = usage;
        }
        match (&self.finish, &self.block_reason) {
            (Some(reason), _) => {
                let mut content = json!({"role": self.role.take().unwrap_or("model".into())});
                if !self.parts.is_empty() {
                    content["parts"] = std::mem::take(&mut self.parts).into();
                }
                answer["candidates"] = json!([{"content": content, "finishReason": reason}]);
            }
            (None, Some(reason)) => {
                answer["promptFeedback"] = json!({"blockReason": reason});
            }
            (None, None) => {
                return Err(AgentError::Stream {
                    provider: self.provider.clone(),
                    message: "the stream ended before the answer was complete".into(),
                });
            }
        }
        parse_reply(&self.provider, &self.model, &answer)
    }
}

/// A JSON Schema as Gemini's `responseSchema` takes it (its OpenAPI subset): the keywords it
/// knows, types in capitals (`OBJECT`, `STRING`), a `["string", "null"]` type as `nullable`.
fn response_schema(schema: &Value) -> Value {
    const KEPT: [&str; 12] = [
        "format",
        "description",
        "enum",
        "required",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "minProperties",
        "maxProperties",
    ];
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    let upper = |t: &str| Value::String(t.to_ascii_uppercase());
    match map.get("type") {
        Some(Value::String(t)) => {
            out.insert("type".into(), upper(t));
        }
        Some(Value::Array(types)) => {
            let named: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            if let Some(t) = named.iter().find(|t| **t != "null") {
                out.insert("type".into(), upper(t));
            }
            if named.contains(&"null") {
                out.insert("nullable".into(), true.into());
            }
        }
        _ => {}
    }
    for key in KEPT {
        if let Some(v) = map.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(items) = map.get("items") {
        out.insert("items".into(), response_schema(items));
    }
    if let Some(Value::Object(props)) = map.get("properties") {
        let props: Map<String, Value> = props
            .iter()
            .map(|(k, v)| (k.clone(), response_schema(v)))
            .collect();
        out.insert("properties".into(), Value::Object(props));
    }
    if let Some(Value::Array(any)) = map.get("anyOf") {
        out.insert(
            "anyOf".into(),
            Value::Array(any.iter().map(response_schema).collect()),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::agents::ToolSpec;

    fn agent(model: &str) -> Gemini {
        Gemini::new(
            "gemini",
            model,
            "http://x/",
            Some("AIza-test".into()),
            RetryPolicy::default(),
        )
    }

    #[test]
    fn urls() {
        let flash = agent("gemini-2.5-flash");
        assert_eq!(
            flash.url(false),
            "http://x/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            flash.url(true),
            "http://x/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            agent("models/gemini-2.5-pro").url(false),
            "http://x/v1beta/models/gemini-2.5-pro:generateContent"
        );
    }

    fn result(content: &str, is_error: bool) -> ToolResult {
        ToolResult {
            call_id: "call_0".into(),
            name: "get_weather".into(),
            content: content.into(),
            is_error,
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
                    tool_calls: vec![ToolCall {
                        id: "call_0".into(),
                        name: "get_weather".into(),
                        arguments: json!({"city": "Paris"}),
                    }],
                    reasoning: None,
                    raw: None,
                }),
                Message::ToolResults(vec![result(r#"{"temp":21}"#, false)]),
                Message::User("And tomorrow?".into()),
            ],
            tools: vec![ToolSpec {
                name: "get_weather".into(),
                description: "Weather now".into(),
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}},
                                   "additionalProperties": false}),
            }],
            max_tokens: 1024,
            temperature: Some(0.2),
            response_schema: None,
        };
        assert_eq!(
            agent("gemini-2.5-flash").body(&conversation),
            json!({
                "systemInstruction": {"parts": [{"text": "You are terse."}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
                    {"role": "model", "parts": [
                        {"text": "I'll check"},
                        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    ]},
                    {"role": "user", "parts": [
                        {"functionResponse": {"name": "get_weather",
                                              "response": {"result": {"temp": 21}}}},
                        {"text": "And tomorrow?"},
                    ]},
                ],
                "tools": [{"functionDeclarations": [{
                    "name": "get_weather", "description": "Weather now",
                    "parametersJsonSchema": {"type": "object",
                                             "properties": {"city": {"type": "string"}},
                                             "additionalProperties": false},
                }]}],
                "generationConfig": {"maxOutputTokens": 1024, "temperature": 0.2},
            })
        );
    }

    #[test]
    fn raw_content_goes_back_verbatim_with_ids() {
        let raw = json!({"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "fc_1"},
             "thoughtSignature": "c2ln"},
        ]});
        let messages = vec![
            Message::User("Weather?".into()),
            Message::Assistant(AssistantTurn {
                tool_calls: vec![ToolCall {
                    id: "fc_1".into(),
                    name: "get_weather".into(),
                    arguments: json!({"city": "Paris"}),
                }],
                raw: Some(raw.clone()),
                ..Default::default()
            }),
            Message::ToolResults(vec![ToolResult {
                call_id: "fc_1".into(),
                ..result("no such city", true)
            }]),
            // An answer cut off with no parts is left out.
            Message::Assistant(AssistantTurn {
                raw: Some(json!({"role": "model"})),
                ..Default::default()
            }),
        ];
        let contents = contents(&messages);
        assert_eq!(contents.len(), 3);
        assert_eq!(contents[1], raw);
        assert_eq!(
            contents[2],
            json!({"role": "user", "parts": [{"functionResponse": {
                "name": "get_weather", "response": {"error": "no such city"}, "id": "fc_1",
            }}]})
        );
        // Plain text that is not JSON goes back as a string.
        assert_eq!(
            function_response(&result("21°C", false), &[]),
            json!({"functionResponse": {"name": "get_weather", "response": {"result": "21°C"}}})
        );
    }

    fn tool_answer() -> Value {
        json!({
            "candidates": [{
                "content": {"role": "model", "parts": [
                    {"text": "Let me check the weather in Paris."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                     "thoughtSignature": "c2ln"},
                ]},
                "finishReason": "STOP",
                "index": 0,
            }],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 20,
                              "totalTokenCount": 40, "thoughtsTokenCount": 8},
            "modelVersion": "gemini-2.5-flash-001",
            "responseId": "r1",
        })
    }

    #[test]
    fn replies() {
        let text = json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "thinking about it", "thought": true},
                {"text": "Hi."},
            ]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 3,
                              "totalTokenCount": 15},
        });
        let reply = parse_reply("gemini", "gemini-2.5-flash", &text).unwrap();
        assert_eq!(reply.turn.text, "Hi.");
        assert_eq!(reply.finish, Finish::Stop);
        assert_eq!(
            reply.usage,
            Usage {
                input_tokens: 12,
                output_tokens: 3
            }
        );
        assert_eq!(reply.model, "gemini-2.5-flash");
        assert_eq!(
            reply.turn.raw.as_ref(),
            text["candidates"][0].get("content")
        );

        let reply = parse_reply("gemini", "m", &tool_answer()).unwrap();
        assert_eq!(reply.turn.text, "Let me check the weather in Paris.");
        assert_eq!(
            reply.turn.tool_calls,
            vec![ToolCall {
                id: "call_0".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"}),
            }]
        );
        assert_eq!(reply.finish, Finish::ToolCalls);
        assert_eq!(
            reply.usage,
            Usage {
                input_tokens: 12,
                output_tokens: 28
            }
        );
        assert_eq!(reply.model, "gemini-2.5-flash-001");
        assert_eq!(
            reply.turn.raw.as_ref(),
            tool_answer()["candidates"][0].get("content")
        );

        let mut long = tool_answer();
        long["candidates"][0]["finishReason"] = "MAX_TOKENS".into();
        assert_eq!(parse_reply("g", "m", &long).unwrap().finish, Finish::Length);
        long["candidates"][0]["finishReason"] = "SAFETY".into();
        assert_eq!(
            parse_reply("g", "m", &long).unwrap().finish,
            Finish::Other("SAFETY".into())
        );

        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"},
                             "usageMetadata": {"promptTokenCount": 7}});
        let reply = parse_reply("g", "m", &blocked).unwrap();
        assert_eq!(reply.finish, Finish::Other("blocked: SAFETY".into()));
        assert_eq!(reply.turn, AssistantTurn::default());
        assert!(matches!(
            parse_reply("g", "m", &json!({})),
            Err(AgentError::Malformed { .. })
        ));
    }

    #[test]
    fn error_envelopes() {
        let quota = br#"{"error":{"code":429,"message":"You exceeded your current quota","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"m","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},{"@type":"type.googleapis.com/google.rpc.Help","links":[]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}"#;
        let AgentError::Api {
            status,
            kind,
            message,
            retry_after,
            ..
        } = parse_error("gemini", 429, quota)
        else {
            panic!()
        };
        assert_eq!(
            (status, kind.as_str(), message.as_str(), retry_after),
            (
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota",
                Some(Duration::from_secs(37))
            )
        );

        let bad_key = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#;
        let e = parse_error("gemini", 400, bad_key);
        let AgentError::Api {
            kind, retry_after, ..
        } = &e
        else {
            panic!()
        };
        assert_eq!((kind.as_str(), *retry_after), ("API_KEY_INVALID", None));
        assert!(e.to_string().contains("check"), "{e}");

        let plain = br#"[{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}]"#;
        let AgentError::Api { kind, .. } = parse_error("gemini", 400, plain) else {
            panic!()
        };
        assert_eq!(kind, "INVALID_ARGUMENT");

        let AgentError::Api { kind, message, .. } =
            parse_error("gemini", 502, b"<html>bad gateway</html>")
        else {
            panic!()
        };
        assert_eq!(
            (kind.as_str(), message.as_str()),
            ("", "<html>bad gateway</html>")
        );
    }

    fn event(data: Value) -> Event {
        Event {
            name: None,
            data: data.to_string(),
        }
    }

    /// Feeds the events, then ends the stream; the pieces passed on and the end.
    fn decode(events: Vec<Event>) -> (Vec<StreamEvent>, Result<Reply, AgentError>) {
        let mut decoder = Chunks::new("gemini", "gemini-2.5-flash");
        let mut out = Vec::new();
        for e in events {
            match decoder.feed(e) {
                Ok((items, complete)) => {
                    assert!(!complete, "only the end of the body completes");
                    out.extend(items);
                }
                Err(e) => return (out, Err(e)),
            }
        }
        let end = decoder.finish();
        (out, end)
    }

    /// The tool answer in pieces: text in two chunks, the call whole in the last.
    fn tool_stream() -> Vec<Event> {
        let chunk = |parts: Value, last: bool| {
            let mut c = json!({
                "candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}],
                "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
                "modelVersion": "gemini-2.5-flash-001",
                "responseId": "r1",
            });
            if last {
                c["candidates"][0]["finishReason"] = "STOP".into();
                c["usageMetadata"] = tool_answer()["usageMetadata"].clone();
            }
            event(c)
        };
        vec![
            chunk(json!([{"text": "Let me check"}]), false),
            chunk(json!([{"text": " the weather in Paris."}]), false),
            chunk(
                json!([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": "c2ln"}]),
                true,
            ),
        ]
    }

    #[test]
    fn stream_ends_in_the_reply_the_whole_answer_gives() {
        let (out, end) = decode(tool_stream());
        assert_eq!(
            out,
            vec![
                StreamEvent::Text("Let me check".into()),
                StreamEvent::Text(" the weather in Paris.".into()),
            ]
        );
        assert_eq!(
            end.unwrap(),
            parse_reply("gemini", "m", &tool_answer()).unwrap()
        );
    }

    #[test]
    fn stream_passes_thoughts_on_and_keeps_signatures() {
        let chunk = |parts: Value, finish: Option<&str>| {
            let mut c = json!({"candidates": [{"content": {"role": "model", "parts": parts}}]});
            if let Some(f) = finish {
                c["candidates"][0]["finishReason"] = f.into();
            }
            event(c)
        };
        let (out, end) = decode(vec![
            chunk(json!([{"text": "Hmm, ", "thought": true}]), None),
            chunk(json!([{"text": "weather.", "thought": true}]), None),
            chunk(json!([{"text": "It is", "thoughtSignature": "c2ln"}]), None),
            chunk(json!([{"text": " sunny."}]), None),
            chunk(
                json!([{"text": "", "thoughtSignature": "bW9yZQ=="}]),
                Some("STOP"),
            ),
        ]);
        assert_eq!(
            out,
            vec![
                StreamEvent::Reasoning("Hmm, ".into()),
                StreamEvent::Reasoning("weather.".into()),
                StreamEvent::Text("It is".into()),
                StreamEvent::Text(" sunny.".into()),
            ]
        );
        let reply = end.unwrap();
        assert_eq!(reply.turn.text, "It is sunny.");
        assert_eq!(reply.finish, Finish::Stop);
        assert_eq!(
            reply.turn.raw,
            Some(json!({"role": "model", "parts": [
                {"text": "Hmm, weather.", "thought": true},
                {"text": "It is", "thoughtSignature": "c2ln"},
                {"text": " sunny.", "thoughtSignature": "bW9yZQ=="},
            ]}))
        );
    }

    #[test]
    fn stream_errors_and_early_ends() {
        let mut events = tool_stream();
        events.truncate(1);
        events.push(event(
            json!({"error": {"code": 503, "message": "The model is overloaded.",
                                           "status": "UNAVAILABLE"}}),
        ));
        let (out, end) = decode(events);
        assert_eq!(out, vec![StreamEvent::Text("Let me check".into())]);
        let Err(AgentError::Stream { message, .. }) = end else {
            panic!("{end:?}")
        };
        assert_eq!(message, "UNAVAILABLE: The model is overloaded.");

        let mut events = tool_stream();
        events.pop();
        let (_, end) = decode(events);
        let Err(AgentError::Stream { message, .. }) = end else {
            panic!("{end:?}")
        };
        assert_eq!(message, "the stream ended before the answer was complete");

        let (_, end) = decode(vec![event(
            json!({"promptFeedback": {"blockReason": "SAFETY"}}),
        )]);
        assert_eq!(end.unwrap().finish, Finish::Other("blocked: SAFETY".into()));
    }

    /// The same answer as bytes on the wire, with `\r\n` line ends, through the SSE parser
    /// and `drive`: complete when the body ends.
    #[tokio::test]
    async fn stream_over_the_wire_with_crlf() {
        use futures::StreamExt;
        let wire: String = tool_stream()
            .into_iter()
            .map(|e| format!("data: {}\r\n\r\n", e.data))
            .collect();
        let response = reqwest::Response::from(axum::http::Response::new(wire));
        let start = async move { Ok(response) }.boxed();
        let items: Vec<_> = sse::drive("gemini", start, Chunks::new("gemini", "m"))
            .collect()
            .await;
        let items: Vec<StreamEvent> = items.into_iter().map(Result::unwrap).collect();
        let reply = parse_reply("gemini", "m", &tool_answer()).unwrap();
        assert_eq!(
            items,
            vec![
                StreamEvent::Text("Let me check".into()),
                StreamEvent::Text(" the weather in Paris.".into()),
                StreamEvent::Done(reply),
            ]
        );
    }

    use super::super::test_server::{quick_retries, serve};
    #[tokio::test]
    async fn over_http() {
        use futures::StreamExt;
        let wire: String = tool_stream()
            .into_iter()
            .map(|e| format!("data: {}\n\n", e.data))
            .collect();
        let quota = json!({"error": {
            "code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                         "retryDelay": "0.05s"}],
        }});
        let (base, seen) = serve(vec![
            (429, "application/json", quota.to_string()),
            (200, "application/json", tool_answer().to_string()),
            (200, "text/event-stream", wire),
        ])
        .await;
        let agent = Gemini::new(
            "gemini",
            "gemini-2.5-flash",
            &base,
            Some("AIza-test".into()),
            quick_retries(),
        );
        let conversation = Conversation {
            messages: vec![Message::User("Weather in Paris?".into())],
            max_tokens: 100,
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let whole = agent.send(&conversation).await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "retryDelay honoured"
        );
        assert_eq!(whole, parse_reply("gemini", "m", &tool_answer()).unwrap());
        let streamed: Vec<_> = agent.stream(&conversation).collect().await;
        let Some(Ok(StreamEvent::Done(reply))) = streamed.last() else {
            panic!("{streamed:?}")
        };
        assert_eq!(reply, &whole);
        let seen = seen.lock().unwrap();
        let paths: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/v1beta/models/gemini-2.5-flash:generateContent",
                "/v1beta/models/gemini-2.5-flash:generateContent",
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            ]
        );
        for (_, headers, body) in seen.iter() {
            assert_eq!(headers["x-goog-api-key"], "AIza-test");
            assert_eq!(body["generationConfig"]["maxOutputTokens"], 100);
        }
    }

    #[test]
    fn an_answer_schema_is_the_response_schema() {
        let schema = json!({
            "type": "object",
            "properties": {
                "documents": {"type": "array", "minItems": 1, "items": {
                    "type": "object",
                    "properties": {"id": {"type": "string", "maxLength": 9}, "note": {"type": ["string", "null"]}},
                    "required": ["id"],
                    "additionalProperties": false
                }}
            },
            "required": ["documents"],
            "$schema": "https://json-schema.org/draft/2020-12/schema"
        });
        let conversation = Conversation {
            messages: vec![Message::User("Answer in JSON.".into())],
            max_tokens: 100,
            response_schema: Some(schema),
            ..Conversation::default()
        };
        let agent = Gemini::new("gemini", "m", "http://x", None, RetryPolicy::default());
        let body = agent.body(&conversation);
        let config = &body["generationConfig"];
        assert_eq!(config["responseMimeType"], "application/json");
        assert_eq!(
            config["responseSchema"],
            json!({
                "type": "OBJECT",
                "required": ["documents"],
                "properties": {
                    "documents": {"type": "ARRAY", "minItems": 1, "items": {
                        "type": "OBJECT",
                        "required": ["id"],
                        "properties": {"id": {"type": "STRING", "maxLength": 9}, "note": {"type": "STRING", "nullable": true}}
                    }}
                }
            })
        );
        let body = agent.with_json_schema(false).body(&conversation);
        assert!(body["generationConfig"].get("responseSchema").is_none());
    }
}
