//! HTTP throughput under 50 concurrent clients, against a floor and the Node reference server,
//! all measured the same way in the same run.
//!
//! `cargo bench --bench throughput` (builds the release binary first). 50 clients, each with its
//! own keep-alive HTTP/1.1 connection and MCP session (initialize + initialized), call an echo
//! tool in a loop, one call in flight each: 3 s of warm-up, then 10 s measured (`SECS=…` to
//! change). The load generator runs on 2 tokio worker threads and shares the machine's cores
//! with the server. Prints calls/s, errors (warm-up included), p50/p99 per call and plugboard's
//! calls/s over each row's:
//! - floor: an in-process axum handler answering a fixed JSON-RPC result — what the load
//!   generator itself can drive on this machine;
//! - plugboard: `plugboard serve --http` answering `tools/call testkit_echo`;
//! - server-everything: `@modelcontextprotocol/server-everything` (pinned in
//!   benches/peers/package.json) in Streamable HTTP mode on the system Node, answering
//!   `tools/call echo`.
//!
//! Then each server's RSS with the 50 clients still connected (and idle, before the first
//! session), and the targets, printed next to the figures and not asserted: plugboard
//! ≥ 10,000 calls/s with 0 errors, ≥ 3× the calls/s of server-everything, ≤ 25 MB RSS.
//! The peer is installed by running `benches/peers/install`, a no-op once target/peers/ holds
//! the pinned lock file's install; when that fails, the comparison is skipped with the reason.

mod common;
use std::{
    path::{Path, PathBuf},
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

const CLIENTS: usize = 50;
const WARMUP: Duration = Duration::from_secs(3);
const EVERYTHING: &str = "node_modules/@modelcontextprotocol/server-everything";

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// The `params` of each server's echo call; both send back "hello".
const PLUGBOARD_ECHO: &str = r#"{"name":"testkit_echo","arguments":{"text":"hello"}}"#;
const EVERYTHING_ECHO: &str = r#"{"name":"echo","arguments":{"message":"hello"}}"#;

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

/// True when `json` is a result, not an error, whose content echoes "hello".
fn echoed(json: &[u8]) -> bool {
    serde_json::from_slice::<Reply>(json).is_ok_and(|reply| {
        reply
            .result
            .is_some_and(|r| !r.is_error && r.content.iter().any(|c| c.text.contains("hello")))
    })
}

/// One client: its own connection pool (so its own connection) and its own MCP session.
struct Session {
    http: reqwest::Client,
    url: String,
    headers: HeaderMap,
}

impl Session {
    async fn open(url: &str) -> Result<Self, String> {
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
    async fn call(&self, id: u64, params: &str) -> bool {
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
            return echoed(&bytes);
        }
        // Each event's JSON is on one `data:` line; server-everything opens the stream with an
        // empty priming event before the reply.
        bytes
            .split(|&b| b == b'\n')
            .filter_map(|line| line.strip_prefix(b"data:"))
            .any(|data| echoed(data.trim_ascii()))
    }

    /// Call until `end`; keep the latency of the calls made wholly inside `start..end`, and
    /// count every failed call. The session comes back so that it stays connected.
    async fn run(self, params: &'static str, start: Instant, end: Instant) -> (Tally, Self) {
        let mut tally = Tally::default();
        for id in 1.. {
            let sent = Instant::now();
            if sent >= end {
                break;
            }
            let ok = self.call(id, params).await;
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
struct Tally {
    samples: Vec<Duration>,
    errors: u64,
}

/// One row of the table.
struct Measured {
    calls_per_s: f64,
    errors: u64,
    p50_us: f64,
    p99_us: f64,
    rss_kib: Option<u64>,
    idle_kib: Option<u64>,
}

/// Open `CLIENTS` sessions, load `url` with them for the warm-up and `secs`, and read the RSS of
/// `pid` (the server) before the first session and while all of them are still connected.
async fn load(url: &str, params: &'static str, secs: u64, pid: Option<u32>) -> Measured {
    let idle_kib = pid.map(rss_kib);
    let opened = futures::future::join_all((0..CLIENTS).map(|_| Session::open(url))).await;
    let mut errors = 0;
    let mut tasks = Vec::new();
    let start = Instant::now() + WARMUP;
    let end = start + Duration::from_secs(secs);
    for session in opened {
        match session {
            Ok(session) => tasks.push(tokio::spawn(session.run(params, start, end))),
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

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The floor: axum answering every POST with the same JSON-RPC result and session id.
async fn floor() -> String {
    const REPLY: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hello"}],"isError":false}}"#;
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|_body: axum::body::Bytes| async {
            (
                [
                    ("content-type", "application/json"),
                    ("mcp-session-id", "floor"),
                ],
                REPLY,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/mcp")
}

/// Wait for the stderr line of `child` containing `marker` and return what follows it; keep
/// draining stderr afterwards so that the child never blocks on it.
async fn announced(child: &mut Child, marker: &str) -> Result<String, String> {
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

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("plugins/testkit/plugin.toml");
    std::fs::create_dir_all(manifest.parent().unwrap()).unwrap();
    std::fs::write(manifest, "name = \"testkit\"\nkind = \"builtin\"\n").unwrap();
    dir
}

async fn plugboard(bin: &Path, home: &Path) -> (Child, String) {
    let mut child = Command::new(bin)
        .current_dir(home)
        .env("PLUGBOARD_PLUGINS_DIR", home.join("plugins"))
        .env("PLUGBOARD_LOG", "error")
        .args(["serve", "--http", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let rest = announced(&mut child, "listening on ").await.unwrap();
    let url = format!("{}/mcp", rest.split_whitespace().next().unwrap());
    (child, url)
}

/// Install server-everything if needed (the script is a no-op when target/peers/ matches the
/// lock file) and read the version that is installed.
fn install_everything(peers: &Path) -> Result<String, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/install");
    let status = std::process::Command::new(&script)
        .arg(peers)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !status.success() {
        return Err(format!(
            "benches/peers/install failed ({status}; see above)"
        ));
    }
    let manifest = std::fs::read_to_string(peers.join(EVERYTHING).join("package.json"))
        .map_err(|e| format!("installed package.json: {e}"))?;
    let manifest: serde_json::Value = serde_json::from_str(&manifest).map_err(|e| e.to_string())?;
    Ok(manifest["version"].as_str().unwrap_or("?").to_owned())
}

/// server-everything in Streamable HTTP mode on a free port (it takes one from `PORT` and
/// listens on all interfaces). Its stdout, a line per request, goes nowhere.
async fn everything(peers: &Path) -> Result<(Child, String), String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let mut child = Command::new("node")
        .arg(peers.join(EVERYTHING).join("dist/index.js"))
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("node: {e}"))?;
    announced(&mut child, "listening on port").await?;
    Ok((child, format!("http://127.0.0.1:{port}/mcp")))
}

/// 12345.6 → "12,346".
fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn row(name: &str, m: &Measured, ours: &Measured) {
    println!(
        "{name:30} {:>9} {:>7} {:>9} {:>9} {:>12.2}",
        thousands(m.calls_per_s),
        m.errors,
        thousands(m.p50_us),
        thousands(m.p99_us),
        ours.calls_per_s / m.calls_per_s
    );
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// Every row, measured one after the other on the same runtime.
async fn measure(
    bin: &Path,
    home: &Path,
    peers: &Path,
    version: Result<String, String>,
    secs: u64,
) -> (Measured, Measured, Result<(String, Measured), String>) {
    let floor = load(&floor().await, PLUGBOARD_ECHO, secs, None).await;

    let (mut server, url) = plugboard(bin, home).await;
    let ours = load(&url, PLUGBOARD_ECHO, secs, server.id()).await;
    server.kill().await.unwrap();

    let theirs = match version {
        Ok(version) => match everything(peers).await {
            Ok((mut server, url)) => {
                let m = load(&url, EVERYTHING_ECHO, secs, server.id()).await;
                server.kill().await.unwrap();
                Ok((version, m))
            }
            Err(e) => Err(format!("server-everything {version} did not start: {e}")),
        },
        Err(e) => Err(e),
    };
    (floor, ours, theirs)
}

fn report(floor: &Measured, ours: &Measured, theirs: &Result<(String, Measured), String>) {
    println!(
        "{:30} {:>9} {:>7} {:>9} {:>9} {:>12}",
        "server", "calls/s", "errors", "p50 µs", "p99 µs", "plugboard ×"
    );
    row("floor (axum echo, in-process)", floor, ours);
    row("plugboard testkit_echo", ours, ours);
    match theirs {
        Ok((version, m)) => row(&format!("server-everything {version}"), m, ours),
        Err(e) => println!("{:30} skipped: {e}", "server-everything"),
    }

    let mb = |kib: Option<u64>| kib.unwrap_or(0) as f64 * 1024.0 / 1e6;
    let ours_mb = mb(ours.rss_kib);
    let idle = mb(ours.idle_kib);
    print!("\nRSS with {CLIENTS} clients connected: ");
    print!("plugboard {ours_mb:.1} MB (idle {idle:.1} MB)");
    match theirs {
        Ok((_, m)) => println!(
            ", server-everything {:.1} MB (idle {:.1} MB)",
            mb(m.rss_kib),
            mb(m.idle_kib)
        ),
        Err(_) => println!(),
    }

    println!("\ntargets (not asserted):");
    println!(
        "  plugboard ≥ 10,000 calls/s with 0 errors: {} calls/s, {} errors — {}",
        thousands(ours.calls_per_s),
        ours.errors,
        verdict(ours.calls_per_s >= 10_000.0 && ours.errors == 0)
    );
    match theirs {
        Ok((_, m)) => {
            let ratio = ours.calls_per_s / m.calls_per_s;
            let met = verdict(ratio >= 3.0);
            println!("  plugboard ≥ 3× server-everything: ×{ratio:.2} — {met}");
        }
        Err(_) => println!("  plugboard ≥ 3× server-everything: not measured (skipped)"),
    }
    println!(
        "  plugboard RSS ≤ 25 MB with {CLIENTS} clients: {ours_mb:.1} MB — {}",
        verdict(ours_mb <= 25.0)
    );
}

fn main() {
    let bin = common::binary();
    let peers: PathBuf = bin.parent().unwrap().parent().unwrap().join("peers");
    let version = install_everything(&peers);
    let secs: u64 = std::env::var("SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let home = fixture();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "HTTP throughput: {CLIENTS} clients, one call in flight each, {}s warm-up + {secs}s \
         measured ({} cores; load generator on 2 tokio threads; floor measured in this run)\n",
        WARMUP.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let (floor, ours, theirs) = rt.block_on(measure(&bin, home.path(), &peers, version, secs));
    report(&floor, &ours, &theirs);
}
