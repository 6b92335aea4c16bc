//! `plugboard call`: one tool from the shell.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::exit_code;
use crate::plugin::{Manager, ToolContext};

#[derive(Debug, Args)]
pub(super) struct CallArgs {
    /// Full tool name, e.g. `files_read`.
    tool: String,
    /// Arguments as a JSON object.
    #[arg(long, default_value = "{}")]
    args: String,
    /// Print the whole result as JSON.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(manager: &Manager, call: CallArgs) -> anyhow::Result<ExitCode> {
    let args: serde_json::Value =
        serde_json::from_str(&call.args).context("--args must be a JSON object")?;
    let serde_json::Value::Object(args) = args else {
        anyhow::bail!("--args must be a JSON object, like '{{\"path\": \"README.md\"}}'");
    };
    let result = manager
        .call(&call.tool, Some(args), ToolContext::detached())
        .await;
    if call.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        for block in &result.content {
            match block.as_text() {
                Some(text) => println!("{}", text.text),
                None => println!("{}", serde_json::to_string(block)?),
            }
        }
    }
    Ok(exit_code(result.is_error == Some(true)))
}
