//! What every benchmark needs: the release binary it measures.

use std::path::{Path, PathBuf};

/// Build `plugboard` in release mode and return its path.
pub fn binary() -> PathBuf {
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--release", "--bin", "plugboard"])
        .status()
        .expect("cargo build");
    assert!(status.success(), "release build failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("release/plugboard")
}
