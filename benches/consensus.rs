//! `consensus` and `ask` against fake providers, each against a baseline in the same run.
//!
//! `cargo bench --bench consensus` (builds the release binary first). Prints:
//! - consensus wall time with three providers answering after 200 / 400 / 800 ms, against the
//!   slowest (800 ms): the target is ≤ slowest + 5 ms;
//! - plugboard's overhead per provider call: `ask` through `plugboard serve` (stdio MCP)
//!   against a direct HTTP request of the same shape to the same fake answering at once.

mod common;
#[path = "../tests/support/llm.rs"]
mod fake_llm;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use common::McpStdio;
use fake_llm::{FakeLlm, KEY, Provider};
use serde_json::{Value, json};
use tokio::process::Command;

const CONSENSUS_RUNS: usize = 20;
const CALLS: usize = 300;

/// The shipped manifest's variables, test models, no synthesizer (the bench client cannot
/// sample), so a consensus is exactly the fan-out.
fn manifest() -> String {
    let shipped = include_str!("../plugins/agents/plugin.toml");
    let head = shipped.split("\n[settings]").next().unwrap();
    format!(
        "{head}\n[settings]\ntimeout_secs = 10\n\
         [settings.providers.openai]\nmodel = \"gpt-bench\"\n\
         [settings.providers.anthropic]\nmodel = \"claude-bench\"\n\
         [settings.providers.gemini]\nmodel = \"gemini-bench\"\n"
    )
}

/// `plugboard serve` with the fake providers' keys and addresses.
fn serve(bin: &Path, home: &Path, fake: &FakeLlm) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(home)
        .env("PLUGBOARD_PLUGINS_DIR", home.join("plugins"))
        .env("PLUGBOARD_LOG", "error")
        .env("OPENAI_API_KEY", KEY)
        .env("OPENAI_BASE_URL", fake.openai_base())
        .env("ANTHROPIC_API_KEY", KEY)
        .env("ANTHROPIC_BASE_URL", fake.anthropic_base())
        .env("GEMINI_API_KEY", KEY)
        .env("GEMINI_BASE_URL", fake.gemini_base())
        .env_remove("DEEPSEEK_API_KEY")
        .arg("serve");
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
    let fake = FakeLlm::start_in_thread();
    let home = tempfile::tempdir().unwrap();
    let manifest_path = home.path().join("plugins/agents/plugin.toml");
    std::fs::create_dir_all(manifest_path.parent().unwrap()).unwrap();
    std::fs::write(manifest_path, manifest()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut server = McpStdio::start(serve(&bin, home.path(), &fake)).await;

        // 1. Consensus: three providers answering after 200 / 400 / 800 ms.
        let latencies = [
            (Provider::OpenAi, 200),
            (Provider::Anthropic, 400),
            (Provider::Gemini, 800),
        ];
        for (provider, latency) in latencies {
            fake.set_latency(provider, Duration::from_millis(latency));
        }
        let slowest = Duration::from_millis(800);
        server.call("consensus", json!({"prompt": "warm-up"})).await;
        let mut walls = Vec::new();
        for i in 0..CONSENSUS_RUNS {
            let started = Instant::now();
            let result = server
                .call("consensus", json!({"prompt": format!("Question {i}?")}))
                .await;
            walls.push(started.elapsed());
            assert_eq!(result["answered"], 3, "{result}");
        }
        let p50 = percentile(&mut walls, 0.5);
        let max = percentile(&mut walls, 1.0);
        println!(
            "consensus, 3 providers at 200/400/800 ms ({CONSENSUS_RUNS} runs, through stdio MCP):"
        );
        println!(
            "  wall p50 {:.1} ms, max {:.1} ms; slowest provider {:.0} ms → over the slowest: p50 +{:.1} ms, max +{:.1} ms (target ≤ +5 ms); sequential would be {} ms",
            ms(p50),
            ms(max),
            ms(slowest),
            ms(p50) - ms(slowest),
            ms(max) - ms(slowest),
            200 + 400 + 800
        );

        // 2. Overhead per provider call: the fake answers at once.
        fake.set_latency(Provider::OpenAi, Duration::ZERO);
        let http = reqwest::Client::new();
        let url = format!("{}/chat/completions", fake.openai_base());
        let body = json!({
            "model": "gpt-bench", "stream": false, "max_completion_tokens": 4096,
            "messages": [{"role": "user", "content": "Say hi"}],
        });
        let mut direct = Vec::new();
        for i in 0..CALLS + 20 {
            let started = Instant::now();
            let reply: Value = http
                .post(&url)
                .bearer_auth(KEY)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if i >= 20 {
                direct.push(started.elapsed());
            }
            assert!(reply["choices"][0]["message"]["content"].is_string());
        }
        let mut through = Vec::new();
        for i in 0..CALLS + 20 {
            let started = Instant::now();
            let answer = server
                .call("ask", json!({"prompt": "Say hi", "provider": "openai"}))
                .await;
            if i >= 20 {
                through.push(started.elapsed());
            }
            assert_eq!(answer["answer"], "openai (gpt-bench) says: Say hi");
        }
        let (d50, d99) = (percentile(&mut direct, 0.5), percentile(&mut direct, 0.99));
        let (t50, t99) = (percentile(&mut through, 0.5), percentile(&mut through, 0.99));
        println!("one provider call ({CALLS} calls, fake answering at once):");
        println!(
            "  direct HTTP request   p50 {:>7.3} ms   p99 {:>7.3} ms",
            ms(d50),
            ms(d99)
        );
        println!(
            "  ask via plugboard     p50 {:>7.3} ms   p99 {:>7.3} ms   overhead p50 +{:.3} ms (×{:.2} of direct)",
            ms(t50),
            ms(t99),
            ms(t50) - ms(d50),
            t50.as_secs_f64() / d50.as_secs_f64()
        );
    });
}
