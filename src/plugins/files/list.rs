//! `files_list`: the entries of a folder, a page at a time, in path order.
//!
//! Pages are cut by path, not by position: the cursor holds the last path returned, so a page
//! resumes right after it with no duplicates or gaps, even if the folder changed in between.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Files, blocking, outcome, show,
    walk::{self, Kind},
};
use crate::plugin::{Hints, ToolContext, ToolDef, ToolError, ToolOutcome};

const MAX_DEPTH: usize = 20;
const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// Folder (or file) to list; default: the first root.
    path: Option<String>,
    /// Only entries whose path relative to the folder matches, e.g. `*.md` or `**/*.md`.
    glob: Option<String>,
    /// Levels to list: 1 (the default) is the folder's own entries.
    #[schemars(range(min = 1, max = 20))]
    depth: Option<usize>,
    /// Most entries in this page (default: the server's, usually 200).
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<usize>,
    /// `next_cursor` of the previous call with the same arguments.
    cursor: Option<String>,
    /// Include what `.gitignore` and `.ignore` files exclude (secret files stay hidden).
    include_ignored: Option<bool>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ListOutput {
    /// The root folder the listed folder is in.
    root: String,
    /// The listed folder, relative to `root` (`.` for the root itself).
    path: String,
    /// Entries sorted by path; each path is relative to `root`, ready for files_read.
    entries: Vec<Entry>,
    /// More entries follow; pass `next_cursor` to get them.
    truncated: bool,
    /// Pass as `cursor`, with the same `path`, `glob`, `depth` and `include_ignored`, to get
    /// the next page.
    next_cursor: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Entry {
    /// Relative to the root.
    path: String,
    /// `file`, `dir`, `symlink` (a link to a place inside the roots; size and time are its
    /// target's) or `other` (a pipe, socket or device, which cannot be read).
    #[serde(rename = "type")]
    kind: Kind,
    /// In bytes; null for folders and links to folders.
    size: Option<u64>,
    /// Last modification, RFC 3339 UTC.
    modified: Option<String>,
}

/// Where a page starts: everything about the listing that must not change between pages.
/// Short keys keep the cursor short.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Cursor {
    #[serde(rename = "r")]
    root: usize,
    #[serde(rename = "p")]
    path: String,
    #[serde(rename = "g")]
    glob: Option<String>,
    #[serde(rename = "d")]
    depth: usize,
    #[serde(rename = "i", default)]
    include_ignored: bool,
    /// The last path returned, relative to the listed folder.
    #[serde(rename = "a")]
    after: PathBuf,
}

pub(super) fn tool(files: Arc<Files>) -> ToolDef {
    ToolDef::new::<ListArgs, _, _>(
        "list",
        "List files and folders inside the allowed roots with type, size and modification time, \
         one level unless `depth` says more. Paged: while `truncated`, pass `next_cursor` as \
         `cursor`.",
        Hints::read_only(),
        move |args: ListArgs, cx: ToolContext| {
            let files = files.clone();
            async move { blocking(move || list(&files, args, &cx)).await }
        },
    )
    .with_title("List files")
    .with_output::<ListOutput>()
}

fn list(files: &Files, args: ListArgs, cx: &ToolContext) -> ToolOutcome {
    let depth = args.depth.unwrap_or(1);
    if !(1..=MAX_DEPTH).contains(&depth) {
        return Err(ToolError::InvalidArguments(format!(
            "depth must be between 1 and {MAX_DEPTH}"
        )));
    }
    let limit = args
        .limit
        .unwrap_or(files.settings.list_limit)
        .clamp(1, MAX_LIMIT);
    let glob = walk::glob(args.glob.as_deref())?;
    let target = files.roots.resolve(args.path.as_deref())?;
    let mut cursor = Cursor {
        root: target.root,
        path: show(&target.rel),
        glob: args.glob.filter(|g| !g.is_empty()),
        depth,
        include_ignored: args.include_ignored.unwrap_or(false),
        after: PathBuf::new(),
    };
    let after = match args.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(text) => Some(decode(text, &cursor)?),
        None => None,
    };

    // A folder's own entries, not the folder; a file is its own single entry.
    let skip_start = target.real.is_dir();
    let options = walk::Options {
        depth,
        respect_ignore_files: files.respects_ignore_files(args.include_ignored),
        skip_vcs: false,
        // A whole folder before the cursor, and not on the way to it, is skipped unread.
        after: after.clone(),
    };
    let mut entries = Vec::new();
    let mut more = false;
    for entry in walk::entries(&files.roots, &target, options) {
        if cx.is_cancelled() {
            return Err(walk::cancelled());
        }
        let sub = entry
            .path()
            .strip_prefix(&target.real)
            .unwrap_or(entry.path());
        if skip_start && sub.as_os_str().is_empty() {
            continue;
        }
        if let Some(after) = &after
            && sub <= after.as_path()
        {
            continue;
        }
        let Some(found) = walk::check(&files.roots, &target, &entry) else {
            continue;
        };
        let subject = if found.sub.as_os_str().is_empty() {
            Path::new(entry.file_name())
        } else {
            &found.sub
        };
        if glob.as_ref().is_some_and(|g| !g.is_match(subject)) {
            continue;
        }
        if entries.len() == limit {
            more = true;
            break;
        }
        entries.push(found);
    }

    let next_cursor = match (more, entries.last()) {
        (true, Some(last)) => {
            cursor.after = last.sub.clone();
            Some(encode(&cursor))
        }
        _ => None,
    };
    let output = ListOutput {
        root: files.roots.root_display(target.root),
        path: show(&target.rel),
        entries: entries
            .iter()
            .map(|f| Entry {
                path: show(&walk::under(&target.rel, &f.sub)),
                kind: f.kind,
                size: f.meta.is_file().then_some(f.meta.len()),
                modified: walk::modified(&f.meta),
            })
            .collect(),
        truncated: more,
        next_cursor,
    };
    outcome(vec![render(&output, &cursor)], &output)
}

fn render(output: &ListOutput, cursor: &Cursor) -> String {
    let mut text = format!(
        "{} in {} (root {}):\n",
        count(output.entries.len()),
        output.path,
        output.root
    );
    for entry in &output.entries {
        let (kind, slash) = match entry.kind {
            Kind::File => ("file", ""),
            Kind::Dir => ("dir", "/"),
            Kind::Symlink if entry.size.is_none() => ("symlink", "/"),
            Kind::Symlink => ("symlink", ""),
            Kind::Other => ("other", ""),
        };
        let size = entry.size.map(walk::human_size).unwrap_or_default();
        let modified = entry.modified.as_deref().unwrap_or("");
        text.push_str(&format!(
            "{kind:<7} {size:>9}  {modified:<20}  {}{slash}\n",
            entry.path
        ));
    }
    if output.entries.is_empty() {
        text.push_str(match &cursor.glob {
            Some(_) => "(nothing matches the glob; try `**/` in front of it or a larger depth)\n",
            None => "(empty)\n",
        });
    }
    if let Some(next) = &output.next_cursor {
        text.push_str(&format!(
            "More entries follow. Call files_list again with the same path, glob, depth and \
             include_ignored and cursor=\"{next}\", or narrow the listing with `glob` or a \
             smaller `depth`.\n"
        ));
    }
    text
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 entry".into()
    } else {
        format!("{n} entries")
    }
}

/// Opaque to the model: URL-safe base64 of the JSON, so it survives any transport unchanged.
fn encode(cursor: &Cursor) -> String {
    let json = serde_json::to_vec(cursor).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// The resume point of a cursor, if it belongs to this same listing.
fn decode(text: &str, expected: &Cursor) -> Result<PathBuf, ToolError> {
    let bad = || {
        ToolError::InvalidArguments(
            "`cursor` is not one files_list returned; leave it out to start from the beginning"
                .into(),
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
    let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let same = cursor.root == expected.root
        && cursor.path == expected.path
        && cursor.glob == expected.glob
        && cursor.depth == expected.depth
        && cursor.include_ignored == expected.include_ignored;
    if !same {
        return Err(ToolError::InvalidArguments(
            "`cursor` belongs to a listing with a different path, glob, depth or \
             include_ignored; repeat those exactly, or leave the cursor out to start over"
                .into(),
        ));
    }
    Ok(cursor.after)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use serde_json::json;

    use super::super::{FilesSettings, tests::*};
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for folder in ["a", "a/deep", "a-b", "b"] {
            fs::create_dir(dir.path().join(folder)).unwrap();
        }
        for file in [
            "a/1.md",
            "a/2.txt",
            "a/deep/3.md",
            "a-b/4.md",
            "b/5.md",
            "top.md",
            "z.txt",
        ] {
            fs::write(dir.path().join(file), file).unwrap();
        }
        dir
    }

    fn paths(output: &serde_json::Value) -> Vec<String> {
        paths_in(output, "entries")
    }

    #[tokio::test]
    async fn lists_one_level_sorted_with_types() {
        let dir = tree();
        let plugin = plugin(dir.path(), FilesSettings::default());
        let out = call_ok(&plugin, "list", json!({})).await;
        assert_eq!(paths(&out), ["a", "a-b", "b", "top.md", "z.txt"]);
        assert_eq!(out["entries"][0]["type"], "dir");
        assert_eq!(out["entries"][3]["type"], "file");
        assert_eq!(out["entries"][3]["size"], 6);
        assert_eq!(out["path"], ".");
        assert_eq!(out["truncated"], false);
        let out = call_ok(
            &plugin,
            "list",
            json!({"path": "a", "depth": 2, "glob": "**/*.md"}),
        )
        .await;
        assert_eq!(paths(&out), ["a/1.md", "a/deep/3.md"]);
    }

    #[tokio::test]
    async fn pages_continue_without_duplicates_or_gaps() {
        let dir = tree();
        let plugin = plugin(dir.path(), FilesSettings::default());
        let all = paths(&call_ok(&plugin, "list", json!({"depth": 5})).await);
        assert_eq!(all.len(), 11);
        for limit in 1..=4 {
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut args = json!({"depth": 5, "limit": limit});
                if let Some(c) = &cursor {
                    args["cursor"] = json!(c);
                }
                let out = call_ok(&plugin, "list", args).await;
                let page = paths(&out);
                assert!(page.len() <= limit);
                seen.extend(page);
                match out["next_cursor"].as_str() {
                    Some(c) => {
                        assert_eq!(out["truncated"], true);
                        cursor = Some(c.to_owned());
                    }
                    None => break,
                }
            }
            assert_eq!(seen, all, "limit {limit}");
        }
    }

    #[tokio::test]
    async fn cursors_from_another_listing_are_refused() {
        let dir = tree();
        let plugin = plugin(dir.path(), FilesSettings::default());
        let out = call_ok(&plugin, "list", json!({"depth": 3, "limit": 2})).await;
        let cursor = out["next_cursor"].as_str().unwrap();
        let other = call(&plugin, "list", json!({"depth": 2, "cursor": cursor})).await;
        assert!(matches!(other, Err(ToolError::InvalidArguments(_))));
        let junk = call(&plugin, "list", json!({"cursor": "not a cursor!"})).await;
        assert!(matches!(junk, Err(ToolError::InvalidArguments(_))));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn special_files_are_listed_as_other_and_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
        let plugin = plugin(dir.path(), FilesSettings::default());
        let out = call_ok(&plugin, "list", json!({})).await;
        assert_eq!(out["entries"][0]["type"], "other");
        assert_eq!(out["entries"][0]["size"], json!(null));
        let read = call(&plugin, "read", json!({"path": "sock"})).await;
        assert!(
            matches!(read, Err(ToolError::InvalidArguments(m)) if m.contains("not a regular file"))
        );
        let search = call_ok(&plugin, "search", json!({"pattern": "x"})).await;
        assert_eq!(search["files_scanned"], 0);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn links_leaving_the_roots_are_not_listed() {
        use std::os::unix::fs::symlink;
        let dir = tree();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.txt"), "secret").unwrap();
        symlink(
            outside.path().join("secret.txt"),
            dir.path().join("out-file"),
        )
        .unwrap();
        symlink(outside.path(), dir.path().join("out-dir")).unwrap();
        symlink(dir.path().join("top.md"), dir.path().join("in-link")).unwrap();
        let plugin = plugin(dir.path(), FilesSettings::default());
        let out = call_ok(&plugin, "list", json!({"depth": 3})).await;
        let listed = paths(&out);
        assert!(listed.contains(&"in-link".to_owned()));
        assert!(!listed.iter().any(|p| p.starts_with("out-")), "{listed:?}");
        let refused = call(&plugin, "list", json!({"path": "out-dir"})).await;
        assert!(matches!(refused, Err(ToolError::Forbidden(_))));
    }
}
