//! Soak: many clients for a long time, with everything a real fleet of clients does, on every
//! HTTP transport; the server must end as it started.
//!
//! `cargo bench --bench soak` (builds the release binary first). One `plugboard serve --http`
//! serves, in turn, 50 rmcp clients × `SOAK_CALLS` calls each (default 10,000) over Streamable
//! HTTP with sessions (2025-11-25), Streamable HTTP stateless (2026-07-28), and legacy SSE.
//! Each client's calls mix, per hundred: 90 fast calls (`testkit_echo`, checked), 5 slow ones
//! with progress (`testkit_slow`, a progress token sent), 3 cancelled mid-call
//! (`notifications/cancelled` after 15 ms), and 2 disconnects mid-call (a second client that
//! starts a slow call and goes away; at most `SOAK_DISCONNECTS` per client, default 4).
//!
//! Prints per transport: calls, errors (a call that failed or answered wrong), cancellations,
//! disconnects, p50/p99 of the fast calls, and the server's RSS after warm-up (the first tenth
//! of the calls) and at the end (the target: within 10%). Then, once every client is gone,
//! what the server's own `/health` counts: sessions open (target 0) and tasks alive against the
//! idle server's before the run (target: no more). Figures are printed, not asserted.

mod common;
#[path = "../tests/mcp/sse_client.rs"]
mod sse_client;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use rmcp::{
    ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt,
    model::{
        CallToolRequestParams, ClientRequest, NumberOrString, ProgressToken, ProtocolVersion,
        RequestMetaObject,
    },
    service::{PeerRequestOptions, RunningService},
    transport::StreamableHttpClientTransport,
};
use serde_json::{Value, json};
use tokio::process::Command;

const CLIENTS: usize = 50;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Session,
    Stateless,
    LegacySse,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Session => "Streamable HTTP, sessions (2025-11-25)",
            Kind::Stateless => "Streamable HTTP, stateless (2026-07-28)",
            Kind::LegacySse => "legacy SSE (2024-11-05)",
        }
    }
}

type Client = RunningService<RoleClient, ()>;

async fn connect(kind: Kind, url: &str) -> Result<Client, String> {
    let mcp = format!("{url}/mcp");
    match kind {
        Kind::Session => {
            ().serve(StreamableHttpClientTransport::from_uri(mcp))
                .await
                .map_err(|e| e.to_string())
        }
        Kind::Stateless => ()
            .serve_with_lifecycle(
                StreamableHttpClientTransport::from_uri(mcp),
                ClientLifecycleMode::Discover {
                    preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                },
            )
            .await
            .map_err(|e| e.to_string()),
        Kind::LegacySse => {
            ().serve(sse_client::connect(url).await)
                .await
                .map_err(|e| e.to_string())
        }
    }
}

fn call(name: &'static str, args: Value) -> CallToolRequestParams {
    CallToolRequestParams::new(name).with_arguments(args.as_object().unwrap().clone())
}

#[derive(Default)]
struct Stats {
    calls: AtomicUsize,
    errors: AtomicUsize,
    cancels: AtomicUsize,
    disconnects: AtomicUsize,
    fast: Mutex<Vec<Duration>>,
    first_errors: Mutex<Vec<String>>,
}

impl Stats {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().unwrap();
        if first.len() < 5 {
            first.push(what);
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn one_client(kind: Kind, url: String, calls: usize, stats: Arc<Stats>, seed: usize) {
    let max_disconnects = env_usize("SOAK_DISCONNECTS", 4);
    let client = match connect(kind, &url).await {
        Ok(client) => client,
        Err(e) => {
            stats.error(format!("connect: {e}"));
            return;
        }
    };
    let mut disconnects = 0;
    for i in 0..calls {
        let slot = (i + seed * 7) % 100;
        stats.calls.fetch_add(1, Ordering::Relaxed);
        match slot {
            0..90 => {
                let started = Instant::now();
                match client
                    .call_tool(call("testkit_echo", json!({"text": "soak"})))
                    .await
                {
                    Ok(r)
                        if r.is_error != Some(true)
                            && r.content
                                .first()
                                .and_then(|c| c.as_text())
                                .map(|t| t.text.as_str())
                                == Some("soak") =>
                    {
                        stats.fast.lock().unwrap().push(started.elapsed());
                    }
                    Ok(r) => stats.error(format!("echo answered {r:?}")),
                    Err(e) => stats.error(format!("echo: {e}")),
                }
            }
            90..95 => {
                let mut params = call("testkit_slow", json!({"steps": 3, "step_ms": 5}));
                params.meta = Some(RequestMetaObject::with_progress_token(ProgressToken(
                    NumberOrString::String(format!("p{seed}-{i}").into()),
                )));
                match client.call_tool(params).await {
                    Ok(r) if r.is_error != Some(true) => {}
                    Ok(r) => stats.error(format!("slow answered {r:?}")),
                    Err(e) => stats.error(format!("slow: {e}")),
                }
            }
            95..98 => {
                let request = ClientRequest::CallToolRequest(rmcp::model::Request::new(call(
                    "testkit_slow",
                    json!({"steps": 20, "step_ms": 10}),
                )));
                match client
                    .peer()
                    .send_cancellable_request(request, PeerRequestOptions::no_options())
                    .await
                {
                    Ok(handle) => {
                        tokio::time::sleep(Duration::from_millis(15)).await;
                        match handle.cancel(Some("soak".into())).await {
                            Ok(()) => {
                                stats.cancels.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => stats.error(format!("cancel: {e}")),
                        }
                    }
                    Err(e) => stats.error(format!("cancellable call: {e}")),
                }
            }
            _ if disconnects < max_disconnects => {
                disconnects += 1;
                // A second client starts a slow call and goes away in the middle of it.
                match connect(kind, &url).await {
                    Ok(gone) => {
                        let request = ClientRequest::CallToolRequest(rmcp::model::Request::new(
                            call("testkit_slow", json!({"steps": 20, "step_ms": 10})),
                        ));
                        let sent = gone
                            .peer()
                            .send_cancellable_request(request, PeerRequestOptions::no_options())
                            .await;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        drop(sent);
                        let _ = gone.cancel().await;
                        stats.disconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => stats.error(format!("connect to disconnect: {e}")),
                }
            }
            _ => {
                let started = Instant::now();
                match client
                    .call_tool(call("testkit_echo", json!({"text": "soak"})))
                    .await
                {
                    Ok(r) if r.is_error != Some(true) => {
                        stats.fast.lock().unwrap().push(started.elapsed());
                    }
                    Ok(r) => stats.error(format!("echo answered {r:?}")),
                    Err(e) => stats.error(format!("echo: {e}")),
                }
            }
        }
    }
    let _ = client.cancel().await;
}

async fn health(http: &reqwest::Client, url: &str) -> Value {
    match http.get(format!("{url}/health")).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

fn rss_mb(status: &Value) -> f64 {
    status["memory"]["rss_bytes"].as_f64().unwrap_or(0.0) / 1e6
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // SOAK_BIN: another build of the server (a debug one, to look into a finding).
    let bin = std::env::var_os("SOAK_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(common::binary);
    let calls = env_usize("SOAK_CALLS", 10_000);
    let home = tempfile::tempdir().unwrap();
    let plugins = home.path().join("plugins");
    std::fs::create_dir_all(plugins.join("testkit")).unwrap();
    std::fs::write(
        plugins.join("testkit/plugin.toml"),
        "name = \"testkit\"\nkind = \"builtin\"\n",
    )
    .unwrap();
    let (mut child, url) = common::serve_http(
        Command::new(&bin)
            .args(["serve", "--http", "127.0.0.1:0", "--session-idle-secs", "5"])
            .env("PLUGBOARD_PLUGINS_DIR", &plugins)
            .env("PLUGBOARD_LOG", "error")
            .current_dir(home.path()),
    )
    .await;
    let http = reqwest::Client::new();
    let idle = health(&http, &url).await;
    println!(
        "soak: {CLIENTS} clients × {calls} calls per transport against {} (idle: {:.1} MB RSS, {} tasks)\n",
        bin.display(),
        rss_mb(&idle),
        idle["tasks"]
    );
    println!(
        "{:<42} {:>8} {:>6} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "transport",
        "calls",
        "errors",
        "cancel",
        "discon",
        "p50 µs",
        "p99 µs",
        "RSS warm",
        "RSS end",
        "Δ RSS"
    );
    for kind in [Kind::Session, Kind::Stateless, Kind::LegacySse] {
        let stats = Arc::new(Stats::default());
        let started = Instant::now();
        let warm_at = CLIENTS * calls / 10;
        let sampler = {
            let (stats, http, url) = (stats.clone(), http.clone(), url.clone());
            tokio::spawn(async move {
                let mut warm = None;
                let mut in_flight = 0;
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let status = health(&http, &url).await;
                    let rss = rss_mb(&status);
                    let now = status["calls"]["in_flight"].as_u64().unwrap_or(0);
                    if now > in_flight {
                        in_flight = now;
                        if std::env::var_os("SOAK_VERBOSE").is_some() {
                            println!("    in flight {now}: {status}");
                        }
                    }
                    if warm.is_none() && stats.calls.load(Ordering::Relaxed) >= warm_at {
                        warm = Some(rss);
                    }
                    if stats.calls.load(Ordering::Relaxed) >= CLIENTS * calls {
                        return (warm.unwrap_or(rss), rss);
                    }
                }
            })
        };
        let clients: Vec<_> = (0..CLIENTS)
            .map(|seed| tokio::spawn(one_client(kind, url.clone(), calls, stats.clone(), seed)))
            .collect();
        for c in clients {
            let _ = c.await;
        }
        let (warm, end) = sampler.await.unwrap_or((0.0, 0.0));
        let mut fast = std::mem::take(&mut *stats.fast.lock().unwrap());
        fast.sort_unstable();
        println!(
            "{:<42} {:>8} {:>6} {:>7} {:>7} {:>9.0} {:>9.0} {:>8.1}M {:>8.1}M {:>+6.1}%   ({:.0} s)",
            kind.name(),
            stats.calls.load(Ordering::Relaxed),
            stats.errors.load(Ordering::Relaxed),
            stats.cancels.load(Ordering::Relaxed),
            stats.disconnects.load(Ordering::Relaxed),
            percentile(&fast, 0.50),
            percentile(&fast, 0.99),
            warm,
            end,
            if warm > 0.0 {
                (end - warm) / warm * 100.0
            } else {
                0.0
            },
            started.elapsed().as_secs_f64(),
        );
        for e in stats.first_errors.lock().unwrap().iter() {
            println!("    error: {e}");
        }
    }
    // Every client is gone: what does the server still hold?
    let deadline = Instant::now() + Duration::from_secs(60);
    let end = loop {
        let status = health(&http, &url).await;
        let open = status["sessions"]["streamable_http"]["open"]
            .as_u64()
            .unwrap_or(u64::MAX)
            + status["sessions"]["legacy_sse"]["open"]
                .as_u64()
                .unwrap_or(u64::MAX);
        let tasks = status["tasks"].as_u64().unwrap_or(u64::MAX);
        if (open == 0 && tasks <= idle["tasks"].as_u64().unwrap_or(0)) || Instant::now() > deadline
        {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "\nafter the run: sessions open {} (Streamable HTTP) + {} (legacy SSE), target 0; tasks alive {} (idle before: {}); RSS {:.1} MB (idle before: {:.1} MB)",
        end["sessions"]["streamable_http"]["open"],
        end["sessions"]["legacy_sse"]["open"],
        end["tasks"],
        idle["tasks"],
        rss_mb(&end),
        rss_mb(&idle),
    );
    let _ = child.kill().await;
}
