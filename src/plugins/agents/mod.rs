//! `agents`: the provider agents as tools. `ask` sends one prompt to a provider (named, or
//! picked by the routing rules) and lets its model use the other plugins' tools; `consensus`
//! asks several providers at once and synthesizes their answers. The resource
//! `plugboard://agents/providers` shows which providers are available and their counters;
//! `plugboard check --online` holds each one's key and model against its model list
//! (`verify.rs`).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use rmcp::model::{CallToolResult, ContentBlock, Resource, ResourceContents};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::{
    agents::{Agents, ProviderConfig, ProviderEnv},
    net::RetryPolicy,
    orchestrator::{self, AskRequest, ConsensusRequest, Orchestrator, Routing, Stance},
    plugin::{
        Finding, Hints, Plugin, PluginError, PluginSetup, ResourceDef, ToolContext, ToolDef,
        ToolError,
    },
};

mod models;
mod verify;

pub const PROVIDERS_URI: &str = "plugboard://agents/providers";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    /// Offer `consensus` at all.
    consensus: bool,
    /// The provider that writes consensus syntheses; empty: the client's model (sampling).
    synthesizer: String,
    /// Seconds a provider may take for one answer (per provider: `timeout_secs`).
    timeout_secs: f64,
    /// Seconds one `ask` may take in all, tool calls included.
    ask_timeout_secs: f64,
    max_steps: usize,
    max_tokens: u32,
    max_concurrent: usize,
    /// Which tools a model may call in `ask`: `read-only` (default) or `all`. Only
    /// read-only tools by default: a model calling write tools inside `ask` would bypass the
    /// confirmation the client asks its user for.
    agent_tools: AgentTools,
    /// Retries after a 429/5xx (hints honoured up to `max_retry_wait_secs`).
    max_retries: u32,
    max_retry_wait_secs: f64,
    providers: BTreeMap<String, ProviderConfig>,
    routing: Routing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum AgentTools {
    ReadOnly,
    All,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            consensus: true,
            synthesizer: String::new(),
            timeout_secs: 120.0,
            ask_timeout_secs: 600.0,
            max_steps: 8,
            max_tokens: 4096,
            max_concurrent: 16,
            agent_tools: AgentTools::ReadOnly,
            max_retries: 2,
            max_retry_wait_secs: 60.0,
            providers: BTreeMap::new(),
            routing: Routing::default(),
        }
    }
}

pub fn init(setup: PluginSetup) -> BoxFuture<'static, Result<Arc<dyn Plugin>, PluginError>> {
    Box::pin(async move {
        let settings: Settings = setup.settings()?;
        let secs = |v: f64, name: &str| {
            Duration::try_from_secs_f64(v)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| PluginError::Init(format!("setting {name} must be > 0")))
        };
        let retry = RetryPolicy {
            max_retries: settings.max_retries,
            max_wait: secs(settings.max_retry_wait_secs, "max_retry_wait_secs")?,
            ..RetryPolicy::default()
        };
        // Only the variables the manifest declares: `check` reports them and a reload sees
        // them change. A custom provider's `api_key_env` must be declared too.
        let env = ProviderEnv::new(
            declared_env(&setup.manifest_source),
            setup.env.iter().map(|(k, v)| (k.clone(), v.clone())),
        );
        let agents = Agents::build(
            &settings.providers,
            &env,
            retry,
            secs(settings.timeout_secs, "timeout_secs")?,
        )
        .map_err(PluginError::Init)?;
        let mut synthesizer =
            Some(settings.synthesizer.trim().to_owned()).filter(|s| !s.is_empty());
        if let Some(name) = &synthesizer
            && agents.get(name).is_none()
        {
            tracing::warn!(
                synthesizer = %name,
                "{}; consensus will use the client's model for syntheses",
                agents.why_unavailable(name)
            );
            synthesizer = None;
        }
        for status in agents.statuses() {
            match &status.reason {
                None => {
                    tracing::info!(provider = %status.name, model = ?status.model, "provider available")
                }
                Some(reason) => {
                    tracing::debug!(provider = %status.name, %reason, "provider not available")
                }
            }
        }
        let orchestrator = Orchestrator::new(
            Arc::new(agents),
            setup.toolbox(),
            orchestrator::Settings {
                max_steps: settings.max_steps.max(1),
                max_tokens: settings.max_tokens.max(1),
                max_concurrent: settings.max_concurrent.max(1),
                synthesizer,
                read_only_tools: settings.agent_tools == AgentTools::ReadOnly,
                routing: settings.routing,
                ..orchestrator::Settings::default()
            },
        );
        let orchestrator = Arc::new(orchestrator);
        // The host's model service for the other plugins (the organizer's categories).
        setup.provide_models(Arc::new(models::OrchestratorModels(orchestrator.clone())));
        Ok(Arc::new(AgentsPlugin {
            orchestrator,
            consensus: settings.consensus,
            ask_timeout: secs(settings.ask_timeout_secs, "ask_timeout_secs")?,
        }) as Arc<dyn Plugin>)
    })
}

/// The names of the manifest's `[env.*]` tables.
fn declared_env(manifest: &str) -> Vec<String> {
    #[derive(Deserialize)]
    struct Declared {
        #[serde(default)]
        env: BTreeMap<String, toml::Value>,
    }
    toml::from_str::<Declared>(manifest)
        .map(|d| d.env.into_keys().collect())
        .unwrap_or_default()
}

struct AgentsPlugin {
    orchestrator: Arc<Orchestrator>,
    consensus: bool,
    ask_timeout: Duration,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AskArgs {
    /// What to ask.
    prompt: String,
    /// A provider's name, or `auto` for the routing rules' pick.
    #[serde(default)]
    provider: Option<String>,
    /// Let the model call plugboard's other tools (read-only ones unless configured).
    #[serde(default)]
    use_tools: bool,
    /// A system prompt for the model.
    #[serde(default)]
    system: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ConsensusArgs {
    /// The question every model answers.
    prompt: String,
    /// Which providers to ask (default: every available one).
    #[serde(default)]
    providers: Vec<String>,
    /// Stance per provider name: `for`, `against` or `neutral` (default).
    #[serde(default)]
    stances: BTreeMap<String, Stance>,
    /// Seconds each provider may take (default: its configured timeout); a late one is reported.
    #[serde(default)]
    #[schemars(range(min = 0.1, max = 3600))]
    timeout_secs: Option<f64>,
}

impl Plugin for AgentsPlugin {
    fn tools(&self) -> Vec<ToolDef> {
        let agents = &self.orchestrator.agents;
        let available = agents.available();
        let mut tools = Vec::new();
        let listed = if available.is_empty() {
            "none is configured".to_owned()
        } else {
            available.join(", ")
        };
        let o = self.orchestrator.clone();
        let ask_hints = if o.settings.read_only_tools {
            Hints::read_only().open_world()
        } else {
            Hints::additive().open_world()
        };
        if !available.is_empty() {
            tools.push(
                ToolDef::new(
                    "ask",
                    &format!(
                        "Ask another AI model (providers: {listed}). With `use_tools` it may \
                         call plugboard's other tools before it answers."
                    ),
                    ask_hints,
                    move |args: AskArgs, cx: ToolContext| {
                        let o = o.clone();
                        async move { ask(&o, args, cx).await }
                    },
                )
                .with_title("Ask a model")
                .with_output::<orchestrator::Answer>()
                .with_timeout(self.ask_timeout),
            );
        }
        if self.consensus {
            let o = self.orchestrator.clone();
            let longest = agents
                .available()
                .iter()
                .map(|n| agents.timeout(n))
                .max()
                .unwrap_or(Duration::from_secs(120));
            let mut tool = ToolDef::new(
                "consensus",
                &format!(
                    "Ask several AI models (providers: {listed}) the same question at once: \
                     every answer, a synthesis and which agreed. A slow or failing model is \
                     reported and the others' answers kept. Each may be given a stance."
                ),
                Hints::read_only().open_world(),
                move |args: ConsensusArgs, cx: ToolContext| {
                    let o = o.clone();
                    async move { consensus(&o, args, cx).await }
                },
            )
            .with_title("Consensus of several models")
            .with_output::<orchestrator::Consensus>()
            // Each provider's deadline, then the synthesis; the per-call timeout_secs
            // argument may ask for longer, up to an hour.
            .with_timeout(longest * 2 + Duration::from_secs(3600));
            // With fewer than two providers a consensus is only worth offering to clients
            // whose own model can join in (sampling).
            if available.len() < 2 {
                tool = tool.for_sampling_clients_only();
            }
            tools.push(tool);
        }
        tools
    }

    /// Each available provider's key and model, against its model list.
    fn verify(&self) -> BoxFuture<'static, Vec<Finding>> {
        let o = self.orchestrator.clone();
        Box::pin(async move { verify::verify(&o.agents).await })
    }

    fn resources(&self) -> Vec<ResourceDef> {
        let o = self.orchestrator.clone();
        vec![ResourceDef::new(
            Resource::new(PROVIDERS_URI, "providers")
                .with_title("AI providers")
                .with_description(
                    "The configured AI providers: which are available (and if not, what to \
                     set), their models and prices, and counters per provider (requests, \
                     errors, timeouts, tokens, latency, cost), with the totals",
                )
                .with_mime_type("application/json"),
            move |_| {
                let o = o.clone();
                async move {
                    let stats = o.agents.stats.snapshot();
                    let providers: Vec<serde_json::Value> = o
                        .agents
                        .statuses()
                        .iter()
                        .map(|s| {
                            let mut v = serde_json::to_value(s).unwrap_or_default();
                            v["stats"] = serde_json::to_value(
                                stats.get(&s.name).cloned().unwrap_or_default(),
                            )
                            .unwrap_or_default();
                            v
                        })
                        .collect();
                    let priced = stats.values().filter_map(|s| s.cost_usd);
                    let body = serde_json::json!({
                        "providers": providers,
                        "synthesizer": o.settings.synthesizer.clone().unwrap_or_else(|| "client".into()),
                        "totals": {
                            "requests": stats.values().map(|s| s.requests).sum::<u64>(),
                            "input_tokens": stats.values().map(|s| s.input_tokens).sum::<u64>(),
                            "output_tokens": stats.values().map(|s| s.output_tokens).sum::<u64>(),
                            // Of the providers whose model has a price.
                            "cost_usd": priced.sum::<f64>(),
                        },
                    });
                    Ok(vec![
                        ResourceContents::text(
                            serde_json::to_string_pretty(&body).unwrap_or_default(),
                            PROVIDERS_URI,
                        )
                        .with_mime_type("application/json"),
                    ])
                }
            },
        )]
    }
}

async fn ask(
    o: &Orchestrator,
    args: AskArgs,
    cx: ToolContext,
) -> Result<CallToolResult, ToolError> {
    if args.prompt.trim().is_empty() {
        return Err(ToolError::InvalidArguments("prompt is empty".into()));
    }
    let request = AskRequest {
        prompt: args.prompt,
        provider: args.provider,
        use_tools: args.use_tools,
        system: args.system,
        response_schema: None,
    };
    let answer = o.ask(&request, &cx).await.map_err(ToolError::Failed)?;
    let mut text = answer.answer.clone();
    if let Some(stopped) = &answer.stopped {
        text.push_str(&format!("\n\n[{stopped}]"));
    }
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content =
        Some(serde_json::to_value(&answer).map_err(|e| ToolError::Failed(e.to_string()))?);
    Ok(result)
}

async fn consensus(
    o: &Orchestrator,
    args: ConsensusArgs,
    cx: ToolContext,
) -> Result<CallToolResult, ToolError> {
    if args.prompt.trim().is_empty() {
        return Err(ToolError::InvalidArguments("prompt is empty".into()));
    }
    let timeout = match args.timeout_secs {
        Some(s) => Some(
            Duration::try_from_secs_f64(s)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| ToolError::InvalidArguments("timeout_secs must be > 0".into()))?,
        ),
        None => None,
    };
    for name in args.stances.keys() {
        if !args.providers.is_empty() && !args.providers.contains(name) {
            return Err(ToolError::InvalidArguments(format!(
                "stances names `{name}`, which is not in providers"
            )));
        }
    }
    let request = ConsensusRequest {
        prompt: args.prompt,
        providers: args.providers,
        stances: args.stances,
        timeout,
    };
    let outcome = o
        .consensus(&request, &cx)
        .await
        .map_err(ToolError::Failed)?;
    let text = orchestrator::render(&outcome);
    let mut result = if outcome.answered == 0 {
        CallToolResult::error(vec![ContentBlock::text(format!(
            "no provider answered.\n\n{text}"
        ))])
    } else {
        CallToolResult::success(vec![ContentBlock::text(text)])
    };
    result.structured_content =
        Some(serde_json::to_value(&outcome).map_err(|e| ToolError::Failed(e.to_string()))?);
    Ok(result)
}
