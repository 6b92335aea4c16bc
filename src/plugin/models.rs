//! The host's model service: a plugin asks for a completion without knowing who answers —
//! the configured providers with their routing (the agents plugin provides the service), or,
//! with none, the client's own model through MCP sampling.

#![allow(deprecated)] // rmcp marks sampling deprecated (SEP-2577); clients use it.

use std::sync::{Arc, Weak};

use futures::future::BoxFuture;
use rmcp::model::{CreateMessageRequestParams, SamplingMessage};

use super::{Manager, ToolContext, ToolError};

/// One completion to write.
#[derive(Debug, Clone, Default)]
pub struct ModelRequest {
    /// Instructions for the model.
    pub system: Option<String>,
    pub prompt: String,
    pub max_tokens: Option<u32>,
    /// A provider by name; `None`: the service's routing decides.
    pub provider: Option<String>,
    /// The answer is to be one JSON object matching this schema: providers that take a
    /// schema are given it (the prompt must still ask for the JSON: a client's model by
    /// sampling, and some providers, only read the prompt).
    pub schema: Option<serde_json::Value>,
}

/// A completion, and who wrote it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelReply {
    pub text: String,
    /// `sampling` when the client's model wrote it.
    pub provider: String,
    pub model: String,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

/// The text of a client's sampling answer, its text blocks one per line.
pub fn sampled_text(result: &rmcp::model::CreateMessageResult) -> String {
    result
        .message
        .content
        .clone()
        .into_vec()
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a plugin implements to offer models to the others (the agents plugin does).
pub trait ModelService: Send + Sync + 'static {
    /// Whether any model can answer now (a provider is configured).
    fn available(&self) -> bool;
    fn complete(
        &self,
        request: ModelRequest,
        cx: ToolContext,
    ) -> BoxFuture<'static, Result<ModelReply, ToolError>>;
}

/// A plugin's way to ask a model (from [`super::PluginSetup::models`]). Cheap to clone.
#[derive(Clone)]
pub struct Models {
    manager: Weak<Manager>,
}

impl Models {
    pub(crate) fn new(manager: Weak<Manager>) -> Self {
        Self { manager }
    }

    /// No host (unit tests): only the client's model, if the context can sample.
    pub fn detached() -> Self {
        Self::new(Weak::new())
    }

    fn service(&self) -> Option<Arc<dyn ModelService>> {
        let (_, service) = self.manager.upgrade()?.models()?;
        service.available().then_some(service)
    }

    /// Whether a completion can be had for a call with context `cx`.
    pub fn available(&self, cx: &ToolContext) -> bool {
        self.service().is_some() || cx.client_can_sample()
    }

    /// Write a completion: the configured providers if there are any, else the client's
    /// model by sampling, else an error saying how to get one.
    pub async fn complete(
        &self,
        request: ModelRequest,
        cx: &ToolContext,
    ) -> Result<ModelReply, ToolError> {
        if let Some(service) = self.service() {
            return service.complete(request, cx.clone()).await;
        }
        if !cx.client_can_sample() {
            return Err(ToolError::Failed(
                "no model is available: configure a provider for the agents plugin (e.g. \
                 OPENAI_API_KEY or ANTHROPIC_API_KEY) or use a client that supports sampling"
                    .into(),
            ));
        }
        let mut params = CreateMessageRequestParams::new(
            vec![SamplingMessage::user_text(request.prompt)],
            request.max_tokens.unwrap_or(1024),
        );
        if let Some(system) = request.system {
            params = params.with_system_prompt(system);
        }
        let result = cx.sample(params).await?;
        Ok(ModelReply {
            text: sampled_text(&result),
            provider: "sampling".into(),
            model: result.model,
            input_tokens: None,
            output_tokens: None,
        })
    }
}
