//! 2026-07-28 continuations across replicas, through the Redis they share.
//!
//! A tool call that asked the client for input is a live task parked on the replica that ran
//! it (`plugin::calls`): it cannot travel in the `requestState`. So the state names that
//! replica (`<route>.<random>`), and a replica handed a continuation it does not hold
//! forwards it to the holder and relays the answer back:
//!
//! - every serving replica subscribes to `plugboard:calls:<route>`;
//! - the receiver publishes the continuation with a fresh reply key there and waits on that
//!   key (`BLPOP`, on a connection of its own: a blocking read would stall the shared one);
//! - the holder resumes the parked call as it would for its own client and `RPUSH`es the
//!   response (the final result, or `input_required` again with a new state naming itself)
//!   to the reply key, which expires a minute later if nobody reads it.
//!
//! The route is trusted for routing only: the holder still looks the state up in its own
//! map and checks the tool and the caller, and the random part keeps the state unguessable.
//! A forwarded continuation is never forwarded again, so a forged state costs one message.
//! Nobody subscribed (the holder died), or the holder gone quiet, means no answer: the
//! caller tells the client to call the tool again, at once rather than after a timeout.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use redis::AsyncCommands;
use rmcp::model::{
    CallToolResponse, CallToolResult, ClientCapabilities, ContentBlock, InputRequiredResult,
    InputResponses,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::shared::Redis;

/// How long one blocking read waits before the receiver checks the holder is still there.
const SLICE: Duration = Duration::from_secs(1);
/// How long an answer nobody read stays in Redis.
const REPLY_KEPT: Duration = Duration::from_secs(60);
/// While Redis is away, how often the subscription is tried again.
const RETRY_REDIS: Duration = Duration::from_secs(2);

/// What a replica hands the holder of a parked call: the client's retry, as it came.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Continuation {
    pub request_state: String,
    /// The tool the client names: the holder checks it is the parked call's.
    pub tool: String,
    pub input_responses: Option<InputResponses>,
    /// Who is calling, as the calls pipeline compares callers (opaque here).
    pub owner: String,
    /// What the client declared it can do, for the handler's next request to it.
    pub capabilities: Option<ClientCapabilities>,
}

/// One message on a replica's channel.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Message {
    /// Resume this continuation and push the response to `reply`.
    Resume {
        reply: String,
        continuation: Box<Continuation>,
    },
    /// The client of the continuation answered at `reply` went away, or its wait ended:
    /// stop the call, as a cancelled request stops a call held here.
    Cancel { reply: String },
}

/// The response as it travels back (rmcp's `CallToolResponse` has no serde of its own).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Complete(CallToolResult),
    InputRequired(InputRequiredResult),
}

impl From<CallToolResponse> for Reply {
    fn from(response: CallToolResponse) -> Self {
        match response {
            CallToolResponse::Complete(result) => Reply::Complete(result),
            CallToolResponse::InputRequired(result) => Reply::InputRequired(result),
            // The calls pipeline makes no tasks.
            _ => Reply::Complete(CallToolResult::error(vec![ContentBlock::text(
                "the replica holding this call answered with a task, which cannot be relayed",
            )])),
        }
    }
}

impl From<Reply> for CallToolResponse {
    fn from(reply: Reply) -> Self {
        match reply {
            Reply::Complete(result) => result.into(),
            Reply::InputRequired(result) => result.into(),
        }
    }
}

/// This replica's side of the relay; cheap to clone.
#[derive(Clone)]
pub struct CallRelay {
    redis: Redis,
    /// What this replica's states start with, and its channel's name ends with.
    route: String,
    /// Continuations resumed here for other replicas, by reply key: what a `Cancel` stops.
    rounds: Arc<Mutex<HashMap<String, CancellationToken>>>,
}

impl std::fmt::Debug for CallRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRelay")
            .field("route", &self.route)
            .finish()
    }
}

/// The replica a state names, if it names one (a state made without Redis does not).
pub fn holder_of(state: &str) -> Option<&str> {
    let (route, random) = state.split_once('.')?;
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(route) && hex(random)).then_some(route)
}

fn channel(route: &str) -> String {
    format!("plugboard:calls:{route}")
}

impl CallRelay {
    pub fn new(redis: &Redis) -> Self {
        // The replica's id without its dashes, shortened: 64 bits tell the replicas of one
        // Redis apart, and the state stays short.
        let id: String = redis
            .replica_id()
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(16)
            .collect();
        Self {
            redis: redis.clone(),
            route: id,
            rounds: Arc::default(),
        }
    }

    /// What this replica's states start with.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// A new state naming this replica: its route, then 122 random bits.
    pub fn new_state(&self) -> String {
        format!("{}.{}", self.route, uuid::Uuid::new_v4().simple())
    }

    /// Hand `continuation` to the replica `holder` and wait for its response, for at most
    /// `wait` or until `round` (the client's request) is cancelled. `None`: nobody answered
    /// (the holder is gone, Redis is away, the wait ended) — the call cannot go on.
    pub async fn forward(
        &self,
        holder: &str,
        continuation: Continuation,
        wait: Duration,
        round: &CancellationToken,
    ) -> Option<CallToolResponse> {
        let reply = format!("plugboard:calls:reply:{}", uuid::Uuid::new_v4().simple());
        let to = channel(holder);
        let host = self.redis.host();
        let message = Message::Resume {
            reply: reply.clone(),
            continuation: Box::new(continuation),
        };
        let message = serde_json::to_string(&message).ok()?;
        // A connection of its own: a blocking read must not hold up the shared one's other
        // commands, nor be cut short by its one-second response timeout.
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(SLICE + Duration::from_secs(2)));
        let mut connection = match self
            .redis
            .client()
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(redis = %host, error = ?e.kind(), "cannot forward a continuation to the replica holding its call");
                return None;
            }
        };
        let heard: usize = match connection.publish(&to, &message).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(redis = %host, error = ?e.kind(), "cannot forward a continuation to the replica holding its call");
                return None;
            }
        };
        if heard == 0 {
            tracing::info!(
                holder,
                "a continuation names a replica that is not serving (gone, or never was)"
            );
            return None;
        }
        tracing::debug!(
            holder,
            "continuation forwarded to the replica holding its call"
        );
        let deadline = Instant::now() + wait;
        loop {
            let popped = tokio::select! {
                popped = connection.blpop::<_, Option<[String; 2]>>(&reply, SLICE.as_secs_f64()) => popped,
                () = round.cancelled() => {
                    self.cancel(&to, reply).await;
                    return None;
                }
            };
            match popped {
                Ok(Some([_, body])) => {
                    return match serde_json::from_str::<Reply>(&body) {
                        Ok(reply) => Some(reply.into()),
                        Err(e) => {
                            tracing::warn!(holder, error = %e, "the replica holding a call answered in a form this one cannot read");
                            None
                        }
                    };
                }
                Ok(None) if !listening(&mut connection, &to).await => {
                    tracing::info!(
                        holder,
                        "the replica holding a call stopped before answering its continuation"
                    );
                    return None;
                }
                Ok(None) if Instant::now() >= deadline => {
                    tracing::info!(
                        holder,
                        "the replica holding a call did not answer its continuation in time"
                    );
                    self.cancel(&to, reply).await;
                    return None;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(redis = %host, error = ?e.kind(), "lost Redis while waiting for the replica holding a call");
                    return None;
                }
            }
        }
    }

    /// Tell the holder to stop the round answered at `reply` (best-effort). On the shared
    /// connection: the forwarding one may still be blocked in a read Redis has not ended.
    async fn cancel(&self, to: &str, reply: String) {
        if let Ok(message) = serde_json::to_string(&Message::Cancel { reply }) {
            let mut connection = self.redis.connection();
            let _: Result<usize, _> = connection.publish(to, message).await;
        }
    }

    /// Answer the continuations other replicas forward here with `resume` (given the
    /// continuation and the round's cancellation), until `ct` is cancelled; resubscribed
    /// after Redis comes back. Returns once subscribed (or the first try failed).
    pub async fn listen<F, Fut>(&self, resume: F, ct: CancellationToken)
    where
        F: Fn(Continuation, CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = CallToolResponse> + Send + 'static,
    {
        let relay = self.clone();
        let resume = Arc::new(resume);
        let (subscribed, first) = tokio::sync::oneshot::channel::<()>();
        let mut subscribed = Some(subscribed);
        tokio::spawn(async move {
            loop {
                let listened = async {
                    let mut pubsub = relay.redis.client().get_async_pubsub().await?;
                    pubsub.subscribe(channel(&relay.route)).await?;
                    if let Some(told) = subscribed.take() {
                        let _ = told.send(());
                    }
                    let mut messages = pubsub.on_message();
                    while let Some(message) = futures::StreamExt::next(&mut messages).await {
                        let body: String = message.get_payload().unwrap_or_default();
                        relay.heard(&body, &resume);
                    }
                    Ok::<(), redis::RedisError>(())
                };
                tokio::select! {
                    ended = listened => {
                        let error = ended.err().map(|e| e.kind());
                        tracing::warn!(redis = %relay.redis.host(), ?error, "not hearing continuations forwarded by other replicas; trying again in 2 s");
                    }
                    () = ct.cancelled() => return,
                }
                subscribed.take();
                tokio::select! {
                    () = tokio::time::sleep(RETRY_REDIS) => {}
                    () = ct.cancelled() => return,
                }
            }
        });
        let _ = first.await;
    }

    /// One message from another replica: resume (in a task of its own) or cancel.
    fn heard<F, Fut>(&self, body: &str, resume: &Arc<F>)
    where
        F: Fn(Continuation, CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = CallToolResponse> + Send + 'static,
    {
        let (reply, continuation) = match serde_json::from_str::<Message>(body) {
            Ok(Message::Resume {
                reply,
                continuation,
            }) => (reply, continuation),
            Ok(Message::Cancel { reply }) => {
                if let Some(round) = self.rounds().get(&reply) {
                    round.cancel();
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "a continuation forwarded by another replica could not be read (are the replicas of different versions?)");
                return;
            }
        };
        let round = CancellationToken::new();
        self.rounds().insert(reply.clone(), round.clone());
        let (relay, resume) = (self.clone(), resume.clone());
        tokio::spawn(async move {
            let response = resume(*continuation, round).await;
            relay.rounds().remove(&reply);
            let Ok(body) = serde_json::to_string(&Reply::from(response)) else {
                return;
            };
            let mut connection = relay.redis.connection();
            let pushed: Result<(), _> = redis::pipe()
                .atomic()
                .rpush(&reply, body)
                .ignore()
                .pexpire(
                    &reply,
                    i64::try_from(REPLY_KEPT.as_millis()).unwrap_or(60_000),
                )
                .ignore()
                .query_async(&mut connection)
                .await;
            if let Err(e) = pushed {
                tracing::warn!(redis = %relay.redis.host(), error = ?e.kind(), "could not send a forwarded continuation's answer back");
            }
        });
    }

    fn rounds(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.rounds.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether some replica still listens on `channel` (a replica that died lost its
/// subscription with its connection).
async fn listening(connection: &mut redis::aio::MultiplexedConnection, channel: &str) -> bool {
    let counted: Result<(String, usize), _> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(connection)
        .await;
    counted.is_ok_and(|(_, n)| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_names_its_holder_only_when_it_has_the_form() {
        assert_eq!(
            holder_of("0a1b2c3d4e5f6071.89abcdef"),
            Some("0a1b2c3d4e5f6071")
        );
        for plain in [
            "not-a-state",
            "",
            ".abc",
            "abc.",
            "zz.abc",
            "abc.zz",
            "a.b.c",
        ] {
            assert_eq!(holder_of(plain), None, "{plain:?}");
        }
        assert_eq!(holder_of(&uuid::Uuid::new_v4().simple().to_string()), None);
    }

    #[test]
    fn responses_travel_back_unchanged() {
        let done: CallToolResponse =
            CallToolResult::success(vec![ContentBlock::text("LLM response: Paris")]).into();
        let asked: CallToolResponse =
            InputRequiredResult::new(None, Some("0a1b.2c3d".to_owned())).into();
        for response in [done, asked] {
            let before = serde_json::to_value(Reply::from(response)).unwrap();
            let body = before.to_string();
            let back: CallToolResponse = serde_json::from_str::<Reply>(&body).unwrap().into();
            assert_eq!(serde_json::to_value(Reply::from(back)).unwrap(), before);
        }
    }
}
