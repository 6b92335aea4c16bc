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
#[path = "common/http_load.rs"]
mod http_load;
use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use http_load::{Measured, WARMUP, announced, load, plugboard};
use tokio::process::{Child, Command};

const CLIENTS: usize = 50;
const EVERYTHING: &str = "node_modules/@modelcontextprotocol/server-everything";

/// The `params` of each server's echo call; both send back "hello".
const PLUGBOARD_ECHO: &str = r#"{"name":"testkit_echo","arguments":{"text":"hello"}}"#;
const EVERYTHING_ECHO: &str = r#"{"name":"echo","arguments":{"message":"hello"}}"#;

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
    let floor = load(
        &floor().await,
        CLIENTS,
        (PLUGBOARD_ECHO, "hello"),
        secs,
        None,
    )
    .await;

    let (mut server, url) = plugboard(bin, home).await;
    let ours = load(&url, CLIENTS, (PLUGBOARD_ECHO, "hello"), secs, server.id()).await;
    server.kill().await.unwrap();

    let theirs = match version {
        Ok(version) => match everything(peers).await {
            Ok((mut server, url)) => {
                let m = load(&url, CLIENTS, (EVERYTHING_ECHO, "hello"), secs, server.id()).await;
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
    let home = common::testkit_home();
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
