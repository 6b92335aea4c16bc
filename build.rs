//! Hands the linker link/symbol-order.txt (made by scripts/symbol-order): the functions
//! plugboard runs to start and to answer a request, laid out together so the kernel maps
//! fewer pages of code for them (idle RSS with every plugin 11.9 → 8.1 MB; see the README's
//! "Performance"). Only where the linker is Rust's default LLD (x86_64 Linux since Rust
//! 1.90) and nothing overrides it; `PLUGBOARD_NO_SYMBOL_ORDER=1` skips it.

use std::{env, path::Path, process::Command};

fn main() {
    let order = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("link/symbol-order.txt");
    println!("cargo::rerun-if-changed={}", order.display());
    println!("cargo::rerun-if-env-changed=PLUGBOARD_NO_SYMBOL_ORDER");
    println!("cargo::rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    if order.exists() && default_lld() && env::var_os("PLUGBOARD_NO_SYMBOL_ORDER").is_none() {
        println!(
            "cargo::rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo::rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether this build links with the LLD rustc ships and picks by default.
fn default_lld() -> bool {
    if env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu")
        || env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
    {
        return false;
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if ["linker", "link-self-contained", "fuse-ld"]
        .iter()
        .any(|f| flags.contains(f))
    {
        return false;
    }
    // `rustc 1.95.0 (…)`: LLD became the default linker here in 1.90.
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let minor = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
}
