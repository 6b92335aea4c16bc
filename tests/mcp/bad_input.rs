//! Bad input gets a clear error and the server keeps serving.

use std::{process::Stdio, time::Duration};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    time::Instant,
};

use crate::{
    inproc::Server,
    scenario::{call, still_serving},
    support::{Fixture, text},
};

#[tokio::test]
async fn unknown_tool_and_bad_arguments_are_error_results() {
    let fx = Fixture::new();
    let (client, _) = fx.stdio(&[]).await;

    let unknown = client
        .call_tool(call("files_raed", json!({"path": "x"})))
        .await
        .unwrap();
    assert_eq!(unknown.is_error, Some(true));
    assert!(
        text(&unknown).contains("unknown tool `files_raed`"),
        "{}",
        text(&unknown)
    );
    assert!(
        text(&unknown).contains("files_read"),
        "suggests the right name: {}",
        text(&unknown)
    );

    let wrong_type = client
        .call_tool(call("files_read", json!({"path": 5})))
        .await
        .unwrap();
    assert_eq!(wrong_type.is_error, Some(true));
    let message = text(&wrong_type);
    assert!(
        message.contains("invalid arguments for `files_read`") && message.contains("/path"),
        "{message}"
    );
    assert!(message.contains("string"), "{message}");

    let missing = client
        .call_tool(call("files_read", json!({})))
        .await
        .unwrap();
    assert_eq!(missing.is_error, Some(true));
    assert!(
        text(&missing).contains("\"path\" is a required property"),
        "{}",
        text(&missing)
    );

    let extra = client
        .call_tool(call("testkit_echo", json!({"text": "a", "colour": "red"})))
        .await
        .unwrap();
    assert_eq!(extra.is_error, Some(true));
    assert!(text(&extra).contains("colour"), "{}", text(&extra));

    // Still serving.
    still_serving(&client).await;
    client.cancel().await.unwrap();
}

/// A call that outlasts the call timeout (`plugboard serve`'s default, 120 s) is stopped at
/// exactly that moment with an error result, and the server keeps serving.
#[tokio::test(start_paused = true)]
async fn a_slow_call_times_out_with_an_error_result() {
    let fx = Fixture::new();
    let client = Server::new(&fx).client().await;
    let started = Instant::now();
    let slow = client
        .call_tool(call("testkit_slow", json!({"steps": 100, "step_ms": 2000})))
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(120));
    assert_eq!(slow.is_error, Some(true));
    assert_eq!(
        text(&slow),
        "`testkit_slow` did not finish within 120 s and was stopped; try a smaller request"
    );
    still_serving(&client).await;
    client.cancel().await.unwrap();
}

/// Raw lines over stdio: stdout carries JSON-RPC only; unknown methods get -32601 even before
/// initialize; malformed input is answered (a line that is not JSON with -32700 and a null
/// id) without killing the server.
#[tokio::test]
async fn stdio_raw_protocol_edges() {
    let fx = Fixture::new();
    let mut child = fx
        .command(&["serve"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let stderr = child.stderr.take().unwrap();
    let stderr_task = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut all = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let mut send = async |line: &str| {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    };
    let mut next = async || -> Value {
        let line = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"))
    };

    send(r#"{"jsonrpc":"2.0","id":1,"method":"vendor/probe","params":{}}"#).await;
    let reply = next().await;
    assert_eq!(reply["id"], 1);
    assert_eq!(reply["error"]["code"], -32601, "{reply}");

    send("this is not json").await;
    let reply = next().await;
    assert_eq!(reply["error"]["code"], -32700, "{reply}");
    assert!(
        reply["id"].is_null() && reply.as_object().unwrap().contains_key("id"),
        "{reply}"
    );
    send(r#"{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#).await;
    let reply = next().await;
    assert_eq!(reply["id"], 2);
    assert_eq!(reply["result"]["serverInfo"]["name"], "plugboard");
    send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await;

    send(r#"{"jsonrpc":"2.0","id":3,"method":"vendor/probe"}"#).await;
    let reply = next().await;
    assert_eq!(
        (reply["id"].clone(), reply["error"]["code"].clone()),
        (json!(3), json!(-32601)),
        "{reply}"
    );

    send(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"nope"}}"#).await;
    let reply = next().await;
    assert_eq!(reply["id"], 4);
    assert_eq!(reply["result"]["isError"], true, "{reply}");

    // A tools/call whose params do not fit says what is wrong with them.
    send(r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"arguments":{}}}"#).await;
    let reply = next().await;
    assert_eq!(reply["id"], 6);
    assert_eq!(reply["error"]["code"], -32602, "{reply}");
    assert_eq!(
        reply["error"]["message"],
        "invalid params for `tools/call`: missing field `name`"
    );

    send(r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#).await;
    let reply = next().await;
    assert_eq!(reply["id"], 5);
    assert!(reply["result"]["tools"].as_array().unwrap().len() >= 8);

    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "server exits cleanly at end of input: {status}"
    );
    while let Ok(Some(line)) = stdout.next_line().await {
        serde_json::from_str::<Value>(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
    }
    let logs = stderr_task.await.unwrap();
    fx.keep_text("plugboard serve (raw stdio)", &logs);
    assert!(logs.contains("tool call"), "logs go to stderr: {logs}");
}

#[tokio::test]
async fn http_guard_refuses_foreign_host_origin_and_oversized_bodies() {
    let fx = Fixture::new();
    let (_child, url) = fx.http(&["--max-body-bytes", "65536"]).await;
    let http = reqwest::Client::new();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}});
    let post = |path: &str| {
        http.post(format!("{url}{path}"))
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json")
    };

    let ok = post("/mcp").json(&init).send().await.unwrap();
    assert_eq!(ok.status(), 200);

    for path in ["/mcp", "/sse", "/message?sessionId=x"] {
        let evil_origin = if path == "/sse" {
            http.get(format!("{url}{path}"))
                .header("Origin", "https://evil.example")
                .send()
                .await
                .unwrap()
        } else {
            post(path)
                .header("Origin", "https://evil.example")
                .json(&init)
                .send()
                .await
                .unwrap()
        };
        assert_eq!(evil_origin.status(), 403, "{path} with a foreign Origin");
        let evil_host = post(path)
            .header("Host", "evil.example")
            .json(&init)
            .send()
            .await
            .unwrap();
        assert_eq!(evil_host.status(), 403, "{path} with a foreign Host");
    }

    let local_origin = post("/mcp")
        .header("Origin", "http://localhost:6274")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(
        local_origin.status(),
        200,
        "the MCP Inspector's local origin is fine"
    );

    // Just over the limit, so the whole body is sent before the server answers.
    let big = "x".repeat(70_000);
    let oversized = post("/mcp")
        .body(format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{big}"}}}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), 413);
    let oversized = post("/message?sessionId=x").body(big).send().await.unwrap();
    assert_eq!(oversized.status(), 413);

    // Methods MCP does not define: -32601 at once, with no session or metadata needed.
    let probe = post("/mcp")
        .json(&json!({"jsonrpc":"2.0","id":9,"method":"vendor/probe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 200);
    let probe: Value = probe.json().await.unwrap();
    assert_eq!(
        (probe["id"].clone(), probe["error"]["code"].clone()),
        (json!(9), json!(-32601)),
        "{probe}"
    );

    // MCP's own methods with params that do not fit: -32602 saying what is wrong.
    let bad = post("/mcp")
        .json(&json!({"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"arguments":{}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 200);
    let bad: Value = bad.json().await.unwrap();
    assert_eq!(
        (bad["id"].clone(), bad["error"]["code"].clone()),
        (json!(10), json!(-32602)),
        "{bad}"
    );
    assert_eq!(
        bad["error"]["message"],
        "invalid params for `tools/call`: missing field `name`"
    );

    let malformed = post("/mcp").body("{not json").send().await.unwrap();
    assert!(
        malformed.status().is_client_error(),
        "{}",
        malformed.status()
    );
    let still = post("/mcp").json(&init).send().await.unwrap();
    assert_eq!(still.status(), 200);
}

#[tokio::test]
async fn off_loopback_needs_a_token() {
    let fx = Fixture::new();
    let refused = fx
        .run(&mut fx.command(&["serve", "--http", "0.0.0.0:0"]))
        .await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("PLUGBOARD_HTTP_TOKEN"), "{stderr}");

    let (_child, url) = {
        let mut child = fx
            .command(&[
                "serve",
                "--http",
                "0.0.0.0:0",
                "--allowed-hosts",
                "127.0.0.1",
            ])
            .env("PLUGBOARD_HTTP_TOKEN", "tok-123456")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let url = fx.listening_url(&mut child).await;
        (child, url.replace("0.0.0.0", "127.0.0.1"))
    };
    let http = reqwest::Client::new();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}});
    let request = || {
        http.post(format!("{url}/mcp"))
            .header("Accept", "application/json, text/event-stream")
            .json(&init)
    };
    assert_eq!(request().send().await.unwrap().status(), 401);
    assert_eq!(
        request()
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        request()
            .bearer_auth("tok-123456")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{url}/sse"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

/// SIGTERM ends a stdio server promptly (clients stop servers this way), and cleanly.
#[tokio::test]
async fn sigterm_stops_a_stdio_server() {
    let fx = Fixture::new();
    let mut child = fx
        .command(&["serve"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Held open: only the signal may end the server (`wait` would otherwise close stdin).
    let _stdin = child.stdin.take().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("exits within 5 s of SIGTERM")
        .unwrap();
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr)
        .await
        .unwrap();
    fx.keep_text("plugboard serve (stopped by SIGTERM)", &stderr);
    assert!(status.success(), "{status}: {stderr}");
}

/// A tool name with a newline and terminal escape bytes cannot forge a log line or drive the
/// terminal of whoever reads the log: every event stays one line, control bytes spelled out.
#[tokio::test]
async fn a_hostile_tool_name_cannot_forge_a_log_line() {
    let fx = Fixture::new();
    let log = fx.home.path().join("stderr.log");
    let (client, _) = fx
        .stdio_env(&[], &[("PLUGBOARD_LOG", "debug")], Some(&log))
        .await;
    let name = "x\n2026-12-06T00:00:00.000000Z  INFO plugboard: forged line\u{1b}[2J";
    let result = client
        .call_tool(rmcp::model::CallToolRequestParams::new(name.to_owned()))
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    client.cancel().await.unwrap();
    let bytes = std::fs::read(&log).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("forged line"),
        "the call was not logged at all, so this test proves nothing:\n{text}"
    );
    assert!(
        !bytes.contains(&0x1b),
        "a raw escape byte reached the log:\n{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("2026-12-06T00:00:00.000000Z")),
        "a forged line:\n{text}"
    );
}

/// A megabyte tool name is not echoed whole: the error (and the log line) shows its first
/// 128 bytes and its length.
#[tokio::test]
async fn a_huge_tool_name_is_echoed_clipped() {
    let fx = Fixture::new();
    let log = fx.home.path().join("stderr.log");
    let (client, _) = fx.stdio_env(&[], &[], Some(&log)).await;
    let name = "n".repeat(1 << 20);
    let result = client
        .call_tool(rmcp::model::CallToolRequestParams::new(name))
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    let text = crate::support::text(&result);
    assert!(text.len() < 1024, "{} bytes echoed", text.len());
    assert!(text.contains("… (1048576 bytes)"), "{text}");
    client.cancel().await.unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.len() < 64 * 1024, "{} bytes logged", logged.len());
}
