//! The folders a plugin may read, and the only way a requested path becomes a real one.
//!
//! A path is first normalised lexically (so `..` can never climb above a root), then found in a
//! root, then canonicalised; the canonical path must still lie inside some root, which is what
//! catches symlinks pointing elsewhere. Entries met while walking are checked the same way by
//! [`Roots::follow_link`].
//!
//! Inside the roots, paths the `exclude` setting names are refused too: both the path as
//! requested and the canonical one are judged, so a symlink cannot lead to an excluded file.

use std::{
    io,
    path::{Component, Path, PathBuf},
};

use super::exclude::Exclude;
use crate::plugin::ToolError;

/// The canonical root folders, in the order relative paths are tried.
#[derive(Debug, Clone)]
pub struct Roots {
    roots: Vec<Root>,
    /// Secrets inside the roots: refused by `resolve`, skipped by walks.
    exclude: Exclude,
    /// The plugin whose settings these are and its setting naming the roots, for refusals
    /// (`files`/`roots`, `airtable`/`import_roots`).
    owner: &'static str,
    setting: &'static str,
    /// Where a model can see what is there, for "not found" answers (`files_list`).
    listing: Option<String>,
    /// Whether a regular file with more than one name may be read. Off by default: a hard link
    /// inside a root to a file outside it looks, to every path check, like a file inside.
    hard_links: bool,
}

#[derive(Debug, Clone)]
struct Root {
    /// Canonical: what every resolved path is checked against.
    real: PathBuf,
    /// Absolute as configured: a model may quote it (say `/tmp/x` where `/tmp` is a symlink),
    /// so absolute paths under this spelling are accepted too.
    given: PathBuf,
}

/// A requested path that passed the sandbox.
#[derive(Debug, Clone)]
pub struct Target {
    /// Index of the root it was found in.
    pub root: usize,
    /// Relative to that root, as requested (symlinks not followed): what the model is shown.
    pub rel: PathBuf,
    /// Canonical: what is opened.
    pub real: PathBuf,
}

impl Roots {
    /// Canonicalise `paths` (relative ones against `cwd`). An empty list means `cwd` alone.
    pub fn new(paths: &[PathBuf], cwd: &Path, exclude: Exclude) -> Result<Self, String> {
        let paths = if paths.is_empty() {
            vec![cwd.to_owned()]
        } else {
            paths.to_vec()
        };
        Self::exactly(&paths, cwd, exclude)
    }

    /// Canonicalise `paths` (relative ones against `cwd`); none means no file can be read.
    pub fn exactly(paths: &[PathBuf], cwd: &Path, exclude: Exclude) -> Result<Self, String> {
        let mut roots = Vec::with_capacity(paths.len());
        for path in paths {
            let given = normalize_absolute(&cwd.join(path));
            let real = std::fs::canonicalize(&given)
                .map_err(|e| format!("files root `{}` cannot be used: {e}", path.display()))?;
            if !real.is_dir() {
                return Err(format!("files root `{}` is not a folder", path.display()));
            }
            roots.push(Root { real, given });
        }
        Ok(Self {
            roots,
            exclude,
            owner: "files",
            setting: "roots",
            listing: Some("files_list".into()),
            hard_links: false,
        })
    }

    /// Name the plugin these roots belong to, and the tool (if any) that lists them, in what
    /// refusals say.
    pub fn owned_by(
        mut self,
        owner: &'static str,
        setting: &'static str,
        listing: Option<String>,
    ) -> Self {
        self.owner = owner;
        self.setting = setting;
        self.listing = listing;
        self
    }

    /// Let regular files with several names (hard links) be read.
    pub fn allowing_hard_links(mut self, allow: bool) -> Self {
        self.hard_links = allow;
        self
    }

    /// Whether a file with this metadata is refused for being hard-linked: a regular file
    /// with more than one name, one of which may lie outside every root.
    pub fn refuses_hard_link(&self, meta: &std::fs::Metadata) -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            !self.hard_links && meta.is_file() && meta.nlink() > 1
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            false
        }
    }

    /// Whether no folder at all may be read.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// A regular file that may be read (a folder or a device is refused).
    pub fn resolve_file(&self, path: &str) -> Result<Target, ToolError> {
        if self.roots.is_empty() {
            return Err(ToolError::Forbidden(format!(
                "no folder is open for reading files: set {} (or the {} plugin's `{}` setting) \
                 to the folders files may be read from",
                super::ROOTS_ENV,
                self.owner,
                self.setting
            )));
        }
        let target = self.resolve(Some(path))?;
        if !target.real.is_file() {
            return Err(ToolError::InvalidArguments(format!(
                "`{path}` is not a file"
            )));
        }
        Ok(target)
    }

    fn look(&self) -> String {
        match &self.listing {
            Some(tool) => format!("; use {tool} to see what is there"),
            None => String::new(),
        }
    }

    /// The canonical path of root `index`, for output.
    pub fn root_display(&self, index: usize) -> String {
        self.roots[index].real.display().to_string()
    }

    /// Whether a canonical path lies inside some root.
    pub fn contains(&self, real: &Path) -> bool {
        self.roots.iter().any(|r| real.starts_with(&r.real))
    }

    /// The outermost root holding the canonical `real`: a walk that starts there meets every
    /// ignore file above `real` that lies inside the roots, and none outside them.
    pub fn outermost_holding(&self, real: &Path) -> Option<&Path> {
        self.roots
            .iter()
            .map(|r| r.real.as_path())
            .filter(|root| real.starts_with(root))
            .min_by_key(|root| root.components().count())
    }

    /// Where the symlink at `link` leads, if that is inside a root. `None` for links that leave
    /// every root and for broken links: a walker skips both.
    pub fn follow_link(&self, link: &Path) -> Option<PathBuf> {
        std::fs::canonicalize(link)
            .ok()
            .filter(|real| self.contains(real))
    }

    /// Whether a walked entry is excluded: `shown` is its path relative to a root as the model
    /// sees it, `real` the path that would be opened. Only the entry itself is judged, as a walk
    /// never enters an excluded folder; except for a symlink, whose target may lie anywhere.
    pub fn excludes_entry(&self, shown: &Path, real: &Path, is_link: bool) -> bool {
        self.exclude.hides_entry(shown) || self.excludes_real(real, is_link)
    }

    /// Whether the canonical `real` is excluded, judged relative to every root that holds it;
    /// `whole` judges the folders above it too.
    fn excludes_real(&self, real: &Path, whole: bool) -> bool {
        self.roots
            .iter()
            .filter_map(|r| real.strip_prefix(&r.real).ok())
            .any(|rel| {
                if whole {
                    self.exclude.hides(rel)
                } else {
                    self.exclude.hides_entry(rel)
                }
            })
    }

    /// Turn a requested path into one that may be read. With no path (or an empty one), the
    /// first root.
    pub fn resolve(&self, path: Option<&str>) -> Result<Target, ToolError> {
        let requested = path.unwrap_or("");
        if requested.contains('\0') {
            return Err(ToolError::Forbidden("the path contains a NUL byte".into()));
        }
        let path = Path::new(requested);
        if path.has_root() {
            let norm = normalize_absolute(path);
            for (index, root) in self.roots.iter().enumerate() {
                for base in [&root.real, &root.given] {
                    if let Ok(rest) = norm.strip_prefix(base) {
                        return self.within(index, rest.to_owned(), requested);
                    }
                }
            }
            return Err(ToolError::Forbidden(format!(
                "`{requested}` is outside the folders this tool may read ({}); \
                 give a path relative to one of them",
                self.names()
            )));
        }
        let rel = normalize_relative(path).ok_or_else(|| {
            ToolError::Forbidden(format!(
                "`{requested}` uses `..` to climb out of the root folder"
            ))
        })?;
        // Before looking on disk, so the answer does not tell whether the file exists.
        if self.exclude.hides(&rel) {
            return Err(excluded(requested, self.owner));
        }
        let found = self
            .roots
            .iter()
            .position(|r| r.real.join(&rel).symlink_metadata().is_ok());
        match found {
            Some(index) => self.within(index, rel, requested),
            None => Err(ToolError::NotFound(format!(
                "`{requested}` does not exist in {}{}",
                self.names(),
                self.look()
            ))),
        }
    }

    fn within(&self, root: usize, rel: PathBuf, requested: &str) -> Result<Target, ToolError> {
        if self.exclude.hides(&rel) {
            return Err(excluded(requested, self.owner));
        }
        let candidate = self.roots[root].real.join(&rel);
        let real = match std::fs::canonicalize(&candidate) {
            Ok(real) => real,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let what = if candidate.symlink_metadata().is_ok() {
                    "is a symlink whose target does not exist"
                } else {
                    "does not exist"
                };
                return Err(ToolError::NotFound(format!(
                    "`{requested}` {what}{}",
                    self.look()
                )));
            }
            Err(e) => return Err(ToolError::Failed(format!("cannot open `{requested}`: {e}"))),
        };
        if !self.contains(&real) {
            return Err(ToolError::Forbidden(format!(
                "`{requested}` is a symlink (or lies under one) that leads outside the folders \
                 this tool may read"
            )));
        }
        if self.excludes_real(&real, true) {
            return Err(excluded(requested, self.owner));
        }
        if std::fs::metadata(&real).is_ok_and(|m| self.refuses_hard_link(&m)) {
            return Err(ToolError::Forbidden(format!(
                "`{requested}` is a hard link (a file with more than one name, and the other \
                 may lie outside the folders this tool may read); copy it instead, or set \
                 the {} plugin's `allow_hard_links` setting if every name is yours to share",
                self.owner
            )));
        }
        Ok(Target { root, rel, real })
    }
}

impl Roots {
    /// The canonical roots, quoted, for messages.
    fn names(&self) -> String {
        let names: Vec<String> = self
            .roots
            .iter()
            .map(|r| format!("`{}`", r.real.display()))
            .collect();
        if names.is_empty() {
            "no folder".into()
        } else {
            names.join(", ")
        }
    }
}

/// The refusal of an excluded path. It says why, so the model does not retry another way.
fn excluded(requested: &str, owner: &str) -> ToolError {
    ToolError::Forbidden(format!(
        "`{requested}` is excluded by the `exclude` setting of the {owner} plugin (files that may \
         hold secrets, such as `.env` files and private keys, are never shown), or leads to such \
         a file; it cannot be read, listed or searched"
    ))
}

/// A relative path as shown to the model: `/`-separated, `.` for the root itself.
pub fn show(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        ".".into()
    } else {
        rel.to_string_lossy().into_owned()
    }
}

/// Drop `.` and apply `..` without touching the disk; `None` if `..` climbs above the start.
pub(crate) fn normalize_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Like [`normalize_relative`] for an absolute path; `..` at the top stays at the top, as the
/// kernel does.
fn normalize_absolute(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// Roots with nothing excluded: exclusions are tested in `exclude`.
    fn open(paths: &[PathBuf], cwd: &Path) -> Result<Roots, String> {
        Roots::new(paths, cwd, Exclude::nothing())
    }

    fn setup() -> (tempfile::TempDir, tempfile::TempDir, Roots) {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("docs")).unwrap();
        fs::write(root.path().join("docs/a.md"), "# A\n").unwrap();
        fs::write(outside.path().join("secret.txt"), "secret").unwrap();
        let roots = open(&[root.path().to_owned()], Path::new("/")).unwrap();
        (root, outside, roots)
    }

    fn refused(result: Result<Target, ToolError>) -> String {
        match result {
            Err(ToolError::Forbidden(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn relative_paths_resolve_inside_the_root() {
        let (_root, _outside, roots) = setup();
        let target = roots.resolve(Some("docs/../docs/./a.md")).unwrap();
        assert_eq!(target.rel, Path::new("docs/a.md"));
        assert!(roots.contains(&target.real));
        assert_eq!(roots.resolve(None).unwrap().rel, Path::new(""));
    }

    #[test]
    fn dot_dot_that_escapes_is_refused() {
        let (_root, _outside, roots) = setup();
        let message = refused(roots.resolve(Some("docs/../../etc/passwd")));
        assert!(message.contains("`..`"), "{message}");
        refused(roots.resolve(Some("..")));
    }

    #[test]
    fn absolute_paths_outside_every_root_are_refused() {
        let (root, outside, roots) = setup();
        refused(roots.resolve(Some("/etc/passwd")));
        let secret = outside.path().join("secret.txt");
        refused(roots.resolve(Some(secret.to_str().unwrap())));
        let sneaky = root.path().join("docs/../../etc/passwd");
        refused(roots.resolve(Some(sneaky.to_str().unwrap())));
        let inside = root.path().join("docs/a.md");
        assert_eq!(
            roots.resolve(Some(inside.to_str().unwrap())).unwrap().rel,
            Path::new("docs/a.md")
        );
    }

    #[test]
    fn nul_bytes_are_refused() {
        let (_root, _outside, roots) = setup();
        refused(roots.resolve(Some("docs/a.md\0.txt")));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_leaving_the_root_are_refused() {
        use std::os::unix::fs::symlink;
        let (root, outside, roots) = setup();
        symlink(
            outside.path().join("secret.txt"),
            root.path().join("file-link"),
        )
        .unwrap();
        symlink(outside.path(), root.path().join("dir-link")).unwrap();
        symlink(
            root.path().join("docs/a.md"),
            root.path().join("inside-link"),
        )
        .unwrap();
        refused(roots.resolve(Some("file-link")));
        refused(roots.resolve(Some("dir-link")));
        refused(roots.resolve(Some("dir-link/secret.txt")));
        assert!(roots.follow_link(&root.path().join("file-link")).is_none());
        let inside = roots.resolve(Some("inside-link")).unwrap();
        assert_eq!(inside.rel, Path::new("inside-link"));
        assert!(inside.real.ends_with("docs/a.md"));
    }

    #[test]
    fn missing_paths_are_not_found_and_later_roots_are_tried() {
        let (root, _outside, _) = setup();
        let second = tempfile::tempdir().unwrap();
        fs::write(second.path().join("only-here.txt"), "x").unwrap();
        let roots = open(
            &[root.path().to_owned(), second.path().to_owned()],
            Path::new("/"),
        )
        .unwrap();
        assert!(matches!(
            roots.resolve(Some("nope.txt")),
            Err(ToolError::NotFound(_))
        ));
        assert_eq!(roots.resolve(Some("only-here.txt")).unwrap().root, 1);
        assert_eq!(roots.resolve(Some("docs")).unwrap().root, 0);
    }

    #[test]
    fn roots_must_be_existing_folders() {
        let (root, _outside, _) = setup();
        let missing = open(&[root.path().join("missing")], Path::new("/")).unwrap_err();
        assert!(missing.contains("cannot be used"), "{missing}");
        let file = open(&[root.path().join("docs/a.md")], Path::new("/")).unwrap_err();
        assert!(file.contains("not a folder"), "{file}");
        let relative = open(&[PathBuf::from("docs")], root.path()).unwrap();
        assert!(relative.root_display(0).ends_with("docs"));
    }
}
