//! Upstream tool names as plugboard publishes them: `<prefix>_<name>` within 64 characters of
//! `[a-zA-Z0-9_-]`. A name that does not fit is made to, deterministically: other characters
//! become `_`, and a name still too long keeps its start and ends in a short hash of the
//! original, so the same upstream name is always published the same way.

use sha2::Digest;

/// The local name (before the prefix) for `upstream`, given `room` characters for it.
pub fn local_name(upstream: &str, room: usize) -> String {
    let cleaned: String = upstream
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned == upstream && !cleaned.is_empty() && cleaned.len() <= room {
        return cleaned;
    }
    // Changed or too long: a hash of the original tells apart names that clean alike.
    let digest = sha2::Sha256::digest(upstream.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let keep = room.saturating_sub(hash.len() + 1);
    let start: String = cleaned.chars().take(keep).collect();
    let start = start.trim_matches('_');
    if start.is_empty() {
        hash
    } else {
        format!("{start}_{hash}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_stay_apart() {
        assert_eq!(local_name("echo", 60), "echo");
        let dotted = local_name("files.read", 60);
        assert!(
            dotted.starts_with("files_read_") && dotted.len() == 19,
            "{dotted}"
        );
        assert_ne!(local_name("files.read", 60), local_name("files/read", 60));
        let long = "a".repeat(100);
        let short = local_name(&long, 20);
        assert_eq!(short.len(), 20);
        assert_eq!(short, local_name(&long, 20), "deterministic");
        assert_ne!(short, local_name(&"a".repeat(101), 20));
        assert_eq!(local_name("…", 60).len(), 8);
    }
}
