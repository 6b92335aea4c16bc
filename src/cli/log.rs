//! Text logs that cannot be forged: one event, one line, no terminal control bytes.
//!
//! Log fields carry text from outside (a tool name a client sent, an upstream's error message).
//! Written raw, a newline in one starts what looks like a log line of its own, and escape bytes
//! drive the reader's terminal. Every event the text formatter writes passes through
//! [`Escaped`], which spells such bytes out (`\n`, `\r`, `\x1b`) and keeps the final newline.
//! JSON logs need none of this: JSON escapes them itself.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Standard error, escaped.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedStderr;

impl<'a> MakeWriter<'a> for EscapedStderr {
    type Writer = Escaped<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        Escaped(io::stderr())
    }
}

/// Writes each buffer (the formatter writes one event at a time) with control bytes escaped.
#[derive(Debug)]
pub struct Escaped<W>(pub W);

impl<W: Write> Write for Escaped<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_masked(&mut self.0, &escape(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Standard error with every held secret masked (for JSON logs, which need no escaping).
#[derive(Debug, Clone, Copy, Default)]
pub struct MaskedStderr;

impl<'a> MakeWriter<'a> for MaskedStderr {
    type Writer = Masked<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        Masked(io::stderr())
    }
}

/// Writes each buffer with every secret the process holds masked
/// (`net::secret::mask_held`): a log line is output like any other.
#[derive(Debug)]
pub struct Masked<W>(pub W);

impl<W: Write> Write for Masked<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_masked(&mut self.0, buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// `buf` written with every held secret masked; copied only when there is one to mask.
fn write_masked(out: &mut impl Write, buf: &[u8]) -> io::Result<()> {
    match std::str::from_utf8(buf).map(crate::net::secret::mask_held) {
        Ok(std::borrow::Cow::Owned(masked)) => out.write_all(masked.as_bytes()),
        _ => out.write_all(buf),
    }
}

/// `buf` with every control byte but tab spelled out; a newline that ends it stays.
pub fn escape(buf: &[u8]) -> Vec<u8> {
    let (body, end) = match buf.split_last() {
        Some((b'\n', body)) => (body, &b"\n"[..]),
        _ => (buf, &b""[..]),
    };
    if !body.iter().any(|b| needs_escape(*b)) {
        return buf.to_vec();
    }
    let mut out = Vec::with_capacity(buf.len() + 16);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b if needs_escape(b) => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            b => out.push(b),
        }
    }
    out.extend_from_slice(end);
    out
}

fn needs_escape(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_stays_one_line_without_control_bytes() {
        let forged = b"WARN unknown tool `x\n2026-12-06T00:00:00Z  INFO forged\x1b[2J`\r\n";
        let out = escape(forged);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "WARN unknown tool `x\\n2026-12-06T00:00:00Z  INFO forged\\x1b[2J`\\r\n"
        );
        assert_eq!(escape(b"plain\tline\n"), b"plain\tline\n");
        assert_eq!(escape(b"no newline"), b"no newline");
    }
}
