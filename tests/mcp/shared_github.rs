//! GitHub's limits shared by two replicas of `plugboard serve --http` through one real Redis
//! (Debian's `redis-server`, see [`crate::shared::RedisServer`]), against one fake GitHub:
//! the write spacing, the buckets GitHub's headers describe and a secondary limit's
//! `retry-after` hold both replicas as they would hold one server; without Redis (a control
//! run) they do not. Redis killed under them, each keeps to its share and says so.
//!
//! The fake records when each request arrived; the assertions are lower bounds on the gaps
//! between arrivals (never upper bounds on wall time). Writes are spaced 0.3 s apart here
//! (the manifest's `write_interval_secs`) so that the runs stay short.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{
    fake_github::{FakeConfig, FakeGitHub, Recorded, TOKEN},
    rest::Api,
    shared::RedisServer,
    support::Fixture,
};

/// The write spacing the replicas are configured with.
const INTERVAL: Duration = Duration::from_millis(300);

/// How much earlier than the spacing a request may arrive at the fake and still count as
/// spaced: the hop from plugboard to the fake varies, by tens of milliseconds on a busy
/// machine running debug builds.
const JITTER: Duration = Duration::from_millis(60);

const COMMENTS: &str = "/repos/octo/hello/issues/1/comments";

struct Setup {
    fx: Fixture,
    fake: FakeGitHub,
    api_url: String,
}

impl Setup {
    fn new(config: FakeConfig) -> Self {
        let fake = FakeGitHub::start_in_thread(config);
        fake.add_repo("octo/hello", false, true);
        fake.add_issue("octo/hello", "Shared", "", &[], None, "open");
        fake.add_code("octo/hello", "src/a.rs", "needle\n");
        let api_url = fake.api_url();
        let fx = Fixture::empty();
        let shipped = include_str!("../../plugins/github/plugin.toml");
        let head = shipped.split("\n[settings]").next().unwrap();
        fx.manifest(
            "github",
            &format!(
                "{head}\n[settings]\nwrite_interval_secs = {}\n",
                INTERVAL.as_secs_f64()
            ),
        );
        Self { fx, fake, api_url }
    }

    /// Two replicas for the fake, sharing `redis` when given (else each on its own limits).
    async fn two_replicas(&self, redis: Option<&str>) -> Vec<Api> {
        let mut replicas = Vec::new();
        for _ in 0..2 {
            let mut cmd = self.fx.command(&[
                "serve",
                "--http",
                "127.0.0.1:0",
                "--no-watch",
                "--call-timeout",
                "20",
            ]);
            cmd.envs([
                ("GITHUB_TOKEN", TOKEN),
                ("GITHUB_API_URL", self.api_url.as_str()),
            ]);
            if let Some(url) = redis {
                cmd.env("PLUGBOARD_REDIS_URL", url);
            }
            let api = Api::serve(&self.fx, cmd).await;
            // A first read, so that the connection to GitHub is open before anything is
            // timed (opening one delays a request on its way by more than the jitter).
            let (status, result) = api
                .post(
                    "/api/v1/tools/github_list_issues/call",
                    json!({"owner": "octo", "repo": "hello"}),
                )
                .await;
            assert_eq!(result["isError"], false, "{status}: {result}");
            replicas.push(api);
        }
        replicas
    }

    /// The requests the fake received since `from` (an index into its record).
    fn since(&self, from: usize) -> Vec<Recorded> {
        self.fake.requests().into_iter().skip(from).collect()
    }

    /// Wait until the fake has answered a request with `status`.
    async fn until_answered(&self, status: u16) {
        let started = Instant::now();
        while !self.fake.requests().iter().any(|r| r.status == status) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the fake never answered {status}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// `n` comments sent at once, alternating between `replicas`, each saying which replica it
/// went to (`r0-3`); every one must be answered without an error.
async fn comment_on_all(replicas: &[Api], n: usize) {
    let calls = (0..n).map(|i| {
        let replica = i % replicas.len();
        replicas[replica].post(
            "/api/v1/tools/github_add_issue_comment/call",
            json!({"owner": "octo", "repo": "hello", "issue_number": 1,
                   "body": format!("r{replica}-{i}")}),
        )
    });
    for (status, result) in futures::future::join_all(calls).await {
        assert_eq!(status, 200, "{result}");
        assert_eq!(result["isError"], false, "{result}");
    }
}

/// When the comments that landed (201) arrived, in order; only those whose body starts with
/// `prefix`.
fn comment_times(requests: &[Recorded], prefix: &str) -> Vec<Instant> {
    let mut at: Vec<Instant> = requests
        .iter()
        .filter(|r| r.method == "POST" && r.path == COMMENTS && r.status == 201)
        .filter(|r| {
            r.body["body"]
                .as_str()
                .is_some_and(|b| b.starts_with(prefix))
        })
        .map(|r| r.at)
        .collect();
    at.sort();
    at
}

fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Six comments sent to two replicas at once: with Redis they reach GitHub one write
/// spacing apart, as one server's would; without it each replica spaces only its own, and
/// two arrive together.
#[tokio::test]
async fn replicas_sharing_redis_space_their_writes_as_one_server() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let s = Setup::new(FakeConfig::default());
    let run = |redis: Option<String>| {
        let s = &s;
        async move {
            let replicas = s.two_replicas(redis.as_deref()).await;
            let from = s.fake.requests().len();
            comment_on_all(&replicas, 6).await;
            comment_times(&s.since(from), "r")
        }
    };
    let shared = run(Some(server.url.clone())).await;
    assert_eq!(shared.len(), 6, "every comment landed once");
    for gap in gaps(&shared) {
        assert!(
            gap + JITTER >= INTERVAL,
            "two writes {gap:?} apart, under the {INTERVAL:?} spacing: {:?}",
            gaps(&shared)
        );
    }
    let alone = run(None).await;
    assert_eq!(alone.len(), 6);
    let closest = gaps(&alone).into_iter().min().unwrap();
    assert!(
        closest < INTERVAL / 2,
        "two replicas on their own spacings should have sent two writes together: {:?}",
        gaps(&alone)
    );
}

/// A secondary limit (403 with `retry-after: 2`) met by replica A holds replica B back too:
/// B's read, asked for just after A was told, reaches GitHub only once the two seconds are
/// over — no request at all reaches it in between. Without Redis B's read goes at once.
#[tokio::test]
async fn a_secondary_limit_one_replica_meets_holds_back_the_other() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let s = Setup::new(FakeConfig::default());
    let retry_after = Duration::from_secs(2);
    let run = |redis: Option<String>| {
        let s = &s;
        async move {
            let replicas = s.two_replicas(redis.as_deref()).await;
            let from = s.fake.requests().len();
            s.fake.secondary_limit_next(1, retry_after);
            let a = replicas[0].post(
                "/api/v1/tools/github_add_issue_comment/call",
                json!({"owner": "octo", "repo": "hello", "issue_number": 1, "body": "from A"}),
            );
            let b = async {
                s.until_answered(403).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                replicas[1]
                    .post(
                        "/api/v1/tools/github_list_issues/call",
                        json!({"owner": "octo", "repo": "hello"}),
                    )
                    .await
            };
            let ((status_a, a), (status_b, b)) = tokio::join!(a, b);
            for (status, result) in [(status_a, a), (status_b, b)] {
                assert_eq!(status, 200, "{result}");
                assert_eq!(result["isError"], false, "{result}");
            }
            let requests = s.since(from);
            let refused = requests
                .iter()
                .find(|r| r.status == 403)
                .expect("the secondary limit")
                .at;
            // How long after the refusal each later request arrived.
            let after: Vec<Duration> = requests
                .iter()
                .filter(|r| r.status != 403)
                .map(|r| r.at - refused)
                .collect();
            assert_eq!(after.len(), 2, "A's retry and B's read: {requests:?}");
            after
        }
    };
    let shared = run(Some(server.url.clone())).await;
    for waited in &shared {
        assert!(
            *waited + JITTER >= retry_after,
            "a request reached GitHub {waited:?} after the secondary limit, within its \
             {retry_after:?}: {shared:?}"
        );
    }
    let alone = run(None).await;
    assert!(
        alone.iter().any(|waited| *waited < retry_after / 2),
        "without Redis, replica B's read should have gone at once: {alone:?}"
    );
}

/// Replica A's code searches use the bucket up (3 a minute here); replica B, which has seen
/// no answer of GitHub's yet, knows it from Redis: its search is refused at once, saying when
/// to come back, and never sent. Without Redis B sends it and GitHub refuses it.
#[tokio::test]
async fn a_bucket_one_replica_used_up_is_used_up_for_the_other() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let s = Setup::new(FakeConfig {
        code_search_limit: 3,
        ..FakeConfig::default()
    });
    let search = json!({"query": "needle repo:octo/hello"});
    let path = "/api/v1/tools/github_search_code/call";
    let run = |redis: Option<String>| {
        let (s, search) = (&s, &search);
        async move {
            let replicas = s.two_replicas(redis.as_deref()).await;
            let from = s.fake.requests().len();
            for _ in 0..3 {
                let (status, result) = replicas[0].post(path, search.clone()).await;
                assert_eq!(status, 200, "{result}");
                assert_eq!(result["isError"], false, "{result}");
            }
            let (status, result) = replicas[1].post(path, search.clone()).await;
            assert_eq!(status, 200, "{result}");
            let sent: Vec<u16> = s
                .since(from)
                .iter()
                .filter(|r| r.path.starts_with("/search/code"))
                .map(|r| r.status)
                .collect();
            (result, sent)
        }
    };
    let (result, sent) = run(Some(server.url.clone())).await;
    assert_eq!(result["isError"], true, "{result}");
    let told = crate::rest::text(&result);
    assert!(
        told.contains("code-search rate limit (3 requests a minute) is used up until"),
        "{told}"
    );
    assert_eq!(sent, [200; 3], "replica B's search was never sent");
    // The fake's window is a minute: a fresh fake for the control run.
    let s = Setup::new(FakeConfig {
        code_search_limit: 3,
        ..FakeConfig::default()
    });
    let replicas = s.two_replicas(None).await;
    for _ in 0..3 {
        replicas[0].post(path, search.clone()).await;
    }
    replicas[1].post(path, search.clone()).await;
    let statuses: Vec<u16> = s
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/search/code"))
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 403],
        "without Redis replica B should have sent its search"
    );
}

/// Redis killed under two replicas that saw each other: each keeps serving writes at its
/// share of the spacing (0.3 s × 2 replicas = 0.6 s apart), and says so in `/metrics` and in
/// the plugin's status.
#[tokio::test]
async fn without_redis_each_replica_keeps_to_its_share_of_the_spacing() {
    let Some(mut server) = RedisServer::start().await else {
        return;
    };
    let s = Setup::new(FakeConfig::default());
    let replicas = s.two_replicas(Some(&server.url)).await;
    crate::shared::until_replicas_see_each_other(&replicas).await;
    server.kill().await;
    let from = s.fake.requests().len();
    comment_on_all(&replicas, 6).await;
    let requests = s.since(from);
    for replica in 0..2 {
        let times = comment_times(&requests, &format!("r{replica}-"));
        assert_eq!(times.len(), 3, "{requests:?}");
        for gap in gaps(&times) {
            assert!(
                gap + JITTER >= INTERVAL * 2,
                "replica {replica} sent two writes {gap:?} apart, under its share's {:?}",
                INTERVAL * 2
            );
        }
    }
    for api in &replicas {
        let metrics = api.metrics().await;
        assert_eq!(metrics.sample("plugboard_shared_limits_degraded", &[]), 1.0);
        let (status, plugin): (u16, Value) = api.get("/api/v1/plugins/github").await;
        assert_eq!(status, 200, "{plugin}");
        assert_eq!(plugin["state"], "degraded", "{plugin}");
        let reason = plugin["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("Redis") && reason.contains("share (1/2)"),
            "{plugin}"
        );
    }
}

/// The write spacing's one step (GCRA in a Lua script on Redis's clock) is atomic: forty
/// requests at once from two replicas' connections, an hour's spacing — exactly one goes
/// (three, with a burst of three), the others are told how long to wait. A hold stops them
/// all, and a shorter hold told later does not shorten it.
#[tokio::test]
async fn the_shared_spacing_gives_each_moment_to_one_request() {
    use plugboard::net::{
        gcra::{self, Due, Gcra},
        shared::Redis,
    };
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let replicas = [
        Redis::connect(&server.url).await.unwrap(),
        Redis::connect(&server.url).await.unwrap(),
    ];
    let hour = Duration::from_secs(3600);
    for burst in [1, 3] {
        let limits: Vec<Gcra> = replicas
            .iter()
            .map(|r| Gcra::new(r, format!("t:{burst}"), "t:hold".into(), hour, burst))
            .collect();
        let takes = (0..40).map(|i| limits[i % 2].take());
        let answers: Vec<Due> = futures::future::join_all(takes)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let went = answers.iter().filter(|d| **d == Due::Now).count();
        assert_eq!(went, burst as usize, "{answers:?}");
        assert!(
            answers
                .iter()
                .all(|d| *d == Due::Now || matches!(d, Due::After(w) if *w > hour / 2)),
            "{answers:?}"
        );
    }
    let limit = Gcra::new(&replicas[0], "t:held".into(), "t:hold".into(), hour, 1);
    gcra::hold(&replicas[1], "t:hold", Duration::from_secs(30))
        .await
        .unwrap();
    gcra::hold(&replicas[0], "t:hold", Duration::from_secs(1))
        .await
        .unwrap();
    match limit.take().await.unwrap() {
        Due::Held(left) => assert!(left > Duration::from_secs(20), "{left:?}"),
        other => panic!("a hold should stop it: {other:?}"),
    }
}

/// Redis killed under two replicas: a bucket is kept to at this replica's share of what it
/// last saw. Replica A saw 5 of 6 code searches left; alone (1/2) it sends 2 more, and the
/// next is refused without being sent, although GitHub would still take 3.
#[tokio::test]
async fn without_redis_a_replica_keeps_to_its_share_of_a_bucket() {
    let Some(mut server) = RedisServer::start().await else {
        return;
    };
    let s = Setup::new(FakeConfig {
        code_search_limit: 6,
        ..FakeConfig::default()
    });
    let replicas = s.two_replicas(Some(&server.url)).await;
    let api = &replicas[0];
    let mut seen = None;
    for _ in 0..150 {
        seen = api.metrics().await.get("plugboard_replicas", &[]);
        if seen == Some(2.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seen, Some(2.0), "the replicas never saw each other");
    let search = json!({"query": "needle repo:octo/hello"});
    let path = "/api/v1/tools/github_search_code/call";
    let (_, first) = api.post(path, search.clone()).await;
    assert_eq!(first["isError"], false, "{first}");
    server.kill().await;
    for _ in 0..2 {
        let (_, result) = api.post(path, search.clone()).await;
        assert_eq!(result["isError"], false, "{result}");
    }
    let (_, refused) = api.post(path, search.clone()).await;
    assert_eq!(refused["isError"], true, "{refused}");
    let told = crate::rest::text(&refused);
    assert!(told.contains("code-search rate limit"), "{told}");
    let sent = s
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/search/code"))
        .count();
    assert_eq!(sent, 3, "the fourth search was never sent");
}
