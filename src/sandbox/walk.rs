//! Walking a folder inside the sandbox: what `list`, `search` and `analyze` share.
//!
//! Walks never follow symlinks on their own (`follow_links(false)`). A symlink entry is shown or
//! read only if its canonical target is inside a root; links that leave the roots, and broken
//! ones, are skipped. Entries the `exclude` setting names are skipped silently, and excluded
//! folders are never entered.
//!
//! Walks also leave out what `.gitignore`, `.ignore` and `.git/info/exclude` files name (build
//! output, dependencies), as ripgrep and fd do, with or without a `.git` folder; the user's
//! global git configuration is never read. Ignore files are about noise, not secrets: the
//! `respect_ignore_files` setting and a call's `include_ignored` turn this off, never `exclude`.
//! Only ignore files inside the roots count. A walk of a folder below its root therefore starts
//! at the root, so the rules of the folders on the way apply, and passes through those folders
//! without showing them. If the folder asked for is itself ignored, that walk never reaches it;
//! it is then walked on its own, since the caller named it (as ripgrep does with a named path).

use std::{
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use chrono::{DateTime, SecondsFormat, Utc};
use globset::{GlobBuilder, GlobMatcher};
use ignore::{DirEntry, WalkBuilder};
use tokio_util::sync::CancellationToken;

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

/// What a caller of [`entries`] chooses about its walk.
#[derive(Debug, Clone)]
pub struct Options {
    /// Levels below the start to go down; 0 yields the start alone.
    pub depth: usize,
    /// Leave out what ignore files name; false walks everything `exclude` lets through.
    pub respect_ignore_files: bool,
    /// Never enter `.git`, `.hg` or `.svn` below the start.
    pub skip_vcs: bool,
    /// Relative to the start: folders wholly before it, in path order, are not entered, so a
    /// `list` page resumes without reading what earlier pages showed.
    pub after: Option<PathBuf>,
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

/// The entries at and under `start`, the start itself first, depth first in path order. Folders
/// that are excluded, ignored or (with `skip_vcs`) version-control metadata are not entered;
/// every entry still has to pass [`check`]. Entries that cannot be read are left out.
pub fn entries(roots: &Arc<Roots>, start: &Target, walk: Options) -> Entries {
    let keep = {
        let (roots, start) = (roots.clone(), start.clone());
        let (skip_vcs, after) = (walk.skip_vcs, walk.after);
        move |entry: &DirEntry| keeps(&roots, &start, skip_vcs, after.as_deref(), entry)
    };
    let on_its_own = builder(
        &start.real,
        walk.depth,
        walk.respect_ignore_files,
        keep.clone(),
    );
    let from_root = roots
        .outermost_holding(&start.real)
        .filter(|_| walk.respect_ignore_files)
        .and_then(|root| {
            let above = start.real.strip_prefix(root).ok()?.components().count();
            (above > 0).then(|| builder(root, above + walk.depth, true, keep))
        });
    match from_root {
        Some(from_root) => Entries {
            walk: from_root.build(),
            start: start.real.clone(),
            reached: false,
            on_its_own: Some(on_its_own),
        },
        None => Entries {
            walk: on_its_own.build(),
            start: start.real.clone(),
            reached: true,
            on_its_own: None,
        },
    }
}

/// The walk [`entries`] returns.
pub struct Entries {
    walk: ignore::Walk,
    /// Entries above it are the way down from the root, not shown.
    start: PathBuf,
    /// The walk has yielded the start.
    reached: bool,
    /// The start walked on its own, for when the walk from the root found it ignored.
    on_its_own: Option<WalkBuilder>,
}

impl Iterator for Entries {
    type Item = DirEntry;

    fn next(&mut self) -> Option<DirEntry> {
        loop {
            match self.walk.next() {
                Some(Ok(entry)) if entry.path().starts_with(&self.start) => {
                    self.reached |= entry.path() == self.start;
                    return Some(entry);
                }
                // A folder on the way down, or an entry that cannot be read.
                Some(_) => continue,
                None => {
                    let on_its_own = self.on_its_own.take()?;
                    if self.reached {
                        return None;
                    }
                    self.reached = true;
                    self.walk = on_its_own.build();
                }
            }
        }
    }
}

/// A walk from `path` down `depth` levels, in file-name order, following no links. Hidden
/// entries are walked (`hidden(false)`); the ignore files inside `path` count when `respect`,
/// those above it never do (`parents(false)`), nor the user's global git excludes.
fn builder<F>(path: &Path, depth: usize, respect: bool, keep: F) -> WalkBuilder
where
    F: Fn(&DirEntry) -> bool + Send + Sync + 'static,
{
    let mut builder = WalkBuilder::new(path);
    builder
        .standard_filters(false)
        .hidden(false)
        .parents(false)
        .git_global(false)
        .require_git(false)
        .git_ignore(respect)
        .git_exclude(respect)
        .ignore(respect)
        .follow_links(false)
        .max_depth(Some(depth))
        .sort_by_file_name(OsStr::cmp)
        .filter_entry(keep);
    builder
}

/// Whether a walk yields `entry` and, for a folder, goes into it. Files are judged later by
/// [`check`]; here folders are pruned. A walk from the root keeps only the folders on the way.
fn keeps(
    roots: &Roots,
    start: &Target,
    skip_vcs: bool,
    after: Option<&Path>,
    entry: &DirEntry,
) -> bool {
    let Ok(sub) = entry.path().strip_prefix(&start.real) else {
        return start.real.starts_with(entry.path());
    };
    let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
    if sub.as_os_str().is_empty() || !is_dir {
        return true;
    }
    if skip_vcs && is_vcs_dir(entry.file_name()) {
        return false;
    }
    if let Some(after) = after
        && sub <= after
        && !after.starts_with(sub)
    {
        return false;
    }
    !roots.excludes_entry(&under(&start.rel, sub), entry.path(), false)
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
        if roots.refuses_hard_link(&meta) {
            return None;
        }
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
    if roots.refuses_hard_link(&meta) {
        return None;
    }
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

/// The regular files under `start` (a folder, or a single file), in path order, skipping
/// version-control, excluded and (when `respect_ignore_files`) ignored folders and files. Stops
/// early, with an error, when `cancel` fires.
pub fn files_under<'a>(
    roots: &'a Arc<Roots>,
    start: &'a Target,
    glob: Option<&'a GlobMatcher>,
    respect_ignore_files: bool,
    cancel: &'a CancellationToken,
) -> impl Iterator<Item = Result<Found, ToolError>> + 'a {
    let walk = Options {
        depth: MAX_WALK_DEPTH,
        respect_ignore_files,
        skip_vcs: true,
        after: None,
    };
    let mut stopped = false;
    entries(roots, start, walk).filter_map(move |entry| {
        if stopped {
            return None;
        }
        if cancel.is_cancelled() {
            stopped = true;
            return Some(Err(cancelled()));
        }
        let found = check(roots, start, &entry)?;
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

fn is_vcs_dir(name: &OsStr) -> bool {
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
