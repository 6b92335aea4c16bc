//! Core latency and footprint, each against a floor measured in the same run.
//!
//! `cargo bench --bench latency` (builds the release binary first). Prints p50/p99 in µs and
//! the ratio to the floor:
//! - pipe floor: one JSON-RPC line echoed by `cat` over a pipe;
//! - stdio: `plugboard serve` answering `tools/call testkit_noop` over the same kind of pipe;
//! - HTTP floor: a bare axum handler (own thread and runtime) echoing the same JSON body;
//! - HTTP: `plugboard serve --http` answering the same call (Streamable HTTP, a 2025-11-25
//!   session), and the legacy SSE transport (POST /message, answer on the GET /sse stream);
//!   one keep-alive connection, written and read raw so the client costs next to nothing;
//! - start-up: exec to answered `initialize` with every shipped plugin configured (floor: exec
//!   of `cat` to its first echo);
//! - idle RSS of the server after `initialize`, next to `cat`'s, and again after its
//!   `tools/list` and the 2,100 calls.
//!
//! With `PLUGBOARD_BASELINE_BIN=/path/to/an/older/plugboard` the same rows are measured for
//! that binary too, in the same run, and each is compared with this build's (before/after a
//! change, within noise or not).

mod common;
use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines},
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

/// Every shipped manifest (plugins/*/plugin.toml), with testkit (disabled as shipped) enabled
/// for its no-op tool.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
    for entry in std::fs::read_dir(shipped).unwrap() {
        let from = entry.unwrap().path().join("plugin.toml");
        let name = from.parent().unwrap().file_name().unwrap().to_owned();
        let to = dir.path().join("plugins").join(name).join("plugin.toml");
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let text = std::fs::read_to_string(&from).unwrap();
        std::fs::write(to, text.replace("enabled = false", "enabled = true")).unwrap();
    }
    dir
}

/// `plugboard serve` with every plugin configured (keys set, services pointed at a closed
/// port: no plugin makes a request before a tool is called), so every plugin starts.
fn serve(bin: &Path, home: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(home)
        .env("PLUGBOARD_PLUGINS_DIR", home.join("plugins"))
        .env("PLUGBOARD_LOG", "error")
        .env("PLUGBOARD_FILES_ROOTS", home)
        .env("GITHUB_TOKEN", "ghp_bench")
        .env("GITHUB_API_URL", "http://127.0.0.1:9")
        .env("AIRTABLE_API_KEY", "patBENCH")
        .env("AIRTABLE_BASE_URL", "http://127.0.0.1:9")
        .env("OPENAI_API_KEY", "sk-bench")
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .env("ANTHROPIC_API_KEY", "sk-ant-bench-key")
        .env("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
        .env("GEMINI_API_KEY", "gemini-bench-key")
        .env("GEMINI_BASE_URL", "http://127.0.0.1:9")
        .env("DEEPSEEK_API_KEY", "deepseek-bench-key")
        .env("DEEPSEEK_BASE_URL", "http://127.0.0.1:9")
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

async fn stdio_noop(bin: &Path, home: &Path) -> (Stats, u64, u64) {
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
    // What a client leaves behind: its tools/list, and the calls above.
    let list = server
        .round_trip(r#"{"jsonrpc":"2.0","id":"list","method":"tools/list"}"#)
        .await;
    assert!(list.contains("testkit_noop"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    (stats(samples), rss, server.rss_kib())
}

/// A keep-alive HTTP/1.1 connection that writes each request in one write and reads the
/// answer with as little work as possible (status, content-length or chunks): the cheapest
/// client, so that what the HTTP rows measure is the server. A general-purpose client
/// (reqwest) adds ~60 µs per request on this kind of machine.
struct Raw {
    host: String,
    stream: BufReader<tokio::net::TcpStream>,
}

impl Raw {
    async fn connect(base: &str) -> Self {
        let host = base
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let stream = tokio::net::TcpStream::connect(&host).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            host,
            stream: BufReader::new(stream),
        }
    }

    async fn send(&mut self, method: &str, path: &str, headers: &str, body: &str) {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n{headers}\r\n{body}",
            self.host,
            body.len()
        );
        self.stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
    }

    /// Status line and headers (lower-case names).
    async fn head(&mut self) -> (u16, Vec<(String, String)>) {
        let mut line = String::new();
        self.stream.read_line(&mut line).await.unwrap();
        let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.unwrap();
            let Some((name, value)) = line.trim_end().split_once(':') else {
                break;
            };
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        (status, headers)
    }

    /// One chunk of a chunked body (empty at its end).
    async fn chunk(&mut self) -> Vec<u8> {
        let mut line = String::new();
        self.stream.read_line(&mut line).await.unwrap();
        let size = usize::from_str_radix(line.trim(), 16).unwrap();
        let mut data = vec![0; size + 2];
        self.stream.read_exact(&mut data).await.unwrap();
        data.truncate(size);
        data
    }

    /// Send a request and read the whole answer.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &str,
        body: &str,
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        self.send(method, path, headers, body).await;
        let (status, head) = self.head().await;
        let length = head
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse::<usize>().unwrap());
        let body = match length {
            Some(n) => {
                let mut data = vec![0; n];
                self.stream.read_exact(&mut data).await.unwrap();
                data
            }
            None => {
                let mut data = Vec::new();
                loop {
                    let chunk = self.chunk().await;
                    if chunk.is_empty() {
                        break;
                    }
                    data.extend_from_slice(&chunk);
                }
                data
            }
        };
        (status, head, body)
    }
}

/// Start `plugboard serve --http 127.0.0.1:0`; the child and its base URL.
async fn serve_http(bin: &Path, home: &Path) -> (Child, String) {
    common::serve_http(&mut serve(bin, home, &["--http", "127.0.0.1:0"])).await
}

/// Round trips measured: `CALLS` of them, after 100 that warm up.
struct Samples(Vec<Duration>);

impl Samples {
    fn new() -> Self {
        Self(Vec::with_capacity(CALLS))
    }

    fn rounds() -> std::ops::Range<usize> {
        0..CALLS + 100
    }

    fn add(&mut self, round: usize, started: Instant) {
        if round >= 100 {
            self.0.push(started.elapsed());
        }
    }
}

async fn http_floor() -> Stats {
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|body: String| async move { body }),
    );
    // On its own thread and runtime, as a server process would be, apart from the client's.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap()
            })
    });
    let mut client = Raw::connect(&format!("http://{addr}")).await;
    let body = call_line(1);
    let mut samples = Samples::new();
    for i in Samples::rounds() {
        let t = Instant::now();
        let (status, _, _) = client.request("POST", "/mcp", "", &body).await;
        samples.add(i, t);
        assert_eq!(status, 200);
    }
    stats(samples.0)
}

async fn http_noop(bin: &Path, home: &Path) -> Stats {
    let (_child, url) = serve_http(bin, home).await;
    let mut client = Raw::connect(&url).await;
    let (status, head, _) = client.request("POST", "/mcp", "", INITIALIZE).await;
    assert_eq!(status, 200);
    let session = head
        .iter()
        .find(|(n, _)| n == "mcp-session-id")
        .expect("session id")
        .1
        .clone();
    let headers = format!("Mcp-Session-Id: {session}\r\nMcp-Protocol-Version: 2025-11-25\r\n");
    client
        .request(
            "POST",
            "/mcp",
            &headers,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        )
        .await;
    let mut samples = Samples::new();
    for i in Samples::rounds() {
        let body = call_line(i + 1);
        let t = Instant::now();
        let (status, _, reply) = client.request("POST", "/mcp", &headers, &body).await;
        samples.add(i, t);
        assert_eq!(status, 200);
        debug_assert!(String::from_utf8_lossy(&reply).contains("\"ok\""));
    }
    stats(samples.0)
}

/// The legacy HTTP+SSE transport: answers arrive on the `GET /sse` stream, requests go to
/// `POST /message?sessionId=…` (202) on a second keep-alive connection.
async fn sse_noop(bin: &Path, home: &Path) -> Stats {
    let (_child, url) = serve_http(bin, home).await;
    let mut stream = Raw::connect(&url).await;
    stream.send("GET", "/sse", "", "").await;
    let (status, _) = stream.head().await;
    assert_eq!(status, 200);
    let mut pending = String::new();
    // The next whole event's data from the stream.
    async fn event(stream: &mut Raw, pending: &mut String) -> String {
        loop {
            if let Some(end) = pending.find("\n\n") {
                let event: String = pending.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) {
                    return data.trim().to_owned();
                }
                continue;
            }
            let chunk = stream.chunk().await;
            pending.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        }
    }
    let endpoint = event(&mut stream, &mut pending).await;
    let mut posts = Raw::connect(&url).await;
    let (status, _, _) = posts.request("POST", &endpoint, "", INITIALIZE).await;
    assert_eq!(status, 202);
    assert!(event(&mut stream, &mut pending).await.contains("plugboard"));
    posts
        .request(
            "POST",
            &endpoint,
            "",
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        )
        .await;
    let mut samples = Samples::new();
    for i in Samples::rounds() {
        let body = call_line(i + 1);
        let t = Instant::now();
        let (status, _, _) = posts.request("POST", &endpoint, "", &body).await;
        let reply = event(&mut stream, &mut pending).await;
        samples.add(i, t);
        assert_eq!(status, 202);
        debug_assert!(reply.contains("\"ok\""));
    }
    stats(samples.0)
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
        println!(
            "plugboard core latency ({CALLS} calls each, {STARTS} starts; every shipped plugin configured; floors measured in this run)\n"
        );
        let pipe = pipe_floor().await;
        let (stdio, rss, used_rss) = stdio_noop(&bin, home.path()).await;
        let http_base = http_floor().await;
        let http = http_noop(&bin, home.path()).await;
        let sse = sse_noop(&bin, home.path()).await;
        let (start_floor, start, cat_rss) = startup(&bin, home.path()).await;
        row("pipe echo (floor)", &pipe, &pipe);
        row("stdio tools/call noop", &stdio, &pipe);
        row("HTTP echo, bare axum (floor)", &http_base, &http_base);
        row("HTTP tools/call noop", &http, &http_base);
        row("legacy SSE tools/call noop", &sse, &http_base);
        row("  … against Streamable HTTP", &sse, &http);
        row("exec → echo, cat (floor)", &start_floor, &start_floor);
        row("exec → initialize answered", &start, &start_floor);
        println!(
            "{:34} {} KiB (cat: {} KiB, ×{:.1})",
            "idle RSS after initialize",
            rss,
            cat_rss,
            rss as f64 / cat_rss.max(1) as f64
        );
        println!(
            "{:34} {} KiB",
            "RSS after tools/list, 2,100 calls", used_rss
        );
        if let Some(baseline) = std::env::var_os("PLUGBOARD_BASELINE_BIN") {
            let baseline = std::path::PathBuf::from(baseline);
            println!("\nbaseline {} (same run; ratio = this build / baseline)\n", baseline.display());
            let (b_stdio, b_rss, b_used) = stdio_noop(&baseline, home.path()).await;
            let b_http = http_noop(&baseline, home.path()).await;
            let b_sse = sse_noop(&baseline, home.path()).await;
            let (_, b_start, _) = startup(&baseline, home.path()).await;
            row("baseline stdio tools/call noop", &b_stdio, &pipe);
            row("  this build against it", &stdio, &b_stdio);
            row("baseline HTTP tools/call noop", &b_http, &http_base);
            row("  this build against it", &http, &b_http);
            row("baseline legacy SSE noop", &b_sse, &http_base);
            row("  this build against it", &sse, &b_sse);
            row("baseline exec → initialize", &b_start, &start_floor);
            row("  this build against it", &start, &b_start);
            println!(
                "{:34} {} KiB (this build ×{:.2}); after calls {} KiB (×{:.2})",
                "baseline idle RSS",
                b_rss,
                rss as f64 / b_rss.max(1) as f64,
                b_used,
                used_rss as f64 / b_used.max(1) as f64
            );
        }
    });
}
