//! Wire-faithful fake of four LLM provider APIs — OpenAI Chat Completions,
//! Anthropic Messages, Google Gemini `generateContent` / `streamGenerateContent`
//! and DeepSeek (OpenAI-compatible) — served by axum on 127.0.0.1, for the
//! integration tests and benches of plugboard's agents.
//!
//! Include it with `#[path = "../support/llm.rs"] mod fake_llm;` and start it with
//! [`FakeLlm::start`] (current tokio runtime) or [`FakeLlm::start_in_thread`] (own
//! thread, for benches and sync code). Latencies and arrival times ([`Recorded::at`])
//! are on tokio's clock, so under paused time they are virtual and exact. Point each
//! client at the matching base URL:
//!
//! | provider  | base                       | the client appends                          |
//! |-----------|----------------------------|---------------------------------------------|
//! | OpenAI    | [`FakeLlm::openai_base`]   | `/chat/completions`                         |
//! | DeepSeek  | [`FakeLlm::deepseek_base`] | `/chat/completions` (also served w/o `/v1`) |
//! | Anthropic | [`FakeLlm::anthropic_base`]| `/v1/messages`                              |
//! | Gemini    | [`FakeLlm::gemini_base`]   | `/v1beta/models/{model}:generateContent`,   |
//! |           |                            | `…:streamGenerateContent?alt=sse`           |
//!
//! Each also serves its model list (`GET`): OpenAI and DeepSeek `{base}/models`,
//! Anthropic `{base}/v1/models` (paged by `limit`, default 20, and `after_id`), Gemini
//! `{base}/v1beta/models` (paged by `pageSize`, default 50, and `pageToken`). The lists
//! are realistic by default ([`default_models`]); [`FakeLlm::set_models`] replaces one.
//!
//! Every provider accepts exactly one API key, [`KEY`], until [`FakeLlm::revoke_key`]
//! makes that provider refuse it as it refuses a wrong key. What a provider answers is
//! scripted per provider with [`Behaviour`] ([`FakeLlm::set`], [`FakeLlm::push_once`]);
//! the default, [`Behaviour::Echo`], answers `"{label} ({model}) says: {last user text}"`.
//! Every request is recorded ([`FakeLlm::requests`]).
//!
//! Wire format, headers, streaming event sequences and error envelopes follow
//! `shared/api-facts.md` §3 and the LLM part of §5. Behaviour the facts do not pin
//! down is marked `INVENTED:` at the place it is implemented. The list:
//!
//! - Token counts are words (`split_whitespace`): prompt = words of every string
//!   in the messages / system prompt (except ids, roles, types, names, signatures);
//!   completion = words of the answer text; a tool call counts the words of the
//!   tool name plus those of its compact JSON arguments (Anthropic adds the 3 words
//!   of its "Let me check." preface); DeepSeek's completion adds the reasoning words.
//!   DeepSeek: `prompt_cache_hit_tokens` is always 0 (`miss` = prompt tokens).
//! - Response `model` fields echo the requested model (the real APIs return a
//!   dated snapshot name). Ids: `chatcmpl-fake{n}`, `call_{n}`, `msg_fake{n}`,
//!   `toolu_{n}`, request ids `req_fake{n}`, with `n` a per-fake request counter.
//! - Stream piece sizes: text deltas of ≤ 4 characters for every provider (Gemini
//!   one piece per chunk), tool-argument deltas of ≤ 5 characters (OpenAI,
//!   DeepSeek, Anthropic). Frames are flushed one by one (the body stream yields
//!   between frames and the socket has TCP_NODELAY).
//! - Anthropic streams use `\r\n` line endings (to exercise CRLF parsing).
//! - Anthropic `retry-after` may be fractional (`"0.2"`) so tests stay fast; real
//!   Anthropic sends integer seconds. Gemini's `RetryInfo.retryDelay` is written
//!   with up to millisecond precision (`"0.2s"`, `"37s"`).
//! - `Behaviour::Status(429)` (as opposed to `RateLimited`) is the non-retryable
//!   flavour: OpenAI `insufficient_quota`, and no retry hints for any provider.
//! - Messages of canned errors are close to the real ones where known, else
//!   plausible; the 401 messages never contain the key that was sent. DeepSeek
//!   error `type`s other than the documented 400 are invented.
//! - Missing key: OpenAI 401 `invalid_request_error` ("You didn't provide an API
//!   key…"), Anthropic 401 "x-api-key header is required", DeepSeek 401, Gemini
//!   403 `PERMISSION_DENIED` ("…unregistered callers…"). A wrong key: OpenAI 401
//!   `invalid_api_key`, Anthropic 401 `authentication_error`, DeepSeek 401
//!   `authentication_error`, Gemini 400 `INVALID_ARGUMENT` + ErrorInfo
//!   `API_KEY_INVALID`. Anthropic also accepts `Authorization: Bearer KEY` (OAuth
//!   form) and only the `anthropic-version`s `2023-06-01` and `2023-01-01`.
//! - Check order for a request: route → record → latency → method (405 for
//!   non-POST) → auth → JSON body → request validation → behaviour. One-off
//!   behaviours ([`FakeLlm::push_once`]) are consumed only by requests that pass
//!   auth and validation.
//! - Echo on a tool-result turn: the "last user text" is the tool result text, so
//!   the answer is `"{label} ({model}) says: {result text}"`. Several tool results
//!   in the last turn are joined with `"\n"`.
//! - DeepSeek thinking mode is on unless the request has
//!   `"thinking":{"type":"disabled"}` or the model is `deepseek-chat` (facts:
//!   "deepseek-chat = v4-flash non-thinking"); only in thinking mode does the fake
//!   return `reasoning_content` and enforce its pass-back rule. Non-stream DeepSeek
//!   bodies start with one empty line (the facts' keep-alive blank lines; valid JSON
//!   whitespace), streams with a `: keep-alive` comment frame.
//! - DeepSeek stream deltas: first `{"role":"assistant","content":null,
//!   "reasoning_content":""}`, then `reasoning_content` pieces, then `content` pieces.
//! - Gemini `thoughtSignature`s are base64 of a deterministic string derived from
//!   the call (name + canonical args). The fake requires them on every Gemini model,
//!   for the first `functionCall` part of every model turn of the current turn
//!   (contents after the last user message with text), like Gemini 3 does: missing
//!   → 400 "Function call is missing a thought_signature…", different → 400
//!   "Corrupted thought signature.".
//! - Gemini: roles `user`/`model` or none (= user); `streamGenerateContent` without
//!   `alt=sse` answers a JSON array of the chunks; `/v1/` is served like `/v1beta/`.
//! - OpenAI/DeepSeek validation also rejects an assistant `tool_calls` message not
//!   followed by a tool message for each id; Anthropic also rejects an assistant
//!   `tool_use` message followed by a message lacking the matching `tool_result`s.
//! - `Behaviour::Malformed`: non-stream = the first half of the real JSON body;
//!   stream = the first frames, then the next frame cut in half, then EOF.
//!   `Behaviour::MidStreamError`: the first half of the frames, then the in-stream
//!   error (OpenAI/DeepSeek `server_error`, Anthropic `overloaded_error`, Gemini
//!   500 `INTERNAL`), then EOF (no `[DONE]` / `message_stop`).
//! - When the fake stops, hanging requests and requests still sleeping their
//!   latency are answered with a body that fails at once, so the client sees a
//!   broken connection rather than a response.
//! - Model lists: Gemini's `pageToken` is `page-{index of the next model}` and a
//!   model whose name holds `embedding` supports only `embedContent` (the others
//!   `generateContent`, `countTokens`); `created`/`created_at` fields are one fixed
//!   date. A non-GET request to a list gets the 405 the chat endpoints give non-POSTs.
//! - Recorded `authorization` headers keep their scheme: `"Bearer <key>"` or
//!   `"Bearer <redacted>"`; a `key=` query parameter is recorded as `key=<key>` or
//!   `key=<redacted>`.
//! - OpenAI responses carry `x-request-id`, `openai-version`,
//!   `openai-processing-ms` (= the configured latency) and `x-ratelimit-*` headers
//!   with invented numbers (`remaining` 0 and `reset` = the wait on `RateLimited`);
//!   Anthropic responses carry `request-id`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::serve::ListenerExt;
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

// Each fake carries its own copy: a bench includes one fake without the others.
#[path = "output.rs"]
#[allow(clippy::duplicate_mod)]
mod output;

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    OpenAi,
    Anthropic,
    Gemini,
    DeepSeek,
}

impl Provider {
    pub const ALL: [Provider; 4] = [
        Provider::OpenAi,
        Provider::Anthropic,
        Provider::Gemini,
        Provider::DeepSeek,
    ];

    /// The label used in echo answers: "openai", "anthropic", "gemini", "deepseek".
    pub fn label(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
            Provider::DeepSeek => "deepseek",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The only API key each provider accepts (any other key → that provider's 401 in
/// its own envelope; Gemini: 400 INVALID_ARGUMENT with ErrorInfo reason
/// API_KEY_INVALID).
pub const KEY: &str = "fake-key-0123456789";

#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Default for every provider: answer with text
    /// `"{label} ({model}) says: {last user text}"`, where label is
    /// "openai"/"anthropic"/"gemini"/"deepseek", model is the requested model, and
    /// `last user text` is the text of the last user message in the request (on a
    /// tool-result turn: the tool result text, see `ToolThenAnswer`). DeepSeek (in
    /// thinking mode) also returns reasoning_content "Thinking about: {last user text}".
    Echo,
    /// Answer with exactly this text.
    Answer(String),
    /// Answer with what the script writes for the request's last user text (a scripted
    /// model: the organizer's tests classify documents by what the prompt holds).
    Script(Script),
    /// First turn: call `tool` with `args` (a JSON object). When the request's last
    /// message carries a tool result (OpenAI/DeepSeek role "tool", Anthropic user
    /// message with tool_result blocks, Gemini user parts with functionResponse),
    /// answer with text `"tool said: {result text}"` where result text is the tool
    /// result content as a string (OpenAI: the content string or concatenated text
    /// parts; Anthropic: content string or concatenated text blocks; Gemini:
    /// `response` serialized compactly with serde_json::to_string).
    ToolThenAnswer {
        tool: String,
        args: serde_json::Value,
    },
    /// Answer with this HTTP status in the provider's own error envelope (Anthropic
    /// 529 overloaded_error, DeepSeek 402 Insufficient Balance, OpenAI 500
    /// server_error, Gemini 503 UNAVAILABLE, …). 429 here is the non-retryable kind
    /// (OpenAI insufficient_quota) without retry hints.
    Status(u16),
    /// 429 with the provider's retry hint: OpenAI and DeepSeek: `retry-after-ms`
    /// (ms) AND `retry-after` (seconds, rounded up); Anthropic: `retry-after`
    /// (seconds, may be fractional like "0.2" — INVENTED, real Anthropic sends
    /// integers); Gemini: no header, body RetryInfo.retryDelay like "0.2s".
    RateLimited { wait: std::time::Duration },
    /// Accept the request and never answer (until the client gives up or the fake
    /// stops).
    Hang,
    /// 200 with a body that is not valid JSON (non-stream) / an SSE stream that
    /// breaks off with garbage (stream).
    Malformed,
    /// 200 stream that sends part of an answer and then the provider's in-stream
    /// error. Non-stream requests get a 500 like `Status(500)`.
    MidStreamError,
    /// Exactly this answer: status, extra headers and body (hostile retry hints and other
    /// things no real provider should send).
    Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// This status in the provider's own envelope, whose message repeats the request's
    /// headers verbatim, key included (as some proxies and misconfigured servers do).
    EchoHeaders(u16),
}

/// A function from the last user text to the answer. `Debug` shows only that it is one.
#[derive(Clone)]
pub struct Script(pub Arc<dyn Fn(&str) -> String + Send + Sync>);

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Script(…)")
    }
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Path with query (`key=` value redacted), e.g. `/openai/v1/chat/completions`.
    pub path: String,
    /// Lower-case names; auth headers redacted (`<key>` if the key was [`KEY`],
    /// else `<redacted>`; `authorization` keeps its scheme: `Bearer <key>`).
    pub headers: BTreeMap<String, String>,
    /// The parsed JSON body, `Value::Null` if it was not JSON.
    pub body: serde_json::Value,
    pub at: Instant,
}

/// A running fake. Stops when dropped.
pub struct FakeLlm {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl FakeLlm {
    /// Binds 127.0.0.1:0 and serves on the current tokio runtime.
    pub async fn start() -> FakeLlm {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake llm: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake llm: local addr");
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            providers: std::array::from_fn(|_| Mutex::new(ProviderState::default())),
            seq: AtomicU64::new(0),
            stop,
        });
        let app = Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::disable())
            .with_state(shared.clone());
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let stopping = shared.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopping.stopped().await })
                .await;
        });
        FakeLlm {
            url: format!("http://{addr}"),
            shared,
            task: Some(task),
        }
    }

    /// Like [`FakeLlm::start`], but serves from its own thread and current-thread
    /// runtime, so it keeps answering while the caller blocks (benches, sync code).
    /// Callable with or without a runtime.
    pub fn start_in_thread() -> FakeLlm {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("fake-llm".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake llm: runtime");
                rt.block_on(async move {
                    let mut fake = FakeLlm::start().await;
                    let task = fake.task.take();
                    let shared = fake.shared.clone();
                    if tx.send(fake).is_err() {
                        return;
                    }
                    shared.stopped().await;
                    if let Some(task) = task {
                        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
                    }
                });
            })
            .expect("fake llm: spawn thread");
        rx.recv().expect("fake llm: start")
    }

    /// `{url}/openai/v1` (the client appends `/chat/completions`).
    pub fn openai_base(&self) -> String {
        format!("{}/openai/v1", self.url)
    }

    /// `{url}/deepseek/v1` (the client appends `/chat/completions`).
    pub fn deepseek_base(&self) -> String {
        format!("{}/deepseek/v1", self.url)
    }

    /// `{url}/anthropic` (the client appends `/v1/messages`).
    pub fn anthropic_base(&self) -> String {
        format!("{}/anthropic", self.url)
    }

    /// `{url}/gemini` (the client appends `/v1beta/models/{model}:generateContent`
    /// or `:streamGenerateContent?alt=sse`).
    pub fn gemini_base(&self) -> String {
        format!("{}/gemini", self.url)
    }

    /// The behaviour every later request to `provider` gets (until changed).
    pub fn set(&self, provider: Provider, behaviour: Behaviour) {
        self.shared.state(provider).behaviour = behaviour;
    }

    /// One-off behaviours taken (in order) before the persistent one, one per
    /// request (only requests that pass auth and validation take one).
    pub fn push_once(&self, provider: Provider, behaviour: Behaviour) {
        self.shared.state(provider).once.push_back(behaviour);
    }

    /// Delay before the response starts (headers), per provider, applied to every
    /// request (errors included). Default 0.
    pub fn set_latency(&self, provider: Provider, latency: Duration) {
        self.shared.state(provider).latency = latency;
    }

    /// Every request received by `provider`, in order.
    pub fn requests(&self, provider: Provider) -> Vec<Recorded> {
        self.shared.state(provider).requests.clone()
    }

    pub fn request_count(&self, provider: Provider) -> usize {
        self.shared.state(provider).requests.len()
    }

    /// The models `provider`'s list offers from now on (Gemini's given without `models/`).
    pub fn set_models(&self, provider: Provider, models: &[&str]) {
        self.shared.state(provider).models = Some(models.iter().map(|m| m.to_string()).collect());
    }

    /// `provider` refuses [`KEY`] from now on, as it refuses a wrong key (a revoked key).
    pub fn revoke_key(&self, provider: Provider) {
        self.shared.state(provider).revoked = true;
    }
}

/// The models each provider's list offers unless a test sets others: current names,
/// an embedding model among them (Gemini's cannot `generateContent`).
pub fn default_models(provider: Provider) -> Vec<String> {
    let names: &[&str] = match provider {
        Provider::OpenAi => &[
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-5",
            "gpt-5-mini",
            "text-embedding-3-small",
        ],
        Provider::Anthropic => &[
            "claude-opus-4-1",
            "claude-sonnet-4-5",
            "claude-haiku-4-5",
            "claude-3-5-haiku-20241022",
        ],
        Provider::Gemini => &[
            "gemini-2.5-pro",
            "gemini-2.5-flash",
            "gemini-2.5-flash-lite",
            "text-embedding-004",
        ],
        Provider::DeepSeek => &[
            "deepseek-v4-flash",
            "deepseek-v4-pro",
            "deepseek-chat",
            "deepseek-reasoner",
        ],
    };
    names.iter().map(|n| n.to_string()).collect()
}

impl Drop for FakeLlm {
    /// Stops accepting connections; hanging requests (and latency sleeps) end at
    /// once with a broken response, so shutdown never waits for them. With
    /// `PLUGBOARD_TEST_OUTPUT` set, every request received is saved for the secret scan.
    fn drop(&mut self) {
        self.shared.stop.send_replace(true);
        if output::dir().is_some() {
            let lines: Vec<String> = Provider::ALL
                .into_iter()
                .flat_map(|p| self.requests(p))
                .map(|r| json!({"path": r.path, "headers": r.headers, "body": r.body}).to_string())
                .collect();
            output::save(
                "fake-llm-requests",
                "requests the fake LLM providers received (their own key redacted)",
                &(lines.join("\n") + "\n"),
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------

struct Shared {
    providers: [Mutex<ProviderState>; 4],
    /// Request counter, the `n` of generated ids.
    seq: AtomicU64,
    /// `true` once the fake is stopping.
    stop: watch::Sender<bool>,
}

struct ProviderState {
    behaviour: Behaviour,
    once: VecDeque<Behaviour>,
    latency: Duration,
    requests: Vec<Recorded>,
    /// The model list; `None`: [`default_models`].
    models: Option<Vec<String>>,
    /// [`KEY`] refused like any wrong key.
    revoked: bool,
}

impl Default for ProviderState {
    fn default() -> Self {
        ProviderState {
            behaviour: Behaviour::Echo,
            once: VecDeque::new(),
            latency: Duration::ZERO,
            requests: Vec::new(),
            models: None,
            revoked: false,
        }
    }
}

impl Shared {
    fn state(&self, p: Provider) -> MutexGuard<'_, ProviderState> {
        self.providers[p.index()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn take_behaviour(&self, p: Provider) -> Behaviour {
        let mut st = self.state(p);
        match st.once.pop_front() {
            Some(b) => b,
            None => st.behaviour.clone(),
        }
    }

    /// Resolves once the fake is stopping.
    async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

// ---------------------------------------------------------------------------
// Request entry point and routing
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum Endpoint {
    /// OpenAI / DeepSeek `chat/completions`.
    Chat,
    /// Anthropic `v1/messages`.
    Messages,
    /// Gemini `models/{model}:generateContent` / `:streamGenerateContent`.
    Gemini { model: String, stream: bool },
    /// The provider's model list (`GET`).
    Models,
    /// Anything else under a provider prefix.
    Unknown,
}

fn route(path: &str) -> Option<(Provider, Endpoint)> {
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    if under("/openai") {
        let ep = match path {
            "/openai/v1/chat/completions" => Endpoint::Chat,
            "/openai/v1/models" => Endpoint::Models,
            _ => Endpoint::Unknown,
        };
        Some((Provider::OpenAi, ep))
    } else if under("/deepseek") {
        let ep = match path {
            "/deepseek/v1/chat/completions" | "/deepseek/chat/completions" => Endpoint::Chat,
            "/deepseek/v1/models" | "/deepseek/models" => Endpoint::Models,
            _ => Endpoint::Unknown,
        };
        Some((Provider::DeepSeek, ep))
    } else if under("/anthropic") {
        let ep = match path {
            "/anthropic/v1/messages" => Endpoint::Messages,
            "/anthropic/v1/models" => Endpoint::Models,
            _ => Endpoint::Unknown,
        };
        Some((Provider::Anthropic, ep))
    } else if under("/gemini") {
        let ep = match path {
            "/gemini/v1beta/models" | "/gemini/v1/models" => Endpoint::Models,
            _ => gemini_endpoint(path),
        };
        Some((Provider::Gemini, ep))
    } else {
        None
    }
}

/// `/gemini/v1beta/models/{model}:{method}`; axum path params cannot split on
/// `:`, so the path is parsed by hand (a `%3A` for the colon is accepted too).
fn gemini_endpoint(path: &str) -> Endpoint {
    let rest = path
        .strip_prefix("/gemini/v1beta/models/")
        .or_else(|| path.strip_prefix("/gemini/v1/models/"));
    let Some(rest) = rest else {
        return Endpoint::Unknown;
    };
    let rest = rest.replace("%3A", ":").replace("%3a", ":");
    let Some((model, method)) = rest.rsplit_once(':') else {
        return Endpoint::Unknown;
    };
    if model.is_empty() || model.contains('/') {
        return Endpoint::Unknown;
    }
    match method {
        "generateContent" => Endpoint::Gemini {
            model: model.to_string(),
            stream: false,
        },
        "streamGenerateContent" => Endpoint::Gemini {
            model: model.to_string(),
            stream: true,
        },
        _ => Endpoint::Unknown,
    }
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let Some((provider, endpoint)) = route(&path) else {
        // INVENTED: a path outside the four prefixes gets an OpenAI-style 404.
        return json_response(
            404,
            &json!({"error": {
                "message": format!("Invalid URL ({} {path}): the fake LLM serves /openai, /anthropic, /gemini and /deepseek", parts.method),
                "type": "invalid_request_error", "param": null, "code": null}}),
        );
    };
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();

    let recorded = Recorded {
        path: recorded_path(&path, query.as_deref()),
        headers: recorded_headers(&parts.headers),
        body: parsed.clone().unwrap_or(Value::Null),
        at,
    };
    let latency = {
        let mut st = shared.state(provider);
        st.requests.push(recorded);
        st.latency
    };
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;

    if !latency.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(latency) => {}
            _ = shared.stopped() => return aborted(),
        }
    }

    let req = Incoming {
        provider,
        endpoint,
        method: parts.method,
        path,
        query,
        headers: parts.headers,
        body: parsed,
        seq,
    };
    let mut resp = dispatch(&shared, &req).await;
    add_provider_headers(&mut resp, provider, seq, latency);
    resp
}

/// A request refused before it reaches the model (auth, validation): the
/// provider's error response.
type Refusal = Box<Response>;

/// What `dispatch` needs of a request.
struct Incoming {
    provider: Provider,
    endpoint: Endpoint,
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    /// `None`: the body was not JSON.
    body: Option<Value>,
    seq: u64,
}

async fn dispatch(shared: &Shared, req: &Incoming) -> Response {
    let p = req.provider;
    if req.endpoint == Endpoint::Unknown {
        return not_found(p, req);
    }
    let expected = if req.endpoint == Endpoint::Models {
        Method::GET
    } else {
        Method::POST
    };
    if req.method != expected {
        // INVENTED: 405 (in the provider's envelope) for another method.
        let msg = format!("Invalid method for URL ({} {})", req.method, req.path);
        return match p {
            Provider::OpenAi | Provider::DeepSeek => {
                chat_error(405, &msg, "invalid_request_error", None, None)
            }
            Provider::Anthropic => anthropic_error(405, "invalid_request_error", &msg, req.seq),
            Provider::Gemini => gemini_error(405, "INVALID_ARGUMENT", &msg, None),
        };
    }
    let revoked = shared.state(p).revoked;
    if req.endpoint == Endpoint::Models {
        let authed = match p {
            Provider::OpenAi | Provider::DeepSeek => chat_auth(p, &req.headers, revoked),
            Provider::Anthropic => anthropic_auth(&req.headers, req.seq, revoked),
            Provider::Gemini => gemini_auth(&req.headers, req.query.as_deref(), revoked),
        };
        if let Err(refused) = authed {
            return *refused;
        }
        let models = shared
            .state(p)
            .models
            .clone()
            .unwrap_or_else(|| default_models(p));
        return model_list(p, &models, req.query.as_deref());
    }
    let checked = match (p, &req.endpoint) {
        (Provider::OpenAi | Provider::DeepSeek, _) => {
            chat_auth(p, &req.headers, revoked).and_then(|()| chat_validate(p, req.body.as_ref()))
        }
        (Provider::Anthropic, _) => anthropic_auth(&req.headers, req.seq, revoked)
            .and_then(|()| anthropic_validate(req.body.as_ref(), req.seq)),
        (Provider::Gemini, Endpoint::Gemini { model, stream }) => {
            gemini_auth(&req.headers, req.query.as_deref(), revoked).and_then(|()| {
                let sse = *stream && query_param(req.query.as_deref(), "alt") == Some("sse");
                gemini_validate(model, *stream, sse, req.body.as_ref())
            })
        }
        (Provider::Gemini, _) => return not_found(p, req),
    };
    let conv = match checked {
        Ok(conv) => conv,
        Err(resp) => return *resp,
    };
    let behaviour = shared.take_behaviour(p);
    if let Behaviour::EchoHeaders(status) = behaviour {
        return echo_headers(p, status, &req.headers, req.seq);
    }
    respond(shared, p, &conv, behaviour, req.seq).await
}

/// One page of `models` in `p`'s list format.
fn model_list(p: Provider, models: &[String], query: Option<&str>) -> Response {
    const CREATED: u64 = 1_735_689_600; // 2025-01-01
    let number = |name: &str, default: usize| {
        query_param(query, name)
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(default, |n| n.clamp(1, 1000))
    };
    match p {
        Provider::OpenAi | Provider::DeepSeek => {
            let owner = if p == Provider::OpenAi {
                "openai"
            } else {
                "deepseek"
            };
            let data: Vec<Value> = models
                .iter()
                .map(|id| json!({"id": id, "object": "model", "created": CREATED, "owned_by": owner}))
                .collect();
            json_response(200, &json!({"object": "list", "data": data}))
        }
        Provider::Anthropic => {
            let start = match query_param(query, "after_id") {
                Some(after) => match models.iter().position(|m| m == after) {
                    Some(i) => i + 1,
                    None => {
                        return anthropic_error(
                            400,
                            "invalid_request_error",
                            &format!("after_id: no model {after}"),
                            0,
                        );
                    }
                },
                None => 0,
            };
            let end = (start + number("limit", 20)).min(models.len());
            let page = &models[start.min(end)..end];
            let data: Vec<Value> = page
                .iter()
                .map(|id| {
                    json!({"type": "model", "id": id, "display_name": id,
                                 "created_at": "2025-01-01T00:00:00Z"})
                })
                .collect();
            json_response(
                200,
                &json!({"data": data, "has_more": end < models.len(),
                        "first_id": page.first(), "last_id": page.last()}),
            )
        }
        Provider::Gemini => {
            let start = query_param(query, "pageToken")
                .and_then(|t| t.strip_prefix("page-"))
                .and_then(|i| i.parse::<usize>().ok())
                .unwrap_or(0)
                .min(models.len());
            let end = (start + number("pageSize", 50)).min(models.len());
            let data: Vec<Value> = models[start..end]
                .iter()
                .map(|name| {
                    let methods = if name.contains("embedding") {
                        json!(["embedContent"])
                    } else {
                        json!(["generateContent", "countTokens"])
                    };
                    json!({"name": format!("models/{name}"), "version": "001",
                           "displayName": name, "inputTokenLimit": 1_048_576,
                           "outputTokenLimit": 65_536, "supportedGenerationMethods": methods})
                })
                .collect();
            let mut body = json!({"models": data});
            if end < models.len() {
                body["nextPageToken"] = json!(format!("page-{end}"));
            }
            let mut resp = json_response(200, &body);
            set_header(
                &mut resp,
                "content-type",
                json_content_type(Provider::Gemini),
            );
            resp
        }
    }
}

fn not_found(p: Provider, req: &Incoming) -> Response {
    let msg = format!("Invalid URL ({} {})", req.method, req.path);
    match p {
        Provider::OpenAi | Provider::DeepSeek => {
            chat_error(404, &msg, "invalid_request_error", None, None)
        }
        Provider::Anthropic => anthropic_error(404, "not_found_error", "Not found", req.seq),
        Provider::Gemini => gemini_error(
            404,
            "NOT_FOUND",
            &format!("{msg}: not a generateContent or streamGenerateContent method"),
            None,
        ),
    }
}

// ---------------------------------------------------------------------------
// The conversation as the fake understands it, and what it answers
// ---------------------------------------------------------------------------

/// The parts of a validated request that decide the answer.
#[derive(Clone, Debug)]
struct Conv {
    model: String,
    /// Answer as SSE.
    sse: bool,
    /// Gemini `streamGenerateContent` without `alt=sse`: a JSON array of chunks.
    json_array: bool,
    /// OpenAI/DeepSeek `stream_options.include_usage`.
    include_usage: bool,
    /// The last user text, or the tool result text on a tool-result turn.
    last_user_text: String,
    /// The tool result text when the last message carries tool results.
    tool_result: Option<String>,
    prompt_tokens: u64,
    /// DeepSeek thinking mode: the reasoning text to return.
    reasoning: Option<String>,
}

#[derive(Clone, Debug)]
enum Reply {
    Text(String),
    Tool { name: String, args: Value },
}

impl Reply {
    /// INVENTED: output tokens = words.
    fn tokens(&self) -> u64 {
        match self {
            Reply::Text(t) => words(t),
            Reply::Tool { name, args } => words(name) + words(&args.to_string()),
        }
    }
}

fn echo_reply(p: Provider, conv: &Conv) -> Reply {
    Reply::Text(format!(
        "{} ({}) says: {}",
        p.label(),
        conv.model,
        conv.last_user_text
    ))
}

async fn respond(
    shared: &Shared,
    p: Provider,
    conv: &Conv,
    behaviour: Behaviour,
    seq: u64,
) -> Response {
    let reply = match behaviour {
        Behaviour::Echo => echo_reply(p, conv),
        Behaviour::Answer(text) => Reply::Text(text),
        Behaviour::Script(script) => Reply::Text((script.0)(&conv.last_user_text)),
        Behaviour::ToolThenAnswer { tool, args } => match &conv.tool_result {
            Some(result) => Reply::Text(format!("tool said: {result}")),
            None => Reply::Tool { name: tool, args },
        },
        Behaviour::Status(status) => return status_error(p, status, conv, seq),
        Behaviour::Raw {
            status,
            headers,
            body,
        } => {
            let mut resp = text_response(status, json_content_type(p), body);
            for (name, value) in &headers {
                set_header(&mut resp, name, value);
            }
            return resp;
        }
        // Answered in `dispatch`, which has the headers.
        Behaviour::EchoHeaders(status) => return status_error(p, status, conv, seq),
        Behaviour::RateLimited { wait } => return rate_limited(p, wait, conv, seq),
        Behaviour::Hang => {
            shared.stopped().await;
            return aborted();
        }
        Behaviour::Malformed => {
            let reply = echo_reply(p, conv);
            if conv.sse {
                let frames = ok_frames(p, conv, &reply, seq);
                let cut = cut_point(frames.len());
                let mut out = frames[..cut].to_vec();
                out.push(format!(
                    "{}{}",
                    truncate_half(&frames[cut]),
                    if p == Provider::Anthropic {
                        "\r\n\r\n"
                    } else {
                        "\n\n"
                    }
                ));
                return sse_response(out);
            }
            let body = ok_json(p, conv, &reply, seq).to_string();
            return text_response(200, json_content_type(p), truncate_half(&body).to_string());
        }
        Behaviour::MidStreamError => {
            if !conv.sse {
                return status_error(p, 500, conv, seq);
            }
            let reply = echo_reply(p, conv);
            let frames = ok_frames(p, conv, &reply, seq);
            let cut = cut_point(frames.len());
            let mut out = frames[..cut].to_vec();
            out.push(stream_error_frame(p));
            return sse_response(out);
        }
    };
    if conv.sse {
        return sse_response(ok_frames(p, conv, &reply, seq));
    }
    if conv.json_array {
        let chunks: Vec<Value> = gemini_chunks(conv, &reply, seq);
        return text_response(200, json_content_type(p), Value::Array(chunks).to_string());
    }
    let body = ok_json(p, conv, &reply, seq).to_string();
    match p {
        // INVENTED (facts: blank lines precede bodies under load): one empty line.
        Provider::DeepSeek => text_response(200, json_content_type(p), format!("\n{body}")),
        _ => text_response(200, json_content_type(p), body),
    }
}

fn ok_json(p: Provider, conv: &Conv, reply: &Reply, seq: u64) -> Value {
    match p {
        Provider::OpenAi | Provider::DeepSeek => chat_json(p, conv, reply, seq),
        Provider::Anthropic => anthropic_json(conv, reply, seq),
        Provider::Gemini => gemini_json(conv, reply, seq),
    }
}

fn ok_frames(p: Provider, conv: &Conv, reply: &Reply, seq: u64) -> Vec<String> {
    match p {
        Provider::OpenAi | Provider::DeepSeek => chat_frames(p, conv, reply, seq),
        Provider::Anthropic => anthropic_frames(conv, reply, seq),
        Provider::Gemini => gemini_chunks(conv, reply, seq)
            .iter()
            .map(|c| format!("data: {c}\n\n"))
            .collect(),
    }
}

fn stream_error_frame(p: Provider) -> String {
    match p {
        Provider::OpenAi | Provider::DeepSeek => {
            let (msg, typ, code) = chat_status_parts(p, 500, "");
            format!(
                "data: {}\n\n",
                json!({"error": {"message": msg, "type": typ, "param": null, "code": code}})
            )
        }
        Provider::Anthropic => format!(
            "event: error\r\ndata: {}\r\n\r\n",
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        ),
        Provider::Gemini => format!(
            "data: {}\n\n",
            json!({"error": {"code": 500, "message": gemini_status_message(500, ""), "status": "INTERNAL"}})
        ),
    }
}

fn status_error(p: Provider, status: u16, conv: &Conv, seq: u64) -> Response {
    match p {
        Provider::OpenAi | Provider::DeepSeek => {
            let (msg, typ, code) = chat_status_parts(p, status, &conv.model);
            chat_error(status, &msg, typ, None, code)
        }
        Provider::Anthropic => {
            let (typ, msg) = anthropic_status_parts(status, &conv.model);
            anthropic_error(status, typ, &msg, seq)
        }
        Provider::Gemini => gemini_error(
            status,
            gemini_status_name(status),
            &gemini_status_message(status, &conv.model),
            None,
        ),
    }
}

/// INVENTED: an error whose message lists the request's headers as they came.
fn echo_headers(p: Provider, status: u16, headers: &HeaderMap, seq: u64) -> Response {
    let listed: Vec<String> = headers
        .iter()
        .map(|(name, value)| format!("{name}: {}", String::from_utf8_lossy(value.as_bytes())))
        .collect();
    let message = format!("bad request; headers: {}", listed.join(", "));
    match p {
        Provider::OpenAi | Provider::DeepSeek => {
            chat_error(status, &message, "invalid_request_error", None, None)
        }
        Provider::Anthropic => anthropic_error(status, "invalid_request_error", &message, seq),
        Provider::Gemini => gemini_error(status, "INVALID_ARGUMENT", &message, None),
    }
}

fn rate_limited(p: Provider, wait: Duration, conv: &Conv, seq: u64) -> Response {
    match p {
        Provider::OpenAi | Provider::DeepSeek => {
            let mut resp = if p == Provider::OpenAi {
                chat_error(
                    429,
                    &format!(
                        "Rate limit reached for {} in organization org-fake on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in {}. Visit https://platform.openai.com/account/rate-limits to learn more.",
                        conv.model,
                        go_duration(wait)
                    ),
                    "requests",
                    None,
                    Some("rate_limit_exceeded"),
                )
            } else {
                let (msg, typ, code) = chat_status_parts(p, 429, &conv.model);
                chat_error(429, &msg, typ, None, code)
            };
            let ceil_secs = wait.as_millis().div_ceil(1000);
            set_header(&mut resp, "retry-after-ms", &wait.as_millis().to_string());
            set_header(&mut resp, "retry-after", &ceil_secs.to_string());
            if p == Provider::OpenAi {
                set_header(&mut resp, "x-ratelimit-remaining-requests", "0");
                set_header(&mut resp, "x-ratelimit-reset-requests", &go_duration(wait));
            }
            resp
        }
        Provider::Anthropic => {
            let (typ, msg) = anthropic_status_parts(429, &conv.model);
            let mut resp = anthropic_error(429, typ, &msg, seq);
            let reset = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
            let reset = reset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            set_header(&mut resp, "retry-after", &decimal_secs(wait));
            set_header(&mut resp, "anthropic-ratelimit-requests-limit", "50");
            set_header(&mut resp, "anthropic-ratelimit-requests-remaining", "0");
            set_header(&mut resp, "anthropic-ratelimit-requests-reset", &reset);
            resp
        }
        Provider::Gemini => {
            let details = json!([
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                 "violations": [{
                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    "quotaDimensions": {"location": "global", "model": conv.model},
                    "quotaValue": "10"}]},
                {"@type": "type.googleapis.com/google.rpc.Help",
                 "links": [{"description": "Learn more about Gemini API quotas",
                            "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                 "retryDelay": format!("{}s", decimal_secs(wait))}
            ]);
            gemini_error(
                429,
                "RESOURCE_EXHAUSTED",
                &format!(
                    "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. Please retry in {}s.",
                    decimal_secs(wait)
                ),
                Some(details),
            )
        }
    }
}

// ---------------------------------------------------------------------------
// OpenAI Chat Completions and DeepSeek (api-facts §3a, §3d)
// ---------------------------------------------------------------------------

/// The OpenAI error envelope (all four keys), also used by DeepSeek.
fn chat_error(
    status: u16,
    message: &str,
    typ: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    json_response(
        status,
        &json!({"error": {"message": message, "type": typ, "param": param, "code": code}}),
    )
}

/// (message, type, code) for an injected status.
fn chat_status_parts(
    p: Provider,
    status: u16,
    model: &str,
) -> (String, &'static str, Option<&'static str>) {
    if p == Provider::DeepSeek {
        // Messages from the facts' table; types INVENTED except 400.
        let (msg, typ) = match status {
            400 => ("Invalid Format", "invalid_request_error"),
            401 => ("Authentication Fails", "authentication_error"),
            402 => ("Insufficient Balance", "unknown_error"),
            422 => ("Invalid Parameters", "invalid_request_error"),
            429 => ("Rate Limit Reached", "rate_limit_error"),
            500 => ("Server Error", "server_error"),
            503 => ("Server Overloaded", "server_error"),
            s if s >= 500 => ("Server Error", "server_error"),
            _ => ("Invalid Request", "invalid_request_error"),
        };
        let code = if status < 500 {
            Some("invalid_request_error")
        } else {
            None
        };
        return (msg.to_string(), typ, code);
    }
    match status {
        400 => ("Invalid request.".to_string(), "invalid_request_error", None),
        401 => (
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.".to_string(),
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        403 => (
            "Country, region, or territory not supported".to_string(),
            "request_forbidden",
            Some("unsupported_country_region_territory"),
        ),
        404 => (
            format!("The model `{model}` does not exist or you do not have access to it."),
            "invalid_request_error",
            Some("model_not_found"),
        ),
        429 => (
            "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.".to_string(),
            "insufficient_quota",
            Some("insufficient_quota"),
        ),
        500 => (
            "The server had an error while processing your request. Sorry about that!".to_string(),
            "server_error",
            None,
        ),
        503 => (
            "The server is overloaded or not ready yet.".to_string(),
            "server_error",
            None,
        ),
        s if s >= 500 => (format!("Server error ({s})."), "server_error", None),
        s => (format!("Request failed ({s})."), "invalid_request_error", None),
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn chat_auth(p: Provider, headers: &HeaderMap, revoked: bool) -> Result<(), Refusal> {
    match (p, bearer_token(headers)) {
        (_, Some(KEY)) if !revoked => Ok(()),
        (Provider::OpenAi, None) => Err(Box::new(chat_error(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can obtain an API key from https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            None,
        ))),
        (Provider::OpenAi, Some(_)) => Err(Box::new(chat_error(
            401,
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        ))),
        (_, None) => Err(Box::new(chat_error(
            401,
            "Authentication Fails, no api key was provided",
            "authentication_error",
            None,
            Some("invalid_request_error"),
        ))),
        (_, Some(_)) => Err(Box::new(chat_error(
            401,
            "Authentication Fails, Your api key is invalid",
            "authentication_error",
            None,
            Some("invalid_request_error"),
        ))),
    }
}

fn role(m: &Value) -> &str {
    m.get("role").and_then(Value::as_str).unwrap_or("")
}

/// A content string, or the concatenated `text` of its `{"type":"text"}` parts.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

fn tool_call_ids(m: &Value) -> Vec<&str> {
    m.get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .filter_map(|c| c.get("id").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

const DEEPSEEK_REASONING_MSG: &str =
    "The `reasoning_content` in the thinking mode must be passed back to the API.";

fn chat_validate(p: Provider, body: Option<&Value>) -> Result<Conv, Refusal> {
    let bad = |msg: String, param: Option<String>, code: Option<&str>| {
        Box::new(chat_error(
            400,
            &msg,
            "invalid_request_error",
            param.as_deref(),
            code,
        ))
    };
    let Some(body) = body else {
        return Err(bad(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)".into(),
            None,
            None,
        ));
    };
    let Some(obj) = body.as_object() else {
        return Err(bad(
            "Invalid type for request body: expected an object.".into(),
            None,
            Some("invalid_type"),
        ));
    };
    let model = match obj.get("model").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => return Err(bad("you must provide a model parameter".into(), None, None)),
    };
    let msgs = match obj.get("messages") {
        None | Some(Value::Null) => {
            return Err(bad(
                "Missing required parameter: 'messages'.".into(),
                Some("messages".into()),
                Some("missing_required_parameter"),
            ));
        }
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(bad(
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.".into(),
                Some("messages".into()),
                Some("empty_array"),
            ));
        }
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(bad(
                "Invalid type for 'messages': expected an array of objects.".into(),
                Some("messages".into()),
                Some("invalid_type"),
            ));
        }
    };
    // Structured output: OpenAI takes `json_schema` (a name and a schema) and `json_object`;
    // DeepSeek only `json_object`. JSON mode wants the word "json" in the messages (both).
    match body
        .pointer("/response_format/type")
        .and_then(Value::as_str)
    {
        None | Some("text") => {}
        Some("json_schema") if p == Provider::DeepSeek => {
            return Err(bad(
                "This response_format type is unavailable now".into(),
                None,
                Some("invalid_request_error"),
            ));
        }
        Some("json_schema") => {
            for field in ["name", "schema"] {
                if body
                    .pointer(&format!("/response_format/json_schema/{field}"))
                    .is_none()
                {
                    return Err(bad(
                        format!(
                            "Missing required parameter: 'response_format.json_schema.{field}'."
                        ),
                        Some(format!("response_format.json_schema.{field}")),
                        Some("missing_required_parameter"),
                    ));
                }
            }
        }
        Some("json_object") => {
            if !msgs.iter().any(|m| {
                content_text(m.get("content"))
                    .to_lowercase()
                    .contains("json")
            }) {
                return Err(bad(
                    "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.".into(),
                    Some("messages".into()),
                    None,
                ));
            }
        }
        Some(other) => {
            return Err(bad(
                format!(
                    "Invalid value: '{other}'. Supported values are: 'text', 'json_object', and 'json_schema'."
                ),
                Some("response_format.type".into()),
                Some("invalid_value"),
            ));
        }
    }
    let thinking = p == Provider::DeepSeek
        && model != "deepseek-chat"
        && body.pointer("/thinking/type").and_then(Value::as_str) != Some("disabled");

    const ROLES: [&str; 6] = [
        "system",
        "developer",
        "user",
        "assistant",
        "tool",
        "function",
    ];
    for (i, m) in msgs.iter().enumerate() {
        let Some(r) = m.get("role").and_then(Value::as_str) else {
            return Err(bad(
                format!("Missing required parameter: 'messages[{i}].role'."),
                Some(format!("messages[{i}].role")),
                Some("missing_required_parameter"),
            ));
        };
        if !ROLES.contains(&r) {
            return Err(bad(
                format!(
                    "Invalid value: '{r}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."
                ),
                Some(format!("messages[{i}].role")),
                Some("invalid_value"),
            ));
        }
        match r {
            "tool" => {
                let Some(id) = m.get("tool_call_id").and_then(Value::as_str) else {
                    return Err(bad(
                        format!("Missing required parameter: 'messages[{i}].tool_call_id'."),
                        Some(format!("messages[{i}].tool_call_id")),
                        Some("missing_required_parameter"),
                    ));
                };
                // The assistant message right before this run of tool messages.
                let mut j = i;
                while j > 0 && role(&msgs[j - 1]) == "tool" {
                    j -= 1;
                }
                let ids = match j.checked_sub(1).map(|k| &msgs[k]) {
                    Some(prev) if role(prev) == "assistant" => tool_call_ids(prev),
                    _ => Vec::new(),
                };
                if ids.is_empty() {
                    return Err(bad(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.".into(),
                        Some(format!("messages.[{i}].role")),
                        None,
                    ));
                }
                if !ids.contains(&id) {
                    return Err(bad(
                        format!(
                            "Invalid parameter: 'tool_call_id' of '{id}' not found in 'tool_calls' of previous message."
                        ),
                        Some(format!("messages.[{i}].tool_call_id")),
                        None,
                    ));
                }
            }
            "assistant" => {
                let ids = tool_call_ids(m);
                if ids.is_empty() {
                    continue;
                }
                if thinking && !m.get("reasoning_content").is_some_and(Value::is_string) {
                    return Err(Box::new(chat_error(
                        400,
                        DEEPSEEK_REASONING_MSG,
                        "invalid_request_error",
                        None,
                        Some("invalid_request_error"),
                    )));
                }
                let answered: HashSet<&str> = msgs[i + 1..]
                    .iter()
                    .take_while(|n| role(n) == "tool")
                    .filter_map(|n| n.get("tool_call_id").and_then(Value::as_str))
                    .collect();
                let missing: Vec<&str> = ids
                    .into_iter()
                    .filter(|id| !answered.contains(id))
                    .collect();
                if !missing.is_empty() {
                    return Err(bad(
                        format!(
                            "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                            missing.join(", ")
                        ),
                        Some(format!("messages.[{i}].role")),
                        None,
                    ));
                }
            }
            _ => {}
        }
    }

    let trailing_tools = msgs.iter().rev().take_while(|m| role(m) == "tool").count();
    let tool_result = (trailing_tools > 0).then(|| {
        msgs[msgs.len() - trailing_tools..]
            .iter()
            .map(|m| content_text(m.get("content")))
            .collect::<Vec<_>>()
            .join("\n")
    });
    let last_user_text = match &tool_result {
        Some(t) => t.clone(),
        None => msgs
            .iter()
            .rev()
            .find(|m| role(m) == "user")
            .map(|m| content_text(m.get("content")))
            .unwrap_or_default(),
    };
    let reasoning = thinking.then(|| format!("Thinking about: {last_user_text}"));
    Ok(Conv {
        model,
        sse: body.get("stream") == Some(&Value::Bool(true)),
        json_array: false,
        include_usage: body.pointer("/stream_options/include_usage") == Some(&Value::Bool(true)),
        last_user_text,
        tool_result,
        prompt_tokens: count_words(
            &Value::Array(msgs.clone()),
            &["role", "type", "id", "tool_call_id", "name"],
        ),
        reasoning,
    })
}

fn chat_usage(p: Provider, conv: &Conv, reply: &Reply) -> Value {
    let prompt = conv.prompt_tokens;
    if p == Provider::DeepSeek {
        let reasoning = conv.reasoning.as_deref().map(words).unwrap_or(0);
        let completion = reply.tokens() + reasoning;
        return json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
            "prompt_cache_hit_tokens": 0,
            "prompt_cache_miss_tokens": prompt,
        });
    }
    let completion = reply.tokens();
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    })
}

fn chat_id(seq: u64) -> String {
    format!("chatcmpl-fake{seq}")
}

fn chat_json(p: Provider, conv: &Conv, reply: &Reply, seq: u64) -> Value {
    let (mut message, finish) = match reply {
        Reply::Text(t) => (json!({"role": "assistant", "content": t}), "stop"),
        Reply::Tool { name, args } => (
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": format!("call_{seq}"), "type": "function",
                "function": {"name": name, "arguments": args.to_string()}}]}),
            "tool_calls",
        ),
    };
    if p == Provider::OpenAi {
        message["refusal"] = Value::Null;
        message["annotations"] = json!([]);
    }
    if let Some(r) = &conv.reasoning {
        message["reasoning_content"] = json!(r);
    }
    let mut out = json!({
        "id": chat_id(seq),
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": conv.model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": chat_usage(p, conv, reply),
        "system_fingerprint": "fp_fake",
    });
    if p == Provider::OpenAi {
        out["service_tier"] = json!("default");
    }
    out
}

/// The full SSE frame sequence of a streamed chat completion.
fn chat_frames(p: Provider, conv: &Conv, reply: &Reply, seq: u64) -> Vec<String> {
    let id = chat_id(seq);
    let created = chrono::Utc::now().timestamp();
    let chunk = |delta: Value, finish: Value| -> String {
        let mut c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created,
            "model": conv.model, "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if conv.include_usage {
            c["usage"] = Value::Null;
        }
        format!("data: {c}\n\n")
    };
    let mut frames = Vec::new();
    let deepseek = p == Provider::DeepSeek;
    if deepseek {
        frames.push(": keep-alive\n\n".to_string());
    }
    // The first delta carries the role; for DeepSeek it opens the reasoning.
    let mut role_sent = false;
    if let Some(reasoning) = &conv.reasoning {
        frames.push(chunk(
            json!({"role": "assistant", "content": null, "reasoning_content": ""}),
            Value::Null,
        ));
        role_sent = true;
        for piece in pieces(reasoning, 4) {
            frames.push(chunk(
                json!({"content": null, "reasoning_content": piece}),
                Value::Null,
            ));
        }
    }
    let finish = match reply {
        Reply::Text(text) => {
            if !role_sent {
                let mut delta = json!({"role": "assistant", "content": ""});
                if !deepseek {
                    delta["refusal"] = Value::Null;
                }
                frames.push(chunk(delta, Value::Null));
            }
            for piece in pieces(text, 4) {
                let mut delta = json!({"content": piece});
                if conv.reasoning.is_some() {
                    delta["reasoning_content"] = Value::Null;
                }
                frames.push(chunk(delta, Value::Null));
            }
            "stop"
        }
        Reply::Tool { name, args } => {
            let call = json!([{"index": 0, "id": format!("call_{seq}"), "type": "function",
                               "function": {"name": name, "arguments": ""}}]);
            let delta = if role_sent {
                json!({"content": null, "reasoning_content": null, "tool_calls": call})
            } else if deepseek {
                json!({"role": "assistant", "content": null, "tool_calls": call})
            } else {
                json!({"role": "assistant", "content": null, "tool_calls": call, "refusal": null})
            };
            frames.push(chunk(delta, Value::Null));
            for piece in pieces(&args.to_string(), 5) {
                frames.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    Value::Null,
                ));
            }
            "tool_calls"
        }
    };
    frames.push(chunk(json!({}), json!(finish)));
    if conv.include_usage {
        let c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created,
            "model": conv.model, "system_fingerprint": "fp_fake",
            "choices": [], "usage": chat_usage(p, conv, reply),
        });
        frames.push(format!("data: {c}\n\n"));
    }
    frames.push("data: [DONE]\n\n".to_string());
    frames
}

// ---------------------------------------------------------------------------
// Anthropic Messages (api-facts §3b)
// ---------------------------------------------------------------------------

fn anthropic_request_id(seq: u64) -> String {
    format!("req_fake{seq:012}")
}

fn anthropic_error(status: u16, typ: &str, message: &str, seq: u64) -> Response {
    json_response(
        status,
        &json!({"type": "error", "error": {"type": typ, "message": message},
                "request_id": anthropic_request_id(seq)}),
    )
}

/// (type, message) for an injected status.
fn anthropic_status_parts(status: u16, model: &str) -> (&'static str, String) {
    match status {
        400 => ("invalid_request_error", "Invalid request.".into()),
        401 => ("authentication_error", "invalid x-api-key".into()),
        402 => (
            "billing_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.".into(),
        ),
        403 => (
            "permission_error",
            "Your API key does not have permission to use the specified resource.".into(),
        ),
        404 => ("not_found_error", format!("model: {model}")),
        413 => ("request_too_large", "Request exceeds the maximum allowed number of bytes.".into()),
        429 => (
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 50 requests per minute. Please try again later.".into(),
        ),
        500 => ("api_error", "Internal server error".into()),
        504 => ("timeout_error", "Request timed out".into()),
        529 => ("overloaded_error", "Overloaded".into()),
        s if s >= 500 => ("api_error", format!("Server error ({s})")),
        s => ("invalid_request_error", format!("Request failed ({s})")),
    }
}

fn anthropic_auth(headers: &HeaderMap, seq: u64, revoked: bool) -> Result<(), Refusal> {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| bearer_token(headers));
    match key {
        Some(KEY) if !revoked => {}
        Some(_) => {
            return Err(Box::new(anthropic_error(
                401,
                "authentication_error",
                "invalid x-api-key",
                seq,
            )));
        }
        None => {
            return Err(Box::new(anthropic_error(
                401,
                "authentication_error",
                "x-api-key header is required",
                seq,
            )));
        }
    }
    match headers
        .get("anthropic-version")
        .and_then(|v| v.to_str().ok())
    {
        None => Err(Box::new(anthropic_error(
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
            seq,
        ))),
        Some("2023-06-01" | "2023-01-01") => Ok(()),
        Some(v) => Err(Box::new(anthropic_error(
            400,
            "invalid_request_error",
            &format!("anthropic-version: invalid version '{v}'"),
            seq,
        ))),
    }
}

fn blocks(m: &Value) -> &[Value] {
    m.get("content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn block_type(b: &Value) -> &str {
    b.get("type").and_then(Value::as_str).unwrap_or("")
}

fn tool_use_ids(m: &Value) -> Vec<&str> {
    blocks(m)
        .iter()
        .filter(|b| block_type(b) == "tool_use")
        .filter_map(|b| b.get("id").and_then(Value::as_str))
        .collect()
}

fn anthropic_validate(body: Option<&Value>, seq: u64) -> Result<Conv, Refusal> {
    let bad = |msg: String| Box::new(anthropic_error(400, "invalid_request_error", &msg, seq));
    let Some(body) = body else {
        return Err(bad(
            "There was an error parsing the body of your request: the body is not valid JSON."
                .into(),
        ));
    };
    if !body.is_object() {
        return Err(bad("Input should be a valid dictionary".into()));
    }
    let model = match body.get("model") {
        None | Some(Value::Null) => return Err(bad("model: Field required".into())),
        Some(Value::String(m)) => m.clone(),
        Some(_) => return Err(bad("model: Input should be a valid string".into())),
    };
    match body.get("max_tokens") {
        None | Some(Value::Null) => return Err(bad("max_tokens: Field required".into())),
        Some(v) => match v.as_i64() {
            Some(n) if n >= 1 => {}
            Some(_) => {
                return Err(bad(
                    "max_tokens: Input should be greater than or equal to 1".into(),
                ));
            }
            None => return Err(bad("max_tokens: Input should be a valid integer".into())),
        },
    }
    let msgs = match body.get("messages") {
        None | Some(Value::Null) => return Err(bad("messages: Field required".into())),
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(bad("messages: at least one message is required".into()));
        }
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad("messages: Input should be a valid list".into())),
    };
    for (i, m) in msgs.iter().enumerate() {
        let r = role(m);
        if r != "user" && r != "assistant" {
            return Err(bad(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            )));
        }
        // Every tool_result must answer a tool_use of the previous (assistant) message.
        let prev_ids = match i.checked_sub(1).map(|k| &msgs[k]) {
            Some(prev) if role(prev) == "assistant" => tool_use_ids(prev),
            _ => Vec::new(),
        };
        for (k, b) in blocks(m).iter().enumerate() {
            if block_type(b) != "tool_result" {
                continue;
            }
            let id = b.get("tool_use_id").and_then(Value::as_str).unwrap_or("");
            if r != "user" || !prev_ids.contains(&id) {
                return Err(bad(format!(
                    "messages.{i}.content.{k}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                )));
            }
        }
        // Every tool_use must be answered in the next message (if there is one).
        if r == "assistant" && i + 1 < msgs.len() {
            let next = &msgs[i + 1];
            let answered: HashSet<&str> = blocks(next)
                .iter()
                .filter(|b| block_type(b) == "tool_result")
                .filter_map(|b| b.get("tool_use_id").and_then(Value::as_str))
                .collect();
            let missing: Vec<&str> = tool_use_ids(m)
                .into_iter()
                .filter(|id| !answered.contains(id))
                .collect();
            if !missing.is_empty() {
                return Err(bad(format!(
                    "messages.{}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                    i + 1,
                    missing.join(", ")
                )));
            }
        }
    }

    let last = msgs.last().expect("non-empty");
    let results: Vec<String> = if role(last) == "user" {
        blocks(last)
            .iter()
            .filter(|b| block_type(b) == "tool_result")
            .map(|b| content_text(b.get("content")))
            .collect()
    } else {
        Vec::new()
    };
    let tool_result = (!results.is_empty()).then(|| results.join("\n"));
    let last_user_text = match &tool_result {
        Some(t) => t.clone(),
        None => msgs
            .iter()
            .rev()
            .find(|m| role(m) == "user")
            .map(|m| content_text(m.get("content")))
            .unwrap_or_default(),
    };
    let skip = ["role", "type", "id", "tool_use_id", "name", "cache_control"];
    let prompt_tokens = count_words(body.get("system").unwrap_or(&Value::Null), &skip)
        + count_words(&Value::Array(msgs.clone()), &skip);
    Ok(Conv {
        model,
        sse: body.get("stream") == Some(&Value::Bool(true)),
        json_array: false,
        include_usage: false,
        last_user_text,
        tool_result,
        prompt_tokens,
        reasoning: None,
    })
}

const ANTHROPIC_TOOL_PREFACE: &str = "Let me check.";

fn anthropic_usage(conv: &Conv, output: u64) -> Value {
    json!({"input_tokens": conv.prompt_tokens, "output_tokens": output,
           "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
           "service_tier": "standard"})
}

fn anthropic_output_tokens(reply: &Reply) -> u64 {
    match reply {
        Reply::Text(_) => reply.tokens(),
        Reply::Tool { .. } => words(ANTHROPIC_TOOL_PREFACE) + reply.tokens(),
    }
}

fn anthropic_json(conv: &Conv, reply: &Reply, seq: u64) -> Value {
    let (content, stop) = match reply {
        Reply::Text(t) => (json!([{"type": "text", "text": t}]), "end_turn"),
        Reply::Tool { name, args } => (
            json!([{"type": "text", "text": ANTHROPIC_TOOL_PREFACE},
                   {"type": "tool_use", "id": format!("toolu_{seq}"), "name": name, "input": args}]),
            "tool_use",
        ),
    };
    json!({
        "id": format!("msg_fake{seq}"), "type": "message", "role": "assistant",
        "model": conv.model, "content": content,
        "stop_reason": stop, "stop_sequence": null,
        "usage": anthropic_usage(conv, anthropic_output_tokens(reply)),
    })
}

/// One SSE event with CRLF line endings (INVENTED: to exercise CRLF parsing).
fn anthropic_event(name: &str, data: &Value) -> String {
    format!("event: {name}\r\ndata: {data}\r\n\r\n")
}

fn anthropic_frames(conv: &Conv, reply: &Reply, seq: u64) -> Vec<String> {
    let mut frames = vec![anthropic_event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": format!("msg_fake{seq}"), "type": "message", "role": "assistant",
            "model": conv.model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": conv.prompt_tokens, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 1}}}),
    )];
    let text = match reply {
        Reply::Text(t) => t.as_str(),
        Reply::Tool { .. } => ANTHROPIC_TOOL_PREFACE,
    };
    frames.push(anthropic_event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
    ));
    // The real API writes this one with a space after the colon.
    frames.push("event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n".to_string());
    for piece in pieces(text, 4) {
        frames.push(anthropic_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    frames.push(anthropic_event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    let stop = match reply {
        Reply::Text(_) => "end_turn",
        Reply::Tool { name, args } => {
            frames.push(anthropic_event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 1, "content_block": {
                    "type": "tool_use", "id": format!("toolu_{seq}"), "name": name, "input": {}}}),
            ));
            let mut partials = vec![String::new()];
            partials.extend(pieces(&args.to_string(), 5));
            for partial in partials {
                frames.push(anthropic_event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 1,
                            "delta": {"type": "input_json_delta", "partial_json": partial}}),
                ));
            }
            frames.push(anthropic_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 1}),
            ));
            "tool_use"
        }
    };
    frames.push(anthropic_event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": {"output_tokens": anthropic_output_tokens(reply)}}),
    ));
    frames.push(anthropic_event(
        "message_stop",
        &json!({"type": "message_stop"}),
    ));
    frames
}

// ---------------------------------------------------------------------------
// Google Gemini generateContent / streamGenerateContent (api-facts §3c)
// ---------------------------------------------------------------------------

fn gemini_error(status: u16, status_name: &str, message: &str, details: Option<Value>) -> Response {
    let mut err = json!({"code": status, "message": message, "status": status_name});
    if let Some(d) = details {
        err["details"] = d;
    }
    let mut resp = json_response(status, &json!({ "error": err }));
    set_header(
        &mut resp,
        "content-type",
        json_content_type(Provider::Gemini),
    );
    resp
}

fn gemini_status_name(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        // INVENTED: other codes.
        s if s >= 500 => "UNKNOWN",
        _ => "FAILED_PRECONDITION",
    }
}

fn gemini_status_message(status: u16, model: &str) -> String {
    match status {
        400 => "Request contains an invalid argument.".into(),
        401 => "Request had invalid authentication credentials.".into(),
        403 => "The caller does not have permission".into(),
        404 => format!("models/{model} is not found for API version v1beta, or is not supported for generateContent."),
        429 => "You exceeded your current quota, please check your plan and billing details.".into(),
        500 => "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting".into(),
        503 => "The model is overloaded. Please try again later.".into(),
        504 => "Deadline expired before operation could complete.".into(),
        s => format!("Request failed ({s})."),
    }
}

fn gemini_auth(headers: &HeaderMap, query: Option<&str>, revoked: bool) -> Result<(), Refusal> {
    let key = headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| query_param(query, "key"));
    match key {
        Some(KEY) if !revoked => Ok(()),
        Some(_) => Err(Box::new(gemini_error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            Some(json!([
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com",
                 "metadata": {"service": "generativelanguage.googleapis.com"}},
                {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                 "message": "API key not valid. Please pass a valid API key."}
            ])),
        ))),
        None => Err(Box::new(gemini_error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            None,
        ))),
    }
}

/// Serializes with object keys sorted at every level, so a client that parsed and
/// re-serialized the args still yields the same signature.
fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

/// INVENTED: the `thoughtSignature` the fake gives a function call (deterministic,
/// so checking it back needs no state).
fn thought_signature(name: &str, args: &Value) -> String {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    canonical_json(args).hash(&mut h);
    let raw = format!("fake-thought-signature/{name}/{:016x}", h.finish());
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fn parts_of(c: &Value) -> &[Value] {
    c.get("parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn gemini_validate(
    model: &str,
    stream: bool,
    sse: bool,
    body: Option<&Value>,
) -> Result<Conv, Refusal> {
    let bad = |msg: String| Box::new(gemini_error(400, "INVALID_ARGUMENT", &msg, None));
    let Some(body) = body else {
        return Err(bad(
            "Invalid JSON payload received. Unexpected token.".into()
        ));
    };
    if !body.is_object() {
        return Err(bad(format!(
            "Invalid JSON payload received. Unknown name \"\": Root element must be a message. Got: {body}"
        )));
    }
    let contents = match body.get("contents") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        None | Some(Value::Null) | Some(Value::Array(_)) => {
            return Err(bad(
                "* GenerateContentRequest.contents: contents is not specified\n".into(),
            ));
        }
        Some(other) => {
            return Err(bad(format!(
                "Invalid value at 'contents' (type.googleapis.com/google.ai.generativelanguage.v1beta.Content), {other}"
            )));
        }
    };
    for (i, c) in contents.iter().enumerate() {
        match c.get("role") {
            None | Some(Value::Null) => {}
            Some(Value::String(r)) if r == "user" || r == "model" => {}
            Some(_) => return Err(bad("Please use a valid role: user, model.".into())),
        }
        let parts = parts_of(c);
        if parts.is_empty() {
            return Err(bad(format!(
                "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
            )));
        }
        for (k, part) in parts.iter().enumerate() {
            if let Some(fr) = part.get("functionResponse")
                && let Some(resp) = fr.get("response")
                && !resp.is_object()
            {
                return Err(bad(format!(
                    "Invalid value at 'contents[{i}].parts[{k}].function_response.response' (type.googleapis.com/google.protobuf.Struct), {resp}"
                )));
            }
        }
    }
    // INVENTED wording: a response schema needs the JSON MIME type.
    if body.pointer("/generationConfig/responseSchema").is_some()
        && body
            .pointer("/generationConfig/responseMimeType")
            .and_then(Value::as_str)
            != Some("application/json")
    {
        return Err(bad(
            "* GenerateContentRequest.generation_config.response_schema: response_mime_type must be application/json when response_schema is set.\n".into(),
        ));
    }
    let is_model = |c: &Value| role(c) == "model";
    let has_text = |c: &Value| parts_of(c).iter().any(|p| p.get("text").is_some());
    let has_fn_response = |c: &Value| {
        parts_of(c)
            .iter()
            .any(|p| p.get("functionResponse").is_some())
    };

    // Thought signatures: required on the first functionCall of every model turn
    // since the last user message with text (the "current turn").
    let turn_start = contents
        .iter()
        .rposition(|c| !is_model(c) && has_text(c) && !has_fn_response(c))
        .map_or(0, |i| i + 1);
    for c in contents[turn_start..].iter().filter(|c| is_model(c)) {
        let mut first = true;
        for (k, part) in parts_of(c).iter().enumerate() {
            let Some(call) = part.get("functionCall") else {
                continue;
            };
            let name = call.get("name").and_then(Value::as_str).unwrap_or("");
            let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
            match part.get("thoughtSignature").and_then(Value::as_str) {
                None if first => {
                    return Err(bad(format!(
                        "Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:{name}` , position {}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.",
                        k + 1
                    )));
                }
                Some(sig) if sig != thought_signature(name, &args) => {
                    return Err(bad("Corrupted thought signature.".into()));
                }
                _ => {}
            }
            first = false;
        }
    }

    let last = contents.last().expect("non-empty");
    let results: Vec<String> = if is_model(last) {
        Vec::new()
    } else {
        parts_of(last)
            .iter()
            .filter_map(|p| p.pointer("/functionResponse/response"))
            .map(|r| serde_json::to_string(r).unwrap_or_default())
            .collect()
    };
    let tool_result = (!results.is_empty()).then(|| results.join("\n"));
    let last_user_text = match &tool_result {
        Some(t) => t.clone(),
        None => contents
            .iter()
            .rev()
            .find(|c| !is_model(c))
            .map(|c| {
                parts_of(c)
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let skip = ["role", "name", "id", "thoughtSignature", "mimeType"];
    let prompt_tokens = count_words(body.get("systemInstruction").unwrap_or(&Value::Null), &skip)
        + count_words(&Value::Array(contents.clone()), &skip);
    Ok(Conv {
        model: model.to_string(),
        sse,
        json_array: stream && !sse,
        include_usage: false,
        last_user_text,
        tool_result,
        prompt_tokens,
        reasoning: None,
    })
}

fn gemini_usage(conv: &Conv, output: u64) -> Value {
    json!({
        "promptTokenCount": conv.prompt_tokens,
        "candidatesTokenCount": output,
        "totalTokenCount": conv.prompt_tokens + output,
        "thoughtsTokenCount": 0,
        "cachedContentTokenCount": 0,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": conv.prompt_tokens}],
    })
}

fn gemini_response(conv: &Conv, seq: u64, parts: Value, finish: bool, usage: Value) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if finish {
        candidate["finishReason"] = json!("STOP");
    }
    json!({
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": conv.model,
        "responseId": format!("fake{seq}"),
    })
}

fn gemini_parts(reply: &Reply) -> Value {
    match reply {
        Reply::Text(t) => json!([{"text": t}]),
        Reply::Tool { name, args } => json!([{
            "functionCall": {"name": name, "args": args},
            "thoughtSignature": thought_signature(name, args),
        }]),
    }
}

fn gemini_json(conv: &Conv, reply: &Reply, seq: u64) -> Value {
    gemini_response(
        conv,
        seq,
        gemini_parts(reply),
        true,
        gemini_usage(conv, reply.tokens()),
    )
}

/// Stream chunks: text in ≤ 4-character pieces, the last one with finishReason and
/// the full usage; a functionCall whole in one chunk.
fn gemini_chunks(conv: &Conv, reply: &Reply, seq: u64) -> Vec<Value> {
    let full_usage = gemini_usage(conv, reply.tokens());
    let text = match reply {
        Reply::Text(t) => t,
        Reply::Tool { .. } => {
            return vec![gemini_response(
                conv,
                seq,
                gemini_parts(reply),
                true,
                full_usage,
            )];
        }
    };
    let mut texts = pieces(text, 4);
    if texts.is_empty() {
        texts.push(String::new());
    }
    let n = texts.len();
    let partial_usage = json!({"promptTokenCount": conv.prompt_tokens,
                               "totalTokenCount": conv.prompt_tokens});
    texts
        .into_iter()
        .enumerate()
        .map(|(i, piece)| {
            let last = i + 1 == n;
            let usage = if last {
                full_usage.clone()
            } else {
                partial_usage.clone()
            };
            gemini_response(conv, seq, json!([{"text": piece}]), last, usage)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Helpers: responses, headers, recording, text
// ---------------------------------------------------------------------------

fn json_content_type(p: Provider) -> &'static str {
    match p {
        Provider::Gemini => "application/json; charset=UTF-8",
        _ => "application/json",
    }
}

fn text_response(status: u16, content_type: &str, body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    set_header(&mut resp, "content-type", content_type);
    resp
}

fn json_response(status: u16, body: &Value) -> Response {
    text_response(status, "application/json", body.to_string())
}

fn set_header(resp: &mut Response, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
        resp.headers_mut().insert(n, v);
    }
}

/// A 200 `text/event-stream` whose body yields one frame per chunk, yielding to
/// the runtime between frames so that each frame is flushed on its own.
fn sse_response(frames: Vec<String>) -> Response {
    let stream =
        futures::stream::unfold((frames.into_iter(), true), |(mut it, first)| async move {
            let frame = it.next()?;
            if !first {
                tokio::task::yield_now().await;
            }
            Some((Ok::<Bytes, std::io::Error>(Bytes::from(frame)), (it, false)))
        });
    let mut resp = Response::new(Body::from_stream(stream));
    set_header(&mut resp, "content-type", "text/event-stream");
    set_header(&mut resp, "cache-control", "no-cache");
    resp
}

/// The answer to a request that is cut off because the fake stops: a body that
/// fails at once, so hyper drops the connection (the client sees an error).
fn aborted() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("fake LLM stopped"))
    });
    Response::new(Body::from_stream(stream))
}

/// Headers every response of a provider carries (INVENTED values).
fn add_provider_headers(resp: &mut Response, p: Provider, seq: u64, latency: Duration) {
    let mut add = |name: &str, value: String| {
        if !resp.headers().contains_key(name) {
            set_header(resp, name, &value);
        }
    };
    match p {
        Provider::OpenAi => {
            add("x-request-id", format!("req_fake{seq:012}"));
            add("openai-version", "2020-10-01".into());
            add("openai-processing-ms", latency.as_millis().to_string());
            add("x-ratelimit-limit-requests", "10000".into());
            add("x-ratelimit-limit-tokens", "200000".into());
            add("x-ratelimit-remaining-requests", "9999".into());
            add("x-ratelimit-remaining-tokens", "199000".into());
            add("x-ratelimit-reset-requests", "6ms".into());
            add("x-ratelimit-reset-tokens", "300ms".into());
        }
        Provider::Anthropic => add("request-id", anthropic_request_id(seq)),
        Provider::Gemini | Provider::DeepSeek => {}
    }
}

const AUTH_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
];

fn redact(value: &str) -> &'static str {
    if value == KEY { "<key>" } else { "<redacted>" }
}

fn recorded_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str().to_ascii_lowercase();
        let raw = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let value = if AUTH_HEADERS.contains(&name.as_str()) {
            match raw.split_once(' ') {
                Some((scheme, cred)) if name.ends_with("authorization") => {
                    format!("{scheme} {}", redact(cred.trim()))
                }
                _ => redact(raw.trim()).to_string(),
            }
        } else {
            raw
        };
        out.entry(name)
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

fn recorded_path(path: &str, query: Option<&str>) -> String {
    let Some(query) = query else {
        return path.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some(("key", v)) => format!("key={}", redact(v)),
            _ => kv.to_string(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// INVENTED token count: whitespace-separated words.
fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Words in every string of `v`, skipping the values of the keys in `skip`.
fn count_words(v: &Value, skip: &[&str]) -> u64 {
    match v {
        Value::String(s) => words(s),
        Value::Array(items) => items.iter().map(|i| count_words(i, skip)).sum(),
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .map(|(_, v)| count_words(v, skip))
            .sum(),
        _ => 0,
    }
}

/// `s` in pieces of at most `n` characters.
fn pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}

/// Where a broken stream breaks off: about half-way, always before the last frame.
fn cut_point(frames: usize) -> usize {
    (frames / 2).min(frames.saturating_sub(1))
}

/// The first half of `s` (on a char boundary).
fn truncate_half(s: &str) -> &str {
    let mut cut = s.len() / 2;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// Seconds with up to millisecond precision, no trailing zeros: "1", "0.2", "1.5".
fn decimal_secs(d: Duration) -> String {
    let ms = d.as_millis();
    let (secs, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        return secs.to_string();
    }
    let frac = format!("{frac:03}");
    format!("{secs}.{}", frac.trim_end_matches('0'))
}

/// OpenAI's reset-duration style: "200ms", "6s", "1.5s", "1m30s".
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let minutes = ms / 60_000;
    let rest = Duration::from_millis((ms % 60_000) as u64);
    if minutes == 0 {
        format!("{}s", decimal_secs(rest))
    } else {
        format!("{minutes}m{}s", decimal_secs(rest))
    }
}
