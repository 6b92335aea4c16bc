//! The models a provider offers, read from its model list: what `plugboard check --online`
//! holds the configured model against. Each page is one GET through [`request::send`] (the
//! agent's retry policy, its key masked out of every error), the key in the header its wire
//! format wants, never in the URL.
//!
//! - OpenAI, DeepSeek and compatible servers: `GET {base}/models` →
//!   `{"object":"list","data":[{"id":…}]}`, one page.
//! - Anthropic: `GET {base}/v1/models` → `{"data":[{"id":…}],"has_more":…,"last_id":…}`,
//!   paged with `after_id`.
//! - Gemini: `GET {base}/v1beta/models` → `{"models":[{"name":"models/…"}],
//!   "nextPageToken":…}`, paged with `pageToken`; only models that can `generateContent`.

use std::time::Duration;

use reqwest::RequestBuilder;
use serde_json::Value;

use super::{AgentError, request};
use crate::net::{RetryPolicy, SecretString, Secrets};

/// Longest one page may take.
const PAGE_TIMEOUT: Duration = Duration::from_secs(20);

/// Most pages followed: a server that pages without end is not followed there.
const MAX_PAGES: usize = 50;

/// What a provider's model list says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelList {
    /// The ids it offers (Gemini's without `models/`).
    Offered(Vec<String>),
    /// It keeps no list (a compatible server without `/models`): nothing to hold the model
    /// against.
    Unlisted,
}

impl ModelList {
    /// Whether `model` is on the list; `None` when there is none. A Gemini name may be given
    /// with or without `models/`, an Ollama one without its `:latest` tag.
    pub fn offers(&self, model: &str) -> Option<bool> {
        let ModelList::Offered(ids) = self else {
            return None;
        };
        let model = model.strip_prefix("models/").unwrap_or(model);
        Some(
            ids.iter()
                .any(|id| id == model || id.strip_suffix(":latest") == Some(model)),
        )
    }
}

/// Why the list could not be read.
#[derive(Debug, Clone)]
pub enum ListError {
    /// The provider refused the key (401, 403, Gemini's `API_KEY_INVALID`).
    KeyRejected { status: u16 },
    /// No answer from `host`: refused, timed out, no such name.
    Unreachable { host: String, detail: String },
    /// Any other error the provider answered with (its text has the key masked out).
    Failed(AgentError),
}

/// Which wire format asks, and so how the key is sent and the pages are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Anthropic,
    Gemini,
}

/// One agent's way to its provider's list, borrowed from the agent.
pub struct Lister<'a> {
    pub wire: Wire,
    pub provider: &'a str,
    /// As the agent holds it (without a trailing `/`).
    pub base_url: &'a str,
    pub key: Option<&'a SecretString>,
    pub secrets: &'a Secrets,
    pub retry: &'a RetryPolicy,
}

impl Lister<'_> {
    /// Every page of the list.
    pub async fn list(&self) -> Result<ModelList, ListError> {
        let mut ids = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = match self.page(after.as_deref()).await {
                Ok(page) => page,
                // A compatible server that keeps no list says so with a 404 or 405.
                Err(ListError::Failed(AgentError::Api { status, .. }))
                    if self.wire == Wire::OpenAi && matches!(status, 404 | 405) =>
                {
                    return Ok(ModelList::Unlisted);
                }
                Err(e) => return Err(e),
            };
            let (more, next) = self.read(&page, &mut ids);
            match next {
                Some(next) if more => after = Some(next),
                _ => return Ok(ModelList::Offered(ids)),
            }
        }
        Ok(ModelList::Offered(ids))
    }

    /// One page, after the cursor `after` (none for the first).
    async fn page(&self, after: Option<&str>) -> Result<Value, ListError> {
        let client = crate::net::client().map_err(|detail| self.unreachable(detail))?;
        let path = match self.wire {
            Wire::OpenAi => "models",
            Wire::Anthropic => "v1/models",
            Wire::Gemini => "v1beta/models",
        };
        let mut url = url::Url::parse(&format!("{}/{path}", self.base_url)).map_err(|e| {
            ListError::Failed(AgentError::Transport {
                provider: self.provider.to_owned(),
                message: format!("the base URL is not a URL ({e})"),
            })
        })?;
        let cursor = match self.wire {
            Wire::OpenAi => None,
            Wire::Anthropic => after.map(|a| ("after_id", a)),
            Wire::Gemini => after.map(|a| ("pageToken", a)),
        };
        if let Some((name, value)) = cursor {
            url.query_pairs_mut().append_pair(name, value);
        }
        let build = || self.authorize(client.get(url.clone()).timeout(PAGE_TIMEOUT));
        let parse_error: request::ErrorParser = match self.wire {
            Wire::OpenAi => super::openai::parse_error,
            Wire::Anthropic => super::anthropic::parse_error,
            Wire::Gemini => super::gemini::parse_error,
        };
        let answer = request::send(self.provider, self.retry, self.secrets, build, parse_error)
            .await
            .map_err(|e| self.classify(e))?;
        request::json_body(self.provider, answer)
            .await
            .map_err(|e| self.classify(e))
    }

    /// The key in the header this wire format reads it from.
    fn authorize(&self, builder: RequestBuilder) -> Result<RequestBuilder, AgentError> {
        let builder = match self.wire {
            Wire::Anthropic => builder.header("anthropic-version", super::anthropic::VERSION),
            Wire::OpenAi | Wire::Gemini => builder,
        };
        let Some(key) = self.key else {
            return Ok(builder);
        };
        Ok(match self.wire {
            Wire::OpenAi => builder.header(
                reqwest::header::AUTHORIZATION,
                request::key_header(self.provider, "Bearer ", key)?,
            ),
            Wire::Anthropic => {
                builder.header("x-api-key", request::key_header(self.provider, "", key)?)
            }
            Wire::Gemini => builder.header(
                "x-goog-api-key",
                request::key_header(self.provider, "", key)?,
            ),
        })
    }

    /// Add the ids on `page` to `ids`; whether there is more, and the cursor to it.
    fn read(&self, page: &Value, ids: &mut Vec<String>) -> (bool, Option<String>) {
        let text = |v: &Value| v.as_str().map(str::to_owned);
        match self.wire {
            Wire::OpenAi => {
                ids.extend(items(page, "data").filter_map(|m| text(&m["id"])));
                (false, None)
            }
            Wire::Anthropic => {
                ids.extend(items(page, "data").filter_map(|m| text(&m["id"])));
                let more = page["has_more"].as_bool().unwrap_or(false);
                (more, text(&page["last_id"]).filter(|s| !s.is_empty()))
            }
            Wire::Gemini => {
                ids.extend(
                    items(page, "models")
                        .filter(|m| generates(m))
                        .filter_map(|m| text(&m["name"]))
                        .map(|name| match name.strip_prefix("models/") {
                            Some(bare) => bare.to_owned(),
                            None => name,
                        }),
                );
                let next = text(&page["nextPageToken"]).filter(|s| !s.is_empty());
                (next.is_some(), next)
            }
        }
    }

    fn classify(&self, error: AgentError) -> ListError {
        match error {
            AgentError::Api { status, kind, .. }
                if matches!(status, 401 | 403) || kind == "API_KEY_INVALID" =>
            {
                ListError::KeyRejected { status }
            }
            AgentError::Transport { message, .. } => self.unreachable(message),
            AgentError::Timeout { after, .. } => {
                self.unreachable(format!("no answer within {:.0} s", after.as_secs_f64()))
            }
            other => ListError::Failed(other),
        }
    }

    fn unreachable(&self, detail: String) -> ListError {
        ListError::Unreachable {
            host: host_of(self.base_url),
            detail: self.secrets.mask(&detail).into_owned(),
        }
    }
}

/// The objects in `page[field]`.
fn items<'a>(page: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    page[field].as_array().into_iter().flatten()
}

/// Whether a Gemini model can answer `generateContent` (embedding models cannot); a model
/// that does not say is taken to.
fn generates(model: &Value) -> bool {
    match model["supportedGenerationMethods"].as_array() {
        Some(methods) => methods.iter().any(|m| m == "generateContent"),
        None => true,
    }
}

/// `host[:port]` of a base URL: what a user recognises, without a path or query that could
/// carry something private.
pub fn host_of(base_url: &str) -> String {
    match url::Url::parse(base_url) {
        Ok(url) => crate::net::host_port(&url),
        Err(_) => "the provider (its base URL is not a URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_is_found_with_or_without_its_prefix_and_tag() {
        let list = ModelList::Offered(vec!["gemini-2.5-flash".into(), "llama3:latest".into()]);
        assert_eq!(list.offers("models/gemini-2.5-flash"), Some(true));
        assert_eq!(list.offers("gemini-2.5-flash"), Some(true));
        assert_eq!(list.offers("llama3"), Some(true));
        assert_eq!(list.offers("gemini-9"), Some(false));
        assert_eq!(ModelList::Unlisted.offers("x"), None);
    }

    #[test]
    fn a_host_never_shows_a_query() {
        assert_eq!(
            host_of("https://gw.example.com:8443/v1?key=secret"),
            "gw.example.com:8443"
        );
        assert_eq!(host_of("https://api.openai.com/v1"), "api.openai.com");
    }
}
