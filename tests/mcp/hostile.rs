//! Hostile and failing upstreams, through the binary: a raw HTTP server on 127.0.0.1 in place
//! of GitHub answers as no well-behaved service would — a body declared or streamed past the
//! size limit, a redirect to another host, JSON that is not, a reset mid-body. Each call ends
//! with a clear tool error, the server serves on, and no key goes anywhere but the configured
//! base URL.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::{airtable::fails, fake_github::TOKEN, support::Fixture};

/// What a raw server does with one request (given its head).
type Answer = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

enum Reply {
    /// These bytes, then close.
    Bytes(Vec<u8>),
    /// Headers, then `n` chunks of 1 MiB (chunked encoding), then close.
    Chunks(String, usize),
}

/// A raw HTTP/1.1 server at `ip`; every request head it received is recorded.
async fn raw_server(ip: &str, answer: Answer) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (answer, seen) = (answer.clone(), seen.clone());
            tokio::spawn(serve_one(tcp, answer, seen));
        }
    });
    (url, heads)
}

async fn serve_one(mut tcp: TcpStream, answer: Answer, seen: Arc<Mutex<Vec<String>>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    seen.lock().unwrap().push(head.clone());
    match answer(&head) {
        Reply::Bytes(bytes) => {
            let _ = tcp.write_all(&bytes).await;
        }
        Reply::Chunks(headers, n) => {
            if tcp.write_all(headers.as_bytes()).await.is_err() {
                return;
            }
            let chunk = format!("100000\r\n{}\r\n", "x".repeat(1 << 20));
            for _ in 0..n {
                if tcp.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
            let _ = tcp.write_all(b"0\r\n\r\n").await;
        }
    }
    let _ = tcp.shutdown().await;
}

fn response(status: &str, headers: &str, body: &str) -> Reply {
    Reply::Bytes(
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// The github plugin pointed at `url`, over stdio.
async fn github_at(fx: &Fixture, url: &str) -> crate::airtable::Client {
    fx.manifest("github", include_str!("../../plugins/github/plugin.toml"));
    fx.stdio_env(
        &["--call-timeout", "60"],
        &[("GITHUB_TOKEN", TOKEN), ("GITHUB_API_URL", url)],
        None,
    )
    .await
    .0
}

const LIST: &str = "github_list_issues";

fn list_args() -> serde_json::Value {
    json!({"owner": "octo", "repo": "hello"})
}

/// A body declared, or streamed, past the 64 MiB limit is cut off with an error saying so;
/// it is never read whole into memory.
#[tokio::test]
async fn oversize_answers_are_cut_off() {
    let answer: Answer = Arc::new(|head: &str| {
        if head.contains("declared") || !head.contains("state=closed") {
            // Declares 100 MiB, sends a little, and keeps quiet.
            Reply::Bytes(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 104857600\r\n\r\n[{"
                    .to_vec(),
            )
        } else {
            Reply::Chunks(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".into(),
                70,
            )
        }
    });
    let (url, _) = raw_server("127.0.0.1", answer).await;
    let fx = Fixture::empty();
    let c = github_at(&fx, &url).await;
    let e = fails(&c, LIST, list_args()).await;
    assert!(e.contains("over 64 MiB, the most read"), "{e}");
    let e = fails(
        &c,
        LIST,
        json!({"owner": "octo", "repo": "hello", "state": "closed"}),
    )
    .await;
    assert!(e.contains("over 64 MiB, the most read"), "{e}");
    c.cancel().await.unwrap();
}

/// A redirect to another host is not followed: the key is never sent there, and the call
/// fails saying what GitHub answered.
#[tokio::test]
async fn redirects_to_another_host_are_not_followed() {
    let elsewhere_seen = {
        let (elsewhere, seen) = raw_server(
            "127.0.0.2",
            Arc::new(|_: &str| response("200 OK", "", "[]")),
        )
        .await;
        let target = format!("{elsewhere}/repos/octo/hello/issues");
        let answer: Answer =
            Arc::new(move |_: &str| response("302 Found", &format!("location: {target}\r\n"), ""));
        let (url, here) = raw_server("127.0.0.1", answer).await;
        let fx = Fixture::empty();
        let c = github_at(&fx, &url).await;
        let e = fails(&c, LIST, list_args()).await;
        assert!(e.contains("302"), "{e}");
        assert!(
            !here.lock().unwrap().is_empty(),
            "the request reached the server"
        );
        c.cancel().await.unwrap();
        seen
    };
    assert!(
        elsewhere_seen.lock().unwrap().is_empty(),
        "a request (with the key) followed the redirect: {:?}",
        elsewhere_seen.lock().unwrap()
    );
}

/// JSON that is not, a wrong content type, and a connection reset mid-body each end the call
/// with an error; the server serves on.
#[tokio::test]
async fn malformed_and_broken_answers_fail_clearly() {
    let answer: Answer = Arc::new(|head: &str| {
        if head.contains("state=closed") {
            response("200 OK", "", "[{\"number\": 1, \"title\": ")
        } else if head.contains("state=all") {
            Reply::Bytes(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 15\r\n\r\n<html>hi</html>"
                    .to_vec(),
            )
        } else {
            // Declares 1,000 bytes, sends 10, and closes: a reset mid-body.
            Reply::Bytes(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n[{\"number\""
                    .to_vec(),
            )
        }
    });
    let (url, heads) = raw_server("127.0.0.1", answer).await;
    let fx = Fixture::empty();
    let c = github_at(&fx, &url).await;
    for state in ["closed", "all", "open"] {
        let e = tokio::time::timeout(
            Duration::from_secs(60),
            fails(
                &c,
                LIST,
                json!({"owner": "octo", "repo": "hello", "state": state}),
            ),
        )
        .await
        .expect("the call ended");
        assert!(!e.is_empty(), "{state}");
        assert!(!e.contains(TOKEN), "{e}");
    }
    // Reads are retried a bounded number of times, then given up.
    let resets = heads
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.contains("state=open"))
        .count();
    assert!((1..=5).contains(&resets), "{resets} attempts");
    c.cancel().await.unwrap();
}

/// A service a plugin talks to, pointed at a raw server: the manifest, the variables, and a
/// call that reaches it.
#[derive(Clone, Copy, Debug)]
enum Service {
    GitHub,
    Airtable,
    OpenAi,
    Anthropic,
}

impl Service {
    const ALL: [Service; 4] = [
        Service::GitHub,
        Service::Airtable,
        Service::OpenAi,
        Service::Anthropic,
    ];

    async fn client(self, fx: &Fixture, url: &str) -> crate::airtable::Client {
        let (name, manifest) = match self {
            Service::GitHub => ("github", include_str!("../../plugins/github/plugin.toml")),
            Service::Airtable => (
                "airtable",
                include_str!("../../plugins/airtable/plugin.toml"),
            ),
            Service::OpenAi | Service::Anthropic => {
                ("agents", include_str!("../../plugins/agents/plugin.toml"))
            }
        };
        fx.manifest(name, manifest);
        let key = crate::fake_llm::KEY;
        let env: Vec<(&str, String)> = match self {
            Service::GitHub => vec![
                ("GITHUB_TOKEN", TOKEN.into()),
                ("GITHUB_API_URL", url.into()),
            ],
            Service::Airtable => vec![
                (
                    "AIRTABLE_API_KEY",
                    crate::fake_airtable::DEFAULT_TOKEN.into(),
                ),
                ("AIRTABLE_BASE_URL", url.into()),
            ],
            Service::OpenAi => vec![
                ("OPENAI_API_KEY", key.into()),
                ("OPENAI_BASE_URL", format!("{url}/v1")),
                ("OPENAI_MODEL", "gpt-test".into()),
            ],
            Service::Anthropic => vec![
                ("ANTHROPIC_API_KEY", key.into()),
                ("ANTHROPIC_BASE_URL", url.into()),
                ("ANTHROPIC_MODEL", "claude-test".into()),
            ],
        };
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        fx.stdio_env(&["--call-timeout", "60"], &env, None).await.0
    }

    fn call(self) -> (&'static str, serde_json::Value) {
        match self {
            Service::GitHub => (LIST, list_args()),
            Service::Airtable => (
                "airtable_list_records",
                json!({"base": "appHostile0000000", "table": "Items"}),
            ),
            Service::OpenAi => ("ask", json!({"prompt": "hi", "provider": "openai"})),
            Service::Anthropic => ("ask", json!({"prompt": "hi", "provider": "anthropic"})),
        }
    }

    /// The key this service's requests carry, as it would appear in a request head.
    fn key(self) -> &'static str {
        match self {
            Service::GitHub => TOKEN,
            Service::Airtable => crate::fake_airtable::DEFAULT_TOKEN,
            Service::OpenAi | Service::Anthropic => crate::fake_llm::KEY,
        }
    }
}

/// Every plugin that talks to a service, against an upstream that declares a body past the
/// limit and one that redirects to another host: each call ends in a clear error, and no
/// request — so no key — reaches the other host.
#[tokio::test]
async fn every_service_client_refuses_oversize_answers_and_foreign_redirects() {
    let (elsewhere, elsewhere_seen) = raw_server(
        "127.0.0.2",
        Arc::new(|_: &str| response("200 OK", "", "{}")),
    )
    .await;
    for service in Service::ALL {
        let big: Answer = Arc::new(|_: &str| {
            Reply::Bytes(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 104857600\r\n\r\n{"
                    .to_vec(),
            )
        });
        let (url, heads) = raw_server("127.0.0.1", big).await;
        let fx = Fixture::empty();
        let c = service.client(&fx, &url).await;
        let (tool, args) = service.call();
        let e = fails(&c, tool, args.clone()).await;
        assert!(e.contains("over 64 MiB"), "{service:?}: {e}");
        assert!(
            !heads.lock().unwrap().is_empty(),
            "{service:?} reached the server"
        );
        c.cancel().await.unwrap();

        let target = format!("{elsewhere}/stolen");
        let redirect: Answer = Arc::new(move |_: &str| {
            response(
                "307 Temporary Redirect",
                &format!("location: {target}\r\n"),
                "",
            )
        });
        let (url, heads) = raw_server("127.0.0.1", redirect).await;
        let fx = Fixture::empty();
        let c = service.client(&fx, &url).await;
        let e = fails(&c, tool, args).await;
        assert!(!e.contains(service.key()), "{service:?}: {e}");
        assert!(
            heads
                .lock()
                .unwrap()
                .iter()
                .any(|h| h.contains(service.key())),
            "{service:?}: the request to the configured URL carries the key"
        );
        c.cancel().await.unwrap();
    }
    assert!(
        elsewhere_seen.lock().unwrap().is_empty(),
        "a redirect was followed to another host: {:?}",
        elsewhere_seen.lock().unwrap()
    );
}

/// A Streamable HTTP MCP server that initializes and lists its tools properly, then answers
/// each tool call as no well-behaved server would: `huge` declares 200 MB and streams it,
/// `drip` keeps its event stream open with keep-alives and never answers, `garbage` answers
/// with bytes that are not JSON. Every request's `Authorization` header is recorded.
async fn hostile_mcp() -> (String, Arc<Mutex<Vec<String>>>) {
    use axum::{
        body::Body,
        http::{HeaderMap, StatusCode, header},
        response::{IntoResponse, Response},
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let record = record.clone();
            async move {
                let auth = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                record.lock().unwrap().push(auth);
                let message: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let id = message["id"].clone();
                let json = |result: serde_json::Value| -> Response {
                    (
                        [
                            (header::CONTENT_TYPE, "application/json"),
                            (header::HeaderName::from_static("mcp-session-id"), "hostile-1"),
                        ],
                        json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string(),
                    )
                        .into_response()
                };
                let tool = |name: &str| json!({"name": name, "inputSchema": {"type": "object"}});
                match message["method"].as_str().unwrap_or("") {
                    "initialize" => json(json!({
                        "protocolVersion": "2025-06-18",
                        "capabilities": {"tools": {}},
                        "serverInfo": {"name": "hostile", "version": "1"}
                    })),
                    "tools/list" => json(json!({"tools": [tool("huge"), tool("drip"), tool("garbage"), tool("fine")]})),
                    "tools/call" => match message["params"]["name"].as_str().unwrap_or("") {
                        "huge" => {
                            let chunks = futures::stream::iter(
                                (0..200).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1 << 20])),
                            );
                            Response::builder()
                                .header(header::CONTENT_TYPE, "application/json")
                                .header(header::CONTENT_LENGTH, 200usize << 20)
                                .body(Body::from_stream(chunks))
                                .unwrap()
                        }
                        "drip" => {
                            let beats = futures::stream::unfold((), |()| async {
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                Some((Ok::<_, std::io::Error>(b": keep-alive\n\n".to_vec()), ()))
                            });
                            Response::builder()
                                .header(header::CONTENT_TYPE, "text/event-stream")
                                .body(Body::from_stream(beats))
                                .unwrap()
                        }
                        "garbage" => (
                            [(header::CONTENT_TYPE, "application/json")],
                            "{\"jsonrpc\": \"2.0\", \"id\": not json",
                        )
                            .into_response(),
                        _ => json(json!({"content": [{"type": "text", "text": "fine"}]})),
                    },
                    _ => StatusCode::ACCEPTED.into_response(),
                }
            }
        })
        .get(|| async { StatusCode::METHOD_NOT_ALLOWED })
        .delete(|| async { StatusCode::OK }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// A hosted MCP server that answers past the size limit, never, or with garbage: each call
/// ends in bounded time with a tool error, the server serves on (the upstream's other tools
/// included), and its bearer token goes to it alone — never into an error, never to a host
/// a redirect names.
#[tokio::test]
async fn a_hostile_mcp_upstream_costs_a_clear_error_and_nothing_else() {
    let (url, seen) = hostile_mcp().await;
    let token = "hostile-upstream-token-0123456789";
    let fx = Fixture::empty();
    fx.manifest(
        "hostile",
        &format!(
            "name = \"hostile\"\nkind = \"mcp\"\nprefix = \"h\"\n[mcp]\nurl = {url:?}\n\
             headers = {{ Authorization = \"Bearer ${{HOSTILE_TOKEN}}\" }}\n"
        ),
    );
    let (client, _) = fx
        .stdio_env(&["--call-timeout", "3"], &[("HOSTILE_TOKEN", token)], None)
        .await;
    for tool in ["h_huge", "h_drip", "h_garbage"] {
        let e = fails(&client, tool, json!({})).await;
        assert!(!e.contains(token), "{tool}: {e}");
        let why = match tool {
            "h_huge" => "over 64 MiB",
            "h_drip" => "did not finish within 3 s",
            _ => "not JSON-RPC",
        };
        assert!(e.contains(why), "{tool}: {e}");
        // The server serves on; so does the upstream's plugin once it has reconnected.
        let mut fine = None;
        for _ in 0..200 {
            let result = crate::airtable::call_tool(&client, "h_fine", json!({})).await;
            if result.is_error != Some(true) {
                fine = Some(result);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            fine.is_some(),
            "after {tool}: the upstream's other tools answer again"
        );
    }
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|auth| auth == &format!("Bearer {token}")),
        "every request carried the token: {:?}",
        seen.lock().unwrap()
    );
    client.cancel().await.unwrap();

    // A server that redirects elsewhere is not followed there with the token.
    let (elsewhere, elsewhere_seen) = raw_server(
        "127.0.0.2",
        Arc::new(|_: &str| response("200 OK", "", "{}")),
    )
    .await;
    let target = format!("{elsewhere}/mcp");
    let (redirecting, _) = raw_server(
        "127.0.0.1",
        Arc::new(move |_: &str| {
            response(
                "307 Temporary Redirect",
                &format!("location: {target}\r\n"),
                "",
            )
        }),
    )
    .await;
    let fx = Fixture::empty();
    fx.manifest(
        "hostile",
        &format!(
            "name = \"hostile\"\nkind = \"mcp\"\nprefix = \"h\"\n[mcp]\nurl = \"{redirecting}/mcp\"\n\
             init_timeout_secs = 3\nheaders = {{ Authorization = \"Bearer ${{HOSTILE_TOKEN}}\" }}\n"
        ),
    );
    let plugins = fx
        .output(fx.command(&["plugins"]).env("HOSTILE_TOKEN", token))
        .await;
    assert!(plugins.stdout.contains("failed ("), "{}", plugins.stdout);
    assert!(!plugins.stdout.contains(token) && !plugins.stderr.contains(token));

    // A legacy SSE server whose endpoint is on another origin: nothing is posted there.
    let endpoint = format!("{elsewhere}/message");
    let (sse, _) = raw_server(
        "127.0.0.1",
        Arc::new(move |_: &str| {
            Reply::Bytes(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n\
                     event: endpoint\ndata: {endpoint}\n\n"
                )
                .into_bytes(),
            )
        }),
    )
    .await;
    fx.manifest(
        "hostile",
        &format!(
            "name = \"hostile\"\nkind = \"mcp\"\nprefix = \"h\"\n[mcp]\nurl = \"{sse}/sse\"\n\
             transport = \"sse\"\ninit_timeout_secs = 3\n\
             headers = {{ Authorization = \"Bearer ${{HOSTILE_TOKEN}}\" }}\n"
        ),
    );
    let plugins = fx
        .output(fx.command(&["plugins"]).env("HOSTILE_TOKEN", token))
        .await;
    assert!(
        plugins
            .stdout
            .contains("asked for messages at another origin"),
        "{}",
        plugins.stdout
    );
    assert!(
        elsewhere_seen.lock().unwrap().is_empty(),
        "a redirect was followed: {:?}",
        elsewhere_seen.lock().unwrap()
    );
}
