//! The agents plugin through an MCP client and the CLI, against fakes of the four providers'
//! wire formats: consensus (all answering, one hanging past its deadline, one failing, none
//! available, synthesis by the client's model), the tool-calling loop (a model that calls
//! `files_read` and then answers), retries that honour each provider's hint, auto-routing
//! with fallback, malformed and broken answers, streaming on the CLI, and the counters.
//! Deadlines, latencies and retry waits are tested in process under paused time
//! ([`Setup::in_process`]) with the shipped waits, asserting exact durations.

use std::time::Duration;

use plugboard::{plugin::Face, server::McpHandler};
use rmcp::{
    model::{ClientRequest, ReadResourceRequestParams, Request, ServerResult},
    service::PeerRequestOptions,
};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{
    fake_llm::{Behaviour, FakeLlm, KEY, Provider},
    inproc::{Server, connect},
    protocol::{Probe, ProbeClient},
    scenario::call,
    support::{Fixture, text},
};

type Peer = rmcp::Peer<rmcp::RoleClient>;

async fn call_tool(client: &Peer, tool: &str, arguments: Value) -> rmcp::model::CallToolResult {
    client
        .call_tool(call(tool, arguments))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

/// Call a tool that must succeed; its structured result.
async fn ok(client: &Peer, tool: &str, arguments: Value) -> Value {
    let result = call_tool(client, tool, arguments).await;
    assert_ne!(
        result.is_error,
        Some(true),
        "{tool} failed: {}",
        text(&result)
    );
    result.structured_content.expect("structured content")
}

/// Check a structured result against the tool's published output schema, as strict
/// clients (the MCP Inspector) do.
async fn conforms(client: &Peer, tool: &str, value: &Value) {
    let tools = client.list_all_tools().await.unwrap();
    let schema = tools
        .iter()
        .find(|t| t.name == tool)
        .and_then(|t| t.output_schema.clone())
        .unwrap_or_else(|| panic!("{tool} has no output schema"));
    let schema = Value::Object((*schema).clone());
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{tool}: {errors:?} in {value}");
}

/// Call a tool that must fail; the error text.
async fn fails(client: &Peer, tool: &str, arguments: Value) -> String {
    let result = call_tool(client, tool, arguments).await;
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} succeeded: {}",
        text(&result)
    );
    text(&result)
}

const ALL: [(Provider, &str, &str); 4] = [
    (Provider::Anthropic, "anthropic", "claude-test"),
    (Provider::DeepSeek, "deepseek", "deepseek-test"),
    (Provider::Gemini, "gemini", "gemini-test"),
    (Provider::OpenAi, "openai", "gpt-test"),
];

/// The shipped manifest's variables with test settings: every provider on a test model,
/// short waits.
fn manifest(extra: &str) -> String {
    manifest_waiting(
        "timeout_secs = 10\nmax_retries = 2\nmax_retry_wait_secs = 5\n",
        extra,
    )
}

/// [`manifest`] with `waits` for its timeout and retry settings (empty: the shipped ones).
/// The dashboard's browser test configures its agents plugin with it too.
pub(crate) fn manifest_waiting(waits: &str, extra: &str) -> String {
    let shipped = include_str!("../../plugins/agents/plugin.toml");
    let head = shipped.split("\n[settings]").next().unwrap();
    assert!(head.contains("[env.OPENAI_API_KEY]"));
    format!(
        "{head}\n[settings]\n{waits}{extra}\n\
         [settings.providers.openai]\nmodel = \"gpt-test\"\n\
         prices = {{ \"gpt-test\" = {{ input = 1.0, output = 2.0 }} }}\n\
         [settings.providers.anthropic]\nmodel = \"claude-test\"\n\
         prices = {{ \"claude-test\" = {{ input = 3.0, output = 15.0 }} }}\n\
         [settings.providers.gemini]\nmodel = \"gemini-test\"\n\
         prices = {{ \"gemini-test\" = {{ input = 0.5, output = 4.0 }}, \"other\" = {{ input = 9.0, output = 9.0 }} }}\n\
         [settings.providers.deepseek]\nmodel = \"deepseek-test\"\n\
         [settings.routing]\norder = [\"anthropic\", \"openai\", \"gemini\", \"deepseek\"]\n\
         [[settings.routing.rules]]\nprovider = \"deepseek\"\nkeywords = [\"rust\"]\n"
    )
}

struct Setup {
    fx: Fixture,
    fake: FakeLlm,
    env: Vec<(String, String)>,
}

impl Setup {
    /// The files fixture plus the agents plugin, with keys for `providers`.
    fn new(providers: &[&str], settings: &str) -> Self {
        Self::around(FakeLlm::start_in_thread(), providers, &manifest(settings))
    }

    /// For a paused-time test: the fake on the test's runtime, the shipped waits (answers may
    /// take 120 s, retry hints up to 60 s are honoured); connect with
    /// [`Setup::in_process_client`].
    async fn in_process(providers: &[&str], settings: &str) -> Self {
        let manifest = manifest_waiting("", settings);
        Self::around(FakeLlm::start().await, providers, &manifest)
    }

    fn around(fake: FakeLlm, providers: &[&str], manifest: &str) -> Self {
        let fx = Fixture::new();
        fx.manifest("agents", manifest);
        let mut env = Vec::new();
        for name in providers {
            let base = match *name {
                "openai" => fake.openai_base(),
                "anthropic" => fake.anthropic_base(),
                "gemini" => fake.gemini_base(),
                "deepseek" => fake.deepseek_base(),
                other => panic!("{other}"),
            };
            let upper = name.to_uppercase();
            env.push((format!("{upper}_API_KEY"), KEY.to_owned()));
            env.push((format!("{upper}_BASE_URL"), base));
        }
        Self { fx, fake, env }
    }

    fn all() -> Self {
        Self::new(
            &["openai", "anthropic", "gemini", "deepseek"],
            "synthesizer = \"anthropic\"",
        )
    }

    async fn all_in_process() -> Self {
        Self::in_process(
            &["openai", "anthropic", "gemini", "deepseek"],
            "synthesizer = \"anthropic\"",
        )
        .await
    }

    /// The plugin in process, with the environment [`Setup::client`]'s server gets.
    async fn in_process_client(&self, probe: Probe) -> ProbeClient {
        let env = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let manager = Server::new(&self.fx).envs(env).start().await;
        connect(McpHandler::new(manager).on(Face::Stdio), probe).await
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = self.fx.command(args);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    async fn client(&self, probe: Probe) -> ProbeClient {
        use rmcp::{ServiceExt, transport::TokioChildProcess};
        let (transport, stderr) = TokioChildProcess::builder(self.command(&["serve"]))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        self.fx.keep(
            "plugboard serve (agents probe)".into(),
            stderr.expect("stderr piped"),
        );
        probe.serve(transport).await.expect("initialize over stdio")
    }
}

/// Consensus answered by all four, asked at once, each taking its three seconds; the
/// synthesizer (anthropic) names who agreed.
#[tokio::test(start_paused = true)]
async fn consensus_asks_four_providers_at_once() {
    let s = Setup::all_in_process().await;
    let latency = Duration::from_secs(3);
    for (provider, ..) in ALL {
        s.fake.set_latency(provider, latency);
    }
    s.fake.push_once(Provider::Anthropic, Behaviour::Echo);
    s.fake.push_once(
        Provider::Anthropic,
        Behaviour::Answer("All four say 4.\nAGREED: openai, anthropic, gemini, deepseek".into()),
    );
    let probe = Probe::default();
    let client = s.in_process_client(probe.clone()).await;
    let tools: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(
        tools.contains(&"consensus".into()) && tools.contains(&"ask".into()),
        "{tools:?}"
    );

    let started = Instant::now();
    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(call(
                "consensus",
                json!({"prompt": "What is 2+2?", "stances": {"openai": "for"}}),
            ))),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    let ServerResult::CallToolResult(result) = handle.await_response().await.unwrap() else {
        panic!("not a tool result")
    };
    // The four answers side by side, then the synthesis.
    assert_eq!(started.elapsed(), 2 * latency);
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    let c = result.structured_content.clone().unwrap();
    conforms(&client, "consensus", &c).await;
    assert_eq!(c["answered"], 4);
    let answers: Vec<(String, String, String, String)> = c["opinions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["provider"].as_str().unwrap().to_owned(),
                o["model"].as_str().unwrap().to_owned(),
                o["stance"].as_str().unwrap().to_owned(),
                o["answer"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String, String)> = ALL
        .iter()
        .map(|(_, name, model)| {
            (
                name.to_string(),
                model.to_string(),
                if *name == "openai" { "for" } else { "neutral" }.to_owned(),
                format!("{name} ({model}) says: What is 2+2?"),
            )
        })
        .collect();
    assert_eq!(answers, expected);
    for o in c["opinions"].as_array().unwrap() {
        assert_eq!(o["timed_out"], false);
        assert!(o["input_tokens"].as_u64().unwrap() > 0, "{o}");
        assert!(o["output_tokens"].as_u64().unwrap() > 0, "{o}");
        assert!(o["latency_ms"].as_u64().unwrap() >= 300, "{o}");
    }
    let synthesis = &c["synthesis"];
    assert_eq!(
        (&synthesis["by"], &synthesis["model"], &synthesis["text"]),
        (
            &json!("anthropic"),
            &json!("claude-test"),
            &json!("All four say 4.")
        )
    );
    // The synthesizer's tokens are its own, priced as its model (claude-test: $3 / $15).
    let (i, o) = (
        synthesis["input_tokens"].as_u64().unwrap(),
        synthesis["output_tokens"].as_u64().unwrap(),
    );
    assert!(i > 0 && o > 0, "{synthesis}");
    assert_eq!(
        synthesis["cost_usd"].as_f64().unwrap(),
        (i as f64 * 3.0 + o as f64 * 15.0) / 1e6
    );
    // deepseek-test has no price: the consensus's cost is not known.
    assert!(c.get("cost_usd").is_none(), "{c}");
    assert_eq!(
        c["agreed"],
        json!(["openai", "anthropic", "gemini", "deepseek"])
    );
    // The text content shows every answer and the synthesis.
    let shown = text(&result);
    for (_, _, _, answer) in &expected {
        assert!(shown.contains(answer.as_str()), "{shown}");
    }
    assert!(
        shown.contains("── synthesis by anthropic ──\nAll four say 4."),
        "{shown}"
    );

    // One progress notification per answer, then one for the synthesis.
    probe
        .until("5 progress notifications", |s| s.progress.len() >= 5)
        .await;
    let progress: Vec<(f64, Option<f64>)> = probe
        .seen()
        .progress
        .iter()
        .map(|p| (p.progress, p.total))
        .collect();
    assert_eq!(
        progress,
        [1.0, 2.0, 3.0, 4.0, 4.0].map(|p| (p, Some(5.0))).to_vec()
    );

    // Fanned out at once: all four requests arrived when the call began.
    for (provider, name, _) in ALL {
        assert_eq!(s.fake.requests(provider)[0].at, started, "{name}");
    }
    assert_eq!(
        s.fake.requests(Provider::Anthropic)[1].at - started,
        latency,
        "the synthesis was asked as soon as the answers were in"
    );
    // Each provider got its key the way its API wants it, and the stance as system prompt.
    let openai = &s.fake.requests(Provider::OpenAi)[0];
    assert_eq!(openai.headers["authorization"], "Bearer <key>");
    assert!(
        openai.body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .starts_with("Argue in favour"),
        "{}",
        openai.body
    );
    assert_eq!(
        s.fake.requests(Provider::Anthropic)[0].headers["x-api-key"],
        "<key>"
    );
    assert_eq!(
        s.fake.requests(Provider::Gemini)[0].headers["x-goog-api-key"],
        "<key>"
    );
    // The synthesizer saw every answer.
    let synthesis_request = &s.fake.requests(Provider::Anthropic)[1];
    let asked = synthesis_request.body["messages"][0]["content"].to_string();
    for (_, _, _, answer) in &expected {
        assert!(asked.contains(answer.as_str()), "{asked}");
    }
    client.cancel().await.unwrap();
}

/// A provider that hangs past its deadline is reported when the deadline comes; the others'
/// answers are kept. A provider that fails is reported with what to do; 5xx are retried, 402
/// is not.
#[tokio::test(start_paused = true)]
async fn late_and_failing_providers_lose_nothing() {
    let s = Setup::all_in_process().await;
    s.fake.set(Provider::Gemini, Behaviour::Hang);
    s.fake.set(Provider::OpenAi, Behaviour::Status(500));
    s.fake.set(Provider::DeepSeek, Behaviour::Status(402));
    s.fake.push_once(Provider::Anthropic, Behaviour::Echo);
    s.fake.push_once(
        Provider::Anthropic,
        Behaviour::Answer("Only one answer.\nAGREED: anthropic".into()),
    );
    let client = s.in_process_client(Probe::default()).await;
    let started = Instant::now();
    let c = ok(
        &client,
        "consensus",
        json!({"prompt": "Is water wet?", "timeout_secs": 1.5}),
    )
    .await;
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(1500),
        "the deadline"
    );
    let by = |name: &str| {
        c["opinions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["provider"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(c["answered"], 1);
    assert_eq!(
        by("anthropic")["answer"],
        "anthropic (claude-test) says: Is water wet?"
    );
    conforms(&client, "consensus", &c).await;
    let gemini = by("gemini");
    assert_eq!(gemini["timed_out"], true);
    assert_eq!(gemini["error"], "gemini did not answer within 1.5 s");
    assert!(gemini.get("answer").is_none());
    let openai = by("openai");
    assert_eq!(openai["timed_out"], false);
    let e = openai["error"].as_str().unwrap();
    assert!(
        e.starts_with("openai answered HTTP 500 (server_error): ")
            && e.ends_with("— a problem on the provider's side; try again later"),
        "{e}"
    );
    let e = by("deepseek")["error"].as_str().unwrap().to_owned();
    assert!(
        e.starts_with("deepseek answered HTTP 402")
            && e.ends_with("— the account is out of credit; add funds or use another provider"),
        "{e}"
    );
    assert_eq!(c["synthesis"]["text"], "Only one answer.");
    assert_eq!(c["agreed"], json!(["anthropic"]));
    // 500 is retried (1 + 2 retries); 402 is not worth a retry.
    assert_eq!(s.fake.request_count(Provider::OpenAi), 3);
    assert_eq!(s.fake.request_count(Provider::DeepSeek), 1);
    // The server is still serving, and the counters saw it all.
    let read = client
        .read_resource(ReadResourceRequestParams::new(
            "plugboard://agents/providers",
        ))
        .await
        .unwrap();
    let rmcp::model::ResourceContents::TextResourceContents { text: body, .. } = &read.contents[0]
    else {
        panic!("not text")
    };
    let report: Value = serde_json::from_str(body).unwrap();
    let stats = |name: &str| {
        report["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["stats"]
            .clone()
    };
    assert_eq!(stats("gemini")["timeouts"], 1);
    assert_eq!(stats("gemini")["errors"], 1);
    assert_eq!(stats("openai")["errors"], 1);
    assert_eq!(stats("anthropic")["requests"], 2);
    assert_eq!(stats("anthropic")["errors"], 0);
    assert!(stats("anthropic")["output_tokens"].as_u64().unwrap() > 0);
    client.cancel().await.unwrap();
}

/// No provider configured: `ask` is not offered, `consensus` only to a client that can
/// sample, and calling it says what to set.
#[tokio::test]
async fn consensus_with_no_provider_says_what_to_set() {
    let s = Setup::new(&[], "");
    let plain = s.client(Probe::default()).await;
    let names: Vec<String> = plain
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(
        !names.contains(&"consensus".into()) && !names.contains(&"ask".into()),
        "{names:?}"
    );
    plain.cancel().await.unwrap();

    let sampling = s.client(Probe::sampling("unused")).await;
    let names: Vec<String> = sampling
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(names.contains(&"consensus".into()), "{names:?}");
    let e = fails(&sampling, "consensus", json!({"prompt": "2+2?"})).await;
    assert_eq!(
        e,
        "no provider is available: openai (no key: set OPENAI_API_KEY), anthropic (no key: \
         set ANTHROPIC_API_KEY), gemini (no key: set GEMINI_API_KEY or GOOGLE_API_KEY), \
         deepseek (no key: set DEEPSEEK_API_KEY). Set a provider's key (and model) in the \
         environment or .env, then reload (SIGHUP) or restart; `plugboard check` shows what \
         is missing"
    );
    sampling.cancel().await.unwrap();

    // The CLI says the same, and `check` lists the providers.
    let out = s.fx.run(&mut s.command(&["consensus", "2+2?"])).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no provider is available: openai (no key: set OPENAI_API_KEY)"),
        "{stderr}"
    );
    let out = s.fx.run(&mut s.command(&["check"])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("AI providers:\n  openai     not available: no key: set OPENAI_API_KEY\n"),
        "{stdout}"
    );
}

/// Without a synthesizer provider the client's own model writes the synthesis (sampling).
#[tokio::test]
async fn the_clients_model_writes_the_synthesis() {
    let s = Setup::new(&["openai", "gemini"], "");
    let probe = Probe::sampling("Both say 4.\nAGREED: gemini, openai");
    let client = s.client(probe.clone()).await;
    let c = ok(
        &client,
        "consensus",
        json!({"prompt": "2+2?", "providers": ["openai", "gemini"]}),
    )
    .await;
    // The client's model wrote it: no tokens of ours, nothing spent.
    assert_eq!(
        c["synthesis"],
        json!({"by": "client", "model": "probe-model", "text": "Both say 4.",
               "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0})
    );
    assert_eq!(c["agreed"], json!(["gemini", "openai"]));
    {
        let seen = probe.seen();
        assert_eq!(seen.sampling.len(), 1);
        let asked = serde_json::to_string(&seen.sampling[0]).unwrap();
        assert!(asked.contains("openai (gpt-test) says: 2+2?"), "{asked}");
        assert!(asked.contains("gemini (gemini-test) says: 2+2?"), "{asked}");
    }
    client.cancel().await.unwrap();
}

/// The tool-calling loop, for each wire format: the model calls `files_read`, gets the
/// file's text through the plugin manager, and answers with it.
#[tokio::test]
async fn ask_runs_the_models_tool_calls() {
    let s = Setup::all();
    let client = s.client(Probe::default()).await;
    let file = text(&call_tool(&client, "files_read", json!({"path": "docs/guide.md"})).await);
    assert!(
        file.contains("plugboard connects your AI to files."),
        "{file}"
    );
    for (provider, name, model) in ALL {
        s.fake.set(
            provider,
            Behaviour::ToolThenAnswer {
                tool: "files_read".into(),
                args: json!({"path": "docs/guide.md"}),
            },
        );
        let answer = ok(
            &client,
            "ask",
            json!({"prompt": "What does the guide say?", "provider": name, "use_tools": true}),
        )
        .await;
        let expected = if provider == Provider::Gemini {
            format!("tool said: {}", json!({"result": file}))
        } else {
            format!("tool said: {file}")
        };
        conforms(&client, "ask", &answer).await;
        assert_eq!(answer["answer"], expected, "{name}");
        assert_eq!(answer["provider"], name);
        assert_eq!(answer["model"], model);
        assert_eq!(
            answer["tool_calls"],
            json!([{"tool": "files_read", "arguments": {"path": "docs/guide.md"}, "is_error": false}]),
            "{name}"
        );
        let requests = s.fake.requests(provider);
        assert_eq!(requests.len(), 2, "{name}: one tool turn, one answer");
        // The model was offered the read-only tools, not the agents' own.
        let offered = requests[0].body.to_string();
        assert!(offered.contains("files_read"), "{offered}");
        assert!(!offered.contains("\"consensus\""), "{offered}");
    }
    // DeepSeek's follow-up carried reasoning_content back (the fake answers 400 otherwise).
    let follow_up = &s.fake.requests(Provider::DeepSeek)[1].body;
    let assistant = follow_up["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "assistant")
        .unwrap();
    assert!(assistant["reasoning_content"].is_string(), "{assistant}");

    // A model that calls a tool it was not offered gets an error result, and answers.
    s.fake.set(
        Provider::OpenAi,
        Behaviour::ToolThenAnswer {
            tool: "files_delete".into(),
            args: json!({"path": "docs/guide.md"}),
        },
    );
    let answer = ok(
        &client,
        "ask",
        json!({"prompt": "delete it", "provider": "openai", "use_tools": true}),
    )
    .await;
    assert!(
        answer["answer"].as_str().unwrap().starts_with(
            "tool said: there is no tool `files_delete` you may call; the tools are: files_"
        ),
        "{answer}"
    );
    assert_eq!(answer["tool_calls"][0]["is_error"], true);
    client.cancel().await.unwrap();
}

/// A connection scoped to fewer tools than the server publishes (one session, one API token):
/// a model working for it is offered only those, and calling another is refused. In process,
/// over a duplex: a scope is set by the face, not by anything a client can send.
#[tokio::test]
async fn a_scoped_connection_offers_its_model_only_its_tools() {
    use plugboard::{
        plugin::{Face, Filters},
        server::McpHandler,
    };

    let s = Setup::new(&["openai"], "");
    let manager = crate::inproc::Server::new(&s.fx)
        .envs(s.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .start()
        .await;
    let handler = McpHandler::new(manager).on(Face::Http).scoped(Filters {
        exclude_tools: vec!["files_search".into()],
        ..Filters::default()
    });
    let client = crate::inproc::connect(handler, crate::support::Recorder::default()).await;

    s.fake.set(
        Provider::OpenAi,
        Behaviour::ToolThenAnswer {
            tool: "files_search".into(),
            args: json!({"pattern": "plugboard"}),
        },
    );
    let answer = ok(
        &client,
        "ask",
        json!({"prompt": "search the docs", "provider": "openai", "use_tools": true}),
    )
    .await;
    assert!(
        answer["answer"]
            .as_str()
            .unwrap()
            .starts_with("tool said: there is no tool `files_search` you may call"),
        "{answer}"
    );
    let offered: Vec<String> = s.fake.requests(Provider::OpenAi)[0].body["tools"]
        .as_array()
        .expect("tools offered")
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(offered.contains(&"files_read".to_owned()), "{offered:?}");
    assert!(!offered.contains(&"files_search".to_owned()), "{offered:?}");
    client.cancel().await.unwrap();
}

/// Retries wait exactly as long as each provider asks: `retry-after-ms`/`retry-after`
/// headers, or Gemini's RetryInfo in the body.
#[tokio::test(start_paused = true)]
async fn rate_limits_are_waited_out_as_each_provider_asks() {
    let s = Setup::all_in_process().await;
    let client = s.in_process_client(Probe::default()).await;
    let wait = Duration::from_secs(20);
    for (provider, name, _) in ALL {
        s.fake.push_once(provider, Behaviour::RateLimited { wait });
        let answer = ok(&client, "ask", json!({"prompt": "hi", "provider": name})).await;
        assert!(
            answer["answer"].as_str().unwrap().ends_with("says: hi"),
            "{answer}"
        );
        let requests = s.fake.requests(provider);
        assert_eq!(requests.len(), 2, "{name}");
        assert_eq!(requests[1].at - requests[0].at, wait, "{name}");
    }
    client.cancel().await.unwrap();
}

/// `auto` follows the routing rules, and falls back when the chosen provider fails (after
/// its retries, backed off in paused time).
#[tokio::test(start_paused = true)]
async fn auto_routing_and_fallback() {
    let s = Setup::all_in_process().await;
    let client = s.in_process_client(Probe::default()).await;
    let answer = ok(
        &client,
        "ask",
        json!({"prompt": "Why does rust have lifetimes?"}),
    )
    .await;
    assert_eq!(answer["provider"], "deepseek");
    assert_eq!(answer["routed_by"], "routing rule 1 (keyword `rust`)");
    let answer = ok(
        &client,
        "ask",
        json!({"prompt": "hello", "provider": "auto"}),
    )
    .await;
    assert_eq!(answer["provider"], "anthropic");
    assert_eq!(answer["routed_by"], "first available in the routing order");

    s.fake.set(Provider::Anthropic, Behaviour::Status(529));
    let answer = ok(&client, "ask", json!({"prompt": "hello"})).await;
    assert_eq!(answer["provider"], "openai");
    let fell = answer["fell_back_from"][0].as_str().unwrap();
    assert!(
        fell.starts_with("anthropic: anthropic answered HTTP 529 (overloaded_error)"),
        "{fell}"
    );
    // A named provider is not swapped for another.
    let e = fails(
        &client,
        "ask",
        json!({"prompt": "hello", "provider": "anthropic"}),
    )
    .await;
    assert!(
        e.starts_with("anthropic: anthropic answered HTTP 529"),
        "{e}"
    );
    let e = fails(
        &client,
        "ask",
        json!({"prompt": "hello", "provider": "mistral"}),
    )
    .await;
    assert_eq!(
        e,
        "there is no provider `mistral`; configured: openai, anthropic, gemini, deepseek"
    );
    client.cancel().await.unwrap();
}

/// Malformed answers, bad keys and broken streams come back as clear errors.
#[tokio::test]
async fn bad_answers_are_clear_errors() {
    let mut s = Setup::all();
    let client = s.client(Probe::default()).await;
    for (provider, name, _) in ALL {
        s.fake.set(provider, Behaviour::Malformed);
        let e = fails(&client, "ask", json!({"prompt": "hi", "provider": name})).await;
        assert!(
            e.contains(&format!("{name} sent a malformed answer")),
            "{e}"
        );
        s.fake.set(provider, Behaviour::Echo);
    }
    client.cancel().await.unwrap();

    // A wrong key: the error says which variable to fix and never shows the key.
    for (k, v) in s.env.iter_mut() {
        if k == "ANTHROPIC_API_KEY" {
            *v = "sk-ant-wrong-secret".into();
        }
    }
    let client = s.client(Probe::default()).await;
    let e = fails(
        &client,
        "ask",
        json!({"prompt": "hi", "provider": "anthropic"}),
    )
    .await;
    assert!(
        e.contains("HTTP 401") && e.contains("check ANTHROPIC_API_KEY"),
        "{e}"
    );
    assert!(!e.contains("wrong-secret"), "{e}");
    client.cancel().await.unwrap();

    // The CLI streams; a stream that breaks off is an error after what was shown.
    s.fake.set(Provider::OpenAi, Behaviour::MidStreamError);
    let out =
        s.fx.run(&mut s.command(&["ask", "--provider", "openai", "hi"]))
            .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("openai broke off its answer"), "{stderr}");
}

/// `plugboard ask` writes the answer as it streams in; `plugboard consensus` shows each
/// answer, then the synthesis.
#[tokio::test]
async fn the_cli_streams_answers() {
    let s = Setup::all();
    for (provider, name, model) in ALL {
        let out =
            s.fx.run(&mut s.command(&["ask", "--provider", name, "Say hi"]))
                .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{name} ({model}) says: Say hi\n")
        );
        let request = &s.fake.requests(provider)[0];
        match provider {
            Provider::Gemini => assert!(request.path.contains(":streamGenerateContent?alt=sse")),
            _ => assert_eq!(request.body["stream"], true, "{name}"),
        }
    }
    s.fake.push_once(Provider::Anthropic, Behaviour::Echo);
    s.fake.push_once(
        Provider::Anthropic,
        Behaviour::Answer("They agree.\nAGREED: openai, gemini".into()),
    );
    let out =
        s.fx.run(&mut s.command(&[
            "consensus",
            "--providers",
            "anthropic,openai,gemini",
            "2+2?",
        ]))
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (_, name, model) in ALL.iter().filter(|(_, n, _)| *n != "deepseek") {
        assert!(
            stdout.contains(&format!("{name} ({model}) says: 2+2?")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("── synthesis by anthropic ──\nThey agree.\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n3 of 3 answered; agreed: openai, gemini; "),
        "{stdout}"
    );
}

/// The REST API's `ask` and `consensus`: the same tools, the same answers; with
/// `Accept: text/event-stream` each provider's answer is an event as it lands, then the result.
#[tokio::test]
async fn the_rest_api_asks_and_streams_each_consensus_answer() {
    use crate::rest::{Api, text};
    let s = Setup::all();
    let api = Api::serve(&s.fx, s.command(&["serve", "--http", "127.0.0.1:0"])).await;

    let ask = |provider: &'static str| {
        let api = &api;
        async move {
            let (status, result) = api
                .post(
                    "/api/v1/ask",
                    json!({ "prompt": "Say hi", "provider": provider }),
                )
                .await;
            assert_eq!(status, 200, "{result}");
            result
        }
    };
    let result = ask("gemini").await;
    assert!(
        text(&result).contains("gemini (gemini-test) says: Say hi"),
        "{result}"
    );
    // Its tokens, and its cost by the price table (gemini-test: $0.50 in, $4 out per million).
    let asked = &result["structuredContent"];
    let (input, output) = (tokens(asked, "input"), tokens(asked, "output"));
    assert!(input > 0.0 && output > 0.0, "{asked}");
    let gemini_cost = (input * 0.5 + output * 4.0) / 1e6;
    assert_close(asked["cost_usd"].as_f64().unwrap(), gemini_cost);
    // A model without a price: tokens counted, cost unknown rather than zero.
    let result = ask("deepseek").await;
    assert!(tokens(&result["structuredContent"], "output") > 0.0);
    assert!(
        result["structuredContent"].get("cost_usd").is_none(),
        "{result}"
    );
    // A 429 is retried (retry-after: 0), and counted.
    s.fake.push_once(
        Provider::OpenAi,
        Behaviour::Raw {
            status: 429,
            headers: vec![("retry-after".into(), "0".into())],
            body: json!({"error": {"message": "slow down", "type": "requests", "param": null,
                                   "code": "rate_limit_exceeded"}})
            .to_string(),
        },
    );
    let result = ask("openai").await;
    let asked = &result["structuredContent"];
    let openai_cost = (tokens(asked, "input") + tokens(asked, "output") * 2.0) / 1e6;
    assert_close(asked["cost_usd"].as_f64().unwrap(), openai_cost);

    s.fake.push_once(Provider::Anthropic, Behaviour::Echo);
    s.fake.push_once(
        Provider::Anthropic,
        Behaviour::Answer("They agree.\nAGREED: openai, gemini".into()),
    );
    let events = api
        .post_events(
            "/api/v1/consensus",
            json!({ "prompt": "2+2?", "providers": ["anthropic", "openai", "gemini"] }),
        )
        .await;
    let answers: Vec<&str> = events
        .iter()
        .filter(|(e, _)| e == "text")
        .filter_map(|(_, d)| d["text"].as_str())
        .collect();
    for (_, name, model) in ALL.iter().filter(|(_, n, _)| *n != "deepseek") {
        let says = format!("{name} ({model}) says: 2+2?");
        assert_eq!(
            answers.iter().filter(|a| a.contains(&says)).count(),
            1,
            "{answers:?}"
        );
    }
    assert!(
        answers
            .iter()
            .any(|a| a.contains("── synthesis by anthropic ──")),
        "{answers:?}"
    );
    let progress = events.iter().filter(|(e, _)| e == "progress").count();
    assert!(progress >= 3, "{events:?}");
    let (last, result) = events.last().unwrap();
    assert_eq!(last, "result", "{events:?}");
    assert_eq!(result["isError"], false);
    assert_eq!(result["structuredContent"]["answered"], 3, "{result}");
    assert_eq!(
        result["structuredContent"]["agreed"],
        json!(["openai", "gemini"]),
        "{result}"
    );
    // Each answer's cost, the synthesis's, and the sum of them all.
    let consensus = &result["structuredContent"];
    let price = |provider: &str| match provider {
        "openai" => (1.0, 2.0),
        "anthropic" => (3.0, 15.0),
        "gemini" => (0.5, 4.0),
        other => panic!("{other}"),
    };
    let mut spent = std::collections::BTreeMap::from([
        ("gemini", gemini_cost),
        ("openai", openai_cost),
        ("anthropic", 0.0),
    ]);
    let (mut input, mut output, mut cost) = (0.0, 0.0, 0.0);
    let synthesis = &consensus["synthesis"];
    let parts = consensus["opinions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["provider"].as_str().unwrap(), o));
    for (provider, part) in parts.chain([("anthropic", synthesis)]) {
        let (i, o) = (tokens(part, "input"), tokens(part, "output"));
        assert!(o > 0.0, "{part}");
        let (pi, po) = price(provider);
        let c = (i * pi + o * po) / 1e6;
        assert_close(part["cost_usd"].as_f64().unwrap(), c);
        *spent.get_mut(provider).unwrap() += c;
        (input, output, cost) = (input + i, output + o, cost + c);
    }
    assert_eq!(synthesis["by"], "anthropic", "{synthesis}");
    assert_eq!(tokens(consensus, "input"), input, "{consensus}");
    assert_eq!(tokens(consensus, "output"), output, "{consensus}");
    assert_close(consensus["cost_usd"].as_f64().unwrap(), cost);

    // The totals: per provider in the providers report, and in the metrics.
    let (status, report) = api.get("/api/v1/providers").await;
    assert_eq!(status, 200, "{report}");
    let stats = |name: &str| {
        report["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {report}"))
            .clone()
    };
    assert_eq!(
        stats("gemini")["price"],
        json!({"input": 0.5, "output": 4.0})
    );
    assert!(stats("deepseek").get("price").is_none(), "{report}");
    assert!(
        stats("deepseek")["stats"].get("cost_usd").is_none(),
        "{report}"
    );
    assert!(
        stats("deepseek")["stats"]["output_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    for (provider, total) in &spent {
        assert_close(
            stats(provider)["stats"]["cost_usd"].as_f64().unwrap(),
            *total,
        );
    }
    assert_close(
        report["totals"]["cost_usd"].as_f64().unwrap(),
        spent.values().sum(),
    );
    let metrics = api.metrics().await;
    for (provider, total) in &spent {
        let label = format!("provider=\"{provider}\"");
        assert_close(
            metrics.sample("plugboard_provider_cost_usd", &[&label]),
            *total,
        );
    }
    assert_eq!(
        metrics.sample(
            "plugboard_provider_retries_total",
            &["provider=\"openai\"", "reason=\"rate_limited\""]
        ),
        1.0
    );
}

fn tokens(part: &Value, direction: &str) -> f64 {
    part[format!("{direction}_tokens")]
        .as_u64()
        .unwrap_or_else(|| panic!("{direction}_tokens: {part}")) as f64
}

fn assert_close(got: f64, want: f64) {
    assert!(
        (got - want).abs() <= want.abs() * 1e-9 + 1e-15,
        "{got} != {want}"
    );
}

/// A 429 whose hint (`retry-after`, `retry-after-ms`, Gemini's `retryDelay`) is too large
/// for any clock: the provider is reported with the wait it asked for, not retried, and the
/// others' answers are all in the result. A NaN or negative hint is no hint: backed off and
/// retried. (Before: `Duration::from_secs_f64` panicked and the consensus lost everything.)
#[tokio::test(start_paused = true)]
async fn impossible_retry_hints_lose_no_answer() {
    let s = Setup::in_process(&["openai", "anthropic", "gemini", "deepseek"], "").await;
    let header = |name: &str, value: &str| Behaviour::Raw {
        status: 429,
        headers: vec![(name.to_owned(), value.to_owned())],
        body: json!({"error": {"message": "slow down", "type": "requests", "param": null,
                               "code": "rate_limit_exceeded"}})
        .to_string(),
    };
    s.fake
        .push_once(Provider::OpenAi, header("retry-after", "1e300"));
    s.fake.push_once(
        Provider::Gemini,
        Behaviour::Raw {
            status: 429,
            headers: Vec::new(),
            body: json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED",
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                             "retryDelay": "99999999999999999999999s"}]}})
            .to_string(),
        },
    );
    let client = s.in_process_client(Probe::default()).await;
    let c = ok(&client, "consensus", json!({"prompt": "2+2?"})).await;
    let by = |name: &str| {
        c["opinions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["provider"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(c["answered"], 2, "{c}");
    assert_eq!(
        by("anthropic")["answer"],
        "anthropic (claude-test) says: 2+2?"
    );
    assert_eq!(
        by("deepseek")["answer"],
        "deepseek (deepseek-test) says: 2+2?"
    );
    for name in ["openai", "gemini"] {
        let e = by(name)["error"].as_str().unwrap().to_owned();
        assert!(
            e.contains("HTTP 429") && e.contains("(asked to wait more than a century)"),
            "{name}: {e}"
        );
        assert_eq!(
            s.fake.request_count(provider(name)),
            1,
            "{name} was retried"
        );
    }

    s.fake
        .push_once(Provider::Anthropic, header("retry-after-ms", "1e30"));
    s.fake
        .push_once(Provider::OpenAi, header("retry-after", "NaN"));
    s.fake
        .push_once(Provider::DeepSeek, header("retry-after", "-5"));
    let c = ok(&client, "consensus", json!({"prompt": "3+3?"})).await;
    assert_eq!(c["answered"], 3, "{c}");
    let anthropic = c["opinions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["provider"] == "anthropic")
        .unwrap()["error"]
        .clone();
    assert!(
        anthropic
            .as_str()
            .unwrap()
            .contains("asked to wait more than a century"),
        "{anthropic}"
    );
    // NaN and negative hints were backed off and retried once, after the first backoff of
    // the schedule (500 ms, jittered to between half and all of it).
    for provider in [Provider::OpenAi, Provider::DeepSeek] {
        let requests = s.fake.requests(provider);
        assert_eq!(requests.len(), 3, "{provider:?}");
        let backoff = requests[2].at - requests[1].at;
        assert!(
            (Duration::from_millis(250)..=Duration::from_millis(500)).contains(&backoff),
            "{provider:?}: {backoff:?}"
        );
    }
    client.cancel().await.unwrap();
}

fn provider(name: &str) -> Provider {
    ALL.iter().find(|(_, n, _)| *n == name).unwrap().0
}

/// An upstream error that repeats the request's headers never shows the key: not in the
/// tool's error, not on the CLI, not in the server's log.
#[tokio::test]
async fn an_error_echoing_the_headers_shows_no_key() {
    let s = Setup::all();
    let client = s.client(Probe::default()).await;
    for (provider, name, _) in ALL {
        s.fake.set(provider, Behaviour::EchoHeaders(400));
        let e = fails(&client, "ask", json!({"prompt": "hi", "provider": name})).await;
        assert!(e.contains("bad request; headers: "), "{name}: {e}");
        assert!(!e.contains(KEY), "{name}: {e}");
        assert!(e.contains("[redacted]"), "{name}: {e}");
    }
    client.cancel().await.unwrap();
    // Streamed on the CLI, and logged at debug level: the key is in neither.
    let out =
        s.fx.run(
            s.command(&["ask", "--provider", "openai", "hi"])
                .env("RUST_LOG", "debug"),
        )
        .await;
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("bad request; headers: "), "{all}");
    assert!(!all.contains(KEY), "{all}");
}

/// Only the variables the manifest declares are read: a custom provider whose key variable
/// is set in the environment but not declared is unavailable, and says what to declare.
/// (Before: read from the whole environment, invisible to `check` and to a reload.)
#[tokio::test]
async fn an_undeclared_key_variable_is_not_read() {
    let s = Setup::new(&[], "");
    let local = format!(
        "[settings.providers.local]\nformat = \"openai\"\nmodel = \"local-test\"\n\
         base_url = \"{}\"\napi_key_env = \"LOCAL_LLM_KEY\"\n",
        s.fake.openai_base()
    );
    s.fx.manifest("agents", &format!("{}\n{local}", manifest("")));
    let mut cmd = s.command(&["check"]);
    cmd.env("LOCAL_LLM_KEY", KEY);
    let out = s.fx.run(&mut cmd).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "local      not available: LOCAL_LLM_KEY is not read: declare [env.LOCAL_LLM_KEY] \
             in the agents manifest"
        ),
        "{stdout}"
    );

    // Declared, it is read (and `check` reports it).
    let shipped = manifest("");
    let (head, settings) = shipped.split_once("\n[settings]").unwrap();
    s.fx.manifest(
        "agents",
        &format!("{head}\n[env.LOCAL_LLM_KEY]\nsecret = true\n\n[settings]{settings}\n{local}"),
    );
    let mut cmd = s.command(&["ask", "--provider", "local", "hi"]);
    cmd.env("LOCAL_LLM_KEY", KEY);
    let out = s.fx.run(&mut cmd).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "openai (local-test) says: hi\n"
    );
}
