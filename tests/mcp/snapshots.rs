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
