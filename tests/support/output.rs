//! What the suite captured, kept for `scripts/secret-scan`: when `PLUGBOARD_TEST_OUTPUT`
//! names a folder, [`save`] writes each capture there as a file of its own (a server's
//! stderr, a CLI run's output, the requests a fake received). Unset, nothing is written.
//!
//! Included with `#[path]` by the fixtures and by each fake, so the benches that use a fake
//! keep its captures too.

#![allow(dead_code)]

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
};

/// The folder captures go to, if the run asked for one.
pub fn dir() -> Option<PathBuf> {
    std::env::var_os("PLUGBOARD_TEST_OUTPUT")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
}

/// Write `text` to a new file `{kind}-{pid}-{n}.txt`, its first line `# {what}`. A capture
/// that cannot be written fails the test: the scan would pass over it unseen.
pub fn save(kind: &str, what: &str, text: &str) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let Some(dir) = dir() else {
        return;
    };
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{kind}-{}-{n}.txt", std::process::id()));
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, format!("# {what}\n{text}")));
    if let Err(e) = written {
        let message = format!(
            "PLUGBOARD_TEST_OUTPUT: cannot write {}: {e}",
            path.display()
        );
        if std::thread::panicking() {
            eprintln!("{message}");
        } else {
            panic!("{message}");
        }
    }
}
