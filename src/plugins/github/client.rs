//! The GitHub REST client: one shared reqwest client, the headers GitHub asks for, Link
//! pagination, rate limits read from the `x-ratelimit-*` headers and waited out within the
//! call's time budget, and errors that say what to fix.
//!
//! Rate limits (api-facts §2): each response tells how much of its bucket (`core`, `search`,
//! `code_search`, …) is left and when the bucket resets. The client keeps that per bucket and
//! counts its own requests down between responses, so it stops sending before GitHub refuses
//! (code search allows only 10 a minute). A bucket used up, a 403/429 for the primary limit or a
//! secondary limit (with or without `retry-after`) is waited out when the wait fits in the
//! call's remaining time; otherwise the model is told plainly when to try again. Writes are
//! spaced (`write_interval`) as GitHub's guidance for content creation asks.
//!
//! With other replicas (a Redis, [`Client::share_limits`]) the buckets, the write spacing and
//! any secondary limit's wait are theirs too (`shared.rs`): what one replica learnt, every one
//! keeps to; while Redis is away, each keeps to its share.
//!
//! One file because every request passes through the same rate-limit bookkeeping; the rest of
//! its length is the tests that drive that bookkeeping against the fake.
//!
//! Long because rate-limit buckets, waits and error mapping are one state machine, kept with
//! its unit tests (from `#[cfg(test)]` on).

#![allow(deprecated)] // rmcp marks MCP logging deprecated (SEP-2577); clients still use it.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use governor::{
    Quota, RateLimiter,
    clock::Clock,
    state::{InMemoryState, NotKeyed},
};
use reqwest::{
    Method, StatusCode,
    header::{ACCEPT, HeaderMap},
};
use serde_json::Value;
use url::Url;

use super::shared::{SharedLimits, Taken};
use crate::{
    net::{self, Retry, RetryPolicy, SecretString, Secrets, describe, gcra::Due, shared::Redis},
    plugin::{ToolContext, ToolError},
};

/// JSON, the default media type.
pub const JSON: &str = "application/vnd.github+json";
/// A pull request as a unified diff.
pub const DIFF: &str = "application/vnd.github.diff";
/// Search results with the matching fragments.
pub const TEXT_MATCH: &str = "application/vnd.github.text-match+json";
/// The REST API version this client is written against.
pub const API_VERSION: &str = "2022-11-28";

#[derive(Debug, Clone)]
pub struct Limits {
    /// One HTTP request's timeout.
    pub timeout: Duration,
    /// Attempts for one request (rate limits waited out, 5xx backed off).
    pub attempts: u32,
    /// First backoff after a 5xx or a failed connect; doubles each time.
    pub backoff: Duration,
    /// Minimum spacing of writes (GitHub: ~80 content-creating requests a minute).
    pub write_interval: Duration,
    /// Wait after a secondary limit without `retry-after` (GitHub's advice: at least 60 s).
    pub secondary_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            attempts: 4,
            backoff: Duration::from_millis(500),
            write_interval: Duration::from_millis(1000),
            secondary_wait: Duration::from_secs(60),
        }
    }
}

/// A rate-limit bucket as the last response described it.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    limit: u64,
    remaining: u64,
    /// Unix seconds.
    reset: u64,
    /// This replica's share of `remaining` (it over the replicas last seen through Redis):
    /// what it keeps to while Redis is away. Without Redis, `remaining` itself.
    share: u64,
}

/// What a response said about its bucket, to be told to the other replicas.
struct Noted {
    name: String,
    limit: u64,
    remaining: u64,
    reset: u64,
}

/// What GitHub answered with.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub body: Vec<u8>,
    /// The `Link` header's `rel="next"` and `rel="last"` targets.
    pub next: Option<Url>,
    pub last: Option<Url>,
}

impl Response {
    pub fn json(&self) -> Result<Value, ToolError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ToolError::Upstream(format!("GitHub's answer is not JSON: {e}")))
    }

    /// The page number `rel="next"` points at.
    pub fn next_page(&self) -> Option<u64> {
        self.next.as_ref().and_then(page_of)
    }

    pub fn last_page(&self) -> Option<u64> {
        self.last.as_ref().and_then(page_of)
    }
}

fn page_of(url: &Url) -> Option<u64> {
    url.query_pairs()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse().ok())
}

/// An error GitHub answered with (basic-error or validation-error body).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Validation details, flattened: `head: invalid (PullRequest)`, custom messages.
    pub errors: Vec<String>,
}

#[derive(Debug)]
pub enum Failure {
    Api(ApiError),
    /// A rate limit that would take longer to wait out than the call may run.
    RateLimited {
        resource: String,
        /// Unix seconds when it lifts.
        until: u64,
        wait: Duration,
        left: Duration,
        limit: Option<u64>,
        /// A secondary limit (GitHub asked to slow down) rather than a used-up bucket.
        secondary: bool,
    },
    /// A write that may or may not have been applied.
    Unknown(String),
    /// Never reached GitHub, or gave up.
    Transport(String),
    Cancelled,
}

pub struct Client {
    /// `https://api.github.com/` or `https://ghe.example.com/api/v3/`, always ending in `/`.
    base: Url,
    /// Never shown (`Debug` leaves it out).
    token: SecretString,
    /// The token again, masked out of every error text (a body may repeat the headers).
    secrets: Secrets,
    limits: Limits,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Spaces writes `write_interval` apart, on tokio's clock.
    writes: RateLimiter<NotKeyed, InMemoryState, TokioClock>,
    /// With other replicas (through Redis): the buckets, holds and write spacing they share.
    shared: Option<SharedLimits>,
}

/// governor's clock read from tokio's, so that spacing writes waits on the clock every other
/// wait uses (cancelled with the call, paused in tests). governor's own `until_ready` sleeps
/// on a wall-clock timer thread, which paused time cannot see.
#[derive(Debug, Clone, Copy, Default)]
struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> Self::Instant {
        tokio::time::Instant::now().into_std()
    }
}

impl std::fmt::Debug for Client {
    // The token is a secret: never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// The bucket a request draws from, before GitHub says so itself.
fn resource_of(path: &str) -> &'static str {
    if path.ends_with("/search/code") {
        "code_search"
    } else if path.contains("/search/") {
        "search"
    } else {
        "core"
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Client {
    pub fn new(base_url: &str, token: SecretString, limits: Limits) -> Result<Self, String> {
        let mut base = Url::parse(base_url.trim())
            .map_err(|e| format!("GITHUB_API_URL `{base_url}` is not a URL: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(format!("GITHUB_API_URL `{base_url}` must be http(s)"));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        base.set_query(None);
        let writes = RateLimiter::direct_with_clock(
            Quota::with_period(limits.write_interval.max(Duration::from_millis(1)))
                .expect("a non-zero interval")
                .allow_burst(NonZeroU32::MIN),
            TokioClock,
        );
        Ok(Self {
            base,
            secrets: Secrets::new([token.clone()]),
            token,
            limits,
            buckets: Mutex::default(),
            writes,
            shared: None,
        })
    }

    /// Share the limits with the other replicas using `redis` (none: this process's own).
    pub fn share_limits(mut self, redis: Option<&Redis>) -> Self {
        self.shared = redis.map(|r| SharedLimits::new(r, &self.token, self.limits.write_interval));
        self
    }

    /// How the limits are kept, when that is worse than usual: Redis is away and this replica
    /// keeps to its share.
    pub fn condition(&self) -> Option<String> {
        self.shared.as_ref().and_then(SharedLimits::condition)
    }

    /// `{base}/<segments>`, each segment percent-encoded.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().expect("http(s) URLs have paths");
            path.pop_if_empty();
            for s in segments {
                path.push(s);
            }
        }
        url
    }

    /// Send one request, within the call's time budget: rate limits waited out when they fit,
    /// reads retried after a 5xx, writes only when GitHub surely did not apply them. Error
    /// texts have the token masked out.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        accept: &str,
        body: Option<&Value>,
        cx: &ToolContext,
    ) -> Result<Response, Failure> {
        self.attempt(method, url, accept, body, cx)
            .await
            .map_err(|failure| self.masked(failure))
    }

    fn masked(&self, failure: Failure) -> Failure {
        let mask = |m: String| self.secrets.mask(&m).into_owned();
        match failure {
            Failure::Api(e) => Failure::Api(ApiError {
                status: e.status,
                message: mask(e.message),
                errors: e.errors.into_iter().map(mask).collect(),
            }),
            Failure::Unknown(m) => Failure::Unknown(mask(m)),
            Failure::Transport(m) => Failure::Transport(mask(m)),
            other => other,
        }
    }

    /// The shared retry policy's backoff with this client's numbers; rate limits are waited
    /// out by the call's time budget instead.
    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.limits.attempts.saturating_sub(1),
            max_wait: Duration::MAX,
            backoff: self.limits.backoff,
            backoff_cap: self.limits.backoff.saturating_mul(16),
        }
    }

    async fn attempt(
        &self,
        method: Method,
        url: Url,
        accept: &str,
        body: Option<&Value>,
        cx: &ToolContext,
    ) -> Result<Response, Failure> {
        let write = method != Method::GET && method != Method::HEAD;
        let resource = resource_of(url.path());
        let mut retry = Retry::new(&self.policy());
        let mut last = String::new();
        for attempt in 1..=self.limits.attempts {
            if attempt > 1 {
                tracing::info!(attempt, method = %method, path = %url.path(), reason = %self.secrets.mask(&last), "retrying a GitHub request");
            }
            self.take(resource, cx).await?;
            if write {
                self.space_write(cx).await?;
            }
            let mut request = self.request(method.clone(), url.clone(), accept)?;
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match self.wait(request.send(), cx).await? {
                Ok(r) => r,
                Err(e) => {
                    last = format!("could not reach GitHub ({})", describe(&e));
                    if write && !e.is_connect() {
                        return Err(Failure::Unknown(format!(
                            "{last}; the change may or may not have been made — check before repeating it"
                        )));
                    }
                    self.sleep(retry.backoff(), cx).await?;
                    continue;
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            let noted = self.note(resource, &headers);
            if let (Some(shared), Some(n)) = (&self.shared, noted) {
                shared.note(&n.name, n.limit, n.remaining, n.reset).await;
            }
            let body = crate::net::read_body(response, crate::net::MAX_UPSTREAM_BODY);
            let bytes = match self.wait(body, cx).await? {
                Ok(b) => b,
                Err(crate::net::BodyError::TooLarge(limit)) => {
                    return Err(Failure::Unknown(format!(
                        "GitHub's answer was over {} MiB, the most read; ask for less (a \
                         smaller page)",
                        limit >> 20
                    )));
                }
                Err(crate::net::BodyError::Transport(e)) => {
                    last = format!("the connection broke while reading ({})", describe(&e));
                    if write {
                        return Err(Failure::Unknown(format!(
                            "{last}; the change may or may not have been made — check before repeating it"
                        )));
                    }
                    self.sleep(retry.backoff(), cx).await?;
                    continue;
                }
            };
            if status.is_success() {
                let (next, last) = links(&headers);
                return Ok(Response {
                    status,
                    body: bytes.to_vec(),
                    next,
                    last,
                });
            }
            let error = parse_error(status, &bytes);
            if matches!(status.as_u16(), 403 | 429) {
                if let Some((wait, until, secondary)) =
                    self.rate_wait(status, &headers, &error, resource)
                {
                    let bucket = header(&headers, "x-ratelimit-resource")
                        .unwrap_or(resource)
                        .to_owned();
                    // For the other replicas: a secondary limit — or a refusal whose headers
                    // say nothing of its bucket (a bare 429) — holds them all for `wait`. (A
                    // bucket the headers said was used up, they learnt of with the headers.)
                    let said_nothing = header(&headers, "x-ratelimit-remaining").is_none();
                    if let (Some(shared), true) = (&self.shared, secondary || said_nothing) {
                        shared.hold(wait).await;
                    }
                    let left = cx.time_left().unwrap_or(Duration::MAX);
                    if !fits(wait, left) {
                        return Err(Failure::RateLimited {
                            resource: bucket,
                            until,
                            wait,
                            left,
                            limit: header(&headers, "x-ratelimit-limit")
                                .and_then(|v| v.parse().ok()),
                            secondary,
                        });
                    }
                    tracing::warn!(resource = %bucket, wait_s = wait.as_secs_f64(), "GitHub rate limit hit; waiting before retrying");
                    cx.log(
                        rmcp::model::LoggingLevel::Notice,
                        serde_json::json!(format!(
                            "GitHub asked to slow down ({bucket}); retrying in {} s",
                            wait.as_secs_f64().ceil()
                        )),
                    )
                    .await;
                    last = format!("GitHub kept refusing requests ({bucket} rate limit)");
                    waited(if secondary { "secondary" } else { "primary" }, wait);
                    self.sleep(wait, cx).await?;
                    continue;
                }
                return Err(Failure::Api(error));
            }
            match status.as_u16() {
                // Refused before doing anything: safe to send again.
                502 | 503 => {
                    last = format!("GitHub is unavailable ({})", status.as_u16());
                    self.sleep(retry.backoff(), cx).await?;
                }
                500 | 504 if !write => {
                    last = format!("GitHub failed ({})", status.as_u16());
                    self.sleep(retry.backoff(), cx).await?;
                }
                500 | 504 => {
                    return Err(Failure::Unknown(format!(
                        "GitHub failed ({}) during a write; it may or may not have been made — check before repeating it",
                        status.as_u16()
                    )));
                }
                _ => return Err(Failure::Api(error)),
            }
        }
        Err(Failure::Transport(format!(
            "{last}; gave up after {} attempts",
            self.limits.attempts
        )))
    }

    /// The request every attempt starts from: the token, the API version, the media type.
    fn request(
        &self,
        method: Method,
        url: Url,
        accept: &str,
    ) -> Result<reqwest::RequestBuilder, Failure> {
        let auth = net::secret::header("Bearer ", &self.token).map_err(|_| {
            Failure::Transport(
                "GITHUB_TOKEN holds characters a header cannot carry (a line break?)".into(),
            )
        })?;
        Ok(net::client()
            .map_err(Failure::Transport)?
            .request(method, url)
            .timeout(self.limits.timeout)
            .header("x-github-api-version", API_VERSION)
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(ACCEPT, accept))
    }

    /// One GET, sent once and answered as it came, headers included (the token's scopes are
    /// in one): for `plugboard check --online`, which reports what it sees rather than
    /// waiting out a limit. The error is why no answer came (token masked).
    pub async fn probe(&self, url: Url) -> Result<(StatusCode, HeaderMap, Vec<u8>), String> {
        let resource = resource_of(url.path());
        let sent = match self.request(Method::GET, url, JSON) {
            Ok(request) => request.send().await,
            // The only failure before sending: a token no header can carry (named, not shown).
            Err(Failure::Transport(why)) => return Err(why),
            Err(_) => return Err("the request could not be built".into()),
        };
        let response = sent.map_err(|e| self.secrets.mask(&describe(&e)).into_owned())?;
        let status = response.status();
        let headers = response.headers().clone();
        self.note(resource, &headers);
        match crate::net::read_body(response, crate::net::MAX_UPSTREAM_BODY).await {
            Ok(body) => Ok((status, headers, body.to_vec())),
            Err(crate::net::BodyError::Transport(e)) => {
                Err(self.secrets.mask(&describe(&e)).into_owned())
            }
            Err(too_large) => Err(too_large.to_string()),
        }
    }

    /// `host[:port]` of the API root, for saying which server could not be reached.
    pub fn host(&self) -> String {
        net::host_port(&self.base)
    }

    pub async fn get(&self, url: Url, cx: &ToolContext) -> Result<Response, Failure> {
        self.send(Method::GET, url, JSON, None, cx).await
    }

    /// How long a 403/429 asks to wait, if it is a rate limit (octokit's rules): a secondary
    /// limit waits `retry-after` (or `secondary_wait`); a used-up bucket waits for its reset
    /// plus a second.
    fn rate_wait(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        error: &ApiError,
        resource: &str,
    ) -> Option<(Duration, u64, bool)> {
        // Every number here comes from the network: saturating arithmetic throughout.
        let now = now_secs();
        let retry_after = header(headers, "retry-after").and_then(net::retry::retry_after);
        let secondary = error.message.to_lowercase().contains("secondary rate");
        let remaining = header(headers, "x-ratelimit-remaining").map(str::trim);
        if secondary || retry_after.is_some() {
            let wait = retry_after.unwrap_or(self.limits.secondary_wait);
            return Some((wait, now.saturating_add(wait.as_secs()), true));
        }
        if remaining == Some("0") || (status == 429 && remaining.is_none()) {
            let reset = header(headers, "x-ratelimit-reset")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .or_else(|| self.bucket(resource).map(|b| b.reset))
                .unwrap_or(now.saturating_add(60));
            let wait = Duration::from_secs(reset.saturating_sub(now).saturating_add(1));
            return Some((wait, reset, false));
        }
        None
    }

    fn bucket(&self, resource: &str) -> Option<Bucket> {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(resource)
            .copied()
    }

    /// Take one request from `resource`'s bucket, waiting for its reset when it is used up —
    /// or, when that wait would outlast the call, saying when to come back. With other
    /// replicas, the bucket is the one they share (and a hold any of them was told of holds
    /// this request too); while Redis is away, this replica's share of what it last saw.
    async fn take(&self, resource: &str, cx: &ToolContext) -> Result<(), Failure> {
        let Some(shared) = &self.shared else {
            return self.take_local(resource, false, cx).await;
        };
        loop {
            match shared.take(resource).await {
                Taken::Go => {
                    self.count_locally(resource);
                    return Ok(());
                }
                Taken::Held(wait) => self.wait_hold(resource, wait, cx).await?,
                Taken::UsedUp { limit, reset, now } => {
                    let wait = Duration::from_secs(reset.saturating_sub(now).saturating_add(1));
                    let left = cx.time_left().unwrap_or(Duration::MAX);
                    if !fits(wait, left) {
                        return Err(Failure::RateLimited {
                            resource: resource.to_owned(),
                            until: reset,
                            wait,
                            left,
                            limit,
                            secondary: false,
                        });
                    }
                    self.wait_reset(resource, wait, cx).await?;
                }
                Taken::Unreachable => break,
            }
        }
        if let Some(wait) = shared.local_hold() {
            self.wait_hold(resource, wait, cx).await?;
        }
        self.take_local(resource, true, cx).await
    }

    /// [`Client::take`] from this process's own bookkeeping: `share`, this replica's part of
    /// the bucket, while Redis is away (else the whole of it).
    async fn take_local(
        &self,
        resource: &str,
        share: bool,
        cx: &ToolContext,
    ) -> Result<(), Failure> {
        let left_of = |b: &Bucket| if share { b.share } else { b.remaining };
        loop {
            let wait = {
                let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
                let now = now_secs();
                match buckets.get_mut(resource) {
                    Some(b) if left_of(b) == 0 && b.reset >= now => {
                        let wait =
                            Duration::from_secs(b.reset.saturating_sub(now).saturating_add(1));
                        let left = cx.time_left().unwrap_or(Duration::MAX);
                        if !fits(wait, left) {
                            return Err(Failure::RateLimited {
                                resource: resource.to_owned(),
                                until: b.reset,
                                wait,
                                left,
                                limit: Some(b.limit),
                                secondary: false,
                            });
                        }
                        wait
                    }
                    Some(b) if b.reset < now => {
                        buckets.remove(resource);
                        return Ok(());
                    }
                    Some(b) => {
                        b.remaining = b.remaining.saturating_sub(1);
                        b.share = b.share.saturating_sub(1);
                        return Ok(());
                    }
                    None => return Ok(()),
                }
            };
            self.wait_reset(resource, wait, cx).await?;
            // The window is over: the next response tells the new state.
            self.buckets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(resource);
        }
    }

    /// Count a request the shared bucket let go in this replica's own bookkeeping too, which
    /// it keeps to once Redis is away.
    fn count_locally(&self, resource: &str) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = buckets.get_mut(resource) {
            b.remaining = b.remaining.saturating_sub(1);
            b.share = b.share.saturating_sub(1);
        }
    }

    /// Wait `wait` for `resource`'s used-up bucket to reset, saying so.
    async fn wait_reset(
        &self,
        resource: &str,
        wait: Duration,
        cx: &ToolContext,
    ) -> Result<(), Failure> {
        tracing::info!(
            resource,
            wait_s = wait.as_secs(),
            "GitHub rate limit used up; waiting for its reset"
        );
        cx.log(
            rmcp::model::LoggingLevel::Notice,
            serde_json::json!(format!(
                "GitHub's {resource} rate limit is used up; waiting {} s for it to reset",
                wait.as_secs()
            )),
        )
        .await;
        waited("primary", wait);
        self.sleep(wait, cx).await
    }

    /// Wait out a hold (a secondary limit some replica was told of), or — when it would
    /// outlast the call — say when to come back. Nothing was sent.
    async fn wait_hold(
        &self,
        resource: &str,
        wait: Duration,
        cx: &ToolContext,
    ) -> Result<(), Failure> {
        let left = cx.time_left().unwrap_or(Duration::MAX);
        let secs = wait
            .as_secs()
            .saturating_add(u64::from(wait.subsec_nanos() > 0));
        if !fits(wait, left) {
            return Err(Failure::RateLimited {
                resource: resource.to_owned(),
                until: now_secs().saturating_add(secs),
                wait,
                left,
                limit: None,
                secondary: true,
            });
        }
        tracing::info!(
            resource,
            wait_s = wait.as_secs_f64(),
            "GitHub asked a replica to slow down; every replica waits"
        );
        cx.log(
            rmcp::model::LoggingLevel::Notice,
            serde_json::json!(format!(
                "GitHub asked to slow down; waiting {secs} s before sending"
            )),
        )
        .await;
        waited("secondary", wait);
        self.sleep(wait, cx).await
    }

    /// Remember what the response says about its bucket; what it said, for the other
    /// replicas.
    fn note(&self, resource: &str, headers: &HeaderMap) -> Option<Noted> {
        let number = |name: &str| header(headers, name).and_then(|v| v.parse::<u64>().ok());
        let (Some(limit), Some(remaining), Some(reset)) = (
            number("x-ratelimit-limit"),
            number("x-ratelimit-remaining"),
            number("x-ratelimit-reset"),
        ) else {
            return None;
        };
        let name = header(headers, "x-ratelimit-resource").unwrap_or(resource);
        // With other replicas, this one's part of what is left (while Redis is away).
        let replicas = self
            .shared
            .as_ref()
            .map_or(1, SharedLimits::replicas)
            .max(1);
        let share = remaining / replicas;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(name.to_owned()).or_insert(Bucket {
            limit,
            remaining,
            reset,
            share,
        });
        // Responses to concurrent requests arrive in any order: within one window the
        // smallest count is the latest.
        if reset != bucket.reset {
            *bucket = Bucket {
                limit,
                remaining,
                reset,
                share,
            };
        } else {
            bucket.remaining = bucket.remaining.min(remaining);
            bucket.share = bucket.share.min(share);
            bucket.limit = limit;
        }
        // GitHub's bucket names (core, search, graphql, …) as a label: only ones shaped like
        // them, and few, whatever a server sends.
        let label = github_shaped(name);
        let left = bucket.remaining;
        if label && buckets.len() <= 16 {
            metrics::gauge!("plugboard_github_ratelimit_remaining", "bucket" => name.to_owned())
                .set(left as f64);
        }
        label.then(|| Noted {
            name: name.to_owned(),
            limit,
            remaining,
            reset,
        })
    }

    /// Wait until the next write is due, `write_interval` after the one before (across
    /// every replica, with Redis).
    async fn space_write(&self, cx: &ToolContext) -> Result<(), Failure> {
        if let Some(shared) = &self.shared {
            loop {
                match shared.space_write().await {
                    Due::Now => return Ok(()),
                    Due::After(wait) => {
                        waited("write_spacing", wait);
                        self.sleep(wait, cx).await?;
                    }
                    Due::Held(wait) => self.wait_hold("core", wait, cx).await?,
                }
            }
        }
        while let Err(not_until) = self.writes.check() {
            let wait = not_until.wait_time_from(TokioClock.now());
            waited("write_spacing", wait);
            self.sleep(wait, cx).await?;
        }
        Ok(())
    }

    async fn sleep(&self, wait: Duration, cx: &ToolContext) -> Result<(), Failure> {
        net::sleep(wait, cx.cancellation())
            .await
            .map_err(|_| Failure::Cancelled)
    }

    /// Await `f` unless the call is cancelled first.
    async fn wait<T>(&self, f: impl Future<Output = T>, cx: &ToolContext) -> Result<T, Failure> {
        tokio::select! {
            out = f => Ok(out),
            _ = cx.cancellation().cancelled() => Err(Failure::Cancelled),
        }
    }
}

/// Count a wait before a request: for a rate limit (`primary`: a bucket used up; `secondary`:
/// GitHub asked to slow down) or to space writes out.
fn waited(reason: &'static str, wait: Duration) {
    metrics::histogram!("plugboard_github_wait_seconds", "reason" => reason)
        .record(wait.as_secs_f64());
}

/// A bucket name shaped like GitHub's (`core`, `code_search`, …), whatever a server sends: a
/// metrics label and a Redis key only then.
fn github_shaped(name: &str) -> bool {
    name.len() <= 32 && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// Whether waiting `wait` still leaves the request time to be answered before the call's
/// time runs out (`left`): a second, or a tenth of what is left.
fn fits(wait: Duration, left: Duration) -> bool {
    let margin = Duration::from_secs(1).min(left / 10);
    wait.saturating_add(margin) < left
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `<url>; rel="next", <url>; rel="last"` → (next, last).
pub fn links(headers: &HeaderMap) -> (Option<Url>, Option<Url>) {
    let (mut next, mut last) = (None, None);
    for value in headers.get_all("link") {
        let Ok(value) = value.to_str() else { continue };
        for part in value.split(',') {
            let mut pieces = part.split(';');
            let Some(target) = pieces.next() else {
                continue;
            };
            let target = target.trim().trim_start_matches('<').trim_end_matches('>');
            let Ok(url) = Url::parse(target) else {
                continue;
            };
            for param in pieces {
                let param = param.trim();
                let rel = param
                    .strip_prefix("rel=")
                    .map(|r| r.trim_matches('"'))
                    .unwrap_or("");
                for r in rel.split_whitespace() {
                    match r {
                        "next" => next = Some(url.clone()),
                        "last" => last = Some(url.clone()),
                        _ => {}
                    }
                }
            }
        }
    }
    (next, last)
}

/// basic-error `{"message","documentation_url","status"}` and validation errors
/// `{"message":"Validation Failed","errors":[{"resource","field","code"}|{"code":"custom","message"}|"text"]}`.
pub fn parse_error(status: StatusCode, body: &[u8]) -> ApiError {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    // An empty message says nothing: the status's own words then (a fuzzer found
    // `{"message":""}` giving an error that said nothing at all).
    let message = match value
        .get("message")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        Some(m) => m.to_owned(),
        None => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() || text.starts_with('<') || value.is_object() {
                status.canonical_reason().unwrap_or("error").to_owned()
            } else {
                text.chars().take(300).collect()
            }
        }
    };
    let errors = value
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| match e {
            Value::String(s) => s.clone(),
            Value::Object(o) => {
                let get = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("");
                if !get("message").is_empty() {
                    get("message").to_owned()
                } else {
                    let mut s = format!("{}: {}", get("field"), get("code").replace('_', " "));
                    if !get("resource").is_empty() {
                        s.push_str(&format!(" ({})", get("resource")));
                    }
                    s
                }
            }
            other => other.to_string(),
        })
        .collect();
    ApiError {
        status,
        message,
        errors,
    }
}

fn utc(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map(|t| t.format("%H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{secs} (unix time)"))
}

/// What the model should do about a failure; `what` names the attempted action.
pub fn advice(failure: Failure, what: &str) -> ToolError {
    let e = match failure {
        Failure::Api(e) => e,
        Failure::RateLimited {
            resource,
            until,
            wait,
            left,
            limit,
            secondary,
        } => {
            if secondary {
                return ToolError::Failed(format!(
                    "{what}: GitHub's secondary rate limit asks to wait {} s (until {}), longer \
                     than this call may still wait ({} s). The request was refused, not \
                     applied; try again after {}, and make fewer requests at once.",
                    wait.as_secs(),
                    utc(until),
                    left.as_secs(),
                    utc(until)
                ));
            }
            let name = match resource.as_str() {
                "code_search" => "code-search",
                "search" => "search",
                "core" => "REST",
                other => other,
            };
            let quota = match (resource.as_str(), limit) {
                ("code_search" | "search", Some(l)) => format!(" ({l} requests a minute)"),
                (_, Some(l)) => format!(" ({l} requests an hour)"),
                _ => String::new(),
            };
            return ToolError::Failed(format!(
                "{what}: GitHub's {name} rate limit{quota} is used up until {} (in {} s), longer \
                 than this call may still wait ({} s). Nothing was sent; try again after {}.",
                utc(until),
                wait.as_secs(),
                left.as_secs(),
                utc(until)
            ));
        }
        Failure::Cancelled => return ToolError::Failed(format!("{what}: cancelled")),
        Failure::Unknown(m) | Failure::Transport(m) => {
            return ToolError::Upstream(format!("{what}: {m}"));
        }
    };
    let mut said = e.message.clone();
    if !e.errors.is_empty() {
        said.push_str(&format!(" — {}", e.errors.join("; ")));
    }
    match e.status.as_u16() {
        401 => ToolError::Forbidden(format!(
            "{what}: GitHub rejected GITHUB_TOKEN ({said}). Set GITHUB_TOKEN to a valid token \
             (a classic ghp_… or a fine-grained github_pat_… token)."
        )),
        403 => ToolError::Forbidden(format!(
            "{what}: GitHub refused ({said}). The token lacks the permission: a fine-grained \
             token needs this repository selected and Issues / Pull requests / Contents access \
             (write access for changes); a classic token needs the `repo` scope for private \
             repositories."
        )),
        404 => ToolError::NotFound(format!(
            "{what}: not found. Either it does not exist, or the repository is private and \
             GITHUB_TOKEN cannot see it (GitHub answers 404 for both). Check the owner, the \
             repository name and the number, and that the token has access to the repository."
        )),
        406 => ToolError::InvalidArguments(format!(
            "{what}: GitHub cannot produce this ({said}); for a pull request too large to diff, \
             use method `get_files`, which pages through the changed files."
        )),
        410 => ToolError::NotFound(format!(
            "{what}: gone ({said}): the issue was deleted, or issues are disabled in this \
             repository."
        )),
        422 if said.contains("first 1000 search results") => ToolError::InvalidArguments(format!(
            "{what}: {said}. GitHub returns only the first 1,000 results of a search: narrow the \
             query (qualifiers such as repo:, label:, created:>2024-01-01) instead of paging further."
        )),
        422 => ToolError::InvalidArguments(format!("{what}: GitHub rejected it: {said}")),
        400 => ToolError::InvalidArguments(format!("{what}: GitHub rejected it: {said}")),
        _ => ToolError::Upstream(format!("{what}: GitHub answered {}: {said}", e.status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_gives_next_and_last_pages() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            "<https://api.github.com/repositories/1/issues?per_page=3&page=2>; rel=\"next\", \
             <https://api.github.com/repositories/1/issues?per_page=3&page=5>; rel=\"last\""
                .parse()
                .unwrap(),
        );
        let (next, last) = links(&h);
        assert_eq!(next.as_ref().and_then(page_of), Some(2));
        assert_eq!(last.as_ref().and_then(page_of), Some(5));
        assert_eq!(links(&HeaderMap::new()).0, None);
    }

    #[test]
    fn validation_errors_are_flattened() {
        let body = br#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","field":"head","code":"invalid"},{"resource":"PullRequest","code":"custom","message":"No commits between main and main"},"plain"],"documentation_url":"x"}"#;
        let e = parse_error(StatusCode::UNPROCESSABLE_ENTITY, body);
        assert_eq!(e.message, "Validation Failed");
        assert_eq!(
            e.errors,
            [
                "head: invalid (PullRequest)",
                "No commits between main and main",
                "plain"
            ]
        );
        let e = parse_error(
            StatusCode::FORBIDDEN,
            b"Request forbidden by administrative rules.",
        );
        assert_eq!(e.message, "Request forbidden by administrative rules.");
    }

    /// Before: `now + retry-after` overflowed (a panic in a debug build) on a hostile header.
    #[test]
    fn hostile_rate_limit_headers_saturate() {
        let c = Client::new("https://api.github.com", "t".into(), Limits::default()).unwrap();
        let limited = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (name, value) in pairs {
                h.insert(
                    reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            let error = parse_error(
                StatusCode::FORBIDDEN,
                br#"{"message":"API rate limit exceeded"}"#,
            );
            c.rate_wait(StatusCode::FORBIDDEN, &h, &error, "core")
        };
        let max = u64::MAX.to_string();
        let (wait, until, secondary) = limited(&[("retry-after", &max)]).unwrap();
        assert!(secondary);
        assert_eq!(until, u64::MAX);
        assert!(wait >= Duration::from_secs(u64::MAX / 2), "{wait:?}");
        let (wait, until, _) = limited(&[("retry-after", "1e300")]).unwrap();
        assert_eq!((wait, until), (Duration::MAX, u64::MAX));
        let (wait, until, secondary) =
            limited(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &max)]).unwrap();
        assert!(!secondary);
        assert_eq!(until, u64::MAX);
        assert!(wait >= Duration::from_secs(u64::MAX / 2), "{wait:?}");
        // A negative or garbled reset: the default wait, not a panic.
        for reset in ["-5", "-99999999999999999999", "soon"] {
            let (wait, _, _) =
                limited(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", reset)]).unwrap();
            assert!(wait <= Duration::from_secs(61), "{reset}: {wait:?}");
        }
        let (wait, _, _) = limited(&[("retry-after", "-5")]).unwrap_or_default();
        assert!(wait <= Duration::from_secs(60), "{wait:?}");
        // What the model is told, however far off the reset.
        let told = advice(
            Failure::RateLimited {
                resource: "core".into(),
                until: u64::MAX,
                wait: Duration::MAX,
                left: Duration::from_secs(5),
                limit: Some(5000),
                secondary: false,
            },
            "listing issues",
        )
        .to_string();
        assert!(told.contains("REST rate limit"), "{told}");
    }

    /// Writes go `write_interval` apart on tokio's clock: paused, three take two intervals.
    #[tokio::test(start_paused = true)]
    async fn writes_are_spaced_on_tokios_clock() {
        let limits = Limits {
            write_interval: Duration::from_secs(1),
            ..Limits::default()
        };
        let c = Client::new("https://api.github.com", "t".into(), limits).unwrap();
        let cx = ToolContext::detached();
        let started = tokio::time::Instant::now();
        for _ in 0..3 {
            c.space_write(&cx).await.unwrap();
        }
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[test]
    fn debug_shows_no_token() {
        let c = Client::new(
            "https://api.github.com",
            "ghp_secret123".into(),
            Limits::default(),
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("ghp_secret123"), "{shown}");
    }

    #[test]
    fn ghes_base_keeps_its_prefix() {
        let c = Client::new(
            "https://ghe.example.com/api/v3",
            "t".into(),
            Limits::default(),
        )
        .unwrap();
        assert_eq!(
            c.url(&["repos", "o", "r", "issues"]).as_str(),
            "https://ghe.example.com/api/v3/repos/o/r/issues"
        );
        let c = Client::new("https://api.github.com", "t".into(), Limits::default()).unwrap();
        assert_eq!(
            c.url(&["search", "code"]).as_str(),
            "https://api.github.com/search/code"
        );
        assert!(Client::new("ftp://x", "t".into(), Limits::default()).is_err());
        assert_eq!(resource_of("/api/v3/search/code"), "code_search");
        assert_eq!(resource_of("/search/issues"), "search");
        assert_eq!(resource_of("/repos/o/r/issues"), "core");
    }

    #[test]
    fn advice_names_the_fix() {
        let e = |status: u16, body: &str| {
            advice(
                Failure::Api(parse_error(
                    StatusCode::from_u16(status).unwrap(),
                    body.as_bytes(),
                )),
                "getting o/r#1",
            )
            .to_string()
        };
        assert!(e(404, r#"{"message":"Not Found"}"#).contains("private"));
        assert!(e(410, r#"{"message":"This issue was deleted"}"#).contains("deleted"));
        assert!(e(401, r#"{"message":"Bad credentials"}"#).contains("GITHUB_TOKEN"));
        let limited = advice(
            Failure::RateLimited {
                resource: "code_search".into(),
                until: 1_704_067_260,
                wait: Duration::from_secs(61),
                left: Duration::from_secs(5),
                limit: Some(10),
                secondary: false,
            },
            "searching code",
        )
        .to_string();
        assert!(
            limited.contains("code-search rate limit (10 requests a minute)"),
            "{limited}"
        );
        assert!(limited.contains("00:01:00 UTC"), "{limited}");
    }
}
