//! Tool discovery (`--tool-discovery`): instead of every tool's schema, a client is shown three
//! tools — find tools by words, describe one, call one — and a model asks for the schemas of
//! only the tools it is about to use. For servers that aggregate many upstreams, whose full
//! `tools/list` would cost a model tens of thousands of tokens before it has done anything.
//!
//! The tools found, described and called are exactly those the client would be shown without
//! discovery (the server's filters, the connection's scope, sampling-only tools for clients
//! that sample); a call goes through the same path as a direct one.

use std::sync::{Arc, OnceLock};

use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, JsonObject, Tool};
use serde_json::{Value, json};

pub const FIND: &str = "plugboard_find_tools";
pub const DESCRIBE: &str = "plugboard_describe_tool";
pub const CALL: &str = "plugboard_call_tool";

const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 50;
/// A found tool's description is cut to this (its first sentence when shorter).
const SHORT: usize = 200;

fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => unreachable!("a schema is an object"),
    }
}

/// The three tools a client is shown.
pub fn tools() -> Vec<Tool> {
    static TOOLS: OnceLock<Vec<Tool>> = OnceLock::new();
    TOOLS
        .get_or_init(|| {
            let mut find = Tool::new(
                FIND,
                "Find the tools this server offers by what they do: give a few words (e.g. \
                 \"create airtable record\", \"search github issues\"); returns matching tool \
                 names with a short description. Then describe_tool for a tool's arguments, and \
                 call_tool to use it.",
                schema(json!({
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "description": "Words describing the task; empty lists every tool"},
                        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "description": "Most tools to return (default 10)"}
                    }
                })),
            );
            find.title = Some("Find tools".into());
            find.annotations = Some(read_only());
            let mut describe = Tool::new(
                DESCRIBE,
                "The full definition of one tool found with find_tools: its description, the \
                 JSON schema of its arguments, of its result, and its annotations.",
                schema(json!({
                    "type": "object",
                    "properties": {"name": {"type": "string", "description": "The tool's name, as find_tools gave it"}},
                    "required": ["name"]
                })),
            );
            describe.title = Some("Describe a tool".into());
            describe.annotations = Some(read_only());
            let mut call = Tool::new(
                CALL,
                "Call a tool found with find_tools, with arguments that follow its schema \
                 (describe_tool). The result is the tool's own.",
                schema(json!({
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "description": "The tool's name"},
                        "arguments": {"type": "object", "description": "The tool's arguments", "additionalProperties": true}
                    },
                    "required": ["name"]
                })),
            );
            call.title = Some("Call a tool".into());
            vec![find, describe, call]
        })
        .clone()
}

fn read_only() -> rmcp::model::ToolAnnotations {
    let mut a = rmcp::model::ToolAnnotations::default();
    a.read_only_hint = Some(true);
    a.destructive_hint = Some(false);
    a.idempotent_hint = Some(true);
    a.open_world_hint = Some(false);
    a
}

pub fn is_meta(name: &str) -> bool {
    [FIND, DESCRIBE, CALL].contains(&name)
}

/// What a call of one of the three tools comes to.
pub enum Meta {
    /// Answered here (found, described, or what was wrong).
    Answer(CallToolResult),
    /// The call of the tool it names, to run as if the client had called it.
    Call(CallToolRequestParams),
}

fn error(text: String) -> Meta {
    Meta::Answer(CallToolResult::error(vec![ContentBlock::text(text)]))
}

/// Answer a call of one of the three tools over `visible`, the tools the client may use.
pub fn handle(request: CallToolRequestParams, visible: &[Tool]) -> Meta {
    let args = request.arguments.clone().unwrap_or_default();
    let text_arg = |key: &str| args.get(key).and_then(Value::as_str).map(str::to_owned);
    match request.name.as_ref() {
        FIND => {
            let query = text_arg("query").unwrap_or_default();
            let limit = args
                .get("limit")
                .and_then(Value::as_u64)
                .map_or(DEFAULT_LIMIT, |l| (l as usize).clamp(1, MAX_LIMIT));
            let (found, total) = find(visible, &query, limit);
            let lines: Vec<String> = found
                .iter()
                .map(|t| {
                    format!(
                        "{} — {}",
                        t["name"].as_str().unwrap_or(""),
                        t["description"].as_str().unwrap_or("")
                    )
                })
                .collect();
            let text = if found.is_empty() {
                format!(
                    "no tool matches `{}` among the {} tools; try other words, or an empty query for all",
                    crate::plugin::clip_name(&query),
                    visible.len()
                )
            } else {
                format!(
                    "{} of {total} matching tools (describe_tool for one's arguments):\n{}",
                    found.len(),
                    lines.join("\n")
                )
            };
            let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
            result.structured_content = Some(json!({"tools": found, "total": total}));
            Meta::Answer(result)
        }
        DESCRIBE => {
            let Some(name) = text_arg("name") else {
                return error("describe_tool needs `name`, a tool's name from find_tools".into());
            };
            match visible.iter().find(|t| t.name == name) {
                Some(tool) => {
                    let definition = serde_json::to_value(tool).unwrap_or(Value::Null);
                    let mut result = CallToolResult::success(vec![ContentBlock::text(
                        serde_json::to_string_pretty(&definition).unwrap_or_default(),
                    )]);
                    result.structured_content = Some(definition);
                    Meta::Answer(result)
                }
                None => error(unknown(&name, visible)),
            }
        }
        CALL => {
            let Some(name) = text_arg("name") else {
                return error("call_tool needs `name`, a tool's name from find_tools".into());
            };
            if !visible.iter().any(|t| t.name == name) {
                return error(unknown(&name, visible));
            }
            let arguments = match args.get("arguments") {
                None | Some(Value::Null) => None,
                Some(Value::Object(map)) => Some(map.clone()),
                Some(other) => {
                    return error(format!(
                        "call_tool: `arguments` must be an object (the tool's arguments), not {other}"
                    ));
                }
            };
            let mut inner = request;
            inner.name = name.into();
            inner.arguments = arguments;
            Meta::Call(inner)
        }
        other => error(format!(
            "no discovery tool `{}`",
            crate::plugin::clip_name(other)
        )),
    }
}

fn unknown(name: &str, visible: &[Tool]) -> String {
    let close: Vec<&str> = visible
        .iter()
        .map(|t| t.name.as_ref())
        .filter(|n| {
            let n = n.to_lowercase();
            name.to_lowercase()
                .split(['_', '-'])
                .any(|w| w.len() > 2 && n.contains(w))
        })
        .take(5)
        .collect();
    let mut text = format!(
        "no tool `{}` here; find_tools lists the tools by what they do",
        crate::plugin::clip_name(name)
    );
    if !close.is_empty() {
        text.push_str(&format!(" (close: {})", close.join(", ")));
    }
    text
}

/// The tools matching `query` best (its words in the name count most, then the title, then
/// the description), at most `limit`, and how many matched.
fn find(visible: &[Tool], query: &str, limit: usize) -> (Vec<Value>, usize) {
    let words: Vec<String> = query
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    let mut scored: Vec<(usize, &Tool)> = visible
        .iter()
        .filter_map(|tool| {
            if words.is_empty() {
                return Some((0, tool));
            }
            let name = tool.name.to_lowercase();
            let title = tool.title.as_deref().unwrap_or("").to_lowercase();
            let description = tool.description.as_deref().unwrap_or("").to_lowercase();
            let score: usize = words
                .iter()
                .map(|w| {
                    let stem = w.trim_end_matches('s');
                    let stem = if stem.len() >= 3 { stem } else { w.as_str() };
                    3 * usize::from(name.contains(stem))
                        + 2 * usize::from(title.contains(stem))
                        + usize::from(description.contains(stem))
                })
                .sum();
            (score > 0).then_some((score, tool))
        })
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
    let total = scored.len();
    let found = scored
        .into_iter()
        .take(limit)
        .map(|(_, tool)| {
            json!({
                "name": tool.name,
                "title": tool.title,
                "description": short(tool.description.as_deref().unwrap_or("")),
            })
        })
        .collect();
    (found, total)
}

/// A description's first sentence, at most [`SHORT`] characters.
fn short(description: &str) -> String {
    let first = description
        .split_inclusive(". ")
        .next()
        .unwrap_or(description)
        .trim();
    if first.chars().count() <= SHORT {
        first.to_owned()
    } else {
        let cut: String = first.chars().take(SHORT - 1).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, description: &str) -> Tool {
        Tool::new(
            name.to_owned(),
            description.to_owned(),
            schema(json!({"type": "object"})),
        )
    }

    #[test]
    fn words_in_the_name_count_most() {
        let visible = vec![
            tool("airtable_create_records", "Create records in a table."),
            tool("github_search_issues", "Search issues and pull requests."),
            tool("files_search", "Search the files under the roots for text."),
        ];
        let (found, total) = find(&visible, "search issues", 10);
        assert_eq!(total, 2);
        assert_eq!(found[0]["name"], "github_search_issues");
        let (found, _) = find(&visible, "record", 10);
        assert_eq!(found[0]["name"], "airtable_create_records");
        assert_eq!(find(&visible, "", 2).0.len(), 2);
        assert_eq!(find(&visible, "zebra", 10).1, 0);
    }

    #[test]
    fn a_call_becomes_the_tools_own_call() {
        let visible = vec![tool("files_read", "Read a file.")];
        let request = CallToolRequestParams::new(CALL).with_arguments(
            json!({"name": "files_read", "arguments": {"path": "a.txt"}})
                .as_object()
                .unwrap()
                .clone(),
        );
        match handle(request, &visible) {
            Meta::Call(inner) => {
                assert_eq!(inner.name, "files_read");
                assert_eq!(inner.arguments.unwrap()["path"], "a.txt");
            }
            Meta::Answer(r) => panic!("{r:?}"),
        }
        let hidden = CallToolRequestParams::new(CALL).with_arguments(
            json!({"name": "github_delete"})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert!(matches!(handle(hidden, &visible), Meta::Answer(r) if r.is_error == Some(true)));
    }
}
