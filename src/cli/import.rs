//! `plugboard import airtable`: a bulk upsert with a progress bar, through the airtable
//! plugin's `bulk_import` tool.

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context;
use clap::Subcommand;
use serde::Deserialize;

use super::{exit_code, tool_name};
use crate::plugin::{Manager, ToolContext};

#[derive(Debug, Subcommand)]
pub(super) enum ImportCommand {
    /// Claude Desktop's MCP servers as plugboard plugins (one manifest each, secrets into
    /// `.env`); default FILE: Claude Desktop's config.
    ClaudeDesktop(ConfigImport),
    /// Cursor's MCP servers (`mcp.json`; default: ~/.cursor/mcp.json) as plugboard plugins.
    Cursor(ConfigImport),
    /// VS Code's MCP servers (`mcp.json`; default: .vscode/mcp.json) as plugboard plugins.
    Vscode(ConfigImport),
    /// Upsert the rows of a CSV/TSV/JSON/JSONL file into an Airtable table on key fields:
    /// re-running never duplicates, and an interrupted import continues where it stopped.
    Airtable {
        /// Base id (app…).
        #[arg(long)]
        base: String,
        /// Table name or id.
        #[arg(long)]
        table: String,
        /// The file to import (inside the import folders: the airtable plugin's `import_roots`,
        /// else PLUGBOARD_FILES_ROOTS, else the current folder; `.env` files and keys never).
        file: String,
        /// A key field (1 to 3 times): rows whose keys match a record update it.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// COLUMN=FIELD (repeatable); with any, only mapped columns are imported.
        #[arg(long = "map", value_name = "COLUMN=FIELD")]
        mapping: Vec<String>,
        /// Let Airtable convert values and add select options.
        #[arg(long)]
        typecast: bool,
        /// Ignore a checkpoint of this import and start over.
        #[arg(long)]
        restart: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub(super) struct ConfigImport {
    /// The client's config file.
    file: Option<PathBuf>,
    /// Replace manifests that exist.
    #[arg(long)]
    force: bool,
}

impl ImportCommand {
    /// A client's config to import: no plugin needs to run for it.
    pub(super) fn client_config(&self) -> Option<(super::import_config::Client, &ConfigImport)> {
        use super::import_config::Client;
        match self {
            ImportCommand::ClaudeDesktop(a) => Some((Client::ClaudeDesktop, a)),
            ImportCommand::Cursor(a) => Some((Client::Cursor, a)),
            ImportCommand::Vscode(a) => Some((Client::Vscode, a)),
            ImportCommand::Airtable { .. } => None,
        }
    }
}

impl ConfigImport {
    pub(super) fn run(
        &self,
        client: super::import_config::Client,
        plugins_dir: &std::path::Path,
        env_file: &std::path::Path,
    ) -> anyhow::Result<ExitCode> {
        super::import_config::run(client, self.file.clone(), self.force, plugins_dir, env_file)
    }
}

/// What `bulk_import` reports, as far as the CLI prints it.
#[derive(Debug, Deserialize)]
struct Report {
    rows: u64,
    created: u64,
    updated: u64,
    skipped: Vec<RowProblem>,
    failed: Vec<RowProblem>,
    batches: u64,
    /// Batches done before this run (resumed from a checkpoint).
    #[serde(default)]
    resumed_batches: u64,
    seconds: f64,
    records_per_second: f64,
}

#[derive(Debug, Deserialize)]
struct RowProblem {
    row: u64,
    reason: String,
}

pub(super) async fn run(manager: &Manager, what: ImportCommand) -> anyhow::Result<ExitCode> {
    let ImportCommand::Airtable {
        base,
        table,
        file,
        keys,
        mapping,
        typecast,
        restart,
        json,
    } = what
    else {
        anyhow::bail!("a client's config is imported without plugins");
    };
    let tool = tool_name(manager, "airtable", "bulk_import")?;
    let mut map = serde_json::Map::new();
    for pair in &mapping {
        let (column, field) = pair
            .split_once('=')
            .with_context(|| format!("--map `{pair}` must be COLUMN=FIELD"))?;
        map.insert(column.to_owned(), field.into());
    }
    // A relative path means the current folder, as users expect on a command line.
    let path = std::path::absolute(&file).unwrap_or_else(|_| PathBuf::from(&file));
    let mut args = serde_json::Map::new();
    args.insert("base".into(), base.into());
    args.insert("table".into(), table.into());
    args.insert("path".into(), serde_json::to_value(&path)?);
    args.insert("key_fields".into(), keys.into());
    args.insert("typecast".into(), typecast.into());
    args.insert("restart".into(), restart.into());
    if !map.is_empty() {
        args.insert("mapping".into(), map.into());
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{bar:40}] {pos}/{len} rows  {per_sec}  eta {eta}  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let sink_bar = bar.clone();
    let cx = ToolContext::detached().with_progress_sink(Arc::new(move |done, total, _| {
        if let Some(total) = total {
            sink_bar.set_length(total as u64);
        }
        sink_bar.set_position(done as u64);
    }));
    let result = manager.call(&tool, Some(args), cx).await;
    bar.finish_and_clear();
    let failed = result.is_error == Some(true);
    match (&result.structured_content, json) {
        (Some(report), true) => println!("{}", serde_json::to_string_pretty(report)?),
        (Some(report), false) => {
            let report = Report::deserialize(report)
                .context("the import report does not have the expected shape")?;
            print_report(&report);
        }
        (None, _) => {
            for block in &result.content {
                if let Some(text) = block.as_text() {
                    eprintln!("{}", text.text);
                }
            }
        }
    }
    Ok(exit_code(failed))
}

fn print_report(report: &Report) {
    println!(
        "{} rows: {} created, {} updated, {} skipped, {} failed ({} batches{}, {:.1} s, {:.1} records/s)",
        report.rows,
        report.created,
        report.updated,
        report.skipped.len(),
        report.failed.len(),
        report.batches,
        match report.resumed_batches {
            0 => String::new(),
            r => format!(", {r} done before this run"),
        },
        report.seconds,
        report.records_per_second,
    );
    for (label, problems) in [("skipped", &report.skipped), ("failed", &report.failed)] {
        for p in problems {
            println!("  row {} {label}: {}", p.row, p.reason);
        }
    }
}
