//! What `analyze` says about one document: its kind, title, word count and opening text.

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::Path,
    sync::LazyLock,
};

use regex::Regex;
use tokio_util::sync::CancellationToken;

use super::walk;
use crate::plugin::ToolError;

/// Enough of the start of a document to find its title and opening text.
const HEAD_BYTES: usize = 64 * 1024;

/// Characters in an extract unless the caller asks for more.
pub const EXTRACT_CHARS: usize = 240;

/// Most characters an extract may have (it comes from the first [`HEAD_BYTES`]).
pub const MAX_EXTRACT_CHARS: usize = 8000;

const SOURCE: [&str; 52] = [
    "rs", "py", "pyi", "js", "mjs", "cjs", "ts", "tsx", "jsx", "go", "java", "kt", "kts", "scala",
    "c", "h", "cc", "cpp", "cxx", "hpp", "cs", "rb", "php", "swift", "m", "sh", "bash", "zsh",
    "fish", "ps1", "sql", "lua", "pl", "r", "jl", "dart", "ex", "exs", "erl", "hs", "ml", "clj",
    "css", "scss", "sass", "less", "vue", "svelte", "zig", "nim", "proto", "graphql",
];

/// Files without an extension that are documents all the same.
const PLAIN_NAMES: [&str; 8] = [
    "README",
    "LICENSE",
    "CHANGELOG",
    "NOTICE",
    "AUTHORS",
    "CONTRIBUTING",
    "COPYING",
    "TODO",
];

/// The kind of document a file name says it is, or `None` for files `analyze` leaves out.
pub fn doc_type(path: &Path) -> Option<&'static str> {
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
        let name = path.file_name()?.to_str()?;
        return match name {
            "Makefile" | "Dockerfile" | "Justfile" => Some("source"),
            _ if PLAIN_NAMES.contains(&name.to_ascii_uppercase().as_str()) => Some("text"),
            _ => None,
        };
    };
    let ext = ext.to_ascii_lowercase();
    Some(match ext.as_str() {
        "md" | "markdown" | "mdx" => "markdown",
        "txt" | "text" => "text",
        "rst" => "restructuredtext",
        "adoc" | "asciidoc" => "asciidoc",
        "html" | "htm" | "xhtml" => "html",
        "json" | "jsonl" => "json",
        "csv" => "csv",
        "tsv" => "tsv",
        "toml" => "toml",
        "yaml" | "yml" => "yaml",
        "xml" => "xml",
        "org" => "org",
        "tex" => "latex",
        "pdf" => "pdf",
        "docx" => "docx",
        e if SOURCE.contains(&e) => "source",
        _ => return None,
    })
}

/// Words are counted in this much of a document; past it, the count is scaled to its size
/// (a 64 GiB sparse file is not read whole).
pub const MAX_COUNTED_BYTES: u64 = 64 * 1024 * 1024;

/// The facts of one document. `None` if it turns out to be binary.
pub struct Summary {
    pub title: String,
    pub words: u64,
    pub extract: String,
    /// SHA-256 of the content, hex, when asked for: of the whole file, or of its first
    /// [`MAX_COUNTED_BYTES`] and its size for a larger one.
    pub sha256: Option<String>,
}

/// What to say about a document beyond its title and word count.
#[derive(Debug, Clone, Copy)]
pub struct Detail {
    /// Characters in the extract (at most [`MAX_EXTRACT_CHARS`]).
    pub extract_chars: usize,
    /// Compute a content hash.
    pub hash: bool,
}

impl Default for Detail {
    fn default() -> Self {
        Self {
            extract_chars: EXTRACT_CHARS,
            hash: false,
        }
    }
}

pub fn summarise(
    path: &Path,
    file: File,
    kind: &str,
    detail: Detail,
    cancel: &CancellationToken,
) -> Result<Option<Summary>, ToolError> {
    use sha2::Digest;
    if super::extract::extracted(kind) {
        return extracted(path, file, kind, detail, cancel).map(Some);
    }
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut head = Vec::new();
    let mut hasher = detail.hash.then(sha2::Sha256::new);
    let (mut words, mut in_word, mut read) = (0u64, false, 0u64);
    loop {
        if cancel.is_cancelled() {
            return Err(walk::cancelled());
        }
        if read >= MAX_COUNTED_BYTES {
            // A huge (or sparse) file: the count so far, scaled to its size.
            words = (words as f64 * size as f64 / read as f64) as u64;
            if let Some(h) = hasher.as_mut() {
                h.update(size.to_le_bytes());
            }
            break;
        }
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        read += buf.len() as u64;
        if head.len() < HEAD_BYTES {
            head.extend_from_slice(&buf[..buf.len().min(HEAD_BYTES - head.len())]);
            if walk::looks_binary(&head) {
                return Ok(None);
            }
        }
        if let Some(h) = hasher.as_mut() {
            h.update(buf);
        }
        for &b in buf {
            let space = b.is_ascii_whitespace();
            words += u64::from(!space && !in_word);
            in_word = !space;
        }
        let len = buf.len();
        reader.consume(len);
    }
    let text = String::from_utf8_lossy(&head);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sha256 = hasher.map(|h| hex(&h.finalize()));
    let chars = detail.extract_chars.clamp(1, MAX_EXTRACT_CHARS);
    let (title, body) = match kind {
        "markdown" => markdown(text),
        "html" => return Ok(Some(html(text, stem, words, chars, sha256))),
        "org" => line_title(text, &ORG_TITLE),
        "asciidoc" => line_title(text, &ADOC_TITLE),
        "restructuredtext" => rst(text),
        "latex" => line_title(text, &TEX_TITLE),
        _ => (None, text),
    };
    let title = title
        .map(|t| collapse(&t))
        .filter(|t| !t.is_empty())
        .unwrap_or(stem);
    Ok(Some(Summary {
        title,
        words,
        extract: extract(body, chars),
        sha256,
    }))
}

/// A PDF or DOCX: its text from the extractor (a child process with limits), its title from
/// the document's own metadata, else its first line, else the file name.
fn extracted(
    path: &Path,
    file: File,
    kind: &str,
    detail: Detail,
    cancel: &CancellationToken,
) -> Result<Summary, ToolError> {
    use std::io::Read;

    use sha2::Digest;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > super::extract::MAX_INPUT_BYTES {
        return Err(ToolError::Failed(format!(
            "{} MiB is more than the {} MiB a {} is read up to",
            size >> 20,
            super::extract::MAX_INPUT_BYTES >> 20,
            kind.to_uppercase()
        )));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(super::extract::MAX_INPUT_BYTES)
        .read_to_end(&mut bytes)?;
    if cancel.is_cancelled() {
        return Err(walk::cancelled());
    }
    let sha256 = detail.hash.then(|| hex(&sha2::Sha256::digest(&bytes)));
    let found = super::extract::extract(kind, &bytes).map_err(ToolError::Failed)?;
    let words = found.text.split_whitespace().count() as u64;
    let mut lines = found.text.lines().map(str::trim).filter(|l| !l.is_empty());
    let (title, body) = match found.title {
        Some(title) => (title, found.text.as_str()),
        None => match lines.next() {
            Some(first) if first.chars().count() <= 200 => {
                let at = found.text.find(first).map_or(0, |i| i + first.len());
                (collapse(first), &found.text[at..])
            }
            _ => (
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                found.text.as_str(),
            ),
        },
    };
    let chars = detail.extract_chars.clamp(1, MAX_EXTRACT_CHARS);
    Ok(Summary {
        title,
        words,
        extract: extract(body, chars),
        sha256,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

static HEADING: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^ {0,3}#{1,6}[ \t]+(.*?)[ \t#]*$").unwrap());
static FRONT_TITLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?m)^title:[ \t]*["']?(.*?)["']?[ \t]*$"#).unwrap());
static ORG_TITLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^#\+title:\s*(.*)$").unwrap());
static ADOC_TITLE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^=[ \t]+(.*)$").unwrap());
static TEX_TITLE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\\title\{([^}]*)\}").unwrap());
static HTML_TITLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?is)<title[^>]*>(.*?)</title>").unwrap());
static HTML_H1: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?is)<h1[^>]*>(.*?)</h1>").unwrap());
static HTML_NOISE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?is)<head\b.*?</head>|<script\b.*?</script>|<style\b.*?</style>|<!--.*?-->|<[^>]*>",
    )
    .unwrap()
});

/// Front matter's `title:`, else the first heading (`# …` or a `===` underline); the body
/// starts after whichever gave the title.
fn markdown(text: &str) -> (Option<String>, &str) {
    let (front, body) = front_matter(text);
    if let Some(title) = front
        .and_then(|f| FRONT_TITLE.captures(f))
        .map(|c| c[1].to_owned())
    {
        return (Some(title), body);
    }
    let mut in_fence = false;
    let mut lines = lines_with_ends(body).peekable();
    while let Some((line, _, end)) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        if let Some(c) = HEADING.captures(line) {
            return (Some(c[1].to_owned()), &body[end..]);
        }
        if let Some(&(next, _, next_end)) = lines.peek()
            && !line.trim().is_empty()
            && next.trim().len() >= 3
            && next.trim().chars().all(|c| c == '=')
        {
            return (Some(line.to_owned()), &body[next_end..]);
        }
    }
    (None, body)
}

/// A leading `---` … `---` block, and the text after it.
fn front_matter(text: &str) -> (Option<&str>, &str) {
    let mut lines = lines_with_ends(text);
    let Some((first, _, body_start)) = lines.next() else {
        return (None, text);
    };
    if first.trim_end() != "---" {
        return (None, text);
    }
    for (line, start, end) in lines {
        if matches!(line.trim_end(), "---" | "...") {
            return (Some(&text[body_start..start]), &text[end..]);
        }
    }
    (None, text)
}

/// The first line matching `pattern` gives the title; the body follows it.
fn line_title<'t>(text: &'t str, pattern: &Regex) -> (Option<String>, &'t str) {
    for (line, _, end) in lines_with_ends(text) {
        if let Some(c) = pattern.captures(line.trim_end()) {
            return (Some(c[1].to_owned()), &text[end..]);
        }
    }
    (None, text)
}

/// A line underlined (and maybe overlined) with a run of one punctuation character.
fn rst(text: &str) -> (Option<String>, &str) {
    let lines: Vec<(&str, usize)> = lines_with_ends(text)
        .map(|(line, _, end)| (line, end))
        .collect();
    let rule = |s: &str| {
        let s = s.trim_end();
        s.len() >= 3
            && s.chars()
                .all(|c| c == s.chars().next().unwrap_or(' ') && c.is_ascii_punctuation())
    };
    for pair in lines.windows(2) {
        let ((line, _), (under, end)) = (pair[0], pair[1]);
        if !line.trim().is_empty() && !rule(line) && rule(under) {
            return (Some(line.trim().to_owned()), &text[end..]);
        }
    }
    (None, text)
}

fn html(text: &str, stem: String, words: u64, chars: usize, sha256: Option<String>) -> Summary {
    let (title, body) = match HTML_TITLE.captures(text).or_else(|| HTML_H1.captures(text)) {
        Some(c) => {
            let end = c.get(0).map_or(0, |m| m.end());
            (Some(c[1].to_owned()), &text[end..])
        }
        None => (None, text),
    };
    let plain = |s: &str| decode_entities(&HTML_NOISE.replace_all(s, " "));
    let title = title
        .map(|t| collapse(&plain(&t)))
        .filter(|t| !t.is_empty())
        .unwrap_or(stem);
    Summary {
        title,
        words,
        extract: extract(&plain(body), chars),
        sha256,
    }
}

fn decode_entities(text: &str) -> String {
    [
        ("&nbsp;", " "),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", "\""),
        ("&#39;", "'"),
        ("&apos;", "'"),
        ("&amp;", "&"),
    ]
    .iter()
    .fold(text.to_owned(), |acc, (entity, plain)| {
        acc.replace(entity, plain)
    })
}

/// Each line without its ending, with the byte offsets of its start and of just past its end.
fn lines_with_ends(text: &str) -> impl Iterator<Item = (&str, usize, usize)> {
    text.split_inclusive('\n').scan(0, |offset, raw| {
        let start = *offset;
        *offset += raw.len();
        Some((raw.trim_end_matches(['\n', '\r']), start, *offset))
    })
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn extract(body: &str, chars: usize) -> String {
    walk::clip(&collapse(body), chars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(name: &str, content: &str) -> Summary {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let kind = doc_type(&path).unwrap();
        summarise(
            &path,
            File::open(&path).unwrap(),
            kind,
            Detail::default(),
            &CancellationToken::new(),
        )
        .unwrap()
        .unwrap()
    }

    #[test]
    fn types_come_from_extensions() {
        let kinds: Vec<_> = [
            "a.MD", "b.txt", "c.html", "d.rs", "README", "e.yml", "f.tex",
        ]
        .iter()
        .map(|n| doc_type(Path::new(n)).unwrap())
        .collect();
        assert_eq!(
            kinds,
            [
                "markdown", "text", "html", "source", "text", "yaml", "latex"
            ]
        );
        assert_eq!(doc_type(Path::new("photo.jpg")), None);
        assert_eq!(doc_type(Path::new("noext")), None);
    }

    #[test]
    fn markdown_titles_and_extracts() {
        let s = summary(
            "guide.md",
            "Intro line\n\n## Getting   started ##\nInstall it.\n\nThen   run it.\n",
        );
        assert_eq!(s.title, "Getting started");
        assert_eq!(s.extract, "Install it. Then run it.");
        assert_eq!(s.words, 11);
        let s = summary(
            "fm.md",
            "---\ntitle: \"From front matter\"\ntags: [a]\n---\n# Heading\nBody.\n",
        );
        assert_eq!(s.title, "From front matter");
        assert_eq!(s.extract, "# Heading Body.");
        let s = summary("setext.md", "Big Title\n=========\nText after.\n");
        assert_eq!(
            (s.title.as_str(), s.extract.as_str()),
            ("Big Title", "Text after.")
        );
        let s = summary("fenced.md", "```\n# not a title\n```\nplain\n");
        assert_eq!(s.title, "fenced");
    }

    #[test]
    fn html_rst_and_plain_titles() {
        let s = summary(
            "page.html",
            "<html><head><title>My &amp; Page</title><style>p{}</style></head>\
             <body><h1>Hello</h1><p>World  of\n text.</p><script>x()</script></body></html>",
        );
        assert_eq!(s.title, "My & Page");
        assert_eq!(s.extract, "Hello World of text.");
        let s = summary("doc.rst", "=====\nTitle\n=====\n\nSome text.\n");
        assert_eq!(
            (s.title.as_str(), s.extract.as_str()),
            ("Title", "Some text.")
        );
        let s = summary("notes.txt", "Just some words here.\n");
        assert_eq!(
            (s.title.as_str(), s.extract.as_str(), s.words),
            ("notes", "Just some words here.", 4)
        );
    }

    #[test]
    fn extracts_are_bounded() {
        let s = summary("long.txt", &"word ".repeat(1000));
        assert_eq!(s.words, 1000);
        assert_eq!(s.extract.chars().count(), EXTRACT_CHARS + 1);
        assert!(s.extract.ends_with('…'));
    }
}
