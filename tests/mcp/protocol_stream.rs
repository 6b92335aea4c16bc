//! Stream release (SEP-1699): a long call over a Streamable HTTP session ends its response
//! stream early; the client reconnects with `GET` + `Last-Event-ID` and gets the result there.

use std::time::Duration;

use futures::StreamExt;
use rmcp::ServiceExt;
use serde_json::{Value, json};

use crate::{
    protocol::{Probe, fixture},
    scenario::call,
    support::text,
};

const DONE: &str = "Reconnection test completed successfully";

/// One SSE event: its `id:` and its `data:` lines joined.
#[derive(Debug)]
struct Event {
    id: Option<String>,
    data: String,
}

fn events(body: &str) -> Vec<Event> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut event = Event {
                id: None,
                data: String::new(),
            };
            let mut data = Vec::new();
            for line in block.lines() {
                let field = |name: &str| {
                    line.strip_prefix(name)
                        .map(|v| v.strip_prefix(' ').unwrap_or(v).to_owned())
                };
                if let Some(id) = field("id:") {
                    event.id = Some(id);
                } else if let Some(d) = field("data:") {
                    data.push(d);
                }
            }
            event.data = data.join("\n");
            event
        })
        .collect()
}

#[tokio::test]
async fn a_released_stream_resumes_with_last_event_id() {
    let fx = fixture("reconnection_ms = 50");
    let (_child, url) = fx.http(&[]).await;
    let endpoint = format!("{url}/mcp");
    let http = reqwest::Client::new();
    let post = |body: Value, session: Option<&str>| {
        let mut request = http
            .post(&endpoint)
            .header("Accept", "application/json, text/event-stream")
            .header("MCP-Protocol-Version", "2025-11-25")
            .json(&body);
        if let Some(id) = session {
            request = request.header("mcp-session-id", id);
        }
        request.send()
    };

    let init = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}
        }}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(init.status(), 200);
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = init.bytes().await.unwrap();
    let initialized = post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(&session),
    )
    .await
    .unwrap();
    assert!(
        initialized.status().is_success(),
        "{}",
        initialized.status()
    );

    let call = post(
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
            "name": "test_reconnection", "arguments": {}
        }}),
        Some(&session),
    )
    .await
    .unwrap();
    assert_eq!(call.status(), 200);
    let content_type = call.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    // The body ends (released) without the result.
    let body = tokio::time::timeout(Duration::from_secs(10), call.text())
        .await
        .expect("the released stream ends")
        .unwrap();
    let sent = events(&body);
    assert_eq!(sent.len(), 1, "only the priming event: {body:?}");
    let priming = &sent[0];
    assert!(priming.data.is_empty(), "{body:?}");
    let last_event_id = priming.id.clone().expect("the priming event has an id");
    assert!(!last_event_id.is_empty());
    assert!(
        !body.contains(DONE) && !body.contains("\"result\""),
        "the result came on the released stream: {body:?}"
    );

    // Come back for the rest.
    let resumed = http
        .get(&endpoint)
        .header("Accept", "text/event-stream")
        .header("MCP-Protocol-Version", "2025-11-25")
        .header("mcp-session-id", &session)
        .header("Last-Event-ID", &last_event_id)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    assert!(
        resumed.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = resumed.bytes_stream();
    let mut seen = String::new();
    let response = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            for event in events(&seen) {
                if let Ok(message) = serde_json::from_str::<Value>(&event.data)
                    && message.get("id").is_some()
                    && message.get("method").is_none()
                {
                    return message;
                }
            }
            match stream.next().await {
                Some(Ok(chunk)) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                other => panic!("the resumed stream ended without the result: {other:?} {seen:?}"),
            }
        }
    })
    .await
    .expect("the result on the resumed stream within 10 s");
    assert_eq!(response["id"], 7, "{response}");
    assert_eq!(response["result"]["isError"], false, "{response}");
    assert_eq!(
        response["result"]["content"],
        json!([{"type": "text", "text": DONE}])
    );
}

/// rmcp's own client reconnects by itself and gets the result.
#[tokio::test]
async fn rmcp_client_reconnects_to_a_released_stream() {
    let fx = fixture("reconnection_ms = 50");
    let (_child, url) = fx.http(&[]).await;
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(format!("{url}/mcp"));
    let client = Probe::default()
        .serve(transport)
        .await
        .expect("initialize over HTTP");
    let result = tokio::time::timeout(
        Duration::from_secs(15),
        client.call_tool(call("test_reconnection", json!({}))),
    )
    .await
    .expect("the result within 15 s")
    .unwrap();
    assert_eq!(result.is_error, Some(false), "{}", text(&result));
    assert_eq!(text(&result), DONE);
    client.cancel().await.unwrap();
}
