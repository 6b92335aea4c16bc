//! `plugboard ask`: one AI model, its answer streamed.

use std::process::ExitCode;

use clap::Args;

use super::{stream, tool_name};
use crate::{orchestrator::Answer, plugin::Manager};

#[derive(Debug, Args)]
pub(super) struct AskArgs {
    /// What to ask.
    prompt: String,
    /// A provider's name, or `auto` to let the routing rules pick.
    #[arg(long, short, default_value = "auto")]
    provider: String,
    /// Let the model call plugboard's tools (read-only ones unless configured).
    #[arg(long)]
    use_tools: bool,
    /// A system prompt.
    #[arg(long)]
    system: Option<String>,
    /// Print the whole result as JSON at the end instead of streaming.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(manager: &Manager, ask: AskArgs) -> anyhow::Result<ExitCode> {
    let tool = tool_name(manager, "agents", "ask")?;
    let mut args = serde_json::Map::new();
    args.insert("prompt".into(), ask.prompt.into());
    args.insert("provider".into(), ask.provider.into());
    args.insert("use_tools".into(), ask.use_tools.into());
    if let Some(system) = ask.system {
        args.insert("system".into(), system.into());
    }
    stream::call(manager, &tool, args, ask.json, |answer: &Answer| {
        println!();
        if let Some(stopped) = &answer.stopped {
            eprintln!("[{stopped}]");
        }
        eprintln!(
            "[{} · {} · {} ms · {} tokens in, {} out]",
            answer.provider,
            answer.model,
            answer.latency_ms,
            answer.input_tokens,
            answer.output_tokens
        );
    })
    .await
}
