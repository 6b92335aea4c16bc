//! `plugboard organize DIR --base B --table T`: the organize plugin's `airtable_ai_organize`
//! from the command line, with a progress bar; the plan by default, `--apply` to write it.

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use clap::Args;

use super::{exit_code, tool_name};
use crate::plugin::{Manager, ToolContext};

#[derive(Debug, Args)]
pub(super) struct OrganizeArgs {
    /// The folder of documents (inside the files roots: PLUGBOARD_FILES_ROOTS, else the
    /// current folder).
    dir: String,
    /// Base id (app…).
    #[arg(long)]
    base: String,
    /// Table name or id.
    #[arg(long)]
    table: String,
    /// Write the plan (without it, nothing is written: the plan is printed).
    #[arg(long)]
    apply: bool,
    /// A category to use (repeatable); without any, the table's own or the model's.
    #[arg(long = "category", value_name = "NAME")]
    categories: Vec<String>,
    /// Only documents matching this glob (relative to DIR), e.g. `**/*.md`.
    #[arg(long)]
    glob: Option<String>,
    /// The provider that classifies (openai, anthropic, gemini, deepseek, … or auto).
    #[arg(long)]
    provider: Option<String>,
    /// Do not link related documents.
    #[arg(long)]
    no_links: bool,
    /// Have the model choose every document's related documents afresh, not only the new
    /// and changed ones'.
    #[arg(long, conflicts_with = "no_links")]
    relink: bool,
    /// Forget what an earlier run kept and classify afresh.
    #[arg(long)]
    restart: bool,
    /// Print the structured result as JSON instead of the report. The exit status is 1 when
    /// the call failed or a document could not be organized.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(manager: &Manager, a: OrganizeArgs) -> anyhow::Result<ExitCode> {
    let tool = tool_name(manager, "organize", "organize")?;
    // A relative folder means the current one's, as users expect on a command line.
    let dir = std::path::absolute(&a.dir).unwrap_or_else(|_| PathBuf::from(&a.dir));
    let mut args = serde_json::Map::new();
    args.insert("base".into(), a.base.into());
    args.insert("table".into(), a.table.into());
    args.insert("path".into(), serde_json::to_value(&dir)?);
    args.insert("apply".into(), a.apply.into());
    args.insert("restart".into(), a.restart.into());
    args.insert("link_related".into(), (!a.no_links).into());
    args.insert("relink".into(), a.relink.into());
    if !a.categories.is_empty() {
        args.insert("categories".into(), a.categories.into());
    }
    if let Some(glob) = a.glob {
        args.insert("glob".into(), glob.into());
    }
    if let Some(provider) = a.provider {
        args.insert("provider".into(), provider.into());
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len}  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let sink_bar = bar.clone();
    let cx = ToolContext::detached().with_progress_sink(Arc::new(move |done, total, message| {
        sink_bar.set_length(total.unwrap_or(0.0) as u64);
        sink_bar.set_position(done as u64);
        sink_bar.set_message(message.to_owned());
    }));
    let result = manager.call(&tool, Some(args), cx).await;
    bar.finish_and_clear();
    // A document that could not be organized fails the command too (it is listed).
    let failed = result.is_error == Some(true)
        || result
            .structured_content
            .as_ref()
            .and_then(|r| r["failed"].as_array())
            .is_some_and(|f| !f.is_empty());
    match (&result.structured_content, a.json) {
        (Some(report), true) => println!("{}", serde_json::to_string_pretty(report)?),
        _ => {
            for block in &result.content {
                if let Some(text) = block.as_text() {
                    if result.is_error == Some(true) {
                        eprintln!("plugboard: {}", text.text);
                    } else {
                        print!("{}", text.text);
                    }
                }
            }
        }
    }
    Ok(exit_code(failed))
}
