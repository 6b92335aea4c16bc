//! `files_search`: lines matching a regular expression, grep-style, bounded by `max_hits`.

use std::sync::Arc;

use regex::bytes::{Regex, RegexBuilder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Files, blocking, outcome, show, walk};
use crate::plugin::{Hints, ToolContext, ToolDef, ToolError, ToolOutcome};

/// Characters of a matching line returned; minified files have lines of megabytes.
const MAX_LINE_CHARS: usize = 300;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    /// Regular expression (Rust syntax: no look-around or backreferences) matched against each
    /// line.
    pattern: String,
    /// Folder (searched recursively) or file; default: the first root.
    path: Option<String>,
    /// Only files whose path relative to `path` matches, e.g. `**/*.rs`.
    glob: Option<String>,
    /// Ignore case.
    case_insensitive: Option<bool>,
    /// Stop after this many lines (default and most: the server's, usually 100).
    #[schemars(range(min = 1))]
    max_hits: Option<usize>,
    /// Include what `.gitignore` and `.ignore` files exclude (secret files stay hidden).
    include_ignored: Option<bool>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SearchOutput {
    /// The root folder the searched path is in.
    root: String,
    /// The searched folder or file, relative to `root`.
    path: String,
    /// Matching lines in path order.
    hits: Vec<Hit>,
    /// Text files searched.
    files_scanned: usize,
    /// Files left out because they are binary or too large.
    files_skipped: usize,
    /// There are more hits than returned.
    truncated: bool,
    /// What to do next, when the search stopped early or found nothing.
    hint: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Hit {
    /// Relative to the root, ready for files_read.
    path: String,
    /// Line number, from 1.
    line: u64,
    /// The line, cut to 300 characters.
    text: String,
}

pub(super) fn tool(files: Arc<Files>) -> ToolDef {
    ToolDef::new::<SearchArgs, _, _>(
        "search",
        "Search text files inside the allowed roots for lines matching a regular expression, like \
         grep: each hit's path, line and text. Binary, very large and git-ignored files are \
         skipped.",
        Hints::read_only(),
        move |args: SearchArgs, cx: ToolContext| {
            let files = files.clone();
            async move { blocking(move || search(&files, args, &cx)).await }
        },
    )
    .with_title("Search files")
    .with_output::<SearchOutput>()
}

fn search(files: &Files, args: SearchArgs, cx: &ToolContext) -> ToolOutcome {
    let settings = &files.settings;
    let regex = RegexBuilder::new(&args.pattern)
        .case_insensitive(args.case_insensitive.unwrap_or(false))
        .build()
        .map_err(|e| {
            ToolError::InvalidArguments(format!("`pattern` is not a valid regular expression: {e}"))
        })?;
    let max_hits = args
        .max_hits
        .unwrap_or(settings.search_max_hits)
        .clamp(1, settings.search_max_hits);
    let glob = walk::glob(args.glob.as_deref())?;
    let target = files.roots.resolve(args.path.as_deref())?;
    let respect = files.respects_ignore_files(args.include_ignored);

    let mut hits = Vec::new();
    let (mut scanned, mut skipped, mut truncated) = (0, 0, false);
    let walk = walk::files_under(
        &files.roots,
        &target,
        glob.as_ref(),
        respect,
        cx.cancellation(),
    );
    for found in walk {
        let found = found?;
        if found.meta.len() > settings.search_max_file_bytes {
            skipped += 1;
            continue;
        }
        let shown = found.real.display().to_string();
        let Ok((file, _)) = files.roots.open_file(&found.real, &shown) else {
            skipped += 1;
            continue;
        };
        // Read no more than the limit, whatever the file has grown to since it was listed.
        let mut bytes = Vec::new();
        if std::io::Read::read_to_end(
            &mut std::io::Read::take(file, settings.search_max_file_bytes),
            &mut bytes,
        )
        .is_err()
        {
            skipped += 1;
            continue;
        }
        // A PDF or DOCX is searched in its text.
        if let Some(kind) =
            super::document::doc_type(&found.real).filter(|k| super::extract::extracted(k))
        {
            match super::extract::extract(kind, &bytes) {
                Ok(found) => bytes = found.text.into_bytes(),
                Err(_) => {
                    skipped += 1;
                    continue;
                }
            }
        } else if walk::looks_binary(&bytes) {
            skipped += 1;
            continue;
        }
        scanned += 1;
        let path = show(&walk::under(&target.rel, &found.sub));
        truncated = matching_lines(&regex, &bytes, &path, max_hits + 1 - hits.len(), &mut hits);
        if truncated {
            hits.truncate(max_hits);
            break;
        }
    }

    let hint = if truncated {
        let raise = if max_hits < settings.search_max_hits {
            format!(", or raise max_hits (up to {})", settings.search_max_hits)
        } else {
            String::new()
        };
        Some(format!(
            "Stopped after {max_hits} hits; there are more. Narrow `path`, `glob` or `pattern`{raise}."
        ))
    } else if hits.is_empty() {
        Some(format!(
            "No line matches in {scanned} files{}. Check the pattern (case_insensitive?), or widen \
             `path`/`glob`{}.",
            if skipped > 0 {
                format!(
                    " ({skipped} skipped: binary, or larger than {})",
                    walk::human_size(settings.search_max_file_bytes)
                )
            } else {
                String::new()
            },
            if respect {
                ", or set include_ignored to search what .gitignore files exclude"
            } else {
                ""
            }
        ))
    } else {
        None
    };
    let output = SearchOutput {
        root: files.roots.root_display(target.root),
        path: show(&target.rel),
        hits,
        files_scanned: scanned,
        files_skipped: skipped,
        truncated,
        hint,
    };
    outcome(vec![render(&output)], &output)
}

/// Push at most `room` hits of one file; true when `room` ran out.
fn matching_lines(
    regex: &Regex,
    bytes: &[u8],
    path: &str,
    room: usize,
    hits: &mut Vec<Hit>,
) -> bool {
    if !regex.is_match(bytes) {
        return false;
    }
    let mut pushed = 0;
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !regex.is_match(line) {
            continue;
        }
        if pushed == room {
            return true;
        }
        let text = walk::clip(&String::from_utf8_lossy(line), MAX_LINE_CHARS);
        hits.push(Hit {
            path: path.to_owned(),
            line: index as u64 + 1,
            text,
        });
        pushed += 1;
    }
    pushed == room
}

fn render(output: &SearchOutput) -> String {
    let mut text = format!(
        "{} hit(s) in {} (root {}), {} files scanned:\n",
        output.hits.len(),
        output.path,
        output.root,
        output.files_scanned
    );
    for hit in &output.hits {
        text.push_str(&format!("{}:{}: {}\n", hit.path, hit.line, hit.text));
    }
    if let Some(hint) = &output.hint {
        text.push_str(hint);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use std::fs;

    use serde_json::json;

    use super::super::{FilesSettings, tests::*};
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("src/deep")).unwrap();
        fs::create_dir(dir.path().join(".git")).unwrap();
        fs::write(
            dir.path().join("src/a.rs"),
            "fn main() {}\n// TODO one\n// todo two\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("src/deep/b.rs"),
            "// TODO three\r\nlet x = 1;\n",
        )
        .unwrap();
        fs::write(dir.path().join("notes.md"), "TODO four\n").unwrap();
        fs::write(dir.path().join(".git/HEAD"), "TODO hidden\n").unwrap();
        fs::write(dir.path().join("blob.bin"), b"TODO\0binary").unwrap();
        dir
    }

    fn found(out: &serde_json::Value) -> Vec<String> {
        let hits = out["hits"].as_array().unwrap();
        hits.iter()
            .map(|h| {
                format!(
                    "{}:{}:{}",
                    h["path"].as_str().unwrap(),
                    h["line"],
                    h["text"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn finds_lines_in_path_order() {
        let dir = tree();
        let plugin = plugin(dir.path(), FilesSettings::default());
        let out = call_ok(&plugin, "search", json!({"pattern": "TODO \\w+"})).await;
        assert_eq!(
            found(&out),
            [
                "notes.md:1:TODO four",
                "src/a.rs:2:// TODO one",
                "src/deep/b.rs:1:// TODO three"
            ]
        );
        assert_eq!(out["files_scanned"], 3);
        assert_eq!(out["files_skipped"], 1);
        assert_eq!(out["truncated"], false);
        let out = call_ok(
            &plugin,
            "search",
            json!({"pattern": "todo", "case_insensitive": true, "path": "src", "glob": "*.rs"}),
        )
        .await;
        assert_eq!(
            found(&out),
            ["src/a.rs:2:// TODO one", "src/a.rs:3:// todo two"]
        );
        let none = call_ok(&plugin, "search", json!({"pattern": "absent"})).await;
        assert!(none["hint"].as_str().unwrap().contains("No line matches"));
    }

    #[tokio::test]
    async fn searches_stop_at_max_hits() {
        let dir = tree();
        let plugin = plugin(
            dir.path(),
            FilesSettings {
                search_max_hits: 2,
                ..FilesSettings::default()
            },
        );
        let out = call_ok(
            &plugin,
            "search",
            json!({"pattern": "(?i)todo", "max_hits": 50}),
        )
        .await;
        assert_eq!(out["hits"].as_array().unwrap().len(), 2);
        assert_eq!(out["truncated"], true);
        assert!(out["hint"].as_str().unwrap().contains("Narrow"));
        let exact = call_ok(&plugin, "search", json!({"pattern": "TODO (three|four)"})).await;
        assert_eq!(exact["hits"].as_array().unwrap().len(), 2);
        assert_eq!(
            exact["truncated"], false,
            "exactly max_hits hits is not truncated"
        );
    }

    #[tokio::test]
    async fn bad_patterns_and_large_files_are_reported() {
        let dir = tree();
        fs::write(dir.path().join("big.txt"), "TODO ".repeat(100)).unwrap();
        let plugin = plugin(
            dir.path(),
            FilesSettings {
                search_max_file_bytes: 100,
                ..FilesSettings::default()
            },
        );
        let bad = call(&plugin, "search", json!({"pattern": "fn main("})).await;
        assert!(
            matches!(bad, Err(ToolError::InvalidArguments(m)) if m.contains("regular expression"))
        );
        let out = call_ok(
            &plugin,
            "search",
            json!({"pattern": "TODO", "path": "big.txt"}),
        )
        .await;
        assert_eq!(out["files_skipped"], 1);
        let long = "x".repeat(1000);
        fs::write(dir.path().join("long.txt"), format!("{long}\n")).unwrap();
        let plugin = plugin_with_defaults(dir.path());
        let out = call_ok(
            &plugin,
            "search",
            json!({"pattern": "x", "path": "long.txt"}),
        )
        .await;
        assert_eq!(
            out["hits"][0]["text"].as_str().unwrap().chars().count(),
            MAX_LINE_CHARS + 1
        );
    }

    fn plugin_with_defaults(root: &std::path::Path) -> super::super::FilesPlugin {
        plugin(root, FilesSettings::default())
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn searches_skip_links_leaving_the_roots() {
        use std::os::unix::fs::symlink;
        let dir = tree();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.txt"), "TODO secret\n").unwrap();
        symlink(
            outside.path().join("secret.txt"),
            dir.path().join("src/secret-link.txt"),
        )
        .unwrap();
        symlink(outside.path(), dir.path().join("src/outside-dir")).unwrap();
        symlink(
            dir.path().join("notes.md"),
            dir.path().join("src/notes-link.md"),
        )
        .unwrap();
        let plugin = plugin_with_defaults(dir.path());
        let out = call_ok(&plugin, "search", json!({"pattern": "TODO", "path": "src"})).await;
        let hits = found(&out);
        assert!(!hits.iter().any(|h| h.contains("secret")), "{hits:?}");
        assert!(
            hits.contains(&"src/notes-link.md:1:TODO four".to_owned()),
            "{hits:?}"
        );
    }
}
