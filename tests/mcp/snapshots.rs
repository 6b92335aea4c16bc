//! Every published tool (name, title, description, schemas, annotations), as `tools/list`
//! returns it over MCP, in its own snapshot file: `snapshots/tools/<tool>.snap`. A schema
//! change shows up in review as a diff of that tool's file; a tool added without a snapshot,
//! or a snapshot left behind by a removed tool, fails `every_snapshot_is_a_published_tool`.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use rmcp::{RoleClient, service::RunningService};
use serde_json::Value;

use crate::support::{Fixture, Recorder};

/// Where the per-tool snapshots live, relative to this file (insta's convention).
const FOLDER: &str = "snapshots/tools";

fn folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mcp")
        .join(FOLDER)
}

/// The snapshotted tools whose names start with `prefix` (`""` for all), by name: each `.snap`
/// file's JSON. Tests that need "every tool of a plugin" read it here, so adding a tool means
/// adding its snapshot and editing no count.
pub fn snapshotted(prefix: &str) -> BTreeMap<String, Value> {
    let mut tools = BTreeMap::new();
    for entry in std::fs::read_dir(folder()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("snap") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if !name.starts_with(prefix) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // `---`, insta's header, `---`, then the JSON.
        let body = text
            .splitn(3, "---\n")
            .nth(2)
            .unwrap_or_else(|| panic!("{} has no insta header", path.display()));
        let tool = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{} does not hold JSON: {e}", path.display()));
        tools.insert(name, tool);
    }
    tools
}

/// One snapshot per tool. Every tool is compared before the test fails, so one run shows
/// (and, outside CI, writes a `.snap.new` for) every changed tool, not only the first.
fn snapshot_each(tools: &[Value]) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(FOLDER);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    let differ: Vec<&str> = tools
        .iter()
        .filter_map(|tool| {
            let name = tool["name"].as_str().unwrap();
            let checked = catch_unwind(AssertUnwindSafe(|| {
                settings.bind(|| insta::assert_json_snapshot!(name, tool));
            }));
            checked.is_err().then_some(name)
        })
        .collect();
    assert!(
        differ.is_empty(),
        "snapshots differ or are missing: {differ:?}"
    );
}

async fn files() -> Vec<Value> {
    let fx = Fixture::new();
    let (client, _) = fx.stdio(&["--toolsets", "files"]).await;
    tools_of(client).await
}

async fn testkit() -> Vec<Value> {
    let fx = Fixture::new();
    let (client, _) = fx.stdio(&["--toolsets", "testkit"]).await;
    tools_of(client).await
}

async fn airtable() -> Vec<Value> {
    // The shipped manifest. The plugin is ready once it has a key, any key: it makes no
    // request until a tool is called, so the address may lead nowhere.
    let fx = Fixture::empty();
    fx.manifest(
        "airtable",
        include_str!("../../plugins/airtable/plugin.toml"),
    );
    let (client, _) = fx
        .stdio_env(
            &["--toolsets", "airtable"],
            &[
                ("AIRTABLE_API_KEY", "patSNAPSHOT0000000.0"),
                ("AIRTABLE_BASE_URL", "http://127.0.0.1:9"),
            ],
            None,
        )
        .await;
    tools_of(client).await
}

async fn agents() -> Vec<Value> {
    // The shipped manifest with two providers keyed (no request is made to list tools).
    let fx = Fixture::empty();
    fx.manifest("agents", include_str!("../../plugins/agents/plugin.toml"));
    let (client, _) = fx
        .stdio_env(
            &["--toolsets", "agents"],
            &[
                ("OPENAI_API_KEY", "sk-snapshot"),
                ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
                ("GEMINI_API_KEY", "gemini-snapshot-key"),
                ("GEMINI_BASE_URL", "http://127.0.0.1:9"),
            ],
            None,
        )
        .await;
    tools_of(client).await
}

async fn github() -> Vec<Value> {
    // The shipped manifest; listing tools makes no request, so the address may lead nowhere.
    let fx = Fixture::empty();
    fx.manifest("github", include_str!("../../plugins/github/plugin.toml"));
    let (client, _) = fx
        .stdio_env(
            &["--toolsets", "github"],
            &[
                ("GITHUB_TOKEN", "ghp_snapshot"),
                ("GITHUB_API_URL", "http://127.0.0.1:9"),
            ],
            None,
        )
        .await;
    tools_of(client).await
}

async fn organize() -> Vec<Value> {
    // The shipped manifest alone: the tool is published whether or not the plugins it works
    // through are ready (a call says which are missing).
    let fx = Fixture::empty();
    fx.manifest(
        "organize",
        include_str!("../../plugins/organize/plugin.toml"),
    );
    let (client, _) = fx.stdio(&["--toolsets", "organize"]).await;
    tools_of(client).await
}

async fn tools_of(client: RunningService<RoleClient, Recorder>) -> Vec<Value> {
    let tools = client.list_all_tools().await.unwrap();
    client.cancel().await.unwrap();
    let value = serde_json::to_value(&tools).unwrap();
    let text = value.to_string();
    assert!(
        !text.contains("$ref") && !text.contains("$defs") && !text.contains("$schema"),
        "{text}"
    );
    for tool in &tools {
        assert_eq!(
            tool.input_schema.get("type").and_then(|t| t.as_str()),
            Some("object"),
            "{}",
            tool.name
        );
    }
    match value {
        Value::Array(tools) => tools,
        other => panic!("tools/list gave {other}"),
    }
}

#[tokio::test]
async fn files_tools() {
    snapshot_each(&files().await);
}

#[tokio::test]
async fn testkit_tools() {
    snapshot_each(&testkit().await);
}

#[tokio::test]
async fn airtable_tools() {
    snapshot_each(&airtable().await);
}

#[tokio::test]
async fn agents_tools() {
    snapshot_each(&agents().await);
}

#[tokio::test]
async fn organize_tools() {
    snapshot_each(&organize().await);
}

#[tokio::test]
async fn github_tools() {
    let tools = github().await;
    // What the plugin costs a model's context on every turn: kept small on purpose
    // (github-mcp-server's users complain about tens of kilobytes).
    let bytes = serde_json::to_string(&tools).unwrap().len();
    assert!(bytes < 11_000, "the github tools grew to {bytes} bytes");
    snapshot_each(&tools);
}

/// The snapshot folder holds exactly the published tools: a removed (or renamed) tool's
/// snapshot would otherwise linger unchecked, and a new tool would go unreviewed.
#[tokio::test]
async fn every_snapshot_is_a_published_tool() {
    let (files, testkit, airtable, agents, github, organize) = tokio::join!(
        files(),
        testkit(),
        airtable(),
        agents(),
        github(),
        organize()
    );
    let mut published = BTreeSet::new();
    for tool in [files, testkit, airtable, agents, github, organize]
        .iter()
        .flatten()
    {
        let name = tool["name"].as_str().unwrap().to_owned();
        assert!(
            published.insert(name.clone()),
            "{name} is published twice: its snapshot file would be shared"
        );
    }
    let snapshotted: BTreeSet<String> = snapshotted("").into_keys().collect();
    let mut problems = Vec::new();
    let orphans: Vec<String> = snapshotted
        .difference(&published)
        .map(|name| format!("tests/mcp/{FOLDER}/{name}.snap"))
        .collect();
    if !orphans.is_empty() {
        problems.push(format!(
            "no published tool has these snapshots; delete them: {orphans:?}"
        ));
    }
    let missing: Vec<&String> = published.difference(&snapshotted).collect();
    if !missing.is_empty() {
        problems.push(format!(
            "these published tools have no snapshot in tests/mcp/{FOLDER}: {missing:?} (run \
             `INSTA_UPDATE=always cargo test --test mcp snapshots`, then review the new files)"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// What `tools/list` costs a client (and, in most clients, a model's context on every turn) in
/// the default mode with every built-in plugin configured, all four providers keyed: at most
/// 32 KB of JSON. Past that, discovery mode (`--tool-discovery`) is the answer, not more tools
/// in the default list.
#[tokio::test]
async fn the_default_tool_list_of_every_builtin_fits_in_32_kb() {
    let fx = Fixture::empty();
    let data = fx.data();
    for (name, text) in [
        (
            "airtable",
            include_str!("../../plugins/airtable/plugin.toml"),
        ),
        ("github", include_str!("../../plugins/github/plugin.toml")),
        ("agents", include_str!("../../plugins/agents/plugin.toml")),
        (
            "organize",
            include_str!("../../plugins/organize/plugin.toml"),
        ),
        ("files", include_str!("../../plugins/files/plugin.toml")),
    ] {
        fx.manifest(name, text);
    }
    let nowhere = "http://127.0.0.1:9";
    let roots = data.display().to_string();
    let (client, _) = fx
        .stdio_env(
            &[],
            &[
                ("AIRTABLE_API_KEY", "patBUDGET000000000.0"),
                ("AIRTABLE_BASE_URL", nowhere),
                ("GITHUB_TOKEN", "ghp_budget"),
                ("GITHUB_API_URL", nowhere),
                ("PLUGBOARD_FILES_ROOTS", &roots),
                ("OPENAI_API_KEY", "sk-budget"),
                ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
                ("ANTHROPIC_API_KEY", "sk-ant-budget"),
                ("ANTHROPIC_BASE_URL", nowhere),
                ("GEMINI_API_KEY", "gemini-budget-key"),
                ("GEMINI_BASE_URL", nowhere),
                ("DEEPSEEK_API_KEY", "sk-budget-deepseek"),
                ("DEEPSEEK_BASE_URL", "http://127.0.0.1:9/v1"),
            ],
            None,
        )
        .await;
    let tools = client.list_all_tools().await.unwrap();
    client.cancel().await.unwrap();
    let names: BTreeSet<&str> = tools.iter().map(|t| &*t.name).collect();
    // Every built-in plugin is there: a plugin that failed to load would pass the budget.
    for name in [
        "airtable_list_records",
        "airtable_bulk_import",
        "airtable_ai_organize",
        "github_search_code",
        "files_read",
        "files_analyze",
        "ask",
        "consensus",
    ] {
        assert!(names.contains(name), "{name} is not published: {names:?}");
    }
    // The result as the server sends it (`{"tools":[…]}`), without the JSON-RPC envelope.
    let bytes = serde_json::json!({ "tools": tools }).to_string().len();
    eprintln!(
        "tools/list with every built-in: {} tools, {bytes} bytes",
        names.len()
    );
    assert!(
        bytes <= 32 * 1024,
        "tools/list with every built-in plugin configured is {bytes} bytes: over the 32 KB \
         budget (shorten descriptions, or publish less)"
    );
}
