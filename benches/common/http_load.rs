//! The HTTP load the throughput and relay benches put on a Streamable HTTP server: clients
//! with their own keep-alive connection and MCP session, calling one tool in a loop.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use reqwest::{
    StatusCode,
    header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue},
};
use serde::Deserialize;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

pub const WARMUP: Duration = Duration::from_secs(3);

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// The part of a JSON-RPC reply that tells a good echo from an error; the rest is skipped.
#[derive(Deserialize)]
struct Reply {
    result: Option<CallResult>,
}

#[derive(Deserialize)]
struct CallResult {
    #[serde(default, rename = "isError")]
    is_error: bool,
    #[serde(default)]
    content: Vec<Text>,
}

#[derive(Deserialize)]
struct Text {
    #[serde(default)]
    text: String,
}

/// True when `json` is a result, not an error, whose content says `expect`.
pub fn echoed(json: &[u8], expect: &str) -> bool {
    serde_json::from_slice::<Reply>(json).is_ok_and(|reply| {
        reply
            .result
            .is_some_and(|r| !r.is_error && r.content.iter().any(|c| c.text.contains(expect)))
    })
}

/// One client: its own connection pool (so its own connection) and its own MCP session.
pub struct Session {
    http: reqwest::Client,
    url: String,
    headers: HeaderMap,
}

impl Session {
    pub async fn open(url: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let init = http
            .post(url)
            .headers(headers.clone())
            .body(INITIALIZE)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let id = init
            .headers()
            .get("mcp-session-id")
            .cloned()
            .ok_or_else(|| format!("initialize: HTTP {} without a session id", init.status()))?;
        init.bytes().await.map_err(|e| e.to_string())?;
        headers.insert("mcp-session-id", id);
        headers.insert(
            "mcp-protocol-version",
            HeaderValue::from_static("2025-11-25"),
        );
        let ack = http
            .post(url)
            .headers(headers.clone())
            .body(INITIALIZED)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !ack.status().is_success() {
            return Err(format!("notifications/initialized: HTTP {}", ack.status()));
        }
        ack.bytes().await.map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            url: url.to_owned(),
            headers,
        })
    }

    /// One `tools/call`: true when it came back 200 with an echo, as JSON or as SSE events.
    pub async fn call(&self, id: u64, params: &str, expect: &str) -> bool {
        let body =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{params}}}"#);
        let request = self.http.post(&self.url).headers(self.headers.clone());
        let Ok(reply) = request.body(body).send().await else {
            return false;
        };
        if reply.status() != StatusCode::OK {
            return false;
        }
        let sse = reply
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let Ok(bytes) = reply.bytes().await else {
            return false;
        };
        if !sse {
            return echoed(&bytes, expect);
        }
        // Each event's JSON is on one `data:` line; server-everything opens the stream with an
        // empty priming event before the reply.
        bytes
            .split(|&b| b == b'\n')
            .filter_map(|line| line.strip_prefix(b"data:"))
            .any(|data| echoed(data.trim_ascii(), expect))
    }

    /// Call until `end`; keep the latency of the calls made wholly inside `start..end`, and
    /// count every failed call. The session comes back so that it stays connected.
    pub async fn run(
        self,
        params: &'static str,
        expect: &'static str,
        start: Instant,
        end: Instant,
    ) -> (Tally, Self) {
        let mut tally = Tally::default();
        for id in 1.. {
            let sent = Instant::now();
            if sent >= end {
                break;
            }
            let ok = self.call(id, params, expect).await;
            let done = Instant::now();
            if !ok {
                tally.errors += 1;
            } else if sent >= start && done <= end {
                tally.samples.push(done - sent);
            }
        }
        (tally, self)
    }
}

#[derive(Default)]
pub struct Tally {
    pub samples: Vec<Duration>,
    pub errors: u64,
}

/// One row of the table.
pub struct Measured {
    pub calls_per_s: f64,
    pub errors: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub rss_kib: Option<u64>,
    pub idle_kib: Option<u64>,
}

/// Open `clients` sessions, load `url` with them (each calling with `params`, expecting a
/// result that says `expect`) for the warm-up and `secs`, and read the RSS of `pid` (the
/// server) before the first session and while all of them are still connected.
pub async fn load(
    url: &str,
    clients: usize,
    (params, expect): (&'static str, &'static str),
    secs: u64,
    pid: Option<u32>,
) -> Measured {
    let idle_kib = pid.map(rss_kib);
    let opened = futures::future::join_all((0..clients).map(|_| Session::open(url))).await;
    let mut errors = 0;
    let mut tasks = Vec::new();
    let start = Instant::now() + WARMUP;
    let end = start + Duration::from_secs(secs);
    for session in opened {
        match session {
            Ok(session) => tasks.push(tokio::spawn(session.run(params, expect, start, end))),
            Err(e) => {
                eprintln!("session failed: {e}");
                errors += 1;
            }
        }
    }
    let mut samples = Vec::new();
    let mut sessions = Vec::new();
    for task in tasks {
        let (tally, session) = task.await.unwrap();
        samples.extend(tally.samples);
        errors += tally.errors;
        sessions.push(session);
    }
    let rss_kib = pid.map(rss_kib);
    drop(sessions);
    samples.sort();
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * q).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
    };
    Measured {
        calls_per_s: samples.len() as f64 / secs as f64,
        errors,
        p50_us: at(0.50),
        p99_us: at(0.99),
        rss_kib,
        idle_kib,
    }
}

pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Wait for the stderr line of `child` containing `marker` and return what follows it; keep
/// draining stderr afterwards so that the child never blocks on it.
pub async fn announced(child: &mut Child, marker: &str) -> Result<String, String> {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split(marker).nth(1) {
                return Ok(rest.trim().to_owned());
            }
            eprintln!("  | {line}");
        }
        Err("exited before announcing its address".to_owned())
    })
    .await
    .map_err(|_| "did not announce its address within 30 s".to_owned())??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(found)
}

pub async fn plugboard(bin: &Path, home: &Path) -> (Child, String) {
    plugboard_with(bin, home, &[]).await
}

/// [`plugboard`] with more `serve` arguments.
pub async fn plugboard_with(bin: &Path, home: &Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(bin)
        .current_dir(home)
        .env("PLUGBOARD_PLUGINS_DIR", home.join("plugins"))
        .env("PLUGBOARD_LOG", "error")
        .args(["serve", "--http", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let rest = announced(&mut child, "listening on ").await.unwrap();
    let url = format!("{}/mcp", rest.split_whitespace().next().unwrap());
    (child, url)
}
