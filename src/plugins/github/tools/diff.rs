//! Pull request diffs for `pull_request_read`: narrowed to some files, cut into pieces that
//! end on a line and say where to continue, and patches in `get_files` kept bounded.

use serde_json::{Value, json};

use super::truncate;

/// Default size of one piece of a diff.
pub(super) const DIFF_PIECE: usize = 20_000;

/// Most bytes of one file's patch in `get_files` with `full`.
const PATCH_MAX: usize = 4_000;

/// Keep a file's patch bounded; the whole of it is in `get_diff` with `files`.
pub(crate) fn cap_patch(file: &mut Value) {
    let Some(patch) = file["patch"].as_str() else {
        return;
    };
    if patch.len() > PATCH_MAX {
        let name = file["filename"].as_str().unwrap_or("");
        let text = format!(
            "{}\n[patch truncated: {} bytes; get_diff with files: [\"{name}\"] reads all of it]",
            truncate(patch, PATCH_MAX).trim_end_matches('…'),
            patch.len()
        );
        file["patch"] = json!(text);
    }
}

/// The parts of a unified diff (`diff --git a/x b/y` sections) that touch `files`; also the
/// files asked for that had no part.
pub(crate) fn only_files(diff: &str, files: &[String]) -> (String, Vec<String>) {
    let mut kept = String::new();
    let mut found = vec![false; files.len()];
    for section in sections(diff) {
        let header = section.lines().next().unwrap_or("");
        let hit = files.iter().enumerate().find(|(_, f)| {
            header.ends_with(&format!(" b/{f}")) || header.contains(&format!(" a/{f} "))
        });
        if let Some((i, _)) = hit {
            found[i] = true;
            kept.push_str(section);
        }
    }
    let missing = files
        .iter()
        .zip(found)
        .filter(|(_, f)| !f)
        .map(|(n, _)| n.clone())
        .collect();
    (kept, missing)
}

fn sections(diff: &str) -> Vec<&str> {
    let mut starts: Vec<usize> = diff
        .match_indices("diff --git ")
        .map(|(i, _)| i)
        .filter(|&i| i == 0 || diff.as_bytes()[i - 1] == b'\n')
        .collect();
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    starts.push(diff.len());
    starts
        .windows(2)
        .map(|w| &diff[w[0]..w[1]])
        .filter(|s| !s.is_empty())
        .collect()
}

/// At most `max` bytes of `text` from `offset`, ending at a line break where one is near, and
/// a closing line saying what was left out and where to continue.
pub(crate) fn piece(text: &str, offset: usize, max: usize) -> String {
    let total = text.len();
    if total == 0 {
        return "(this pull request changes no text: its diff is empty)".into();
    }
    if offset >= total {
        return format!(
            "[offset {offset} is past the end of the diff ({total} bytes); start from offset 0]"
        );
    }
    let mut start = offset;
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (start + max).min(total);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < total
        && let Some(nl) = text[start..end].rfind('\n')
        && nl > 0
    {
        end = start + nl + 1;
    }
    let mut out = text[start..end].to_owned();
    if start > 0 || end < total {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        if end < total {
            out.push_str(&format!(
                "[diff truncated: bytes {start}–{end} of {total} shown; call again with offset {end} for the rest]"
            ));
        } else {
            out.push_str(&format!("[end of diff: bytes {start}–{end} of {total}]"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIFF: &str = "diff --git a/src/a.rs b/src/a.rs\n--- a/src/a.rs\n+++ b/src/a.rs\n@@ -1 +1 @@\n-old\n+new\ndiff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n@@ -1 +1,2 @@\n hi\n+there\n";

    #[test]
    fn diff_pieces_end_on_lines_and_say_where_to_continue() {
        let first = piece(DIFF, 0, 40);
        assert!(first.starts_with("diff --git a/src/a.rs"));
        let marker = first.lines().last().unwrap();
        assert!(marker.starts_with("[diff truncated: bytes 0–"), "{marker}");
        let end: usize = marker
            .split("offset ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(&DIFF[end - 1..end], "\n");
        // Following the offsets reassembles the whole diff.
        let mut whole = String::new();
        let mut offset = 0;
        loop {
            let p = piece(DIFF, offset, 40);
            let (body, marker) = p.rsplit_once('[').unwrap();
            whole.push_str(body);
            if marker.starts_with("end of diff") {
                break;
            }
            offset = marker
                .split("offset ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
        }
        assert_eq!(whole, DIFF);
        assert_eq!(piece(DIFF, 0, 100_000), DIFF);
        assert!(piece(DIFF, 10_000, 100).contains("past the end"));
    }

    #[test]
    fn patches_are_bounded() {
        let mut file = json!({"filename": "big.rs", "patch": "+x\n".repeat(5_000)});
        cap_patch(&mut file);
        let patch = file["patch"].as_str().unwrap();
        assert!(patch.len() < PATCH_MAX + 200, "{}", patch.len());
        assert!(patch.ends_with(
            "[patch truncated: 15000 bytes; get_diff with files: [\"big.rs\"] reads all of it]"
        ));
    }

    #[test]
    fn diff_can_be_narrowed_to_files() {
        let (kept, missing) = only_files(DIFF, &["README.md".into(), "nope.rs".into()]);
        assert!(kept.starts_with("diff --git a/README.md"));
        assert!(!kept.contains("src/a.rs"));
        assert_eq!(missing, ["nope.rs"]);
    }
}
