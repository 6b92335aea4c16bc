//! `conformance`: the fixtures the official MCP conformance suite
//! (`@modelcontextprotocol/conformance`) expects a server to offer — tools, resources,
//! prompts and completions with the exact names and contents its scenarios describe.
//!
//! It exists to prove that the plugin contract carries the whole protocol: nothing in the
//! server core knows about the suite. Off unless a manifest enables it; the suite's manifest
//! is `tests/conformance/plugins/conformance/plugin.toml` (prefix empty, so the names are the
//! suite's own).

#![allow(deprecated)] // rmcp marks logging and sampling deprecated (SEP-2577); clients use them.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::future::BoxFuture;
use rmcp::model::{
    CallToolResult, ContentBlock, CreateMessageRequestParams, LoggingLevel, PromptArgument,
    PromptMessage, Resource, ResourceContents, ResourceTemplate, Role, SamplingMessage,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::plugin::{
    Completion, Hints, Plugin, PluginError, PluginEvents, PluginSetup, PromptDef, ResourceDef,
    TemplateDef, ToolContext, ToolDef, ToolError,
};

/// A 1x1 red PNG.
pub const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
/// Eight samples of 8-bit mono silence at 8 kHz.
pub const WAV: &str = "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgICAgICAgA==";

pub const WATCHED: &str = "test://watched-resource";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    /// How often `test://watched-resource` changes (and subscribers are told), in ms.
    watched_interval_ms: u64,
    /// How long `test_reconnection` keeps working after releasing its stream, in ms.
    reconnection_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            watched_interval_ms: 1000,
            reconnection_ms: 200,
        }
    }
}

pub fn init(setup: PluginSetup) -> BoxFuture<'static, Result<Arc<dyn Plugin>, PluginError>> {
    Box::pin(async move {
        let settings: Settings = setup.settings()?;
        let plugin = Conformance {
            version: Arc::new(AtomicU64::new(1)),
            reconnection: Duration::from_millis(settings.reconnection_ms),
            stop: CancellationToken::new(),
        };
        if settings.watched_interval_ms > 0 {
            plugin.watch(
                setup.events.clone(),
                Duration::from_millis(settings.watched_interval_ms),
            );
        }
        Ok(Arc::new(plugin) as Arc<dyn Plugin>)
    })
}

struct Conformance {
    /// The watched resource's current version; it changes on a timer.
    version: Arc<AtomicU64>,
    reconnection: Duration,
    stop: CancellationToken,
}

impl Conformance {
    fn watch(&self, events: PluginEvents, every: Duration) {
        let (version, stop) = (self.version.clone(), self.stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {
                        version.fetch_add(1, Ordering::Relaxed);
                        events.resource_updated(WATCHED);
                    }
                }
            }
        });
    }
}

#[derive(Deserialize, JsonSchema)]
struct NoArgs {}

#[derive(Deserialize, JsonSchema)]
struct SamplingArgs {
    /// The prompt to send to the client's model.
    prompt: String,
}

#[derive(Deserialize, JsonSchema)]
struct ElicitationArgs {
    /// The message to show the user.
    message: String,
}

fn text(t: impl Into<String>) -> Result<CallToolResult, ToolError> {
    Ok(CallToolResult::success(vec![ContentBlock::text(t)]))
}

async fn pause(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

async fn elicited(
    cx: &ToolContext,
    message: &str,
    schema: serde_json::Value,
) -> Result<String, ToolError> {
    let answer = cx.elicit(message, schema).await?;
    let action = serde_json::to_value(&answer.action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    Ok(format!(
        "action={action}, content={}",
        answer.content.unwrap_or(json!({}))
    ))
}

impl Plugin for Conformance {
    fn tools(&self) -> Vec<ToolDef> {
        let ro = Hints::read_only();
        let reconnection = self.reconnection;
        vec![
            ToolDef::new(
                "test_simple_text",
                "Returns simple text.",
                ro,
                |_: NoArgs, _| async { text("This is a simple text response for testing.") },
            ),
            ToolDef::new(
                "test_image_content",
                "Returns a PNG image.",
                ro,
                |_: NoArgs, _| async {
                    Ok(CallToolResult::success(vec![ContentBlock::image(
                        PNG,
                        "image/png",
                    )]))
                },
            ),
            ToolDef::new(
                "test_audio_content",
                "Returns WAV audio.",
                ro,
                |_: NoArgs, _| async {
                    Ok(CallToolResult::success(vec![ContentBlock::audio(
                        WAV,
                        "audio/wav",
                    )]))
                },
            ),
            ToolDef::new(
                "test_embedded_resource",
                "Returns an embedded text resource.",
                ro,
                |_: NoArgs, _| async {
                    Ok(CallToolResult::success(vec![ContentBlock::resource(
                        ResourceContents::text(
                            "This is an embedded resource content.",
                            "test://embedded-resource",
                        )
                        .with_mime_type("text/plain"),
                    )]))
                },
            ),
            ToolDef::new(
                "test_multiple_content_types",
                "Returns text, an image and an embedded resource.",
                ro,
                |_: NoArgs, _| async {
                    Ok(CallToolResult::success(vec![
                        ContentBlock::text("Multiple content types test:"),
                        ContentBlock::image(PNG, "image/png"),
                        ContentBlock::resource(
                            ResourceContents::text(
                                json!({"test": "data", "value": 123}).to_string(),
                                "test://mixed-content-resource",
                            )
                            .with_mime_type("application/json"),
                        ),
                    ]))
                },
            ),
            ToolDef::new(
                "test_tool_with_logging",
                "Sends three log messages while it runs.",
                ro,
                |_: NoArgs, cx: ToolContext| async move {
                    cx.log(LoggingLevel::Info, json!("Tool execution started"))
                        .await;
                    pause(50).await;
                    cx.log(LoggingLevel::Info, json!("Tool processing data"))
                        .await;
                    pause(50).await;
                    cx.log(LoggingLevel::Info, json!("Tool execution completed"))
                        .await;
                    text("Tool with logging executed successfully")
                },
            ),
            ToolDef::new(
                "test_error_handling",
                "Always fails.",
                ro,
                |_: NoArgs, _| async {
                    Err(ToolError::Failed(
                        "This tool intentionally returns an error for testing".into(),
                    ))
                },
            ),
            ToolDef::new(
                "test_tool_with_progress",
                "Reports progress 0, 50 and 100 of 100.",
                ro,
                |_: NoArgs, cx: ToolContext| async move {
                    cx.progress(0.0, Some(100.0), "started").await;
                    pause(50).await;
                    cx.progress(50.0, Some(100.0), "halfway").await;
                    pause(50).await;
                    cx.progress(100.0, Some(100.0), "done").await;
                    text("Tool with progress executed successfully")
                },
            ),
            ToolDef::new(
                "test_sampling",
                "Asks the client's model to answer a prompt.",
                ro,
                |args: SamplingArgs, cx: ToolContext| async move {
                    let params = CreateMessageRequestParams::new(
                        vec![SamplingMessage::user_text(args.prompt)],
                        100,
                    );
                    let answer = cx.sample(params).await?;
                    let reply = answer
                        .message
                        .content
                        .into_vec()
                        .iter()
                        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                        .collect::<Vec<_>>()
                        .join("\n");
                    text(format!("LLM response: {reply}"))
                },
            ),
            ToolDef::new(
                "test_elicitation",
                "Asks the user for a username and an email address.",
                ro,
                |args: ElicitationArgs, cx: ToolContext| async move {
                    let schema = json!({
                        "type": "object",
                        "properties": {
                            "username": {"type": "string", "description": "User's response"},
                            "email": {"type": "string", "description": "User's email address"}
                        },
                        "required": ["username", "email"]
                    });
                    text(format!(
                        "User response: {}",
                        elicited(&cx, &args.message, schema).await?
                    ))
                },
            ),
            ToolDef::new(
                "test_elicitation_sep1034_defaults",
                "Asks the user for values that all have defaults (SEP-1034).",
                ro,
                |_: NoArgs, cx: ToolContext| async move {
                    let schema = json!({
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "description": "User name", "default": "John Doe"},
                            "age": {"type": "integer", "description": "User age", "default": 30},
                            "score": {"type": "number", "description": "User score", "default": 95.5},
                            "status": {
                                "type": "string",
                                "description": "User status",
                                "enum": ["active", "inactive", "pending"],
                                "default": "active"
                            },
                            "verified": {"type": "boolean", "description": "Verification status", "default": true}
                        },
                        "required": []
                    });
                    let message =
                        "Test client default value handling - please accept with defaults";
                    text(format!(
                        "Elicitation completed: {}",
                        elicited(&cx, message, schema).await?
                    ))
                },
            ),
            ToolDef::new(
                "test_elicitation_sep1330_enums",
                "Asks the user to choose from each kind of enum (SEP-1330).",
                ro,
                |_: NoArgs, cx: ToolContext| async move {
                    let schema = json!({
                        "type": "object",
                        "properties": {
                            "untitledSingle": {
                                "type": "string",
                                "description": "Untitled single-select",
                                "enum": ["option1", "option2", "option3"]
                            },
                            "titledSingle": {
                                "type": "string",
                                "description": "Titled single-select",
                                "oneOf": [
                                    {"const": "value1", "title": "First Option"},
                                    {"const": "value2", "title": "Second Option"},
                                    {"const": "value3", "title": "Third Option"}
                                ]
                            },
                            "legacyEnum": {
                                "type": "string",
                                "description": "Legacy titled enum",
                                "enum": ["opt1", "opt2", "opt3"],
                                "enumNames": ["Option One", "Option Two", "Option Three"]
                            },
                            "untitledMulti": {
                                "type": "array",
                                "description": "Untitled multi-select",
                                "items": {"type": "string", "enum": ["option1", "option2", "option3"]}
                            },
                            "titledMulti": {
                                "type": "array",
                                "description": "Titled multi-select",
                                "items": {
                                    "anyOf": [
                                        {"const": "value1", "title": "First Choice"},
                                        {"const": "value2", "title": "Second Choice"},
                                        {"const": "value3", "title": "Third Choice"}
                                    ]
                                }
                            }
                        },
                        "required": []
                    });
                    let message = "Test client enum handling - please choose";
                    text(format!(
                        "Elicitation completed: {}",
                        elicited(&cx, message, schema).await?
                    ))
                },
            ),
            ToolDef::with_schema(
                "json_schema_2020_12_tool",
                "Tool with JSON Schema 2020-12 features",
                json_object(json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object",
                    "$defs": {
                        "address": {
                            "type": "object",
                            "properties": {
                                "street": {"type": "string"},
                                "city": {"type": "string"}
                            }
                        }
                    },
                    "properties": {
                        "name": {"type": "string"},
                        "address": {"$ref": "#/$defs/address"}
                    },
                    "additionalProperties": false
                })),
                ro,
                |args, _| async move { text(format!("Received: {}", serde_json::Value::Object(args))) },
            ),
            ToolDef::new(
                "test_reconnection",
                "Releases its HTTP stream mid-call; the client reconnects for the result (SEP-1699).",
                ro,
                move |_: NoArgs, cx: ToolContext| async move {
                    let released = cx.release_stream().await;
                    tokio::time::sleep(reconnection).await;
                    text(if released {
                        "Reconnection test completed successfully"
                    } else {
                        "Reconnection test completed (this transport has no stream to release)"
                    })
                },
            ),
        ]
    }

    fn resources(&self) -> Vec<ResourceDef> {
        let version = self.version.clone();
        vec![
            ResourceDef::new(
                Resource::new("test://static-text", "static-text")
                    .with_title("Static text")
                    .with_description("A static text resource for testing")
                    .with_mime_type("text/plain"),
                |_| async {
                    Ok(vec![
                        ResourceContents::text(
                            "This is the content of the static text resource.",
                            "test://static-text",
                        )
                        .with_mime_type("text/plain"),
                    ])
                },
            ),
            ResourceDef::new(
                Resource::new("test://static-binary", "static-binary")
                    .with_title("Static binary")
                    .with_description("A static binary (PNG) resource for testing")
                    .with_mime_type("image/png"),
                |_| async {
                    Ok(vec![
                        ResourceContents::blob(PNG, "test://static-binary")
                            .with_mime_type("image/png"),
                    ])
                },
            ),
            ResourceDef::new(
                Resource::new(WATCHED, "watched-resource")
                    .with_title("Watched resource")
                    .with_description(
                        "A resource that changes on a timer (setting watched_interval_ms); subscribe to hear of it",
                    )
                    .with_mime_type("text/plain"),
                move |_| {
                    let v = version.load(Ordering::Relaxed);
                    async move {
                        Ok(vec![
                            ResourceContents::text(
                                format!("Watched resource, version {v}"),
                                WATCHED,
                            )
                            .with_mime_type("text/plain"),
                        ])
                    }
                },
            ),
        ]
    }

    fn resource_templates(&self) -> Vec<TemplateDef> {
        vec![
            TemplateDef::new(
                ResourceTemplate::new("test://template/{id}/data", "template-data")
                    .with_title("Data by id")
                    .with_description("A resource template with an id parameter")
                    .with_mime_type("application/json"),
                |uri, vars: BTreeMap<String, String>, _| async move {
                    let id = vars.get("id").cloned().unwrap_or_default();
                    let body = json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
                    Ok(vec![
                        ResourceContents::text(body.to_string(), uri)
                            .with_mime_type("application/json"),
                    ])
                },
            )
            .with_completions(|c: Completion| async move {
                ["1", "2", "3", "123"]
                    .into_iter()
                    .filter(|id| id.starts_with(&c.value))
                    .map(str::to_owned)
                    .collect()
            }),
        ]
    }

    fn prompts(&self) -> Vec<PromptDef> {
        let arg = |name: &str, description: &str| {
            PromptArgument::new(name)
                .with_description(description)
                .with_required(true)
        };
        vec![
            PromptDef::new(
                "test_simple_prompt",
                "A simple prompt without arguments",
                vec![],
                |_, _| async {
                    Ok(rmcp::model::GetPromptResult::new(vec![
                        PromptMessage::new_text(Role::User, "This is a simple prompt for testing."),
                    ]))
                },
            ),
            PromptDef::new(
                "test_prompt_with_arguments",
                "A prompt with two required arguments",
                vec![
                    arg("arg1", "First test argument"),
                    arg("arg2", "Second test argument"),
                ],
                |args, _| async move {
                    let get = |k: &str| args.get(k).cloned().unwrap_or_default();
                    Ok(rmcp::model::GetPromptResult::new(vec![
                        PromptMessage::new_text(
                            Role::User,
                            format!(
                                "Prompt with arguments: arg1='{}', arg2='{}'",
                                get("arg1"),
                                get("arg2")
                            ),
                        ),
                    ]))
                },
            )
            .with_completions(|c: Completion| async move {
                let words: &[&str] = match c.argument.as_str() {
                    "arg1" => &["paris", "park", "party", "test", "testing"],
                    _ => &["world", "wonder", "work"],
                };
                words
                    .iter()
                    .filter(|w| w.starts_with(&c.value))
                    .map(|w| (*w).to_owned())
                    .collect()
            }),
            PromptDef::new(
                "test_prompt_with_embedded_resource",
                "A prompt that embeds a resource",
                vec![arg("resourceUri", "URI of the resource to embed")],
                |args, _| async move {
                    let uri = args.get("resourceUri").cloned().unwrap_or_default();
                    Ok(rmcp::model::GetPromptResult::new(vec![
                        PromptMessage::new(
                            Role::User,
                            ContentBlock::resource(
                                ResourceContents::text(
                                    "Embedded resource content for testing.",
                                    uri,
                                )
                                .with_mime_type("text/plain"),
                            ),
                        ),
                        PromptMessage::new_text(
                            Role::User,
                            "Please process the embedded resource above.",
                        ),
                    ]))
                },
            ),
            PromptDef::new(
                "test_prompt_with_image",
                "A prompt with an image",
                vec![],
                |_, _| async {
                    Ok(rmcp::model::GetPromptResult::new(vec![
                        PromptMessage::new(Role::User, ContentBlock::image(PNG, "image/png")),
                        PromptMessage::new_text(Role::User, "Please analyze the image above."),
                    ]))
                },
            ),
        ]
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        self.stop.cancel();
        Box::pin(async {})
    }
}

fn json_object(value: serde_json::Value) -> rmcp::model::JsonObject {
    match value {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("written as an object"),
    }
}
