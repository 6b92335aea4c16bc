//! A tool call whose answer is written out as it arrives, then summed up from the tool's
//! typed report: what `ask` and `consensus` share.

use std::{io::Write, process::ExitCode, sync::Arc};

use anyhow::Context;
use rmcp::model::JsonObject;
use serde::de::DeserializeOwned;

use super::exit_code;
use crate::plugin::{Manager, ToolContext};

/// Call `tool`, streaming its text to stdout and its progress messages to stderr; at the end
/// print the report as JSON (`json`), or hand it to `summary` as a `R`.
pub(super) async fn call<R: DeserializeOwned>(
    manager: &Manager,
    tool: &str,
    args: JsonObject,
    json: bool,
    summary: impl FnOnce(&R),
) -> anyhow::Result<ExitCode> {
    let mut cx = ToolContext::detached();
    if !json {
        cx = cx
            .with_text_sink(Arc::new(|text: &str| {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }))
            .with_progress_sink(Arc::new(|_, _, message: &str| {
                if !message.is_empty() {
                    eprintln!("· {message}");
                }
            }));
    }
    let result = manager.call(tool, Some(args), cx).await;
    let failed = result.is_error == Some(true);
    let report = result.structured_content.as_ref();
    if json {
        match report {
            Some(report) => println!("{}", serde_json::to_string_pretty(report)?),
            None => println!("{}", serde_json::to_string_pretty(&result)?),
        }
    } else if let Some(report) = report {
        // The answers were written as they arrived; what is left is the summary.
        let report = R::deserialize(report)
            .with_context(|| format!("the report of `{tool}` does not have the expected shape"))?;
        summary(&report);
    } else if failed {
        for block in &result.content {
            if let Some(text) = block.as_text() {
                eprintln!("plugboard: {}", text.text);
            }
        }
    }
    Ok(exit_code(failed))
}
