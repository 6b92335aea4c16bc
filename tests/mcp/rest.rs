//! The REST API (`/api/v1`), the health checks and the live events, against the binary
//! (`plugboard serve --http`), with a plain HTTP client as scripts use it.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::support::Fixture;

/// A REST client of one `plugboard serve --http`.
pub struct Api {
    base: String,
    http: reqwest::Client,
    _child: tokio::process::Child,
}

impl Api {
    async fn start(fx: &Fixture, extra: &[&str]) -> Self {
        let (child, url) = fx.http(extra).await;
        Self::at(child, &url)
    }

    /// Start `command` (a `plugboard serve --http 127.0.0.1:0` with whatever environment the
    /// test gave it) and speak to it; its stderr is kept with `fx`'s logs.
    pub async fn serve(fx: &Fixture, mut command: tokio::process::Command) -> Self {
        let mut child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let url = fx.listening_url(&mut child).await;
        Self::at(child, &url)
    }

    /// The API of the server `child`, listening at `url`.
    pub fn at(child: tokio::process::Child, url: &str) -> Self {
        Self {
            base: url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            _child: child,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self._child.id().expect("running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        answer(response).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        answer(response).await
    }

    /// A POST asking for server-sent events: every event until the stream ends.
    pub async fn post_events(&self, path: &str, body: Value) -> Vec<(String, Value)> {
        let response = self
            .http
            .post(self.url(path))
            .header("accept", "text/event-stream")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let mut events = Vec::new();
        let mut stream = sse_stream::SseStream::from_bytes_stream(response.bytes_stream());
        while let Some(item) = stream.next().await {
            let sse = item.unwrap();
            if let (Some(event), Some(data)) = (sse.event, sse.data) {
                events.push((event, serde_json::from_str(&data).unwrap()));
            }
        }
        events
    }
}

impl Api {
    /// `GET /metrics`, as Prometheus scrapes it.
    pub async fn metrics(&self) -> Metrics {
        let response = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        Metrics(response.text().await.unwrap())
    }
}

/// A scrape of `/metrics`.
pub struct Metrics(pub String);

impl Metrics {
    /// The value of the series of `name` whose labels include every one of `labels`
    /// (`provider="openai"`); panics, showing the scrape, when there is none.
    pub fn sample(&self, name: &str, labels: &[&str]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("{name} {labels:?} not in:\n{}", self.0))
    }

    /// [`Metrics::sample`], `None` when there is no such series (yet).
    pub fn get(&self, name: &str, labels: &[&str]) -> Option<f64> {
        let (head, bare) = (format!("{name}{{"), format!("{name} "));
        self.0
            .lines()
            .find(|l| {
                (l.starts_with(&head) || l.starts_with(&bare))
                    && labels.iter().all(|x| l.contains(x))
            })?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()
    }
}

/// The status and the JSON body; a problem document must say it is one, and carry its status.
async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: Value = response.json().await.unwrap();
    if status >= 400 {
        assert_eq!(kind, "application/problem+json", "{status}: {body}");
        assert_eq!(body["status"], status, "{body}");
        assert!(
            body["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:plugboard:problem:"),
            "{body}"
        );
        assert!(!body["detail"].as_str().unwrap().is_empty(), "{body}");
    } else {
        assert_eq!(kind, "application/json", "{status}: {body}");
    }
    (status, body)
}

pub fn text(result: &Value) -> String {
    result["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn tools_are_called_through_the_same_pipeline_as_mcp() {
    let fx = Fixture::new();
    let api = Api::start(&fx, &[]).await;

    // Plugins, with their state, reason, version and load time.
    let (status, plugins) = api.get("/api/v1/plugins").await;
    assert_eq!(status, 200);
    let by_name = |name: &str| {
        plugins
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no plugin {name} in {plugins}"))
            .clone()
    };
    let testkit = by_name("testkit");
    assert_eq!(testkit["state"], "ready");
    assert!(
        testkit["version"]
            .as_str()
            .unwrap()
            .starts_with("plugboard ")
    );
    assert!(testkit["load_ms"].is_u64(), "{testkit}");
    assert!(
        testkit["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("testkit_echo"))
    );
    let broken = by_name("broken");
    assert_eq!(broken["state"], "failed");
    assert_eq!(broken["reason"], "the database is on fire");
    let keyed = by_name("keyed");
    assert_eq!(keyed["state"], "unconfigured");
    assert_eq!(keyed["reason"], "set PLUGBOARD_TEST_API_KEY");
    assert_eq!(by_name("sleepy")["state"], "disabled");
    let (status, one) = api.get("/api/v1/plugins/testkit").await;
    assert_eq!((status, &one["name"]), (200, &json!("testkit")));
    let (status, problem) = api.get("/api/v1/plugins/nope").await;
    assert_eq!(status, 404);
    assert!(
        problem["detail"].as_str().unwrap().contains("testkit"),
        "{problem}"
    );

    // Tools with their schemas; one plugin's alone.
    let (status, tools) = api.get("/api/v1/tools").await;
    assert_eq!(status, 200);
    let echo = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "testkit_echo")
        .unwrap();
    assert_eq!(echo["plugin"], "testkit");
    assert_eq!(echo["inputSchema"]["required"], json!(["text"]));
    let (_, files_tools) = api.get("/api/v1/tools?plugin=files").await;
    let names: Vec<&str> = files_tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"files_read") && names.iter().all(|n| n.starts_with("files_")));
    let (status, tool) = api.get("/api/v1/tools/files_read").await;
    assert_eq!((status, &tool["name"]), (200, &json!("files_read")));

    // A call: the tool's answer.
    let (status, result) = api
        .post(
            "/api/v1/tools/testkit_echo/call",
            json!({ "text": "hello", "repeat": 2 }),
        )
        .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["isError"], false);
    assert_eq!(text(&result), "hellohello");
    let (status, result) = api
        .post(
            "/api/v1/tools/files_read/call",
            json!({ "path": "docs/notes.txt" }),
        )
        .await;
    assert_eq!(status, 200, "{result}");
    assert!(text(&result).contains("gamma needle"), "{result}");

    // A tool's own error is its answer: 200 with isError, as over MCP.
    let (status, result) = api
        .post(
            "/api/v1/tools/files_read/call",
            json!({ "path": "escape.txt" }),
        )
        .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["isError"], true);
    assert!(!text(&result).contains("TOP SECRET"), "{result}");

    // The pipeline's refusals are problems with their status codes.
    let (status, problem) = api
        .post("/api/v1/tools/testkit_echo/call", json!({ "txt": "hello" }))
        .await;
    assert_eq!(status, 400);
    assert_eq!(problem["type"], "urn:plugboard:problem:invalid-arguments");
    assert!(
        problem["detail"].as_str().unwrap().contains("text"),
        "{problem}"
    );
    let (status, problem) = api.post("/api/v1/tools/nope/call", json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(problem["tool"], "nope");
    let (status, problem) = api.post("/api/v1/tools/broken_echo/call", json!({})).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["plugin"], "broken");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("the database is on fire"),
        "{problem}"
    );
    let (status, problem) = api
        .post(
            "/api/v1/tools/testkit_panic/call",
            json!({ "message": "kaboom" }),
        )
        .await;
    assert_eq!(status, 500, "{problem}");
    assert_eq!(problem["type"], "urn:plugboard:problem:panic");
    // … and the server goes on.
    let (status, _) = api.post("/api/v1/tools/testkit_noop/call", json!({})).await;
    assert_eq!(status, 200);

    // Bodies that are not a JSON object.
    let response = api
        .http
        .post(api.url("/api/v1/tools/testkit_echo/call"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, problem) = answer(response).await;
    assert_eq!(status, 400);
    assert_eq!(problem["type"], "urn:plugboard:problem:invalid-body");
    let (status, _) = api
        .post("/api/v1/tools/testkit_echo/call", json!([1, 2]))
        .await;
    assert_eq!(status, 400);
    let response = api
        .http
        .post(api.url("/api/v1/tools/testkit_echo/call"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(answer(response).await.0, 415);
    let response = api
        .http
        .post(api.url("/api/v1/tools/testkit_echo/call"))
        .json(&json!({ "text": "x".repeat(5 * 1024 * 1024) }))
        .send()
        .await
        .unwrap();
    // The unread rest of the body ends the connection, and the client is told: its next
    // request goes on a new one (it once raced a reused connection the server had closed).
    assert_eq!(response.headers()["connection"], "close");
    let (status, problem) = answer(response).await;
    assert_eq!(status, 413);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("--max-body-bytes")
    );

    // A batch: concurrent, answered in order, each item with its own status.
    let (status, batch) = api
        .post(
            "/api/v1/batch",
            json!({ "calls": [
                { "tool": "testkit_echo", "arguments": { "text": "one" } },
                { "tool": "nope" },
                { "tool": "testkit_echo", "arguments": { "text": 2 } },
                { "ask": { "prompt": "hi" } },
                { "tool": "testkit_echo", "arguments": { "text": "three" } },
            ] }),
        )
        .await;
    assert_eq!(status, 200, "{batch}");
    let results = batch["results"].as_array().unwrap();
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 404, 400, 409, 200], "{batch}");
    assert_eq!(text(&results[0]["result"]), "one");
    assert_eq!(text(&results[4]["result"]), "three");
    assert!(
        results[3]["problem"]["detail"]
            .as_str()
            .unwrap()
            .contains("OPENAI_API_KEY"),
        "{batch}"
    );
    let many: Vec<Value> = (0..101)
        .map(|_| json!({ "tool": "testkit_noop" }))
        .collect();
    let (status, _) = api.post("/api/v1/batch", json!({ "calls": many })).await;
    assert_eq!(status, 400);

    // No provider configured: `ask` and `consensus` say what to set.
    let (status, problem) = api
        .post("/api/v1/consensus", json!({ "prompt": "2+2?" }))
        .await;
    assert_eq!(status, 409);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("ANTHROPIC_API_KEY")
    );
}

#[tokio::test]
async fn a_call_streams_its_progress_and_ends_with_its_result() {
    let fx = Fixture::new();
    let api = Api::start(&fx, &[]).await;
    let events = api
        .post_events(
            "/api/v1/tools/testkit_slow/call",
            json!({ "steps": 3, "step_ms": 20 }),
        )
        .await;
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        names,
        ["progress", "progress", "progress", "result"],
        "{events:?}"
    );
    assert_eq!(
        events[1].1,
        json!({ "progress": 2.0, "total": 3.0, "message": "step 2" })
    );
    assert_eq!(text(&events[3].1), "completed 3 steps");
    // A refusal streams as a problem event.
    let events = api.post_events("/api/v1/tools/nope/call", json!({})).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "problem");
    assert_eq!(events[0].1["status"], 404);
}

#[tokio::test]
async fn a_call_that_runs_out_of_time_is_504() {
    let fx = Fixture::new();
    let api = Api::start(&fx, &["--call-timeout", "1"]).await;
    let (status, problem) = api
        .post(
            "/api/v1/tools/testkit_slow/call",
            json!({ "steps": 100, "step_ms": 100 }),
        )
        .await;
    assert_eq!(status, 504, "{problem}");
    assert_eq!(problem["type"], "urn:plugboard:problem:timeout");
    assert_eq!(problem["tool"], "testkit_slow");
}

#[tokio::test]
async fn the_event_stream_follows_calls_from_every_face_without_their_data() {
    let fx = Fixture::new();
    let api = Api::start(&fx, &[]).await;
    let response = api
        .http
        .get(api.url("/api/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut events = sse_stream::SseStream::from_bytes_stream(response.bytes_stream());
    // The stream is open once the server has sent its headers; a call now is seen.
    let (status, _) = api
        .post(
            "/api/v1/tools/testkit_echo/call",
            json!({ "text": "private words" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = api.post("/api/v1/tools/nope/call", json!({})).await;
    assert_eq!(status, 404);
    // And a reload of one plugin: its status and the tool list.
    let (status, reloaded) = api.post("/api/v1/plugins/testkit/reload", json!({})).await;
    assert_eq!(status, 200, "{reloaded}");
    assert_eq!(reloaded["state"], "ready");
    let (status, _) = api.post("/api/v1/plugins/nope/reload", json!({})).await;
    assert_eq!(status, 404);

    let mut seen: Vec<(String, Value)> = Vec::new();
    let wanted =
        |seen: &[(String, Value)]| seen.iter().filter(|(e, _)| e == "call_finished").count() >= 2;
    tokio::time::timeout(Duration::from_secs(20), async {
        while !wanted(&seen) {
            let sse = events.next().await.expect("stream open").unwrap();
            if let (Some(event), Some(data)) = (sse.event, sse.data) {
                assert!(!data.contains("private words"), "{data}");
                seen.push((event, serde_json::from_str(&data).unwrap()));
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("events seen: {seen:?}"));
    let started = seen
        .iter()
        .find(|(e, _)| e == "call_started")
        .expect("a call_started event");
    assert_eq!(started.1["tool"], "testkit_echo");
    assert_eq!(started.1["face"], "rest");
    let finished: Vec<&Value> = seen
        .iter()
        .filter(|(e, _)| e == "call_finished")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(finished[0]["tool"], "testkit_echo");
    assert_eq!(finished[0]["outcome"], "ok");
    assert!(finished[0]["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(finished[1]["tool"], "nope");
    assert_eq!(finished[1]["outcome"], "unknown_tool");
}

#[tokio::test]
async fn health_tells_live_from_ready() {
    let fx = Fixture::new();
    let api = Api::start(&fx, &[]).await;
    let (status, live) = api.get("/health/live").await;
    assert_eq!((status, &live["status"]), (200, &json!("live")));
    let (status, ready) = api.get("/health/ready").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ready");
    let plugins = ready["plugins"].as_array().unwrap();
    let broken = plugins.iter().find(|p| p["name"] == "broken").unwrap();
    assert_eq!(broken["status"], "failed (the database is on fire)");
}

#[tokio::test]
async fn the_api_needs_the_token_and_honours_the_servers_filters() {
    let fx = Fixture::new();
    let (child, url) = {
        let mut cmd = fx.command(&["serve", "--http", "127.0.0.1:0", "--read-only"]);
        cmd.env("PLUGBOARD_HTTP_TOKEN", "tok-rest-7d6e5f")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let url = fx.listening_url(&mut child).await;
        (child, url)
    };
    let api = Api::at(child, &url);
    let (status, problem) = api.get("/api/v1/tools").await;
    assert_eq!(status, 401);
    assert!(!problem.to_string().contains("tok-rest-7d6e5f"));
    let with_token = |request: reqwest::RequestBuilder| request.bearer_auth("tok-rest-7d6e5f");
    let response = with_token(api.http.get(api.url("/api/v1/tools")))
        .send()
        .await
        .unwrap();
    let (status, tools) = answer(response).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    // Read-only: `files_write` is not published, and so cannot be called.
    assert!(names.contains(&"files_read"), "{names:?}");
    assert!(!names.contains(&"files_write"), "{names:?}");
    let response = with_token(api.http.post(api.url("/api/v1/tools/files_write/call")))
        .json(&json!({ "path": "new.txt", "content": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer(response).await.0, 404);
    assert!(!fx.data().join("new.txt").exists());
    // The health checks are behind the same guard: a load balancer sends the token too.
    let response = api.http.get(api.url("/health/ready")).send().await.unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn the_openapi_document_takes_each_tools_schema() {
    let fx = Fixture::new();
    let api = Api::start(&fx, &[]).await;
    let (status, doc) = api.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/plugins",
        "/api/v1/plugins/{name}/reload",
        "/api/v1/tools",
        "/api/v1/tools/{name}/call",
        "/api/v1/ask",
        "/api/v1/consensus",
        "/api/v1/batch",
        "/api/v1/events",
        "/health/ready",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
    // One operation per published tool, whose body is the tool's input schema.
    let (_, tools) = api.get("/api/v1/tools").await;
    for tool in tools.as_array().unwrap() {
        let name = tool["name"].as_str().unwrap();
        let op = &paths[&format!("/api/v1/tools/{name}/call")]["post"];
        assert_eq!(op["operationId"], format!("call_{name}"));
        let schema = &op["requestBody"]["content"]["application/json"]["schema"];
        let keys = |s: &Value| -> Vec<String> {
            s["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default()
        };
        assert_eq!(keys(schema), keys(&tool["inputSchema"]), "{name}");
        assert_eq!(
            schema["required"], tool["inputSchema"]["required"],
            "{name}"
        );
        assert_eq!(
            schema["additionalProperties"], tool["inputSchema"]["additionalProperties"],
            "{name}"
        );
        // Every reference resolves inside the document.
        for target in refs(schema) {
            let pointer = target.strip_prefix('#').unwrap();
            assert!(
                doc.pointer(pointer).is_some(),
                "{name}: {target} does not resolve"
            );
        }
        assert!(op["responses"]["400"].is_object(), "{name}");
    }
    // The server drops a `null` optional argument before validating: the document says so.
    let limit = &paths["/api/v1/tools/files_list/call"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"]["properties"]["limit"];
    assert_eq!(limit["anyOf"][1], json!({ "type": "null" }), "{limit}");
}

fn refs(value: &Value) -> Vec<String> {
    match value {
        Value::Object(object) => object
            .iter()
            .flat_map(|(k, v)| match (k.as_str(), v) {
                ("$ref", Value::String(s)) => vec![s.clone()],
                _ => refs(v),
            })
            .collect(),
        Value::Array(items) => items.iter().flat_map(refs).collect(),
        _ => Vec::new(),
    }
}

/// `--no-metrics`: nothing is recorded and `/metrics` says so; the API works as before.
#[tokio::test]
async fn no_metrics_means_no_metrics_endpoint() {
    let fx = Fixture::new();
    let api = Api::start(&fx, &["--no-metrics"]).await;
    let (status, result) = api
        .post("/api/v1/tools/testkit_echo/call", json!({ "text": "hi" }))
        .await;
    assert_eq!(status, 200, "{result}");
    let (status, problem) = api.get("/metrics").await;
    assert_eq!(status, 404, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("--no-metrics"),
        "{problem}"
    );
}

/// `/metrics` counts calls from every face by plugin, tool, face and outcome, never with a
/// name a client made up; Prometheus's own checker (`promtool check metrics`) passes it.
#[tokio::test]
async fn metrics_count_every_face_and_pass_promtool() {
    use rmcp::{
        ServiceExt, model::CallToolRequestParams, transport::StreamableHttpClientTransport,
    };
    let fx = Fixture::new();
    let api = Api::start(&fx, &[]).await;
    for _ in 0..2 {
        let (status, _) = api
            .post("/api/v1/tools/testkit_echo/call", json!({ "text": "hi" }))
            .await;
        assert_eq!(status, 200);
    }
    let (status, _) = api
        .post("/api/v1/tools/made_up_name_4f1/call", json!({}))
        .await;
    assert_eq!(status, 404);
    let (status, _) = api
        .post("/api/v1/tools/testkit_echo/call", json!({ "text": 1 }))
        .await;
    assert_eq!(status, 400);
    // An MCP client over Streamable HTTP.
    let transport = StreamableHttpClientTransport::from_uri(format!("{}/mcp", api.base));
    let client = crate::support::Recorder::default()
        .serve(transport)
        .await
        .expect("initialize over HTTP");
    let result = client
        .call_tool(
            CallToolRequestParams::new("testkit_echo")
                .with_arguments(crate::support::args(json!({ "text": "mcp" }))),
        )
        .await
        .unwrap();
    assert_eq!(crate::support::text(&result), "mcp");

    let response = api.http.get(api.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = response.text().await.unwrap();
    client.cancel().await.unwrap();
    let has = |line: &str| body.lines().any(|l| l == line);
    for line in [
        r#"plugboard_tool_calls_total{plugin="testkit",tool="testkit_echo",face="rest",outcome="ok"} 2"#,
        r#"plugboard_tool_calls_total{plugin="testkit",tool="testkit_echo",face="rest",outcome="invalid_arguments"} 1"#,
        r#"plugboard_tool_calls_total{plugin="testkit",tool="testkit_echo",face="http",outcome="ok"} 1"#,
        r#"plugboard_tool_calls_total{plugin="",tool="",face="rest",outcome="unknown_tool"} 1"#,
        r#"plugboard_plugin_state{plugin="broken",state="failed"} 1"#,
        r#"plugboard_plugin_up{plugin="testkit"} 1"#,
        r#"plugboard_tool_calls_in_flight{face="rest"} 0"#,
        r#"plugboard_tool_call_duration_seconds_count{plugin="testkit",tool="testkit_echo",face="rest"} 3"#,
    ] {
        assert!(has(line), "no `{line}` in:\n{body}");
    }
    assert!(!body.contains("made_up_name_4f1"), "{body}");
    assert!(body.contains("# TYPE plugboard_tool_call_duration_seconds histogram"));
    assert!(body.contains("plugboard_sessions{transport=\"streamable_http\"}"));

    // Prometheus's linter: CI installs it (Debian's prometheus package) and requires it.
    let required = std::env::var("PLUGBOARD_REQUIRE_PROMTOOL").is_ok_and(|v| v == "1");
    let mut promtool = tokio::process::Command::new("promtool");
    promtool
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = match promtool.spawn() {
        Ok(child) => child,
        Err(e) if !required => {
            eprintln!("promtool not run ({e}); CI installs it and requires it");
            return;
        }
        Err(e) => panic!("promtool is required here: {e}"),
    };
    let mut child = child;
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(body.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
