//! Provider agents: one module per wire format behind one [`Agent`] trait.
//!
//! - [`openai`]: OpenAI Chat Completions, and every endpoint that speaks it (Ollama, vLLM,
//!   OpenRouter); with `deepseek` set it also carries DeepSeek's `reasoning_content` back on
//!   tool-call turns, as that API requires.
//! - [`anthropic`]: Anthropic Messages (Claude).
//! - [`gemini`]: Google Gemini `generateContent` / `streamGenerateContent`.
//!
//! An agent sends a [`Conversation`] (system prompt, messages, tool definitions) and gets a
//! [`Reply`] (text, tool calls, token usage), or the same as a stream of [`StreamEvent`]s.
//! [`Agent::list_models`] reads the provider's model list ([`models`]) for `plugboard check
//! --online`.
//!
//! Requests go through [`request::send`], under the shared retry policy of [`crate::net`]:
//! retries on 429/5xx that honour the provider's own hints (`retry-after-ms`, `retry-after`,
//! Gemini's `RetryInfo.retryDelay`), with a cap. Keys are [`crate::net::SecretString`]s
//! until the header is built, and masked out of every error an agent returns.

pub mod anthropic;
pub mod gemini;
pub mod models;
pub mod openai;
mod providers;
mod request;
pub(crate) mod sse;
pub mod stats;
#[cfg(test)]
mod test_server;

use std::{fmt, time::Duration};

use futures::{future::BoxFuture, stream::BoxStream};
use serde::Serialize;

pub use providers::{Agents, Format, ProviderConfig, ProviderEnv, ProviderStatus, key_variable};
pub use stats::{ProviderStats, Stats};

/// What an agent is asked: one conversation with one provider.
#[derive(Debug, Clone, Default)]
pub struct Conversation {
    pub system: Option<String>,
    pub messages: Vec<Message>,
    /// Tools the model may call; empty means none.
    pub tools: Vec<ToolSpec>,
    /// Most tokens the answer may use.
    pub max_tokens: u32,
    pub temperature: Option<f32>,
    /// The answer is to be one JSON object matching this schema. Providers that can be held
    /// to it are told (OpenAI: `response_format` json_schema; DeepSeek: json_object; Gemini:
    /// `responseMimeType` and `responseSchema`); the prompt says so for the others.
    pub response_schema: Option<serde_json::Value>,
}

/// One turn of a conversation.
#[derive(Debug, Clone)]
pub enum Message {
    User(String),
    Assistant(AssistantTurn),
    /// The results of the tool calls the previous assistant turn made, in its order.
    ToolResults(Vec<ToolResult>),
}

/// What the model said: text and tool calls. `raw` keeps the provider's own message so the
/// next request can send it back verbatim (Anthropic thinking blocks, Gemini thought
/// signatures).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssistantTurn {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    /// DeepSeek's `reasoning_content`: must go back on tool-call turns.
    pub reasoning: Option<String>,
    pub raw: Option<serde_json::Value>,
}

/// A tool the model asked to run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    /// The provider's id for the call (Gemini may not give one: we make one up).
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them. Usually an object; when the model wrote
    /// something that is not JSON, the raw text as a string (the caller reports it).
    pub arguments: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub call_id: String,
    /// The tool's name (Gemini matches results by name).
    pub name: String,
    pub content: String,
    pub is_error: bool,
}

/// A tool as the model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments (root `type: object`).
    pub parameters: serde_json::Value,
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    Stop,
    ToolCalls,
    /// It ran out of tokens.
    Length,
    /// Anything else, as the provider named it (content filter, safety, ...).
    Other(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, other: Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
    }
}

/// A whole answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub turn: AssistantTurn,
    pub finish: Finish,
    pub usage: Usage,
    /// The model that answered, as the provider reports it.
    pub model: String,
}

/// A piece of a streamed answer. A stream ends with exactly one `Done` (or an error).
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Text(String),
    Reasoning(String),
    Done(Reply),
}

/// Why an agent got no answer. Messages never contain keys.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The provider answered with an error status.
    #[error("{provider} answered HTTP {status}{}: {message}{}{}", kind_suffix(kind), asked_wait(*retry_after), advice(provider, *status, kind))]
    Api {
        provider: String,
        status: u16,
        /// The provider's error type or code (`rate_limit_error`, `RESOURCE_EXHAUSTED`).
        kind: String,
        message: String,
        /// How long the provider asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// No answer came: connection refused, reset, TLS, ...
    #[error("cannot reach {provider}: {message}")]
    Transport { provider: String, message: String },
    /// The provider answered something we cannot read.
    #[error("{provider} sent a malformed answer: {message}")]
    Malformed { provider: String, message: String },
    /// The provider reported an error in the middle of a streamed answer.
    #[error("{provider} broke off its answer: {message}")]
    Stream { provider: String, message: String },
    #[error("{provider} did not answer within {:.1} s", .after.as_secs_f64())]
    Timeout { provider: String, after: Duration },
}

fn kind_suffix(kind: &str) -> String {
    if kind.is_empty() {
        String::new()
    } else {
        format!(" ({kind})")
    }
}

/// The wait a provider asked for, as it asked (however long).
fn asked_wait(wait: Option<Duration>) -> String {
    match wait {
        Some(wait) if !wait.is_zero() => format!(
            " (asked to wait {})",
            crate::net::retry::describe_wait(wait)
        ),
        _ => String::new(),
    }
}

/// What the user can do about an error status.
fn advice(provider: &str, status: u16, kind: &str) -> String {
    let key = providers::key_variable(provider);
    match (status, kind) {
        (401, _) | (_, "API_KEY_INVALID") | (_, "authentication_error") => {
            format!(" — check {key}: the provider does not accept this key")
        }
        (402, _) | (_, "insufficient_quota") | (_, "billing_error") => {
            " — the account is out of credit; add funds or use another provider".into()
        }
        (403, _) => " — the key lacks permission for this model or region".into(),
        (404, _) => " — the model may not exist: check the model name in the configuration".into(),
        (429, _) => " — rate limited; try again later or use another provider".into(),
        (500..=599, _) => " — a problem on the provider's side; try again later".into(),
        _ => String::new(),
    }
}

impl AgentError {
    /// The same error with every secret in `secrets` masked out of its text.
    pub fn masked(mut self, secrets: &crate::net::Secrets) -> Self {
        match &mut self {
            AgentError::Api { message, .. }
            | AgentError::Transport { message, .. }
            | AgentError::Malformed { message, .. }
            | AgentError::Stream { message, .. } => secrets.mask_in(message),
            AgentError::Timeout { .. } => {}
        }
        self
    }

    /// Worth trying again (later, or elsewhere).
    pub fn is_transient(&self) -> bool {
        match self {
            AgentError::Api { status, kind, .. } => {
                matches!(status, 408 | 409 | 429 | 500..=599) && kind != "insufficient_quota"
            }
            AgentError::Transport { .. } | AgentError::Timeout { .. } => true,
            AgentError::Stream { .. } | AgentError::Malformed { .. } => false,
        }
    }
}

/// One provider's model, reachable over its wire format.
pub trait Agent: Send + Sync {
    /// The provider's name in the configuration (`openai`, `ollama`, ...).
    fn provider(&self) -> &str;
    fn model(&self) -> &str;
    /// Whether the model may be given tools.
    fn supports_tools(&self) -> bool;
    /// Send the conversation; the whole answer.
    fn send<'a>(
        &'a self,
        conversation: &'a Conversation,
    ) -> BoxFuture<'a, Result<Reply, AgentError>>;
    /// Send the conversation; the answer as it is written.
    fn stream<'a>(
        &'a self,
        conversation: &'a Conversation,
    ) -> BoxStream<'a, Result<StreamEvent, AgentError>>;
    /// The models the provider offers, from its model list (`plugboard check --online`).
    /// An agent without one says [`models::ModelList::Unlisted`].
    fn list_models(&self) -> BoxFuture<'_, Result<models::ModelList, models::ListError>> {
        Box::pin(async { Ok(models::ModelList::Unlisted) })
    }
}

impl fmt::Debug for dyn Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.provider(), self.model())
    }
}

/// Parse a tool call's argument text: an object when it is JSON, the text itself otherwise.
pub(crate) fn parse_arguments(text: &str) -> serde_json::Value {
    if text.trim().is_empty() {
        return serde_json::Value::Object(Default::default());
    }
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}

/// The text of the last user message (for fakes' echo and for routing rules).
pub fn last_user_text(conversation: &Conversation) -> &str {
    conversation
        .messages
        .iter()
        .rev()
        .find_map(|m| match m {
            Message::User(text) => Some(text.as_str()),
            _ => None,
        })
        .unwrap_or("")
}
