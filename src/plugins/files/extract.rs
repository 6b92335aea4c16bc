//! Text out of PDF and DOCX documents, parsed in a child process with limits.
//!
//! A PDF parser meets whatever a user's folder holds: damaged files, encrypted ones,
//! compression bombs, files crafted to make a parser loop. So the parsing runs in a child —
//! this same binary, started as `plugboard __extract-document KIND` — that reads the file's
//! bytes from stdin and prints `{"title", "text"}` or `{"error"}`, with an address-space
//! limit (`RLIMIT_AS`, 1 GiB) and a CPU limit, and is killed at its deadline (10 s). Whatever
//! a file does, the cost is bounded and the answer is a reason ("damaged PDF: …", "encrypted
//! PDF: …", "took longer than 10 s"), never a hang or a crash of the server.
//!
//! Where this binary is not plugboard (unit tests, the fuzz targets), the same parsers run in
//! process, a panic caught.

use std::{
    io::{Read, Write},
    path::PathBuf,
    process::{Command, Stdio},
    sync::LazyLock,
    time::{Duration, Instant},
};

use regex::Regex;
use serde::{Deserialize, Serialize};

/// The hidden first argument that makes the binary an extractor.
pub const EXTRACT_ARG: &str = "__extract-document";

/// Largest PDF or DOCX read for its text.
pub const MAX_INPUT_BYTES: u64 = 64 * 1024 * 1024;
/// Most text kept from one document.
const MAX_TEXT_BYTES: usize = 8 * 1024 * 1024;
/// The child's address space.
const MEMORY_LIMIT: u64 = 1024 * 1024 * 1024;
/// The child's wall-clock deadline (its CPU limit is a second more).
const DEADLINE: Duration = Duration::from_secs(10);

/// What a document says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Extracted {
    /// The document's own title (PDF `/Title`, DOCX `dc:title`), if it has one.
    pub title: Option<String>,
    pub text: String,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Answer {
    Ok(Extracted),
    Err { error: String },
}

/// Whether `kind` is read through an extractor.
pub fn extracted(kind: &str) -> bool {
    matches!(kind, "pdf" | "docx")
}

/// The text of a PDF or DOCX whose bytes are `bytes`, or why there is none.
pub fn extract(kind: &str, bytes: &[u8]) -> Result<Extracted, String> {
    match extractor() {
        Some(exe) => in_child(exe, kind, bytes),
        None => in_process(kind, bytes),
    }
}

/// This binary, when it is plugboard (it then knows [`EXTRACT_ARG`]).
fn extractor() -> Option<&'static PathBuf> {
    static EXE: LazyLock<Option<PathBuf>> = LazyLock::new(|| {
        let exe = std::env::current_exe().ok()?;
        let name = exe.file_name()?.to_str()?;
        // Exactly: the unit tests' binary is `plugboard-<hash>`, and knows no such argument.
        matches!(name, "plugboard" | "plugboard.exe").then_some(exe)
    });
    EXE.as_ref()
}

fn in_child(exe: &PathBuf, kind: &str, bytes: &[u8]) -> Result<Extracted, String> {
    let mut command = Command::new(exe);
    command
        .arg(EXTRACT_ARG)
        .arg(kind)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let cpu = DEADLINE.as_secs() + 1;
        // SAFETY: between fork and exec only setrlimit runs, an async-signal-safe syscall
        // that allocates nothing.
        unsafe {
            command.pre_exec(move || {
                use rustix::process::{Resource, Rlimit, setrlimit};
                let memory = Rlimit {
                    current: Some(MEMORY_LIMIT),
                    maximum: Some(MEMORY_LIMIT),
                };
                let seconds = Rlimit {
                    current: Some(cpu),
                    maximum: Some(cpu),
                };
                setrlimit(Resource::As, memory)?;
                setrlimit(Resource::Cpu, seconds)?;
                Ok(())
            });
        }
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("could not start the text extractor: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin piped");
    let mut stdout = child.stdout.take().expect("stdout piped");
    let (answer, written) = std::thread::scope(|scope| {
        // The bytes go in while the answer comes out: neither pipe can fill and stall.
        let writer = scope.spawn(move || stdin.write_all(bytes));
        let reader = scope.spawn(move || {
            let mut out = Vec::new();
            let _ = (&mut stdout)
                .take(MAX_TEXT_BYTES as u64 * 2 + 4096)
                .read_to_end(&mut out);
            out
        });
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if started.elapsed() < DEADLINE => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let out = reader.join().unwrap_or_default();
        let written = writer.join().map(|r| r.is_ok()).unwrap_or(false);
        (status.map(|s| (s, out)), written)
    });
    let Some((status, out)) = answer else {
        return Err(format!(
            "took longer than {} s to read; skipped",
            DEADLINE.as_secs()
        ));
    };
    match serde_json::from_slice::<Answer>(&out) {
        Ok(Answer::Ok(extracted)) => Ok(extracted),
        Ok(Answer::Err { error }) => Err(error),
        Err(_) if !written || !status.success() => Err(format!(
            "could not be read within {} MiB of memory and {} s ({})",
            MEMORY_LIMIT >> 20,
            DEADLINE.as_secs(),
            status
        )),
        Err(e) => Err(format!("the text extractor answered badly: {e}")),
    }
}

/// The child's side: the bytes from stdin, the answer on stdout.
pub fn child_main(kind: &str) -> std::process::ExitCode {
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin()
        .take(MAX_INPUT_BYTES)
        .read_to_end(&mut bytes)
    {
        eprintln!("{e}");
        return std::process::ExitCode::FAILURE;
    }
    let answer = match in_process(kind, &bytes) {
        Ok(extracted) => Answer::Ok(extracted),
        Err(error) => Answer::Err { error },
    };
    let text = serde_json::to_string(&answer).unwrap_or_else(|_| "{}".into());
    let mut stdout = std::io::stdout();
    if stdout.write_all(text.as_bytes()).is_err() {
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

/// Parse here, a panic inside the parser caught and reported.
pub fn in_process(kind: &str, bytes: &[u8]) -> Result<Extracted, String> {
    let parsed = std::panic::catch_unwind(|| match kind {
        "pdf" => pdf(bytes),
        "docx" => docx(bytes),
        other => Err(format!("no text extractor for {other} files")),
    });
    let mut extracted = match parsed {
        Ok(result) => result?,
        Err(_) => {
            return Err(format!(
                "damaged {}: the parser gave up",
                kind.to_uppercase()
            ));
        }
    };
    if extracted.text.len() > MAX_TEXT_BYTES {
        let mut end = MAX_TEXT_BYTES;
        while !extracted.text.is_char_boundary(end) {
            end -= 1;
        }
        extracted.text.truncate(end);
    }
    Ok(extracted)
}

fn pdf(bytes: &[u8]) -> Result<Extracted, String> {
    let doc = pdf_extract::Document::load_mem(bytes).map_err(|e| format!("damaged PDF: {e}"))?;
    let encrypted = doc.is_encrypted() || doc.trailer.get(b"Encrypt").is_ok();
    let title = pdf_title(&doc);
    let text = pdf_extract::extract_text_from_mem(bytes).map_err(|e| {
        if encrypted {
            format!("encrypted PDF: it needs a password ({e})")
        } else {
            format!("damaged PDF: {e}")
        }
    })?;
    if text.trim().is_empty() {
        return Err(if encrypted {
            "encrypted PDF: no text can be read without its password".to_owned()
        } else {
            "no text in this PDF (scanned pages hold images, not text; there is no OCR)".to_owned()
        });
    }
    Ok(Extracted { title, text })
}

/// `/Title` of the document information dictionary (PDF text strings: UTF-16BE with a byte
/// order mark, else PDFDocEncoding, read as Latin-1).
fn pdf_title(doc: &pdf_extract::Document) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let info = match info {
        pdf_extract::Object::Reference(id) => doc.get_object(*id).ok()?,
        other => other,
    };
    let title = info.as_dict().ok()?.get(b"Title").ok()?.as_str().ok()?;
    let text = match title {
        [0xFE, 0xFF, rest @ ..] => {
            let units: Vec<u16> = rest
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        latin1 => latin1.iter().map(|&b| b as char).collect(),
    };
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!text.is_empty()).then_some(text)
}

static W_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)<w:t(?:\s[^>]*)?>(.*?)</w:t>|</w:p>|<w:tab/>|<w:br/>").unwrap()
});
static DC_TITLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)<dc:title>(.*?)</dc:title>").unwrap());

/// A DOCX's text: the runs of `word/document.xml`, a line per paragraph; its title from
/// `docProps/core.xml`.
fn docx(bytes: &[u8]) -> Result<Extracted, String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("damaged DOCX: {e}"))?;
    let mut part = |name: &str, max: u64| -> Result<Option<String>, String> {
        let Ok(file) = archive.by_name(name) else {
            return Ok(None);
        };
        let mut text = String::new();
        file.take(max)
            .read_to_string(&mut text)
            .map_err(|e| format!("damaged DOCX: {name}: {e}"))?;
        Ok(Some(text))
    };
    let body = part("word/document.xml", 4 * MAX_TEXT_BYTES as u64)?
        .ok_or_else(|| "damaged DOCX: it has no word/document.xml".to_owned())?;
    let core = part("docProps/core.xml", 1024 * 1024)?.unwrap_or_default();
    let mut text = String::new();
    for m in W_TEXT.captures_iter(&body) {
        match m.get(1) {
            Some(run) => text.push_str(&unescape(run.as_str())),
            None if m[0].starts_with("<w:tab") => text.push('\t'),
            None => text.push('\n'),
        }
    }
    let title = DC_TITLE
        .captures(&core)
        .map(|c| unescape(c[1].trim()))
        .filter(|t| !t.is_empty());
    Ok(Extracted { title, text })
}

fn unescape(xml: &str) -> String {
    xml.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Real PDF and DOCX files written from scratch, for tests (this crate's and the integration
/// tests, whose build turns the `conformance` feature on).
#[cfg(any(test, feature = "conformance"))]
pub mod samples {
    use std::io::Write;

    /// A real, minimal PDF: one page per text, Helvetica, an info dictionary with `title`.
    pub fn pdf_bytes(title: Option<&str>, pages: &[&str]) -> Vec<u8> {
        let contents: Vec<(Vec<u8>, &str)> = pages
            .iter()
            .map(|text| {
                let mut content = String::from("BT /F1 12 Tf 72 720 Td 14 TL\n");
                for line in text.lines() {
                    let escaped = line
                        .replace('\\', "\\\\")
                        .replace('(', "\\(")
                        .replace(')', "\\)");
                    content.push_str(&format!("({escaped}) Tj T*\n"));
                }
                content.push_str("ET");
                (content.into_bytes(), "")
            })
            .collect();
        pdf_with_contents(title, &contents)
    }

    /// A one-page PDF whose content stream is a zlib bomb: about 7.5 MB that inflate to
    /// `inflated` zero bytes (a fixed-Huffman block of 258-byte copies, written bit by bit).
    pub fn pdf_bomb(inflated: u64) -> Vec<u8> {
        let mut bits = BitWriter::default();
        bits.put(0b1, 1); // BFINAL
        bits.put(0b01, 2); // BTYPE: fixed Huffman
        bits.code(0b0011_0000, 8); // literal 0
        let mut written = 1u64;
        while written + 258 <= inflated {
            bits.code(0b1100_0101, 8); // length code 285: 258 bytes
            bits.code(0, 5); // distance code 0: 1 back
            written += 258;
        }
        bits.code(0, 7); // end of block
        let mut stream = vec![0x78, 0x01];
        stream.extend(bits.finish());
        let b = (written % 65521) as u32;
        stream.extend(((b << 16) | 1).to_be_bytes());
        pdf_with_contents(None, &[(stream, " /Filter /FlateDecode")])
    }

    #[derive(Default)]
    struct BitWriter {
        out: Vec<u8>,
        byte: u8,
        used: u8,
    }

    impl BitWriter {
        /// `n` bits of `value`, least significant first (deflate's header fields).
        fn put(&mut self, value: u32, n: u8) {
            for i in 0..n {
                self.bit((value >> i) & 1 == 1);
            }
        }
        /// A Huffman code of `n` bits, most significant first.
        fn code(&mut self, value: u32, n: u8) {
            for i in (0..n).rev() {
                self.bit((value >> i) & 1 == 1);
            }
        }
        fn bit(&mut self, one: bool) {
            self.byte |= u8::from(one) << self.used;
            self.used += 1;
            if self.used == 8 {
                self.out.push(self.byte);
                (self.byte, self.used) = (0, 0);
            }
        }
        fn finish(mut self) -> Vec<u8> {
            if self.used > 0 {
                self.out.push(self.byte);
            }
            self.out
        }
    }

    /// A PDF with one page per content stream (its bytes, and extra stream dictionary keys).
    fn pdf_with_contents(title: Option<&str>, pages: &[(Vec<u8>, &str)]) -> Vec<u8> {
        let mut objects: Vec<Vec<u8>> = Vec::new();
        let n = pages.len();
        // 1 catalog, 2 pages, 3 font, then page i at 4 + 2i and its content at 5 + 2i.
        objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
        let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
        objects
            .push(format!("<< /Type /Pages /Kids [{}] /Count {n} >>", kids.join(" ")).into_bytes());
        objects.push(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec());
        for (i, (content, extra)) in pages.iter().enumerate() {
            objects.push(format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                5 + 2 * i
            ).into_bytes());
            let mut stream =
                format!("<< /Length {}{extra} >>\nstream\n", content.len()).into_bytes();
            stream.extend_from_slice(content);
            stream.extend_from_slice(b"\nendstream");
            objects.push(stream);
        }
        let info = title.map(|t| {
            objects.push(format!("<< /Title ({t}) /Producer (plugboard tests) >>").into_bytes());
            objects.len()
        });
        let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
        let mut offsets = Vec::new();
        for (i, body) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\nendobj\n");
        }
        let xref = out.len();
        out.extend_from_slice(
            format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
        );
        for offset in offsets {
            out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
        }
        let info = info.map(|i| format!(" /Info {i} 0 R")).unwrap_or_default();
        out.extend_from_slice(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R{info} >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .as_bytes(),
        );
        out
    }

    /// A real, minimal DOCX (stored, not compressed) with these paragraphs.
    pub fn docx_bytes(title: Option<&str>, paragraphs: &[&str]) -> Vec<u8> {
        use zip::write::SimpleFileOptions;
        let mut out = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        let options =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        let body: String = paragraphs
            .iter()
            .map(|p| format!("<w:p><w:r><w:t xml:space=\"preserve\">{p}</w:t></w:r></w:p>"))
            .collect();
        let files = [
            ("[Content_Types].xml", "<?xml version=\"1.0\"?><Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\"><Default Extension=\"xml\" ContentType=\"application/xml\"/><Override PartName=\"/word/document.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/></Types>".to_owned()),
            ("word/document.xml", format!("<?xml version=\"1.0\"?><w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body>{body}</w:body></w:document>")),
            ("docProps/core.xml", format!("<?xml version=\"1.0\"?><cp:coreProperties xmlns:cp=\"http://schemas.openxmlformats.org/package/2006/metadata/core-properties\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\">{}</cp:coreProperties>", title.map(|t| format!("<dc:title>{t}</dc:title>")).unwrap_or_default())),
        ];
        for (name, text) in files {
            zip.start_file(name, options).unwrap();
            zip.write_all(text.as_bytes()).unwrap();
        }
        zip.finish().unwrap();
        out.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::{samples::*, *};

    #[test]
    fn pdf_text_and_title_come_out() {
        let bytes = pdf_bytes(
            Some("Attention Is All You Need"),
            &["Transformers (a model)", "Second page"],
        );
        let got = in_process("pdf", &bytes).unwrap();
        assert_eq!(got.title.as_deref(), Some("Attention Is All You Need"));
        assert!(
            got.text.contains("Transformers (a model)"),
            "{:?}",
            got.text
        );
        assert!(got.text.contains("Second page"), "{:?}", got.text);
    }

    #[test]
    fn damaged_and_encrypted_pdfs_are_reasons() {
        let bytes = pdf_bytes(None, &["Some text"]);
        let err = in_process("pdf", &bytes[..bytes.len() / 2]).unwrap_err();
        assert!(err.starts_with("damaged PDF"), "{err}");
        let err = in_process("pdf", b"%PDF-1.4\nnot really").unwrap_err();
        assert!(err.starts_with("damaged PDF"), "{err}");
        // Pages without a text layer (a scan) are said to be so, not passed on empty.
        let err = in_process("pdf", &pdf_bytes(None, &[""])).unwrap_err();
        assert!(err.starts_with("no text in this PDF"), "{err}");
    }

    #[test]
    fn the_bomb_sample_is_a_valid_stream() {
        // Small enough to inflate here: the page's content is 4 MiB of zeros, and no text.
        let bytes = pdf_bomb(4 << 20);
        let doc = pdf_extract::Document::load_mem(&bytes).unwrap();
        let page = *doc.get_pages().values().next().unwrap();
        let content = doc.get_page_content(page).unwrap();
        // (lopdf ends a page's content with a newline.)
        assert!(content.len() as u64 >= (4 << 20) - 258, "{}", content.len());
        let zeros = content.iter().filter(|&&b| b == 0).count();
        assert!(zeros + 1 >= content.len(), "{zeros} of {}", content.len());
        let err = in_process("pdf", &bytes).unwrap_err();
        assert!(err.starts_with("no text in this PDF"), "{err}");
    }

    #[test]
    fn an_encrypted_pdf_is_a_reason() {
        // A standard security handler whose user password is not empty: without it, nothing.
        let plain = pdf_bytes(None, &["Secret text"]);
        let encrypt = "/Encrypt << /Filter /Standard /V 1 /R 2 /Length 40 /P -4 \
            /O <0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef> \
            /U <fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210> >> \
            /ID [<00112233445566778899aabbccddeeff> <00112233445566778899aabbccddeeff>]";
        // In the trailer, after every object: no offset moves.
        let at = plain
            .windows(11)
            .rposition(|w| w == b"/Root 1 0 R")
            .unwrap()
            + 11;
        let mut bytes = plain[..at].to_vec();
        bytes.extend_from_slice(format!(" {encrypt}").as_bytes());
        bytes.extend_from_slice(&plain[at..]);
        let err = in_process("pdf", &bytes).unwrap_err();
        assert!(err.starts_with("encrypted PDF"), "{err}");
        assert!(!err.contains("Secret text"));
    }

    #[test]
    fn docx_paragraphs_and_title_come_out() {
        let bytes = docx_bytes(
            Some("Design &amp; notes"),
            &["First &lt;para&gt;", "Second"],
        );
        let got = in_process("docx", &bytes).unwrap();
        assert_eq!(got.title.as_deref(), Some("Design & notes"));
        assert_eq!(got.text, "First <para>\nSecond\n");
        let err = in_process("docx", b"PK\x03\x04 broken").unwrap_err();
        assert!(err.starts_with("damaged DOCX"), "{err}");
    }
}
