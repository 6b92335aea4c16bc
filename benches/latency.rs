//! Core latency and footprint, each against a floor measured in the same run.
//!
//! `cargo bench --bench latency` (builds the release binary first). Prints p50/p99 in µs and
//! the ratio to the floor:
//! - pipe floor: one JSON-RPC line echoed by `cat` over a pipe;
//! - stdio: `plugboard serve` answering `tools/call testkit_noop` over the same kind of pipe;
//! - HTTP floor: an in-process axum handler echoing the same JSON body, one keep-alive client;
//! - HTTP: `plugboard serve --http` answering the same call, one keep-alive client;
//! - start-up: exec to answered `initialize` (floor: exec of `cat` to its first echo);
//! - idle RSS of the server after `initialize`, next to `cat`'s.

mod common;
use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

const CALLS: usize = 2000;
const STARTS: usize = 30;

struct Pipe {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Pipe {
    fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            stdin,
            stdout,
        }
    }

    async fn round_trip(&mut self, line: &str) -> String {
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.write_all(b"\n").await.unwrap();
        self.stdin.flush().await.unwrap();
        self.stdout
            .next_line()
            .await
            .unwrap()
            .expect("a reply line")
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id().unwrap()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("plugins/testkit/plugin.toml");
    std::fs::create_dir_all(manifest.parent().unwrap()).unwrap();
    std::fs::write(manifest, "name = \"testkit\"\nkind = \"builtin\"\n").unwrap();
    dir
}

fn serve(bin: &Path, home: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(home)
        .env("PLUGBOARD_PLUGINS_DIR", home.join("plugins"))
        .env("PLUGBOARD_LOG", "error")
        .arg("serve")
        .args(extra);
    cmd
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}"#;

fn call_line(id: usize) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"testkit_noop","arguments":{}}}).to_string()
}

struct Stats {
    p50: f64,
    p99: f64,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e6;
    Stats {
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn row(name: &str, s: &Stats, floor: &Stats) {
    println!(
        "{name:34} p50 {:>9.1} µs   p99 {:>9.1} µs   ×{:>6.2} p50 / ×{:>6.2} p99 of floor",
        s.p50,
        s.p99,
        s.p50 / floor.p50,
        s.p99 / floor.p99
    );
}

async fn pipe_floor() -> Stats {
    let mut cat = Pipe::spawn(&mut Command::new("cat"));
    let line = call_line(1);
    for _ in 0..100 {
        cat.round_trip(&line).await;
    }
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        cat.round_trip(&line).await;
        samples.push(t.elapsed());
    }
    stats(samples)
}

async fn stdio_noop(bin: &Path, home: &Path) -> (Stats, u64) {
    let mut server = Pipe::spawn(&mut serve(bin, home, &[]));
    let init: Value = serde_json::from_str(&server.round_trip(INITIALIZE).await).unwrap();
    assert_eq!(init["result"]["serverInfo"]["name"], "plugboard");
    server
        .stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss = server.rss_kib();
    for i in 0..100 {
        server.round_trip(&call_line(i)).await;
    }
    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let line = call_line(1000 + i);
        let t = Instant::now();
        let reply = server.round_trip(&line).await;
        samples.push(t.elapsed());
        debug_assert!(reply.contains("\"ok\""));
    }
    (stats(samples), rss)
}

async fn http_floor() -> Stats {
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|body: String| async move { body }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let url = format!("http://{addr}/mcp");
    let body = call_line(1);
    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..CALLS + 100 {
        let t = Instant::now();
        client
            .post(&url)
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        if i >= 100 {
            samples.push(t.elapsed());
        }
    }
    stats(samples)
}

async fn http_noop(bin: &Path, home: &Path) -> Stats {
    let mut child = serve(bin, home, &["--http", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("server announces its address");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break format!("{}/mcp", rest.split_whitespace().next().unwrap());
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let post = |body: String| {
        client
            .post(&url)
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json")
            .body(body)
    };
    let init = post(INITIALIZE.to_owned()).send().await.unwrap();
    let session = init
        .headers()
        .get("mcp-session-id")
        .expect("session id")
        .to_str()
        .unwrap()
        .to_owned();
    init.bytes().await.unwrap();
    let with_session = |body: String| {
        post(body)
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
    };
    with_session(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut samples = Vec::with_capacity(CALLS);
    for i in 0..CALLS + 100 {
        let body = call_line(i + 1);
        let t = Instant::now();
        let reply = with_session(body)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        if i >= 100 {
            samples.push(t.elapsed());
        }
        debug_assert!(String::from_utf8_lossy(&reply).contains("\"ok\""));
    }
    stats(samples)
}

async fn startup(bin: &Path, home: &Path) -> (Stats, Stats, u64) {
    let mut floor = Vec::new();
    let mut ours = Vec::new();
    let mut cat_rss = 0;
    for _ in 0..STARTS {
        let t = Instant::now();
        let mut cat = Pipe::spawn(&mut Command::new("cat"));
        cat.round_trip(INITIALIZE).await;
        floor.push(t.elapsed());
        cat_rss = cat.rss_kib();

        let t = Instant::now();
        let mut server = Pipe::spawn(&mut serve(bin, home, &[]));
        let reply = server.round_trip(INITIALIZE).await;
        ours.push(t.elapsed());
        assert!(reply.contains("plugboard"));
    }
    (stats(floor), stats(ours), cat_rss)
}

fn main() {
    let bin = common::binary();
    let home = fixture();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("plugboard core latency ({CALLS} calls each, {STARTS} starts; floors measured in this run)\n");
        let pipe = pipe_floor().await;
        let (stdio, rss) = stdio_noop(&bin, home.path()).await;
        let http_base = http_floor().await;
        let http = http_noop(&bin, home.path()).await;
        let (start_floor, start, cat_rss) = startup(&bin, home.path()).await;
        row("pipe echo (floor)", &pipe, &pipe);
        row("stdio tools/call noop", &stdio, &pipe);
        row("HTTP echo, axum in-process (floor)", &http_base, &http_base);
        row("HTTP tools/call noop", &http, &http_base);
        row("  … same, against the pipe floor", &http, &pipe);
        row("exec → echo, cat (floor)", &start_floor, &start_floor);
        row("exec → initialize answered", &start, &start_floor);
        println!("{:34} {} KiB (cat: {} KiB, ×{:.1})", "idle RSS after initialize", rss, cat_rss, rss as f64 / cat_rss.max(1) as f64);
    });
}
