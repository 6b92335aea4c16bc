//! Faults mid-write lose nothing: the Airtable bulk import and the organizer under injected
//! faults and a `kill -9` at a random moment, over many seeds, every row exactly once every
//! time.
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
//!
//! Then the same for `plugboard organize DIR --apply` (`DOCS` documents, default 100, the
//! research collection of the organize bench, classified by the scripted model on the fake
//! OpenAI): 20% faults on Airtable's record requests, SIGKILL at a seeded moment, re-run until
//! a run ends with nothing failed. Every document must then be one record with the category,
//! tags and summary the model gave it, and the related-document links an uninterrupted,
//! fault-free run makes (both directions). `PART=import` or `PART=organize` runs one part.

mod common;
#[path = "../tests/support/airtable.rs"]
mod fake;
#[path = "../tests/support/llm.rs"]
mod fake_llm;
#[path = "common/research.rs"]
mod research;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::Path,
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use fake::{FakeAirtable, FakeConfig, Faults};
use fake_llm::{Behaviour, FakeLlm, Provider, Script};
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

/// 20% of record requests fail, 4% each way, drawn from `seed`.
fn faults(seed: u64) -> Faults {
    Faults {
        seed,
        rate_429: 0.04,
        rate_500: 0.04,
        rate_503: 0.04,
        rate_reset_before: 0.04,
        rate_reset_after: 0.04,
    }
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
    fake.set_faults(faults(seed));
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

/// A document's record as the organizer left it: category, tags, summary, and the paths of
/// the documents it links to.
#[derive(Debug, PartialEq)]
struct Organized {
    category: Value,
    tags: BTreeSet<String>,
    summary: Value,
    related: BTreeSet<String>,
}

/// Every record of the table by its file path (a path twice is a duplicate).
fn organized(fake: &FakeAirtable, base: &str) -> BTreeMap<String, Vec<Organized>> {
    let records = fake.records(base, "Research");
    let path_of: HashMap<&str, &str> = records
        .iter()
        .filter_map(|r| Some((r["id"].as_str()?, r["fields"]["File Path"].as_str()?)))
        .collect();
    let strings = |v: &Value, f: &dyn Fn(&str) -> String| -> BTreeSet<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(f))
            .collect()
    };
    let mut by_path: BTreeMap<String, Vec<Organized>> = BTreeMap::new();
    for r in &records {
        let fields = &r["fields"];
        let path = fields["File Path"]
            .as_str()
            .unwrap_or("(no path)")
            .to_owned();
        by_path.entry(path).or_default().push(Organized {
            category: fields["Category"].clone(),
            tags: strings(&fields["Tags"], &str::to_owned),
            summary: fields["Summary"].clone(),
            related: strings(&fields["Related"], &|id| {
                path_of
                    .get(id)
                    .map_or(format!("(record {id})"), |p| p.to_string())
            }),
        });
    }
    by_path
}

struct Organizer {
    bin: std::path::PathBuf,
    llm: FakeLlm,
    docs: usize,
}

impl Organizer {
    /// One run of `plugboard organize --apply` on a fresh collection and table, faults from
    /// `seed` (none for `None`), killed at `kill_at` seconds if given, re-run until done.
    async fn one(
        &self,
        seed: Option<u64>,
        kill_at: Option<f64>,
    ) -> (OrganizeRun, BTreeMap<String, Vec<Organized>>) {
        let home = tempfile::tempdir().unwrap();
        let data = home.path().join("research");
        research::write_corpus(&data, self.docs);
        let plugins = research::write_manifests(home.path(), 2.0);
        let fake = FakeAirtable::start(FakeConfig {
            lockout: Duration::from_secs(2),
            ..FakeConfig::default()
        })
        .await;
        let base = fake.add_base("Faulty", "create");
        fake.add_table(&base, "Research", &[("Title", "singleLineText", None)]);
        if let Some(seed) = seed {
            fake.set_faults(faults(seed));
        }
        let command = || {
            let mut cmd = Command::new(&self.bin);
            cmd.arg("--plugins-dir")
                .arg(&plugins)
                .args([
                    "organize", "--base", &base, "--table", "Research", "--apply", "--json",
                ])
                .arg(&data)
                .current_dir(home.path())
                .env("AIRTABLE_API_KEY", fake::DEFAULT_TOKEN)
                .env("AIRTABLE_BASE_URL", &fake.url)
                .env("OPENAI_API_KEY", fake_llm::KEY)
                .env("OPENAI_BASE_URL", self.llm.openai_base())
                .env("PLUGBOARD_LOG", "error")
                .env_remove("PLUGBOARD_FILES_ROOTS")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            cmd
        };
        let mut run = OrganizeRun {
            killed_at: f64::NAN,
            landed_at_kill: 0,
            runs: 0,
            injected: 0,
            problems: Vec::new(),
        };
        if let Some(at) = kill_at {
            run.runs += 1;
            let mut first = command().spawn().unwrap();
            let done = tokio::time::timeout(Duration::from_secs_f64(at), first.wait())
                .await
                .is_ok();
            if !done {
                first.start_kill().unwrap();
                let _ = first.wait().await;
                run.killed_at = at;
            }
            run.landed_at_kill = fake.records(&base, "Research").len();
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        loop {
            run.runs += 1;
            let out = tokio::time::timeout(Duration::from_secs(600), command().output())
                .await
                .expect("an organize run finished within 600 s")
                .unwrap();
            let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if out.status.success() && report["failed"].as_array().is_some_and(Vec::is_empty) {
                break;
            }
            if run.runs > 20 {
                run.problems
                    .push(format!("not complete after 20 runs: {report}"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        run.injected = fake.stats().injected_total();
        let result = organized(&fake, &base);
        fake.shutdown().await;
        (run, result)
    }
}

struct OrganizeRun {
    killed_at: f64,
    landed_at_kill: usize,
    runs: usize,
    injected: u64,
    problems: Vec<String>,
}

/// What differs between the records of a run and what the model said plus the links of the
/// uninterrupted run.
fn compare(
    got: &BTreeMap<String, Vec<Organized>>,
    reference: &BTreeMap<String, Vec<Organized>>,
    docs: usize,
) -> Vec<String> {
    let mut problems = Vec::new();
    if got.len() != docs {
        problems.push(format!("{} paths for {docs} documents", got.len()));
    }
    for (path, records) in got {
        let [one] = records.as_slice() else {
            problems.push(format!("{path} {} times", records.len()));
            continue;
        };
        let i: usize = path
            .rsplit('-')
            .next()
            .and_then(|n| n.strip_suffix(".md"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(usize::MAX);
        if i >= docs {
            problems.push(format!("{path} is not a document of the collection"));
            continue;
        }
        let (category, tags) = research::expected(i);
        let tags: BTreeSet<String> = tags.iter().map(|t| t.to_string()).collect();
        if one.category != json!(category) || one.tags != tags {
            problems.push(format!("{path} has {:?} {:?}", one.category, one.tags));
        }
        match reference.get(path).map(Vec::as_slice) {
            Some([want]) if want.summary == one.summary && want.related == one.related => {}
            Some([want]) => problems.push(format!(
                "{path}: {:?} → {:?}, links {:?}, uninterrupted {:?}",
                one.summary, want.summary, one.related, want.related
            )),
            _ => problems.push(format!("{path} not in the uninterrupted run")),
        }
    }
    problems
}

async fn organize_part(bin: &Path, seeds: u64) -> (u64, u64) {
    let docs = env_usize("DOCS", 100);
    let llm = FakeLlm::start().await;
    llm.set(
        Provider::OpenAi,
        Behaviour::Script(Script(Arc::new(research::model))),
    );
    llm.set_latency(Provider::OpenAi, Duration::from_millis(50));
    let organizer = Organizer {
        bin: bin.to_owned(),
        llm,
        docs,
    };
    let (clean, reference) = organizer.one(None, None).await;
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    let links: usize = reference
        .values()
        .flatten()
        .map(|o| o.related.len())
        .sum::<usize>()
        / 2;
    println!(
        "\norganize: {docs} documents (model 50 ms per request), 20% injected faults on Airtable's record requests, SIGKILL at a seeded moment, then re-run until nothing failed; {seeds} seeds"
    );
    println!(
        "reference (no faults, not killed): {} records, {links} related-document links\n",
        reference.len()
    );
    println!(
        "{:>5} {:>9} {:>15} {:>5} {:>9}  outcome",
        "seed", "killed s", "records at kill", "runs", "faults"
    );
    // The schema, 7 fields, ⌈docs/10⌉ upserts and about as many link updates at 5/s.
    let expected = (9 + 2 * docs.div_ceil(10)) as f64 / 5.0;
    let mut passed = 0;
    for seed in 1..=seeds {
        let kill_at = 0.3 + (mix(seed ^ 0x0f0f) % 1000) as f64 / 1000.0 * expected;
        let (run, got) = organizer.one(Some(seed), Some(kill_at)).await;
        let mut problems = run.problems;
        problems.extend(compare(&got, &reference, docs));
        let outcome = if problems.is_empty() {
            passed += 1;
            format!(
                "every document exactly once, as the model said, links as uninterrupted ({docs})"
            )
        } else {
            format!(
                "LOST OR DUPLICATED: {}",
                problems
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        let killed = if run.killed_at.is_nan() {
            "finished".to_owned()
        } else {
            format!("{:.2}", run.killed_at)
        };
        println!(
            "{seed:>5} {killed:>9} {:>15} {:>5} {:>9}  {outcome}",
            run.landed_at_kill, run.runs, run.injected
        );
    }
    println!("\n{passed} of {seeds} seeds: every document exactly once, its links intact");
    (passed, seeds)
}

async fn import_part(bin: &Path, seeds: u64) -> (u64, u64) {
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
        let o = one_seed(bin, seed, rows).await;
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
    (passed, seeds)
}

#[tokio::main]
async fn main() {
    let bin = common::binary();
    let seeds = env_usize("SEEDS", 20) as u64;
    let part = std::env::var("PART").unwrap_or_default();
    let mut failed = 0;
    if part.is_empty() || part == "import" {
        let (passed, of) = import_part(&bin, seeds).await;
        failed += of - passed;
    }
    if part.is_empty() || part == "organize" {
        let (passed, of) = organize_part(&bin, seeds).await;
        failed += of - passed;
    }
    if failed > 0 {
        std::process::exit(1);
    }
}
