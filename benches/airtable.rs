//! Bulk import throughput against Airtable's ceiling, through the path users take.
//!
//! `cargo bench --bench airtable` builds the release binary, starts the fake Airtable
//! (tests/support/airtable.rs) enforcing the real limits — 5 requests/s per base, 50/s per
//! token, a 30 s lockout after a 429 — writes a CSV of `ROWS` rows (default 2,000), and runs
//! `plugboard import airtable` on it. The ceiling is Airtable's: 10 records per request × 5
//! requests/s = 50 records/s. Prints records/s (wall clock, process start to exit) and its
//! ratio to the ceiling, the 429s the fake served, and the most requests it saw in any second.
//! Target: ≥ 95% of the ceiling with zero 429s.

mod common;
#[path = "../tests/support/airtable.rs"]
mod fake;

use std::time::{Duration, Instant};

use fake::{FakeAirtable, FakeConfig};

const CEILING: f64 = 50.0;

fn main() {
    let rows: usize = std::env::var("ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let bin = common::binary();
    let fake = FakeAirtable::start_in_thread(FakeConfig {
        per_base_rps: 5,
        per_token_rps: 50,
        lockout: Duration::from_secs(30),
        ..FakeConfig::default()
    });
    let base = fake.add_base("Bench", "create");
    fake.add_table(
        &base,
        "Items",
        &[
            ("Key", "singleLineText", None),
            ("Name", "singleLineText", None),
            ("Qty", "number", Some(serde_json::json!({"precision": 0}))),
            ("Done", "checkbox", None),
        ],
    );

    let home = tempfile::tempdir().unwrap();
    let plugins = home.path().join("plugins/airtable");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(
        plugins.join("plugin.toml"),
        format!(
            "name = \"airtable\"\nkind = \"builtin\"\n[env.AIRTABLE_API_KEY]\nrequired = true\nsecret = true\n[env.AIRTABLE_BASE_URL]\n[settings]\nlockout_secs = 30\nimport_roots = [{:?}]\ncheckpoint_dir = {:?}\n",
            home.path().display().to_string(),
            home.path().join("checkpoints").display().to_string(),
        ),
    )
    .unwrap();
    let csv = home.path().join("items.csv");
    let mut text = String::from("Key,Name,Qty,Done\n");
    for i in 0..rows {
        text.push_str(&format!(
            "k{i:06},Item {i},{},{}\n",
            i % 97,
            if i % 3 == 0 { "yes" } else { "no" }
        ));
    }
    std::fs::write(&csv, text).unwrap();

    let started = Instant::now();
    let out = std::process::Command::new(&bin)
        .args(["--plugins-dir"])
        .arg(home.path().join("plugins"))
        .args([
            "import", "airtable", "--base", &base, "--table", "Items", "--key", "Key", "--json",
        ])
        .arg(&csv)
        .env("AIRTABLE_API_KEY", fake::DEFAULT_TOKEN)
        .env("AIRTABLE_BASE_URL", &fake.url)
        .env("PLUGBOARD_LOG", "warn")
        .env_remove("PLUGBOARD_FILES_ROOTS")
        .output()
        .expect("run plugboard import");
    let wall = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "import failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let stats = fake.stats();
    let landed = fake.records(&base, "Items").len();
    assert_eq!(landed, rows, "every row exactly once");

    let rate = rows as f64 / wall;
    println!(
        "airtable bulk import ({rows} rows, fake enforcing 5 req/s per base, 50 req/s per token, 30 s lockout)\n"
    );
    println!("ceiling (10 records × 5 requests/s)     {CEILING:>8.1} records/s   × 1.000");
    println!(
        "plugboard import, wall clock            {rate:>8.1} records/s   × {:.3} of ceiling   ({wall:.1} s)",
        rate / CEILING
    );
    println!(
        "plugboard import, its own report        {:>8.1} records/s   × {:.3} of ceiling",
        report["records_per_second"].as_f64().unwrap_or(0.0),
        report["records_per_second"].as_f64().unwrap_or(0.0) / CEILING
    );
    println!(
        "requests {}  ·  429s served {}  ·  most requests to the base in any 1 s window {}",
        stats.requests_total,
        stats.total_429(),
        stats
            .max_requests_1s_per_base
            .get(&base)
            .copied()
            .unwrap_or(0)
    );
    println!(
        "created {}  ·  updated {}  ·  in the fake {landed}",
        report["created"], report["updated"]
    );
}
