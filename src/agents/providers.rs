//! Which providers exist and which are available: configuration (model, base URL, key) from
//! the agents plugin's settings and the variables its manifest declares. A provider without
//! its key, or without a model name, is simply not available, and says why.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::{Agent, Stats, anthropic::Anthropic, gemini::Gemini, openai::OpenAi};
use crate::net::{RetryPolicy, SecretString};

/// The variables the agents' manifest declares, and the values of those that are set. Only
/// declared variables are read: `plugboard check` reports them and a reload sees them change.
#[derive(Default)]
pub struct ProviderEnv {
    declared: BTreeSet<String>,
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for ProviderEnv {
    // Values can be keys: only the names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderEnv")
            .field("declared", &self.declared)
            .finish_non_exhaustive()
    }
}

impl ProviderEnv {
    /// `declared`: the manifest's `[env.*]` names; `values`: those of them that are set
    /// (others are ignored).
    pub fn new(
        declared: impl IntoIterator<Item = String>,
        values: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        let declared: BTreeSet<String> = declared.into_iter().collect();
        let values = values
            .into_iter()
            .filter(|(k, v)| declared.contains(k) && !v.trim().is_empty())
            .collect();
        Self { declared, values }
    }

    fn declares(&self, name: &str) -> bool {
        self.declared.contains(name)
    }

    fn get(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }

    fn secret(&self, name: &str) -> Option<SecretString> {
        self.values
            .get(name)
            .map(|v| SecretString::from(v.as_str()))
    }
}

/// A wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// OpenAI Chat Completions and every compatible server (Ollama, vLLM, OpenRouter).
    Openai,
    Anthropic,
    Gemini,
    /// OpenAI-compatible, with `reasoning_content` carried back on tool-call turns.
    Deepseek,
}

/// One provider as configured (`[settings.providers.<name>]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Default: the provider's name, when it is one of the four.
    pub format: Option<Format>,
    /// The model to ask. `<NAME>_MODEL` in the environment wins.
    pub model: Option<String>,
    /// Default: `<NAME>_BASE_URL`, else the provider's real API.
    pub base_url: Option<String>,
    /// The variable holding the key. Default: `<NAME>_API_KEY` (Gemini also `GOOGLE_API_KEY`).
    /// Empty for servers that need no key (a local Ollama).
    pub api_key_env: Option<String>,
    /// Whether the model may be given tools (default true).
    #[serde(default = "yes")]
    pub tools: bool,
    /// Whether an answer wanted as JSON is asked for with the provider's own structured
    /// output (`response_format`, `responseSchema`; default true). False for a compatible
    /// server that refuses the field: the prompt still asks for the JSON.
    #[serde(default = "yes")]
    pub json_schema: bool,
    /// Seconds one answer may take before it is given up (default: the plugin's).
    pub timeout_secs: Option<f64>,
    /// What each model costs, by model name: what `ask` and `consensus` report as the cost of
    /// an answer, and the totals in the providers resource and the metrics.
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
}

/// A model's price in US dollars per million tokens, as the provider publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per million input (prompt) tokens.
    pub input: f64,
    /// Per million output (completion) tokens, reasoning included.
    pub output: f64,
}

impl Price {
    /// What `usage` costs at this price, in US dollars.
    pub fn cost(&self, usage: super::Usage) -> f64 {
        (usage.input_tokens as f64 * self.input + usage.output_tokens as f64 * self.output)
            / 1_000_000.0
    }
}

fn yes() -> bool {
    true
}

/// Where each of the four providers is reached by default, following its official SDK.
struct Known {
    name: &'static str,
    format: Format,
    keys: &'static [&'static str],
    base_url: &'static str,
}

const KNOWN: &[Known] = &[
    Known {
        name: "openai",
        format: Format::Openai,
        keys: &["OPENAI_API_KEY"],
        base_url: "https://api.openai.com/v1",
    },
    Known {
        name: "anthropic",
        format: Format::Anthropic,
        keys: &["ANTHROPIC_API_KEY"],
        base_url: "https://api.anthropic.com",
    },
    Known {
        name: "gemini",
        format: Format::Gemini,
        keys: &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
        base_url: "https://generativelanguage.googleapis.com",
    },
    Known {
        name: "deepseek",
        format: Format::Deepseek,
        keys: &["DEEPSEEK_API_KEY"],
        base_url: "https://api.deepseek.com/v1",
    },
];

/// The variable a user sets to give `provider` its key (for error advice).
pub fn key_variable(provider: &str) -> String {
    match KNOWN.iter().find(|k| k.name == provider) {
        Some(known) => known.keys.join(" or "),
        None => format!("the API key of provider `{provider}`"),
    }
}

/// A provider's state, as `plugboard check` and the stats resource show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProviderStatus {
    pub name: String,
    pub format: Format,
    pub model: Option<String>,
    pub available: bool,
    /// Why it is not available (what to set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The model's price (`settings.providers.<name>.prices`); absent: its cost is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
}

/// The configured providers and the agents of the available ones.
pub struct Agents {
    agents: BTreeMap<String, Arc<dyn Agent>>,
    statuses: Vec<ProviderStatus>,
    timeouts: BTreeMap<String, Duration>,
    pub stats: Stats,
}

impl Agents {
    /// Build every configured provider from the declared variables in `env`.
    /// The four known providers are always considered, configured or not.
    pub fn build(
        configs: &BTreeMap<String, ProviderConfig>,
        env: &ProviderEnv,
        retry: RetryPolicy,
        default_timeout: Duration,
    ) -> Result<Self, String> {
        let mut names: Vec<String> = KNOWN.iter().map(|k| k.name.to_owned()).collect();
        for name in configs.keys() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let mut agents = BTreeMap::new();
        let mut statuses = Vec::new();
        let mut timeouts = BTreeMap::new();
        for name in names {
            let config = configs.get(&name);
            let known = KNOWN.iter().find(|k| k.name == name);
            let format = config
                .and_then(|c| c.format)
                .or(known.map(|k| k.format))
                .ok_or_else(|| {
                    format!(
                        "provider `{name}` needs a format (openai, anthropic, gemini, deepseek)"
                    )
                })?;
            let upper = name.to_uppercase().replace('-', "_");
            let model = env
                .get(&format!("{upper}_MODEL"))
                .or_else(|| config.and_then(|c| c.model.clone()))
                .filter(|m| !m.trim().is_empty());
            let base_url = env
                .get(&format!("{upper}_BASE_URL"))
                .or_else(|| config.and_then(|c| c.base_url.clone()))
                .or_else(|| known.map(|k| k.base_url.to_owned()));
            let key_vars: Vec<String> = match config.and_then(|c| c.api_key_env.clone()) {
                Some(var) if var.is_empty() => Vec::new(),
                Some(var) => vec![var],
                None => match known {
                    Some(k) => k.keys.iter().map(|s| s.to_string()).collect(),
                    None => vec![format!("{upper}_API_KEY")],
                },
            };
            let (declared, undeclared): (Vec<&String>, Vec<&String>) =
                key_vars.iter().partition(|v| env.declares(v));
            let key = declared.iter().find_map(|v| env.secret(v));
            let reason = if !key_vars.is_empty() && declared.is_empty() {
                Some(format!(
                    "{} is not read: declare [env.{}] in the agents manifest (plugins/agents/plugin.toml)",
                    undeclared
                        .iter()
                        .map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(" or "),
                    undeclared.first().map(|v| v.as_str()).unwrap_or_default()
                ))
            } else if !key_vars.is_empty() && key.is_none() {
                Some(format!(
                    "no key: set {}",
                    declared
                        .iter()
                        .map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ))
            } else if model.is_none() {
                Some(format!(
                    "no model: set {upper}_MODEL or settings.providers.{name}.model"
                ))
            } else if base_url.is_none() {
                Some(format!(
                    "no base URL: set {upper}_BASE_URL or settings.providers.{name}.base_url"
                ))
            } else {
                None
            };
            let price = model
                .as_ref()
                .and_then(|m| config?.prices.get(m).copied())
                .filter(|p| p.input >= 0.0 && p.output >= 0.0);
            statuses.push(ProviderStatus {
                name: name.clone(),
                format,
                model: model.clone(),
                available: reason.is_none(),
                reason: reason.clone(),
                price,
            });
            let (Some(model), Some(base_url), None) = (model, base_url, reason) else {
                continue;
            };
            let tools = config.is_none_or(|c| c.tools);
            let json_schema = config.is_none_or(|c| c.json_schema);
            let agent: Arc<dyn Agent> = match format {
                Format::Openai => Arc::new(
                    OpenAi::new(&name, &model, &base_url, key, retry)
                        .with_tools(tools)
                        .with_json_schema(json_schema),
                ),
                Format::Deepseek => Arc::new(
                    OpenAi::new(&name, &model, &base_url, key, retry)
                        .deepseek()
                        .with_tools(tools)
                        .with_json_schema(json_schema),
                ),
                Format::Anthropic => Arc::new(Anthropic::new(&name, &model, &base_url, key, retry)),
                Format::Gemini => Arc::new(
                    Gemini::new(&name, &model, &base_url, key, retry).with_json_schema(json_schema),
                ),
            };
            let timeout = config
                .and_then(|c| c.timeout_secs)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .filter(|d| !d.is_zero())
                .unwrap_or(default_timeout);
            timeouts.insert(name.clone(), timeout);
            agents.insert(name, agent);
        }
        Ok(Self {
            agents,
            statuses,
            timeouts,
            stats: Stats::default(),
        })
    }

    /// A set of ready-made agents (tests, benchmarks).
    pub fn from_agents(list: Vec<Arc<dyn Agent>>, timeout: Duration) -> Self {
        let mut agents = BTreeMap::new();
        let mut statuses = Vec::new();
        let mut timeouts = BTreeMap::new();
        for agent in list {
            let name = agent.provider().to_owned();
            statuses.push(ProviderStatus {
                name: name.clone(),
                format: Format::Openai,
                model: Some(agent.model().to_owned()),
                available: true,
                reason: None,
                price: None,
            });
            timeouts.insert(name.clone(), timeout);
            agents.insert(name, agent);
        }
        Self {
            agents,
            statuses,
            timeouts,
            stats: Stats::default(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Agent>> {
        self.agents.get(name)
    }

    /// The names of the available providers, in configuration order.
    pub fn available(&self) -> Vec<String> {
        self.agents.keys().cloned().collect()
    }

    pub fn statuses(&self) -> &[ProviderStatus] {
        &self.statuses
    }

    /// The price of `provider`'s model, when the price table has it.
    pub fn price(&self, provider: &str) -> Option<Price> {
        self.statuses
            .iter()
            .find(|s| s.name == provider)
            .and_then(|s| s.price)
    }

    /// What `usage` cost on `provider`, when its model has a price.
    pub fn cost(&self, provider: &str, usage: super::Usage) -> Option<f64> {
        self.price(provider).map(|p| p.cost(usage))
    }

    /// How long `provider` may take to answer.
    pub fn timeout(&self, provider: &str) -> Duration {
        self.timeouts
            .get(provider)
            .copied()
            .unwrap_or(Duration::from_secs(120))
    }

    /// Why `provider` cannot be used, in words a user can act on.
    pub fn why_unavailable(&self, provider: &str) -> String {
        match self.statuses.iter().find(|s| s.name == provider) {
            Some(ProviderStatus {
                reason: Some(reason),
                ..
            }) => format!("provider `{provider}` is not available ({reason})"),
            _ => format!(
                "there is no provider `{provider}`; configured: {}",
                self.statuses
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped manifest's variables.
    fn shipped() -> Vec<String> {
        let manifest: toml::Table =
            toml::from_str(include_str!("../../plugins/agents/plugin.toml")).unwrap();
        manifest["env"]
            .as_table()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    fn build_declaring(declared: Vec<String>, env: &[(&str, &str)], configs: &str) -> Agents {
        let configs: BTreeMap<String, ProviderConfig> = toml::from_str(configs).unwrap();
        let env = ProviderEnv::new(
            declared,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Agents::build(
            &configs,
            &env,
            RetryPolicy::default(),
            Duration::from_secs(60),
        )
        .unwrap()
    }

    fn build(env: &[(&str, &str)], configs: &str) -> Agents {
        build_declaring(shipped(), env, configs)
    }

    fn reason(agents: &Agents, name: &str) -> Option<String> {
        agents
            .statuses()
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .reason
            .clone()
    }

    /// Before: a custom provider's `api_key_env` was read from the whole environment.
    #[test]
    fn only_declared_variables_are_read() {
        let configs = r#"
            local = { format = "openai", model = "m", base_url = "http://127.0.0.1:1/v1", api_key_env = "LOCAL_KEY" }
            other = { format = "openai", model = "m", base_url = "http://127.0.0.1:1/v1" }
            "#;
        let env = [
            ("LOCAL_KEY", "k"),
            ("OTHER_API_KEY", "k"),
            ("OPENAI_MODEL", "x"),
        ];
        let agents = build(&env, configs);
        assert!(agents.available().is_empty(), "{:?}", agents.available());
        assert_eq!(
            reason(&agents, "local").as_deref(),
            Some(
                "LOCAL_KEY is not read: declare [env.LOCAL_KEY] in the agents manifest \
                 (plugins/agents/plugin.toml)"
            )
        );
        assert!(
            reason(&agents, "other")
                .unwrap()
                .contains("declare [env.OTHER_API_KEY]")
        );
        let mut declared = shipped();
        declared.push("LOCAL_KEY".into());
        let agents = build_declaring(declared, &env, configs);
        assert_eq!(agents.available(), ["local"]);
        // A known provider whose variables a manifest leaves out says so too.
        let agents = build_declaring(vec!["GEMINI_API_KEY".into()], &[], "");
        assert_eq!(
            reason(&agents, "gemini").as_deref(),
            Some("no key: set GEMINI_API_KEY")
        );
        assert!(
            reason(&agents, "openai")
                .unwrap()
                .starts_with("OPENAI_API_KEY is not read: declare [env.OPENAI_API_KEY]")
        );
    }

    #[test]
    fn no_key_in_debug() {
        let agents = build(
            &[
                ("OPENAI_API_KEY", "sk-test-123"),
                ("ANTHROPIC_API_KEY", "sk-ant-test-123"),
                ("GEMINI_API_KEY", "AIza-test-123"),
                ("DEEPSEEK_API_KEY", "sk-ds-test-123"),
            ],
            r#"
            openai = { model = "a" }
            anthropic = { model = "b" }
            gemini = { model = "c" }
            deepseek = { model = "d" }
            "#,
        );
        assert_eq!(agents.available().len(), 4);
        let env = ProviderEnv::new(shipped(), [("OPENAI_API_KEY".into(), "sk-test-123".into())]);
        let shown = format!("{env:?}");
        assert!(!shown.contains("test-123"), "{shown}");
        let key = || Some(SecretString::from("sk-test-123"));
        let p = RetryPolicy::default();
        let shown = [
            format!("{:?}", OpenAi::new("openai", "m", "http://x", key(), p)),
            format!(
                "{:?}",
                Anthropic::new("anthropic", "m", "http://x", key(), p)
            ),
            format!("{:?}", Gemini::new("gemini", "m", "http://x", key(), p)),
        ];
        for shown in shown {
            assert!(!shown.contains("test-123"), "{shown}");
        }
    }

    #[test]
    fn a_provider_needs_a_key_and_a_model() {
        let agents = build(
            &[
                ("OPENAI_API_KEY", "k"),
                ("GOOGLE_API_KEY", "g"),
                ("GEMINI_MODEL", "gemini-x"),
                ("ANTHROPIC_API_KEY", "  "),
            ],
            r#"
            openai = { model = "gpt-x" }
            anthropic = { model = "claude-x" }
            ollama = { format = "openai", model = "llama", base_url = "http://127.0.0.1:11434/v1", api_key_env = "" }
            "#,
        );
        assert_eq!(agents.available(), ["gemini", "ollama", "openai"]);
        let reason = |n: &str| reason(&agents, n);
        assert_eq!(
            reason("anthropic").as_deref(),
            Some("no key: set ANTHROPIC_API_KEY")
        );
        assert_eq!(
            reason("deepseek").as_deref(),
            Some("no key: set DEEPSEEK_API_KEY")
        );
        assert_eq!(agents.get("gemini").unwrap().model(), "gemini-x");
        let no_model = build(&[("OPENAI_API_KEY", "k")], "");
        assert_eq!(
            no_model.statuses()[0].reason.as_deref(),
            Some("no model: set OPENAI_MODEL or settings.providers.openai.model")
        );
    }
}
