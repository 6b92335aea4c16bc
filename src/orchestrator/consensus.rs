#![allow(deprecated)] // rmcp marks sampling deprecated (SEP-2577); clients still use it.
//! `consensus`: one prompt to several providers at once. Each provider has its own deadline;
//! an answer that arrived is never lost because another provider failed or is late. As each
//! answer lands the caller hears of it (progress), so long runs survive client timeouts. A
//! synthesizer — a configured provider, or else the client's own model through MCP sampling —
//! writes the synthesis and names the providers whose answers agree.
//!
//! Whole on purpose (past 600 lines with its tests): the fan-out, the synthesis and the
//! totals read the same `Opinion`s in one pass each, and the tests below drive exactly those
//! steps; split, each part would only be read beside the others.

use std::{any::Any, collections::BTreeMap, panic::AssertUnwindSafe, time::Duration};

use futures::{FutureExt, StreamExt, stream::FuturesUnordered};
use rmcp::model::{CreateMessageRequestParams, SamplingMessage};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::Orchestrator;
use crate::{
    agents::{AgentError, Conversation, Message, Usage},
    plugin::ToolContext,
};

/// The position a provider is asked to argue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stance {
    For,
    Against,
    #[default]
    Neutral,
}

impl Stance {
    fn instruction(self) -> &'static str {
        match self {
            Stance::For => {
                "Argue in favour of the proposal or idea in the question: make the strongest \
                 honest case for it, and say plainly if something in it cannot be defended."
            }
            Stance::Against => {
                "Argue against the proposal or idea in the question: make the strongest honest \
                 case against it, and say plainly where it is in fact sound."
            }
            Stance::Neutral => "Give a balanced, well-reasoned answer.",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ConsensusRequest {
    pub prompt: String,
    /// Which providers to ask; empty: every available one.
    pub providers: Vec<String>,
    pub stances: BTreeMap<String, Stance>,
    /// Each provider's deadline; `None`: the provider's configured timeout.
    pub timeout: Option<Duration>,
}

/// One provider's part.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Opinion {
    pub provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub stance: Stance,
    /// The answer, when one arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Why there is no answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The provider missed its deadline.
    pub timed_out: bool,
    pub latency_ms: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// What the answer cost in US dollars; absent when the model has no price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Synthesis {
    /// The provider that wrote it, or `client` for the client's own model (MCP sampling).
    pub by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub text: String,
    /// Tokens the synthesizer used (zero for the client's own model: it pays for those).
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// What `consensus` returns.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Consensus {
    /// One per provider asked, in the order asked.
    pub opinions: Vec<Opinion>,
    /// How many answered.
    pub answered: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synthesis: Option<Synthesis>,
    /// Why there is no synthesis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synthesis_error: Option<String>,
    /// The providers whose answers agree (with the synthesis, or with each other).
    pub agreed: Vec<String>,
    /// How `agreed` was decided.
    pub agreement: String,
    /// From the first request to the last answer (synthesis included).
    pub wall_ms: u64,
    /// Every provider's tokens, the synthesis included.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// What it all cost in US dollars; absent when a model that answered has no price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl Consensus {
    /// Sum the parts' tokens and cost. The cost is known only when every part that used
    /// tokens has a price.
    fn total(&mut self) {
        let parts = self
            .opinions
            .iter()
            .map(|o| (o.input_tokens, o.output_tokens, o.cost_usd))
            .chain(
                self.synthesis
                    .iter()
                    .map(|s| (s.input_tokens, s.output_tokens, s.cost_usd)),
            );
        let mut cost = Some(0.0);
        for (input, output, part) in parts {
            self.input_tokens += input;
            self.output_tokens += output;
            if input + output > 0 {
                cost = cost.zip(part).map(|(sum, part)| sum + part);
            }
        }
        self.cost_usd = cost;
    }
}

const SYNTHESIS_SYSTEM: &str = "You combine the answers several AI models gave to the same \
question into one synthesis: what they agree on, where they differ and why, and the best \
answer. Be concise.";

impl Orchestrator {
    /// Ask every chosen provider at once. Fails only when no provider can be asked at all.
    pub async fn consensus(
        &self,
        request: &ConsensusRequest,
        cx: &ToolContext,
    ) -> Result<Consensus, String> {
        let started = Instant::now();
        let names: Vec<String> = if request.providers.is_empty() {
            self.agents.available()
        } else {
            let mut names = Vec::new();
            for name in &request.providers {
                let name = name.trim().to_owned();
                if !name.is_empty() && !names.contains(&name) {
                    names.push(name);
                }
            }
            names
        };
        if names.is_empty() || names.iter().all(|n| self.agents.get(n).is_none()) {
            return Err(if request.providers.is_empty() {
                self.none_available()
            } else {
                names
                    .iter()
                    .map(|n| self.agents.why_unavailable(n))
                    .collect::<Vec<_>>()
                    .join("; ")
            });
        }
        let total = names.len() as f64 + 1.0;
        let mut opinions: Vec<Option<Opinion>> = vec![None; names.len()];
        let mut pending = FuturesUnordered::new();
        for (i, name) in names.iter().enumerate() {
            let stance = request.stances.get(name).copied().unwrap_or_default();
            let Some(agent) = self.agents.get(name).cloned() else {
                opinions[i] = Some(Opinion {
                    provider: name.clone(),
                    model: None,
                    stance,
                    answer: None,
                    error: Some(self.agents.why_unavailable(name)),
                    timed_out: false,
                    latency_ms: 0,
                    input_tokens: 0,
                    output_tokens: 0,
                    cost_usd: None,
                });
                continue;
            };
            let deadline = request.timeout.unwrap_or_else(|| self.agents.timeout(name));
            let conversation = Conversation {
                system: Some(stance.instruction().to_owned()),
                messages: vec![Message::User(request.prompt.clone())],
                tools: Vec::new(),
                max_tokens: self.settings.max_tokens,
                temperature: None,
                response_schema: None,
            };
            pending.push(async move {
                let asked = Instant::now();
                // A panic in one provider's code (decoding its answer, say) is that provider's
                // failure: it must not unwind through the answers the others gave.
                let result = AssertUnwindSafe(self.turn(&agent, &conversation, deadline, cx, None))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| {
                        Err(AgentError::Malformed {
                            provider: agent.provider().to_owned(),
                            message: format!(
                                "reading its answer failed unexpectedly ({})",
                                panic_text(&*panic)
                            ),
                        })
                    });
                (i, agent, stance, result, asked.elapsed())
            });
        }
        let mut arrived = opinions.iter().filter(|o| o.is_some()).count();
        while let Some((i, agent, stance, result, elapsed)) = pending.next().await {
            arrived += 1;
            let latency_ms = elapsed.as_millis() as u64;
            let opinion = match result {
                Ok(reply) => Opinion {
                    provider: agent.provider().to_owned(),
                    model: Some(reply.model),
                    stance,
                    answer: Some(reply.turn.text),
                    error: None,
                    timed_out: false,
                    latency_ms,
                    input_tokens: reply.usage.input_tokens,
                    output_tokens: reply.usage.output_tokens,
                    cost_usd: self.agents.cost(agent.provider(), reply.usage),
                },
                Err(e) => Opinion {
                    provider: agent.provider().to_owned(),
                    model: Some(agent.model().to_owned()),
                    stance,
                    answer: None,
                    timed_out: matches!(e, crate::agents::AgentError::Timeout { .. }),
                    error: Some(e.to_string()),
                    latency_ms,
                    input_tokens: 0,
                    output_tokens: 0,
                    cost_usd: None,
                },
            };
            let what = match &opinion.error {
                None => format!("{} answered in {latency_ms} ms", opinion.provider),
                Some(e) => format!("{} gave no answer: {e}", opinion.provider),
            };
            cx.progress(
                arrived as f64,
                Some(total),
                format!("{what} ({arrived}/{})", names.len()),
            )
            .await;
            if let Some(sink) = cx.text_sink() {
                sink(&render_opinion(&opinion));
            }
            opinions[i] = Some(opinion);
        }
        let opinions: Vec<Opinion> = opinions.into_iter().flatten().collect();
        let answered = opinions.iter().filter(|o| o.answer.is_some()).count();
        let mut result = Consensus {
            answered,
            synthesis: None,
            synthesis_error: None,
            agreed: Vec::new(),
            agreement: String::new(),
            wall_ms: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: None,
            opinions,
        };
        if answered == 0 {
            result.synthesis_error = Some("no provider answered".into());
            result.agreement = "nobody answered".into();
        } else {
            cx.progress(total - 1.0, Some(total), "writing the synthesis")
                .await;
            let synthesis =
                AssertUnwindSafe(self.synthesize(&request.prompt, &result.opinions, cx))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| {
                        Err(format!(
                            "the synthesis failed unexpectedly ({})",
                            panic_text(&*panic)
                        ))
                    });
            match synthesis {
                Ok((synthesis, agreed)) => {
                    result.agreed = agreed;
                    result.agreement = format!("named by the synthesizer ({})", synthesis.by);
                    if let Some(sink) = cx.text_sink() {
                        sink(&format!(
                            "── synthesis by {} ──\n{}\n",
                            synthesis.by, synthesis.text
                        ));
                    }
                    result.synthesis = Some(synthesis);
                }
                Err(e) => {
                    result.synthesis_error = Some(e);
                    result.agreed = identical_answers(&result.opinions);
                    result.agreement =
                        "answers that are the same word for word (no synthesis)".into();
                }
            }
        }
        result.wall_ms = started.elapsed().as_millis() as u64;
        result.total();
        Ok(result)
    }

    /// The synthesis, by the configured provider, else by the client's model.
    async fn synthesize(
        &self,
        prompt: &str,
        opinions: &[Opinion],
        cx: &ToolContext,
    ) -> Result<(Synthesis, Vec<String>), String> {
        let mut text = format!("Question:\n{prompt}\n\nAnswers:\n");
        for o in opinions {
            if let Some(answer) = &o.answer {
                text.push_str(&format!(
                    "\n### {} (asked to argue: {:?})\n{answer}\n",
                    o.provider, o.stance
                ));
            }
        }
        text.push_str(
            "\nWrite the synthesis. End with one line of exactly this form, naming the models \
             whose answers agree with your synthesis: `AGREED: name, name` (or `AGREED: none`).",
        );
        let (by, model, written, usage) = match &self.settings.synthesizer {
            Some(name) => {
                let agent =
                    self.agents.get(name).cloned().ok_or_else(|| {
                        format!("synthesizer: {}", self.agents.why_unavailable(name))
                    })?;
                let conversation = Conversation {
                    system: Some(SYNTHESIS_SYSTEM.to_owned()),
                    messages: vec![Message::User(text)],
                    tools: Vec::new(),
                    max_tokens: self.settings.max_tokens,
                    temperature: None,
                    response_schema: None,
                };
                let deadline = self.agents.timeout(name);
                let reply = self
                    .turn(&agent, &conversation, deadline, cx, None)
                    .await
                    .map_err(|e| format!("the synthesizer failed: {e}"))?;
                (
                    name.clone(),
                    Some(reply.model),
                    reply.turn.text,
                    reply.usage,
                )
            }
            None if cx.client_can_sample() => {
                let params = CreateMessageRequestParams::new(
                    vec![SamplingMessage::user_text(text)],
                    self.settings.max_tokens,
                )
                .with_system_prompt(SYNTHESIS_SYSTEM);
                let answer = cx.sample(params).await.map_err(|e| e.to_string())?;
                let written = crate::plugin::sampled_text(&answer);
                (
                    "client".to_owned(),
                    Some(answer.model),
                    written,
                    Usage::default(),
                )
            }
            None => {
                return Err(
                    "no synthesizer is configured (settings.synthesizer) and the client \
                            does not support sampling"
                        .into(),
                );
            }
        };
        let answered: Vec<&str> = opinions
            .iter()
            .filter(|o| o.answer.is_some())
            .map(|o| o.provider.as_str())
            .collect();
        let (text, agreed) = split_agreed(&written, &answered);
        let cost_usd = if by == "client" {
            Some(0.0)
        } else {
            self.agents.cost(&by, usage)
        };
        let synthesis = Synthesis {
            by,
            model,
            text,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cost_usd,
        };
        Ok((synthesis, agreed))
    }
}

/// What a panic said, when it said it in words.
fn panic_text(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic")
}

/// The synthesis without its `AGREED:` line, and the answered providers that line names.
fn split_agreed(written: &str, answered: &[&str]) -> (String, Vec<String>) {
    let mut agreed = Vec::new();
    let mut kept = Vec::new();
    for line in written.lines() {
        let bare = line.trim().trim_matches('`').trim_matches('*').trim();
        let upper = bare.to_ascii_uppercase();
        if let Some(rest) = upper.strip_prefix("AGREED:") {
            let names = &bare[bare.len() - rest.len()..];
            for name in names
                .split(',')
                .map(|n| n.trim().trim_matches('`').to_lowercase())
            {
                if let Some(p) = answered.iter().find(|p| p.eq_ignore_ascii_case(&name))
                    && !agreed.iter().any(|a: &String| a == p)
                {
                    agreed.push(p.to_string());
                }
            }
        } else {
            kept.push(line);
        }
    }
    (kept.join("\n").trim().to_owned(), agreed)
}

/// Without a synthesis: the largest group (of two or more) of answers equal once case,
/// spacing and punctuation are ignored.
fn identical_answers(opinions: &[Opinion]) -> Vec<String> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in opinions {
        if let Some(answer) = &o.answer {
            let key: String = answer
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric())
                .collect();
            groups.entry(key).or_default().push(o.provider.clone());
        }
    }
    groups
        .into_values()
        .filter(|g| g.len() >= 2)
        .max_by_key(Vec::len)
        .unwrap_or_default()
}

fn render_opinion(o: &Opinion) -> String {
    let model = o.model.as_deref().unwrap_or("?");
    match (&o.answer, &o.error) {
        (Some(answer), _) => format!(
            "── {} ({model}, {} ms) ──\n{answer}\n\n",
            o.provider, o.latency_ms
        ),
        (None, Some(e)) => format!("── {} ({model}) — no answer ──\n{e}\n\n", o.provider),
        (None, None) => String::new(),
    }
}

/// The result as text for a client to show.
pub fn render(c: &Consensus) -> String {
    let mut out = String::new();
    for o in &c.opinions {
        out.push_str(&render_opinion(o));
    }
    match (&c.synthesis, &c.synthesis_error) {
        (Some(s), _) => out.push_str(&format!("── synthesis by {} ──\n{}\n\n", s.by, s.text)),
        (None, Some(e)) => out.push_str(&format!("── no synthesis ──\n{e}\n\n")),
        _ => {}
    }
    out.push_str(&format!(
        "{} of {} answered; agreed: {} ({}); {} ms",
        c.answered,
        c.opinions.len(),
        if c.agreed.is_empty() {
            "none".to_owned()
        } else {
            c.agreed.join(", ")
        },
        c.agreement,
        c.wall_ms
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::{Arc, Weak};

    use futures::{future::BoxFuture, stream::BoxStream};

    use crate::{
        agents::{Agent, Agents, AssistantTurn, Finish, Reply, StreamEvent, Usage},
        orchestrator::Settings,
        plugin::{ToolContext, Toolbox},
    };

    /// A provider that fails in one way.
    enum Way {
        Answers,
        /// A panic while decoding its answer.
        Panics,
        Malformed,
        /// Never answers: past its deadline.
        Hangs,
    }

    struct Fake(&'static str, Way);

    impl Agent for Fake {
        fn provider(&self) -> &str {
            self.0
        }
        fn model(&self) -> &str {
            "m"
        }
        fn supports_tools(&self) -> bool {
            false
        }
        fn send<'a>(&'a self, _: &'a Conversation) -> BoxFuture<'a, Result<Reply, AgentError>> {
            async move {
                tokio::task::yield_now().await;
                match self.1 {
                    Way::Answers => Ok(Reply {
                        turn: AssistantTurn {
                            text: format!("{} says 4", self.0),
                            ..AssistantTurn::default()
                        },
                        finish: Finish::Stop,
                        usage: Usage::default(),
                        model: "m".into(),
                    }),
                    Way::Panics => panic!("index out of bounds while decoding"),
                    Way::Malformed => Err(AgentError::Malformed {
                        provider: self.0.into(),
                        message: "not JSON".into(),
                    }),
                    Way::Hangs => futures::future::pending().await,
                }
            }
            .boxed()
        }
        fn stream<'a>(
            &'a self,
            _: &'a Conversation,
        ) -> BoxStream<'a, Result<StreamEvent, AgentError>> {
            Box::pin(futures::stream::empty())
        }
    }

    /// Before: the panic of one provider unwound through `consensus` and took every answer
    /// already received with it.
    #[tokio::test(start_paused = true)]
    async fn one_provider_failing_in_any_way_loses_no_other_answer() {
        let agents: Vec<Arc<dyn Agent>> = vec![
            Arc::new(Fake("early", Way::Answers)),
            Arc::new(Fake("panics", Way::Panics)),
            Arc::new(Fake("malformed", Way::Malformed)),
            Arc::new(Fake("hangs", Way::Hangs)),
            Arc::new(Fake("late", Way::Answers)),
        ];
        let o = Orchestrator::new(
            Arc::new(Agents::from_agents(agents, Duration::from_secs(5))),
            Toolbox::new(Weak::new(), "agents"),
            Settings::default(),
        );
        let request = ConsensusRequest {
            prompt: "2+2?".into(),
            ..ConsensusRequest::default()
        };
        let c = o
            .consensus(&request, &ToolContext::detached())
            .await
            .unwrap();
        let by = |name: &str| c.opinions.iter().find(|o| o.provider == name).unwrap();
        assert_eq!(c.answered, 2);
        assert_eq!(by("early").answer.as_deref(), Some("early says 4"));
        assert_eq!(by("late").answer.as_deref(), Some("late says 4"));
        let panicked = by("panics").error.clone().unwrap();
        assert!(
            panicked.contains("failed unexpectedly") && panicked.contains("index out of bounds"),
            "{panicked}"
        );
        assert!(
            by("malformed")
                .error
                .as_deref()
                .unwrap()
                .contains("malformed")
        );
        assert!(by("hangs").timed_out);
        assert_eq!(c.opinions.len(), 5);
    }

    #[test]
    fn the_agreed_line_is_parsed_and_removed() {
        let (text, agreed) = split_agreed(
            "Both say 4.\n\n**AGREED: OpenAI, gemini, nobody, openai**",
            &["openai", "gemini", "anthropic"],
        );
        assert_eq!(text, "Both say 4.");
        assert_eq!(agreed, ["openai", "gemini"]);
        let (_, agreed) = split_agreed("x\nAGREED: none", &["openai"]);
        assert!(agreed.is_empty());
    }

    #[test]
    fn identical_answers_form_the_largest_group() {
        let o = |p: &str, a: &str| Opinion {
            provider: p.into(),
            model: None,
            stance: Stance::Neutral,
            answer: Some(a.into()),
            error: None,
            timed_out: false,
            latency_ms: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: None,
        };
        let all = [o("a", "Four."), o("b", "four"), o("c", "5")];
        assert_eq!(identical_answers(&all), ["a", "b"]);
        assert!(identical_answers(&all[1..]).is_empty());
    }
}
