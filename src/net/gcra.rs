//! Spacing that several replicas share through Redis: GCRA (the generic cell rate algorithm,
//! what governor runs in process) kept in one Lua script on Redis's clock, and holds — a
//! lockout one replica was told of that every replica waits out.
//!
//! GCRA keeps one number per limit, the *theoretical arrival time* (TAT): when the limit
//! would be back to idle. A request may go when `now ≥ TAT − (burst − 1) · interval`, and
//! going moves the TAT one interval on. Checking and moving is one script, so two replicas
//! can never both take the same moment (no read-modify-write race); the time is Redis's own
//! (`TIME`, in microseconds), one clock for every replica.
//!
//! [`Reach`] says whether Redis could be asked lately, for the limits built on it: while it
//! cannot, the caller keeps to its own share of the limit ([`LocalSpacing`] at `interval ×
//! replicas`), logs so once and sets `plugboard_shared_limits_degraded`.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use redis::Script;
use tokio::time::Instant;

use super::shared::Redis;

/// Take a moment. KEYS[1]: the TAT (µs), KEYS[2]: the limit's hold; ARGV: interval µs,
/// burst. Returns `{0, 0}` when taken, `{1, µs}` to wait for the spacing, `{2, µs}` to wait
/// for a hold to end.
const TAKE: &str = r"
local held = redis.call('PTTL', KEYS[2])
if held > 0 then
  return {2, held * 1000}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local wait = tat - tolerance - now
if wait > 0 then
  return {1, wait}
end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
return {0, 0}
";

/// Hold KEYS[1] for ARGV[1] ms, unless it is already held longer (a shorter lockout told
/// later never shortens a longer one).
const HOLD: &str = r"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
";

static TAKE_SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(TAKE));
static HOLD_SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(HOLD));

/// The longest hold shared: a garbled `retry-after` must not stop every replica for a year.
pub const MAX_HOLD: Duration = Duration::from_secs(3600);

/// While Redis is away, how often a request tries it again (the rest go by the share).
const RETRY_REDIS: Duration = Duration::from_secs(2);

/// What a limit answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Taken: go now.
    Now,
    /// The spacing: ask again after this.
    After(Duration),
    /// A hold (a lockout some replica was told of) lasts this much longer.
    Held(Duration),
}

/// One request every `interval` (up to `burst` at once after a quiet spell), across every
/// replica sharing the Redis.
#[derive(Debug, Clone)]
pub struct Gcra {
    redis: Redis,
    /// Where the TAT is kept.
    key: String,
    /// The hold that stops this limit too.
    hold: String,
    interval: Duration,
    burst: u32,
}

impl Gcra {
    pub fn new(redis: &Redis, key: String, hold: String, interval: Duration, burst: u32) -> Self {
        Self {
            redis: redis.clone(),
            key,
            hold,
            interval: interval.max(Duration::from_micros(1)),
            burst: burst.max(1),
        }
    }

    /// Take a moment if one is due (never waits itself). An error: Redis could not be asked.
    pub async fn take(&self) -> Result<Due, String> {
        let mut connection = self.redis.connection();
        let (kind, micros): (u8, u64) = TAKE_SCRIPT
            .key(&self.key)
            .key(&self.hold)
            .arg(micros(self.interval))
            .arg(self.burst)
            .invoke_async(&mut connection)
            .await
            .map_err(|e| format!("Redis at {}: {:?}", self.redis.host(), e.kind()))?;
        let wait = Duration::from_micros(micros.max(1));
        Ok(match kind {
            0 => Due::Now,
            2 => Due::Held(wait),
            _ => Due::After(wait),
        })
    }
}

/// Nothing under `key` goes for `duration` (at most [`MAX_HOLD`]) on any replica whose limits
/// check it. An error: Redis could not be told.
pub async fn hold(redis: &Redis, key: &str, duration: Duration) -> Result<(), String> {
    let mut connection = redis.connection();
    let ms = u64::try_from(duration.min(MAX_HOLD).as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    HOLD_SCRIPT
        .key(key)
        .arg(ms)
        .invoke_async::<()>(&mut connection)
        .await
        .map_err(|e| format!("Redis at {}: {:?}", redis.host(), e.kind()))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Whether Redis could be asked lately, for one set of limits: what decides between the
/// shared limit and this replica's share of it, and what is said about it (a warning once,
/// `plugboard_shared_limits_degraded`, the plugin's status).
#[derive(Debug)]
pub struct Reach {
    redis: Redis,
    /// Whose limits these are, for the logs.
    what: &'static str,
    /// The last try failed.
    degraded: AtomicBool,
    /// While degraded, when to ask Redis again (before that, the share is used at once).
    retry_at: Mutex<Option<Instant>>,
}

impl Reach {
    pub fn new(redis: &Redis, what: &'static str) -> Self {
        Self {
            redis: redis.clone(),
            what,
            degraded: AtomicBool::new(false),
            retry_at: Mutex::default(),
        }
    }

    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Whether to ask Redis now: not while a failed try is recent.
    pub fn worth_asking(&self) -> bool {
        self.retry_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none_or(|at| Instant::now() >= at)
    }

    /// Redis answered: limits are shared (again).
    pub fn reached(&self) {
        *self.retry_at.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!(redis = %self.redis.host(), limits = self.what, "Redis is back: limits are shared again");
            // Another part's limits may still be without it (they set it too).
            if !self.redis.degraded() {
                metrics::gauge!("plugboard_shared_limits_degraded").set(0.0);
            }
        }
    }

    /// Redis could not be asked (`why`): the share for a while.
    pub fn missed(&self, why: &str) {
        *self.retry_at.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Instant::now() + RETRY_REDIS);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %why,
                limits = self.what,
                replicas = self.replicas(),
                "cannot share limits through Redis: this replica keeps to its share of each limit until Redis is back"
            );
            metrics::gauge!("plugboard_shared_limits_degraded").set(1.0);
        }
    }

    /// Whether the last try failed (limits are this replica's share).
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// The replicas seen at the last heartbeat: what a share is of.
    pub fn replicas(&self) -> u32 {
        u32::try_from(self.redis.replicas().max(1)).unwrap_or(u32::MAX)
    }
}

/// One request every `interval`, in this process only: a replica's share while Redis is
/// away.
#[derive(Debug, Default)]
pub struct LocalSpacing {
    /// When the next request may go.
    next: Mutex<Option<Instant>>,
}

impl LocalSpacing {
    /// Take a moment if one is due, the next one `interval` later; else how long until it is.
    pub fn take(&self, interval: Duration) -> Due {
        let now = Instant::now();
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        match *next {
            Some(at) if at > now => Due::After(at - now),
            _ => {
                *next = now.checked_add(interval);
                Due::Now
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The share's spacing, on tokio's clock: the first at once, then one `interval` apart.
    #[tokio::test(start_paused = true)]
    async fn local_spacing_spaces_by_the_interval() {
        let spacing = LocalSpacing::default();
        let interval = Duration::from_millis(600);
        let started = Instant::now();
        let mut sent = Vec::new();
        while sent.len() < 3 {
            match spacing.take(interval) {
                Due::Now => sent.push(started.elapsed()),
                Due::After(wait) | Due::Held(wait) => tokio::time::sleep(wait).await,
            }
        }
        assert_eq!(
            sent,
            [Duration::ZERO, interval, interval * 2],
            "one interval apart"
        );
    }
}
