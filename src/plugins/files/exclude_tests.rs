//! The `exclude` setting through the tools: secrets are refused by `read` and absent from
//! `list`, `search` and `analyze`, links to them included.

use std::fs;

use serde_json::json;

use super::{FilesSettings, tests::*};
use crate::plugin::ToolError;

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("sub")).unwrap();
    fs::create_dir_all(dir.path().join(".ssh")).unwrap();
    fs::write(dir.path().join(".env"), "API_KEY=sk-secret\n").unwrap();
    fs::write(dir.path().join("sub/.env.local"), "API_KEY=sk-secret\n").unwrap();
    fs::write(dir.path().join(".ssh/id_rsa"), "API_KEY=sk-secret\n").unwrap();
    fs::write(dir.path().join(".ssh/readme.txt"), "API_KEY=sk-secret\n").unwrap();
    fs::write(dir.path().join(".env.example"), "API_KEY=\n").unwrap();
    fs::write(
        dir.path().join("notes.md"),
        "# Notes\n\nAPI_KEY goes in .env\n",
    )
    .unwrap();
    dir
}

fn refusal(result: crate::plugin::ToolOutcome) -> String {
    match result {
        Err(ToolError::Forbidden(message)) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn excluded_files_are_refused_by_read() {
    let dir = project();
    let plugin = plugin(dir.path(), FilesSettings::default());
    let absolute = dir.path().join(".env");
    for path in [
        ".env",
        "sub/.env.local",
        ".ssh/id_rsa",
        ".ssh",
        absolute.to_str().unwrap(),
    ] {
        let message = refusal(call(&plugin, "read", json!({"path": path})).await);
        assert!(message.contains("`exclude` setting"), "{message}");
        assert!(!message.contains("sk-secret"), "{message}");
    }
    let missing = call(&plugin, "read", json!({"path": "other/.env"})).await;
    assert!(matches!(missing, Err(ToolError::Forbidden(_))));
    let listing = call(&plugin, "list", json!({"path": ".ssh"})).await;
    assert!(matches!(listing, Err(ToolError::Forbidden(_))));
    let example = call_ok(&plugin, "read", json!({"path": ".env.example"})).await;
    assert_eq!(example["text"], "API_KEY=\n");
}

#[tokio::test]
async fn excluded_files_are_absent_from_list_search_and_analyze() {
    let dir = project();
    let plugin = plugin(dir.path(), FilesSettings::default());
    let listed = call_ok(&plugin, "list", json!({"depth": 5})).await;
    assert_eq!(
        paths_in(&listed, "entries"),
        [".env.example", "notes.md", "sub"]
    );
    let found = call_ok(&plugin, "search", json!({"pattern": "API_KEY"})).await;
    assert_eq!(paths_in(&found, "hits"), [".env.example", "notes.md"]);
    assert!(!found.to_string().contains("sk-secret"));
    let analyzed = call_ok(&plugin, "analyze", json!({"path": "."})).await;
    assert_eq!(analyzed["documents"][0]["path"], "notes.md");
    assert_eq!(analyzed["total_found"], 1);
}

#[cfg(unix)]
#[tokio::test]
async fn links_to_excluded_files_are_excluded() {
    use std::os::unix::fs::symlink;
    let dir = project();
    symlink(dir.path().join(".env"), dir.path().join("innocent.txt")).unwrap();
    symlink(dir.path().join(".ssh"), dir.path().join("keys")).unwrap();
    let plugin = plugin(dir.path(), FilesSettings::default());
    for path in ["innocent.txt", "keys", "keys/id_rsa"] {
        let message = refusal(call(&plugin, "read", json!({"path": path})).await);
        assert!(message.contains("`exclude` setting"), "{message}");
    }
    let listed = call_ok(&plugin, "list", json!({})).await.to_string();
    assert!(
        !listed.contains("innocent") && !listed.contains("keys"),
        "{listed}"
    );
    let found = call_ok(&plugin, "search", json!({"pattern": "sk-secret"})).await;
    assert_eq!(found["hits"], json!([]));
    let analyzed = call_ok(&plugin, "analyze", json!({"path": "."})).await;
    assert_eq!(analyzed["total_found"], 1, "{analyzed}");
}

#[tokio::test]
async fn an_empty_exclude_setting_shows_everything() {
    let dir = project();
    let settings = FilesSettings {
        exclude: Vec::new(),
        ..FilesSettings::default()
    };
    let plugin = plugin(dir.path(), settings);
    let env = call_ok(&plugin, "read", json!({"path": ".env"})).await;
    assert_eq!(env["text"], "API_KEY=sk-secret\n");
    let found = call_ok(&plugin, "search", json!({"pattern": "sk-secret"})).await;
    assert_eq!(found["hits"].as_array().unwrap().len(), 4);
    let analyzed = call_ok(&plugin, "analyze", json!({"path": "."})).await;
    assert_eq!(analyzed["total_found"], 2, "{analyzed}");
}
