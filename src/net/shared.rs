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
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use redis::{AsyncCommands, Script, aio::ConnectionManager};

/// Take a place. KEYS[1]: the set, KEYS[2]: the key's hold (a lockout some replica was
/// told of); ARGV: limit, lease ms, member. Returns 0 when taken, else the milliseconds to
/// wait: until the hold ends, or until the first place frees.
const TAKE: &str = r"
local held = redis.call('PTTL', KEYS[2])
if held > 0 then
  return held
end
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

/// A replica is alive. KEYS[1]: the replicas' set; ARGV: this replica, the window ms.
/// Returns how many replicas beat within the window.
const BEAT: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZCARD', KEYS[1])
";

/// The scripts, hashed once (redis-rs sends a script's SHA and its body only when Redis
/// does not know it yet).
static TAKE_SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(TAKE));
static FREE_SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(FREE));
static BEAT_SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(BEAT));

/// While Redis is away, how often a request tries it again (the rest go by the share).
const RETRY_REDIS: Duration = Duration::from_secs(2);

/// Longest wait between two tries for a place: a place held by a request in flight frees
/// when its answer arrives, which no score says in advance.
const POLL: Duration = Duration::from_millis(25);

/// A connection to the Redis the replicas share; cheap to clone (one multiplexed
/// connection, reconnected when it drops).
#[derive(Clone)]
pub struct Redis {
    /// For the subscriptions, which need connections of their own.
    client: redis::Client,
    connection: ConnectionManager,
    /// Where the server is, for messages (never the URL: it may hold a password).
    host: String,
    /// The replicas seen through Redis at the last heartbeat (this one included).
    replicas: Arc<AtomicUsize>,
    /// Redis could not be asked last time: limits are this replica's share.
    degraded: Arc<AtomicBool>,
    /// While degraded, when to ask Redis again (before that, the share is used at once).
    retry_at: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
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
        // An outage must not hold requests up: an answer within a second or the pacer falls
        // back to this replica's share, and reconnecting is left to the background.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let connection = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| format!("cannot reach Redis at {host} ({:?})", e.kind()))?;
        Ok(Self {
            client,
            connection,
            host,
            replicas: Arc::new(AtomicUsize::new(1)),
            degraded: Arc::default(),
            retry_at: Arc::default(),
        })
    }

    /// Say every `every` that this replica is alive, and count the replicas that said so
    /// within three periods: what a replica's share is when Redis goes away. The first beat
    /// is sent before this returns.
    pub async fn heartbeat(&self, every: Duration, ct: tokio_util::sync::CancellationToken) {
        let me = member();
        let beat = {
            let redis = self.clone();
            let me = me.clone();
            move || {
                let mut connection = redis.connection.clone();
                let (me, replicas) = (me.clone(), redis.replicas.clone());
                let window = millis(every * 3);
                async move {
                    let seen: Result<usize, _> = BEAT_SCRIPT
                        .key("plugboard:replicas")
                        .arg(&me)
                        .arg(window)
                        .invoke_async(&mut connection)
                        .await;
                    if let Ok(n) = seen {
                        replicas.store(n.max(1), Ordering::Relaxed);
                        metrics::gauge!("plugboard_replicas").set(n.max(1) as f64);
                    }
                }
            }
        };
        beat().await;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => beat().await,
                    () = ct.cancelled() => break,
                }
            }
        });
    }

    /// The replicas seen at the last heartbeat.
    pub fn replicas(&self) -> usize {
        self.replicas.load(Ordering::Relaxed)
    }

    /// Tell the other replicas that this one reloaded its plugins (they reload theirs, and
    /// their clients hear `list_changed` from them). A Redis that cannot be told is logged.
    pub async fn publish_reload(&self) {
        let mut connection = self.connection.clone();
        let sent: Result<usize, _> = connection.publish(RELOADS, &*PROCESS.to_string()).await;
        if let Err(e) = sent {
            tracing::warn!(redis = %self.host, error = ?e.kind(), "could not tell the other replicas of a reload");
        }
    }

    /// Call `reload` whenever another replica says it reloaded, until `ct` is cancelled;
    /// resubscribed after Redis comes back.
    pub fn on_reload<F, Fut>(&self, reload: F, ct: tokio_util::sync::CancellationToken)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let (client, host) = (self.client.clone(), self.host.clone());
        let me = PROCESS.to_string();
        tokio::spawn(async move {
            loop {
                let listened = async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(RELOADS).await?;
                    let mut messages = pubsub.on_message();
                    while let Some(message) = futures::StreamExt::next(&mut messages).await {
                        let from: String = message.get_payload().unwrap_or_default();
                        if from != me {
                            tracing::info!(from = %from, "another replica reloaded its plugins: reloading");
                            reload().await;
                        }
                    }
                    Ok::<(), redis::RedisError>(())
                };
                tokio::select! {
                    ended = listened => {
                        if let Err(e) = ended {
                            tracing::warn!(redis = %host, error = ?e.kind(), "not hearing of other replicas' reloads; trying again in 2 s");
                        }
                    }
                    () = ct.cancelled() => return,
                }
                tokio::select! {
                    () = tokio::time::sleep(RETRY_REDIS) => {}
                    () = ct.cancelled() => return,
                }
            }
        });
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The shared connection, for commands of other parts (cheap to clone; reconnects).
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// The client, for parts that need connections of their own (subscriptions, blocking
    /// reads).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// This process's id among the replicas (what its heartbeat and announcements carry).
    pub fn replica_id(&self) -> String {
        PROCESS.to_string()
    }

    /// Whether the last try to reach Redis failed (limits are this replica's share).
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
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
        let hold = self.hold_key(key);
        let member = member();
        let script = &*TAKE_SCRIPT;
        loop {
            let mut connection = self.redis.connection.clone();
            let wait: u64 = script
                .key(&set)
                .key(&hold)
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

impl SharedWindow {
    fn hold_key(&self, key: &str) -> String {
        format!("plugboard:hold:{}:{key}", self.name)
    }

    /// No replica takes a place under `key` for `duration` (the service locked the key out:
    /// every replica waits it out, not only the one that was told).
    pub async fn hold(&self, key: &str, duration: Duration) -> Result<(), String> {
        let mut connection = self.redis.connection.clone();
        let _: () = redis::cmd("SET")
            .arg(self.hold_key(key))
            .arg(1)
            .arg("PX")
            .arg(millis(duration))
            .query_async(&mut connection)
            .await
            .map_err(|e| format!("Redis at {}: {:?}", self.redis.host, e.kind()))?;
        Ok(())
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
            let freed: Result<(), _> = FREE_SCRIPT
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

/// The channel replicas announce their reloads on.
const RELOADS: &str = "plugboard:reloads";

/// This replica, among all that share the Redis.
static PROCESS: std::sync::LazyLock<uuid::Uuid> = std::sync::LazyLock::new(uuid::Uuid::new_v4);

/// A name no other place of any replica has: this process's random part and a counter.
fn member() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", *PROCESS, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A limit kept in this process, or shared through Redis when the server was given one — the
/// one type a plugin paces with. When Redis cannot be asked, the limit falls back to this
/// replica's share of it (the limit over the replicas last seen), never to all of it: N
/// replicas each sending the whole limit would earn the lockout sharing exists to avoid.
pub struct Pacer {
    limit: usize,
    span: Duration,
    local: Option<super::Window>,
    shared: Option<SharedWindow>,
    /// While Redis is away: the window of this replica's share, and that share.
    fallback: std::sync::Mutex<Option<(usize, Arc<super::Window>)>>,
}

/// A place taken from a [`Pacer`]; dropping it frees it `span` later.
pub enum Place {
    Local(super::Slot),
    Shared(Box<SharedSlot>),
    Fallback(super::Slot, Arc<super::Window>),
}

impl Pacer {
    /// `limit` per `span` per key; through `shared` when given, its sets named by `name`.
    pub fn new(limit: usize, span: Duration, shared: Option<&Redis>, name: &str) -> Self {
        let lease = span.max(Duration::from_secs(1)) * 120;
        Self {
            limit,
            span,
            local: shared.is_none().then(|| super::Window::new(limit, span)),
            shared: shared.map(|r| SharedWindow::new(r, name, limit, span, lease)),
            fallback: std::sync::Mutex::default(),
        }
    }

    pub async fn acquire(&self, key: &str) -> Place {
        let Some(shared) = &self.shared else {
            let local = self.local.as_ref().expect("a pacer is local or shared");
            return Place::Local(local.acquire(key).await);
        };
        let redis = &shared.redis;
        let wait_for_redis = redis
            .retry_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| tokio::time::Instant::now() < at);
        let asked = if wait_for_redis {
            Err("Redis was unreachable a moment ago".to_owned())
        } else {
            shared.acquire(key).await
        };
        match asked {
            Ok(slot) => {
                *redis.retry_at.lock().unwrap_or_else(|e| e.into_inner()) = None;
                if shared.redis.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!(redis = %shared.redis.host, "Redis is back: limits are shared again");
                    metrics::gauge!("plugboard_shared_limits_degraded").set(0.0);
                }
                Place::Shared(Box::new(slot))
            }
            Err(e) => {
                if !wait_for_redis {
                    *redis.retry_at.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(tokio::time::Instant::now() + RETRY_REDIS);
                }
                let replicas = shared.redis.replicas.load(Ordering::Relaxed).max(1);
                let share = (self.limit / replicas).max(1);
                if !shared.redis.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, replicas, share, limit = self.limit, "cannot share limits through Redis: this replica keeps to its share of each limit until Redis is back");
                    metrics::gauge!("plugboard_shared_limits_degraded").set(1.0);
                }
                let window = {
                    let mut fallback = self.fallback.lock().unwrap_or_else(|e| e.into_inner());
                    match &*fallback {
                        Some((n, w)) if *n == share => w.clone(),
                        _ => {
                            let w = Arc::new(super::Window::new(share, self.span));
                            *fallback = Some((share, w.clone()));
                            w
                        }
                    }
                };
                Place::Fallback(window.acquire(key).await, window)
            }
        }
    }
}

impl Pacer {
    /// Tell every replica that `key` is locked out for `duration` (a no-op for a local pacer,
    /// whose caller keeps its own lockout; a Redis that cannot be told is logged).
    pub async fn hold(&self, key: &str, duration: Duration) {
        let Some(shared) = &self.shared else {
            return;
        };
        if let Err(e) = shared.hold(key, duration).await {
            tracing::warn!(error = %e, "could not tell the other replicas of a lockout");
        }
    }
}

impl Place {
    /// Give the place back at once: the request was never sent.
    pub fn unused(self) {
        match self {
            Place::Local(slot) | Place::Fallback(slot, _) => slot.unused(),
            Place::Shared(slot) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(slot.unused());
                }
            }
        }
    }
}
