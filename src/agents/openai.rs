//! OpenAI Chat Completions (`POST {base}/chat/completions`), the surface every compatible
//! server implements: Ollama, vLLM, OpenRouter, DeepSeek. The base URL includes `/v1`, as in
//! OpenAI's own SDK.
//!
//! Compatible servers differ in small ways, all tolerated: `usage` may be missing, an error's
//! `code` may be a string, a number or null, tool calls may arrive whole in one chunk, and an
//! error may arrive inside a 200 answer. With [`OpenAi::deepseek`] the `reasoning_content` of
//! a tool-call turn is sent back on every later request, as DeepSeek's API requires.

use std::collections::BTreeMap;

use futures::{FutureExt, StreamExt, future::BoxFuture, stream::BoxStream};
use serde_json::{Value, json};

use crate::net::{RetryPolicy, SecretString, Secrets};

use super::{
    Agent, AgentError, AssistantTurn, Conversation, Finish, Message, Reply, StreamEvent, ToolCall,
    Usage, models, parse_arguments, request,
    sse::{self, Decoder, Event},
};

/// `Debug` shows no key: it is a [`SecretString`].
#[derive(Debug)]
pub struct OpenAi {
    provider: String,
    model: String,
    /// Ends in `/v1` (or wherever the server's `chat/completions` lives).
    base_url: String,
    /// Local servers (Ollama) need none.
    key: Option<SecretString>,
    /// The key again, to mask out of error texts (a body may repeat the request's headers).
    secrets: Secrets,
    /// Send `reasoning_content` back on tool-call turns, use `max_tokens`.
    deepseek: bool,
    tools: bool,
    /// Pass a conversation's answer schema as `response_format` (DeepSeek: json_object).
    json_schema: bool,
    retry: RetryPolicy,
}

impl OpenAi {
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
            deepseek: false,
            tools: true,
            json_schema: true,
            retry,
        }
    }

    /// Speak DeepSeek's dialect.
    pub fn deepseek(mut self) -> Self {
        self.deepseek = true;
        self
    }

    pub fn with_tools(mut self, tools: bool) -> Self {
        self.tools = tools;
        self
    }

    /// Whether the server takes `response_format` (a compatible server may refuse it).
    pub fn with_json_schema(mut self, json_schema: bool) -> Self {
        self.json_schema = json_schema;
        self
    }

    fn body(&self, conversation: &Conversation, stream: bool) -> Value {
        let mut messages = Vec::new();
        if let Some(system) = &conversation.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        for message in &conversation.messages {
            match message {
                Message::User(text) => messages.push(json!({"role": "user", "content": text})),
                Message::Assistant(turn) => messages.push(self.assistant(turn)),
                Message::ToolResults(results) => {
                    for r in results {
                        messages.push(json!({
                            "role": "tool", "tool_call_id": r.call_id, "content": r.content,
                        }));
                    }
                }
            }
        }
        let mut body = json!({"model": self.model, "messages": messages, "stream": stream});
        let limit = if self.deepseek {
            "max_tokens"
        } else {
            "max_completion_tokens"
        };
        body[limit] = conversation.max_tokens.into();
        if let Some(t) = conversation.temperature {
            body["temperature"] = t.into();
        }
        if stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        // An answer held to a schema (not beside tools: a turn may call them instead).
        if let Some(schema) = &conversation.response_schema
            && self.json_schema
            && conversation.tools.is_empty()
        {
            body["response_format"] = if self.deepseek {
                // DeepSeek takes JSON mode only, and wants the word "json" in the prompt.
                json!({"type": "json_object"})
            } else {
                // Not strict: strict mode wants every property required and no keyword such
                // as minItems; the answer is validated against the schema anyway.
                json!({"type": "json_schema", "json_schema": {
                    "name": "answer", "schema": schema, "strict": false,
                }})
            };
        }
        if self.tools && !conversation.tools.is_empty() {
            body["tools"] = conversation
                .tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.parameters,
                    }})
                })
                .collect();
        }
        body
    }

    fn assistant(&self, turn: &AssistantTurn) -> Value {
        let content = if turn.text.is_empty() && !turn.tool_calls.is_empty() {
            Value::Null
        } else {
            turn.text.clone().into()
        };
        let mut message = json!({"role": "assistant", "content": content});
        if !turn.tool_calls.is_empty() {
            message["tool_calls"] = turn
                .tool_calls
                .iter()
                .map(|c| {
                    let arguments = match &c.arguments {
                        Value::String(raw) => raw.clone(),
                        other => other.to_string(),
                    };
                    json!({"id": c.id, "type": "function",
                           "function": {"name": c.name, "arguments": arguments}})
                })
                .collect();
            if self.deepseek {
                message["reasoning_content"] = turn.reasoning.clone().unwrap_or_default().into();
            }
        }
        message
    }

    fn request(&self, body: &Value) -> BoxFuture<'_, Result<reqwest::Response, AgentError>> {
        let url = format!("{}/chat/completions", self.base_url);
        let body = body.clone();
        async move {
            let decorate = |builder: reqwest::RequestBuilder| match &self.key {
                Some(key) => Ok(builder.header(
                    reqwest::header::AUTHORIZATION,
                    request::key_header(&self.provider, "Bearer ", key)?,
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

impl Agent for OpenAi {
    fn provider(&self) -> &str {
        &self.provider
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn supports_tools(&self) -> bool {
        self.tools
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
            Chunks::new(&self.provider, &self.model),
        )
        .map(|item| item.map_err(|e| e.masked(&self.secrets)))
        .boxed()
    }

    /// `GET {base}/models`: OpenAI's, DeepSeek's, and most compatible servers' list.
    fn list_models(&self) -> BoxFuture<'_, Result<models::ModelList, models::ListError>> {
        let lister = models::Lister {
            wire: models::Wire::OpenAi,
            provider: &self.provider,
            base_url: &self.base_url,
            key: self.key.as_ref(),
            secrets: &self.secrets,
            retry: &self.retry,
        };
        async move { lister.list().await }.boxed()
    }
}

/// An error answer in the OpenAI envelope (`code` may be a string, a number or null).
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
    let error = value.get("error")?;
    let message = match error {
        Value::String(s) => s.clone(),
        e => e
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message")
            .to_owned(),
    };
    let kind = match (error.get("code"), error.get("type")) {
        (Some(Value::String(code)), _) => code.clone(),
        (_, Some(Value::String(kind))) => kind.clone(),
        _ => String::new(),
    };
    // OpenRouter reports errors after generation began inside a 200, with the status as code.
    let status = match (status, error.get("code").and_then(Value::as_u64)) {
        (200, Some(code)) => u16::try_from(code).unwrap_or(500),
        (200, None) => 500,
        (status, _) => status,
    };
    Some(AgentError::Api {
        provider: provider.to_owned(),
        status,
        kind,
        message,
        retry_after: None,
    })
}

pub(crate) fn parse_reply(provider: &str, model: &str, value: &Value) -> Result<Reply, AgentError> {
    if let Some(error) = envelope_error(provider, 200, value) {
        return Err(error);
    }
    let malformed = |message: &str| AgentError::Malformed {
        provider: provider.to_owned(),
        message: message.to_owned(),
    };
    let choice = value
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| malformed("no choices in the answer"))?;
    let message = choice
        .get("message")
        .ok_or_else(|| malformed("the choice has no message"))?;
    let tool_calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .enumerate()
                .map(|(i, call)| ToolCall {
                    id: call["id"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("call_{i}")),
                    name: call["function"]["name"].as_str().unwrap_or("").to_owned(),
                    arguments: match &call["function"]["arguments"] {
                        Value::String(text) => parse_arguments(text),
                        // Some compatible servers send the object itself.
                        other => other.clone(),
                    },
                })
                .collect()
        })
        .unwrap_or_default();
    let turn = AssistantTurn {
        text: message["content"].as_str().unwrap_or("").to_owned(),
        tool_calls,
        reasoning: message["reasoning_content"].as_str().map(str::to_owned),
        raw: None,
    };
    Ok(Reply {
        finish: finish(
            choice["finish_reason"].as_str(),
            !turn.tool_calls.is_empty(),
        ),
        turn,
        usage: usage(&value["usage"]),
        model: value["model"].as_str().unwrap_or(model).to_owned(),
    })
}

fn finish(reason: Option<&str>, has_calls: bool) -> Finish {
    match reason {
        Some("tool_calls") | Some("function_call") => Finish::ToolCalls,
        Some("length") => Finish::Length,
        Some("stop") | None if has_calls => Finish::ToolCalls,
        Some("stop") | None => Finish::Stop,
        Some(other) => Finish::Other(other.to_owned()),
    }
}

fn usage(value: &Value) -> Usage {
    Usage {
        input_tokens: value["prompt_tokens"].as_u64().unwrap_or(0),
        output_tokens: value["completion_tokens"].as_u64().unwrap_or(0),
    }
}

/// Reads `chat.completion.chunk`s: text and reasoning deltas pass on at once; tool-call
/// fragments are joined per `index`.
pub(crate) struct Chunks {
    provider: String,
    model: String,
    text: String,
    reasoning: Option<String>,
    /// index → (id, name, argument text)
    calls: BTreeMap<u64, (String, String, String)>,
    finish: Option<String>,
    usage: Usage,
}

impl Chunks {
    pub(crate) fn new(provider: &str, model: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            model: model.to_owned(),
            text: String::new(),
            reasoning: None,
            calls: BTreeMap::new(),
            finish: None,
            usage: Usage::default(),
        }
    }
}

impl Decoder for Chunks {
    fn feed(&mut self, event: Event) -> Result<(Vec<StreamEvent>, bool), AgentError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            return Ok((Vec::new(), true));
        }
        let chunk: Value = serde_json::from_str(data).map_err(|e| AgentError::Malformed {
            provider: self.provider.clone(),
            message: format!("a stream chunk is not JSON ({e})"),
        })?;
        if let Some(AgentError::Api { message, kind, .. }) =
            envelope_error(&self.provider, 200, &chunk)
        {
            let message = if kind.is_empty() {
                message
            } else {
                format!("{kind}: {message}")
            };
            return Err(AgentError::Stream {
                provider: self.provider.clone(),
                message,
            });
        }
        if let Some(model) = chunk["model"].as_str() {
            self.model = model.to_owned();
        }
        if chunk["usage"].is_object() {
            self.usage = usage(&chunk["usage"]);
        }
        let mut out = Vec::new();
        let Some(choice) = chunk["choices"].get(0) else {
            return Ok((out, false));
        };
        let delta = &choice["delta"];
        if let Some(text) = delta["reasoning_content"]
            .as_str()
            .filter(|t| !t.is_empty())
        {
            self.reasoning.get_or_insert_default().push_str(text);
            out.push(StreamEvent::Reasoning(text.to_owned()));
        }
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            self.text.push_str(text);
            out.push(StreamEvent::Text(text.to_owned()));
        }
        if let Some(calls) = delta["tool_calls"].as_array() {
            for (position, call) in calls.iter().enumerate() {
                let index = call["index"].as_u64().unwrap_or(position as u64);
                let entry = self.calls.entry(index).or_default();
                if let Some(id) = call["id"].as_str() {
                    entry.0 = id.to_owned();
                }
                if let Some(name) = call["function"]["name"].as_str() {
                    entry.1.push_str(name);
                }
                match &call["function"]["arguments"] {
                    Value::String(fragment) => entry.2.push_str(fragment),
                    Value::Object(_) => entry.2 = call["function"]["arguments"].to_string(),
                    _ => {}
                }
            }
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish = Some(reason.to_owned());
        }
        Ok((out, false))
    }

    fn finish(&mut self) -> Result<Reply, AgentError> {
        if self.finish.is_none() {
            return Err(AgentError::Stream {
                provider: self.provider.clone(),
                message: "the stream ended before the answer was complete".into(),
            });
        }
        let tool_calls: Vec<ToolCall> = std::mem::take(&mut self.calls)
            .into_iter()
            .map(|(index, (id, name, args))| ToolCall {
                id: if id.is_empty() {
                    format!("call_{index}")
                } else {
                    id
                },
                name,
                arguments: parse_arguments(&args),
            })
            .collect();
        let has_calls = !tool_calls.is_empty();
        Ok(Reply {
            turn: AssistantTurn {
                text: std::mem::take(&mut self.text),
                tool_calls,
                reasoning: self.reasoning.take(),
                raw: None,
            },
            finish: finish(self.finish.as_deref(), has_calls),
            usage: self.usage,
            model: self.model.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelopes_of_compatible_servers() {
        let openai = br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        let AgentError::Api { status, kind, .. } = parse_error("openai", 401, openai) else {
            panic!()
        };
        assert_eq!((status, kind.as_str()), (401, "invalid_api_key"));
        let vllm =
            br#"{"error":{"message":"bad","type":"BadRequestError","param":null,"code":400}}"#;
        let AgentError::Api { kind, .. } = parse_error("vllm", 400, vllm) else {
            panic!()
        };
        assert_eq!(kind, "BadRequestError");
        let e = parse_error("x", 502, b"<html>bad gateway</html>");
        assert!(e.to_string().contains("<html>bad gateway</html>"), "{e}");
    }

    #[test]
    fn deepseek_sends_reasoning_back_on_tool_turns() {
        let agent = OpenAi::new(
            "deepseek",
            "deepseek-v4-flash",
            "http://x/v1",
            None,
            RetryPolicy::default(),
        )
        .deepseek();
        let turn = AssistantTurn {
            text: String::new(),
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                name: "f".into(),
                arguments: json!({"a": 1}),
            }],
            reasoning: None,
            raw: None,
        };
        let m = agent.assistant(&turn);
        assert_eq!(m["reasoning_content"], "");
        assert_eq!(m["content"], Value::Null);
        assert_eq!(m["tool_calls"][0]["function"]["arguments"], r#"{"a":1}"#);
    }

    #[test]
    fn an_answer_schema_is_the_response_format() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let mut conversation = Conversation {
            messages: vec![Message::User("Answer in JSON.".into())],
            max_tokens: 100,
            response_schema: Some(schema.clone()),
            ..Conversation::default()
        };
        let new = |name: &str| OpenAi::new(name, "m", "http://x/v1", None, RetryPolicy::default());
        let body = new("openai").body(&conversation, false);
        assert_eq!(
            body["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": false}})
        );
        // DeepSeek takes JSON mode only; a server that refuses the field is not sent it.
        let body = new("deepseek").deepseek().body(&conversation, false);
        assert_eq!(body["response_format"], json!({"type": "json_object"}));
        let body = new("local")
            .with_json_schema(false)
            .body(&conversation, false);
        assert!(body.get("response_format").is_none());
        // Beside tools the model may call one instead: no format then.
        conversation.tools = vec![crate::agents::ToolSpec {
            name: "f".into(),
            description: String::new(),
            parameters: json!({"type": "object"}),
        }];
        assert!(
            new("openai")
                .body(&conversation, false)
                .get("response_format")
                .is_none()
        );
    }
}
