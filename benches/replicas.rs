//! plugboard for a team: replicas behind a load balancer with limits shared in Redis — the
//! figures, each against its baseline measured in the same run.
//!
//! `cargo bench --bench replicas` (builds the release binary first; `PLUGBOARD_BENCH_BIN`
//! names another, e.g. `target/debug/plugboard` while working on this file). Needs Debian's
//! redis-server (figures 1–3) and haproxy (2 and 3); without them the figure says it was
//! skipped. The deployment is `deploy/` as tests/mcp/replicas.rs runs it: three `plugboard
//! serve --http` replicas with `deploy/replica.env` and one PLUGBOARD_REDIS_URL, each with its
//! own plugins folder (testkit and airtable), behind HAProxy running `deploy/haproxy.cfg`.
//!
//! 1. The shared limiter's cost: one `Pacer::acquire` and the release of its place (the
//!    drop), with a limit that never makes anyone wait (1,000,000 per second), through Redis
//!    on loopback and in process (baseline), alternated in rounds of `PER_ROUND` so that both
//!    see the same machine: p50 and p99 of each, and the p50 difference (target ≤ +0.3 ms).
//!    Both releases are asynchronous (a spawned task: in Redis the `FREE` script, in process
//!    a timer), as in the server, where the answer does not wait for them. The per-request
//!    figures are what a request waits for; the mean column counts each round from its
//!    first acquire until Redis has applied the round's last release (no place left on its
//!    lease), so the releases' round trips are in it too.
//! 2. Throughput: `CLIENTS` (50) REST clients, each on its own keep-alive connection with
//!    the token, calling `testkit_echo` on one replica directly (baseline) and the same
//!    number through HAProxy to the three, loaded in turn one second at a time (`PAIRS` pairs,
//!    default 10, after a warm-up): calls/s of each and the ratio. Reported, not a target:
//!    on a 2-core machine the replicas, HAProxy and the clients share two cores; the point
//!    of the deployment is correctness.
//! 3. Airtable import rate: the fake Airtable (tests/support/airtable.rs) enforcing the real
//!    limits (5 requests/s per base, 50/s per token, a 30 s lockout after a 429); three bulk
//!    imports of `ROWS` rows each (default 400) into one base, at once, over REST through
//!    HAProxy, so that the three replicas share the base's 5 requests/s through Redis (the
//!    replicas get a PLUGBOARD_CALL_TIMEOUT long enough for a larger `ROWS`).
//!    Records/s from the first request sent to the last answer, against Airtable's ceiling
//!    (10 records × 5 requests/s = 50 records/s, target ≥ 90 %), the 429s the fake served
//!    (target 0) and the most requests it saw in any second.
//!
//! The targets are printed beside the figures, not asserted.
//!
//! One file (600 lines): the three figures share the deployment they start (Redis, three
//! replicas, HAProxy) and its teardown; benches are one binary each here, so a module of its
//! own would be a second copy of that setup.

mod common;
#[path = "../tests/support/airtable.rs"]
mod fake;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use plugboard::net::shared::{Pacer, Place, Redis};
use redis::AsyncCommands;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const REDIS_SERVER: &str = "/usr/bin/redis-server";
const HAPROXY: &str = "/usr/sbin/haproxy";
/// The token the replicas require (HAProxy's health check sends it too).
const TOKEN: &str = "tok-bench-replicas-4f2a";

/// Figure 1: a limit no request waits for, over a span of a second.
const LIMIT: usize = 1_000_000;
const ROUNDS: usize = 10;
const PER_ROUND: usize = 500;
/// The key the bench's places are under, and the Redis set that holds them.
const KEY: &str = "appBench";
const SET: &str = "plugboard:window:bench:appBench";

/// Figure 2.
const CLIENTS: usize = 50;
/// Figure 3: Airtable's ceiling for one base, records/s.
const CEILING: f64 = 50.0;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn quantile(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort();
    samples
        .get(((samples.len() as f64 - 1.0) * q).round() as usize)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on loopback")
}

/// `redis-server` on a port of its own, as tests/mcp/shared.rs starts it.
async fn redis_server() -> (Child, String) {
    let port = free_port();
    let child = Command::new(REDIS_SERVER)
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
            "no redis-server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (child, format!("redis://127.0.0.1:{port}/"))
}

/// Wait until Redis has applied every release of the bench's places: none is still on its
/// lease (scored `now + lease`, two minutes ahead; a released one is `now + 1 s`).
async fn releases_applied(connection: &mut redis::aio::ConnectionManager) {
    loop {
        let (secs, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(connection)
            .await
            .expect("Redis TIME");
        let now_ms = secs * 1000 + micros / 1000;
        let held: u64 = connection
            .zcount(SET, now_ms + 60_000, "+inf")
            .await
            .expect("Redis ZCOUNT");
        if held == 0 {
            return;
        }
        tokio::task::yield_now().await;
    }
}

async fn limiter_cost(redis_url: &str) {
    let redis = Redis::connect(redis_url).await.expect("Redis");
    let span = Duration::from_secs(1);
    let local = Pacer::new(LIMIT, span, None, "bench");
    let shared = Pacer::new(LIMIT, span, Some(&redis), "bench");
    let mut connection = redis.connection();
    let (mut local_samples, mut shared_samples) = (Vec::new(), Vec::new());
    let (mut local_wall, mut shared_wall) = (Duration::ZERO, Duration::ZERO);
    let mut fell_back = 0;
    // A warm-up round of each (connection, script cache), not kept.
    for round in 0..=ROUNDS {
        let started = Instant::now();
        for _ in 0..PER_ROUND {
            let sent = Instant::now();
            drop(local.acquire(KEY).await);
            if round > 0 {
                local_samples.push(sent.elapsed());
            }
        }
        if round > 0 {
            local_wall += started.elapsed();
        }
        let started = Instant::now();
        for _ in 0..PER_ROUND {
            let sent = Instant::now();
            let place = shared.acquire(KEY).await;
            if !matches!(place, Place::Shared(_)) {
                fell_back += 1;
            }
            drop(place);
            if round > 0 {
                shared_samples.push(sent.elapsed());
            }
        }
        releases_applied(&mut connection).await;
        if round > 0 {
            shared_wall += started.elapsed();
        }
    }
    let n = ROUNDS * PER_ROUND;
    let (l50, l99) = (
        quantile(&mut local_samples, 0.5),
        quantile(&mut local_samples, 0.99),
    );
    let (s50, s99) = (
        quantile(&mut shared_samples, 0.5),
        quantile(&mut shared_samples, 0.99),
    );
    let mean = |wall: Duration| wall.as_secs_f64() * 1e6 / n as f64;
    println!(
        "1. Shared limiter cost: Pacer acquire + release, limit {LIMIT}/s (never waits), {n} \
         sequential requests each, alternated in rounds of {PER_ROUND}:"
    );
    println!(
        "   {:40} {:>8} {:>8} {:>22}",
        "", "p50 µs", "p99 µs", "mean µs, releases in"
    );
    println!(
        "   {:40} {l50:>8.1} {l99:>8.1} {:>22.1}",
        "in process (baseline)",
        mean(local_wall)
    );
    println!(
        "   {:40} {s50:>8.1} {s99:>8.1} {:>22.1}",
        "shared through Redis on loopback",
        mean(shared_wall)
    );
    if fell_back > 0 {
        println!("   ({fell_back} places came from the fallback share: Redis was not reached)");
    }
    let added = (s50 - l50) / 1e3;
    println!(
        "   p50 cost of sharing: {added:+.3} ms per request (×{:.1} the in-process p50; \
         target ≤ +0.3 ms) — {}\n",
        s50 / l50,
        verdict(added <= 0.3)
    );
}

/// The settings of `deploy/replica.env`, as a replica's environment.
fn replica_env() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/replica.env");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Three replicas sharing one Redis, behind HAProxy; the fake Airtable they talk to.
struct Deployment {
    replicas: Vec<Child>,
    /// The replicas' base URLs (`http://127.0.0.1:port`).
    direct: Vec<String>,
    _haproxy: Child,
    lb: String,
    fake: fake::FakeAirtable,
    /// CSVs for the imports (the airtable plugin's `import_roots`).
    data: PathBuf,
}

impl Deployment {
    async fn start(bin: &Path, home: &Path, redis: &str, call_timeout: u64) -> Self {
        let fake = fake::FakeAirtable::start_in_thread(fake::FakeConfig {
            per_base_rps: 5,
            per_token_rps: 50,
            lockout: Duration::from_secs(30),
            ..fake::FakeConfig::default()
        });
        let data = home.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let shipped = include_str!("../plugins/airtable/plugin.toml");
        let head = shipped.split("\n[settings]").next().unwrap_or(shipped);
        let (mut replicas, mut direct) = (Vec::new(), Vec::new());
        for n in 1..=3 {
            // Each replica its own plugins folder and checkpoints, as in a real deployment.
            let plugins = home.join(format!("replica{n}/plugins"));
            let write = |path: PathBuf, text: String| {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
            };
            write(
                plugins.join("airtable/plugin.toml"),
                format!(
                    "{head}\n[settings]\nlockout_secs = 30\ncheckpoint_dir = {:?}\nimport_roots = [{:?}]\n",
                    home.join(format!("replica{n}/checkpoints"))
                        .display()
                        .to_string(),
                    data.display().to_string(),
                ),
            );
            write(
                plugins.join("testkit/plugin.toml"),
                "name = \"testkit\"\nkind = \"builtin\"\n".to_owned(),
            );
            let addr = format!("127.0.0.1:{}", free_port());
            let mut cmd = Command::new(bin);
            cmd.current_dir(home)
                .args(["serve", "--http", &addr])
                .envs(replica_env())
                .env("PLUGBOARD_PLUGINS_DIR", &plugins)
                .env("XDG_STATE_HOME", home.join(format!("replica{n}/state")))
                .env("PLUGBOARD_HTTP_TOKEN", TOKEN)
                .env("PLUGBOARD_REDIS_URL", redis)
                .env("PLUGBOARD_CALL_TIMEOUT", call_timeout.to_string())
                .env("AIRTABLE_API_KEY", fake::DEFAULT_TOKEN)
                .env("AIRTABLE_BASE_URL", &fake.url)
                .env("PLUGBOARD_LOG", "error")
                .env_remove("PLUGBOARD_FILES_ROOTS")
                .env_remove("PLUGBOARD_ENV_FILE")
                .env_remove("RUST_LOG");
            let (child, url) = common::serve_http(&mut cmd).await;
            replicas.push(child);
            direct.push(url);
        }
        let port = free_port();
        let mut cmd = Command::new(HAPROXY);
        cmd.args(["-db", "-f"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy.cfg"))
            .env("PLUGBOARD_LB_BIND", format!("127.0.0.1:{port}"))
            .env("PLUGBOARD_HTTP_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (i, url) in direct.iter().enumerate() {
            cmd.env(
                format!("PLUGBOARD_REPLICA_{}", i + 1),
                url.trim_start_matches("http://"),
            );
        }
        let deployment = Self {
            replicas,
            direct,
            _haproxy: cmd.spawn().expect("haproxy starts"),
            lb: format!("http://127.0.0.1:{port}"),
            fake,
            data,
        };
        deployment.until_every_replica_serves().await;
        deployment
    }

    /// Up when answers through the balancer come from all three replicas (HAProxy names the
    /// one in `X-Served-By`): each passed its health check.
    async fn until_every_replica_serves(&self) {
        let http = client();
        let started = Instant::now();
        loop {
            let mut seen = HashSet::new();
            for _ in 0..9 {
                if let Ok(r) = http.get(format!("{}/health/ready", self.lb)).send().await
                    && r.status() == 200
                    && let Some(server) = r.headers().get("x-served-by")
                {
                    seen.insert(server.as_bytes().to_vec());
                }
            }
            if seen.len() == self.replicas.len() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "HAProxy did not reach the three replicas"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A client with the replicas' token and one keep-alive connection.
fn client() -> reqwest::Client {
    let mut headers = HeaderMap::new();
    let bearer = HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap();
    headers.insert(AUTHORIZATION, bearer);
    reqwest::Client::builder()
        .default_headers(headers)
        .tcp_nodelay(true)
        .no_proxy()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap()
}

/// One REST client calling `testkit_echo` on `base` until `end`: calls answered with the
/// echo, and calls that failed.
async fn echo_until(
    http: reqwest::Client,
    url: String,
    end: Instant,
) -> (reqwest::Client, u64, u64) {
    let (mut calls, mut errors) = (0, 0);
    while Instant::now() < end {
        let reply = http
            .post(&url)
            .header(CONTENT_TYPE, "application/json")
            .body(r#"{"text":"hello"}"#)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let echoed = match reply {
            Ok(r) if r.status().is_success() => r
                .bytes()
                .await
                .is_ok_and(|b| b.windows(5).any(|w| w == b"hello")),
            _ => false,
        };
        if echoed {
            calls += 1;
        } else {
            errors += 1;
        }
    }
    (http, calls, errors)
}

/// One second of load from every client on `base`: calls/s, errors, the clients back.
async fn slice(clients: Vec<reqwest::Client>, base: &str) -> (f64, u64, Vec<reqwest::Client>) {
    let length = Duration::from_secs(1);
    let end = Instant::now() + length;
    let url = format!("{base}/api/v1/tools/testkit_echo/call");
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(echo_until(c, url.clone(), end)))
        .collect();
    let (mut calls, mut errors, mut back) = (0, 0, Vec::new());
    for task in tasks {
        let (client, c, e) = task.await.unwrap();
        calls += c;
        errors += e;
        back.push(client);
    }
    (calls as f64 / length.as_secs_f64(), errors, back)
}

async fn throughput(d: &Deployment, pairs: usize) {
    // Like the ops bench: both kept connected, loaded in turn one second at a time, so that
    // a slow spell of the VM spoils one pair, not one side.
    let mut one: Vec<_> = (0..CLIENTS).map(|_| client()).collect();
    let mut three: Vec<_> = (0..CLIENTS).map(|_| client()).collect();
    let direct = &d.direct[0];
    for _ in 0..3 {
        (_, _, one) = slice(one, direct).await;
        (_, _, three) = slice(three, &d.lb).await;
    }
    let (mut ratios, mut sums, mut errors) = (Vec::new(), (0.0, 0.0), (0, 0));
    for i in 0..pairs {
        let (a, ea, b, eb);
        if i % 2 == 0 {
            (a, ea, one) = slice(one, direct).await;
            (b, eb, three) = slice(three, &d.lb).await;
        } else {
            (b, eb, three) = slice(three, &d.lb).await;
            (a, ea, one) = slice(one, direct).await;
        }
        ratios.push(b / a);
        sums = (sums.0 + a, sums.1 + b);
        errors = (errors.0 + ea, errors.1 + eb);
    }
    ratios.sort_by(f64::total_cmp);
    let n = pairs as f64;
    println!(
        "2. Throughput, {CLIENTS} REST clients (keep-alive, token) calling testkit_echo, loaded \
         in turn, {pairs} pairs of 1 s slices ({} cores for everything):",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "   1 replica direct (baseline)         {:>8.0} calls/s   {} errors",
        sums.0 / n,
        errors.0
    );
    println!(
        "   3 replicas behind HAProxy           {:>8.0} calls/s   {} errors",
        sums.1 / n,
        errors.1
    );
    println!(
        "   3 behind HAProxy / 1 direct: median {:.3} (quartiles {:.3}–{:.3}) — reported, no \
         target\n",
        ratios[ratios.len() / 2],
        ratios[ratios.len() / 4],
        ratios[ratios.len() * 3 / 4]
    );
}

async fn airtable_import(d: &Deployment, rows: usize) {
    let base = d.fake.add_base("Team", "create");
    d.fake.add_table(
        &base,
        "Items",
        &[
            ("SKU", "singleLineText", None),
            ("Name", "singleLineText", None),
            ("Qty", "number", Some(json!({"precision": 0}))),
            ("Active", "checkbox", None),
        ],
    );
    let prefixes = ["A", "B", "C"];
    for prefix in prefixes {
        let mut text = String::from("SKU,Name,Qty,Active\n");
        for i in 1..=rows {
            text.push_str(&format!("{prefix}-{i:05},Item {i},{},yes\n", 3 * i));
        }
        std::fs::write(d.data.join(format!("{prefix}.csv")), text).unwrap();
    }
    d.fake.reset_stats();
    let http = client();
    let started = Instant::now();
    let imports: Vec<_> = prefixes
        .iter()
        .map(|prefix| {
            let request = http
                .post(format!("{}/api/v1/tools/airtable_bulk_import/call", d.lb))
                .json(
                    &json!({"base": base, "table": "Items", "path": format!("{prefix}.csv"),
                              "key_fields": ["SKU"]}),
                );
            tokio::spawn(async move {
                let reply = request.send().await.map_err(|e| e.to_string())?;
                let status = reply.status();
                let result: Value = reply.json().await.map_err(|e| e.to_string())?;
                if status != 200 || result["isError"] != false {
                    return Err(format!("HTTP {status}: {result}"));
                }
                Ok(result["structuredContent"].clone())
            })
        })
        .collect();
    let mut failed = Vec::new();
    let mut created = 0;
    for import in imports {
        match import.await.unwrap() {
            Ok(report) => created += report["created"].as_u64().unwrap_or(0),
            Err(e) => failed.push(e),
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let stats = d.fake.stats();
    let records = d.fake.records(&base, "Items");
    let distinct: HashSet<_> = records
        .iter()
        .filter_map(|r| r["fields"]["SKU"].as_str())
        .collect();
    let total = 3 * rows;
    let rate = records.len() as f64 / wall;
    let ratio = rate / CEILING;
    let most = stats
        .max_requests_1s_per_base
        .get(&base)
        .copied()
        .unwrap_or(0);
    println!(
        "3. Airtable import rate: 3 bulk imports of {rows} rows at once into one base, over REST \
         through HAProxy to 3 replicas sharing Redis (fake: 5 req/s per base, 50/s per token, \
         30 s lockout):"
    );
    println!("   ceiling (10 records × 5 requests/s, baseline)   {CEILING:>7.1} records/s");
    println!(
        "   3 replicas, first request to last answer       {rate:>7.1} records/s   × {ratio:.3} \
         of the ceiling ({wall:.1} s; target ≥ 0.90) — {}",
        verdict(ratio >= 0.90)
    );
    println!(
        "   429s served {} (target 0) — {}  ·  most requests to the base in any 1 s window {most} \
         (limit 5)  ·  requests {}",
        stats.total_429(),
        verdict(stats.total_429() == 0),
        stats.requests_total
    );
    println!(
        "   records in the fake {} of {total} ({} distinct; created by the imports {created})",
        records.len(),
        distinct.len()
    );
    for e in &failed {
        println!("   an import failed: {e}");
    }
}

fn main() {
    let bin = std::env::var_os("PLUGBOARD_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(common::binary);
    let rows = env_or("ROWS", 400usize).max(1);
    let pairs = env_or("PAIRS", 10usize).max(4);
    // Room for the imports on the replicas: three times what the ceiling allows, at least
    // the default two minutes.
    let call_timeout = (3 * rows as u64 / 50 * 3).max(120);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "plugboard for a team: replicas behind HAProxy with limits shared in Redis ({} cores)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let (have_redis, have_haproxy) = (
        Path::new(REDIS_SERVER).exists(),
        Path::new(HAPROXY).exists(),
    );
    rt.block_on(async {
        if !have_redis {
            println!("1–3. SKIPPED: no {REDIS_SERVER} (apt-get install redis-server)");
            return;
        }
        let (_redis, redis_url) = redis_server().await;
        limiter_cost(&redis_url).await;
        if !have_haproxy {
            println!("2. SKIPPED: no {HAPROXY} (apt-get install haproxy)\n");
            println!("3. SKIPPED: no {HAPROXY} (apt-get install haproxy)");
            return;
        }
        let home = tempfile::tempdir().unwrap();
        let d = Deployment::start(&bin, home.path(), &redis_url, call_timeout).await;
        throughput(&d, pairs).await;
        airtable_import(&d, rows).await;
    });
}
