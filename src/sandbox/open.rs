//! Opening a file the sandbox resolved, without the race between check and open.
//!
//! [`Roots::resolve`] checks a path (canonical, inside a root, not excluded); opening that
//! path afterwards walks it again, and a component swapped for a symlink in between would
//! lead anywhere. On Linux the file is opened with `openat2` beneath its root's directory,
//! refusing any symlink on the way (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`; the canonical
//! path has none, so one appearing is the race). Where `openat2` is missing (Linux before
//! 5.6, other systems) the file is opened without following a final symlink and the opened
//! file's own path is checked against the roots afterwards.
//!
//! Either way the checks that matter are made on the open file itself: a FIFO, socket or
//! device is never read (opened non-blocking, so a FIFO cannot hang the open, and refused by
//! its type), and a hard link is refused by its link count unless allowed.

use std::{fs::File, io, path::Path};

use super::roots::Roots;
use crate::plugin::ToolError;

impl Roots {
    /// Open the canonical path `real` (a [`super::Target`]'s) for reading, as a regular file
    /// inside the roots; `shown` names it in errors.
    pub fn open_file(
        &self,
        real: &Path,
        shown: &str,
    ) -> Result<(File, std::fs::Metadata), ToolError> {
        let root = self.outermost_holding(real).ok_or_else(|| outside(shown))?;
        let not_regular = || {
            ToolError::InvalidArguments(format!(
                "`{shown}` is not a regular file (a folder, pipe, socket or device) and cannot be \
                 read"
            ))
        };
        // A socket cannot be opened at all: say what it is. (What was opened is judged below.)
        if std::fs::symlink_metadata(real).is_ok_and(|m| !m.is_file() && !m.is_symlink()) {
            return Err(not_regular());
        }
        let file = open_beneath(root, real).map_err(|e| match e.raw_os_error() {
            // ELOOP: a symlink where the canonical path had none; EXDEV: out of the root.
            Some(40) | Some(18) => outside(shown),
            // ENXIO: a socket, or a device with nothing behind it.
            Some(6) => not_regular(),
            _ if e.kind() == io::ErrorKind::NotFound => {
                ToolError::NotFound(format!("`{shown}` does not exist (any more)"))
            }
            _ => ToolError::Failed(format!("cannot open `{shown}`: {e}")),
        })?;
        let meta = file
            .metadata()
            .map_err(|e| ToolError::Failed(format!("cannot open `{shown}`: {e}")))?;
        if !meta.is_file() {
            return Err(not_regular());
        }
        if self.refuses_hard_link(&meta) {
            return Err(ToolError::Forbidden(format!(
                "`{shown}` is a hard link (a file with more than one name, and the other may lie \
                 outside the folders this tool may read); copy it instead, or allow hard links \
                 in the plugin's `allow_hard_links` setting"
            )));
        }
        #[cfg(not(target_os = "linux"))]
        if !self.contains(&std::fs::canonicalize(real).map_err(|_| outside(shown))?) {
            return Err(outside(shown));
        }
        Ok((file, meta))
    }
}

fn outside(shown: &str) -> ToolError {
    ToolError::Forbidden(format!(
        "`{shown}` leads outside the folders this tool may read (a symlink, or one put in \
         place while it was being opened)"
    ))
}

#[cfg(target_os = "linux")]
fn open_beneath(root: &Path, real: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags, ResolveFlags, open, openat2};

    let rel = real
        .strip_prefix(root)
        .map_err(|_| io::Error::from_raw_os_error(18))?;
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    let dir = open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match openat2(&dir, rel, flags, Mode::empty(), resolve) {
        Ok(fd) => Ok(File::from(fd)),
        // No openat2 (before 5.6, or filtered by a seccomp policy): open, then check what was
        // opened.
        Err(e) if e == rustix::io::Errno::NOSYS || e == rustix::io::Errno::PERM => {
            let fd = rustix::fs::openat(&dir, rel, flags | OFlags::NOFOLLOW, Mode::empty())?;
            let opened = std::fs::read_link(format!("/proc/self/fd/{}", {
                use std::os::fd::AsRawFd;
                fd.as_raw_fd()
            }))?;
            if opened != real {
                return Err(io::Error::from_raw_os_error(18));
            }
            Ok(File::from(fd))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn open_beneath(_root: &Path, real: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_nofollow_nonblock())
            .open(real)
    }
    #[cfg(not(unix))]
    {
        File::open(real)
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
fn libc_nofollow_nonblock() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32 | rustix::fs::OFlags::NONBLOCK.bits() as i32
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::{io::Read, os::unix::fs::symlink, path::PathBuf};

    use super::*;
    use crate::sandbox::exclude::Exclude;

    fn roots(dir: &Path) -> Roots {
        Roots::exactly(&[dir.to_path_buf()], dir, Exclude::nothing()).unwrap()
    }

    #[test]
    fn a_file_resolved_then_swapped_for_a_symlink_out_is_not_opened() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "outside").unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        std::fs::write(root.path().join("sub/a.txt"), "inside").unwrap();
        let roots = roots(root.path());
        let target = roots.resolve_file("sub/a.txt").unwrap();
        // Between check and open, the folder becomes a symlink out of the root.
        std::fs::rename(root.path().join("sub"), root.path().join("was")).unwrap();
        symlink(outside.path(), root.path().join("sub")).unwrap();
        std::fs::write(outside.path().join("a.txt"), "outside").unwrap();
        let e = roots.open_file(&target.real, "sub/a.txt").unwrap_err();
        assert!(matches!(e, ToolError::Forbidden(_)), "{e}");
        // Unswapped, it opens.
        std::fs::remove_file(root.path().join("sub")).unwrap();
        std::fs::rename(root.path().join("was"), root.path().join("sub")).unwrap();
        let (mut file, _) = roots.open_file(&target.real, "sub/a.txt").unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!(text, "inside");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let root = tempfile::tempdir().unwrap();
        let fifo: PathBuf = root.path().join("pipe");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let roots = roots(root.path());
        let real = std::fs::canonicalize(&fifo).unwrap();
        let e = roots.open_file(&real, "pipe").unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
