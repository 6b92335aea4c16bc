//! Organizing research into Airtable with AI, against the floor of the two ceilings.
//!
//! `cargo bench --bench organize` builds the release binary and runs `plugboard organize DIR
//! --apply` on `DOCS` documents (default 500) against the fake Airtable enforcing the real
//! limits (5 requests/s per base, 50/s per token, a 30 s lockout after a 429) and the fake
//! OpenAI answering every request in 300 ms (a scripted classifier: the answer is computed
//! from the prompt). The floor is the slower of the two ceilings, each at its best:
//!
//! - the model: one taxonomy request, then ⌈DOCS / batch_documents⌉ requests classifying,
//!   then ⌈related / relate_documents⌉ requests relating (after the classes are known),
//!   `llm_in_flight` at once, 300 ms each;
//! - Airtable: the fewest requests the result needs (the schema and the records read, the
//!   fields created, ⌈DOCS / 10⌉ upserts, ⌈relinked / 10⌉ link updates) at 5 requests/s.
//!
//! Prints wall time against the floor (target: within 15%), model requests and tokens per
//! document, the 429s served (target: none), then a second run over the unchanged files
//! (target: under 2 s, no model request, no write).

mod common;
#[path = "../tests/support/airtable.rs"]
mod fake_airtable;
#[path = "../tests/support/llm.rs"]
mod fake_llm;
#[path = "common/research.rs"]
mod research;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use fake_airtable::{FakeAirtable, FakeConfig};
use fake_llm::{Behaviour, FakeLlm, Provider, Script};
use serde_json::Value;

const LATENCY: Duration = Duration::from_millis(300);
const BATCH_DOCUMENTS: usize = 8;
const LLM_IN_FLIGHT: usize = 4;
const RELATE_DOCUMENTS: usize = 10;
const AIRTABLE_RPS: f64 = 5.0;
fn main() {
    let docs: usize = std::env::var("DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let bin = common::binary();
    let airtable = FakeAirtable::start_in_thread(FakeConfig {
        per_base_rps: 5,
        per_token_rps: 50,
        lockout: Duration::from_secs(30),
        ..FakeConfig::default()
    });
    let base = airtable.add_base("Bench", "create");
    airtable.add_table(&base, "Research", &[("Title", "singleLineText", None)]);
    let llm = FakeLlm::start_in_thread();
    llm.set(
        Provider::OpenAi,
        Behaviour::Script(Script(Arc::new(research::model))),
    );
    llm.set_latency(Provider::OpenAi, LATENCY);

    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("research");
    research::write_corpus(&data, docs);
    let plugins = research::write_manifests(home.path(), 30.0);
    let organize = std::fs::read_to_string(plugins.join("organize/plugin.toml")).unwrap();
    assert!(organize.contains(&format!("batch_documents = {BATCH_DOCUMENTS}")));
    assert!(organize.contains(&format!("llm_in_flight = {LLM_IN_FLIGHT}")));

    let run = || {
        let started = Instant::now();
        let out = std::process::Command::new(&bin)
            .arg("--plugins-dir")
            .arg(&plugins)
            .args([
                "organize", "--base", &base, "--table", "Research", "--apply", "--json",
            ])
            .arg(&data)
            .current_dir(home.path())
            .env("AIRTABLE_API_KEY", fake_airtable::DEFAULT_TOKEN)
            .env("AIRTABLE_BASE_URL", &airtable.url)
            .env("OPENAI_API_KEY", fake_llm::KEY)
            .env("OPENAI_BASE_URL", llm.openai_base())
            .env("PLUGBOARD_LOG", "warn")
            .env_remove("PLUGBOARD_FILES_ROOTS")
            .output()
            .expect("run plugboard organize");
        let wall = started.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "organize failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
        (wall, report)
    };

    let (wall, report) = run();
    let records = airtable.records(&base, "Research");
    assert_eq!(records.len(), docs, "one record per document");
    let stats = airtable.stats();
    let model_requests = llm.request_count(Provider::OpenAi);
    let relinked = report["link_updates"].as_u64().unwrap_or(0) as usize;
    let fields = report["fields_to_create"].as_array().map_or(0, Vec::len);
    let related = report["links_judged"].as_u64().unwrap_or(0) as usize;
    let llm_floor = LATENCY.as_secs_f64()
        * (1 + docs.div_ceil(BATCH_DOCUMENTS).div_ceil(LLM_IN_FLIGHT)
            + related.div_ceil(RELATE_DOCUMENTS).div_ceil(LLM_IN_FLIGHT)) as f64;
    let airtable_requests = 2 + fields + docs.div_ceil(10) + relinked.div_ceil(10);
    let airtable_floor = airtable_requests as f64 / AIRTABLE_RPS;
    let floor = llm_floor.max(airtable_floor);
    let usage = &report["models"][0];
    let (input, output) = (
        usage["input_tokens"].as_u64().unwrap_or(0),
        usage["output_tokens"].as_u64().unwrap_or(0),
    );

    println!(
        "organize {docs} documents (fake OpenAI {} ms per request; fake Airtable 5 req/s per base, 50/s per token, 30 s lockout)\n",
        LATENCY.as_millis()
    );
    println!(
        "floor, the model: 1 + ⌈{docs}/{BATCH_DOCUMENTS}⌉ + ⌈{related}/{RELATE_DOCUMENTS}⌉ requests, {LLM_IN_FLIGHT} at once     {llm_floor:>7.1} s"
    );
    println!(
        "floor, Airtable: {airtable_requests} requests (2 reads, {fields} fields, {} upserts, {} link updates) at 5/s   {airtable_floor:>7.1} s",
        docs.div_ceil(10),
        relinked.div_ceil(10)
    );
    println!(
        "plugboard organize --apply, wall clock   {wall:>7.1} s   × {:.3} of the floor ({floor:.1} s)",
        wall / floor
    );
    println!(
        "model requests {model_requests} ({:.3} per document) · tokens {input} in + {output} out ({:.0} + {:.0} per document)",
        model_requests as f64 / docs as f64,
        input as f64 / docs as f64,
        output as f64 / docs as f64
    );
    println!(
        "Airtable requests {} · 429s served {} · most requests to the base in any 1 s window {}",
        stats.requests_total,
        stats.total_429(),
        stats
            .max_requests_1s_per_base
            .get(&base)
            .copied()
            .unwrap_or(0)
    );
    println!(
        "created {} · categories {} · tags {} · links {}",
        report["create"].as_array().map_or(0, Vec::len),
        report["categories"],
        report["tags"],
        report["links"]
    );

    // A new process knows nothing of the last one's requests: started within the same
    // second, its first reads would meet Airtable's rolling window (and a 30 s lockout).
    std::thread::sleep(Duration::from_millis(1100));
    let before = airtable.stats();
    let (again, report) = run();
    let after = airtable.stats();
    println!(
        "\nre-run over unchanged files: {again:.2} s · model requests {} · Airtable requests {} (writes {}) · 429s {} · unchanged {}",
        llm.request_count(Provider::OpenAi) - model_requests,
        after.requests_total - before.requests_total,
        report["airtable_requests"]["writes"],
        after.total_429() - before.total_429(),
        report["unchanged"]
    );
}
