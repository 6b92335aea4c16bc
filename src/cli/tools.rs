//! `plugboard tools`: the published tools.

use std::process::ExitCode;

use clap::Args;

use crate::plugin::Manager;

#[derive(Debug, Args)]
pub(super) struct ToolsArgs {
    /// Print the tools exactly as tools/list returns them.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(manager: &Manager, args: ToolsArgs) -> anyhow::Result<ExitCode> {
    let tools = manager.tools();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&*tools)?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = tools.iter().map(|t| t.name.len()).max().unwrap_or(0);
    for tool in tools.iter() {
        let a = tool.annotations.clone().unwrap_or_default();
        let kind = match (a.read_only_hint, a.destructive_hint) {
            (Some(true), _) => "read-only",
            (_, Some(true)) => "destructive",
            _ => "writes",
        };
        let summary = tool
            .description
            .as_deref()
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("");
        println!("{:width$}  {kind:11}  {summary}", tool.name);
    }
    Ok(ExitCode::SUCCESS)
}
