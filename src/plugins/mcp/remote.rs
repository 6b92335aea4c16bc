//! A remote upstream: Streamable HTTP through rmcp's client, or the legacy HTTP+SSE transport
//! (2024-11-05: `GET` an event stream whose first `endpoint` event names where to `POST`),
//! which rmcp no longer ships and plugboard speaks itself.
//!
//! Headers (bearer tokens from variables) go with every request, and only to the server's
//! own origin: an `endpoint` event naming another host is refused, and redirects are followed
//! within the origin only (the shared HTTP client's rule).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{StreamExt, stream::BoxStream};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use rmcp::{
    model::{ClientJsonRpcMessage, RequestId, ServerJsonRpcMessage},
    transport::{
        StreamableHttpClientTransport,
        streamable_http_client::{
            SseError, StreamableHttpClient, StreamableHttpClientTransportConfig,
            StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
        },
    },
};
use sse_stream::Sse;

use crate::{agents::sse::Parser, net, plugin::ToolContext};

/// How plugboard speaks to a remote server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Transport {
    /// Streamable HTTP (MCP 2025-03-26 and later).
    StreamableHttp,
    /// The legacy HTTP+SSE transport (MCP 2024-11-05).
    Sse,
}

/// The remote server's address and the headers sent with each request.
#[derive(Clone)]
pub(super) struct Remote {
    pub url: reqwest::Url,
    pub headers: HeaderMap,
    /// Given by the manifest; `None`: Streamable HTTP, else legacy SSE.
    pub transport: Option<Transport>,
}

impl Remote {
    pub fn new(
        url: &str,
        headers: &std::collections::BTreeMap<String, String>,
        transport: Option<Transport>,
    ) -> Result<Self, String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("[mcp] url `{url}`: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("[mcp] url `{url}`: only http and https are spoken"));
        }
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| format!("[mcp] headers: `{name}` is not a header name"))?;
            let mut value = HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("[mcp] headers.{name}: the value is not a header value"))?;
            value.set_sensitive(true);
            map.insert(name, value);
        }
        Ok(Self {
            url,
            headers: map,
            transport,
        })
    }

    /// rmcp's Streamable HTTP client for this server, answers up to plugboard's limit; the
    /// response streams the server releases are told to `releases`.
    pub fn streamable(
        &self,
        releases: Arc<Releases>,
        link: LinkSlot,
    ) -> Result<StreamableHttpClientTransport<Watched>, String> {
        let http = Watched {
            http: net::client()?.clone(),
            releases,
            link,
        };
        let headers: HashMap<HeaderName, HeaderValue> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let config = StreamableHttpClientTransportConfig::with_uri(self.url.as_str())
            .custom_headers(headers)
            .max_json_response_size(net::MAX_UPSTREAM_BODY)
            .max_sse_event_size(net::MAX_UPSTREAM_BODY);
        Ok(StreamableHttpClientTransport::with_client(http, config))
    }

    /// Open the legacy transport: the event stream, and where to post. The pair is an rmcp
    /// transport (a sink of the client's messages, a stream of the server's).
    pub async fn sse(
        &self,
        timeout: Duration,
    ) -> Result<
        (
            futures::channel::mpsc::Sender<ClientJsonRpcMessage>,
            tokio_stream::wrappers::ReceiverStream<ServerJsonRpcMessage>,
        ),
        String,
    > {
        let http = net::client()?.clone();
        let response = http
            .get(self.url.clone())
            .headers(self.headers.clone())
            .header(ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| format!("GET {}: {}", self.url, net::describe(&e)))?;
        let status = response.status();
        let is_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !status.is_success() || !is_stream {
            return Err(format!(
                "GET {} answered {status}{}: not an MCP event stream",
                self.url,
                if is_stream {
                    ""
                } else {
                    " without text/event-stream"
                }
            ));
        }
        let mut parser = Parser::default();
        let mut events = Box::pin(
            net::capped_stream(response, usize::MAX)
                .map(move |chunk| match chunk {
                    Ok(bytes) => Ok(parser.feed(&bytes)),
                    Err(e) => Err(e.to_string()),
                })
                .flat_map(|r| {
                    futures::stream::iter(match r {
                        Ok(events) => events.into_iter().map(Ok).collect(),
                        Err(e) => vec![Err(e)],
                    })
                }),
        );
        // The first event says where messages go.
        let first = tokio::time::timeout(timeout, events.next())
            .await
            .map_err(|_| format!("{} sent no `endpoint` event", self.url))?;
        let endpoint = match first {
            Some(Ok(event)) if event.name.as_deref() == Some("endpoint") => self
                .url
                .join(event.data.trim())
                .map_err(|e| format!("the `endpoint` event `{}`: {e}", event.data))?,
            Some(Ok(event)) => {
                return Err(format!(
                    "{}: the first event was `{}`, not `endpoint`",
                    self.url,
                    event.name.as_deref().unwrap_or("message")
                ));
            }
            Some(Err(e)) => return Err(format!("{}: {e}", self.url)),
            None => return Err(format!("{} closed its event stream", self.url)),
        };
        if endpoint.origin() != self.url.origin() {
            return Err(format!(
                "{} asked for messages at another origin ({}); not sent there",
                self.url,
                endpoint.origin().ascii_serialization()
            ));
        }

        // One end going ends the other: a message that could not be posted ends the
        // connection (its caller gets an error, the supervisor connects again), and a
        // connection given up closes the event stream.
        let ended = tokio_util::sync::CancellationToken::new();
        let (to_client, from_server) = tokio::sync::mpsc::channel(64);
        let reader_ended = ended.clone();
        tokio::spawn(async move {
            let _ended = reader_ended.clone().drop_guard();
            loop {
                let event = tokio::select! {
                    event = events.next() => event,
                    () = to_client.closed() => return,
                    () = reader_ended.cancelled() => return,
                };
                match event {
                    Some(Ok(event)) if matches!(event.name.as_deref(), None | Some("message")) => {
                        match serde_json::from_str::<ServerJsonRpcMessage>(&event.data) {
                            Ok(message) => {
                                if to_client.send(message).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "an upstream event is not a JSON-RPC message; skipped")
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "the upstream's event stream failed");
                        return;
                    }
                    None => return,
                }
            }
        });
        let (to_server, mut outgoing) = futures::channel::mpsc::channel::<ClientJsonRpcMessage>(16);
        let headers = self.headers.clone();
        tokio::spawn(async move {
            let _ended = ended.clone().drop_guard();
            loop {
                let message = tokio::select! {
                    message = outgoing.next() => message,
                    () = ended.cancelled() => return,
                };
                let Some(message) = message else { return };
                let sent = http
                    .post(endpoint.clone())
                    .headers(headers.clone())
                    .json(&message)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => {
                        tracing::warn!(status = %r.status(), "the upstream refused a message; reconnecting");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %net::describe(&e), "a message to the upstream was not sent; reconnecting");
                        return;
                    }
                }
            }
        });
        Ok((
            to_server,
            tokio_stream::wrappers::ReceiverStream::new(from_server),
        ))
    }
}

/// Calls relayed to a Streamable HTTP server, by the id of their request, so that when the
/// server releases a call's response stream (SEP-1699: it ends the stream before the result,
/// and the client resumes it with `GET` + `Last-Event-ID`), plugboard releases the stream its
/// own client holds for that call too. rmcp's client resumes the upstream's stream by itself;
/// without this, plugboard's client would hold its stream open for as long as the call runs,
/// which is what the server released its stream to avoid (proxies and load balancers that
/// cut long responses).
#[derive(Default)]
pub(super) struct Releases(Mutex<ReleasesInner>);

#[derive(Default)]
struct ReleasesInner {
    calls: HashMap<RequestId, ToolContext>,
    /// Released before the call was registered (the stream may end that soon), newest last.
    early: VecDeque<RequestId>,
}

/// How many early releases are remembered for calls not registered yet.
const EARLY: usize = 64;

impl Releases {
    /// While the returned guard lives, a release of `id`'s stream releases `cx`'s.
    pub fn register(&self, id: RequestId, cx: ToolContext) -> Registration<'_> {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = inner.early.iter().position(|early| *early == id) {
            inner.early.remove(at);
            release(cx.clone());
        }
        inner.calls.insert(id.clone(), cx);
        Registration { releases: self, id }
    }

    fn released(&self, id: RequestId) {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match inner.calls.get(&id) {
            Some(cx) => release(cx.clone()),
            None => {
                if inner.early.len() == EARLY {
                    inner.early.pop_front();
                }
                inner.early.push_back(id);
            }
        }
    }
}

fn release(cx: ToolContext) {
    tokio::spawn(async move {
        let released = cx.release_stream().await;
        tracing::debug!(
            released,
            "the upstream released a response stream; so did plugboard"
        );
    });
}

/// Ends a call's registration in [`Releases`].
pub(super) struct Registration<'a> {
    releases: &'a Releases,
    id: RequestId,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.releases
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .calls
            .remove(&self.id);
    }
}

/// Where and how rmcp's client last posted to a Streamable HTTP server: its address, the
/// session and the headers it sent (protocol version, the manifest's). Tool calls are posted
/// on it directly (`upstream/direct.rs`).
#[derive(Clone)]
pub(super) struct Link {
    pub http: reqwest::Client,
    pub uri: Arc<str>,
    pub session: Option<Arc<str>>,
    pub auth: Option<String>,
    pub headers: HashMap<HeaderName, HeaderValue>,
    /// Told when the server says a list changed (set by the connection that uses the link).
    pub relist: Option<Arc<tokio::sync::Notify>>,
}

/// The latest [`Link`] of one connection.
pub(super) type LinkSlot = Arc<Mutex<Option<Link>>>;

/// plugboard's HTTP client as rmcp's Streamable HTTP client, watching each request's
/// response stream: one that ends without the request's response was released by the
/// server, and [`Releases`] hears of it. It also keeps the [`Link`] rmcp's client posts on.
#[derive(Clone)]
pub(super) struct Watched {
    http: reqwest::Client,
    releases: Arc<Releases>,
    link: LinkSlot,
}

impl Watched {
    /// Keep where and how a message other than `initialize` was posted: on a session.
    fn keep(
        &self,
        message: &ClientJsonRpcMessage,
        uri: &Arc<str>,
        session: &Option<Arc<str>>,
        auth: &Option<String>,
        headers: &HashMap<HeaderName, HeaderValue>,
    ) {
        let initialize = matches!(
            message,
            ClientJsonRpcMessage::Request(r)
                if matches!(r.request, rmcp::model::ClientRequest::InitializeRequest(_))
        );
        if initialize || session.is_none() {
            return;
        }
        let mut link = self.link.lock().unwrap_or_else(|e| e.into_inner());
        let same = link.as_ref().is_some_and(|l| {
            l.session == *session && l.uri == *uri && l.auth == *auth && l.headers == *headers
        });
        if !same {
            *link = Some(Link {
                http: self.http.clone(),
                uri: uri.clone(),
                session: session.clone(),
                auth: auth.clone(),
                headers: headers.clone(),
                relist: None,
            });
        }
    }

    fn watch(
        &self,
        id: Option<RequestId>,
        response: StreamableHttpPostResponse,
    ) -> StreamableHttpPostResponse {
        let (id, stream, session) = match (id, response) {
            (Some(id), StreamableHttpPostResponse::Sse(stream, session)) => (id, stream, session),
            (_, response) => return response,
        };
        let answered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = answered.clone();
        let wanted = id.clone();
        let releases = self.releases.clone();
        let ended = futures::stream::once(async move {
            if !answered.load(std::sync::atomic::Ordering::Relaxed) {
                releases.released(id);
            }
        })
        .filter_map(|()| async { None });
        let watched = stream
            .inspect(move |event| {
                if let Ok(event) = event
                    && let Some(data) = &event.data
                    && answers(data, &wanted)
                {
                    seen.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            })
            .chain(ended);
        StreamableHttpPostResponse::Sse(Box::pin(watched), session)
    }
}

/// Whether an event's data is the response to `id` (read without keeping the result).
fn answers(data: &str, id: &RequestId) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        id: Option<RequestId>,
        method: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<Probe>(data)
        .is_ok_and(|probe| probe.method.is_none() && probe.id.as_ref() == Some(id))
}

fn request_id(message: &ClientJsonRpcMessage) -> Option<RequestId> {
    match message {
        ClientJsonRpcMessage::Request(request) => Some(request.id.clone()),
        _ => None,
    }
}

type Posted = Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>>;

impl StreamableHttpClient for Watched {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Posted {
        let limits = StreamableHttpResponseLimits::default();
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            limits,
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Posted {
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_sse_event_size = max_sse_event_size;
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            limits,
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Posted {
        let id = request_id(&message);
        self.keep(&message, &uri, &session_id, &auth_header, &custom_headers);
        let response = self
            .http
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                limits,
            )
            .await?;
        Ok(self.watch(id, response))
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<reqwest::Error>> {
        self.http
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<reqwest::Error>>
    {
        self.http
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<reqwest::Error>>
    {
        self.http
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_response_to_the_request_answers_it() {
        let id = RequestId::Number(7);
        assert!(answers(
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[]}}"#,
            &id
        ));
        assert!(answers(
            r#"{"jsonrpc":"2.0","error":{"code":-32603,"message":"no"},"id":7}"#,
            &id
        ));
        // A request of the server's own that happens to share the number, another call's
        // response, a notification, the priming event's empty data.
        assert!(!answers(
            r#"{"jsonrpc":"2.0","id":7,"method":"sampling/createMessage","params":{}}"#,
            &id
        ));
        assert!(!answers(r#"{"jsonrpc":"2.0","id":8,"result":{}}"#, &id));
        assert!(!answers(
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#,
            &id
        ));
        assert!(!answers("", &id));
        assert!(!answers(r#"{"jsonrpc":"2.0","id":"7","result":{}}"#, &id));
    }
}
