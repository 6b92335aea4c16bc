//! `plugboard check`: which plugins are ready, which variables are missing, and the AI
//! providers; with `--online`, each running plugin's own check against its service
//! ([`crate::plugin::Plugin::verify`]): one line per plugin or provider, `ok` or
//! `FAILED: what to fix`.

use std::{process::ExitCode, time::Duration};

use clap::Args;
use serde::Deserialize;

use super::exit_code;
use crate::plugin::{Finding, Manager, Status, ToolContext, Verdict};

#[derive(Debug, Args)]
pub(super) struct CheckArgs {
    /// Also try each key against its service: the token accepted, the scopes the tools need,
    /// each AI provider's model offered. Exit status 1 if one fails.
    #[arg(long)]
    online: bool,
    /// Seconds the online checks may take, all together.
    #[arg(long, default_value_t = 60.0, requires = "online")]
    online_timeout: f64,
}

pub(super) async fn run(manager: &Manager, args: CheckArgs) -> ExitCode {
    let statuses = manager.statuses();
    let mut healthy = true;
    for s in &statuses {
        println!("{}: {}", s.name, s.status);
        for var in &s.env {
            let state = if var.set {
                "set"
            } else if var.required {
                "MISSING (required)"
            } else {
                "not set (optional)"
            };
            let secret = if var.secret { ", secret" } else { "" };
            println!("  {:28} {state}{secret}  {}", var.name, var.description);
        }
        if matches!(
            s.state,
            Status::Failed(_) | Status::Unconfigured(_) | Status::Uninstalled(_)
        ) {
            healthy = false;
        }
    }
    if let Some(report) = providers(manager).await {
        print_providers(&report);
    }
    println!("{} tools published", manager.tools().len());
    if args.online {
        let limit = Duration::try_from_secs_f64(args.online_timeout)
            .ok()
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(60));
        let checked = manager.verify(limit).await;
        healthy &= print_online(&checked);
    }
    exit_code(!healthy)
}

/// One line per finding: `<plugin>[/<subject>]  ok (…)` or `… FAILED: …`. Whether all passed.
fn print_online(checked: &[(String, Vec<Finding>)]) -> bool {
    let lines: Vec<(String, &Verdict)> = checked
        .iter()
        .flat_map(|(plugin, findings)| {
            findings.iter().map(move |f| {
                let name = if f.subject.is_empty() {
                    plugin.clone()
                } else {
                    format!("{plugin}/{}", f.subject)
                };
                (name, &f.verdict)
            })
        })
        .collect();
    println!("Online:");
    if lines.is_empty() {
        println!("  nothing to check: no running plugin talks to a service that checks keys");
    }
    let width = lines.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, verdict) in &lines {
        match verdict {
            Verdict::Ok(detail) => println!("  {name:width$}  ok ({detail})"),
            Verdict::Failed(detail) => println!("  {name:width$}  FAILED: {detail}"),
        }
    }
    !lines
        .iter()
        .any(|(_, verdict)| matches!(verdict, Verdict::Failed(_)))
}

/// The agents plugin's providers resource, as far as `check` shows it.
#[derive(Debug, Deserialize)]
struct ProvidersReport {
    providers: Vec<Provider>,
}

#[derive(Debug, Deserialize)]
struct Provider {
    name: String,
    model: Option<String>,
    /// Why it is not available; absent when it is.
    reason: Option<String>,
}

/// The AI providers, as the agents plugin reports them; `None` without that plugin.
async fn providers(manager: &Manager) -> Option<ProvidersReport> {
    let uri = crate::plugins::agents::PROVIDERS_URI;
    let read = manager
        .read_resource(uri, ToolContext::detached())
        .await
        .ok()?;
    let text = read.contents.first().and_then(|c| match c {
        rmcp::model::ResourceContents::TextResourceContents { text, .. } => Some(text),
        _ => None,
    })?;
    match serde_json::from_str(text) {
        Ok(report) => Some(report),
        Err(e) => {
            tracing::warn!(error = %e, "the providers report does not have the expected shape");
            None
        }
    }
}

fn print_providers(report: &ProvidersReport) {
    println!("AI providers:");
    for p in &report.providers {
        match &p.reason {
            None => println!(
                "  {:10} available ({})",
                p.name,
                p.model.as_deref().unwrap_or("?")
            ),
            Some(reason) => println!("  {:10} not available: {reason}", p.name),
        }
    }
}
