//! Every plugin's published tools (names, schemas, annotations), as `tools/list` returns them
//! over MCP. A schema change shows up in review as a snapshot diff.

use rmcp::{RoleClient, service::RunningService};

use crate::support::{Fixture, Recorder};

async fn published(toolset: &str) -> serde_json::Value {
    let fx = Fixture::new();
    let (client, _) = fx.stdio(&["--toolsets", toolset]).await;
    tools_of(client).await
}

async fn tools_of(client: RunningService<RoleClient, Recorder>) -> serde_json::Value {
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
    value
}

#[tokio::test]
async fn files_tools() {
    insta::assert_json_snapshot!(published("files").await);
}

#[tokio::test]
async fn testkit_tools() {
    insta::assert_json_snapshot!(published("testkit").await);
}

#[tokio::test]
async fn airtable_tools() {
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
    let tools = tools_of(client).await;
    assert_eq!(tools.as_array().map(Vec::len), Some(14), "{tools}");
    insta::assert_json_snapshot!(tools);
}

#[tokio::test]
async fn agents_tools() {
    // The shipped manifest with two providers keyed (no request is made to list tools).
    let fx = Fixture::empty();
    fx.manifest("agents", include_str!("../../plugins/agents/plugin.toml"));
    let (client, _) = fx
        .stdio_env(
            &["--toolsets", "agents"],
            &[
                ("OPENAI_API_KEY", "sk-snapshot"),
                ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
                ("GEMINI_API_KEY", "snapshot"),
                ("GEMINI_BASE_URL", "http://127.0.0.1:9"),
            ],
            None,
        )
        .await;
    let tools = tools_of(client).await;
    assert_eq!(tools.as_array().map(Vec::len), Some(2), "{tools}");
    insta::assert_json_snapshot!(tools);
}

#[tokio::test]
async fn github_tools() {
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
    let tools = tools_of(client).await;
    assert_eq!(tools.as_array().map(Vec::len), Some(9), "{tools}");
    // What the plugin costs a model's context on every turn: kept small on purpose
    // (github-mcp-server's users complain about tens of kilobytes).
    let bytes = tools.to_string().len();
    assert!(bytes < 11_000, "the github tools grew to {bytes} bytes");
    let read_only: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["annotations"]["readOnlyHint"] == true)
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(read_only.len(), 6, "{read_only:?}");
    insta::assert_json_snapshot!(tools);
}
