//! Bounded resources over HTTP, through the binary: sessions capped (in all and per client
//! address) and expired when idle, connections capped, slow or silent clients cut off, and
//! bodies that are no JSON-RPC message answered. Each drives one limit past its edge.

use std::{net::IpAddr, time::Duration};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::Fixture;

const ACCEPT: &str = "application/json, text/event-stream";
const VERSION: &str = "2025-11-25";

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// `initialize` from `http`; the response.
async fn initialize(http: &reqwest::Client, url: &str) -> reqwest::Response {
    http.post(format!("{url}/mcp"))
        .header("Accept", ACCEPT)
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":VERSION,"capabilities":{},"clientInfo":{"name":"limits","version":"0"}}}))
        .send()
        .await
        .unwrap()
}

/// A session opened from `http`: its id, after `notifications/initialized`.
async fn open_session(http: &reqwest::Client, url: &str) -> String {
    let response = initialize(http, url).await;
    assert_eq!(response.status(), 200);
    let id = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let sent = on_session(http, url, &id)
        .json(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    id
}

fn on_session(http: &reqwest::Client, url: &str, id: &str) -> reqwest::RequestBuilder {
    http.post(format!("{url}/mcp"))
        .header("Accept", ACCEPT)
        .header("Mcp-Session-Id", id)
        .header("MCP-Protocol-Version", VERSION)
}

async fn list_tools(http: &reqwest::Client, url: &str, id: &str) -> reqwest::Response {
    on_session(http, url, id)
        .json(&json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}))
        .send()
        .await
        .unwrap()
}

async fn health(url: &str) -> Value {
    reqwest::get(format!("{url}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Poll `/health` until `done` holds (a generous bound, never asserted as a speed).
async fn until_health(url: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let status = health(url).await;
            if done(&status) {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("/health never showed {what}"))
}

/// The probe that found 20,000 sessions in 5 s: now one beyond the cap is 503 saying which
/// limit, per client address and in all; DELETE frees a place; an idle session is closed and
/// its id gets 404, while one with a stream open stays; `/health` counts them throughout.
#[tokio::test]
async fn streamable_http_sessions_are_capped_and_expire_when_idle() {
    let fx = Fixture::new();
    let (_child, url) = fx
        .http(&[
            "--max-sessions",
            "3",
            "--max-sessions-per-client",
            "2",
            "--session-idle-secs",
            "1",
        ])
        .await;
    // Two client addresses: Linux routes all of 127/8 to loopback.
    let a = client_from("127.0.0.1");
    let b = client_from("127.0.0.2");

    let a1 = open_session(&a, &url).await;
    let a2 = open_session(&a, &url).await;
    let refused = initialize(&a, &url).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let text = refused.text().await.unwrap();
    assert!(
        text.contains("from this address (the limit is 2)")
            && text.contains("--max-sessions-per-client"),
        "{text}"
    );
    let b1 = open_session(&b, &url).await;
    let refused = initialize(&b, &url).await;
    assert_eq!(refused.status(), 503);
    let text = refused.text().await.unwrap();
    assert!(
        text.contains("too many MCP sessions open (the limit is 3)")
            && text.contains("--max-sessions "),
        "{text}"
    );
    let status = health(&url).await;
    assert_eq!(status["sessions"]["streamable_http"]["open"], 3, "{status}");
    assert_eq!(status["sessions"]["streamable_http"]["max"], 3, "{status}");
    // The flood that took 1 GB: now every one is refused and memory stays where it was.
    let before = status["memory"]["rss_bytes"].as_u64().unwrap();
    for _ in 0..500 {
        assert_eq!(initialize(&a, &url).await.status(), 503);
    }
    let status = health(&url).await;
    assert_eq!(status["sessions"]["streamable_http"]["open"], 3, "{status}");
    let grown = status["memory"]["rss_bytes"]
        .as_u64()
        .unwrap()
        .saturating_sub(before);
    assert!(
        grown < 16 << 20,
        "RSS grew {grown} bytes over 500 refused sessions"
    );

    // DELETE ends a session and frees its place; a second DELETE, or one of an id never
    // given, is 404.
    let delete = |id: String| {
        a.delete(format!("{url}/mcp"))
            .header("Mcp-Session-Id", id)
            .header("MCP-Protocol-Version", VERSION)
            .send()
    };
    assert!(delete(a1.clone()).await.unwrap().status().is_success());
    assert_eq!(delete(a1.clone()).await.unwrap().status(), 404);
    assert_eq!(
        delete("no-such-session".into()).await.unwrap().status(),
        404
    );
    assert_eq!(list_tools(&a, &url, &a1).await.status(), 404);

    // b1 listens on its stream (GET), so it is never idle; a2 is, and expires.
    let mut stream = b
        .get(format!("{url}/mcp"))
        .header("Accept", "text/event-stream")
        .header("Mcp-Session-Id", &b1)
        .header("MCP-Protocol-Version", VERSION)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let status = until_health(&url, "the idle session closed", |s| {
        s["sessions"]["streamable_http"]["open"] == 1
    })
    .await;
    assert_eq!(status["sessions"]["streamable_http"]["busy"], 1, "{status}");
    let gone = list_tools(&a, &url, &a2).await;
    assert_eq!(gone.status(), 404, "an expired session's id is 404");
    // The listening session still serves, well past the idle time.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(list_tools(&b, &url, &b1).await.status(), 200);
    // And the client whose sessions ended can open new ones.
    open_session(&a, &url).await;
    open_session(&a, &url).await;
    drop(stream.chunk());
}

/// Read what the server sends on `tcp` until it closes the connection (bounded by a
/// generous deadline: the point is that it closes, not how fast).
async fn read_to_close(tcp: &mut TcpStream) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut got))
        .await
        .expect("the server never closed the connection")
        .ok();
    String::from_utf8_lossy(&got).into_owned()
}

fn host_of(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// A connection that sends nothing, one whose headers trickle in, and a body trickled against
/// a large Content-Length are each cut off (the last answered 408) instead of being held
/// open for as long as the client likes.
#[tokio::test]
async fn silent_and_slow_clients_are_cut_off() {
    let fx = Fixture::new();
    let (_child, url) = fx
        .http(&["--header-timeout-secs", "1", "--body-timeout-secs", "1"])
        .await;
    let host = host_of(&url);

    let mut silent = TcpStream::connect(&host).await.unwrap();
    read_to_close(&mut silent).await;

    let mut trickle = TcpStream::connect(&host).await.unwrap();
    let headers =
        format!("POST /mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n");
    let dripping = async {
        for byte in headers.as_bytes() {
            if trickle.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the server took headers a byte every 200 ms to the end");
    };
    dripping.await;

    let mut body = TcpStream::connect(&host).await.unwrap();
    body.write_all(
        format!(
            "POST /mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Accept: {ACCEPT}\r\nContent-Length: 100000\r\n\r\n{{\"jsonrpc\":"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let answer = read_to_close(&mut body).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("--body-timeout-secs"), "{answer}");

    // The server serves on.
    assert_eq!(health(&url).await["status"], "ok");
}

/// One connection beyond `--max-connections` is answered 503 and closed; when one closes, a
/// new one is served.
#[tokio::test]
async fn connections_are_capped() {
    let fx = Fixture::new();
    let (_child, url) = fx.http(&["--max-connections", "2"]).await;
    let host = host_of(&url);
    let first = TcpStream::connect(&host).await.unwrap();
    let _second = TcpStream::connect(&host).await.unwrap();
    // Both are accepted before the third arrives: /health counts them.
    let mut third = TcpStream::connect(&host).await.unwrap();
    let answer = read_to_close(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("the limit is 2") && answer.contains("--max-connections"),
        "{answer}"
    );
    drop(first);
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(response) = reqwest::get(format!("{url}/health")).await
                && response.status() == 200
            {
                let status: Value = response.json().await.unwrap();
                assert_eq!(status["connections"]["max"], 2);
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a place freed by a closed connection is served");
}

/// Bodies that are no JSON-RPC message get 400 with the JSON-RPC error (not rmcp's 415),
/// with `id: null` when the id cannot be read and the request's id when it can.
#[tokio::test]
async fn http_bodies_that_are_no_message_get_a_json_rpc_error() {
    let fx = Fixture::new();
    let (_child, url) = fx.http(&[]).await;
    let http = reqwest::Client::new();
    let post = |body: String| {
        http.post(format!("{url}/mcp"))
            .header("Accept", ACCEPT)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let answer = post("{not json".into()).await.unwrap();
    assert_eq!(answer.status(), 400);
    let error: Value = answer.json().await.unwrap();
    assert_eq!(error["error"]["code"], -32700, "{error}");
    assert!(
        error.as_object().unwrap().contains_key("id") && error["id"].is_null(),
        "{error}"
    );

    let answer = post(r#"{"hello":"world"}"#.into()).await.unwrap();
    assert_eq!(answer.status(), 400);
    let error: Value = answer.json().await.unwrap();
    assert_eq!(
        (error["error"]["code"].clone(), error["id"].clone()),
        (json!(-32600), Value::Null),
        "{error}"
    );

    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{{"name":"files_read","arguments":{{"path":{}0{}}}}}}}"#,
        "[".repeat(300),
        "]".repeat(300)
    );
    // Nested too deep inside params: refused as bad params, naming the limit, with the id.
    let answer = post(deep).await.unwrap();
    let error: Value = answer.json().await.unwrap();
    assert_eq!(error["id"], 41, "{error}");
    assert_eq!(error["error"]["code"], -32602, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nested deeper than 128 levels, the limit"),
        "{error}"
    );
    // Nested too deep where no params can say so: -32600 with the id read from the text.
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":42,"method":"notifications/x","result":{}0{}}}"#,
        "[".repeat(300),
        "]".repeat(300)
    );
    let answer = post(deep).await.unwrap();
    assert_eq!(answer.status(), 400);
    let error: Value = answer.json().await.unwrap();
    assert_eq!(
        (error["id"].clone(), error["error"]["code"].clone()),
        (json!(42), json!(-32600)),
        "{error}"
    );
}

/// Lines from `read` until it ends, as JSON.
async fn json_lines(read: impl tokio::io::AsyncRead + Unpin) -> Vec<Value> {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(read).lines();
    let mut out = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        out.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")));
    }
    out
}

fn initialize_line(id: u32) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"lines","version":"0"}}}).to_string()
}

/// On stdio every line gets an answer: not JSON is -32700, JSON that is no message -32600,
/// a line over the limit or nested too deep -32600 naming the limit, each with the request's
/// id when it can be read and `"id": null` when not. The server serves on after each.
#[tokio::test]
async fn every_stdio_line_gets_an_answer() {
    let fx = Fixture::new();
    let mut child = fx
        .command(&["serve", "--max-body-bytes", "4000"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let oversized = json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"testkit_echo","arguments":{"text":"x".repeat(10_000)}}});
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":"deep","result":{}0{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let lines = [
        initialize_line(1),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string(),
        "this is not json".into(),
        r#"{"hello":"world"}"#.into(),
        oversized.to_string(),
        deep,
        String::new(),
        json!({"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"testkit_echo","arguments":{"text":"still here"}}}).to_string(),
    ];
    for line in &lines {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }
    drop(stdin);
    let answers = tokio::time::timeout(
        Duration::from_secs(60),
        json_lines(child.stdout.take().unwrap()),
    )
    .await
    .expect("the server answered and exited after stdin closed");
    let by_code = |code: i64| -> Vec<&Value> {
        answers
            .iter()
            .filter(|a| a["error"]["code"] == code)
            .collect()
    };
    let parse = by_code(-32700);
    assert_eq!(parse.len(), 1, "{answers:#?}");
    assert!(parse[0].as_object().unwrap().contains_key("id") && parse[0]["id"].is_null());
    let invalid = by_code(-32600);
    assert_eq!(invalid.len(), 3, "{answers:#?}");
    let message = |a: &Value| a["error"]["message"].as_str().unwrap().to_owned();
    assert!(invalid[0]["id"].is_null(), "{}", invalid[0]);
    assert_eq!(invalid[1]["id"], 9);
    assert!(
        message(invalid[1]).contains("over 4000 bytes, the limit"),
        "{}",
        invalid[1]
    );
    assert_eq!(invalid[2]["id"], "deep");
    assert!(
        message(invalid[2]).contains("nested deeper than 128"),
        "{}",
        invalid[2]
    );
    let last = answers
        .iter()
        .find(|a| a["id"] == 10)
        .expect("the call after them was served");
    assert_eq!(last["result"]["content"][0]["text"], "still here", "{last}");
    assert_eq!(
        answers.len(),
        6,
        "one answer per request line: {answers:#?}"
    );
}

/// A client that sends a call and closes stdin gets the result: the end of input waits for
/// the calls in flight (here a 60-second call, far past rmcp's 5-second drain, in paused
/// time over the same transport `plugboard serve` uses on stdio).
#[tokio::test(start_paused = true)]
async fn closing_stdin_mid_call_still_delivers_the_result() {
    let fx = Fixture::new();
    let manager = crate::inproc::Server::new(&fx).start().await;
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let (server_read, server_write) = tokio::io::split(server_io);
    let served = tokio::spawn(plugboard::server::serve_lines(
        manager,
        server_read,
        server_write,
        1 << 20,
    ));
    let (client_read, mut client_write) = tokio::io::split(client_io);
    let started = tokio::time::Instant::now();
    for line in [
        initialize_line(1),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string(),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"testkit_slow","arguments":{"steps":2,"step_ms":30_000}}}).to_string(),
    ] {
        client_write.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    }
    client_write.shutdown().await.unwrap();
    drop(client_write);
    let answers = json_lines(client_read).await;
    let result = answers
        .iter()
        .find(|a| a["id"] == 2)
        .unwrap_or_else(|| panic!("the call's result was lost: {answers:#?}"));
    assert_eq!(
        result["result"]["content"][0]["text"], "completed 2 steps",
        "{result}"
    );
    assert!(started.elapsed() >= Duration::from_secs(60));
    served.await.unwrap().unwrap();
}

/// Calls in flight are bounded per session and per server: one beyond either limit is a
/// tool error naming the limit and its setting, the others finish, and a place freed is
/// usable again (paused time, in process).
#[tokio::test(start_paused = true)]
async fn calls_in_flight_are_capped_per_session_and_per_server() {
    use rmcp::model::CallToolRequestParams;
    let fx = Fixture::new();
    let manager = crate::inproc::Server::new(&fx)
        .max_calls(3, 2)
        .start()
        .await;
    let one = crate::inproc::client(manager.clone(), plugboard::plugin::Face::Stdio).await;
    let two = crate::inproc::client(manager, plugboard::plugin::Face::Stdio).await;
    let slow = || {
        CallToolRequestParams::new("testkit_slow").with_arguments(
            json!({"steps": 1, "step_ms": 10_000})
                .as_object()
                .unwrap()
                .clone(),
        )
    };
    let texts = |results: Vec<rmcp::model::CallToolResult>| -> Vec<String> {
        results.iter().map(crate::support::text).collect()
    };
    // Three on one session (limit 2): one refused.
    let results = futures::future::join_all((0..3).map(|_| one.call_tool(slow()))).await;
    let results = texts(results.into_iter().map(Result::unwrap).collect());
    let refused: Vec<&String> = results.iter().filter(|t| t.contains("too many")).collect();
    assert_eq!(refused.len(), 1, "{results:?}");
    assert!(
        refused[0].contains("on this session (the limit is 2)")
            && refused[0].contains("--max-calls-per-session"),
        "{}",
        refused[0]
    );
    assert_eq!(
        results.iter().filter(|t| *t == "completed 1 steps").count(),
        2,
        "{results:?}"
    );
    // Two on each session (server limit 3): one refused for the server.
    let all = futures::future::join_all(
        (0..2)
            .map(|_| one.call_tool(slow()))
            .chain((0..2).map(|_| two.call_tool(slow()))),
    )
    .await;
    let results = texts(all.into_iter().map(Result::unwrap).collect());
    let refused: Vec<&String> = results.iter().filter(|t| t.contains("too many")).collect();
    assert_eq!(refused.len(), 1, "{results:?}");
    assert!(
        refused[0].contains("on this server (the limit is 3)")
            && refused[0].contains("--max-calls"),
        "{}",
        refused[0]
    );
    // Places are given back: a call now goes through.
    let after = one.call_tool(slow()).await.unwrap();
    assert_eq!(crate::support::text(&after), "completed 1 steps");
}

/// A tool result over 16 MiB is replaced by an error saying so (clients could not read it
/// anyway), and the server serves on.
#[tokio::test]
async fn an_oversize_result_is_refused() {
    let fx = Fixture::new();
    let (client, _) = fx.stdio(&[]).await;
    let call = |text: String, repeat: u32| {
        rmcp::model::CallToolRequestParams::new("testkit_echo").with_arguments(
            json!({"text": text, "repeat": repeat})
                .as_object()
                .unwrap()
                .clone(),
        )
    };
    let result = client
        .call_tool(call("x".repeat(20_000), 1000))
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    let text = crate::support::text(&result);
    assert!(text.contains("over the 16 MiB a result may hold"), "{text}");
    let small = client.call_tool(call("ok".into(), 2)).await.unwrap();
    assert_eq!(crate::support::text(&small), "okok");
    client.cancel().await.unwrap();
}

/// A client that deletes its session while a call is running does not leave the call stuck:
/// the tool's log notifications (which the closing session no longer writes) are skipped after
/// a short wait, and the call runs to its end instead of hanging until rmcp's drain cancels it.
/// Found by the soak bench: such calls held their slots for the 5-second drain, and at 60
/// disconnects a second the server refused calls as "too many in flight".
#[tokio::test]
async fn a_call_of_a_deleted_session_is_not_held_up_by_its_notifications() {
    let fx = Fixture::new();
    let log = fx.home.path().join("http.log");
    fx.log_file(&log);
    let _child = fx
        .command(&["serve", "--http", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(rest) = text.split("listening on ").nth(1) {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the server listens");
    let http = reqwest::Client::new();
    let id = open_session(&http, &url).await;
    // 20 steps of 10 ms, a log notification each (the session's level is info).
    let call = on_session(&http, &url, &id)
        .json(&json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"testkit_slow","arguments":{"steps":20,"step_ms":10}}}))
        .send();
    let running = tokio::spawn(call);
    until_health(&url, "the call in flight", |s| s["calls"]["in_flight"] == 1).await;
    running.abort();
    let deleted = http
        .delete(format!("{url}/mcp"))
        .header("Mcp-Session-Id", &id)
        .header("MCP-Protocol-Version", VERSION)
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    until_health(&url, "no call in flight", |s| s["calls"]["in_flight"] == 0).await;
    let finished = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains("tool=testkit_slow")) {
                return line.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the call was logged");
    assert!(
        finished.contains("ok=true"),
        "the call ran to its end rather than being cancelled by the drain: {finished}"
    );
}

/// Sessions that end leave nothing running: after 10 sessions are opened, used and deleted,
/// the server's task count (in `/health`) comes back to what it was. Each ended session used
/// to leave its change-pushing task (and its peer) alive until the next reload — found by
/// the soak bench.
#[tokio::test]
async fn ended_sessions_leave_no_task_behind() {
    let fx = Fixture::new();
    let (_child, url) = fx.http(&[]).await;
    let http = reqwest::Client::new();
    let idle = until_health(&url, "a settled server", |s| s["tasks"].is_u64()).await["tasks"]
        .as_u64()
        .unwrap();
    for _ in 0..10 {
        let id = open_session(&http, &url).await;
        assert_eq!(list_tools(&http, &url, &id).await.status(), 200);
        let deleted = http
            .delete(format!("{url}/mcp"))
            .header("Mcp-Session-Id", &id)
            .header("MCP-Protocol-Version", VERSION)
            .send()
            .await
            .unwrap();
        assert!(deleted.status().is_success());
    }
    until_health(&url, "the tasks of ended sessions gone", |s| {
        s["sessions"]["streamable_http"]["open"] == 0
            && s["tasks"].as_u64().is_some_and(|t| t <= idle + 2)
    })
    .await;
}
