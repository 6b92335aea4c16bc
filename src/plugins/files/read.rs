//! `files_read`: the text of one file, whole or a range of lines or bytes, bounded by
//! `max_read_bytes`.
//!
//! Files are streamed, never loaded whole: a huge log costs only the part returned (plus a line
//! count when the file is small enough to count).
//!
//! Past 600 lines only with its unit tests (from `#[cfg(test)]` on); the tool itself is about
//! 450 lines, one reader with its three ways of choosing a range, and stays whole.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read, Seek, SeekFrom},
    sync::Arc,
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Files, blocking, outcome, show, walk};
use crate::plugin::{Hints, ToolContext, ToolDef, ToolError, ToolOutcome};

/// Files up to this size are read to the end to count their lines; bigger ones report
/// `total_lines: null` rather than pay for a full scan.
const LINE_COUNT_LIMIT: u64 = 64 * 1024 * 1024;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    /// File, relative to a root or absolute inside one.
    path: String,
    /// First line, from 1 (not with `offset`).
    #[schemars(range(min = 1))]
    start_line: Option<u64>,
    /// Last line, inclusive.
    #[schemars(range(min = 1))]
    end_line: Option<u64>,
    /// Byte offset to start at, for very long lines (not with `start_line`).
    offset: Option<u64>,
    /// Bytes to read from `offset`.
    length: Option<u64>,
    /// Most bytes to return; the server caps it (usually 1 MiB).
    #[schemars(range(min = 1))]
    max_bytes: Option<u64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ReadOutput {
    /// The root folder the file is in.
    root: String,
    /// The file, relative to `root`.
    path: String,
    /// File size in bytes.
    size: u64,
    /// Line number of the first line in `text`; null when reading bytes of a very large file.
    start_line: Option<u64>,
    /// Line number of the last line in `text` (it may be cut short when `truncated`).
    end_line: Option<u64>,
    /// Lines in the whole file; null for files too large to count.
    total_lines: Option<u64>,
    /// The requested range did not fit in `max_bytes`; the note in the result says how to
    /// read on.
    truncated: bool,
    /// The content; invalid UTF-8 is replaced with U+FFFD.
    text: String,
    /// For a PDF or DOCX: `pdf` / `docx`. `text`, its lines and offsets are then the
    /// document's extracted text, not the file's bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    extracted_from: Option<String>,
}

pub(super) fn tool(files: Arc<Files>) -> ToolDef {
    ToolDef::new::<ReadArgs, _, _>(
        "read",
        "Read a text file inside the allowed roots (a PDF or DOCX as its text): whole, lines \
         `start_line`..=`end_line`, or `length` bytes from `offset`, up to `max_bytes`. A \
         truncated result says where to go on. Binary files are refused.",
        Hints::read_only(),
        move |args: ReadArgs, cx: ToolContext| {
            let files = files.clone();
            async move { blocking(move || read(&files, args, cx.cancellation())).await }
        },
    )
    .with_title("Read a file")
    .with_output::<ReadOutput>()
}

enum Range {
    Lines { start: u64, end: Option<u64> },
    Bytes { offset: u64, length: Option<u64> },
}

impl ReadArgs {
    fn range(&self) -> Result<Range, ToolError> {
        let lines = self.start_line.is_some() || self.end_line.is_some();
        let bytes = self.offset.is_some() || self.length.is_some();
        if lines && bytes {
            return Err(ToolError::InvalidArguments(
                "give either start_line/end_line or offset/length, not both".into(),
            ));
        }
        if bytes {
            return Ok(Range::Bytes {
                offset: self.offset.unwrap_or(0),
                length: self.length,
            });
        }
        let start = self.start_line.unwrap_or(1);
        match self.end_line {
            _ if start == 0 => Err(ToolError::InvalidArguments(
                "lines are numbered from 1".into(),
            )),
            Some(end) if end < start => Err(ToolError::InvalidArguments(format!(
                "end_line ({end}) is before start_line ({start})"
            ))),
            end => Ok(Range::Lines { start, end }),
        }
    }
}

/// What was taken from the file, before it is turned into output.
struct Slice {
    bytes: Vec<u8>,
    start_line: Option<u64>,
    end_line: Option<u64>,
    total_lines: Option<u64>,
    /// How to continue, when the range did not fit.
    next: Option<String>,
}

fn read(files: &Files, args: ReadArgs, cancel: &CancellationToken) -> ToolOutcome {
    let range = args.range()?;
    let target = files.roots.resolve(Some(&args.path))?;
    let path = show(&target.rel);
    if target.real.is_dir() {
        return Err(ToolError::InvalidArguments(format!(
            "`{path}` is a folder; use files_list to see what is in it"
        )));
    }
    // Opened beneath its root, and judged by what was opened (type, links, size).
    let (mut file, meta) = files.roots.open_file(&target.real, &path)?;
    let size = meta.len();
    let kind = super::document::doc_type(&target.rel).filter(|k| super::extract::extracted(k));
    if let Some(kind) = kind {
        return read_extracted(
            files,
            &args,
            range,
            (root_of(files, &target), path),
            file,
            kind,
            cancel,
        );
    }
    let mut head = Vec::with_capacity(walk::SNIFF_BYTES);
    (&mut file)
        .take(walk::SNIFF_BYTES as u64)
        .read_to_end(&mut head)?;
    if walk::looks_binary(&head) {
        return Err(ToolError::InvalidArguments(format!(
            "`{path}` looks binary ({}, NUL bytes in its first 8 KiB); files_read returns text \
             only. Use files_list to see its size and modification time.",
            walk::human_size(size)
        )));
    }
    file.rewind()?;
    let max = args
        .max_bytes
        .unwrap_or(u64::MAX)
        .clamp(1, files.settings.max_read_bytes);
    let count_all = size <= LINE_COUNT_LIMIT;
    let slice = match range {
        Range::Lines { start, end } => read_lines(file, start, end, max, count_all, cancel)?,
        Range::Bytes { offset, length } => read_bytes(file, size, offset, length, max, count_all)?,
    };

    let output = ReadOutput::of(
        files.roots.root_display(target.root),
        path.clone(),
        size,
        &slice,
        None,
    );
    let mut text = vec![output.text.clone()];
    if let Some(next) = &slice.next {
        let shown = match (output.start_line, output.end_line) {
            (Some(a), Some(b)) => format!("lines {a}-{b}"),
            _ => format!("{} bytes", slice.bytes.len()),
        };
        let total = output
            .total_lines
            .map(|t| format!(" of {t} lines"))
            .unwrap_or_default();
        text.push(format!(
            "[truncated: showed {shown}{total} of `{path}` ({}). {next}]",
            walk::human_size(size)
        ));
    } else if size == 0 {
        text = vec![format!("[`{path}` is empty]")];
    }
    outcome(text, &output)
}

impl ReadOutput {
    fn of(root: String, path: String, size: u64, slice: &Slice, kind: Option<&str>) -> Self {
        Self {
            root,
            path,
            size,
            start_line: slice.start_line,
            end_line: slice.end_line,
            total_lines: slice.total_lines,
            truncated: slice.next.is_some(),
            text: String::from_utf8_lossy(&slice.bytes).into_owned(),
            extracted_from: kind.map(str::to_owned),
        }
    }
}

/// The root's display name, for the answer.
fn root_of(files: &Files, target: &crate::sandbox::Target) -> String {
    files.roots.root_display(target.root)
}

/// A PDF or DOCX: its text, from the extractor, read like a file's.
fn read_extracted(
    files: &Files,
    args: &ReadArgs,
    range: Range,
    (root, path): (String, String),
    file: File,
    kind: &str,
    cancel: &CancellationToken,
) -> ToolOutcome {
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > super::extract::MAX_INPUT_BYTES {
        return Err(ToolError::InvalidArguments(format!(
            "`{path}` is {}; {}s are read for their text up to {} MiB",
            walk::human_size(size),
            kind.to_uppercase(),
            super::extract::MAX_INPUT_BYTES >> 20
        )));
    }
    let mut bytes = Vec::new();
    file.take(super::extract::MAX_INPUT_BYTES)
        .read_to_end(&mut bytes)?;
    let found = super::extract::extract(kind, &bytes)
        .map_err(|why| ToolError::Failed(format!("`{path}`: {why}")))?;
    let text = found.text.into_bytes();
    let length = text.len() as u64;
    let max = args
        .max_bytes
        .unwrap_or(u64::MAX)
        .clamp(1, files.settings.max_read_bytes);
    let reader = std::io::Cursor::new(text);
    let slice = match range {
        Range::Lines { start, end } => read_lines(reader, start, end, max, true, cancel)?,
        Range::Bytes {
            offset,
            length: wanted,
        } => read_bytes(reader, length, offset, wanted, max, true)?,
    };
    let output = ReadOutput::of(root, path.clone(), size, &slice, Some(kind));
    let mut shown = vec![format!("[the text of {kind} `{path}`]\n{}", output.text)];
    if let Some(next) = &slice.next {
        shown.push(format!("[truncated. {next}]"));
    }
    outcome(shown, &output)
}

fn read_lines(
    file: impl Read,
    start: u64,
    end: Option<u64>,
    max: u64,
    count_all: bool,
    cancel: &CancellationToken,
) -> Result<Slice, ToolError> {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let last = end.unwrap_or(u64::MAX);
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut out = Vec::new();
    let (mut line, mut pos, mut at_line_start) = (1u64, 0u64, true);
    // Where the current line began in `out`, to drop it whole if it does not fit.
    let mut line_begins_at = 0;
    let mut end_line = None;
    let mut next = None;
    loop {
        if cancel.is_cancelled() {
            return Err(walk::cancelled());
        }
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let len = buf.len();
        let mut i = 0;
        while i < len {
            let rest = &buf[i..];
            let (piece, ends_line) = match rest.iter().position(|&b| b == b'\n') {
                Some(k) => (k + 1, true),
                None => (rest.len(), false),
            };
            if at_line_start {
                line_begins_at = out.len();
            }
            if (start..=last).contains(&line) && next.is_none() {
                let room = max - out.len();
                if piece <= room {
                    out.extend_from_slice(&rest[..piece]);
                    end_line = Some(line);
                } else if line > start {
                    // Whole lines only, unless the first line alone is too long.
                    out.truncate(line_begins_at);
                    end_line = Some(line - 1);
                    next = Some(format!(
                        "Call files_read again with start_line={line}{}.",
                        end_arg(end)
                    ));
                } else {
                    let cut = utf8_boundary(rest, room);
                    out.extend_from_slice(&rest[..cut]);
                    end_line = Some(line);
                    next = Some(format!(
                        "Line {line} is longer than max_bytes: continue it with offset={} (bytes), \
                         or skip to start_line={}.",
                        pos + cut as u64,
                        line + 1
                    ));
                }
            }
            pos += piece as u64;
            i += piece;
            at_line_start = ends_line;
            if ends_line {
                line += 1;
            }
        }
        reader.consume(len);
        if (next.is_some() || line > last) && !count_all {
            return Ok(Slice {
                bytes: out,
                start_line: Some(start),
                end_line,
                total_lines: None,
                next,
            });
        }
    }
    let total = if at_line_start { line - 1 } else { line };
    if start > total.max(1) {
        return Err(ToolError::InvalidArguments(format!(
            "start_line {start} is past the end of the file, which has {total} line{}",
            if total == 1 { "" } else { "s" }
        )));
    }
    Ok(Slice {
        bytes: out,
        start_line: Some(start),
        end_line,
        total_lines: Some(total),
        next,
    })
}

fn end_arg(end: Option<u64>) -> String {
    end.map(|e| format!(" end_line={e}")).unwrap_or_default()
}

/// The largest cut at or before `at` that does not split a UTF-8 character (0 when not even
/// the first character fits).
fn utf8_boundary(bytes: &[u8], at: usize) -> usize {
    let mut cut = at.min(bytes.len());
    while cut > 0 && cut < bytes.len() && bytes[cut] & 0xC0 == 0x80 {
        cut -= 1;
    }
    cut
}

fn read_bytes<R: Read + Seek>(
    mut file: R,
    size: u64,
    offset: u64,
    length: Option<u64>,
    max: u64,
    count_all: bool,
) -> Result<Slice, ToolError> {
    if offset > size {
        return Err(ToolError::InvalidArguments(format!(
            "offset {offset} is past the end of the file, which has {size} bytes"
        )));
    }
    let wanted_end = offset.saturating_add(length.unwrap_or(u64::MAX)).min(size);
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    (&mut file)
        .take((wanted_end - offset).min(max))
        .read_to_end(&mut bytes)?;
    let stop = offset + bytes.len() as u64;
    let next = (stop < wanted_end).then(|| {
        let rest = length
            .map(|l| format!(" length={}", l - (stop - offset)))
            .unwrap_or_default();
        format!("Call files_read again with offset={stop}{rest}.")
    });
    if !count_all {
        return Ok(Slice {
            bytes,
            start_line: None,
            end_line: None,
            total_lines: None,
            next,
        });
    }
    let (before, total) = count_lines(file, offset)?;
    let start_line = before + 1;
    let inner = bytes.len().saturating_sub(1);
    let end_line = start_line + bytes[..inner].iter().filter(|&&b| b == b'\n').count() as u64;
    Ok(Slice {
        bytes,
        start_line: Some(start_line),
        end_line: Some(end_line),
        total_lines: Some(total),
        next,
    })
}

/// Newlines before `offset`, and the number of lines in the whole file.
fn count_lines(mut file: impl Read + Seek, offset: u64) -> Result<(u64, u64), ToolError> {
    file.rewind()?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let (mut pos, mut before, mut newlines, mut last) = (0u64, 0u64, 0u64, b'\n');
    loop {
        let buf = reader.fill_buf()?;
        let Some(&tail) = buf.last() else { break };
        let len = buf.len();
        let split = usize::try_from(offset.saturating_sub(pos))
            .unwrap_or(usize::MAX)
            .min(len);
        let head = buf[..split].iter().filter(|&&b| b == b'\n').count() as u64;
        before += head;
        newlines += head + buf[split..].iter().filter(|&&b| b == b'\n').count() as u64;
        last = tail;
        pos += len as u64;
        reader.consume(len);
    }
    Ok((
        before,
        if last == b'\n' {
            newlines
        } else {
            newlines + 1
        },
    ))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use serde_json::json;

    use super::super::{FilesSettings, tests::*};
    use super::*;

    fn numbered(n: usize) -> String {
        (1..=n).map(|i| format!("line {i}\n")).collect()
    }

    #[tokio::test]
    async fn reads_whole_files_and_line_ranges() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("n.txt"), numbered(10)).unwrap();
        let plugin = plugin(dir.path(), FilesSettings::default());
        let all = call_ok(&plugin, "read", json!({"path": "n.txt"})).await;
        assert_eq!(all["text"], numbered(10));
        assert_eq!(
            (all["start_line"].clone(), all["end_line"].clone()),
            (json!(1), json!(10))
        );
        assert_eq!(all["total_lines"], 10);
        assert_eq!(all["truncated"], false);
        let part = call_ok(
            &plugin,
            "read",
            json!({"path": "n.txt", "start_line": 3, "end_line": 4}),
        )
        .await;
        assert_eq!(part["text"], "line 3\nline 4\n");
        assert_eq!(
            (part["start_line"].clone(), part["end_line"].clone()),
            (json!(3), json!(4))
        );
        assert_eq!(part["truncated"], false);
        let tail = call_ok(
            &plugin,
            "read",
            json!({"path": "n.txt", "start_line": 9, "end_line": 99}),
        )
        .await;
        assert_eq!(tail["text"], "line 9\nline 10\n");
        let past = call(&plugin, "read", json!({"path": "n.txt", "start_line": 11})).await;
        assert!(matches!(past, Err(ToolError::InvalidArguments(m)) if m.contains("10 lines")));
        let both = call(
            &plugin,
            "read",
            json!({"path": "n.txt", "start_line": 1, "offset": 0}),
        )
        .await;
        assert!(matches!(both, Err(ToolError::InvalidArguments(_))));
    }

    #[tokio::test]
    async fn truncated_reads_say_where_to_continue() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("n.txt"), numbered(10)).unwrap();
        let settings = FilesSettings {
            max_read_bytes: 20,
            ..FilesSettings::default()
        };
        let plugin = plugin(dir.path(), settings);
        let result = call(&plugin, "read", json!({"path": "n.txt", "max_bytes": 1000}))
            .await
            .unwrap();
        let out = result.structured_content.unwrap();
        assert_eq!(out["text"], "line 1\nline 2\n");
        assert_eq!(out["truncated"], true);
        assert_eq!(out["end_line"], 2);
        let note = result.content[1].as_text().unwrap().text.clone();
        assert!(note.contains("start_line=3"), "{note}");
        let next = call_ok(&plugin, "read", json!({"path": "n.txt", "start_line": 3})).await;
        assert_eq!(next["text"], "line 3\nline 4\n");
        let result = call(
            &plugin,
            "read",
            json!({"path": "n.txt", "offset": 7, "length": 30}),
        )
        .await
        .unwrap();
        let bytes = result.structured_content.unwrap();
        assert_eq!(bytes["text"], "line 2\nline 3\nline 4");
        assert_eq!(
            (bytes["start_line"].clone(), bytes["end_line"].clone()),
            (json!(2), json!(4))
        );
        assert_eq!(bytes["truncated"], true);
        let note = result.content[1].as_text().unwrap().text.clone();
        assert!(note.contains("offset=27 length=10"), "{note}");
    }

    #[tokio::test]
    async fn long_lines_are_cut_on_character_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("long.txt"), "ééééé\nnext\n").unwrap();
        let plugin = plugin(dir.path(), FilesSettings::default());
        let result = call(&plugin, "read", json!({"path": "long.txt", "max_bytes": 5}))
            .await
            .unwrap();
        let out = result.structured_content.unwrap();
        assert_eq!(out["text"], "éé");
        let note = result.content[1].as_text().unwrap().text.clone();
        assert!(note.contains("offset=4"), "{note}");
    }

    #[tokio::test]
    async fn binary_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("image.png"),
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
        )
        .unwrap();
        fs::write(dir.path().join("latin1.txt"), b"caf\xe9\n").unwrap();
        let plugin = plugin(dir.path(), FilesSettings::default());
        let refused = call(&plugin, "read", json!({"path": "image.png"})).await;
        assert!(
            matches!(refused, Err(ToolError::InvalidArguments(m)) if m.contains("binary") && m.contains("files_list"))
        );
        let lossy = call_ok(&plugin, "read", json!({"path": "latin1.txt"})).await;
        assert_eq!(lossy["text"], "caf\u{FFFD}\n");
        let folder = call(&plugin, "read", json!({"path": "."})).await;
        assert!(matches!(folder, Err(ToolError::InvalidArguments(m)) if m.contains("files_list")));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn reads_never_leave_the_roots() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.txt"), "secret").unwrap();
        symlink(
            outside.path().join("secret.txt"),
            dir.path().join("link.txt"),
        )
        .unwrap();
        let plugin = plugin(dir.path(), FilesSettings::default());
        let secret = outside.path().join("secret.txt");
        for path in [
            "link.txt",
            "../secret.txt",
            secret.to_str().unwrap(),
            "a\0b",
        ] {
            let result = call(&plugin, "read", json!({"path": path})).await;
            assert!(
                matches!(result, Err(ToolError::Forbidden(_))),
                "{path}: {result:?}"
            );
        }
    }
}
