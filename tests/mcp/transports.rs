//! The scenario over stdio, Streamable HTTP (both generations) and legacy SSE, and
//! `tools/list_changed` after SIGHUP on each.

use std::time::Duration;

use rmcp::{
    ClientLifecycleMode, ClientServiceExt, ServiceExt,
    model::{ProtocolVersion, ServerNotification, SubscriptionFilter},
    transport::StreamableHttpClientTransport,
};

use crate::{
    scenario::{Client, exercise},
    sse_client,
    support::{Fixture, Recorder, sighup},
};

const EXTRA: &str = "name = \"extra\"\nkind = \"builtin\"\nbuiltin = \"testkit\"\n";

/// SIGHUP, and wait for the session to hear that the tool list changed.
async fn reload_and_wait(client: &Client, pid: u32) {
    sighup(pid);
    tokio::time::timeout(
        Duration::from_secs(10),
        client.service().list_changed.notified(),
    )
    .await
    .expect("tools/list_changed within 10 s of SIGHUP");
}

/// Add a plugin, SIGHUP, and wait for the session to hear about it.
async fn expect_list_changed(fx: &Fixture, client: &Client, pid: u32) {
    fx.manifest("extra", EXTRA);
    reload_and_wait(client, pid).await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "extra_echo"));
}

#[tokio::test]
async fn stdio_serves_the_whole_scenario() {
    let fx = Fixture::new();
    let (client, pid) = fx.stdio(&[]).await;
    let info = client.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "plugboard");
    exercise(&client, true).await;
    expect_list_changed(&fx, &client, pid).await;

    // Removing a plugin withdraws its tools; the session stays up.
    fx.remove_manifest("extra");
    reload_and_wait(&client, pid).await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(!tools.iter().any(|t| t.name.starts_with("extra_")));
    assert!(tools.iter().any(|t| t.name == "files_read"));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn streamable_http_session_generation() {
    let fx = Fixture::new();
    let (child, url) = fx.http(&[]).await;
    let transport = StreamableHttpClientTransport::from_uri(format!("{url}/mcp"));
    let client = Recorder::default()
        .serve(transport)
        .await
        .expect("initialize over HTTP");
    assert_eq!(
        client.peer_info().unwrap().protocol_version,
        ProtocolVersion::V_2025_11_25
    );
    exercise(&client, true).await;
    expect_list_changed(&fx, &client, child.id().unwrap()).await;
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn streamable_http_stateless_generation() {
    let fx = Fixture::new();
    let (child, url) = fx.http(&[]).await;
    let transport = StreamableHttpClientTransport::from_uri(format!("{url}/mcp"));
    let client = Recorder::default()
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("discover over HTTP");
    exercise(&client, false).await;

    // list_changed arrives on a subscriptions/listen stream.
    let mut subscription = client
        .peer()
        .listen(SubscriptionFilter::builder().tools_list_changed().build())
        .await
        .expect("listen");
    fx.manifest("extra", EXTRA);
    sighup(child.id().unwrap());
    let note = tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .expect("notification within 10 s")
        .expect("subscription alive")
        .expect("a notification");
    assert!(
        matches!(note, ServerNotification::ToolListChangedNotification(_)),
        "{note:?}"
    );
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "extra_echo"));
    drop(subscription);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn legacy_sse_serves_the_whole_scenario() {
    let fx = Fixture::new();
    let (child, url) = fx.http(&[]).await;
    let client = Recorder::default()
        .serve(sse_client::connect(&url).await)
        .await
        .expect("initialize over SSE");
    exercise(&client, true).await;
    expect_list_changed(&fx, &client, child.id().unwrap()).await;
    client.cancel().await.unwrap();
}

/// Plain request/response is a JSON body, not an SSE stream; a call that reports progress
/// first still streams.
#[tokio::test]
async fn http_answers_plain_requests_as_json() {
    let fx = Fixture::new();
    let (_child, url) = fx.http(&[]).await;
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value, session: Option<&str>| {
        let mut request = http
            .post(format!("{url}/mcp"))
            .header("Accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(id) = session {
            request = request
                .header("mcp-session-id", id)
                .header("mcp-protocol-version", "2025-11-25");
        }
        request.send()
    };
    let content_type =
        |r: &reqwest::Response| r.headers()["content-type"].to_str().unwrap().to_owned();

    let init = post(
        serde_json::json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(content_type(&init), "application/json");
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = init.json().await.unwrap();
    assert_eq!(body["result"]["serverInfo"]["name"], "plugboard");

    let call = post(
        serde_json::json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"testkit_echo","arguments":{"text":"json"}}}),
        Some(&session),
    )
    .await
    .unwrap();
    assert_eq!(content_type(&call), "application/json");
    let body: serde_json::Value = call.json().await.unwrap();
    assert_eq!(body["result"]["content"][0]["text"], "json");

    let streamed = post(
        serde_json::json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"testkit_slow","arguments":{"steps":2,"step_ms":5},"_meta":{"progressToken":"p"}}}),
        Some(&session),
    )
    .await
    .unwrap();
    assert!(content_type(&streamed).starts_with("text/event-stream"));
    let text = streamed.text().await.unwrap();
    assert_eq!(text.matches("notifications/progress").count(), 2, "{text}");
    assert!(text.contains("completed 2 steps"), "{text}");
}

/// `claude_desktop_config.example.json` works as copied, with only the binary path changed:
/// launched from an arbitrary folder, with `~` meaning the user's home.
#[tokio::test]
async fn the_claude_desktop_example_works_as_copied() {
    use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};

    let example: serde_json::Value =
        serde_json::from_str(include_str!("../../claude_desktop_config.example.json")).unwrap();
    let server = &example["mcpServers"]["plugboard"];
    let home = tempfile::tempdir().unwrap();
    crate::support::write(
        &home.path().join("Documents/todo.md"),
        "# Todo\n\nwater the plants\n",
    );
    let anywhere = tempfile::tempdir().unwrap();

    let command = tokio::process::Command::new(crate::support::BIN).configure(|cmd| {
        cmd.args(
            server["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap()),
        )
        .current_dir(anywhere.path())
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for (key, value) in server["env"].as_object().unwrap() {
            cmd.env(key, value.as_str().unwrap());
        }
    });
    let transport = TokioChildProcess::builder(command)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
        .0;
    let client = Recorder::default()
        .serve(transport)
        .await
        .expect("initialize");
    let read = client
        .call_tool(crate::scenario::call(
            "files_read",
            serde_json::json!({"path": "todo.md"}),
        ))
        .await
        .unwrap();
    assert!(
        crate::support::text(&read).contains("water the plants"),
        "{}",
        crate::support::text(&read)
    );
    // The token placeholder brings the github tools (a request would be refused with a
    // message about GITHUB_TOKEN; listing makes none).
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "github_list_issues"));
    client.cancel().await.unwrap();
}

/// RFC 9110: the auth scheme is case-insensitive, so `bearer` and `BEARER` are accepted; a
/// wrong token still is not.
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let fx = Fixture::new();
    let token = "tok-transports-3c2b1a";
    let (_child, url) = fx.http(&["--token", token]).await;
    let http = reqwest::Client::new();
    let initialize = |authorization: String| {
        http.post(format!("{url}/mcp"))
            .header("Accept", "application/json, text/event-stream")
            .header("Authorization", authorization)
            .json(&serde_json::json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}))
            .send()
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let response = initialize(format!("{scheme} {token}")).await.unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
    }
    for wrong in [
        format!("Bearer {token}x"),
        format!("Basic {token}"),
        token.to_owned(),
    ] {
        let response = initialize(wrong.clone()).await.unwrap();
        assert_eq!(response.status(), 401, "{wrong}");
    }
}

/// Legacy SSE sessions are capped: one beyond `--max-sse-sessions` is answered 503 with what
/// to do, and a closed session frees its place.
#[tokio::test]
async fn legacy_sse_sessions_are_capped() {
    let fx = Fixture::new();
    let (_child, url) = fx.http(&["--max-sse-sessions", "1"]).await;
    let open = || async {
        reqwest::Client::new()
            .get(format!("{url}/sse"))
            .header("Accept", "text/event-stream")
            .send()
            .await
            .unwrap()
    };
    let mut first = open().await;
    assert_eq!(first.status(), 200);
    let endpoint = first.chunk().await.unwrap().unwrap_or_default();
    assert!(String::from_utf8_lossy(&endpoint).contains("sessionId="));

    let refused = open().await;
    assert_eq!(refused.status(), 503);
    let text = refused.text().await.unwrap();
    assert!(
        text.contains("the limit is 1") && text.contains("--max-sse-sessions"),
        "{text}"
    );

    // Closing the first session gives its place back.
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let response = open().await;
            if response.status() == 200 {
                return response;
            }
            assert_eq!(response.status(), 503);
        }
    })
    .await
    .expect("the place of a closed session is free within 10 s");
    drop(second);
}

/// Nobody gets in without the token, whatever the path or where the token is put: every
/// route, path tricks included, is 401 without the header (a token in the query string is
/// not one); CORS preflights are answered only for allowed origins, and answers to an allowed
/// origin say so (a browser client such as the MCP Inspector can read them).
#[tokio::test]
async fn nobody_gets_in_and_cors_is_answered_only_for_allowed_origins() {
    let fx = Fixture::new();
    let token = "tok-transports-3c2b1a";
    let (_child, url) = fx
        .http(&[
            "--token",
            token,
            "--allowed-origins",
            "https://app.example.com",
        ])
        .await;
    let http = reqwest::Client::new();
    for path in [
        "/mcp",
        "/sse",
        "/message?sessionId=x",
        "/health",
        "//mcp",
        "/mcp/",
        "/%6dcp",
        "/mcp/../health",
        "/./health",
        "/nope",
    ] {
        for query in [
            "",
            "?token=tok-transports-3c2b1a",
            "?access_token=tok-transports-3c2b1a",
        ] {
            let sep = if path.contains('?') && !query.is_empty() {
                "&"
            } else {
                ""
            };
            let target = format!(
                "{url}{path}{sep}{}",
                query.trim_start_matches(if sep.is_empty() { "" } else { "?" })
            );
            let status = http.get(&target).send().await.unwrap().status();
            assert_eq!(status, 401, "GET {target}");
            let status = http.post(&target).body("{}").send().await.unwrap().status();
            assert_eq!(status, 401, "POST {target}");
        }
    }
    let ok = http
        .get(format!("{url}/health"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, format!("{url}/mcp"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type",
            )
            .send()
    };
    let foreign = preflight("https://evil.example").await.unwrap();
    assert_eq!(foreign.status(), 403);
    assert!(
        !foreign
            .headers()
            .contains_key("access-control-allow-origin")
    );
    for allowed in ["https://app.example.com", "http://localhost:6274"] {
        let answer = preflight(allowed).await.unwrap();
        assert_eq!(answer.status(), 204, "{allowed}");
        assert_eq!(answer.headers()["access-control-allow-origin"], allowed);
        let methods = answer.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap();
        assert!(
            methods.contains("POST") && methods.contains("DELETE"),
            "{methods}"
        );
        let headers = answer.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap();
        assert!(
            headers.contains("authorization") && headers.contains("mcp-session-id"),
            "{headers}"
        );
    }
    let answer = http
        .get(format!("{url}/health"))
        .bearer_auth(token)
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(
        answer.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("mcp-session-id")
    );
}
