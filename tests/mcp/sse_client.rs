//! A minimal client side of the legacy HTTP+SSE transport (rmcp no longer ships one), so the
//! same rmcp client can drive `GET /sse` + `POST /message`.

use std::time::Duration;

use futures::StreamExt;
use rmcp::{
    RoleClient,
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    transport::{Transport, sink_stream::SinkStreamTransport},
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, PollSender};

/// Open `GET {base}/sse`, read the `endpoint` event, and return an rmcp client transport.
pub async fn connect(base: &str) -> impl Transport<RoleClient> + 'static {
    let http = reqwest::Client::new();
    let response = http
        .get(format!("{base}/sse"))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .expect("GET /sse");
    assert_eq!(response.status(), 200, "GET /sse");
    let mut body = response.bytes_stream();
    let (event_tx, mut events) = mpsc::channel::<(String, String)>(64);
    // Cancelled when the stream is gone (either side closed it): the session is then over, and
    // a message still queued (rmcp cancels what was in flight when dropped) may find it gone.
    let stream_gone = CancellationToken::new();
    let _gone_on_return = stream_gone.clone().drop_guard();
    tokio::spawn(async move {
        let _gone_on_return = _gone_on_return;
        let (mut buf, mut event, mut data) = (String::new(), String::new(), String::new());
        // Ends when the transport is dropped too, not only when the server ends the stream: a
        // client that goes away closes its connection.
        loop {
            let chunk = tokio::select! {
                chunk = body.next() => chunk,
                () = event_tx.closed() => return,
            };
            let Some(Ok(chunk)) = chunk else { return };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(i) = buf.find('\n') {
                let line: String = buf.drain(..=i).collect();
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    if !data.is_empty()
                        && event_tx
                            .send((std::mem::take(&mut event), std::mem::take(&mut data)))
                            .await
                            .is_err()
                    {
                        return;
                    }
                    event.clear();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
        }
    });
    let (kind, endpoint) = events.recv().await.expect("endpoint event");
    assert_eq!(kind, "endpoint");
    let post_url = format!("{base}{endpoint}");

    let (to_server, mut outgoing) = mpsc::channel::<ClientJsonRpcMessage>(64);
    tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            let response = http.post(&post_url).json(&message).send().await;
            if stream_gone.is_cancelled() {
                return;
            }
            let status = response.expect("POST /message").status();
            // The server ended the session as its stream closed; the reader may not have
            // seen the end yet. A 404 while the stream stays open is a failure.
            let gone = stream_gone.cancelled();
            if status == 404
                && tokio::time::timeout(Duration::from_secs(5), gone)
                    .await
                    .is_ok()
            {
                return;
            }
            assert_eq!(status, 202, "POST /message");
        }
    });
    let (incoming_tx, incoming) = mpsc::channel::<ServerJsonRpcMessage>(64);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                next = events.recv() => next,
                // The transport was dropped: let the reader go, which closes the stream.
                () = incoming_tx.closed() => return,
            };
            let Some((kind, data)) = next else { return };
            if kind == "message" {
                let message = serde_json::from_str(&data).expect("server message is JSON-RPC");
                if incoming_tx.send(message).await.is_err() {
                    return;
                }
            }
        }
    });
    SinkStreamTransport::new(PollSender::new(to_server), ReceiverStream::new(incoming))
}
