//! Walking a folder inside the sandbox: what `list`, `search` and `analyze` share.
//!
//! Walks never follow symlinks on their own (`follow_links(false)`). A symlink entry is shown or
//! read only if its canonical target is inside a root; links that leave the roots, and broken
//! ones, are skipped. Entries the `exclude` setting names are skipped silently, and excluded
//! folders are never entered.

use std::{
    fs,
    path::{Path, PathBuf},
};

use chrono::{DateTime, SecondsFormat, Utc};
use globset::{GlobBuilder, GlobMatcher};
use tokio_util::sync::CancellationToken;
use walkdir::{DirEntry, WalkDir};

use super::roots::{Roots, Target};
use crate::plugin::ToolError;

/// How much of a file's start is checked for NUL bytes to call it binary.
pub const SNIFF_BYTES: usize = 8 * 1024;

/// How deep `search` and `analyze` go; deeper trees are almost always generated ones.
const MAX_WALK_DEPTH: usize = 64;

/// Folders of version-control metadata: never what a search or a summary is after.
const VCS_DIRS: [&str; 3] = [".git", ".hg", ".svn"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A pipe, socket or device: listed, never read.
    Other,
}

/// An entry that passed the sandbox.
pub struct Found {
    /// Relative to the folder being walked.
    pub sub: PathBuf,
    /// What to open: the entry itself, or a symlink's canonical target.
    pub real: PathBuf,
    pub kind: Kind,
    /// Of `real`, so a symlink reports what a read would return.
    pub meta: fs::Metadata,
}

/// A glob matched against paths relative to the walked folder. `*` stays within one folder;
/// `**` crosses folders.
pub fn glob(pattern: Option<&str>) -> Result<Option<GlobMatcher>, ToolError> {
    let Some(pattern) = pattern.filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let glob = GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| {
            ToolError::InvalidArguments(format!("glob `{pattern}` is not valid: {}", e.kind()))
        })?;
    Ok(Some(glob.compile_matcher()))
}

/// Check one entry of a walk of `start` against the sandbox. `None` for links leaving the roots,
/// broken links, excluded entries, and entries that vanished or cannot be read.
pub fn check(roots: &Roots, start: &Target, entry: &DirEntry) -> Option<Found> {
    let sub = entry.path().strip_prefix(&start.real).ok()?.to_owned();
    let shown = under(&start.rel, &sub);
    if entry.path_is_symlink() {
        let real = roots.follow_link(entry.path())?;
        if roots.excludes_entry(&shown, &real, true) {
            return None;
        }
        let meta = fs::metadata(&real).ok()?;
        return Some(Found {
            sub,
            real,
            kind: Kind::Symlink,
            meta,
        });
    }
    if roots.excludes_entry(&shown, entry.path(), false) {
        return None;
    }
    let meta = entry.metadata().ok()?;
    let kind = if meta.is_dir() {
        Kind::Dir
    } else if meta.is_file() {
        Kind::File
    } else {
        Kind::Other
    };
    Some(Found {
        sub,
        real: entry.path().to_owned(),
        kind,
        meta,
    })
}

/// Whether a walk of `start` may go into `entry`: not into an excluded folder. Only real
/// folders need this; a walk never follows a symlink.
pub fn enters(roots: &Roots, start: &Target, entry: &DirEntry) -> bool {
    if !entry.file_type().is_dir() {
        return true;
    }
    let Ok(sub) = entry.path().strip_prefix(&start.real) else {
        return false;
    };
    !roots.excludes_entry(&under(&start.rel, sub), entry.path(), false)
}

/// The regular files under `start` (a folder, or a single file), in path order, skipping
/// version-control and excluded folders. Stops early, with an error, when `cancel` fires.
pub fn files_under<'a>(
    roots: &'a Roots,
    start: &'a Target,
    glob: Option<&'a GlobMatcher>,
    cancel: &'a CancellationToken,
) -> impl Iterator<Item = Result<Found, ToolError>> + 'a {
    let walker = WalkDir::new(&start.real)
        .follow_links(false)
        .max_depth(MAX_WALK_DEPTH)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let vcs = e.depth() > 0 && e.file_type().is_dir() && is_vcs_dir(e.file_name());
            !vcs && enters(roots, start, e)
        });
    let mut stopped = false;
    walker.filter_map(move |entry| {
        if stopped {
            return None;
        }
        if cancel.is_cancelled() {
            stopped = true;
            return Some(Err(cancelled()));
        }
        let found = check(roots, start, &entry.ok()?)?;
        let wanted = found.meta.is_file()
            && glob.is_none_or(|g| g.is_match(match_path(&start.real, &found)));
        wanted.then_some(Ok(found))
    })
}

/// The path a glob is matched against; a single file walked on its own matches by its name.
fn match_path<'p>(start: &'p Path, found: &'p Found) -> &'p Path {
    if found.sub.as_os_str().is_empty() {
        start.file_name().map(Path::new).unwrap_or(start)
    } else {
        &found.sub
    }
}

fn is_vcs_dir(name: &std::ffi::OsStr) -> bool {
    VCS_DIRS.iter().any(|d| name == *d)
}

pub fn cancelled() -> ToolError {
    ToolError::Failed("the call was cancelled".into())
}

/// RFC 3339 in UTC, to the second.
pub fn modified(meta: &fs::Metadata) -> Option<String> {
    let time = meta.modified().ok()?;
    Some(DateTime::<Utc>::from(time).to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// NUL bytes near the start: the usual sign of a binary file.
pub fn looks_binary(head: &[u8]) -> bool {
    head[..head.len().min(SNIFF_BYTES)].contains(&0)
}

/// At most `max` characters of `text`, with `…` when cut.
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A byte count as a person reads it.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Join a root-relative folder and a path under it, for output.
pub fn under(folder: &Path, sub: &Path) -> PathBuf {
    if sub.as_os_str().is_empty() {
        folder.to_owned()
    } else {
        folder.join(sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_keep_star_within_one_folder() {
        let g = glob(Some("*.md")).unwrap().unwrap();
        assert!(g.is_match("a.md"));
        assert!(!g.is_match("docs/a.md"));
        let g = glob(Some("**/*.md")).unwrap().unwrap();
        assert!(g.is_match("a.md") && g.is_match("docs/deep/a.md"));
        assert!(matches!(
            glob(Some("[")),
            Err(ToolError::InvalidArguments(_))
        ));
        assert!(glob(Some("")).unwrap().is_none());
    }

    #[test]
    fn clip_cuts_on_characters() {
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(clip("hé", 2), "hé");
        assert_eq!(human_size(1536), "1.5 KB");
    }
}
