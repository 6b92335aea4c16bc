//! The plugin core through an rmcp client, in process over a duplex (time paused where it
//! matters): the catalog of kinds, a tool refused alone, a plugin that goes down and comes
//! back, observers of every call, caller scopes, faces without a client.

#![allow(deprecated)] // sampling types are marked deprecated in rmcp (SEP-2577).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use plugboard::{
    plugin::{
        CallFinished, CallObserver, Caller, Catalog, Face, Filters, Manager, Plugin, PluginError,
        PluginKind, PluginSetup, ToolContext, ToolDef,
    },
    server::McpHandler,
};
use rmcp::model::{CallToolRequestParams, CreateMessageRequestParams, SamplingMessage};

use crate::{
    inproc::{Server, client, connect},
    support::{Fixture, Recorder, args, text},
};

fn call(name: &str, arguments: serde_json::Value) -> CallToolRequestParams {
    CallToolRequestParams::new(name.to_owned()).with_arguments(args(arguments))
}

#[tokio::test]
async fn a_badly_named_tool_is_refused_alone() {
    let fx = Fixture::empty();
    fx.manifest(
        "testkit",
        "name = \"testkit\"\nkind = \"builtin\"\n[settings]\nextra_tool = \"bad name!\"\n",
    );
    let manager = Server::new(&fx)
        .call_timeout(Duration::from_secs(30))
        .start()
        .await;
    let status = &manager.statuses()[0];
    assert_eq!(
        status.status,
        "ready (1 tool refused: tool name `testkit_bad name!` has ` `; only a-z, A-Z, 0-9, `_` and `-` are allowed)"
    );
    assert_eq!(status.refused.len(), 1);
    let client = client(manager, Face::Stdio).await;
    let names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "testkit_echo",
            "testkit_noop",
            "testkit_slow",
            "testkit_panic"
        ]
    );
    let echoed = client
        .call_tool(call(
            "testkit_echo",
            serde_json::json!({"text": "still here"}),
        ))
        .await
        .unwrap();
    assert_eq!(text(&echoed), "still here");
}

#[tokio::test(start_paused = true)]
async fn a_plugin_that_goes_down_withholds_its_tools_until_it_is_back() {
    let fx = Fixture::empty();
    fx.manifest(
        "testkit",
        "name = \"testkit\"\nkind = \"builtin\"\n[settings]\noutage_tool = true\n",
    );
    fx.manifest(
        "other",
        "name = \"other\"\nkind = \"builtin\"\nbuiltin = \"testkit\"\n",
    );
    let manager = Server::new(&fx)
        .call_timeout(Duration::from_secs(30))
        .start()
        .await;
    let client = client(manager.clone(), Face::Stdio).await;
    let tools = || async {
        client
            .list_all_tools()
            .await
            .unwrap()
            .into_iter()
            .filter(|t| t.name.starts_with("testkit_"))
            .count()
    };
    let published = tools().await;
    assert!(published > 0);
    let changed = client.service().list_changed.clone();
    let down = client
        .call_tool(call(
            "testkit_outage",
            serde_json::json!({"reason": "the upstream died", "back_after_ms": 60_000}),
        ))
        .await
        .unwrap();
    assert_eq!(text(&down), "down");
    changed.notified().await;
    assert_eq!(tools().await, 0, "a down plugin's tools are withheld");
    let status = |name: &str| {
        manager
            .statuses()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap()
            .status
    };
    assert_eq!(status("testkit"), "down (the upstream died)");
    assert_eq!(status("other"), "ready", "the others are untouched");
    let refused = client
        .call_tool(call("testkit_echo", serde_json::json!({"text": "x"})))
        .await
        .unwrap();
    assert_eq!(refused.is_error, Some(true));
    // A minute later (paused time) it reports it is back.
    changed.notified().await;
    assert_eq!(tools().await, published);
    assert_eq!(status("testkit"), "ready");
}

/// One finished call: (plugin, tool, face, client, outcome).
type Call = (String, String, Face, Option<String>, String);

/// Every call the pipeline finished.
#[derive(Default)]
struct Seen(Mutex<Vec<Call>>);

impl CallObserver for Seen {
    fn finished(&self, call: &CallFinished<'_>) {
        self.0.lock().unwrap().push((
            call.plugin.to_owned(),
            call.tool.to_owned(),
            call.caller.face,
            call.caller.client.as_deref().map(str::to_owned),
            call.outcome.as_str().to_owned(),
        ));
    }
}

#[tokio::test(start_paused = true)]
async fn observers_see_every_call_with_its_face_client_and_outcome() {
    let fx = Fixture::empty();
    fx.manifest("testkit", "name = \"testkit\"\nkind = \"builtin\"\n");
    let manager = Server::new(&fx)
        .call_timeout(Duration::from_secs(5))
        .start()
        .await;
    let seen = Arc::new(Seen::default());
    manager.observers().add(seen.clone());
    let client = client(manager.clone(), Face::Http).await;
    for request in [
        call("testkit_echo", serde_json::json!({"text": "hi"})),
        call("testkit_echo", serde_json::json!({"text": 5})),
        call("testkit_nothing", serde_json::json!({})),
        call("testkit_panic", serde_json::json!({"message": "boom"})),
        call(
            "testkit_slow",
            serde_json::json!({"steps": 10, "step_ms": 1000}),
        ),
        call(
            "testkit_echo",
            serde_json::json!({"text": "x", "repeat": 5000}),
        ),
    ] {
        let _ = client.call_tool(request).await.unwrap();
    }
    // The CLI's face, straight through the manager.
    let _ = manager
        .call(
            "testkit_noop",
            Some(args(serde_json::json!({}))),
            ToolContext::detached(),
        )
        .await;
    let seen = seen.0.lock().unwrap().clone();
    let outcomes: Vec<(&str, &str, Face, &str)> = seen
        .iter()
        .map(|(p, t, f, _, o)| (p.as_str(), t.as_str(), *f, o.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("testkit", "testkit_echo", Face::Http, "ok"),
            ("testkit", "testkit_echo", Face::Http, "invalid_arguments"),
            ("", "testkit_nothing", Face::Http, "unknown_tool"),
            ("testkit", "testkit_panic", Face::Http, "panic"),
            ("testkit", "testkit_slow", Face::Http, "timeout"),
            // The handler's own refusal of an argument (`repeat` too large) is a bad argument
            // too (the REST API's 400), not a failure.
            ("testkit", "testkit_echo", Face::Http, "invalid_arguments"),
            ("testkit", "testkit_noop", Face::Cli, "ok"),
        ]
    );
    let client_name = seen[0].3.as_deref().unwrap_or_default();
    assert!(!client_name.is_empty(), "the client's name is recorded");
}

#[tokio::test]
async fn a_caller_scope_narrows_what_it_may_call() {
    let fx = Fixture::empty();
    fx.manifest("testkit", "name = \"testkit\"\nkind = \"builtin\"\n");
    let manager = Server::new(&fx)
        .call_timeout(Duration::from_secs(30))
        .start()
        .await;
    let scoped = Caller::new(Face::Rest).with_scope(Filters {
        tools: vec!["testkit_noop".into()],
        ..Filters::default()
    });
    let cx = || ToolContext::detached().with_caller(scoped.clone());
    let noop = manager
        .call("testkit_noop", Some(args(serde_json::json!({}))), cx())
        .await;
    assert_ne!(noop.is_error, Some(true), "{noop:?}");
    let echo = manager
        .call(
            "testkit_echo",
            Some(args(serde_json::json!({"text": "x"}))),
            cx(),
        )
        .await;
    assert_eq!(echo.is_error, Some(true));
    assert_eq!(
        text(&echo),
        "unknown tool `testkit_echo`; did you mean testkit_noop?",
        "only the tools in the caller's scope are named"
    );
}

#[tokio::test]
async fn a_call_without_a_client_says_why_it_cannot_sample() {
    let params = CreateMessageRequestParams::new(vec![SamplingMessage::user_text("hi")], 10);
    let from_ask = ToolContext::detached().inner(Face::Agent);
    let error = from_ask
        .sample(params.clone())
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "sampling needs an MCP client that can answer it; it was made by a model inside `ask`, which has no client to ask"
    );
    let from_cli = ToolContext::detached();
    let error = from_cli
        .elicit(
            "name?",
            serde_json::json!({"type": "object", "properties": {}}),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("from the command line"), "{error}");
}

/// A kind of the test's own: kinds are catalog entries, not special cases.
struct Echoes;

impl PluginKind for Echoes {
    fn check(&self, manifest: &plugboard::plugin::Manifest) -> Result<(), String> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Table {
            word: String,
        }
        manifest
            .kind_table::<Table>()?
            .map(|_| ())
            .ok_or_else(|| "needs an [echoes] table".into())
    }

    fn start(
        &self,
        setup: PluginSetup,
    ) -> BoxFuture<'static, Result<Arc<dyn Plugin>, PluginError>> {
        Box::pin(async move {
            #[derive(serde::Deserialize)]
            struct Table {
                word: String,
            }
            let table: Table = setup
                .kind_table()?
                .ok_or_else(|| PluginError::Init("no table".into()))?;
            Ok(Arc::new(Word(table.word)) as Arc<dyn Plugin>)
        })
    }
}

/// A kind whose plugins start only when the test lets them.
struct Gated {
    entered: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

impl PluginKind for Gated {
    fn start(
        &self,
        _setup: PluginSetup,
    ) -> BoxFuture<'static, Result<Arc<dyn Plugin>, PluginError>> {
        let (entered, release) = (self.entered.clone(), self.release.clone());
        Box::pin(async move {
            entered.notify_one();
            release.notified().await;
            Ok(Arc::new(Word("late".into())) as Arc<dyn Plugin>)
        })
    }
}

/// While a reload starts a slow plugin, every plugin that is not changing stays listed and
/// callable (a status read in that moment once saw no plugins at all).
#[tokio::test]
async fn a_reload_in_progress_hides_no_other_plugin() {
    let fx = Fixture::empty();
    fx.manifest(
        "hello",
        "name = \"hello\"\nkind = \"echoes\"\n[echoes]\nword = \"hello\"\n",
    );
    let entered = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let catalog = Catalog::new().with_kind("echoes", Echoes).with_kind(
        "gated",
        Gated {
            entered: entered.clone(),
            release: release.clone(),
        },
    );
    let manager = Server::new(&fx).catalog(catalog).start().await;
    fx.manifest("slow", "name = \"slow\"\nkind = \"gated\"\n");
    let reload = tokio::spawn({
        let manager = manager.clone();
        async move { manager.reload().await }
    });
    entered.notified().await;
    let listed: Vec<(String, String)> = manager
        .statuses()
        .into_iter()
        .map(|s| (s.name, s.status))
        .collect();
    assert_eq!(listed, [("hello".to_owned(), "ready".to_owned())]);
    let said = manager
        .call(
            "hello_say",
            Some(args(serde_json::json!({}))),
            ToolContext::detached(),
        )
        .await;
    assert_eq!(text(&said), "hello");
    release.notify_one();
    reload.await.unwrap();
    let names: Vec<String> = manager.statuses().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["hello", "slow"]);
}

struct Word(String);

impl Plugin for Word {
    fn tools(&self) -> Vec<ToolDef> {
        let word = self.0.clone();
        vec![ToolDef::new(
            "say",
            "Say the word.",
            plugboard::plugin::Hints::read_only(),
            move |_: serde_json::Map<String, serde_json::Value>, _cx: ToolContext| {
                let word = word.clone();
                async move {
                    Ok(rmcp::model::CallToolResult::success(vec![
                        rmcp::model::ContentBlock::text(word),
                    ]))
                }
            },
        )]
    }
}

#[tokio::test]
async fn kinds_come_from_the_catalog() {
    let fx = Fixture::empty();
    fx.manifest(
        "hello",
        "name = \"hello\"\nkind = \"echoes\"\n[echoes]\nword = \"hello\"\n",
    );
    fx.manifest(
        "typo",
        "name = \"typo\"\nkind = \"echoes\"\n[echoes]\nword = \"x\"\nwrod = 1\n",
    );
    fx.manifest("wasm", "name = \"wasm\"\nkind = \"wasm\"\n");
    let catalog = Catalog::new().with_kind("echoes", Echoes);
    let manager = Server::new(&fx).catalog(catalog).start().await;
    let status = |name: &str| {
        manager
            .statuses()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap()
            .status
    };
    assert_eq!(status("hello"), "ready");
    let typo = status("typo");
    assert!(
        typo.starts_with("failed ([echoes] line 5, column 1: unknown field `wrod`"),
        "{typo}"
    );
    let wasm = status("wasm");
    assert!(
        wasm.ends_with("no plugin kind `wasm` in this build (kinds: echoes))"),
        "{wasm}"
    );
    let said = manager
        .call(
            "hello_say",
            Some(args(serde_json::json!({}))),
            ToolContext::detached(),
        )
        .await;
    assert_eq!(text(&said), "hello");
}

#[tokio::test]
async fn a_plugin_asks_the_hosts_models_without_knowing_who_answers() {
    let fake = crate::fake_llm::FakeLlm::start().await;
    let fx = Fixture::empty();
    fx.manifest(
        "testkit",
        "name = \"testkit\"\nkind = \"builtin\"\n[settings]\nmodel_tool = true\n",
    );
    let complete = |manager: Arc<Manager>| async move {
        let result = manager
            .call(
                "testkit_complete",
                Some(args(serde_json::json!({"prompt": "Name a colour."}))),
                ToolContext::detached(),
            )
            .await;
        (result.is_error == Some(true), text(&result))
    };
    // No provider and no client that samples: the error says how to get a model.
    let alone = Server::new(&fx)
        .call_timeout(Duration::from_secs(30))
        .start()
        .await;
    let (failed, message) = complete(alone).await;
    assert!(failed);
    assert!(message.contains("no model is available"), "{message}");

    // With the agents plugin and a provider, the provider answers.
    fx.manifest("agents", include_str!("../../plugins/agents/plugin.toml"));
    let with_agents = Server::new(&fx)
        .env("OPENAI_API_KEY", crate::fake_llm::KEY)
        .env("OPENAI_BASE_URL", &fake.openai_base())
        .env("OPENAI_MODEL", "gpt-test")
        .start()
        .await;
    let (failed, answer) = complete(with_agents.clone()).await;
    assert!(!failed, "{answer}");
    assert!(
        answer.starts_with("openai: ") && answer.len() > "openai: ".len(),
        "{answer}"
    );
    // The service goes with its plugin.
    fx.remove_manifest("agents");
    with_agents.reload().await;
    let (failed, message) = complete(with_agents).await;
    assert!(
        failed && message.contains("no model is available"),
        "{message}"
    );
}

#[tokio::test]
async fn a_scoped_connection_lists_and_calls_only_its_tools() {
    let fx = Fixture::empty();
    fx.manifest("testkit", "name = \"testkit\"\nkind = \"builtin\"\n");
    let manager = Server::new(&fx)
        .call_timeout(Duration::from_secs(30))
        .start()
        .await;
    let handler = McpHandler::new(manager).on(Face::Http).scoped(Filters {
        read_only: true,
        exclude_tools: vec!["testkit_panic".into()],
        ..Filters::default()
    });
    let client = connect(handler, Recorder::default()).await;
    let names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, ["testkit_echo", "testkit_noop", "testkit_slow"]);
    let hidden = client
        .call_tool(call("testkit_panic", serde_json::json!({"message": "x"})))
        .await
        .unwrap();
    assert_eq!(hidden.is_error, Some(true));
    assert!(
        text(&hidden).starts_with("unknown tool `testkit_panic`"),
        "{}",
        text(&hidden)
    );
}
