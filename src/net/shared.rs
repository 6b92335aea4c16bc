//! Limits several replicas share, through Redis (`PLUGBOARD_REDIS_URL`): the rolling window
//! of [`super::Window`] kept in Redis, so that N replicas of plugboard together send a
//! service no more than one would.
//!
//! Each key's places are the members of one sorted set, scored by when they free: `now +
//! lease` while the request is out, `now + span` once its answer arrived — the in-process
//! window's rule (a place frees `span` after the answer), with a lease so that a replica that
//! dies holding places loses them only until the lease ends. Taking a place is one Lua
//! script (drop the members whose time has come, count, add), so two replicas can never both
//! take the last place; the time is Redis's own (`TIME`), one clock for every replica.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use redis::{AsyncCommands, Script, aio::ConnectionManager};

/// Take a place. KEYS[1]: the set; ARGV: limit, lease ms, member. Returns 0 when taken, else
/// the milliseconds until the first place frees.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
  return 0
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(first[2]) - now)
";

/// The answer arrived: the place frees `span` from now. KEYS[1]: the set; ARGV: span ms,
/// member. A member already gone (its lease ended) stays gone.
const FREE: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
";

/// Longest wait between two tries for a place: a place held by a request in flight frees
/// when its answer arrives, which no score says in advance.
const POLL: Duration = Duration::from_millis(25);

/// A connection to the Redis the replicas share; cheap to clone (one multiplexed
/// connection, reconnected when it drops).
#[derive(Clone)]
pub struct Redis {
    connection: ConnectionManager,
    /// Where the server is, for messages (never the URL: it may hold a password).
    host: String,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("host", &self.host).finish()
    }
}

impl Redis {
    /// Connect to `url` (`redis://`, `rediss://` for TLS, `redis+unix://`).
    pub async fn connect(url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("PLUGBOARD_REDIS_URL is not a Redis URL ({:?})", e.kind()))?;
        let host = match &client.get_connection_info().addr() {
            redis::ConnectionAddr::Tcp(host, port)
            | redis::ConnectionAddr::TcpTls { host, port, .. } => {
                format!("{host}:{port}")
            }
            redis::ConnectionAddr::Unix(path) => path.display().to_string(),
            _ => "redis".to_owned(),
        };
        let connection = ConnectionManager::new(client)
            .await
            .map_err(|e| format!("cannot reach Redis at {host} ({:?})", e.kind()))?;
        Ok(Self { connection, host })
    }

    pub fn host(&self) -> &str {
        &self.host
    }
}

/// `limit` requests per `span` per key, across every replica sharing the Redis.
#[derive(Debug, Clone)]
pub struct SharedWindow {
    redis: Redis,
    /// Names this limit's sets: `plugboard:window:<name>:<key>`.
    name: String,
    limit: usize,
    span: Duration,
    lease: Duration,
}

/// One request's place; dropping it frees the place `span` later (in Redis).
pub struct SharedSlot {
    redis: Redis,
    set: String,
    member: String,
    span: Duration,
    freed: bool,
}

impl SharedWindow {
    /// `lease`: how long a place may stay taken without its answer (longer than any request
    /// may take; a replica that dies loses its places after it).
    pub fn new(redis: &Redis, name: &str, limit: usize, span: Duration, lease: Duration) -> Self {
        Self {
            redis: redis.clone(),
            name: name.to_owned(),
            limit: limit.max(1),
            span,
            lease: lease.max(span),
        }
    }

    /// Wait for a place under `key`'s limit. An error: Redis could not be asked.
    pub async fn acquire(&self, key: &str) -> Result<SharedSlot, String> {
        let set = format!("plugboard:window:{}:{key}", self.name);
        let member = member();
        let script = Script::new(TAKE);
        loop {
            let mut connection = self.redis.connection.clone();
            let wait: u64 = script
                .key(&set)
                .arg(self.limit)
                .arg(millis(self.lease))
                .arg(&member)
                .invoke_async(&mut connection)
                .await
                .map_err(|e| format!("Redis at {}: {:?}", self.redis.host, e.kind()))?;
            if wait == 0 {
                return Ok(SharedSlot {
                    redis: self.redis.clone(),
                    set,
                    member,
                    span: self.span,
                    freed: false,
                });
            }
            tokio::time::sleep(Duration::from_millis(wait).min(POLL)).await;
        }
    }
}

impl SharedSlot {
    /// Give the place back at once: the request was never sent.
    pub async fn unused(mut self) {
        self.freed = true;
        let mut connection = self.redis.connection.clone();
        let removed: Result<u64, _> = connection.zrem(&self.set, &self.member).await;
        if let Err(e) = removed {
            tracing::warn!(redis = %self.redis.host, error = ?e.kind(), "could not give back a place; it frees when its lease ends");
        }
    }
}

impl Drop for SharedSlot {
    fn drop(&mut self) {
        if self.freed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // shutting down: the lease frees it
        };
        let (redis, set, member, span) = (
            self.redis.clone(),
            std::mem::take(&mut self.set),
            std::mem::take(&mut self.member),
            self.span,
        );
        runtime.spawn(async move {
            let mut connection = redis.connection.clone();
            let freed: Result<(), _> = Script::new(FREE)
                .key(&set)
                .arg(millis(span))
                .arg(&member)
                .invoke_async(&mut connection)
                .await;
            if let Err(e) = freed {
                tracing::warn!(redis = %redis.host, error = ?e.kind(), "could not free a place; it frees when its lease ends");
            }
        });
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A name no other place of any replica has: this process's random part and a counter.
fn member() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static PROCESS: std::sync::LazyLock<uuid::Uuid> = std::sync::LazyLock::new(uuid::Uuid::new_v4);
    format!("{}-{}", *PROCESS, NEXT.fetch_add(1, Ordering::Relaxed))
}
