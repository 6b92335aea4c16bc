//! Sending a request to a provider: retries on 429/5xx and failed connections that honour the
//! provider's own hints, with a cap, as the official SDKs do.
//!
//! The hint order is the SDKs': `x-should-retry` decides whether to retry at all; the wait is
//! `retry-after-ms`, else `retry-after` (seconds or an HTTP date), else a hint in the error
//! body (Gemini's `RetryInfo.retryDelay`), else exponential backoff with jitter. A provider
//! that asks for a longer wait than [`RetryPolicy::max_wait`] is not retried: the error (with
//! the wait it asked for) goes back to the caller, who may try another provider.

use std::{
    sync::OnceLock,
    time::{Duration, SystemTime},
};

use reqwest::{RequestBuilder, Response, StatusCode, header::HeaderMap};

use super::AgentError;

/// The one HTTP client every agent and plugin shares, built on first use.
///
/// Building a client loads the system's root certificates (about 150 of them, once more than
/// half of start-up's instructions); sharing one builds them once, and building it lazily
/// means a server whose network tools are never called never loads them. Timeouts and
/// headers are set per request.
pub fn client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .user_agent(concat!("plugboard/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Longest wait a provider may ask for and still be retried.
    pub max_wait: Duration,
    /// First backoff when the provider gives no hint; doubles per attempt.
    pub backoff: Duration,
    /// Longest backoff without a hint.
    pub backoff_cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            max_wait: Duration::from_secs(60),
            backoff: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(8),
        }
    }
}

/// Reads a provider's error body into an [`AgentError::Api`] (with a body retry hint if the
/// provider puts one there).
pub type ErrorParser = fn(provider: &str, status: u16, body: &[u8]) -> AgentError;

/// Longest error body read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Send the request `build` makes (called once per attempt) and return the first successful
/// response.
pub async fn send(
    provider: &str,
    policy: &RetryPolicy,
    build: impl Fn() -> RequestBuilder,
    parse_error: ErrorParser,
) -> Result<Response, AgentError> {
    let mut attempt = 0u32;
    loop {
        let (error, wait) = match build().send().await {
            Ok(response) if response.status().is_success() => return Ok(response),
            Ok(response) => {
                let status = response.status();
                let headers = response.headers().clone();
                let body = read_limited(response).await;
                let mut error = parse_error(provider, status.as_u16(), &body);
                let hint = header_hint(&headers);
                if let AgentError::Api { retry_after, .. } = &mut error
                    && hint.is_some()
                {
                    *retry_after = hint;
                }
                let retry = match should_retry_header(&headers) {
                    Some(decided) => decided,
                    None => retryable_status(status) && error.is_transient(),
                };
                let hinted = match &error {
                    AgentError::Api { retry_after, .. } => *retry_after,
                    _ => None,
                };
                (error, retry.then_some(hinted))
            }
            Err(e) => {
                let error = AgentError::Transport {
                    provider: provider.to_owned(),
                    message: describe(&e),
                };
                // A request that never got an answer is safe to send again: these are reads.
                (error, Some(None))
            }
        };
        let Some(hinted) = wait else {
            return Err(error);
        };
        if attempt >= policy.max_retries {
            return Err(error);
        }
        let delay = match hinted {
            Some(d) if d > policy.max_wait => return Err(error),
            Some(d) if !d.is_zero() => d,
            _ => backoff(policy, attempt),
        };
        tracing::info!(
            provider,
            attempt = attempt + 1,
            wait_ms = delay.as_millis() as u64,
            error = %error,
            "retrying"
        );
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// POST `body` as JSON to `url`, `decorate` adding the key and headers the provider wants,
/// retried as [`send`] does: the request every agent makes.
pub async fn post_json(
    provider: &str,
    policy: &RetryPolicy,
    url: &str,
    body: &serde_json::Value,
    decorate: impl Fn(RequestBuilder) -> RequestBuilder,
    parse_error: ErrorParser,
) -> Result<Response, AgentError> {
    let client = client().map_err(|message| AgentError::Transport {
        provider: provider.to_owned(),
        message,
    })?;
    send(
        provider,
        policy,
        || decorate(client.post(url).json(body)),
        parse_error,
    )
    .await
}

fn retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error()
}

fn should_retry_header(headers: &HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry")?.to_str().ok()? {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// `retry-after-ms` (float ms), else `retry-after` (float seconds or an HTTP date).
pub fn header_hint(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name)?.to_str().ok().map(str::trim);
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = text("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(at);
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// Seconds written like Google's `Duration` JSON: `"37s"`, `"1.5s"`.
pub fn google_duration(text: &str) -> Option<Duration> {
    let secs: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let base = policy
        .backoff
        .saturating_mul(2u32.saturating_pow(attempt))
        .min(policy.backoff_cap);
    // Jitter as the SDKs do: 75–100 % of the delay, so parallel clients spread out.
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = 1.0 - 0.25 * (f64::from(nanos % 1000) / 1000.0);
    base.mul_f64(jitter)
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

/// A transport error in words, without the URL (which can carry a key for some providers).
pub fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_connect() {
        "connection failed"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        what.to_owned()
    } else {
        format!("{what} ({detail})")
    }
}

/// The parsed JSON of a successful response, or a Malformed error saying what was wrong.
pub async fn json_body(
    provider: &str,
    response: Response,
) -> Result<serde_json::Value, AgentError> {
    let bytes = response.bytes().await.map_err(|e| AgentError::Transport {
        provider: provider.to_owned(),
        message: describe(&e),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| AgentError::Malformed {
        provider: provider.to_owned(),
        message: format!("not JSON ({e})"),
    })
}

/// An error envelope's fields at `path` (e.g. `["error", "message"]`) as text.
pub fn text_at<'a>(value: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(|v| v.as_str())
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

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn hints_in_sdk_order() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(header_hint(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("150.5"));
        assert_eq!(header_hint(&h), Some(Duration::from_micros(150_500)));
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("0.25"));
        assert_eq!(header_hint(&h), Some(Duration::from_millis(250)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(header_hint(&h), Some(Duration::ZERO), "a past date: now");
        assert_eq!(google_duration("37s"), Some(Duration::from_secs(37)));
        assert_eq!(google_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(google_duration("soon"), None);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy::default();
        let b0 = backoff(&p, 0);
        assert!(b0 <= Duration::from_millis(500) && b0 >= Duration::from_millis(375));
        let b10 = backoff(&p, 10);
        assert!(b10 <= Duration::from_secs(8) && b10 >= Duration::from_secs(6));
    }
}
