//! A team's deployment, as `deploy/` describes it: three replicas of `plugboard serve --http`
//! sharing one Redis (Debian's redis-server), behind HAProxy (Debian's haproxy) running
//! `deploy/haproxy.cfg` as it is, each replica with `deploy/replica.env`. Clients speak only
//! to the load balancer; the fake Airtable enforces the real limits.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use rmcp::{
    ServiceExt,
    model::CallToolRequestParams,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::{airtable::Setup, shared::RedisServer, support::write};

/// The token the replicas require, and HAProxy's health check sends.
const TOKEN: &str = "tok-replicas-7c1d2e";

/// `deploy/` in the source tree.
fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// The settings of `deploy/replica.env`, read as a replica's environment.
fn replica_env() -> Vec<(String, String)> {
    std::fs::read_to_string(deploy().join("replica.env"))
        .expect("deploy/replica.env")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=VALUE");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// A free port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// HAProxy running `deploy/haproxy.cfg` in front of `replicas` (their `host:port`).
struct Haproxy {
    _child: Child,
    url: String,
}

impl Haproxy {
    /// `None` (the test skips, saying so) without haproxy, unless `PLUGBOARD_REQUIRE_HAPROXY=1`
    /// (CI), where that fails.
    async fn start(replicas: &[String]) -> Option<Self> {
        let binary = "/usr/sbin/haproxy";
        if !Path::new(binary).exists() {
            assert!(
                std::env::var("PLUGBOARD_REQUIRE_HAPROXY").as_deref() != Ok("1"),
                "haproxy is required here (PLUGBOARD_REQUIRE_HAPROXY=1): apt-get install haproxy"
            );
            eprintln!("SKIPPED: no {binary} (apt-get install haproxy)");
            return None;
        }
        let port = free_port();
        let mut cmd = Command::new(binary);
        cmd.args(["-db", "-f"])
            .arg(deploy().join("haproxy.cfg"))
            .env("PLUGBOARD_LB_BIND", format!("127.0.0.1:{port}"))
            .env("PLUGBOARD_HTTP_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (i, replica) in replicas.iter().enumerate() {
            cmd.env(format!("PLUGBOARD_REPLICA_{}", i + 1), replica);
        }
        let child = cmd.spawn().expect("haproxy starts");
        let lb = Self {
            _child: child,
            url: format!("http://127.0.0.1:{port}"),
        };
        // Up when every replica passed its health check: answers through the balancer come
        // from each of them (HAProxy names the server in `X-Served-By`).
        lb.until_replicas_serve(replicas.len()).await;
        Some(lb)
    }

    /// Wait until `n` different replicas answer through the balancer.
    async fn until_replicas_serve(&self, n: usize) {
        let http = http();
        let started = Instant::now();
        loop {
            let mut seen = std::collections::HashSet::new();
            for _ in 0..(n * 3) {
                if let Ok(r) = http.get(format!("{}/health/ready", self.url)).send().await
                    && r.status() == 200
                    && let Some(server) = r.headers().get("x-served-by")
                {
                    seen.insert(server.to_str().unwrap().to_owned());
                }
            }
            if seen.len() >= n {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "HAProxy did not reach {n} replicas: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A reqwest client sending the replicas' token.
fn http() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {TOKEN}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// One replica: its process, its address and its own plugins folder (so that checkpoints on
/// disk are its own: what one replica hands another goes through Redis).
struct Replica {
    child: Option<Child>,
    addr: String,
    plugins: PathBuf,
    /// Its settings beyond `deploy/replica.env`.
    env: Vec<(String, String)>,
}

impl Replica {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Its `/metrics` scrape, read directly (not through the balancer).
    async fn metrics(&self, http: &reqwest::Client) -> String {
        http.get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().and_then(Child::id).expect("running") as i32
    }
}

/// Send `signal` to `replica`.
fn signal(replica: &Replica, signal: rustix::process::Signal) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(replica.pid()).unwrap(),
        signal,
    )
    .unwrap();
}

/// The test's deployment: Redis, three replicas of `s`'s server, HAProxy.
struct Deployment {
    _redis: RedisServer,
    replicas: Vec<Replica>,
    lb: Haproxy,
    redis_url: String,
}

impl Deployment {
    async fn start(s: &Setup) -> Option<Self> {
        Self::start_with(s, &[]).await
    }

    /// [`Deployment::start`], each replica with `env` besides `deploy/replica.env`.
    async fn start_with(s: &Setup, env: &[(&str, &str)]) -> Option<Self> {
        let redis = RedisServer::start().await?;
        let mut replicas = Vec::new();
        for n in 1..=3 {
            // Each replica its own copy of the plugins folder, with its own checkpoints.
            let plugins = s.fx.home.path().join(format!("replica{n}/plugins"));
            let manifest = std::fs::read_to_string(s.fx.plugins().join("airtable/plugin.toml"))
                .unwrap()
                .replace("checkpoints", &format!("replica{n}/checkpoints"));
            write(&plugins.join("airtable/plugin.toml"), &manifest);
            write(
                &plugins.join("testkit/plugin.toml"),
                "name = \"testkit\"\nkind = \"builtin\"\n",
            );
            let mut replica = Replica {
                child: None,
                addr: format!("127.0.0.1:{}", free_port()),
                plugins,
                env: env
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            };
            start_replica(s, &mut replica, &redis.url).await;
            replicas.push(replica);
        }
        let addrs: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();
        let lb = Haproxy::start(&addrs).await?;
        Some(Self {
            redis_url: redis.url.clone(),
            _redis: redis,
            replicas,
            lb,
        })
    }

    fn lb(&self, path: &str) -> String {
        format!("{}{path}", self.lb.url)
    }
}

/// Start (or start again) `replica` on its address, with `deploy/replica.env`.
async fn start_replica(s: &Setup, replica: &mut Replica, redis: &str) {
    let mut cmd = s.cli(&["serve", "--http", &replica.addr]);
    cmd.envs(replica_env())
        .env("PLUGBOARD_PLUGINS_DIR", &replica.plugins)
        .env("PLUGBOARD_HTTP_TOKEN", TOKEN)
        .env("PLUGBOARD_REDIS_URL", redis)
        .envs(replica.env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    s.fx.listening_url(&mut child).await;
    replica.child = Some(child);
}

/// `rows` rows for `Items` with SKUs `<prefix>-0001`…, as CSV, in `path`.
fn csv(path: &Path, prefix: &str, rows: usize) {
    let mut text = String::from("SKU,Name,Qty,Active\n");
    for i in 1..=rows {
        text.push_str(&format!("{prefix}-{i:04},Item {i},{},yes\n", 3 * i));
    }
    write(path, &text);
}

/// Every row of each `(prefix, rows)` import is in the fake exactly once, and nothing else.
fn assert_exactly_once(s: &Setup, base: &str, imports: &[(&str, usize)]) {
    let records = crate::airtable::fields_of(&s.fake, base, "Items");
    let mut count: HashMap<String, usize> = HashMap::new();
    for r in &records {
        *count
            .entry(r["SKU"].as_str().expect("a SKU").to_owned())
            .or_default() += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "rows imported twice: {twice:?}");
    for (prefix, rows) in imports {
        for i in 1..=*rows {
            assert!(
                count.contains_key(&format!("{prefix}-{i:04}")),
                "{prefix}-{i:04} is missing"
            );
        }
    }
    assert_eq!(
        records.len(),
        imports.iter().map(|(_, n)| n).sum::<usize>(),
        "records in the fake"
    );
}

/// A tool call through the REST API at `url`: the status and the result.
async fn call(http: &reqwest::Client, url: &str, tool: &str, args: Value) -> (u16, Value) {
    let response = match http
        .post(format!("{url}/api/v1/tools/{tool}/call"))
        .json(&args)
        .send()
        .await
    {
        Ok(response) => response,
        // No answer at all (the connection failed): status 0, and what failed.
        Err(e) => return (0, Value::String(format!("{tool}: {e}"))),
    };
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Three bulk imports into one base at once, and record listings from 20 clients, all through
/// the load balancer to three replicas: not one 429, never more than 5 requests in a second at
/// the fake, every row exactly once — and every replica did its part.
#[tokio::test]
async fn three_replicas_behind_haproxy_keep_to_one_airtable_limit() {
    let s = Setup::new();
    let Some(d) = Deployment::start(&s).await else {
        return;
    };
    let base = s.fake.add_base("Team", "create");
    crate::airtable::items_table(&s.fake, &base);
    let imports = [("A", 100), ("B", 100), ("C", 100)];
    for (prefix, rows) in imports {
        csv(&s.fx.data().join(format!("{prefix}.csv")), prefix, rows);
    }
    s.fake.reset_stats();
    let http = http();
    let lb = d.lb.url.clone();
    let imported = imports.map(|(prefix, _)| {
        let (http, lb, base) = (http.clone(), lb.clone(), base.clone());
        tokio::spawn(async move {
            call(
                &http,
                &lb,
                "airtable_bulk_import",
                json!({"base": base, "table": "Items", "path": format!("{prefix}.csv"),
                       "key_fields": ["SKU"]}),
            )
            .await
        })
    });
    let listed = (0..20).map(|_| {
        let (http, lb, base) = (http.clone(), lb.clone(), base.clone());
        tokio::spawn(async move {
            call(
                &http,
                &lb,
                "airtable_list_records",
                json!({"base": base, "table": "Items"}),
            )
            .await
        })
    });
    for task in imported.into_iter().chain(listed) {
        let (status, result) = task.await.unwrap();
        assert_eq!(status, 200, "{result}");
        assert_eq!(result["isError"], false, "{result}");
    }
    let stats = s.fake.stats();
    assert_eq!(stats.total_429(), 0, "{stats:?}");
    assert!(
        stats.max_requests_1s_per_base[&base] <= 5,
        "{} requests in one second: {stats:?}",
        stats.max_requests_1s_per_base[&base]
    );
    assert_exactly_once(&s, &base, &imports);
    // The balancer spread the calls: each replica answered some of them.
    for replica in &d.replicas {
        let text = replica.metrics(&http).await;
        let calls: f64 = text
            .lines()
            .filter(|l| l.starts_with("plugboard_tool_calls_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(
            calls > 0.0,
            "replica {} took no call:\n{text}",
            replica.addr
        );
    }
}

/// A replica killed (SIGKILL) in the middle of an import: the client calls the same import
/// again through the balancer, another replica picks it up from the checkpoint the first
/// kept in Redis (the replicas' checkpoint folders are their own), and every row is in the
/// table exactly once.
#[tokio::test]
async fn an_import_on_a_killed_replica_resumes_on_another() {
    let s = Setup::new();
    let Some(mut d) = Deployment::start(&s).await else {
        return;
    };
    let base = s.fake.add_base("Resumed", "create");
    crate::airtable::items_table(&s.fake, &base);
    let rows = 400;
    csv(&s.fx.data().join("big.csv"), "K", rows);
    let http = http();
    let args = json!({"base": base, "table": "Items", "path": "big.csv", "key_fields": ["SKU"]});
    let first = {
        let (http, lb, args) = (http.clone(), d.lb.url.clone(), args.clone());
        tokio::spawn(async move {
            http.post(format!("{lb}/api/v1/tools/airtable_bulk_import/call"))
                .json(&args)
                .send()
                .await
        })
    };
    // A quarter in, find the replica running it (the one with a checkpoint on its disk).
    s.fake
        .until(|f| f.records(&base, "Items").len() >= rows / 4)
        .await;
    let running = d
        .replicas
        .iter()
        .position(|r| {
            std::fs::read_dir(r.plugins.parent().unwrap().join("checkpoints"))
                .is_ok_and(|mut entries| entries.next().is_some())
        })
        .expect("one replica keeps the import's checkpoint");
    signal(&d.replicas[running], rustix::process::Signal::KILL);
    let _ = d.replicas[running].child.take().unwrap().wait().await;
    // The client's call ends without an answer (its replica is gone).
    let lost = first.await.unwrap();
    assert!(
        lost.as_ref().map_or(true, |r| r.status() != 200),
        "the call on the killed replica should not have been answered"
    );
    let landed = s.fake.records(&base, "Items").len();
    assert!(landed < rows, "the import had finished before the kill");
    // Called again, through the balancer, until a replica takes it up: the killed one's
    // lease on the job runs out within seconds.
    let started = Instant::now();
    let report = loop {
        let (status, result) = call(&http, &d.lb.url, "airtable_bulk_import", args.clone()).await;
        if status == 200 && result["isError"] == false {
            break result["structuredContent"].clone();
        }
        // The REST face says so as a 409 problem, with when to try again.
        assert_eq!(status, 409, "{result}");
        let text = result.to_string();
        assert!(text.contains("running now on another replica"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(60), "{text}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(report["complete"], true, "{report}");
    assert!(
        report["resumed_batches"].as_u64().unwrap() > 0,
        "the import started over instead of resuming: {report}"
    );
    assert_exactly_once(&s, &base, &[("K", rows)]);
    assert_eq!(s.fake.stats().total_429(), 0);
}

/// 50 stateless clients calling through the balancer, flat out, while one replica is told to
/// stop (SIGTERM: it reports not-ready, HAProxy takes it out, calls in flight finish) and is
/// started again, then another: not one call fails. Half speak MCP's 2026-07-28 generation
/// (no session), half the REST API.
#[tokio::test]
async fn fifty_stateless_clients_ride_through_restarts() {
    let s = Setup::new();
    let Some(mut d) = Deployment::start(&s).await else {
        return;
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..50)
        .map(|i| {
            let (lb, stop, calls) = (d.lb.url.clone(), stop.clone(), calls.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                if i % 2 == 0 {
                    let http = http();
                    while !stop.load(Ordering::Relaxed) {
                        let (status, result) =
                            call(&http, &lb, "testkit_echo", json!({"text": format!("c{i}")}))
                                .await;
                        if status != 200 || result["isError"] != false {
                            failures.push(format!("{status} {result}"));
                        }
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    let client = stateless_client(&lb).await;
                    while !stop.load(Ordering::Relaxed) {
                        let mut params = CallToolRequestParams::new("testkit_echo");
                        params.arguments = json!({"text": format!("c{i}")}).as_object().cloned();
                        match client.call_tool(params).await {
                            Ok(result) if result.is_error != Some(true) => {}
                            Ok(result) => failures.push(format!("{result:?}")),
                            Err(e) => failures.push(e.to_string()),
                        }
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                }
                failures
            })
        })
        .collect();
    let redis = d.redis_url.clone();
    for n in [1, 2] {
        let before = calls.load(Ordering::Relaxed);
        // Some calls on every replica before it goes.
        while calls.load(Ordering::Relaxed) < before + 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let replica = &mut d.replicas[n];
        signal(replica, rustix::process::Signal::TERM);
        let exited = replica.child.take().unwrap().wait().await.unwrap();
        assert!(
            exited.success(),
            "a replica told to stop exits cleanly: {exited:?}"
        );
        start_replica(&s, replica, &redis).await;
        d.lb.until_replicas_serve(3).await;
    }
    let before = calls.load(Ordering::Relaxed);
    while calls.load(Ordering::Relaxed) < before + 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} of {} calls failed: {:?}",
        failures.len(),
        calls.load(Ordering::Relaxed),
        &failures[..failures.len().min(5)]
    );
}

/// An rmcp client of the 2026-07-28 generation (no session) through the balancer.
async fn stateless_client(lb: &str) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    use rmcp::{ClientLifecycleMode, ClientServiceExt, model::ProtocolVersion};
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("{lb}/mcp")).auth_header(TOKEN),
    );
    ().serve_with_lifecycle(
        transport,
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    )
    .await
    .expect("a 2026-07-28 client through the balancer")
}

/// A 2025-11-25 session through the balancer stays on the replica that created it (HAProxy
/// sticks on `Mcp-Session-Id`): every call works, though another replica does not know the
/// session (404, as the spec says). When its replica is killed, the client's next call meets
/// a replica that does not know the session either, and rmcp's client initializes again.
#[tokio::test]
async fn a_session_stays_on_its_replica_and_starts_over_when_it_is_gone() {
    let s = Setup::new();
    let Some(mut d) = Deployment::start(&s).await else {
        return;
    };
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(d.lb("/mcp")).auth_header(TOKEN),
    );
    let client = ().serve(transport).await.expect("a session through the balancer");
    let echo = |text: &str| {
        let mut params = CallToolRequestParams::new("testkit_echo");
        params.arguments = json!({ "text": text }).as_object().cloned();
        params
    };
    for i in 0..12 {
        let result = client.call_tool(echo(&format!("s{i}"))).await.unwrap();
        assert_ne!(result.is_error, Some(true), "{result:?}");
    }
    // One replica holds it: had the calls gone round the replicas, each would have met a
    // 404 and made a session of its own.
    let http = http();
    let mut holders = Vec::new();
    for (i, replica) in d.replicas.iter().enumerate() {
        let metrics = replica.metrics(&http).await;
        if metrics
            .lines()
            .any(|l| l.starts_with("plugboard_sessions{transport=\"streamable_http\"} 1"))
        {
            holders.push(i);
        }
    }
    assert_eq!(holders.len(), 1, "one replica holds the session");
    let holder = holders[0];
    // A session a replica does not hold: 404, as the spec says.
    let other = &d.replicas[(holder + 1) % 3];
    let unknown = http
        .post(other.url("/mcp"))
        .header("mcp-session-id", "a-session-this-replica-never-made")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    // Its replica dies; the next call lands elsewhere, meets 404, and the client starts a new
    // session there.
    signal(&d.replicas[holder], rustix::process::Signal::KILL);
    let _ = d.replicas[holder].child.take().unwrap().wait().await;
    let result = client.call_tool(echo("after")).await.unwrap();
    assert_ne!(result.is_error, Some(true), "{result:?}");
    client.cancel().await.unwrap();
}

/// Sign-in through the balancer: three replicas taking the identity provider's tokens (and
/// the static token, which HAProxy's health check sends). The metadata document is served
/// through it; a signed-in 2026-07-28 client, its requests spread over the replicas, sees and
/// calls only what its scope opens; a call outside it is 403 `insufficient_scope`; expired
/// and wrong-audience tokens are 401 with the challenge naming the metadata.
#[tokio::test]
async fn sign_in_works_through_the_balancer() {
    use crate::oauth::{Issuer, RESOURCE, SCOPES, SigningKey};
    let key = SigningKey::es256("k1");
    let issuer = Issuer::start(&[&key]).await;
    let s = Setup::new();
    let Some(d) = Deployment::start_with(
        &s,
        &[
            ("PLUGBOARD_OAUTH_ISSUER", &issuer.url),
            ("PLUGBOARD_OAUTH_RESOURCE", RESOURCE),
            ("PLUGBOARD_OAUTH_SCOPES", SCOPES),
        ],
    )
    .await
    else {
        return;
    };
    let plain = reqwest::Client::new();
    let metadata: Value = plain
        .get(d.lb("/.well-known/oauth-protected-resource/mcp"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], RESOURCE, "{metadata}");
    assert_eq!(metadata["authorization_servers"][0], issuer.url.as_str());

    // The scope `kit` opens the testkit plugin only.
    let token = key.token(&issuer.claims("kit"));
    let client = {
        use rmcp::{ClientLifecycleMode, ClientServiceExt, model::ProtocolVersion};
        ().serve_with_lifecycle(
            StreamableHttpClientTransport::from_config(
                StreamableHttpClientTransportConfig::with_uri(d.lb("/mcp")).auth_header(&token),
            ),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("a signed-in client through the balancer")
    };
    let tools = client.list_all_tools().await.unwrap();
    assert!(!tools.is_empty());
    assert!(
        tools.iter().all(|t| t.name.starts_with("testkit_")),
        "{:?}",
        tools.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    for i in 0..9 {
        let mut params = CallToolRequestParams::new("testkit_echo");
        params.arguments = json!({ "text": format!("t{i}") }).as_object().cloned();
        let result = client.call_tool(params).await.unwrap();
        assert_ne!(result.is_error, Some(true), "{result:?}");
    }
    let mcp_call = |token: String, tool: &'static str| {
        let (plain, url) = (plain.clone(), d.lb("/mcp"));
        async move {
            plain
                .post(url)
                .bearer_auth(token)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2026-07-28")
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                              "params": {"name": tool, "arguments": {"base": "appX", "table": "T"}}}))
                .send()
                .await
                .unwrap()
        }
    };
    let outside = mcp_call(token.clone(), "airtable_list_records").await;
    assert_eq!(outside.status(), 403);
    let challenge = outside.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    let mut expired = issuer.claims("kit");
    expired["exp"] = json!(expired["iat"].as_u64().unwrap() - 3600);
    let mut elsewhere = issuer.claims("kit");
    elsewhere["aud"] = json!("https://another.example.com/mcp");
    for claims in [expired, elsewhere] {
        let refused = mcp_call(key.token(&claims), "testkit_echo").await;
        assert_eq!(refused.status(), 401);
        let challenge = refused.headers()["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains("resource_metadata=") && challenge.contains("invalid_token"),
            "{challenge}"
        );
    }
    client.cancel().await.unwrap();
}
