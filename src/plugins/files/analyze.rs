//! `files_analyze`: a one-line portrait of every document in a folder (title, kind, size, words,
//! opening text), so a model can pick what to read without reading everything.

use std::{path::PathBuf, sync::Arc};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Files, blocking,
    document::{self, Summary},
    outcome, show, walk,
};
use crate::plugin::{Hints, ToolContext, ToolDef, ToolError, ToolOutcome};

const MAX_LIMIT: usize = 1000;

/// Documents summarised per blocking task; progress is reported between batches.
const BATCH: usize = 10;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeArgs {
    /// Folder (walked recursively) or file; `.` is the first root.
    path: String,
    /// Most documents, first by path (default: the server's, usually 200).
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<usize>,
    /// Only documents whose path relative to `path` matches, e.g. `**/*.md`.
    glob: Option<String>,
    /// Include what `.gitignore` and `.ignore` files exclude (secret files stay hidden).
    include_ignored: Option<bool>,
    /// Characters of opening text per document (default 240).
    #[schemars(range(min = 1, max = 8000))]
    extract_chars: Option<usize>,
    /// Also give each document's SHA-256, to tell later whether it changed.
    hash: Option<bool>,
}

/// Files found that are not summarised are listed up to this many (and all counted).
const MAX_SKIPPED_LISTED: usize = 200;

#[derive(Debug, Serialize, JsonSchema)]
pub struct AnalyzeOutput {
    /// The root folder the analysed folder is in.
    root: String,
    /// The analysed folder, relative to `root`.
    folder: String,
    /// One summary per document, sorted by path.
    documents: Vec<Document>,
    /// Documents found, including those beyond `limit`.
    total_found: usize,
    /// More documents were found than summarised; raise `limit` or narrow `path`/`glob`.
    truncated: bool,
    /// Files under `path` (matching `glob`) that are not summarised, and why: not a text
    /// document, binary content, or unreadable. At most 200 listed.
    skipped: Vec<Skipped>,
    /// All files skipped, listed or not.
    skipped_total: usize,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Skipped {
    /// Relative to the root.
    path: String,
    reason: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Document {
    /// Relative to the root, ready for files_read.
    path: String,
    /// The first heading (Markdown, reStructuredText, AsciiDoc, Org), the HTML `<title>`, or
    /// else the file name without its extension.
    title: String,
    /// What kind of document: markdown, text, html, json, csv, yaml, source, …
    #[serde(rename = "type")]
    kind: String,
    /// In bytes.
    size: u64,
    /// Last modification, RFC 3339 UTC.
    modified: Option<String>,
    /// Whitespace-separated words in the whole file.
    words: u64,
    /// The first ~240 characters after the title (or `extract_chars`), whitespace collapsed.
    extract: String,
    /// SHA-256 of the content, hex (with `hash: true`): of the whole file, or of its first
    /// 64 MiB and its size for a larger one.
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

pub(super) fn tool(files: Arc<Files>) -> ToolDef {
    ToolDef::new::<AnalyzeArgs, _, _>(
        "analyze",
        "Summarise the text documents (Markdown, HTML, JSON, CSV, code, PDF, DOCX, …) in a folder \
         inside the allowed roots: each one's title, type, size, modification time, word count \
         and opening text.",
        Hints::read_only(),
        move |args: AnalyzeArgs, cx: ToolContext| {
            let files = files.clone();
            async move { analyze(files, args, cx).await }
        },
    )
    .with_title("Summarise documents")
    .with_output::<AnalyzeOutput>()
}

/// A document found by the walk, not yet read.
struct Candidate {
    path: String,
    real: PathBuf,
    kind: &'static str,
    meta: std::fs::Metadata,
}

async fn analyze(files: Arc<Files>, args: AnalyzeArgs, cx: ToolContext) -> ToolOutcome {
    let limit = args
        .limit
        .unwrap_or(files.settings.analyze_limit)
        .clamp(1, MAX_LIMIT);
    let detail = document::Detail {
        extract_chars: args
            .extract_chars
            .unwrap_or(document::EXTRACT_CHARS)
            .clamp(1, document::MAX_EXTRACT_CHARS),
        hash: args.hash.unwrap_or(false),
    };
    let found = {
        let (files, cancel) = (files.clone(), cx.cancellation().clone());
        blocking(move || find(&files, &args, &cancel)).await?
    };
    let (root, folder, mut candidates, mut skipped) = found;
    let total_found = candidates.len();
    candidates.truncate(limit);
    let total = candidates.len();

    let mut documents = Vec::with_capacity(total);
    let mut batches = candidates.into_iter().peekable();
    while batches.peek().is_some() {
        if cx.is_cancelled() {
            return Err(walk::cancelled());
        }
        let batch: Vec<Candidate> = batches.by_ref().take(BATCH).collect();
        let (files, cancel) = (files.clone(), cx.cancellation().clone());
        let (done, left_out) =
            blocking(move || summarise_all(&files, batch, detail, &cancel)).await?;
        documents.extend(done);
        skipped.extend(left_out);
        let done = total - batches.len();
        cx.progress(
            done as f64,
            Some(total as f64),
            format!("summarised {done} of {total} documents"),
        )
        .await;
    }

    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    let skipped_total = skipped.len();
    skipped.truncate(MAX_SKIPPED_LISTED);
    let output = AnalyzeOutput {
        root,
        folder,
        documents,
        total_found,
        truncated: total_found > total,
        skipped,
        skipped_total,
    };
    outcome(vec![render(&output, limit)], &output)
}

/// Every document under the requested path, in path order.
fn find(
    files: &Files,
    args: &AnalyzeArgs,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(String, String, Vec<Candidate>, Vec<Skipped>), ToolError> {
    let glob = walk::glob(args.glob.as_deref())?;
    let target = files.roots.resolve(Some(&args.path))?;
    let respect = files.respects_ignore_files(args.include_ignored);
    let mut candidates = Vec::new();
    let mut skipped = Vec::new();
    for found in walk::files_under(&files.roots, &target, glob.as_ref(), respect, cancel) {
        let found = found?;
        let shown = walk::under(&target.rel, &found.sub);
        // A link is a document by its own name, not its target's.
        let Some(kind) = document::doc_type(&shown).or_else(|| document::doc_type(&found.real))
        else {
            // Dot files (`.gitignore`, `.DS_Store`) are the folder's housekeeping, not
            // documents anyone expects summarised or reported.
            if shown
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let reason = match shown.extension() {
                Some(ext) => format!(
                    "not a text document (.{})",
                    ext.to_string_lossy().to_lowercase()
                ),
                None => "not a text document".to_owned(),
            };
            skipped.push(Skipped {
                path: show(&shown),
                reason,
            });
            continue;
        };
        candidates.push(Candidate {
            path: show(&shown),
            real: found.real,
            kind,
            meta: found.meta,
        });
    }
    Ok((
        files.roots.root_display(target.root),
        show(&target.rel),
        candidates,
        skipped,
    ))
}

fn summarise_all(
    files: &Files,
    batch: Vec<Candidate>,
    detail: document::Detail,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(Vec<Document>, Vec<Skipped>), ToolError> {
    let mut documents = Vec::with_capacity(batch.len());
    let mut skipped = Vec::new();
    for c in batch {
        // A file that vanished or cannot be read is left out, not fatal to the whole summary.
        let summary = match files
            .roots
            .open_file(&c.real, &c.path)
            .and_then(|(file, _)| document::summarise(&c.real, file, c.kind, detail, cancel))
        {
            Ok(Some(summary)) => summary,
            Ok(None) => {
                skipped.push(Skipped {
                    path: c.path,
                    reason: "binary content".into(),
                });
                continue;
            }
            Err(ToolError::Failed(m)) if cancel.is_cancelled() => return Err(ToolError::Failed(m)),
            Err(e) => {
                let reason = match e {
                    // The extractor's reason says what is wrong with the document.
                    ToolError::Failed(why) if super::extract::extracted(c.kind) => why,
                    e => format!("unreadable: {e}"),
                };
                skipped.push(Skipped {
                    path: c.path,
                    reason,
                });
                continue;
            }
        };
        let Summary {
            title,
            words,
            extract,
            sha256,
        } = summary;
        documents.push(Document {
            path: c.path,
            title,
            kind: c.kind.to_owned(),
            size: c.meta.len(),
            modified: walk::modified(&c.meta),
            words,
            extract,
            sha256,
        });
    }
    Ok((documents, skipped))
}

fn render(output: &AnalyzeOutput, limit: usize) -> String {
    let mut text = format!(
        "{} document(s) in {} (root {}):\n",
        output.documents.len(),
        output.folder,
        output.root
    );
    for d in &output.documents {
        text.push_str(&format!(
            "\n{} — {}\n  {}, {}, {} words, modified {}\n",
            d.path,
            d.title,
            d.kind,
            walk::human_size(d.size),
            d.words,
            d.modified.as_deref().unwrap_or("unknown")
        ));
        if !d.extract.is_empty() {
            text.push_str(&format!("  {}\n", d.extract));
        }
    }
    if output.skipped_total > 0 {
        let names: Vec<&str> = output
            .skipped
            .iter()
            .take(10)
            .map(|s| s.path.as_str())
            .collect();
        let more = output.skipped_total.saturating_sub(names.len());
        text.push_str(&format!(
            "\n{} file(s) skipped (see `skipped` for why): {}{}\n",
            output.skipped_total,
            names.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    if output.truncated {
        text.push_str(&format!(
            "\nShowing the first {limit} of {} documents by path. Raise `limit` (up to {MAX_LIMIT}) \
             or narrow `path` or `glob` to see the rest.\n",
            output.total_found
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use std::fs;

    use serde_json::json;

    use super::super::{FilesSettings, tests::*};

    fn folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("docs/sub")).unwrap();
        fs::write(
            dir.path().join("docs/b.md"),
            "# Beta guide\n\nHow to   use\nbeta.\n",
        )
        .unwrap();
        fs::write(dir.path().join("docs/a.txt"), "Alpha notes with five words").unwrap();
        fs::write(
            dir.path().join("docs/sub/page.html"),
            "<title>Page</title><p>Hello there</p>",
        )
        .unwrap();
        fs::write(dir.path().join("docs/photo.png"), b"\x89PNG\0\0").unwrap();
        fs::write(dir.path().join("docs/fake.md"), b"# x\0binary").unwrap();
        dir
    }

    #[tokio::test]
    async fn summarises_documents_in_path_order() {
        let dir = folder();
        let plugin = plugin(dir.path(), FilesSettings::default());
        let out = call_ok(&plugin, "analyze", json!({"path": "docs"})).await;
        let docs = out["documents"].as_array().unwrap();
        let paths: Vec<_> = docs.iter().map(|d| d["path"].as_str().unwrap()).collect();
        assert_eq!(paths, ["docs/a.txt", "docs/b.md", "docs/sub/page.html"]);
        assert_eq!(out["folder"], "docs");
        assert_eq!(out["truncated"], false);
        let b = &docs[1];
        assert_eq!(
            (b["title"].as_str(), b["type"].as_str()),
            (Some("Beta guide"), Some("markdown"))
        );
        assert_eq!(b["extract"], "How to use beta.");
        assert_eq!(b["words"], 7);
        assert_eq!(docs[0]["title"], "a");
        assert_eq!(docs[0]["words"], 5);
        assert_eq!(docs[2]["title"], "Page");
        assert_eq!(docs[2]["extract"], "Hello there");
        assert!(b.get("sha256").is_none(), "hashes only on request");
        assert_eq!(out["skipped_total"], 2);
        assert_eq!(
            out["skipped"],
            json!([
                {"path": "docs/fake.md", "reason": "binary content"},
                {"path": "docs/photo.png", "reason": "not a text document (.png)"},
            ])
        );
    }

    #[tokio::test]
    async fn longer_extracts_and_hashes_on_request() {
        let dir = folder();
        let long = format!("# Long\n\n{}", "word ".repeat(400));
        fs::write(dir.path().join("docs/long.md"), &long).unwrap();
        let plugin = plugin(dir.path(), FilesSettings::default());
        let out = call_ok(
            &plugin,
            "analyze",
            json!({"path": "docs", "glob": "*.md", "extract_chars": 1000, "hash": true}),
        )
        .await;
        let long_doc = &out["documents"][1];
        assert_eq!(long_doc["path"], "docs/long.md");
        // The extract's characters, then `…` for the text that goes on.
        assert_eq!(long_doc["extract"].as_str().unwrap().chars().count(), 1001);
        use sha2::Digest;
        let expected: String = sha2::Sha256::digest(long.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(long_doc["sha256"], expected);
        let short = call_ok(&plugin, "analyze", json!({"path": "docs/long.md"})).await;
        assert_eq!(
            short["documents"][0]["extract"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            241
        );
    }

    #[tokio::test]
    async fn limits_and_globs_bound_the_summary() {
        let dir = folder();
        let plugin = plugin(dir.path(), FilesSettings::default());
        let out = call_ok(&plugin, "analyze", json!({"path": ".", "limit": 1})).await;
        assert_eq!(out["documents"].as_array().unwrap().len(), 1);
        assert_eq!(out["total_found"], 4);
        assert_eq!(out["truncated"], true);
        let out = call_ok(
            &plugin,
            "analyze",
            json!({"path": "docs", "glob": "**/*.html"}),
        )
        .await;
        assert_eq!(out["documents"][0]["path"], "docs/sub/page.html");
        assert_eq!(out["total_found"], 1);
    }
}
