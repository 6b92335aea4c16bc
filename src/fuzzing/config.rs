//! What a user or a client configures: plugin manifests, `.env`, tool arguments.

use std::{path::Path, sync::OnceLock};

use serde_json::Value;

use crate::plugin::{Manifest, calls::argument_problems};

/// A manifest. One that parses has a valid name and keeps its text; one that does not says
/// which file, and where.
pub fn manifest(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let path = Path::new("plugins/fuzz/plugin.toml");
    match Manifest::parse(path, text) {
        Ok(m) => {
            assert!(!m.name.is_empty() && m.name.len() <= 32);
            assert_eq!(m.source, text);
            let _ = (m.prefix(), m.builtin());
            if let Err(e) = m.kind_table::<toml::Table>() {
                assert!(!e.is_empty());
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.starts_with("plugins/fuzz/plugin.toml: "),
                "{message}"
            );
            assert!(
                message.len() > "plugins/fuzz/plugin.toml: ".len(),
                "{message}"
            );
        }
    }
}

/// A `.env` file. A line that is not `NAME=value` is named by its number, and the message
/// holds nothing of the file's text (a malformed line may hold a secret).
pub fn dotenv(bytes: &[u8]) {
    // dotenvy expands `$A` from the lines before, so 30 lines of `A="$A$A"` ask for 2³⁰
    // bytes (found here: a 2 KB file ran out of 4 GB). Only someone who can write the `.env`
    // can do that, and they can as well point a provider's base URL at their own server; a
    // bound needs dotenvy's own parser. Inputs with many references are left out so the
    // target can look for anything else.
    if bytes.iter().filter(|&&b| b == b'$').count() > 12 {
        return;
    }
    let path = Path::new("/fuzz/.env");
    let text = std::str::from_utf8(bytes).ok();
    let lines = text.map_or(0, |t| t.lines().count());
    for item in dotenvy::from_read_iter(bytes).take(10_000) {
        let Err(error) = item else {
            continue;
        };
        let message = crate::config::describe_in(path, text, error).to_string();
        if let Some(rest) = message.strip_prefix("/fuzz/.env: line ") {
            let (number, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let number: usize = number.parse().unwrap_or(0);
            assert!((1..=lines).contains(&number), "{message} of {lines} lines");
            assert_eq!(tail, "is not `NAME=value`");
        } else {
            assert!(
                message == "/fuzz/.env: a line is not `NAME=value`"
                    || message.starts_with("cannot read /fuzz/.env: "),
                "{message}"
            );
        }
        break;
    }
}

/// The published input schema of every built-in tool (the snapshots the test suite keeps in
/// step with `tools/list`), compiled as a call compiles it.
fn tool_schemas() -> &'static [(String, jsonschema::Validator)] {
    static SCHEMAS: OnceLock<Vec<(String, jsonschema::Validator)>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/snapshots/tools");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        files
            .iter()
            .filter_map(|path| {
                let text = std::fs::read_to_string(path).ok()?;
                // An insta snapshot: a `---` header, then the tool as JSON.
                let json = &text[text.find("\n{")?..];
                let tool: Value = serde_json::from_str(json).ok()?;
                let validator = jsonschema::validator_for(&tool["inputSchema"]).ok()?;
                Some((tool["name"].as_str()?.to_owned(), validator))
            })
            .collect()
    })
}

/// Arguments of a `tools/call`: the first byte picks the tool, the rest is the arguments'
/// JSON. Every problem found says what is wrong, and there are problems exactly when the
/// schema refuses them.
pub fn tool_arguments(bytes: &[u8]) {
    let schemas = tool_schemas();
    assert!(!schemas.is_empty(), "no tool snapshots found");
    let Some((&pick, json)) = bytes.split_first() else {
        return;
    };
    let (name, validator) = &schemas[usize::from(pick) % schemas.len()];
    // rmcp only hands on arguments that are an object.
    let Ok(arguments @ Value::Object(_)) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    let problems = argument_problems(validator, &arguments);
    assert_eq!(
        problems.is_empty(),
        validator.is_valid(&arguments),
        "{name}"
    );
    for problem in &problems {
        assert!(!problem.trim().is_empty(), "{name}: an empty problem");
    }
}
