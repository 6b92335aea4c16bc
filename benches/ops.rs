//! The operations face's figures (issue 20), each against its baseline in the same run.
//!
//! `cargo bench --bench ops` (builds the release binary first):
//! 1. REST against MCP: one client, one call at a time, `POST /api/v1/tools/testkit_echo/call`
//!    and `tools/call testkit_echo` over Streamable HTTP (its own keep-alive connection and
//!    session) to the same server, alternated in rounds of 250 calls so that both see the
//!    same machine; p50 and p99 of each and the REST/MCP ratio of the p50s (target ≤ 1.1×).
//! 2. HTTP throughput with and without metrics: `serve --http` and `serve --http
//!    --no-metrics` running side by side, 50 MCP sessions open on each calling `testkit_echo`,
//!    loaded in turn one second at a time (`PAIRS` pairs, default 30, after a warm-up) — the
//!    median of the pairs' on/off ratios (target: ≥ 0.97, metrics cost ≤ 3 %).
//! 3. The dashboard in headless Chromium (`tests/dashboard/measure.mjs`, when Debian's
//!    chromium and `npm ci --prefix tests/dashboard` are there): bytes transferred for one
//!    page load and time to interactive (navigation start → the first data rendered),
//!    median of 10 fresh loads (targets: ≤ 150 KB).
//!
//! The targets are printed beside the figures, not asserted.

mod common;
#[path = "common/http_load.rs"]
#[allow(dead_code)] // the throughput and relay benches use the rest
mod http_load;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use http_load::{Session, plugboard_with};
use reqwest::header::CONTENT_TYPE;

const CLIENTS: usize = 50;
const ROUNDS: usize = 20;
const PER_ROUND: usize = 250;
const ECHO: &str = r#"{"name":"testkit_echo","arguments":{"text":"hello"}}"#;

/// The REST face of one server, as a script calls it: one keep-alive connection.
struct Rest {
    http: reqwest::Client,
    url: String,
}

impl Rest {
    fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .no_proxy()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Self {
            http,
            url: format!("{base}/api/v1/tools/testkit_echo/call"),
        }
    }

    async fn call(&self) -> bool {
        let Ok(reply) = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .body(r#"{"text":"hello"}"#)
            .send()
            .await
        else {
            return false;
        };
        reply.status().is_success()
            && reply
                .bytes()
                .await
                .is_ok_and(|b| b.windows(5).any(|w| w == b"hello"))
    }
}

fn quantile(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort();
    samples
        .get(((samples.len() as f64 - 1.0) * q).round() as usize)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

async fn latency(bin: &Path, home: &Path) {
    let (mut server, mcp_url) = plugboard_with(bin, home, &[]).await;
    let base = mcp_url.trim_end_matches("/mcp").to_owned();
    let rest = Rest::new(&base);
    let mcp = Session::open(&mcp_url).await.expect("an MCP session");
    let (mut rest_samples, mut mcp_samples) = (Vec::new(), Vec::new());
    let mut errors = (0, 0);
    let mut id = 0;
    // A warm-up round of each, not kept.
    for round in 0..=ROUNDS {
        for _ in 0..PER_ROUND {
            let sent = Instant::now();
            if !rest.call().await {
                errors.0 += 1;
            } else if round > 0 {
                rest_samples.push(sent.elapsed());
            }
        }
        for _ in 0..PER_ROUND {
            id += 1;
            let sent = Instant::now();
            if !mcp.call(id, ECHO, "hello").await {
                errors.1 += 1;
            } else if round > 0 {
                mcp_samples.push(sent.elapsed());
            }
        }
    }
    server.kill().await.unwrap();
    let (rest_p50, rest_p99) = (
        quantile(&mut rest_samples, 0.5),
        quantile(&mut rest_samples, 0.99),
    );
    let (mcp_p50, mcp_p99) = (
        quantile(&mut mcp_samples, 0.5),
        quantile(&mut mcp_samples, 0.99),
    );
    println!(
        "1. No-op call latency, one client, {} calls each (alternated in rounds of {PER_ROUND}):",
        ROUNDS * PER_ROUND
    );
    println!(
        "   {:44} {:>8} {:>8} {:>7}",
        "", "p50 µs", "p99 µs", "errors"
    );
    println!(
        "   {:44} {mcp_p50:>8.0} {mcp_p99:>8.0} {:>7}",
        "MCP Streamable HTTP tools/call (baseline)", errors.1
    );
    println!(
        "   {:44} {rest_p50:>8.0} {rest_p99:>8.0} {:>7}",
        "REST POST /api/v1/tools/testkit_echo/call", errors.0
    );
    let ratio = rest_p50 / mcp_p50;
    println!(
        "   REST p50 / MCP p50 = {ratio:.2}× (target ≤ 1.10×) — {}\n",
        verdict(ratio <= 1.10)
    );
}

/// One slice of load: every session calling for `length`; calls/s and errors.
async fn slice(sessions: Vec<Session>, length: Duration) -> (f64, u64, Vec<Session>) {
    let start = Instant::now();
    let end = start + length;
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|s| tokio::spawn(s.run(ECHO, "hello", start, end)))
        .collect();
    let (mut calls, mut errors, mut back) = (0, 0, Vec::new());
    for task in tasks {
        let (tally, session) = task.await.unwrap();
        calls += tally.samples.len();
        errors += tally.errors;
        back.push(session);
    }
    (calls as f64 / length.as_secs_f64(), errors, back)
}

async fn throughput(bin: &Path, home: &Path, pairs: usize) {
    // This VM's throughput jumps between levels for seconds at a time (other tenants): two
    // servers measured minutes apart differ by more than what is measured here. So both run
    // at once, each with its 50 sessions open, and are loaded in turn, one second each; the
    // figure is the median of the pairs' ratios, which a jump spoils only for its own pair.
    let (mut on_server, on_url) = plugboard_with(bin, home, &[]).await;
    let (mut off_server, off_url) = plugboard_with(bin, home, &["--no-metrics"]).await;
    let open = |url: String| async move {
        futures::future::join_all((0..CLIENTS).map(|_| Session::open(&url)))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .expect("sessions")
    };
    let (mut on, mut off) = (open(on_url).await, open(off_url).await);
    let second = Duration::from_secs(1);
    // Warm-up: a few slices of each, not kept.
    for _ in 0..3 {
        (_, _, on) = slice(on, second).await;
        (_, _, off) = slice(off, second).await;
    }
    let (mut ratios, mut sums, mut errors) = (Vec::new(), (0.0, 0.0), 0);
    for i in 0..pairs {
        // Which goes first alternates, so that neither always follows the other.
        let (a, ea, b, eb);
        if i % 2 == 0 {
            (a, ea, on) = slice(on, second).await;
            (b, eb, off) = slice(off, second).await;
        } else {
            (b, eb, off) = slice(off, second).await;
            (a, ea, on) = slice(on, second).await;
        }
        ratios.push(a / b);
        sums = (sums.0 + a, sums.1 + b);
        errors += ea + eb;
    }
    drop((on, off));
    on_server.kill().await.unwrap();
    off_server.kill().await.unwrap();
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let (q1, q3) = (ratios[ratios.len() / 4], ratios[ratios.len() * 3 / 4]);
    let n = pairs as f64;
    let cost = (1.0 - median) * 100.0;
    println!(
        "2. HTTP throughput, {CLIENTS} clients over MCP each, `serve --http` (metrics on) and \
         `serve --http --no-metrics` side by side, loaded in turn, {pairs} pairs of 1 s slices:"
    );
    println!(
        "   metrics on {:.0} calls/s, off {:.0} calls/s (baseline), mean of the slices; {errors} \
         errors",
        sums.0 / n,
        sums.1 / n
    );
    println!(
        "   on/off per pair: median {median:.3} (quartiles {q1:.3}–{q3:.3}): the metrics cost \
         {cost:.1} % (target ≤ 3 %) — {}\n",
        verdict(cost <= 3.0)
    );
}

/// The dashboard's weight and time to interactive, from the browser driver.
async fn dashboard(bin: &Path, home: &Path) {
    println!("3. Dashboard in headless Chromium (10 fresh loads):");
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard");
    let missing = [
        (
            Path::new("/usr/bin/chromium").to_owned(),
            "Debian's chromium",
        ),
        (
            driver.join("node_modules/playwright-core"),
            "npm ci --prefix tests/dashboard",
        ),
    ]
    .into_iter()
    .find(|(path, _)| !path.exists());
    if let Some((_, what)) = missing {
        println!("   skipped: needs {what}");
        return;
    }
    let (mut server, mcp_url) = plugboard_with(bin, home, &[]).await;
    let base = mcp_url.trim_end_matches("/mcp").to_owned();
    let out = tokio::process::Command::new("node")
        .arg(driver.join("measure.mjs"))
        .arg(&base)
        .output()
        .await
        .expect("node");
    server.kill().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().rev().find(|l| l.starts_with('{')) else {
        println!(
            "   the driver failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    };
    let m: serde_json::Value = serde_json::from_str(line).unwrap();
    let kb = |key: &str| m[key].as_f64().unwrap_or(f64::NAN) / 1000.0;
    let (wire, own) = (kb("bytes"), kb("asset_bytes"));
    println!(
        "   page weight {wire:.1} KB transferred until ready, in {} requests — the page's own \
         files {own:.1} KB, the rest the API's answers (target ≤ 150 KB) — {}",
        m["requests"],
        verdict(wire <= 150.0)
    );
    println!(
        "   time to interactive: median {} ms, min {} ms",
        m["tti_ms_median"], m["tti_ms_min"]
    );
}

fn main() {
    let bin = common::binary();
    let home = common::testkit_home();
    let pairs: usize = std::env::var("PAIRS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
        .max(4);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "plugboard's operations face ({} cores; clients on 2 tokio threads share them with the \
         server)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    rt.block_on(async {
        latency(&bin, home.path()).await;
        throughput(&bin, home.path(), pairs).await;
        dashboard(&bin, home.path()).await;
    });
}
