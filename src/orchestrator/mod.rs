//! What plugboard does with its provider agents.
//!
//! - [`Orchestrator::ask`] (`ask.rs`): one prompt to a named provider or to the one the
//!   routing rules pick (`routing.rs`), with the plugins' tools: the tool-calling loop runs the
//!   model's calls through the plugin manager and feeds the results back until the model
//!   answers or the step limit is reached.
//! - [`Orchestrator::consensus`] (`consensus.rs`): the same prompt to several providers at
//!   once, each with its own deadline; every answer that arrived is kept, and a synthesizer
//!   (a provider, or the client's own model through MCP sampling) writes the synthesis.
//!
//! Every provider request goes through [`Orchestrator::turn`]: a bound on how many run at
//! once, the provider's deadline, cancellation, and the per-provider counters.

mod ask;
mod consensus;
mod routing;

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use tokio::{sync::Semaphore, time::Instant};

pub use ask::{Answer, AskRequest, ToolStep};
pub use consensus::{Consensus, ConsensusRequest, Opinion, Stance, Synthesis, render};
pub use routing::{Routing, Rule};

use crate::{
    agents::{Agent, AgentError, Agents, Conversation, Reply, StreamEvent, stats::Outcome},
    plugin::{TextSink, ToolContext, Toolbox},
};

/// How the orchestrator behaves; from the agents plugin's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Most model turns in one tool-calling loop.
    pub max_steps: usize,
    /// Most tokens one answer may use.
    pub max_tokens: u32,
    /// Most provider requests in flight at once, across every caller.
    pub max_concurrent: usize,
    /// The provider that writes consensus syntheses; `None`: the client's model (sampling).
    pub synthesizer: Option<String>,
    /// Longest tool result fed back to a model, in characters.
    pub max_tool_result_chars: usize,
    /// Offer the model only tools marked read-only: write tools called from inside `ask`
    /// would bypass the confirmation a client asks its user for.
    pub read_only_tools: bool,
    pub routing: Routing,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_steps: 8,
            max_tokens: 4096,
            max_concurrent: 16,
            synthesizer: None,
            max_tool_result_chars: 20_000,
            read_only_tools: true,
            routing: Routing::default(),
        }
    }
}

pub struct Orchestrator {
    pub agents: Arc<Agents>,
    /// The plugins' tools, for the tool-calling loop.
    toolbox: Toolbox,
    /// Bounds provider requests in flight: many `ask`s and consensus fan-outs at once must
    /// not open unbounded connections.
    permits: Arc<Semaphore>,
    pub settings: Settings,
}

impl Orchestrator {
    pub fn new(agents: Arc<Agents>, toolbox: Toolbox, settings: Settings) -> Self {
        Self {
            agents,
            toolbox,
            permits: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
            settings,
        }
    }

    /// One request to one provider: waits for a permit, streams into `sink` when given (else
    /// asks for the whole answer), stops at `deadline` or when `cx` is cancelled, and counts.
    pub async fn turn(
        &self,
        agent: &Arc<dyn Agent>,
        conversation: &Conversation,
        deadline: Duration,
        cx: &ToolContext,
        sink: Option<&TextSink>,
    ) -> Result<Reply, AgentError> {
        let provider = agent.provider().to_owned();
        let started = Instant::now();
        let work = async {
            let _permit = self.permits.acquire().await;
            match sink {
                None => agent.send(conversation).await,
                Some(sink) => {
                    let mut events = agent.stream(conversation);
                    while let Some(event) = events.next().await {
                        match event? {
                            StreamEvent::Text(text) => sink(&text),
                            StreamEvent::Reasoning(_) => {}
                            StreamEvent::Done(reply) => return Ok(reply),
                        }
                    }
                    Err(AgentError::Stream {
                        provider: provider.clone(),
                        message: "the stream ended without an answer".into(),
                    })
                }
            }
        };
        let timed_out = || AgentError::Timeout {
            provider: provider.clone(),
            after: deadline,
        };
        let result = tokio::select! {
            r = tokio::time::timeout(deadline, work) => r.unwrap_or_else(|_| Err(timed_out())),
            _ = cx.cancellation().cancelled() => Err(timed_out()),
        };
        let outcome = match &result {
            Ok(reply) => Outcome::Answered(reply.usage, self.agents.cost(&provider, reply.usage)),
            Err(AgentError::Timeout { .. }) => Outcome::TimedOut,
            Err(_) => Outcome::Failed,
        };
        let (label, usage) = match &outcome {
            Outcome::Answered(usage, _) => ("ok", Some(*usage)),
            Outcome::TimedOut => ("timeout", None),
            Outcome::Failed => ("error", None),
        };
        // The configured model: a bounded label (the reply may name a dated snapshot).
        let model = agent.model().to_owned();
        metrics::counter!("plugboard_provider_requests_total",
            "provider" => provider.clone(), "model" => model.clone(), "outcome" => label)
        .increment(1);
        metrics::histogram!("plugboard_provider_request_duration_seconds",
            "provider" => provider.clone(), "model" => model.clone())
        .record(started.elapsed().as_secs_f64());
        if let Some(usage) = usage {
            for (direction, tokens) in [
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
            ] {
                metrics::counter!("plugboard_provider_tokens_total",
                    "provider" => provider.clone(), "model" => model.clone(), "direction" => direction)
                .increment(tokens);
            }
        }
        self.agents
            .stats
            .record(&provider, started.elapsed(), outcome);
        if let Some(spent) = self.agents.stats.cost(&provider) {
            // A running total in dollars: the metrics crate's counters count whole units.
            metrics::gauge!("plugboard_provider_cost_usd",
                "provider" => provider.clone(), "model" => model.clone())
            .set(spent);
        }
        match &result {
            Ok(reply) => tracing::info!(
                provider = %provider,
                model = %reply.model,
                ms = started.elapsed().as_millis() as u64,
                input_tokens = reply.usage.input_tokens,
                output_tokens = reply.usage.output_tokens,
                "provider answered"
            ),
            Err(e) => tracing::warn!(provider = %provider, error = %e, "provider failed"),
        }
        result
    }

    /// A message for when no provider can be used.
    pub fn none_available(&self) -> String {
        let reasons: Vec<String> = self
            .agents
            .statuses()
            .iter()
            .filter_map(|s| Some(format!("{} ({})", s.name, s.reason.as_deref()?)))
            .collect();
        format!(
            "no provider is available: {}. Set a provider's key (and model) in the environment \
             or .env, then reload (SIGHUP) or restart; `plugboard check` shows what is missing",
            reasons.join(", ")
        )
    }
}
