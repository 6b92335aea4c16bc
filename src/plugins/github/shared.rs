//! The GitHub client's limits, shared by the replicas of this server through Redis
//! (`PLUGBOARD_REDIS_URL`): what one replica learnt from GitHub's headers every replica acts
//! on, and no replica sends what one server would not.
//!
//! Keys, all under `plugboard:github:<token>:` where `<token>` is the first 8 bytes of the
//! token's SHA-256 in hex (the limits are the token's; the token itself is never stored):
//!
//! - `bucket:<resource>` — a hash `{limit, remaining, reset}` per rate-limit bucket (`core`,
//!   `search`, `code_search`, …) as the latest response said, counted down by every request
//!   any replica sends (so a replica that has not seen an answer yet knows the bucket is used
//!   up). Expires a minute after its reset (at most two hours on).
//! - `hold` — a secondary limit (`retry-after`, or GitHub's "slow down") one replica was told
//!   of: no replica sends anything with the token until it ends (at most an hour).
//! - `writes` — the write spacing's GCRA time ([`crate::net::gcra`]).
//!
//! Every check is one Lua script on Redis's clock: counting down, noting a header and taking
//! a write's moment never race. While Redis cannot be reached, the client keeps to this
//! replica's share: writes `interval × replicas` apart, each bucket's remaining divided by the
//! replicas last seen, and its own holds; it says so once in its log, in
//! `plugboard_shared_limits_degraded` and in the plugin's status.

use std::{sync::Mutex, time::Duration};

use redis::Script;
use tokio::time::Instant;

use crate::net::{
    SecretString,
    gcra::{self, Due, Gcra, LocalSpacing, Reach},
    shared::Redis,
};

/// Take one request from a bucket. KEYS[1]: the bucket, KEYS[2]: the token's hold. Returns
/// `{0}` to go (counted down, or no bucket known, or its window is over), `{1, limit, reset,
/// now}` when it is used up (seconds), `{2, ms}` while a hold lasts.
const TAKE: &str = r"
local held = redis.call('PTTL', KEYS[2])
if held > 0 then
  return {2, held}
end
local b = redis.call('HMGET', KEYS[1], 'limit', 'remaining', 'reset')
if not b[2] then
  return {0}
end
local now = tonumber(redis.call('TIME')[1])
local reset = tonumber(b[3])
if reset < now then
  redis.call('DEL', KEYS[1])
  return {0}
end
if tonumber(b[2]) <= 0 then
  return {1, tonumber(b[1]), reset, now}
end
redis.call('HINCRBY', KEYS[1], 'remaining', -1)
return {0}
";

/// A response described its bucket. KEYS[1]: the bucket; ARGV: limit, remaining, reset
/// (seconds). Within one window the smallest count is the latest (answers to requests of
/// several replicas arrive in any order, and the count-down may be ahead of GitHub's); an
/// answer from a window already over is ignored.
const NOTE: &str = r"
local remaining, reset = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = tonumber(redis.call('TIME')[1])
local old = redis.call('HMGET', KEYS[1], 'remaining', 'reset')
local old_reset = tonumber(old[2])
if old_reset == reset then
  remaining = math.min(remaining, tonumber(old[1]))
elseif old_reset and old_reset > reset and old_reset >= now then
  return
end
redis.call('HSET', KEYS[1], 'limit', ARGV[1], 'remaining', string.format('%d', remaining), 'reset', ARGV[3])
redis.call('EXPIRE', KEYS[1], math.min(math.max(reset - now + 60, 60), 7200))
";

static TAKE_SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(TAKE));
static NOTE_SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(NOTE));

/// The largest reset kept (about 35 million years): a hostile header's `u64::MAX` would not
/// survive Lua's doubles.
const MAX_RESET: u64 = 1 << 50;

/// What the shared bucket said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    Go,
    /// A hold some replica was told of lasts this much longer.
    Held(Duration),
    /// The bucket is used up until `reset`; `now` is Redis's second (for the wait).
    UsedUp {
        limit: Option<u64>,
        reset: u64,
        now: u64,
    },
    /// Redis could not be asked: the caller keeps to its share.
    Unreachable,
}

pub(crate) struct SharedLimits {
    reach: Reach,
    /// `plugboard:github:<token hash>:`.
    prefix: String,
    writes: Gcra,
    /// The write spacing one server keeps (the share multiplies it).
    interval: Duration,
    /// While Redis is away: this replica's share of the write spacing.
    fallback_writes: LocalSpacing,
    /// Until when the last hold this replica was told of lasts: kept to while Redis is away.
    local_hold: Mutex<Option<Instant>>,
}

impl SharedLimits {
    pub(crate) fn new(redis: &Redis, token: &SecretString, write_interval: Duration) -> Self {
        let token_key: String = {
            use sha2::Digest;
            let digest =
                sha2::Sha256::digest(secrecy::ExposeSecret::expose_secret(token).as_bytes());
            digest[..8].iter().map(|b| format!("{b:02x}")).collect()
        };
        let prefix = format!("plugboard:github:{token_key}:");
        let writes = Gcra::new(
            redis,
            format!("{prefix}writes"),
            format!("{prefix}hold"),
            write_interval,
            1,
        );
        Self {
            reach: Reach::new(redis, "github"),
            prefix,
            writes,
            interval: write_interval,
            fallback_writes: LocalSpacing::default(),
            local_hold: Mutex::default(),
        }
    }

    fn bucket_key(&self, resource: &str) -> String {
        format!("{}bucket:{resource}", self.prefix)
    }

    fn hold_key(&self) -> String {
        format!("{}hold", self.prefix)
    }

    /// Take one request from `resource`'s shared bucket.
    pub(crate) async fn take(&self, resource: &str) -> Taken {
        if !self.reach.worth_asking() {
            return Taken::Unreachable;
        }
        let mut connection = self.reach.redis().connection();
        let asked: Result<Vec<u64>, _> = TAKE_SCRIPT
            .key(self.bucket_key(resource))
            .key(self.hold_key())
            .invoke_async(&mut connection)
            .await;
        let answer = match asked {
            Ok(answer) => answer,
            Err(e) => {
                self.reach.missed(&format!("{:?}", e.kind()));
                return Taken::Unreachable;
            }
        };
        self.reach.reached();
        match answer.as_slice() {
            [2, ms, ..] => Taken::Held(Duration::from_millis((*ms).max(1))),
            [1, limit, reset, now, ..] => Taken::UsedUp {
                limit: Some(*limit).filter(|l| *l > 0),
                reset: *reset,
                now: *now,
            },
            _ => Taken::Go,
        }
    }

    /// Whether a write may go now, across every replica (or, while Redis is away, by this
    /// replica's share: `interval × replicas` apart).
    pub(crate) async fn space_write(&self) -> Due {
        if self.reach.worth_asking() {
            match self.writes.take().await {
                Ok(due) => {
                    self.reach.reached();
                    return due;
                }
                Err(e) => self.reach.missed(&e),
            }
        }
        self.fallback_writes
            .take(self.interval.saturating_mul(self.reach.replicas()))
    }

    /// What a response said about `bucket` (a name shaped like GitHub's), for every replica.
    pub(crate) async fn note(&self, bucket: &str, limit: u64, remaining: u64, reset: u64) {
        if !self.reach.worth_asking() {
            return;
        }
        let mut connection = self.reach.redis().connection();
        let noted: Result<(), _> = NOTE_SCRIPT
            .key(self.bucket_key(bucket))
            .arg(limit.min(MAX_RESET))
            .arg(remaining.min(MAX_RESET))
            .arg(reset.min(MAX_RESET))
            .invoke_async(&mut connection)
            .await;
        match noted {
            Ok(()) => self.reach.reached(),
            Err(e) => self.reach.missed(&format!("{:?}", e.kind())),
        }
    }

    /// A secondary limit: no replica sends with this token for `wait`.
    pub(crate) async fn hold(&self, wait: Duration) {
        let until = Instant::now().checked_add(wait.min(gcra::MAX_HOLD));
        {
            let mut held = self.local_hold.lock().unwrap_or_else(|e| e.into_inner());
            *held = (*held).max(until);
        }
        if !self.reach.worth_asking() {
            return;
        }
        match gcra::hold(self.reach.redis(), &self.hold_key(), wait).await {
            Ok(()) => self.reach.reached(),
            Err(e) => {
                tracing::warn!(error = %e, "could not tell the other replicas of a GitHub secondary limit");
                self.reach.missed(&e);
            }
        }
    }

    /// What is left of the last hold this replica was told of itself.
    pub(crate) fn local_hold(&self) -> Option<Duration> {
        let held = *self.local_hold.lock().unwrap_or_else(|e| e.into_inner());
        held.and_then(|until| until.checked_duration_since(Instant::now()))
            .filter(|left| !left.is_zero())
    }

    /// The replicas seen at the last heartbeat.
    pub(crate) fn replicas(&self) -> u64 {
        u64::from(self.reach.replicas())
    }

    /// The plugin's status while Redis is away.
    pub(crate) fn condition(&self) -> Option<String> {
        if !self.reach.degraded() {
            return None;
        }
        let replicas = self.reach.replicas();
        Some(format!(
            "limits not shared: Redis at {} cannot be reached, so this replica keeps to its \
             share (1/{replicas}) of GitHub's limits — writes {:.2} s apart — until it is back",
            self.reach.redis().host(),
            self.interval.saturating_mul(replicas).as_secs_f64()
        ))
    }
}
