//! Tool calls to a Streamable HTTP server posted by the caller's own task.
//!
//! rmcp's client passes every request through its service loop and its transport worker, and
//! back: four task hops per call on top of the HTTP connection's, each of which may wake
//! another thread. A tool call is the request that matters for speed, so plugboard posts it
//! itself, on the session rmcp's client opened (the session id and protocol headers it last
//! posted with, [`Link`]), and reads the answer where it arrives: a JSON body, or the
//! request's event stream — the call's progress and log messages, the server's requests
//! (sampling, elicitation, roots: asked of this call's client and answered back), list
//! changes, and the result. A stream the server ends before the result (SEP-1699) is resumed
//! with `GET` + `Last-Event-ID`, and the client's own stream for the call is released too.
//! Everything else (initialize, lists, reads, pings) stays with rmcp's client; a session the
//! server no longer knows (404) sends the call that way too, and rmcp initializes anew.

#![allow(deprecated)] // rmcp marks sampling, roots and logging deprecated (SEP-2577); upstreams use them.

use futures::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap};
use rmcp::model::{
    JsonRpcMessage, RequestId, ServerJsonRpcMessage, ServerNotification, ServerRequest,
};

use super::super::remote::Link;
use super::*;
use crate::net;

/// How many times one call's stream is resumed after the server ended it early.
const RESUMES: usize = 16;
/// The longest wait before resuming that a server's `retry` may ask for.
const RETRY_MAX: Duration = Duration::from_secs(10);

/// What became of a call posted directly.
pub(super) enum Direct {
    Answered(Box<Result<ServerResult, ToolError>>),
    /// The server did not take it (its session is gone): send it through rmcp's client.
    NotTaken(CallToolRequestParams),
}

/// Ids of the calls plugboard posts itself: strings, so they never meet rmcp's numbers on the
/// same session.
static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Shared {
    /// Post `params` as a `tools/call` on `link`'s session and read the answer.
    pub(super) async fn call_directly(
        &self,
        link: Link,
        peer: &Peer<RoleClient>,
        mut params: CallToolRequestParams,
        cx: ToolContext,
        what: &str,
    ) -> Direct {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = format!("plugboard-{n}");
        let id = RequestId::String(key.clone().into());
        let token = ProgressToken(NumberOrString::String(key.into()));
        params
            .meta
            .get_or_insert_with(Default::default)
            .set_progress_token(token.clone());
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "tools/call",
            "params": params,
        });
        let response = match post(&link, &body).await {
            Ok(response) => response,
            Err(e) => return Direct::Answered(Box::new(Err(self.unreachable(what, &e)))),
        };
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND && link.session.is_some() {
            return Direct::NotTaken(params);
        }
        if !status.is_success() {
            let said = net::read_body(response, 4096)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            return Direct::Answered(Box::new(Err(ToolError::Upstream(format!(
                "the MCP server of plugin {} answered {what} with HTTP {status}: {}",
                self.plugin,
                clip(&tidy(&said), 300)
            )))));
        }
        // From here the server has the call: a caller that goes away tells it to stop.
        let mut abandon = Abandon {
            peer: Some(peer.clone()),
            id: id.clone(),
        };
        let is_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let answer = if is_stream {
            let call = Call {
                shared: self,
                link: &link,
                id: &id,
                token: &token,
                cx: &cx,
                what,
            };
            call.read_stream(response).await
        } else {
            match net::read_body(response, net::MAX_UPSTREAM_BODY).await {
                Ok(body) => match serde_json::from_slice::<ServerJsonRpcMessage>(&body) {
                    Ok(message) => match answer_to(message, &id) {
                        Some(answer) => self.answered(answer, what),
                        None => Err(self.garbled(what, "a JSON body that is not the answer")),
                    },
                    Err(e) => {
                        Err(self.garbled(what, &format!("a body that is not JSON-RPC ({e})")))
                    }
                },
                Err(e) => Err(self.garbled(what, &e.to_string())),
            }
        };
        abandon.peer = None;
        Direct::Answered(Box::new(answer))
    }

    fn answered(
        &self,
        answer: Result<ServerResult, ErrorData>,
        what: &str,
    ) -> Result<ServerResult, ToolError> {
        answer.map_err(|e| self.failure(what, ServiceError::McpError(e)))
    }

    fn unreachable(&self, what: &str, e: &reqwest::Error) -> ToolError {
        ToolError::Upstream(format!(
            "the MCP server of plugin {} could not be reached {what} ({}); try again shortly",
            self.plugin,
            net::describe(e)
        ))
    }

    fn garbled(&self, what: &str, why: &str) -> ToolError {
        ToolError::Upstream(format!(
            "the MCP server of plugin {} answered {what} with {}",
            self.plugin,
            clip(&tidy(why), 300)
        ))
    }
}

/// The response to `id` in `message`, if it is one.
fn answer_to(
    message: ServerJsonRpcMessage,
    id: &RequestId,
) -> Option<Result<ServerResult, ErrorData>> {
    match message {
        JsonRpcMessage::Response(r) if r.id == *id => Some(Ok(r.result)),
        JsonRpcMessage::Error(e) if e.id.as_ref() == Some(id) => Some(Err(e.error)),
        _ => None,
    }
}

/// One call being read off its event stream.
struct Call<'a> {
    shared: &'a Shared,
    link: &'a Link,
    id: &'a RequestId,
    token: &'a ProgressToken,
    cx: &'a ToolContext,
    what: &'a str,
}

impl Call<'_> {
    async fn read_stream(&self, response: reqwest::Response) -> Result<ServerResult, ToolError> {
        let mut events = event_stream(response);
        let mut last_id: Option<String> = None;
        let mut retry = Duration::ZERO;
        let mut resumed = 0;
        loop {
            let event = match events.next().await {
                Some(Ok(event)) => event,
                Some(Err(e)) => {
                    return Err(self
                        .shared
                        .garbled(self.what, &format!("a broken event stream ({e})")));
                }
                None => {
                    // Ended before the answer: released by the server (SEP-1699), to be
                    // resumed from the last event it numbered.
                    let Some(from) = last_id.clone().filter(|_| resumed < RESUMES) else {
                        return Err(self
                            .shared
                            .garbled(self.what, "an event stream that ended before the answer"));
                    };
                    if resumed == 0 {
                        let cx = self.cx.clone();
                        tokio::spawn(async move {
                            cx.release_stream().await;
                        });
                    }
                    resumed += 1;
                    tokio::time::sleep(retry.min(RETRY_MAX)).await;
                    events = match resume(self.link, &from).await {
                        Ok(response) if response.status().is_success() => event_stream(response),
                        Ok(response) => {
                            return Err(self.shared.garbled(
                                self.what,
                                &format!("HTTP {} to resuming its event stream", response.status()),
                            ));
                        }
                        Err(e) => return Err(self.shared.unreachable(self.what, &e)),
                    };
                    continue;
                }
            };
            if let Some(id) = event.id {
                last_id = Some(id);
            }
            if let Some(ms) = event.retry {
                retry = Duration::from_millis(ms);
            }
            let Some(data) = event.data.filter(|d| !d.trim().is_empty()) else {
                continue;
            };
            let message = match serde_json::from_str::<ServerJsonRpcMessage>(&data) {
                Ok(message) => message,
                Err(e) => {
                    return Err(self
                        .shared
                        .garbled(self.what, &format!("an event that is not JSON-RPC ({e})")));
                }
            };
            match message {
                JsonRpcMessage::Notification(n) => self.heard(n.notification).await,
                JsonRpcMessage::Request(r) => self.asked(r.id, r.request).await,
                other => {
                    if let Some(answer) = answer_to(other, self.id) {
                        return self.shared.answered(answer, self.what);
                    }
                }
            }
        }
    }

    /// A notification on the call's stream, handled as rmcp's client would hand it to
    /// plugboard's [`Client`].
    async fn heard(&self, notification: ServerNotification) {
        match notification {
            ServerNotification::ProgressNotification(p)
                if p.params.progress_token == *self.token =>
            {
                let p = p.params;
                self.cx
                    .progress(p.progress, p.total, p.message.unwrap_or_default())
                    .await;
            }
            ServerNotification::LoggingMessageNotification(l) => {
                let level = l.params.level;
                self.cx.log(level, log_data(l.params)).await;
            }
            ServerNotification::ResourceUpdatedNotification(r) => {
                self.shared.events.resource_updated(r.params.uri);
            }
            ServerNotification::ToolListChangedNotification(_)
            | ServerNotification::ResourceListChangedNotification(_)
            | ServerNotification::PromptListChangedNotification(_) => {
                if let Some(relist) = &self.link.relist {
                    relist.notify_one();
                }
            }
            _ => {}
        }
    }

    /// A request of the server's on the call's stream: asked of this call's client, and the
    /// answer posted back.
    async fn asked(&self, id: RequestId, request: ServerRequest) {
        let answer = match request {
            ServerRequest::CreateMessageRequest(r) => to_value(self.cx.sample(r.params).await),
            ServerRequest::ElicitRequest(r) => to_value(self.cx.elicit_request(r.params).await),
            ServerRequest::ListRootsRequest(_) => to_value(self.cx.roots().await),
            ServerRequest::PingRequest(_) => Ok(serde_json::json!({})),
            _ => Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                "plugboard does not relay this request",
                None,
            )),
        };
        let body = match answer {
            Ok(result) => serde_json::json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            Err(error) => serde_json::json!({ "jsonrpc": "2.0", "id": id, "error": error }),
        };
        match post(self.link, &body).await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(plugin = %self.shared.plugin, status = %r.status(), "the MCP server refused an answer to its request")
            }
            Err(e) => {
                tracing::warn!(plugin = %self.shared.plugin, error = %net::describe(&e), "an answer to the MCP server's request was not sent")
            }
        }
    }
}

fn to_value<T: serde::Serialize>(
    answer: Result<T, ToolError>,
) -> Result<serde_json::Value, ErrorData> {
    answer.map_err(refused).and_then(|v| {
        serde_json::to_value(v).map_err(|e| ErrorData::internal_error(e.to_string(), None))
    })
}

/// The headers of `link`'s session.
fn headers(link: &Link) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(link.headers.len() + 3);
    for (name, value) in &link.headers {
        headers.insert(name.clone(), value.clone());
    }
    if let Some(session) = &link.session
        && let Ok(value) = reqwest::header::HeaderValue::from_str(session)
    {
        headers.insert("mcp-session-id", value);
    }
    headers
}

async fn post(link: &Link, body: &serde_json::Value) -> Result<reqwest::Response, reqwest::Error> {
    let mut request = link
        .http
        .post(&*link.uri)
        .headers(headers(link))
        .header(ACCEPT, "application/json, text/event-stream")
        .json(body);
    if let Some(auth) = &link.auth {
        request = request.bearer_auth(auth);
    }
    request.send().await
}

async fn resume(link: &Link, from: &str) -> Result<reqwest::Response, reqwest::Error> {
    let mut request = link
        .http
        .get(&*link.uri)
        .headers(headers(link))
        .header(ACCEPT, "text/event-stream")
        .header("last-event-id", from);
    if let Some(auth) = &link.auth {
        request = request.bearer_auth(auth);
    }
    request.send().await
}

/// The events of a response's body, up to plugboard's limit.
fn event_stream(
    response: reqwest::Response,
) -> futures::stream::BoxStream<'static, Result<sse_stream::Sse, sse_stream::Error>> {
    let body = net::capped_stream(response, net::MAX_UPSTREAM_BODY);
    Box::pin(sse_stream::SseStream::from_bytes_stream(body))
}
