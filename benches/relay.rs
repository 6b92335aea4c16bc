//! What hosting an MCP server through plugboard costs: the same upstream's no-op tool called
//! directly and through plugboard, in the same run.
//!
//! `cargo bench --bench relay` (builds the release binary and the fixture server
//! `tests/fixture/mcp_fixture.rs` in release first). Prints:
//! - stdio upstream: the fixture's `noop` over its stdio, one call at a time (`CALLS`,
//!   default 2,000, after 200 of warm-up), against `fx_noop` through `plugboard serve` on
//!   stdio hosting it as a `kind = "mcp"` plugin: p50/p99 of each and what plugboard adds;
//! - HTTP upstream: `plugboard serve --http` with testkit (its `testkit_noop`) as the
//!   upstream, called over Streamable HTTP directly, and through a second `plugboard serve
//!   --http` that hosts it by `url`: p50/p99 with one client, then calls/s with 50 clients
//!   (3 s warm-up, `SECS` measured, default 10) and the ratio;
//! - RSS added per upstream: a `plugboard serve` hosting 10 fixture servers against one
//!   hosting none, after `initialize` and `tools/list` (the children's own memory not
//!   counted).
//!
//! Targets, printed and not asserted: ≤ +0.15 ms p50 added, ≥ 80% of direct throughput,
//! ≤ 3 MB RSS per upstream.

mod common;
#[path = "common/http_load.rs"]
mod http_load;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::McpStdio;
use serde_json::json;
use tokio::process::Command;

const CLIENTS: usize = 50;
const UPSTREAMS: usize = 10;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The fixture server, built in release beside the binary.
fn fixture_server(bin: &Path) -> PathBuf {
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--release", "--example", "mcp_fixture"])
        .status()
        .expect("cargo build");
    assert!(status.success(), "building the fixture failed");
    bin.parent().unwrap().join("examples/mcp_fixture")
}

/// A home whose plugins are `manifests` (name, text).
fn home(manifests: &[(String, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in manifests {
        let path = dir.path().join("plugins").join(name).join("plugin.toml");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    dir
}

fn fixture_manifest(name: &str, fixture: &Path) -> (String, String) {
    (
        name.to_owned(),
        format!(
            "name = {name:?}\nkind = \"mcp\"\nprefix = {name:?}\n[mcp]\ncommand = {:?}\n",
            fixture.display().to_string()
        ),
    )
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

struct Stats {
    p50_us: f64,
    p99_us: f64,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e6;
    Stats {
        p50_us: at(0.50),
        p99_us: at(0.99),
    }
}

/// `calls` sequential calls of `tool` over stdio, after 200 of warm-up.
async fn stdio_calls(server: &mut McpStdio, tool: &str, calls: usize) -> Stats {
    let message = json!({"method": "tools/call", "params": {"name": tool, "arguments": {}}});
    for _ in 0..200 {
        server.request_line(message.clone()).await;
    }
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let sent = Instant::now();
        let line = server.request_line(message.clone()).await;
        samples.push(sent.elapsed());
        debug_assert!(!line.contains("\"isError\":true"), "{line}");
    }
    stats(samples)
}

/// One HTTP client, `calls` sequential calls.
async fn http_calls(url: &str, params: &'static str, calls: usize) -> Stats {
    let session = http_load::Session::open(url).await.expect("a session");
    for id in 0..200 {
        assert!(session.call(id, params, "ok").await, "{params} failed");
    }
    let mut samples = Vec::with_capacity(calls);
    for id in 0..calls as u64 {
        let sent = Instant::now();
        let ok = session.call(1000 + id, params, "ok").await;
        samples.push(sent.elapsed());
        assert!(ok, "{params} failed");
    }
    stats(samples)
}

fn row(name: &str, s: &Stats) {
    println!(
        "{name:44} p50 {:>8.1} µs   p99 {:>8.1} µs",
        s.p50_us, s.p99_us
    );
}

fn added(through: &Stats, direct: &Stats) -> (f64, f64) {
    (
        through.p50_us - direct.p50_us,
        through.p99_us - direct.p99_us,
    )
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bin = common::binary();
    let fixture = fixture_server(&bin);
    let calls = env_usize("CALLS", 2000);
    let secs = env_usize("SECS", 10) as u64;
    println!(
        "relay: the same upstream's no-op tool, directly and through plugboard ({calls} calls one at a time; {CLIENTS} clients for throughput, {secs} s)\n"
    );

    // stdio upstream.
    let mut direct = McpStdio::start(Command::new(&fixture)).await;
    let direct_stdio = stdio_calls(&mut direct, "noop", calls).await;
    drop(direct);
    let relay_home = home(&[fixture_manifest("fx", &fixture)]);
    let mut through = McpStdio::start(serve(&bin, relay_home.path(), &[])).await;
    let through_stdio = stdio_calls(&mut through, "fx_noop", calls).await;
    drop(through);
    row("stdio upstream, called directly", &direct_stdio);
    row("stdio upstream, through plugboard (stdio)", &through_stdio);
    let (stdio_p50, stdio_p99) = added(&through_stdio, &direct_stdio);
    println!(
        "{:44} p50 {stdio_p50:>+8.1} µs   p99 {stdio_p99:>+8.1} µs\n",
        "added"
    );

    // HTTP upstream: plugboard with testkit, and plugboard hosting it by url.
    let upstream_home = home(&[(
        "testkit".into(),
        "name = \"testkit\"\nkind = \"builtin\"\n".into(),
    )]);
    let (mut upstream, upstream_url) = http_load::plugboard(&bin, upstream_home.path()).await;
    let proxy_home = home(&[(
        "up".into(),
        format!("name = \"up\"\nkind = \"mcp\"\nprefix = \"up\"\n[mcp]\nurl = {upstream_url:?}\n"),
    )]);
    let (mut proxy, proxy_url) = http_load::plugboard(&bin, proxy_home.path()).await;
    const DIRECT: &str = r#"{"name":"testkit_noop","arguments":{}}"#;
    const THROUGH: &str = r#"{"name":"up_testkit_noop","arguments":{}}"#;
    let direct_http = http_calls(&upstream_url, DIRECT, calls).await;
    let through_http = http_calls(&proxy_url, THROUGH, calls).await;
    row("HTTP upstream, called directly", &direct_http);
    row("HTTP upstream, through plugboard (HTTP)", &through_http);
    let (http_p50, http_p99) = added(&through_http, &direct_http);
    println!(
        "{:44} p50 {http_p50:>+8.1} µs   p99 {http_p99:>+8.1} µs\n",
        "added"
    );

    let direct_load = http_load::load(&upstream_url, CLIENTS, (DIRECT, "ok"), secs, None).await;
    let through_load =
        http_load::load(&proxy_url, CLIENTS, (THROUGH, "ok"), secs, proxy.id()).await;
    let ratio = through_load.calls_per_s / direct_load.calls_per_s;
    println!(
        "{CLIENTS} clients, directly          {:>9.0} calls/s ({} errors, p50 {:.0} µs, p99 {:.0} µs)",
        direct_load.calls_per_s, direct_load.errors, direct_load.p50_us, direct_load.p99_us
    );
    println!(
        "{CLIENTS} clients, through plugboard {:>9.0} calls/s ({} errors, p50 {:.0} µs, p99 {:.0} µs) = {:.0}% of direct\n",
        through_load.calls_per_s,
        through_load.errors,
        through_load.p50_us,
        through_load.p99_us,
        ratio * 100.0
    );
    println!(
        "the relaying plugboard's RSS: {:.1} MB idle, {:.1} MB with the {CLIENTS} clients connected\n",
        through_load.idle_kib.unwrap_or(0) as f64 / 1024.0,
        through_load.rss_kib.unwrap_or(0) as f64 / 1024.0
    );
    let _ = proxy.kill().await;
    let _ = upstream.kill().await;

    // RSS per upstream.
    let rss_of = async |manifests: Vec<(String, String)>| {
        let home = home(&manifests);
        let mut server = McpStdio::start(serve(&bin, home.path(), &[])).await;
        let (tools, _) = server.tools().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        (http_load::rss_kib(server.pid()), tools)
    };
    let (none, _) = rss_of(Vec::new()).await;
    let (many, tools) = rss_of(
        (0..UPSTREAMS)
            .map(|i| fixture_manifest(&format!("fx{i}"), &fixture))
            .collect(),
    )
    .await;
    let per = (many as f64 - none as f64) / UPSTREAMS as f64 / 1024.0;
    println!(
        "RSS: no upstream {:.1} MB; {UPSTREAMS} upstreams ({tools} tools) {:.1} MB; {per:.2} MB per upstream\n",
        none as f64 / 1024.0,
        many as f64 / 1024.0
    );

    println!("targets (not asserted):");
    println!(
        "  ≤ +150 µs p50 added: stdio {stdio_p50:+.1} µs — {}, HTTP {http_p50:+.1} µs — {}",
        verdict(stdio_p50 <= 150.0),
        verdict(http_p50 <= 150.0)
    );
    println!(
        "  ≥ 80% of direct throughput: {:.0}% — {}",
        ratio * 100.0,
        verdict(ratio >= 0.8)
    );
    println!(
        "  ≤ 3 MB RSS per upstream: {per:.2} MB — {}",
        verdict(per <= 3.0)
    );
}
