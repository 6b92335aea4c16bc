//! The walk every transport must pass: list, call, progress, logs, cancellation, a panic.

use std::time::Duration;

use rmcp::{
    RoleClient,
    model::{CallToolRequestParams, ClientRequest, Request, ServerResult},
    service::{PeerRequestOptions, RunningService},
};
use serde_json::json;

use crate::support::{Recorder, args, text};

pub type Client = RunningService<RoleClient, Recorder>;

pub fn call(name: &str, arguments: serde_json::Value) -> CallToolRequestParams {
    CallToolRequestParams::new(name.to_owned()).with_arguments(args(arguments))
}

/// `logs_expected`: whether this generation delivers log messages without a per-request level
/// (2025-11-25 sessions do; 2026-07-28 clients must ask per request).
pub async fn exercise(client: &Client, logs_expected: bool) {
    // tools/list: the ready plugins' tools, nothing from the failed, unconfigured or disabled.
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for expected in [
        "files_list",
        "files_read",
        "files_search",
        "files_analyze",
        "testkit_echo",
        "testkit_slow",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.starts_with("broken_")
            || n.starts_with("keyed_")
            || n.starts_with("sleepy_"))
    );
    for tool in &tools {
        let a = tool
            .annotations
            .as_ref()
            .expect("annotations on every tool");
        assert!(a.read_only_hint.is_some() && a.destructive_hint.is_some());
        assert!(a.idempotent_hint.is_some() && a.open_world_hint.is_some());
    }

    // A plain call.
    let echoed = client
        .call_tool(call("testkit_echo", json!({"text": "hi ", "repeat": 2})))
        .await
        .unwrap();
    assert_eq!(echoed.is_error, Some(false));
    assert_eq!(text(&echoed), "hi hi ");

    // A call into the files plugin.
    let read = client
        .call_tool(call("files_read", json!({"path": "docs/guide.md"})))
        .await
        .unwrap();
    assert_ne!(read.is_error, Some(true), "{}", text(&read));
    assert!(text(&read).contains("# User Guide"), "{}", text(&read));

    // Progress (the client sends a progress token) and log messages.
    let steps = 3;
    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(call(
                "testkit_slow",
                json!({"steps": steps, "step_ms": 10}),
            ))),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    let token = handle.progress_token.clone();
    let ServerResult::CallToolResult(done) = handle.await_response().await.unwrap() else {
        panic!("not a tool result")
    };
    assert_eq!(text(&done), "completed 3 steps");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let progress: Vec<f64> = {
        let all = client.service().progress.lock().unwrap();
        all.iter()
            .filter(|p| p.progress_token == token)
            .map(|p| p.progress)
            .collect()
    };
    assert_eq!(progress, vec![1.0, 2.0, 3.0]);
    let logs = client.service().logs.lock().unwrap().len();
    if logs_expected {
        assert!(logs >= steps, "expected {steps} log messages, got {logs}");
    } else {
        assert_eq!(
            logs, 0,
            "no level was requested, so no log messages are due"
        );
    }

    // Cancellation: the tool stops, the server keeps serving.
    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(call(
                "testkit_slow",
                json!({"steps": 200, "step_ms": 20}),
            ))),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    let token = handle.progress_token.clone();
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.cancel(Some("test".into())).await.unwrap();
    let count = || client.service().progress_of(&token).len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_cancel = count();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(after_cancel > 0, "the slow tool never started");
    assert_eq!(
        count(),
        after_cancel,
        "the tool kept running after it was cancelled"
    );

    // A panic inside a handler is an error result, and the server lives on.
    let panicked = client
        .call_tool(call("testkit_panic", json!({"message": "boom"})))
        .await
        .unwrap();
    assert_eq!(panicked.is_error, Some(true));
    assert!(text(&panicked).contains("boom"), "{}", text(&panicked));
    let again = client
        .call_tool(call("testkit_echo", json!({"text": "still here"})))
        .await
        .unwrap();
    assert_eq!(text(&again), "still here");
}

/// The server still answers a plain call.
pub async fn still_serving(client: &Client) {
    let ok = client
        .call_tool(call("testkit_echo", json!({"text": "ok"})))
        .await
        .unwrap();
    assert_eq!(text(&ok), "ok");
}
