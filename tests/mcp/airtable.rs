//! The `airtable` plugin against the stateful fake of the Airtable API
//! (`tests/support/airtable.rs`), driven as users drive it: the built binary, rmcp's client over
//! stdio (or the `plugboard import airtable` command), the shipped manifest's variables.
//!
//! The fake enforces Airtable's real 5 requests/s per base (a 429 and a lockout beyond it);
//! for the binary, the lockout is shortened, for the fake and the plugin alike, so the tests
//! stay fast. Tests of the lockout itself run in process under paused time with the real
//! 30 seconds ([`Setup::in_process`]). This file holds the shared setup and the bulk imports;
//! `airtable_tools.rs` the other tools.
//!
//! Every fake has its own limits, so tests with separate fakes run side by side without
//! slowing each other down. The 1,000-row imports take ~20 s each at Airtable's ceiling
//! (50 records/s): one test runs both scenarios at once (~41 s), and its name sorts early,
//! so the rest of the suite runs beside it.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use rmcp::{
    RoleClient,
    model::{CallToolResult, ClientRequest, Request, ServerResult},
    service::{PeerRequestOptions, RunningService},
};
use serde_json::{Map, Value, json};

use crate::{
    fake_airtable::{FakeAirtable, FakeConfig, Faults},
    inproc::Server,
    scenario::call,
    support::{Fixture, Recorder, text, write},
};

pub type Client = RunningService<RoleClient, Recorder>;

/// Seconds a base is refused after a 429, in the fake and in the plugin's settings, for the
/// binary (the real API, and the in-process tests: 30).
pub const LOCKOUT_SECS: u64 = 2;

/// A home with the airtable plugin (the shipped manifest's variables, test settings) and a
/// fake Airtable on its own thread, so it keeps answering whatever the test awaits; or, for a
/// paused-time test, both in process ([`Setup::in_process`]).
pub struct Setup {
    pub fx: Fixture,
    pub fake: FakeAirtable,
    pub token: String,
}

impl Setup {
    pub fn new() -> Self {
        Self::with(FakeConfig::default())
    }

    /// A fake with `config`, except the lockout, which is always [`LOCKOUT_SECS`].
    pub fn with(config: FakeConfig) -> Self {
        let token = config.token.clone();
        let fake = FakeAirtable::start_in_thread(FakeConfig {
            lockout: Duration::from_secs(LOCKOUT_SECS),
            ..config
        });
        let fx = Fixture::empty();
        fx.manifest(
            "airtable",
            &manifest(&fx, Duration::from_secs(LOCKOUT_SECS)),
        );
        Self { fx, fake, token }
    }

    /// For a paused-time test: the fake on the test's runtime with `config`'s lockout (by
    /// default Airtable's real 30 s), the plugin's setting to match; connect with
    /// [`Setup::in_process_client`].
    pub async fn in_process(config: FakeConfig) -> Self {
        let token = config.token.clone();
        let lockout = config.lockout;
        let fake = FakeAirtable::start(config).await;
        let fx = Fixture::empty();
        fx.manifest("airtable", &manifest(&fx, lockout));
        Self { fx, fake, token }
    }

    /// The plugin in process, with the environment [`Setup::client`]'s server gets.
    pub async fn in_process_client(&self) -> Client {
        Server::new(&self.fx).envs(self.env()).client().await
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.fx.home.path().join("checkpoints")
    }

    /// What the server needs to reach the fake; nothing else about Airtable is inherited.
    pub fn env(&self) -> [(&str, &str); 2] {
        [
            ("AIRTABLE_API_KEY", self.token.as_str()),
            ("AIRTABLE_BASE_URL", self.fake.url.as_str()),
        ]
    }

    /// `plugboard serve` on stdio, connected.
    pub async fn client(&self) -> Client {
        self.fx.stdio_env(&[], &self.env(), None).await.0
    }

    /// The command line, pointed at the fake.
    pub fn cli(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = self.fx.command(args);
        cmd.envs(self.env());
        cmd
    }
}

/// The shipped manifest (its `[env]` declarations are what hand the variables to the plugin)
/// with test settings.
fn manifest(fx: &Fixture, lockout: Duration) -> String {
    let shipped = include_str!("../../plugins/airtable/plugin.toml");
    let head = shipped
        .split("\n[settings]")
        .next()
        .expect("the shipped manifest");
    assert!(head.contains("[env.AIRTABLE_API_KEY]"), "{shipped}");
    format!(
        "{head}\n[settings]\nlockout_secs = {}\ncheckpoint_dir = {:?}\nimport_roots = [{:?}]\n",
        lockout.as_secs_f64(),
        fx.home.path().join("checkpoints").display().to_string(),
        fx.data().display().to_string(),
    )
}

/// Call a tool; the result, whatever it is.
pub async fn call_tool(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    client
        .call_tool(call(tool, arguments))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

/// Call a tool that must succeed; its structured result.
pub async fn ok(client: &Client, tool: &str, arguments: Value) -> Value {
    let result = call_tool(client, tool, arguments).await;
    assert_ne!(
        result.is_error,
        Some(true),
        "{tool} failed: {}",
        text(&result)
    );
    let said = text(&result);
    result
        .structured_content
        .unwrap_or_else(|| panic!("{tool}: no structured content: {said}"))
}

/// Call a tool that must fail; the error text.
pub async fn fails(client: &Client, tool: &str, arguments: Value) -> String {
    let result = call_tool(client, tool, arguments).await;
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} should have failed: {}",
        text(&result)
    );
    text(&result)
}

/// Wait for `event` (a fake's or a client's `until`): `limit` only makes a broken test fail
/// instead of hanging; it measures nothing.
pub async fn until(what: &str, limit: Duration, event: impl Future<Output = ()>) {
    tokio::time::timeout(limit, event)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {limit:?}"));
}

/// The `fields` of every record of a table in the fake, in creation order.
pub fn fields_of(fake: &FakeAirtable, base: &str, table: &str) -> Vec<Map<String, Value>> {
    fake.records(base, table)
        .into_iter()
        .map(|r| r["fields"].as_object().cloned().unwrap_or_default())
        .collect()
}

// ---- the 1,000-row imports ----------------------------------------------------------------

const ROWS: usize = 1000;

/// `Items`: SKU (the key), Name, Qty (number), Active (checkbox).
pub fn items_table(fake: &FakeAirtable, base: &str) {
    fake.add_table(
        base,
        "Items",
        &[
            ("SKU", "singleLineText", None),
            ("Name", "singleLineText", None),
            ("Qty", "number", Some(json!({"precision": 0}))),
            ("Active", "checkbox", None),
        ],
    );
}

fn sku(i: usize) -> String {
    format!("SKU-{i:04}")
}

/// `rows` rows for `Items`, as CSV text: Qty is 3·i, every even row is active.
fn items_csv(path: &Path, rows: usize) {
    let mut csv = String::from("SKU,Name,Qty,Active\n");
    for i in 1..=rows {
        let active = if i % 2 == 0 { "yes" } else { "no" };
        csv.push_str(&format!("{},Item {i},{},{active}\n", sku(i), 3 * i));
    }
    write(path, &csv);
}

/// Every row of [`items_csv`] is in the fake exactly once, with its values.
fn assert_items_exactly_once(fake: &FakeAirtable, base: &str, rows: usize) {
    let records = fields_of(fake, base, "Items");
    let mut by_sku: HashMap<String, Vec<&Map<String, Value>>> = HashMap::new();
    for r in &records {
        let key = r["SKU"]
            .as_str()
            .expect("every record has a SKU")
            .to_owned();
        by_sku.entry(key).or_default().push(r);
    }
    let twice: Vec<(&String, usize)> = by_sku
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(k, v)| (k, v.len()))
        .collect();
    assert!(twice.is_empty(), "duplicated rows: {twice:?}");
    assert_eq!(records.len(), rows, "records in the fake");
    for i in 1..=rows {
        let r = by_sku
            .get(&sku(i))
            .unwrap_or_else(|| panic!("{} is missing", sku(i)))[0];
        assert_eq!(r["Name"], json!(format!("Item {i}")), "{r:?}");
        assert_eq!(r["Qty"], json!(3 * i), "{r:?}");
        // The fake leaves an unchecked checkbox out, as Airtable does.
        assert_eq!(
            r.get("Active"),
            (i % 2 == 0).then_some(&json!(true)),
            "{r:?}"
        );
    }
}

/// The fake never had to refuse the plugin: no 429 from its limiter, no lockout, and no
/// rolling second with more than five requests to the base.
fn assert_never_over_the_limit(fake: &FakeAirtable, base: &str) {
    let stats = fake.stats();
    let max = stats.max_requests_1s_per_base.get(base).copied();
    assert_eq!(stats.rate_limited_429, 0, "{stats:?}");
    assert_eq!(stats.lockouts_started, 0, "{stats:?}");
    assert!(max.is_some_and(|m| m <= 5), "{stats:?}");
}

/// The two 1,000-row imports, side by side: each has its own fake (and so its own 5 requests/s
/// per base), so neither slows the other, and together they take as long as the longer one.
#[tokio::test]
async fn import_1000_rows_paced_and_under_faults() {
    tokio::join!(
        paced_import_then_rerun(),
        import_under_faults_killed_then_resumed()
    );
}

/// A normal 1,000-row import through the MCP tool, with a progress token: the fake's limiter
/// never refuses a request, progress arrives while the rows land, every row lands once. Run
/// again, the same import creates nothing and updates every row.
async fn paced_import_then_rerun() {
    let s = Setup::new();
    let base = s.fake.add_base("Imports", "create");
    items_table(&s.fake, &base);
    items_csv(&s.fx.data().join("items.csv"), ROWS);
    let client = s.client().await;
    let arguments =
        json!({"base": base, "table": "Items", "path": "items.csv", "key_fields": ["SKU"]});

    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(call(
                "airtable_bulk_import",
                arguments.clone(),
            ))),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    let token = handle.progress_token.clone();
    let recorder = client.service().clone();
    until(
        "10 progress notifications",
        Duration::from_secs(60),
        recorder.until(|r| r.progress.lock().unwrap().len() >= 10),
    )
    .await;
    let landed = s.fake.records(&base, "Items").len();
    assert!(
        landed < ROWS,
        "progress should arrive during the import; {landed} rows had landed"
    );
    let response = tokio::time::timeout(Duration::from_secs(120), handle.await_response())
        .await
        .expect("the import finished within 120 s")
        .unwrap();
    let ServerResult::CallToolResult(result) = response else {
        panic!("not a tool result: {response:?}")
    };
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    let report = result.structured_content.expect("a report");
    assert_eq!(report["rows"], ROWS, "{report}");
    assert_eq!(report["created"], ROWS, "{report}");
    assert_eq!(report["updated"], 0, "{report}");
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(report["batches"], 100, "{report}");
    assert_eq!(report["resumed_batches"], 0, "{report}");
    assert_eq!(report["skipped"], json!([]), "{report}");
    assert_eq!(report["failed"], json!([]), "{report}");
    assert_items_exactly_once(&s.fake, &base, ROWS);
    let stats = s.fake.stats();
    eprintln!(
        "airtable import of {ROWS} rows: {:.1} s, {:.1} records/s; fake: {} requests, {} 429s, \
         at most {:?} requests to the base in a second",
        report["seconds"].as_f64().unwrap(),
        report["records_per_second"].as_f64().unwrap(),
        stats.requests_total,
        stats.total_429(),
        stats.max_requests_1s_per_base.get(&base),
    );
    assert_eq!(stats.total_429(), 0, "{stats:?}");
    assert_never_over_the_limit(&s.fake, &base);
    // 100 upserts and one schema read; nothing retried.
    assert_eq!(stats.requests_per_base.get(&base), Some(&101), "{stats:?}");

    // Progress: the client's token, increasing, out of the number of rows, up to all of them.
    let progress = recorder.progress.lock().unwrap().clone();
    assert!(progress.len() >= 10, "{progress:?}");
    for p in &progress {
        assert_eq!(p.progress_token, token);
        assert_eq!(p.total, Some(ROWS as f64), "{p:?}");
    }
    let steps: Vec<f64> = progress.iter().map(|p| p.progress).collect();
    assert!(
        steps.windows(2).all(|w| w[0] < w[1]),
        "progress must increase: {steps:?}"
    );
    assert_eq!(steps.last(), Some(&(ROWS as f64)), "{steps:?}");

    // The same import again: nothing new, every row updated, still once each.
    let again = ok(&client, "airtable_bulk_import", arguments).await;
    assert_eq!(again["created"], 0, "{again}");
    assert_eq!(again["updated"], ROWS, "{again}");
    assert_eq!(again["resumed_batches"], 0, "{again}");
    assert_eq!(again["complete"], true, "{again}");
    assert_items_exactly_once(&s.fake, &base, ROWS);
    assert_never_over_the_limit(&s.fake, &base);
    assert_eq!(s.fake.stats().total_429(), 0);
    client.cancel().await.unwrap();
}

/// A bulk import through the REST API: its rows are counted in `/metrics` by outcome, a row
/// that cannot be converted as skipped.
#[tokio::test]
async fn bulk_import_rows_are_counted_in_the_metrics() {
    let s = Setup::new();
    let base = s.fake.add_base("Imports", "create");
    items_table(&s.fake, &base);
    let path = s.fx.data().join("items.csv");
    items_csv(&path, 12);
    let mut csv = std::fs::read_to_string(&path).unwrap();
    csv.push_str("SKU-BAD,Bad row,not a number,yes\n");
    write(&path, &csv);
    let api = crate::rest::Api::serve(&s.fx, s.cli(&["serve", "--http", "127.0.0.1:0"])).await;
    let (status, result) = api
        .post(
            "/api/v1/tools/airtable_bulk_import/call",
            json!({"base": base, "table": "Items", "path": "items.csv", "key_fields": ["SKU"]}),
        )
        .await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["isError"], false, "{result}");
    assert_eq!(s.fake.records(&base, "Items").len(), 12);
    let metrics = api.metrics().await;
    let rows = |outcome: &str| {
        let outcome = format!("outcome=\"{outcome}\"");
        metrics.sample(
            "plugboard_import_rows_total",
            &["service=\"airtable\"", &outcome],
        )
    };
    assert_eq!(rows("created"), 12.0, "{result}");
    assert_eq!(rows("skipped"), 1.0, "{result}");
    assert_eq!(rows("failed"), 0.0);
}

/// A 1,000-row import through `plugboard import airtable` while the fake fails ~20% of the
/// record requests (429, 500, 503, resets before and after applying the write), killed with
/// SIGKILL when ~40% of the rows have landed. Run again, it resumes from its checkpoint and
/// every row ends up in the table exactly once, with its values.
async fn import_under_faults_killed_then_resumed() {
    let s = Setup::new();
    let base = s.fake.add_base("Faulty", "create");
    items_table(&s.fake, &base);
    let file = s.fx.data().join("items.csv");
    items_csv(&file, ROWS);
    let mix = Faults {
        seed: 20,
        rate_429: 0.04,
        rate_500: 0.04,
        rate_503: 0.04,
        rate_reset_before: 0.04,
        rate_reset_after: 0.04,
    };
    s.fake.set_faults(mix.clone());
    let file = file.display().to_string();
    let import = [
        "import", "airtable", "--base", &base, "--table", "Items", &file, "--key", "SKU", "--json",
    ];
    let log = s.fx.home.path().join("first-run.log");
    s.fx.log_file(&log);

    let mut first = s
        .cli(&import)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    until(
        "40% of the rows in the fake",
        Duration::from_secs(90),
        s.fake
            .until(|f| f.records(&base, "Items").len() >= ROWS * 4 / 10),
    )
    .await;
    // The worst moment to die: a batch has landed, its answer was lost (the connection reset
    // after the write), and the import waits to send it again, so the checkpoint does not
    // have it yet. SIGKILL then.
    let resets = s.fake.stats().injected_reset_after;
    s.fake.set_faults(Faults {
        rate_reset_after: 1.0,
        ..Faults::default()
    });
    until(
        "a batch applied whose answer is lost",
        Duration::from_secs(10),
        s.fake.until(|f| f.stats().injected_reset_after > resets),
    )
    .await;
    first.start_kill().unwrap();
    let status = first.wait().await.unwrap();
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");
    }
    s.fake.set_faults(mix);
    let at_kill = s.fake.records(&base, "Items").len();
    assert!(at_kill < ROWS, "killed too late: {at_kill} rows had landed");
    let checkpoints: Vec<_> = std::fs::read_dir(s.checkpoints())
        .expect("the killed import left its checkpoint folder")
        .collect();
    assert!(!checkpoints.is_empty(), "no checkpoint was left");
    eprintln!(
        "faulty import killed after {:.1} s with {at_kill} rows landed",
        started.elapsed().as_secs_f64()
    );
    // A person restarting an import takes longer than the fake's one-second window; without
    // this pause, the killed process's last requests and the new one's first could share a
    // second, which is two clients, not the plugin, overdrawing the base.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Run again until complete: under 20% faults, a run may give up on a request after its six
    // attempts (the report says so and keeps the checkpoint); every run must resume.
    let mut runs = Vec::new();
    let report = loop {
        let out = tokio::time::timeout(Duration::from_secs(180), s.fx.run(&mut s.cli(&import)))
            .await
            .expect("the import run finished within 180 s");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        runs.push((out.status.code(), stdout.clone(), stderr.clone()));
        if out.status.success() {
            break serde_json::from_str::<Value>(&stdout)
                .unwrap_or_else(|e| panic!("the report is JSON ({e}): {stdout}"));
        }
        assert!(
            stderr.contains("continues from its checkpoint"),
            "a failed run must keep its checkpoint: {stderr}"
        );
        assert!(
            runs.len() < 3,
            "three runs did not complete the import: {runs:?}"
        );
    };
    eprintln!(
        "faulty import resumed in {} run(s): {report}\nfake: {:?}",
        runs.len(),
        s.fake.stats()
    );
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(report["rows"], ROWS, "{report}");
    let resumed = report["resumed_batches"].as_u64().unwrap();
    assert!(resumed > 0 && resumed < 100, "{report}");
    if runs.len() == 1 {
        // The checkpoint has what was done, except the batch that landed unanswered (and at
        // most the three others in flight): those are sent again, as updates.
        let checkpointed = resumed as usize * 10;
        assert!(
            checkpointed < at_kill && checkpointed + 40 >= at_kill,
            "{at_kill} rows had landed: {report}"
        );
    }
    assert_eq!(
        report["created"].as_u64().unwrap() + report["updated"].as_u64().unwrap(),
        ROWS as u64,
        "each batch counted once: {report}"
    );
    assert_eq!(report["failed"], json!([]), "{report}");
    assert_eq!(report["skipped"], json!([]), "{report}");
    assert_items_exactly_once(&s.fake, &base, ROWS);
    let first_log = std::fs::read_to_string(&log).unwrap();
    for (_, stdout, stderr) in &runs {
        for text in [stdout, stderr, &first_log] {
            assert!(!text.contains(&s.token), "the token was printed: {text}");
        }
    }

    let stats = s.fake.stats();
    for (kind, n) in [
        ("429", stats.injected_429),
        ("500", stats.injected_500),
        ("503", stats.injected_503),
        ("reset before", stats.injected_reset_before),
        ("reset after", stats.injected_reset_after),
    ] {
        assert!(n > 0, "no injected {kind}: {stats:?}");
    }
    assert_never_over_the_limit(&s.fake, &base);
    // The checkpoint of a completed import is gone.
    let left: Vec<_> = std::fs::read_dir(s.checkpoints())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".json"))
        .collect();
    assert!(
        left.is_empty(),
        "checkpoints left after completion: {left:?}"
    );
}

// ---- the import report, import folders, progress-free small imports ------------------------

/// Skipped rows (no key, a repeated key, a value that is not a number) and failed rows (a
/// select value that is not an option, without typecast) come back with their reasons, and
/// the other rows of the same batch land.
#[tokio::test]
async fn import_report_lists_skipped_and_failed_rows_and_the_rest_lands() {
    let s = Setup::new();
    let base = s.fake.add_base("Stock", "create");
    s.fake.add_table(
        &base,
        "Stock",
        &[
            ("SKU", "singleLineText", None),
            ("Qty", "number", Some(json!({"precision": 0}))),
            (
                "Size",
                "singleSelect",
                Some(json!({"choices": ["S", "M", "L"]})),
            ),
        ],
    );
    // Rows (1-based): 2 has no key, 3 a size that is not an option, 4 repeats row 1's key,
    // 5 a quantity that is not a number. The rest are good, and rows 1-13 make one batch of
    // ten sendable rows with row 3 among them.
    let mut csv = String::from("SKU,Qty,Size\nA-01,1,S\n,2,M\nA-03,3,XXL\nA-01,4,L\nA-05,five,S\n");
    for i in 6..=14 {
        csv.push_str(&format!("A-{i:02},{i},M\n"));
    }
    write(&s.fx.data().join("stock.csv"), &csv);
    let client = s.client().await;
    let report = ok(
        &client,
        "airtable_bulk_import",
        json!({"base": base, "table": "Stock", "path": "stock.csv", "key_fields": ["SKU"]}),
    )
    .await;
    assert_eq!(report["rows"], 14, "{report}");
    assert_eq!(report["created"], 10, "{report}");
    assert_eq!(report["complete"], true, "{report}");
    let problems = |k: &str| -> Vec<(u64, String)> {
        report[k]
            .as_array()
            .unwrap_or_else(|| panic!("{k} in {report}"))
            .iter()
            .map(|p| {
                (
                    p["row"].as_u64().unwrap(),
                    p["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let skipped = problems("skipped");
    assert_eq!(
        skipped.iter().map(|p| p.0).collect::<Vec<_>>(),
        [2, 4, 5],
        "{report}"
    );
    assert!(skipped[0].1.contains("no value for the key"), "{skipped:?}");
    assert!(skipped[1].1.contains("same key as row 1"), "{skipped:?}");
    assert!(
        skipped[2].1.contains("Qty") && skipped[2].1.contains("not a number"),
        "{skipped:?}"
    );
    let failed = problems("failed");
    assert_eq!(
        failed.iter().map(|p| p.0).collect::<Vec<_>>(),
        [3],
        "{report}"
    );
    assert!(
        failed[0].1.contains("XXL") && failed[0].1.contains("typecast"),
        "{failed:?}"
    );

    let records = fields_of(&s.fake, &base, "Stock");
    let mut skus: Vec<&str> = records.iter().map(|r| r["SKU"].as_str().unwrap()).collect();
    skus.sort();
    let mut expected = vec!["A-01".to_owned()];
    expected.extend((6..=14).map(|i| format!("A-{i:02}")));
    assert_eq!(skus, expected, "{records:?}");
    // Row 1's values, not those of the later row with its key.
    let a01 = records.iter().find(|r| r["SKU"] == "A-01").unwrap();
    assert_eq!(a01["Qty"], 1);
    assert_eq!(a01["Size"], "S");
    // The refused row did not add its value as a new option.
    let schema = s.fake.table_schema(&base, "Stock");
    assert!(!schema.to_string().contains("XXL"), "{schema}");
    client.cancel().await.unwrap();
}

/// Bulk import reads through the one sandbox the files plugin uses: only files inside the import
/// folders, never a secret inside them, never through a symlink that leaves them. Anything else
/// is refused before a single request reaches Airtable, and the file's content is not shown.
#[tokio::test]
async fn import_reads_only_through_the_sandbox_and_imports_nothing_else() {
    let s = Setup::new();
    let base = s.fake.add_base("Paths", "create");
    items_table(&s.fake, &base);
    let outside = s.fx.home.path().join("outside.csv");
    items_csv(&outside, 3);
    // Secrets inside the folder: excluded by the same default globs as the files plugin's.
    items_csv(&s.fx.data().join(".env.csv"), 3);
    std::fs::create_dir_all(s.fx.data().join(".ssh")).unwrap();
    items_csv(&s.fx.data().join(".ssh/keys.csv"), 3);
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&outside, s.fx.data().join("link.csv")).unwrap();
        std::os::unix::fs::symlink(
            s.fx.data().join(".env.csv"),
            s.fx.data().join("env-link.csv"),
        )
        .unwrap();
    }
    let client = s.client().await;
    let mut refusals = vec![
        (outside.display().to_string(), "outside the folders"),
        ("../outside.csv".to_owned(), "climb out"),
        (
            format!("{}/../outside.csv", s.fx.data().display()),
            "outside the folders",
        ),
        (
            ".env.csv".to_owned(),
            "excluded by the `exclude` setting of the airtable plugin",
        ),
        (".ssh/keys.csv".to_owned(), "excluded"),
    ];
    if cfg!(unix) {
        refusals.push(("link.csv".to_owned(), "leads outside"));
        refusals.push(("env-link.csv".to_owned(), "excluded"));
    }
    for (path, why) in refusals {
        let error = fails(
            &client,
            "airtable_bulk_import",
            json!({"base": base, "table": "Items", "path": path, "key_fields": ["SKU"]}),
        )
        .await;
        assert!(
            error.starts_with("refused:") && error.contains(why),
            "{path}: {error}"
        );
        assert!(
            !error.contains("SKU-0001"),
            "the file's content leaked: {error}"
        );
    }
    assert!(s.fake.records(&base, "Items").is_empty());
    assert_eq!(s.fake.stats().requests_total, 0, "{:?}", s.fake.stats());

    // The same file inside the folder is imported (the refusals were about the place).
    items_csv(&s.fx.data().join("inside.csv"), 3);
    let report = ok(
        &client,
        "airtable_bulk_import",
        json!({"base": base, "table": "Items", "path": "inside.csv", "key_fields": ["SKU"]}),
    )
    .await;
    assert_eq!(report["created"], 3, "{report}");
    assert_items_exactly_once(&s.fake, &base, 3);
    client.cancel().await.unwrap();
}

/// With no import folder configured, a model can import no file at all (there is no implicit
/// "current folder"), and says what to set; inline rows still work. A person running
/// `plugboard import` names a file in the folder they are in, and that folder is read.
#[tokio::test]
async fn with_no_import_folder_a_model_reads_no_file_and_the_cli_reads_its_own_folder() {
    let s = Setup::new();
    let manifest = manifest(&s.fx, Duration::from_secs(LOCKOUT_SECS));
    let without: String = manifest
        .lines()
        .filter(|l| !l.starts_with("import_roots"))
        .map(|l| format!("{l}\n"))
        .collect();
    s.fx.manifest("airtable", &without);
    let base = s.fake.add_base("Nowhere", "create");
    items_table(&s.fake, &base);
    items_csv(&s.fx.home.path().join("here.csv"), 4);
    let client = s.client().await;
    let error = fails(
        &client,
        "airtable_bulk_import",
        json!({"base": base, "table": "Items", "path": "here.csv", "key_fields": ["SKU"]}),
    )
    .await;
    assert!(
        error.starts_with("refused:")
            && error.contains("PLUGBOARD_FILES_ROOTS")
            && error.contains("`import_roots`"),
        "{error}"
    );
    assert_eq!(s.fake.stats().requests_total, 0, "{:?}", s.fake.stats());
    let inline = ok(
        &client,
        "airtable_bulk_import",
        json!({"base": base, "table": "Items", "key_fields": ["SKU"],
               "rows": [{"SKU": "SKU-9000", "Name": "inline"}]}),
    )
    .await;
    assert_eq!(inline["created"], 1, "{inline}");
    client.cancel().await.unwrap();

    let out =
        s.fx.run(&mut s.cli(&[
            "import", "airtable", "--base", &base, "--table", "Items", "--key", "SKU", "--json",
            "here.csv",
        ]))
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["created"], 4, "{report}");
    // The folder the CLI opened keeps its secrets.
    items_csv(&s.fx.home.path().join(".env.local"), 1);
    let out =
        s.fx.run(&mut s.cli(&[
            "import",
            "airtable",
            "--base",
            &base,
            "--table",
            "Items",
            "--key",
            "SKU",
            ".env.local",
        ]))
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("excluded"),
        "{stderr}"
    );
}

/// The token never reaches the server's log, at debug level, through a run with retries, a
/// 429, a 403, an unknown field, a refused token and a bad formula; nor any tool result.
#[tokio::test]
async fn the_token_never_appears_in_the_log_even_at_debug_level() {
    let token = "patSECRETsecret42.feedface0123456789abcdefSECRETfeedface0123456789";
    let s = Setup::with(FakeConfig {
        token: token.to_owned(),
        ..FakeConfig::default()
    });
    let base = s.fake.add_base("Secrets", "create");
    items_table(&s.fake, &base);
    let log = s.fx.home.path().join("serve.log");
    let mut env = s.env().to_vec();
    env.push(("PLUGBOARD_LOG", "debug"));
    let (client, _) = s.fx.stdio_env(&[], &env, Some(&log)).await;
    let mut results = Vec::new();

    results.push(
        ok(&client, "airtable_list_bases", json!({}))
            .await
            .to_string(),
    );
    // One upsert meets a 429 (waited out: a warning), then a 500 and a reset after the write
    // (both retried), then goes through. Each fault is switched off once it was served.
    s.fake.set_faults(Faults {
        rate_429: 1.0,
        ..Faults::default()
    });
    let records: Vec<Value> = (1..=3)
        .map(|i| json!({"fields": {"SKU": sku(i), "Name": format!("Item {i}")}}))
        .collect();
    let upsert = call_tool(
        &client,
        "airtable_upsert_records",
        json!({"base": base, "table": "Items", "records": records, "fields_to_merge_on": ["SKU"]}),
    );
    let faults = async {
        let limit = Duration::from_secs(20);
        until("a 429", limit, s.fake.until(|f| f.stats().injected_429 > 0)).await;
        s.fake.set_faults(Faults {
            rate_500: 1.0,
            ..Faults::default()
        });
        until("a 500", limit, s.fake.until(|f| f.stats().injected_500 > 0)).await;
        s.fake.set_faults(Faults {
            rate_reset_after: 1.0,
            ..Faults::default()
        });
        until(
            "a reset",
            limit,
            s.fake.until(|f| f.stats().injected_reset_after > 0),
        )
        .await;
        s.fake.set_faults(Faults::default());
    };
    let (upserted, ()) = tokio::join!(upsert, faults);
    assert_ne!(upserted.is_error, Some(true), "{}", text(&upserted));
    results.push(text(&upserted));
    assert_eq!(fields_of(&s.fake, &base, "Items").len(), 3);
    let table = json!({"base": base, "table": "Items"});
    let with = |extra: Value| {
        let mut a = table.clone();
        a.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        a
    };
    results.push(
        fails(
            &client,
            "airtable_create_records",
            with(json!({"records": [{"fields": {"Nmae": "x"}}]})),
        )
        .await,
    );
    results.push(
        fails(
            &client,
            "airtable_list_records",
            with(json!({"filter_by_formula": "AND({Qty} > 1"})),
        )
        .await,
    );
    s.fake.deny_base(&base);
    results.push(fails(&client, "airtable_list_records", table.clone()).await);
    s.fake.allow_base(&base);
    // The token is revoked: Airtable answers 401.
    s.fake
        .update_config(|c| c.token = "patOTHERtoken0000.0".into());
    let refused = fails(&client, "airtable_list_records", table.clone()).await;
    assert!(refused.contains("AIRTABLE_API_KEY"), "{refused}");
    results.push(refused);
    client.cancel().await.unwrap();

    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(
        stderr.contains("DEBUG"),
        "the log should be at debug level: {stderr}"
    );
    assert!(
        stderr.contains("rate limit"),
        "the 429 should be logged: {stderr}"
    );
    for secret in [token, "patSECRETsecret42", "feedface0123456789abcdef"] {
        assert!(
            !stderr.contains(secret),
            "the token is in the log:\n{stderr}"
        );
        for r in &results {
            assert!(!r.contains(secret), "the token is in a result: {r}");
        }
    }
}

/// Every call goes through one pacer per base: an import, a create and listings at the same
/// time, on one server, never make the fake refuse a request.
#[tokio::test]
async fn concurrent_calls_share_one_pacer() {
    let s = Setup::new();
    let base = s.fake.add_base("Busy", "create");
    items_table(&s.fake, &base);
    let client = s.client().await;
    let rows: Vec<Value> = (1..=100)
        .map(|i| json!({"SKU": sku(i), "Name": format!("Item {i}"), "Qty": 3 * i, "Active": i % 2 == 0}))
        .collect();
    let import = ok(
        &client,
        "airtable_bulk_import",
        json!({"base": base, "table": "Items", "rows": rows, "key_fields": ["SKU"]}),
    );
    let records: Vec<Value> = (1..=20)
        .map(|i| json!({"fields": {"SKU": format!("NEW-{i}")}}))
        .collect();
    let create = ok(
        &client,
        "airtable_create_records",
        json!({"base": base, "table": "Items", "records": records}),
    );
    let lists = async {
        for _ in 0..4 {
            ok(
                &client,
                "airtable_list_records",
                json!({"base": base, "table": "Items", "max_records": 3}),
            )
            .await;
        }
    };
    let (imported, created, ()) = tokio::join!(import, create, lists);
    assert_eq!(imported["created"], 100, "{imported}");
    assert_eq!(created["count"], 20, "{created}");
    let all = fields_of(&s.fake, &base, "Items");
    assert_eq!(all.len(), 120);
    assert_never_over_the_limit(&s.fake, &base);
    let stats = s.fake.stats();
    assert_eq!(stats.total_429(), 0, "{stats:?}");
    // 1 schema read, 10 import batches, 2 create batches, 4 listings: nothing retried.
    assert_eq!(stats.requests_total, 17, "{stats:?}");
    client.cancel().await.unwrap();
}
