//! Every plugin's published tools (names, schemas, annotations), as `tools/list` returns them
//! over MCP. A schema change shows up in review as a snapshot diff.

use crate::support::Fixture;

async fn published(toolset: &str) -> serde_json::Value {
    let fx = Fixture::new();
    let (client, _) = fx.stdio(&["--toolsets", toolset]).await;
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
