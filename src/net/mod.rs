//! The network layer every plugin that talks HTTP shares: the one HTTP client, transport
//! errors in words, the retry policy ([`retry`]) and the secrets a client holds ([`secret`]).
//!
//! Neutral ground: the agents, Airtable and GitHub all build on it and it knows none of them.
//! Time is always tokio's clock, so tests can pause it.

pub mod checkpoints;
pub mod gcra;
pub mod relay_calls;
pub mod retry;
pub mod secret;
pub mod shared;
pub mod window;

use std::{sync::OnceLock, time::Duration};

use tokio_util::sync::CancellationToken;

pub use retry::{Next, Retry, RetryPolicy};
pub use secret::{SecretString, Secrets};
pub use window::{Slot, Window};

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
                .redirect(same_origin_redirects())
                .user_agent(concat!("plugboard/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Redirects are followed only within the origin the request went to (GitHub answers a
/// renamed repository with one), at most five: never to another host or scheme, where the
/// request's key would follow it (reqwest drops `Authorization` across hosts, but not an
/// API-key header of a provider's own).
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().cloned();
        let same = first.is_some_and(|first| {
            first.scheme() == attempt.url().scheme()
                && first.host_str() == attempt.url().host_str()
                && first.port_or_known_default() == attempt.url().port_or_known_default()
        });
        if !same {
            tracing::warn!("an upstream redirected to another origin; not followed");
            attempt.stop()
        } else if attempt.previous().len() > 5 {
            attempt.error("more than five redirects")
        } else {
            attempt.follow()
        }
    })
}

/// The most of one upstream answer read into memory (a provider's streamed answer counts
/// whole): an upstream that sends more is cut off with an error, not buffered.
pub const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

/// Why an answer's body could not be read.
#[derive(Debug)]
pub enum BodyError {
    Transport(reqwest::Error),
    /// Over [`MAX_UPSTREAM_BODY`] (or the limit given).
    TooLarge(usize),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Transport(e) => f.write_str(&describe(e)),
            BodyError::TooLarge(limit) => write!(
                f,
                "the answer is over {} MiB, the most read; ask for less (a smaller page or range)",
                limit >> 20
            ),
        }
    }
}

impl std::error::Error for BodyError {}

/// The whole body of `response`, up to `limit` bytes.
pub async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<tokio_util::bytes::Bytes, BodyError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut body = tokio_util::bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The body of `response` as a stream that ends in an error once more than `limit` bytes
/// have come.
pub fn capped_stream(
    response: reqwest::Response,
    limit: usize,
) -> impl futures::Stream<Item = Result<tokio_util::bytes::Bytes, BodyError>> + Send + 'static {
    use futures::StreamExt;
    let mut seen = 0usize;
    response.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(BodyError::Transport)?;
        seen += chunk.len();
        if seen > limit {
            return Err(BodyError::TooLarge(limit));
        }
        Ok(chunk)
    })
}

/// `host[:port]` of `url`: which server could not be reached, in words a user recognises,
/// without the path or query (which can carry something private).
pub fn host_port(url: &url::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => "the server".into(),
    }
}

/// A transport error in words, without the URL (which can carry a key for some services).
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

/// The wait was cut short: the call was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// Sleep `wait` on tokio's clock, or until `cancel` fires, whichever comes first.
pub async fn sleep(wait: Duration, cancel: &CancellationToken) -> Result<(), Cancelled> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(Cancelled),
        _ = tokio::time::sleep(wait) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_sleep_ends_when_the_call_is_cancelled() {
        let cancel = CancellationToken::new();
        let started = tokio::time::Instant::now();
        assert_eq!(sleep(Duration::from_secs(5), &cancel).await, Ok(()));
        assert_eq!(started.elapsed(), Duration::from_secs(5));

        let started = tokio::time::Instant::now();
        let firing = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            firing.cancel();
        });
        assert_eq!(sleep(Duration::MAX, &cancel).await, Err(Cancelled));
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }
}
