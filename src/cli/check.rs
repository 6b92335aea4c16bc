//! `plugboard check`: which plugins are ready, which variables are missing, and the AI
//! providers.

use std::process::ExitCode;

use serde::Deserialize;

use super::exit_code;
use crate::plugin::{Manager, Status, ToolContext};

pub(super) async fn run(manager: &Manager) -> ExitCode {
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
    exit_code(!healthy)
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
