//! Faults mid-write lose nothing: the Airtable bulk import under injected faults and a
//! `kill -9` at a random moment, over many seeds, every row exactly once every time.
//!
//! `cargo bench --bench faults` (builds the release binary first). For each seed (`SEEDS`,
//! default 20), a fresh stateful Airtable fake (tests/support/airtable.rs: Airtable's wire
//! format, 5 requests/s per base with a lockout) injects 20% faults on record requests — 4%
//! each of 429, 500, 503, a reset before the write and a reset after it (applied, answer lost)
//! — drawn from the seed. `plugboard import airtable` upserts `ROWS` rows (default 300) keyed
//! on SKU; at a moment drawn from the seed (between 0.3 s and the import's expected time) it
//! is killed with SIGKILL, then run again until it reports completion (each run resumes from
//! the checkpoint). Printed per seed: when it was killed, rows landed by then, the runs it
//! took, faults injected, and the outcome — every SKU exactly once with its values, or what is
//! missing or duplicated. A final line gives the seeds that passed.

mod common;
#[path = "../tests/support/airtable.rs"]
mod fake;

use std::{collections::HashMap, path::Path, process::Stdio, time::Duration};

use fake::{FakeAirtable, FakeConfig, Faults};
use serde_json::{Value, json};
use tokio::process::Command;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// SplitMix64: the kill moment from the seed.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn manifest(home: &Path, data: &Path) -> String {
    let shipped = include_str!("../plugins/airtable/plugin.toml");
    let head = shipped.split("\n[settings]").next().unwrap();
    format!(
        "{head}\n[settings]\nlockout_secs = 2.0\ncheckpoint_dir = {:?}\nimport_roots = [{:?}]\n",
        home.join("checkpoints").display().to_string(),
        data.display().to_string(),
    )
}

struct Outcome {
    killed_at: f64,
    landed_at_kill: usize,
    runs: usize,
    injected: u64,
    problems: Vec<String>,
}

async fn one_seed(bin: &Path, seed: u64, rows: usize) -> Outcome {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    std::fs::create_dir_all(home.path().join("plugins/airtable")).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        home.path().join("plugins/airtable/plugin.toml"),
        manifest(home.path(), &data),
    )
    .unwrap();
    let mut csv = String::from("SKU,Name,Qty\n");
    for i in 1..=rows {
        csv.push_str(&format!("SKU-{i:05},Item {i},{}\n", 3 * i));
    }
    std::fs::write(data.join("items.csv"), csv).unwrap();

    let config = FakeConfig {
        lockout: Duration::from_secs(2),
        ..FakeConfig::default()
    };
    let token = config.token.clone();
    let fake = FakeAirtable::start(config).await;
    let base = fake.add_base("Faulty", "create");
    fake.add_table(
        &base,
        "Items",
        &[
            ("SKU", "singleLineText", None),
            ("Name", "singleLineText", None),
            ("Qty", "number", Some(json!({"precision": 0}))),
        ],
    );
    fake.set_faults(Faults {
        seed,
        rate_429: 0.04,
        rate_500: 0.04,
        rate_503: 0.04,
        rate_reset_before: 0.04,
        rate_reset_after: 0.04,
    });
    let command = || {
        let mut cmd = Command::new(bin);
        cmd.args([
            "import",
            "airtable",
            "--base",
            &base,
            "--table",
            "Items",
            "items.csv",
            "--key",
            "SKU",
            "--json",
        ])
        .current_dir(&data)
        .env("PLUGBOARD_PLUGINS_DIR", home.path().join("plugins"))
        .env("AIRTABLE_API_KEY", &token)
        .env("AIRTABLE_BASE_URL", &fake.url)
        .env("PLUGBOARD_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
        cmd
    };
    // 10 rows a request at 5 requests/s, and the faults' retries: about rows/50 s.
    let expected = rows as f64 / 50.0;
    let killed_at = 0.3 + (mix(seed) % 1000) as f64 / 1000.0 * expected;
    let mut first = command().spawn().unwrap();
    let finished_first = tokio::time::timeout(Duration::from_secs_f64(killed_at), first.wait())
        .await
        .is_ok();
    if !finished_first {
        first.start_kill().unwrap();
        let _ = first.wait().await;
    }
    let landed_at_kill = fake.records(&base, "Items").len();
    // A person restarting takes longer than Airtable's one-second window.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut runs = 1;
    let mut problems = Vec::new();
    loop {
        runs += 1;
        let out = tokio::time::timeout(Duration::from_secs(600), command().output())
            .await
            .expect("an import run finished within 600 s")
            .unwrap();
        if out.status.success() {
            let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if report["complete"] != true {
                problems.push(format!("the last run reported {report}"));
            }
            break;
        }
        if runs > 20 {
            problems.push("not complete after 20 runs".into());
            break;
        }
    }
    let mut seen: HashMap<String, Vec<Value>> = HashMap::new();
    for record in fake.records(&base, "Items") {
        let fields = record["fields"].clone();
        let sku = fields["SKU"].as_str().unwrap_or("").to_owned();
        seen.entry(sku).or_default().push(fields);
    }
    for i in 1..=rows {
        let sku = format!("SKU-{i:05}");
        match seen.get(&sku).map(Vec::as_slice) {
            None => problems.push(format!("{sku} missing")),
            Some([one]) => {
                if one["Name"] != json!(format!("Item {i}")) || one["Qty"] != json!(3 * i) {
                    problems.push(format!("{sku} has {one}"));
                }
            }
            Some(many) => problems.push(format!("{sku} {} times", many.len())),
        }
    }
    if seen.len() > rows {
        problems.push(format!("{} records for {rows} rows", seen.len()));
    }
    let injected = fake.stats().injected_total();
    fake.shutdown().await;
    Outcome {
        killed_at: if finished_first { f64::NAN } else { killed_at },
        landed_at_kill,
        runs,
        injected,
        problems,
    }
}

#[tokio::main]
async fn main() {
    let bin = common::binary();
    let seeds = env_usize("SEEDS", 20) as u64;
    let rows = env_usize("ROWS", 300);
    println!(
        "faults: {rows} rows per import, 20% injected faults (429/500/503/reset before/reset after, 4% each), SIGKILL at a seeded moment, then re-run until complete; {seeds} seeds\n"
    );
    println!(
        "{:>5} {:>9} {:>15} {:>5} {:>9}  outcome",
        "seed", "killed s", "rows at kill", "runs", "faults"
    );
    let mut passed = 0;
    for seed in 1..=seeds {
        let o = one_seed(&bin, seed, rows).await;
        let outcome = if o.problems.is_empty() {
            passed += 1;
            format!("every row exactly once ({rows})")
        } else {
            format!(
                "LOST OR DUPLICATED: {}",
                o.problems
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        let killed = if o.killed_at.is_nan() {
            "finished".to_owned()
        } else {
            format!("{:.2}", o.killed_at)
        };
        println!(
            "{seed:>5} {killed:>9} {:>15} {:>5} {:>9}  {outcome}",
            o.landed_at_kill, o.runs, o.injected
        );
    }
    println!("\n{passed} of {seeds} seeds: every row exactly once");
}
