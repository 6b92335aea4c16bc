//! Ignore files through the tools: what `list`, `search` and `analyze` leave out, and how a
//! call or the setting brings it back (the walk itself is `crate::sandbox::walk`).

use std::fs;

use serde_json::{Value, json};

use super::{FilesSettings, tests::*};
use crate::plugin::ToolError;

/// A project with build output, logs and a nested ignore file, and no `.git` folder.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["src", "target/debug", "docs/build", "logs"] {
        fs::create_dir_all(dir.path().join(folder)).unwrap();
    }
    for (file, text) in [
        (".gitignore", "target/\n*.log\n"),
        ("docs/.gitignore", "build/\n!keep.log\n"),
        ("docs/.ignore", "draft.md\n"),
        ("src/main.rs", "// needle\n"),
        ("target/debug/out.txt", "needle\n"),
        ("logs/run.log", "needle\n"),
        ("docs/guide.md", "# Guide\n\nneedle\n"),
        ("docs/keep.log", "needle\n"),
        ("docs/draft.md", "# Draft\n\nneedle\n"),
        ("docs/build/page.md", "# Page\n\nneedle\n"),
        ("target/.env", "needle=sk-secret\n"),
    ] {
        fs::write(dir.path().join(file), text).unwrap();
    }
    dir
}

fn listed(out: &Value) -> Vec<String> {
    paths_in(out, "entries")
}

fn searched(out: &Value) -> Vec<String> {
    paths_in(out, "hits")
}

fn analyzed(out: &Value) -> Vec<String> {
    paths_in(out, "documents")
}

/// What list (depth 3), search and analyze show of the whole project.
async fn everything(plugin: &super::FilesPlugin, extra: Value) -> [Vec<String>; 3] {
    let with = |mut args: Value| {
        for (key, value) in extra.as_object().unwrap() {
            args[key] = value.clone();
        }
        args
    };
    let list = call_ok(plugin, "list", with(json!({"depth": 3}))).await;
    let search = call_ok(plugin, "search", with(json!({"pattern": "needle"}))).await;
    let analyze = call_ok(plugin, "analyze", with(json!({"path": "."}))).await;
    [listed(&list), searched(&search), analyzed(&analyze)]
}

const SHOWN: [&str; 11] = [
    ".gitignore",
    "docs",
    "docs/.gitignore",
    "docs/.ignore",
    "docs/guide.md",
    "docs/keep.log",
    "logs",
    "src",
    "src/main.rs",
    "target",
    "target/debug",
];

#[tokio::test]
async fn ignore_files_leave_out_build_output_and_logs() {
    let dir = project();
    let plugin = plugin(dir.path(), FilesSettings::default());
    let [list, search, analyze] = everything(&plugin, json!({})).await;
    let shown: Vec<&str> = SHOWN
        .into_iter()
        .filter(|p| !p.starts_with("target"))
        .collect();
    assert_eq!(list, shown);
    assert_eq!(search, ["docs/guide.md", "docs/keep.log", "src/main.rs"]);
    // `.log` files are not documents to `analyze`.
    assert_eq!(analyze, ["docs/guide.md", "src/main.rs"]);
}

#[tokio::test]
async fn include_ignored_or_the_setting_shows_everything_but_secrets() {
    let dir = project();
    let all = [
        ".gitignore",
        "docs",
        "docs/.gitignore",
        "docs/.ignore",
        "docs/build",
        "docs/build/page.md",
        "docs/draft.md",
        "docs/guide.md",
        "docs/keep.log",
        "logs",
        "logs/run.log",
        "src",
        "src/main.rs",
        "target",
        "target/debug",
        "target/debug/out.txt",
    ];
    let hits = [
        "docs/build/page.md",
        "docs/draft.md",
        "docs/guide.md",
        "docs/keep.log",
        "logs/run.log",
        "src/main.rs",
        "target/debug/out.txt",
    ];
    let plugin_default = plugin(dir.path(), FilesSettings::default());
    let off = plugin(
        dir.path(),
        FilesSettings {
            respect_ignore_files: false,
            ..FilesSettings::default()
        },
    );
    for (plugin, extra) in [
        (&plugin_default, json!({"include_ignored": true})),
        (&off, json!({})),
        (&off, json!({"include_ignored": false})),
    ] {
        let [list, search, analyze] = everything(plugin, extra).await;
        assert_eq!(list, all);
        assert_eq!(search, hits);
        assert_eq!(
            analyze,
            [
                "docs/build/page.md",
                "docs/draft.md",
                "docs/guide.md",
                "src/main.rs",
                "target/debug/out.txt"
            ]
        );
    }
    let secret = call_ok(
        &plugin_default,
        "search",
        json!({"pattern": "sk-secret", "include_ignored": true}),
    )
    .await;
    assert_eq!(secret["hits"], json!([]));
}

#[tokio::test]
async fn a_subfolder_walk_keeps_the_rules_of_the_folders_above_it() {
    let dir = project();
    fs::create_dir_all(dir.path().join("src/target")).unwrap();
    fs::write(dir.path().join("src/target/gen.rs"), "needle\n").unwrap();
    fs::write(dir.path().join("src/trace.log"), "needle\n").unwrap();
    let plugin = plugin(dir.path(), FilesSettings::default());
    let list = call_ok(&plugin, "list", json!({"path": "src", "depth": 3})).await;
    assert_eq!(listed(&list), ["src/main.rs"]);
    let search = call_ok(
        &plugin,
        "search",
        json!({"pattern": "needle", "path": "docs"}),
    )
    .await;
    assert_eq!(searched(&search), ["docs/guide.md", "docs/keep.log"]);
}

#[tokio::test]
async fn an_ignored_path_asked_for_by_name_is_walked_and_read() {
    let dir = project();
    let plugin = plugin(dir.path(), FilesSettings::default());
    let list = call_ok(&plugin, "list", json!({"path": "target", "depth": 3})).await;
    assert_eq!(listed(&list), ["target/debug", "target/debug/out.txt"]);
    let search = call_ok(
        &plugin,
        "search",
        json!({"pattern": "needle", "path": "logs/run.log"}),
    )
    .await;
    assert_eq!(searched(&search), ["logs/run.log"]);
    let read = call_ok(&plugin, "read", json!({"path": "target/debug/out.txt"})).await;
    assert_eq!(read["text"], "needle\n");
}

#[tokio::test]
async fn pages_skip_ignored_entries_and_keep_include_ignored() {
    let dir = project();
    let plugin = plugin(dir.path(), FilesSettings::default());
    let mut seen = Vec::new();
    let mut args = json!({"depth": 3, "limit": 2});
    loop {
        let out = call_ok(&plugin, "list", args.clone()).await;
        seen.extend(listed(&out));
        let Some(cursor) = out["next_cursor"].as_str() else {
            break;
        };
        args["cursor"] = json!(cursor);
    }
    let shown: Vec<&str> = SHOWN
        .into_iter()
        .filter(|p| !p.starts_with("target"))
        .collect();
    assert_eq!(seen, shown);
    args["include_ignored"] = json!(true);
    let other = call(&plugin, "list", args).await;
    assert!(matches!(other, Err(ToolError::InvalidArguments(_))));
}
