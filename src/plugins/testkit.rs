//! `testkit`: tools for checking a client and the server itself — echo, a no-op for latency
//! measurements, a slow tool with progress, logs and cancellation, and deliberate failures.
//! Off unless a manifest enables it (the test suite's manifests do; see tests/fixtures).

#![allow(deprecated)] // rmcp marks MCP logging deprecated (SEP-2577); clients still use it.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use rmcp::model::{CallToolResult, ContentBlock, LoggingLevel};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::plugin::{
    Hints, ModelRequest, Models, Plugin, PluginError, PluginEvents, PluginSetup, ToolContext,
    ToolDef, ToolError,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    /// Fail initialisation with this reason (to test that other plugins keep serving).
    fail_init: Option<String>,
    /// Panic during initialisation.
    panic_init: bool,
    /// Also offer an echo tool of this name (to test that a bad name is refused alone).
    extra_tool: Option<String>,
    /// Offer `outage`: the plugin reports itself down, and back after a while.
    outage_tool: bool,
    /// Offer `complete`: a completion from the host's model service.
    model_tool: bool,
}

pub fn init(setup: PluginSetup) -> BoxFuture<'static, Result<Arc<dyn Plugin>, PluginError>> {
    Box::pin(async move {
        let settings: Settings = setup.settings()?;
        if let Some(reason) = settings.fail_init {
            return Err(PluginError::Init(reason));
        }
        if settings.panic_init {
            panic!("testkit was asked to panic during init");
        }
        Ok(Arc::new(Testkit {
            extra_tool: settings.extra_tool,
            outage: settings.outage_tool.then(|| setup.events.clone()),
            models: settings.model_tool.then(|| setup.models()),
        }) as Arc<dyn Plugin>)
    })
}

struct Testkit {
    extra_tool: Option<String>,
    /// Set when the `outage` tool is offered: how the plugin reports its status.
    outage: Option<PluginEvents>,
    /// Set when the `complete` tool is offered.
    models: Option<Models>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CompleteArgs {
    prompt: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct OutageArgs {
    /// Why the plugin is down (shown in its status).
    reason: String,
    /// Milliseconds until it reports it is back.
    back_after_ms: u64,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct EchoArgs {
    /// Text to send back.
    text: String,
    /// How many times to repeat it (default 1).
    #[serde(default)]
    repeat: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SlowArgs {
    /// Number of steps; one progress notification each.
    steps: u32,
    /// Milliseconds per step.
    step_ms: u64,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PanicArgs {
    /// The panic message.
    message: String,
}

impl Plugin for Testkit {
    fn tools(&self) -> Vec<ToolDef> {
        vec![
            ToolDef::new(
                "echo",
                "Send the text back, optionally repeated.",
                Hints::read_only(),
                echo,
            ),
            ToolDef::new(
                "noop",
                "Do nothing and answer `ok` (for latency measurements).",
                Hints::read_only(),
                noop,
            ),
            ToolDef::new(
                "slow",
                "Take `steps` steps of `step_ms` milliseconds, reporting progress and logging each step; stops when cancelled.",
                Hints::read_only(),
                slow,
            ),
            ToolDef::new(
                "panic",
                "Panic inside the handler (to check that the server survives).",
                Hints::read_only(),
                panic,
            ),
        ]
        .into_iter()
        .chain(self.extra_tool.iter().map(|name| {
            ToolDef::new(name, "Echo under another name.", Hints::read_only(), echo)
        }))
        .chain(self.outage.clone().map(|events| {
            ToolDef::new(
                "outage",
                "Report this plugin down (its tools are withheld), and back after `back_after_ms`.",
                Hints::read_only(),
                move |args: OutageArgs, _cx: ToolContext| {
                    let events = events.clone();
                    async move {
                        events.went_down(args.reason);
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(args.back_after_ms)).await;
                            events.came_back();
                        });
                        Ok(CallToolResult::success(vec![ContentBlock::text("down")]))
                    }
                },
            )
        }))
        .chain(self.models.clone().map(|models| {
            ToolDef::new(
                "complete",
                "A completion from the host's model service: `provider: text`.",
                Hints::read_only(),
                move |args: CompleteArgs, cx: ToolContext| {
                    let models = models.clone();
                    async move {
                        let request = ModelRequest {
                            prompt: args.prompt,
                            ..ModelRequest::default()
                        };
                        let reply = models.complete(request, &cx).await?;
                        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
                            "{}: {}",
                            reply.provider, reply.text
                        ))]))
                    }
                },
            )
        }))
        .collect()
    }
}

async fn echo(args: EchoArgs, _cx: ToolContext) -> Result<CallToolResult, ToolError> {
    let n = args.repeat.unwrap_or(1);
    if n > 1000 {
        return Err(ToolError::InvalidArguments(
            "`repeat` must be at most 1000".into(),
        ));
    }
    Ok(CallToolResult::success(vec![ContentBlock::text(
        args.text.repeat(n as usize),
    )]))
}

async fn noop(_args: NoArgs, _cx: ToolContext) -> Result<CallToolResult, ToolError> {
    Ok(CallToolResult::success(vec![ContentBlock::text("ok")]))
}

async fn slow(args: SlowArgs, cx: ToolContext) -> Result<CallToolResult, ToolError> {
    for step in 1..=args.steps {
        tokio::select! {
            _ = cx.cancellation().cancelled() => {
                return Err(ToolError::Failed(format!("cancelled at step {step} of {}", args.steps)));
            }
            _ = tokio::time::sleep(Duration::from_millis(args.step_ms)) => {}
        }
        cx.progress(step as f64, Some(args.steps as f64), format!("step {step}"))
            .await;
        cx.log(LoggingLevel::Info, serde_json::json!({ "step": step }))
            .await;
    }
    Ok(CallToolResult::success(vec![ContentBlock::text(format!(
        "completed {} steps",
        args.steps
    ))]))
}

async fn panic(args: PanicArgs, _cx: ToolContext) -> Result<CallToolResult, ToolError> {
    panic!("{}", args.message)
}
