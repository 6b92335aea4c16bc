//! The files plugin's path resolver, against a root laid out once per process: files, a
//! secret, links inside and out, a hard link to a file outside.

use std::{
    path::{Component, Path, PathBuf},
    sync::OnceLock,
};

use crate::sandbox::{self, Exclude, Roots, roots::normalize_relative};

struct Layout {
    /// As the plugin would open them: the root by its real path, and by a symlink to it.
    roots: Vec<Roots>,
    /// Canonical.
    root: PathBuf,
    outside: PathBuf,
}

fn layout() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("plugboard-fuzz-{}", std::process::id()));
        let root = base.join("root");
        let outside = base.join("outside");
        let made = (|| -> std::io::Result<()> {
            let _ = std::fs::remove_dir_all(&base);
            for dir in [root.join("sub/deeper"), root.join(".ssh"), outside.clone()] {
                std::fs::create_dir_all(dir)?;
            }
            for (file, text) in [
                (root.join("a.txt"), "a"),
                (root.join("sub/b.md"), "b"),
                (root.join(".env"), "KEY=secret"),
                (root.join(".env.example"), "KEY="),
                (root.join(".ssh/id_ed25519"), "key"),
                (outside.join("secret.txt"), "secret"),
                (outside.join("linked.txt"), "secret"),
            ] {
                std::fs::write(file, text)?;
            }
            #[cfg(unix)]
            {
                use std::os::unix::fs::symlink;
                symlink(outside.join("secret.txt"), root.join("out.txt"))?;
                symlink(&outside, root.join("sub/out"))?;
                symlink("../a.txt", root.join("sub/in.txt"))?;
                symlink("missing", root.join("dangling"))?;
                symlink(&root, base.join("alias"))?;
                std::fs::hard_link(outside.join("linked.txt"), root.join("hard.txt"))?;
            }
            Ok(())
        })();
        if let Err(e) = made {
            panic!("cannot lay out {}: {e}", base.display());
        }
        let exclude = Exclude::new(
            &sandbox::default_exclude(),
            &sandbox::default_include_anyway(),
        )
        .expect("the default globs compile");
        let roots = [root.clone(), base.join("alias")]
            .iter()
            .map(|r| Roots::new(std::slice::from_ref(r), &base, exclude.clone()))
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        let canonical = |p: &Path| std::fs::canonicalize(p).expect("laid out above");
        Layout {
            roots,
            root: canonical(&root),
            outside: canonical(&outside),
        }
    })
}

/// A requested path (as a model sends it). What resolves lies inside the root, reached by no
/// `..`, is no secret and no hard link; `..` never survives normalisation.
pub fn paths(bytes: &[u8]) {
    let requested = String::from_utf8_lossy(bytes);
    if let Some(norm) = normalize_relative(Path::new(requested.as_ref())) {
        assert!(
            norm.components().all(|c| matches!(c, Component::Normal(_))),
            "{norm:?}"
        );
    }
    let layout = layout();
    for roots in &layout.roots {
        for resolved in [
            roots.resolve(Some(&requested)),
            roots.resolve_file(&requested),
        ] {
            let target = match resolved {
                Ok(target) => target,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    continue;
                }
            };
            let real = &target.real;
            assert!(real.starts_with(&layout.root), "{requested:?} → {real:?}");
            assert!(
                !real.starts_with(&layout.outside),
                "{requested:?} → {real:?}"
            );
            assert!(
                target
                    .rel
                    .components()
                    .all(|c| matches!(c, Component::Normal(_))),
                "{requested:?} → {:?}",
                target.rel
            );
            let name = real.file_name().and_then(|n| n.to_str()).unwrap_or("");
            assert!(
                name != ".env" && name != "hard.txt" && !real.to_string_lossy().contains(".ssh"),
                "{requested:?} → {real:?}"
            );
        }
    }
}
