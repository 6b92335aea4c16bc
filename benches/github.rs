//! What the GitHub plugin costs: context (the bytes of `tools/list`) and time per call, each
//! against a baseline in the same run.
//!
//! `cargo bench --bench github` (builds the release binary first). Prints:
//! - the size of the `tools/list` answer of `plugboard serve` with only the github plugin, with
//!   every shipped plugin configured, and with every plugin but github (the baseline);
//!   with `GITHUB_REFERENCE_CMD` set (e.g. `node …/server-github/dist/index.js`), the same for
//!   that server, given `GITHUB_PERSONAL_ACCESS_TOKEN`;
//! - `github_list_issues` (30 issues a page) through `plugboard serve` over stdio against a
//!   direct HTTP GET of the same page from the same fake GitHub.

mod common;
#[path = "../tests/support/github.rs"]
mod fake_github;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use common::McpStdio;
use fake_github::{FakeConfig, FakeGitHub, TOKEN};
use serde_json::{Value, json};
use tokio::process::Command;

const CALLS: usize = 300;

/// `plugboard serve` with the shipped manifests (every plugin keyed, pointed at nothing
/// reachable except GitHub at the fake) and `args`.
fn plugboard(bin: &Path, home: &Path, fake: &FakeGitHub, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(home)
        // No ./plugins here: the manifests built into the binary, as a client launching it gets.
        .env_remove("PLUGBOARD_PLUGINS_DIR")
        .env("PLUGBOARD_LOG", "error")
        .env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_API_URL", fake.api_url())
        .env("AIRTABLE_API_KEY", "patBENCH")
        .env("AIRTABLE_BASE_URL", "http://127.0.0.1:9")
        .env("OPENAI_API_KEY", "sk-bench")
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .env("GEMINI_API_KEY", "gemini-bench-key")
        .env("GEMINI_BASE_URL", "http://127.0.0.1:9")
        .env("PLUGBOARD_FILES_ROOTS", home)
        .arg("serve")
        .args(args);
    cmd
}

fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let bin = common::binary();
    let fake = FakeGitHub::start_in_thread(FakeConfig {
        core_limit: 1_000_000,
        ..FakeConfig::default()
    });
    fake.add_repo("octo/hello", false, true);
    for i in 0..120 {
        fake.add_issue(
            "octo/hello",
            &format!("Issue {i}: something to look at"),
            "A body of a few words that the list leaves out.",
            &["bug", "triage"],
            Some("hubot"),
            "open",
        );
    }
    let home = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // 1. Context: the bytes of tools/list.
        println!("tools/list (the JSON-RPC answer, bytes):");
        let mut sizes = Vec::new();
        for (label, args) in [
            ("github plugin only", &["--toolsets", "github"][..]),
            ("whole server, every shipped plugin", &[][..]),
            (
                "whole server without github (baseline)",
                &["--toolsets", "agents,airtable,files"][..],
            ),
        ] {
            let mut server = McpStdio::start(plugboard(&bin, home.path(), &fake, args)).await;
            let (tools, bytes) = server.tools().await;
            println!("  {label:<40} {tools:>3} tools {bytes:>7} bytes");
            sizes.push(bytes);
        }
        println!(
            "  github adds {} bytes to the whole server ({:.0}% of it)",
            sizes[1] - sizes[2],
            100.0 * (sizes[1] - sizes[2]) as f64 / sizes[1] as f64
        );
        if let Ok(reference) = std::env::var("GITHUB_REFERENCE_CMD") {
            let mut words = reference.split_whitespace();
            let mut cmd = Command::new(words.next().expect("a command"));
            cmd.args(words)
                .env("GITHUB_PERSONAL_ACCESS_TOKEN", "x")
                .env("GITHUB_TOKEN", "x");
            let mut server = McpStdio::start(cmd).await;
            let (tools, bytes) = server.tools().await;
            println!(
                "  {:<40} {tools:>3} tools {bytes:>7} bytes (plugboard's github: ×{:.2})",
                "reference (GITHUB_REFERENCE_CMD)",
                sizes[0] as f64 / bytes as f64
            );
        }

        // 2. Time: one page of 30 issues through plugboard against a direct GET.
        let mut server =
            McpStdio::start(plugboard(&bin, home.path(), &fake, &["--toolsets", "github"])).await;
        let args = json!({"owner": "octo", "repo": "hello", "per_page": 30});
        let page = server.call("github_list_issues", args.clone()).await;
        assert_eq!(page["count"], 30, "{page}");
        let mut through = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let started = Instant::now();
            server.call("github_list_issues", args.clone()).await;
            through.push(started.elapsed());
        }
        let http = reqwest::Client::new();
        let url = format!(
            "{}/repos/octo/hello/issues?state=open&per_page=30&page=1",
            fake.api_url()
        );
        let mut direct = Vec::with_capacity(CALLS);
        for _ in 0..=CALLS {
            let started = Instant::now();
            let response = http
                .get(&url)
                .bearer_auth(TOKEN)
                .header("user-agent", "bench")
                .header("accept", "application/vnd.github+json")
                .header("x-github-api-version", "2022-11-28")
                .send()
                .await
                .unwrap();
            let body: Value = response.json().await.unwrap();
            assert_eq!(body.as_array().map(Vec::len), Some(30));
            direct.push(started.elapsed());
        }
        direct.remove(0); // the connection's first request
        let (t50, t99) = (
            percentile(&mut through, 0.5),
            percentile(&mut through, 0.99),
        );
        let (d50, d99) = (percentile(&mut direct, 0.5), percentile(&mut direct, 0.99));
        println!("github_list_issues, 30 issues a page ({CALLS} calls):");
        println!(
            "  through plugboard (stdio MCP) p50 {:.3} ms, p99 {:.3} ms; direct GET p50 {:.3} ms, p99 {:.3} ms → overhead p50 +{:.3} ms (×{:.2})",
            ms(t50),
            ms(t99),
            ms(d50),
            ms(d99),
            ms(t50.saturating_sub(d50)),
            t50.as_secs_f64() / d50.as_secs_f64()
        );
    });
}
