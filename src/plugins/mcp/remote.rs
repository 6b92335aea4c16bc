//! A remote upstream: Streamable HTTP through rmcp's client, or the legacy HTTP+SSE transport
//! (2024-11-05: `GET` an event stream whose first `endpoint` event names where to `POST`),
//! which rmcp no longer ships and plugboard speaks itself.
//!
//! Headers (bearer tokens from variables) go with every request, and only to the server's
//! own origin: an `endpoint` event naming another host is refused, and redirects are followed
//! within the origin only (the shared HTTP client's rule).

use std::{collections::HashMap, time::Duration};

use futures::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use rmcp::{
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};

use crate::{agents::sse::Parser, net};

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

    /// rmcp's Streamable HTTP client for this server, answers up to plugboard's limit.
    pub fn streamable(&self) -> Result<StreamableHttpClientTransport<reqwest::Client>, String> {
        let http = net::client()?.clone();
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
