//! Sending a request to a provider under the shared retry policy ([`crate::net::retry`]):
//! retries on 429/5xx and failed connections that honour the provider's own hints, with a
//! cap, as the official SDKs do. A provider that asks for a longer wait than
//! [`RetryPolicy::max_wait`] is not retried: the error (with the wait it asked for) goes back
//! to the caller, who may try another provider.

use reqwest::{RequestBuilder, Response};

use super::AgentError;
use crate::net::{
    self, Next, Retry, RetryPolicy, Secrets,
    retry::{header_hint, retryable_status, should_retry},
};

/// Reads a provider's error body into an [`AgentError::Api`] (with a body retry hint if the
/// provider puts one there).
pub type ErrorParser = fn(provider: &str, status: u16, body: &[u8]) -> AgentError;

/// Longest error body read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Send the request `build` makes (called once per attempt) and return the first successful
/// response. Error texts have `secrets` masked out (an error body may repeat the headers).
pub async fn send(
    provider: &str,
    policy: &RetryPolicy,
    secrets: &Secrets,
    build: impl Fn() -> Result<RequestBuilder, AgentError>,
    parse_error: ErrorParser,
) -> Result<Response, AgentError> {
    let mut retry = Retry::new(policy);
    loop {
        let (error, hint) = match build()?.send().await {
            Ok(response) if response.status().is_success() => return Ok(response),
            Ok(response) => {
                let status = response.status();
                let headers = response.headers().clone();
                let body = read_limited(response).await;
                let mut error = parse_error(provider, status.as_u16(), &body).masked(secrets);
                if let AgentError::Api { retry_after, .. } = &mut error
                    && let Some(hint) = header_hint(&headers)
                {
                    *retry_after = Some(hint);
                }
                let again = match should_retry(&headers) {
                    Some(decided) => decided,
                    None => retryable_status(status) && error.is_transient(),
                };
                if !again {
                    return Err(error);
                }
                let hint = match &error {
                    AgentError::Api { retry_after, .. } => *retry_after,
                    _ => None,
                };
                (error, hint)
            }
            Err(e) => {
                let error = AgentError::Transport {
                    provider: provider.to_owned(),
                    message: secrets.mask(&net::describe(&e)).into_owned(),
                };
                // A request that never got an answer is safe to send again: these are reads.
                (error, None)
            }
        };
        let delay = match retry.next(hint) {
            Next::Wait(delay) => delay,
            Next::Exhausted | Next::TooLong(_) => return Err(error),
        };
        let reason = match &error {
            AgentError::Api { status: 429, .. } => "rate_limited",
            AgentError::Api { .. } => "server_error",
            _ => "transport",
        };
        metrics::counter!("plugboard_provider_retries_total",
            "provider" => provider.to_owned(), "reason" => reason)
        .increment(1);
        tracing::info!(
            provider,
            attempt = retry.retried(),
            wait_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            error = %error,
            "retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

/// POST `body` as JSON to `url`, `decorate` adding the key and headers the provider wants,
/// retried as [`send`] does: the request every agent makes.
pub async fn post_json(
    provider: &str,
    policy: &RetryPolicy,
    secrets: &Secrets,
    url: &str,
    body: &serde_json::Value,
    decorate: impl Fn(RequestBuilder) -> Result<RequestBuilder, AgentError>,
    parse_error: ErrorParser,
) -> Result<Response, AgentError> {
    let client = net::client().map_err(|message| AgentError::Transport {
        provider: provider.to_owned(),
        message,
    })?;
    send(
        provider,
        policy,
        secrets,
        || decorate(client.post(url).json(body)),
        parse_error,
    )
    .await
}

/// The key in a header (`prefix` is `"Bearer "` for the Authorization header), marked
/// sensitive; a key that cannot be a header is an error that does not show it.
pub fn key_header(
    provider: &str,
    prefix: &str,
    key: &net::SecretString,
) -> Result<reqwest::header::HeaderValue, AgentError> {
    net::secret::header(prefix, key).map_err(|_| AgentError::Transport {
        provider: provider.to_owned(),
        message: "the API key holds characters a header cannot carry (a line break?)".into(),
    })
}

async fn read_limited(mut response: Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY {
            body.truncate(MAX_ERROR_BODY);
            break;
        }
    }
    body
}

/// The parsed JSON of a successful response, or a Malformed error saying what was wrong.
pub async fn json_body(
    provider: &str,
    response: Response,
) -> Result<serde_json::Value, AgentError> {
    let bytes = net::read_body(response, net::MAX_UPSTREAM_BODY)
        .await
        .map_err(|e| AgentError::Transport {
            provider: provider.to_owned(),
            message: e.to_string(),
        })?;
    serde_json::from_slice(&bytes).map_err(|e| AgentError::Malformed {
        provider: provider.to_owned(),
        message: format!("not JSON ({e})"),
    })
}

/// The body as text for an error message, when it is not the JSON we expected.
pub fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "no details given".into();
    }
    let mut cut: String = text.chars().take(300).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}
