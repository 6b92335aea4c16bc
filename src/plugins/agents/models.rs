//! The agents plugin as the host's model service: other plugins ask for a completion through
//! the plugin contract ([`crate::plugin::Models`]) and the orchestrator answers it with the
//! configured providers and their routing (no tools: a completion, not an `ask`).

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::{
    orchestrator::{AskRequest, Orchestrator},
    plugin::{ModelReply, ModelRequest, ModelService, ToolContext, ToolError},
};

pub struct OrchestratorModels(pub Arc<Orchestrator>);

impl ModelService for OrchestratorModels {
    fn available(&self) -> bool {
        !self.0.agents.available().is_empty()
    }

    fn complete(
        &self,
        request: ModelRequest,
        cx: ToolContext,
    ) -> BoxFuture<'static, Result<ModelReply, ToolError>> {
        let orchestrator = self.0.clone();
        Box::pin(async move {
            let ask = AskRequest {
                prompt: request.prompt,
                provider: request.provider,
                use_tools: false,
                system: request.system,
                response_schema: request.schema,
            };
            let answer = orchestrator
                .ask(&ask, &cx)
                .await
                .map_err(ToolError::Upstream)?;
            Ok(ModelReply {
                text: answer.answer,
                provider: answer.provider,
                model: answer.model,
                input_tokens: Some(answer.input_tokens),
                output_tokens: Some(answer.output_tokens),
            })
        })
    }
}
