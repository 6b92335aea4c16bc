//! `plugboard consensus`: several AI models at once, each answer streamed, then the synthesis.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::{clean, stream, tool_name};
use crate::{orchestrator::Consensus, plugin::Manager};

#[derive(Debug, Args)]
pub(super) struct ConsensusArgs {
    /// The question every model answers.
    prompt: String,
    /// Which providers to ask (comma-separated; default: every available one).
    #[arg(long, value_delimiter = ',')]
    providers: Vec<String>,
    /// PROVIDER=for|against|neutral (repeatable).
    #[arg(long = "stance", value_name = "PROVIDER=STANCE")]
    stances: Vec<String>,
    /// Seconds each provider may take.
    #[arg(long)]
    timeout: Option<f64>,
    /// Print the whole result as JSON at the end instead of streaming.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(manager: &Manager, c: ConsensusArgs) -> anyhow::Result<ExitCode> {
    let mut stances = serde_json::Map::new();
    for pair in &c.stances {
        let (provider, stance) = pair
            .split_once('=')
            .with_context(|| format!("--stance `{pair}` must be PROVIDER=STANCE"))?;
        stances.insert(provider.trim().to_owned(), stance.trim().into());
    }
    let tool = tool_name(manager, "agents", "consensus")?;
    let mut args = serde_json::Map::new();
    args.insert("prompt".into(), c.prompt.into());
    args.insert("providers".into(), clean(&c.providers).into());
    args.insert("stances".into(), stances.into());
    if let Some(timeout) = c.timeout {
        args.insert("timeout_secs".into(), timeout.into());
    }
    stream::call(manager, &tool, args, c.json, |report: &Consensus| {
        if let Some(e) = &report.synthesis_error {
            println!("── no synthesis ──\n{e}\n");
        }
        println!(
            "{} of {} answered; agreed: {}; {} ms",
            report.answered,
            report.opinions.len(),
            if report.agreed.is_empty() {
                "none".to_owned()
            } else {
                report.agreed.join(", ")
            },
            report.wall_ms
        );
    })
    .await
}
