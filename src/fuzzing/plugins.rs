//! The built-in plugins' parsers: Airtable import rows, and what Airtable and GitHub answer.

use std::{collections::HashMap, path::Path};

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::Value;

use crate::plugins::{
    airtable::{
        client as airtable,
        import::{convert, map_row, parse_rows},
        tools::records::{decode_cursor, encode_cursor, formula_string},
    },
    github::{
        client as github,
        tools::{
            diff::{cap_patch, only_files, piece},
            pulls::slim_pull,
            search::{repo_of, slim_code},
            slim_issue,
        },
    },
};

/// Field types a column may go to, picked by the column's name.
const KINDS: [&str; 6] = [
    "number",
    "checkbox",
    "multipleSelects",
    "singleLineText",
    "currency",
    "date",
];

/// An import file: the first line is its type (`csv`, `tsv`, `json`, `jsonl`), the rest its
/// text. Every row read becomes fields of the table's types, or a reason why not; numbers
/// sent are finite.
pub fn import_rows(bytes: &[u8]) {
    let (ext, text) = super::first_line(bytes);
    let (Ok(ext), Ok(text)) = (std::str::from_utf8(ext), std::str::from_utf8(text)) else {
        return;
    };
    let rows = match parse_rows(ext, text, Path::new("rows")) {
        Ok(rows) => rows,
        Err(e) => {
            assert!(e.to_string().contains("rows: "), "{e}");
            return;
        }
    };
    if matches!(ext, "jsonl" | "ndjson") {
        assert_eq!(
            rows.len(),
            text.lines().filter(|l| !l.trim().is_empty()).count()
        );
    }
    for row in rows {
        let types: HashMap<String, String> = row
            .keys()
            .map(|k| (k.clone(), KINDS[k.len() % KINDS.len()].to_owned()))
            .collect();
        for (column, value) in &row {
            for kind in KINDS {
                match convert(value.clone(), kind) {
                    Ok(Value::Number(n)) => assert!(n.as_f64().is_some_and(f64::is_finite)),
                    Ok(_) => {}
                    Err(e) => assert!(!e.is_empty(), "{column}"),
                }
            }
        }
        for typecast in [false, true] {
            match map_row(row.clone(), None, &types, typecast) {
                Ok(fields) => assert!(fields.keys().all(|k| types.contains_key(k))),
                Err(e) => assert!(!e.is_empty()),
            }
        }
    }
}

/// The leading number of `line` and the words after it.
fn status_line(line: &[u8]) -> (u16, Vec<String>) {
    let text = String::from_utf8_lossy(line);
    let mut words = text.split(' ');
    let status = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    (status, words.map(str::to_owned).collect())
}

/// An Airtable answer: the first line is the status, the second a cursor a model handed back,
/// the rest the body. An error names the attempt and says what to do; a formula string always
/// reads back as the text it quotes.
pub fn airtable(bytes: &[u8]) {
    let (status, rest) = super::first_line(bytes);
    let (cursor, body) = super::first_line(rest);
    let status = StatusCode::from_u16(status_line(status).0).unwrap_or(StatusCode::BAD_GATEWAY);
    let error = airtable::parse_error(status, body);
    assert!(!error.kind.is_empty());
    let advice = airtable::advice(airtable::Failure::Api(error), "listing records").to_string();
    assert!(advice.contains("listing records"), "{advice}");
    let cursor = String::from_utf8_lossy(cursor);
    for query in [0, u64::MAX] {
        if let Ok(read) = decode_cursor(&cursor, query) {
            let again = decode_cursor(&encode_cursor(&read), query).ok();
            assert_eq!(
                serde_json::to_value(again).ok(),
                serde_json::to_value(Some(read)).ok()
            );
        }
    }
    let quoted = formula_string(&cursor);
    assert_eq!(
        unquote(&quoted).as_deref(),
        Some(cursor.as_ref()),
        "{quoted}"
    );
}

/// The text of a formula string literal, if `literal` is exactly one.
fn unquote(literal: &str) -> Option<String> {
    let inner = literal.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// A GitHub answer: the first line is the status, then `files` of a diff to keep and the
/// offset and size of a piece; then headers up to an empty line, then the body. Errors say
/// what to do; pieces of a diff follow each other and cover it.
pub fn github(bytes: &[u8]) {
    let (first, mut rest) = super::first_line(bytes);
    let (status, words) = status_line(first);
    let mut headers = HeaderMap::new();
    loop {
        let (line, tail) = super::first_line(rest);
        rest = tail;
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            break;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) {
            headers.append(name, value);
        }
    }
    let body = rest;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let error = github::parse_error(status, body);
    assert!(!error.message.is_empty());
    let advice = github::advice(github::Failure::Api(error), "reading issue 1").to_string();
    assert!(advice.contains("reading issue 1"), "{advice}");

    let (next, last) = github::links(&headers);
    let response = github::Response {
        status,
        body: body.to_vec(),
        next,
        last,
    };
    let _ = (response.next_page(), response.last_page());
    if let Ok(value) = response.json() {
        for item in std::iter::once(&value).chain(value.as_array().into_iter().flatten()) {
            for detail in [false, true] {
                assert!(slim_issue(item, detail).is_object());
                assert!(slim_pull(item, detail).is_object());
            }
            let _ = slim_code(item);
            let mut file = item.clone();
            if file.is_object() {
                cap_patch(&mut file);
            }
            if let Some(url) = item["url"].as_str() {
                let _ = repo_of(url);
            }
        }
    }

    let diff = String::from_utf8_lossy(body);
    let (kept, _) = only_files(&diff, &words);
    assert!(kept.len() <= diff.len());
    let max = 1_000 + usize::from(status.as_u16()) * 10;
    pieces_cover(&diff, max);
}

/// Reading a diff piece by piece, each from the offset the one before names, gives back the
/// whole diff.
fn pieces_cover(diff: &str, max: usize) {
    let mut offset = 0;
    let mut read = String::new();
    loop {
        let out = piece(diff, offset, max);
        if diff.is_empty() || (offset == 0 && out == diff) {
            // Nothing to read, or all of it in one piece (which carries no marker).
            return;
        }
        let Some(marker) = out.rfind("\n[").map(|i| &out[i + 1..]) else {
            panic!("a piece without its marker: {out:?}");
        };
        let numbers: Vec<usize> = marker
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        let [start, end, total, ..] = numbers[..] else {
            panic!("a marker without its numbers: {marker:?}");
        };
        assert_eq!((start, total), (offset, diff.len()), "{marker}");
        assert!(end > start && end - start <= max, "{marker}");
        assert!(out.starts_with(&diff[start..end]), "{marker}");
        read.push_str(&diff[start..end]);
        if end == total {
            assert_eq!(read, diff);
            return;
        }
        offset = end;
    }
}
