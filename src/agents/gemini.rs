//! (being written)

use futures::{FutureExt, StreamExt, future::BoxFuture, stream::BoxStream};

use super::{Agent, AgentError, Conversation, Reply, StreamEvent, http::RetryPolicy};

pub struct Gemini {
    provider: String,
    model: String,
}

impl Gemini {
    pub fn new(
        provider: &str,
        model: &str,
        _base_url: &str,
        _key: Option<String>,
        _client: reqwest::Client,
        _retry: RetryPolicy,
    ) -> Self {
        Self {
            provider: provider.to_owned(),
            model: model.to_owned(),
        }
    }
}

impl Agent for Gemini {
    fn provider(&self) -> &str {
        &self.provider
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn supports_tools(&self) -> bool {
        true
    }
    fn send<'a>(&'a self, _c: &'a Conversation) -> BoxFuture<'a, Result<Reply, AgentError>> {
        async move {
            Err(AgentError::Transport {
                provider: self.provider.clone(),
                message: "not yet".into(),
            })
        }
        .boxed()
    }
    fn stream<'a>(&'a self, c: &'a Conversation) -> BoxStream<'a, Result<StreamEvent, AgentError>> {
        futures::stream::once(self.send(c))
            .map(|r| r.map(StreamEvent::Done))
            .boxed()
    }
}
