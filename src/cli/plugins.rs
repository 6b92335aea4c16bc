//! `plugboard plugins`: every plugin and its status.

use std::process::ExitCode;

use clap::Args;

use crate::plugin::Manager;

#[derive(Debug, Args)]
pub(super) struct PluginsArgs {
    #[arg(long)]
    json: bool,
}

pub(super) fn run(manager: &Manager, args: PluginsArgs) -> anyhow::Result<ExitCode> {
    let statuses = manager.statuses();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
        return Ok(ExitCode::SUCCESS);
    }
    if statuses.is_empty() {
        println!(
            "no plugins found in {}",
            manager.config().plugins_dir.display()
        );
    }
    let width = statuses.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in &statuses {
        let counts: Vec<String> = [
            (s.tools.len(), "tool"),
            (s.resources.len(), "resource"),
            (s.prompts.len(), "prompt"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}{}", if n == 1 { "" } else { "s" }))
        .collect();
        let offer = if counts.is_empty() {
            String::new()
        } else {
            format!("  ({})", counts.join(", "))
        };
        println!("{:width$}  {}{offer}", s.name, s.status);
    }
    Ok(ExitCode::SUCCESS)
}
