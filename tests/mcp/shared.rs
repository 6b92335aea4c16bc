//! Limits shared by replicas through a real Redis (Debian's `redis-server`, started here on a
//! free port): two connections stand for two replicas of plugboard.

use std::{
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use plugboard::net::shared::{Redis, SharedWindow};
use serde_json::json;
use tokio::process::{Child, Command};

use crate::{airtable::Setup, rest::Api};

/// A `redis-server` of this test's own, gone with it.
pub struct RedisServer {
    child: Child,
    pub url: String,
    port: u16,
}

impl RedisServer {
    /// Start one; `None` (the test skips, saying so) when redis-server is not installed, unless
    /// `PLUGBOARD_REQUIRE_REDIS=1` (CI), where that fails.
    pub async fn start() -> Option<Self> {
        let binary = "/usr/bin/redis-server";
        if !std::path::Path::new(binary).exists() {
            assert!(
                std::env::var("PLUGBOARD_REQUIRE_REDIS").as_deref() != Ok("1"),
                "redis-server is required here (PLUGBOARD_REQUIRE_REDIS=1): apt-get install redis-server"
            );
            eprintln!("SKIPPED: no {binary} (apt-get install redis-server)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Some(Self {
            child: Self::spawn(port).await,
            url: format!("redis://127.0.0.1:{port}/"),
            port,
        })
    }

    /// A redis-server on `port`, once it listens.
    async fn spawn(port: u16) -> Child {
        let child = Command::new("/usr/bin/redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts");
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "redis-server did not listen"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child
    }

    /// Start it again after [`RedisServer::kill`], on the same port (empty: nothing was saved).
    pub async fn restart(&mut self) {
        self.child = Self::spawn(self.port).await;
    }

    /// Stop it, as an outage would (SIGKILL: no goodbye to its clients).
    pub async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }
}

/// Two replicas of `plugboard serve --http` for `s`'s fake Airtable, sharing `redis` when
/// given (else each on its own limits).
async fn two_replicas(s: &Setup, redis: Option<&str>) -> Vec<Api> {
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let mut cmd = s.cli(&["serve", "--http", "127.0.0.1:0"]);
        if let Some(url) = redis {
            cmd.env("PLUGBOARD_REDIS_URL", url);
        }
        replicas.push(Api::serve(&s.fx, cmd).await);
    }
    replicas
}

/// Wait until each of `replicas` counts them all through Redis (heartbeats every 2 s).
pub async fn until_replicas_see_each_other(replicas: &[Api]) {
    let n = Some(replicas.len() as f64);
    for api in replicas {
        let mut seen = None;
        for _ in 0..150 {
            seen = api.metrics().await.get("plugboard_replicas", &[]);
            if seen == n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(seen, n, "the replicas never saw each other through Redis");
    }
}

/// `calls` record listings of `base`'s Items, sent at once, alternating between `replicas`;
/// every one must be answered without an error.
async fn list_on_all(replicas: &[Api], base: &str, calls: usize) {
    let calls = (0..calls).map(|i| {
        replicas[i % replicas.len()].post(
            "/api/v1/tools/airtable_list_records/call",
            json!({ "base": base, "table": "Items" }),
        )
    });
    for (status, result) in futures::future::join_all(calls).await {
        assert_eq!(status, 200, "{result}");
        assert_eq!(result["isError"], false, "{result}");
    }
}

/// Two replicas, 24 requests alternating between them, each answered after 30 ms, under a
/// shared limit of 5 per second: no instant ever has more than 5 places taken — counting a
/// request from when it was sent to one second after its answer — and all 24 went out.
#[tokio::test]
async fn two_replicas_share_one_rolling_window() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let span = Duration::from_secs(1);
    let replicas = [
        Redis::connect(&server.url).await.unwrap(),
        Redis::connect(&server.url).await.unwrap(),
    ];
    let windows: Vec<Arc<SharedWindow>> = replicas
        .iter()
        .map(|r| {
            Arc::new(SharedWindow::new(
                r,
                "airtable-base",
                5,
                span,
                Duration::from_secs(60),
            ))
        })
        .collect();
    let start = Instant::now();
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let window = windows[i % 2].clone();
            tokio::spawn(async move {
                let slot = window.acquire("appBase1").await.unwrap();
                let sent = start.elapsed();
                tokio::time::sleep(Duration::from_millis(30)).await;
                let answered = start.elapsed();
                drop(slot);
                (sent, answered)
            })
        })
        .collect();
    let mut held = Vec::new();
    for task in tasks {
        held.push(task.await.unwrap());
    }
    assert_eq!(held.len(), 24);
    for &(at, _) in &held {
        let out = held
            .iter()
            .filter(|(sent, answered)| *sent <= at && at < *answered + span)
            .count();
        assert!(out <= 5, "{out} places taken at {at:?}: {held:?}");
    }
    // Another key has its own places.
    let other = windows[0].acquire("appBase2").await.unwrap();
    other.unused().await;
}

/// A replica that dies holding places loses them when their lease ends, not forever; and a
/// place given back unused frees at once.
#[tokio::test]
async fn a_dead_replicas_places_end_with_their_lease() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let redis = Redis::connect(&server.url).await.unwrap();
    let span = Duration::from_millis(100);
    let lease = Duration::from_millis(800);
    let window = SharedWindow::new(&redis, "lease", 1, span, lease);
    let slot = window.acquire("k").await.unwrap();
    // The replica is gone without a word: the place is never freed.
    std::mem::forget(slot);
    let waited = Instant::now();
    let slot = window.acquire("k").await.unwrap();
    assert!(
        waited.elapsed() >= Duration::from_millis(500),
        "the place freed before its lease ended: {:?}",
        waited.elapsed()
    );
    slot.unused().await;
    let mut raw = redis::Client::open(server.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let taken: u64 = redis::AsyncCommands::zcard(&mut raw, "plugboard:window:lease:k")
        .await
        .unwrap();
    assert_eq!(taken, 0, "an unused place was not given back");
}

/// A URL that does not parse, and a server that is not there, are errors that say so
/// without repeating the URL (it may carry a password).
#[tokio::test]
async fn bad_redis_urls_are_clear_errors() {
    let e = Redis::connect("http://nope").await.unwrap_err();
    assert!(e.contains("PLUGBOARD_REDIS_URL"), "{e}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = Redis::connect(&format!("redis://:hunter2-redis@127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}

/// Two replicas of `plugboard serve --http` against one fake Airtable (5 requests/s per base,
/// a lockout for each 429), 40 record listings sent to both at once: with PLUGBOARD_REDIS_URL
/// they share the base's limit — no 429, never more than 5 requests in any second at the
/// fake, every call answered. Without it (each replica on its own limit), the same load
/// earns 429s: what the shared limit is for.
#[tokio::test]
async fn replicas_sharing_redis_keep_to_one_airtable_limit() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let s = Setup::new();
    let base = s.fake.add_base("Shared", "create");
    crate::airtable::items_table(&s.fake, &base);
    let run = |redis: Option<&str>| {
        let (s, base) = (&s, &base);
        let redis = redis.map(str::to_owned);
        async move {
            let replicas = two_replicas(s, redis.as_deref()).await;
            s.fake.reset_stats();
            list_on_all(&replicas, base, 40).await;
            s.fake.stats()
        }
    };
    let shared = run(Some(&server.url)).await;
    assert_eq!(shared.rate_limited_429, 0, "{shared:?}");
    assert!(
        shared.max_requests_1s_per_base[&base] <= 5,
        "{} requests in one second: {shared:?}",
        shared.max_requests_1s_per_base[&base]
    );
    assert!(shared.requests_per_base[&base] >= 40, "{shared:?}");
    // Wait out any lockout, then the same load with each replica on its own limit.
    tokio::time::sleep(Duration::from_secs(crate::airtable::LOCKOUT_SECS + 1)).await;
    let alone = run(None).await;
    assert!(
        alone.max_requests_1s_per_base[&base] > 5,
        "two replicas on their own limits should have sent more than 5 in a second: {alone:?}"
    );
}

/// Redis goes away under two replicas: each keeps serving, within its share of the limit
/// (5 / 2 replicas seen = 2 per second), so together they still stay under Airtable's 5 — no
/// call fails, no 429 — and each says so in `/metrics`.
#[tokio::test]
async fn without_redis_each_replica_keeps_to_its_share() {
    let Some(mut server) = RedisServer::start().await else {
        return;
    };
    let s = Setup::new();
    let base = s.fake.add_base("Outage", "create");
    crate::airtable::items_table(&s.fake, &base);
    let replicas = two_replicas(&s, Some(&server.url)).await;
    // Redis goes away once both replicas have seen each other (heartbeats every 2 s).
    until_replicas_see_each_other(&replicas).await;
    server.kill().await;
    s.fake.reset_stats();
    list_on_all(&replicas, &base, 16).await;
    let stats = s.fake.stats();
    assert_eq!(stats.rate_limited_429, 0, "{stats:?}");
    assert!(stats.max_requests_1s_per_base[&base] <= 5, "{stats:?}");
    for api in &replicas {
        let metrics = api.metrics().await;
        assert_eq!(metrics.sample("plugboard_shared_limits_degraded", &[]), 1.0);
        // And the plugin's status says so, with the share it keeps to.
        let (status, plugins) = api.get("/api/v1/plugins").await;
        assert_eq!(status, 200, "{plugins}");
        let airtable = plugins
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "airtable")
            .unwrap_or_else(|| panic!("{plugins}"));
        let said = airtable["status"].as_str().unwrap();
        assert!(
            said.starts_with("limits not shared: Redis at 127.0.0.1:")
                && said.contains("2 requests a second per base")
                && said.contains("the 2 replicas it last saw"),
            "{said}"
        );
    }
    // Redis comes back: the replicas go back to the shared limit, say so, and are ready.
    server.restart().await;
    let mut recovered = false;
    for _ in 0..60 {
        list_on_all(&replicas, &base, 2).await;
        let mut all = true;
        for api in &replicas {
            let metrics = api.metrics().await;
            let (_, plugins) = api.get("/api/v1/plugins").await;
            let airtable = plugins
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "airtable")
                .cloned()
                .unwrap_or_default();
            all &= metrics.sample("plugboard_shared_limits_degraded", &[]) == 0.0
                && airtable["status"] == "ready";
        }
        if all {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        recovered,
        "the replicas did not go back to the shared limit"
    );
    assert_eq!(s.fake.stats().rate_limited_429, 0);
}

/// A lockout one replica is told of (Airtable's 429) holds every replica back: the other's
/// requests wait it out instead of meeting 429s of their own. Without Redis they do meet them.
#[tokio::test]
async fn a_lockout_one_replica_meets_holds_them_all() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let s = Setup::new();
    let base = s.fake.add_base("Lockout", "create");
    crate::airtable::items_table(&s.fake, &base);
    let http = reqwest::Client::new();
    let run = |redis: Option<&str>| {
        let (s, base, http) = (&s, &base, &http);
        let redis = redis.map(str::to_owned);
        async move {
            let replicas = two_replicas(s, redis.as_deref()).await;
            // Someone else (a script with the same token) sends six at once: the base is
            // locked out for the lockout's length.
            let burst = (0..6).map(|_| {
                http.get(format!("{}/v0/{base}/Items", s.fake.url))
                    .bearer_auth(&s.token)
                    .send()
            });
            futures::future::join_all(burst).await;
            let before = s.fake.stats().rate_limited_429;
            assert!(before >= 1, "the burst did not lock the base out");
            let list = json!({ "base": base, "table": "Items" });
            let path = "/api/v1/tools/airtable_list_records/call";
            // Replica A meets the lockout (and waits it out), while replica B is asked for
            // three listings as soon as A has met it.
            let a = replicas[0].post(path, list.clone());
            let b = async {
                s.fake.until(|f| f.stats().rate_limited_429 > before).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
                futures::future::join_all((0..3).map(|_| replicas[1].post(path, list.clone())))
                    .await
            };
            let ((status, result), b) = tokio::join!(a, b);
            assert_eq!(status, 200, "{result}");
            for (status, result) in b {
                assert_eq!(status, 200, "{result}");
            }
            let met = s.fake.stats().rate_limited_429 - before;
            // Let the lockout end before the next run.
            tokio::time::sleep(Duration::from_secs(crate::airtable::LOCKOUT_SECS + 1)).await;
            met
        }
    };
    let shared = run(Some(&server.url)).await;
    assert_eq!(
        shared, 1,
        "only replica A's first request should have met the lockout"
    );
    let alone = run(None).await;
    assert!(
        alone > 1,
        "without Redis, replica B should have met the lockout too: {alone}"
    );
}

/// A reload on one replica reaches the clients of every replica: it is announced through
/// Redis, the others reload too (none of them watches the folder here) and their clients
/// hear `tools/list_changed` and see the new plugin's tools.
#[tokio::test]
async fn a_reload_on_one_replica_reaches_the_clients_of_all() {
    use rmcp::{ServiceExt, transport::StreamableHttpClientTransport};
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let fx = crate::support::Fixture::new();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let mut cmd = fx.command(&["serve", "--http", "127.0.0.1:0", "--no-watch"]);
        cmd.env("PLUGBOARD_REDIS_URL", &server.url);
        replicas.push(Api::serve(&fx, cmd).await);
    }
    let transport = StreamableHttpClientTransport::from_uri(replicas[1].url("/mcp"));
    let client = crate::support::Recorder::default()
        .serve(transport)
        .await
        .expect("initialize over HTTP");
    let before = client.list_all_tools().await.unwrap();
    assert!(!before.iter().any(|t| t.name == "extra_echo"));
    fx.manifest(
        "extra",
        "name = \"extra\"\nkind = \"builtin\"\nbuiltin = \"testkit\"\n",
    );
    // The reload is replica A's; the client is replica B's.
    crate::support::sighup(replicas[0].pid());
    tokio::time::timeout(
        Duration::from_secs(10),
        client.service().list_changed.notified(),
    )
    .await
    .expect("tools/list_changed on replica B within 10 s of replica A's reload");
    let after = client.list_all_tools().await.unwrap();
    assert!(after.iter().any(|t| t.name == "extra_echo"), "{after:?}");
    client.cancel().await.unwrap();
}
