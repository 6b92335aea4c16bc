//! Stateful fake of the Airtable Web API, for integration tests and benches.
//!
//! Include it with `#[path = "../support/airtable.rs"] mod airtable;` and start it
//! on the current tokio runtime with [`FakeAirtable::start`]. Point the client at
//! `fake.url` (no `/v0`; the fake serves `/v0/...` like `https://api.airtable.com`).
//!
//! The wire format, limits and errors follow `shared/api-facts.md` §1. Behaviour
//! that the facts do not pin down is marked `INVENTED:` below; the module doc of
//! each such place says what was chosen.
//!
//! Connection resets (faults `rate_reset_before` / `rate_reset_after`): the server
//! reads the whole request, then closes the TCP connection with SO_LINGER=0 (an
//! RST) instead of writing a response. A reqwest client sees an error, never a
//! status: `is_request()` is true (hyper reports "connection reset" or
//! "connection closed before message completed"), `is_connect()`/`is_timeout()`
//! are false.
//!
//! Time is tokio's clock (rate windows, lockouts, offset expiry): started with
//! [`FakeAirtable::start`] on a test runtime whose time is paused, a 30 s lockout
//! passes in virtual time, exactly as long as the client waits; on a runtime of
//! its own ([`FakeAirtable::start_in_thread`]) tokio's clock is the real one.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/// The token [`FakeConfig::default`] accepts (PAT-shaped).
pub const DEFAULT_TOKEN: &str = "patFAKEfake0000001.0123456789abcdef0123456789abcdef";

/// All four scopes of api-facts §1.
pub const ALL_SCOPES: [&str; 4] = [
    "data.records:read",
    "data.records:write",
    "schema.bases:read",
    "schema.bases:write",
];

#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// The only token accepted (`Authorization: Bearer <token>`).
    pub token: String,
    /// Scopes of the token; a request needing a missing scope gets 403
    /// `INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND`. Default: all four.
    pub scopes: Vec<String>,
    /// Requests per rolling second per base (real: 5). 0 = unlimited.
    pub per_base_rps: u32,
    /// Requests per rolling second per token, across bases (real: 50). 0 = unlimited.
    pub per_token_rps: u32,
    /// After a 429, the base (or token) refuses everything for this long (real: 30 s).
    pub lockout: Duration,
    pub faults: Faults,
    /// Largest accepted `pageSize` (real: 100); also the default page size.
    pub page_size_max: usize,
    /// Page size of `GET /v0/meta/bases`. INVENTED: real value unknown.
    pub bases_page_size: usize,
    /// Bodies above this get 413. INVENTED: real limit unknown.
    pub max_body_bytes: usize,
    /// URLs (path + query) of this length or more get 414 (real: < 16,000 chars).
    pub max_url_len: usize,
    /// Offsets older than this become invalid (422). `None`: only
    /// [`FakeAirtable::expire_offsets`] invalidates them.
    pub offset_ttl: Option<Duration>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            token: DEFAULT_TOKEN.to_string(),
            scopes: ALL_SCOPES.iter().map(|s| s.to_string()).collect(),
            per_base_rps: 5,
            per_token_rps: 50,
            lockout: Duration::from_secs(30),
            faults: Faults::default(),
            page_size_max: 100,
            bases_page_size: 1000,
            max_body_bytes: 5 * 1024 * 1024,
            max_url_len: 16_000,
            offset_ttl: None,
        }
    }
}

/// Injected faults, drawn per request from a PRNG seeded with `seed` (deterministic
/// for a given request order). Rates are probabilities in [0, 1]; their sum should
/// be ≤ 1. Faults apply only to record endpoints (not `/v0/meta/...`), and only to
/// requests that passed auth, base lookup and the rate limiter.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    pub seed: u64,
    /// 429 `RATE_LIMIT_REACHED`, once; does NOT start a lockout.
    pub rate_429: f64,
    /// 500 `SERVER_ERROR`; nothing applied.
    pub rate_500: f64,
    /// 503 `SERVER_ERROR`; nothing applied.
    pub rate_503: f64,
    /// Connection cut before the request is applied.
    pub rate_reset_before: f64,
    /// Request applied (writes persist), then the connection is cut.
    pub rate_reset_after: f64,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Every HTTP request received (including 401/404/413/429 ones).
    pub requests_total: u64,
    /// Requests addressed to a known base (records and `/v0/meta/bases/{base}/...`).
    pub requests_per_base: HashMap<String, u64>,
    /// 429s served by the rate limiter (the one that starts a lockout and every
    /// request refused during a lockout).
    pub rate_limited_429: u64,
    /// Lockouts started (base or token).
    pub lockouts_started: u64,
    pub injected_429: u64,
    pub injected_500: u64,
    pub injected_503: u64,
    pub injected_reset_before: u64,
    pub injected_reset_after: u64,
    /// Most requests (all arrivals, refused or not) seen in any rolling 1 s window, per base.
    pub max_requests_1s_per_base: HashMap<String, usize>,
    /// Same, for the token across all bases.
    pub max_requests_1s_token: usize,
}

impl Stats {
    /// All 429s served, rate-limited and injected.
    pub fn total_429(&self) -> u64 {
        self.rate_limited_429 + self.injected_429
    }
    pub fn injected_total(&self) -> u64 {
        self.injected_429
            + self.injected_500
            + self.injected_503
            + self.injected_reset_before
            + self.injected_reset_after
    }
}

/// A running fake. Stops (gracefully) when dropped or on [`FakeAirtable::shutdown`].
pub struct FakeAirtable {
    /// `http://127.0.0.1:PORT`, without `/v0`.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeAirtable {
    /// Binds 127.0.0.1:0 and serves on the current tokio runtime.
    pub async fn start(config: FakeConfig) -> FakeAirtable {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake airtable: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake airtable: local addr");
        let inner = Arc::new(Mutex::new(Inner::new(config)));
        let app = Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::disable())
            .with_state(inner.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(
                FakeListener(listener),
                app.into_make_service_with_connect_info::<ConnMeta>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
        });
        FakeAirtable {
            url: format!("http://{addr}"),
            inner,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Like [`FakeAirtable::start`], but serves from its own thread and runtime, so
    /// it keeps answering while the caller's thread blocks (sync tests, benches,
    /// blocking waits on a child process). Callable with or without a runtime.
    pub fn start_in_thread(config: FakeConfig) -> FakeAirtable {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("fake-airtable".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake airtable: runtime");
                rt.block_on(async move {
                    let mut fake = FakeAirtable::start(config).await;
                    let task = fake.task.take();
                    if tx.send(fake).is_err() {
                        return;
                    }
                    if let Some(task) = task {
                        let _ = task.await;
                    }
                });
            })
            .expect("fake airtable: spawn thread");
        rx.recv().expect("fake airtable: start")
    }

    /// `http://127.0.0.1:PORT/v0`.
    pub fn api_url(&self) -> String {
        format!("{}/v0", self.url)
    }

    /// Stops accepting, lets in-flight requests finish (at most 5 s).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Adds a base; `permission` is the `permissionLevel`
    /// (`none`/`read`/`comment`/`edit`/`create`). Records can be written with
    /// `edit`/`create`, the schema changed with `create`; `none` behaves like no access.
    pub fn add_base(&self, name: &str, permission: &str) -> String {
        let mut s = self.lock();
        let id = s.id_rng.id("app");
        s.bases.push(Base {
            id: id.clone(),
            name: name.to_string(),
            permission: permission.to_string(),
            denied: false,
            tables: Vec::new(),
            window: VecDeque::new(),
            arrivals: VecDeque::new(),
            locked_until: None,
        });
        id
    }

    /// Adds a table (bypasses the API: computed types such as `formula`,
    /// `autoNumber`, `createdTime` are allowed here). The first field is primary.
    /// Options: selects take `{"choices":[{"name":"a"}…]}` (or `["a",…]`); a
    /// `formula` field takes `{"formula":"…"}` and is evaluated; `count` takes
    /// `{"recordLinkFieldId":"fld…"/name}`. Panics on a bad definition.
    pub fn add_table(
        &self,
        base: &str,
        name: &str,
        fields: &[(&str, &str, Option<Value>)],
    ) -> String {
        let mut s = self.lock();
        let bi = s.base_idx_any(base).expect("add_table: unknown base");
        let mut built = Vec::new();
        for (fname, ftype, options) in fields {
            let mut spec = json!({"name": fname, "type": ftype});
            if let Some(o) = options {
                spec["options"] = o.clone();
            }
            let f = build_field(&spec, &mut s.id_rng, false)
                .unwrap_or_else(|e| panic!("add_table: field {fname}: {}", e.body));
            built.push(f);
        }
        assert!(!built.is_empty(), "add_table: a table needs fields");
        let t = new_table(&mut s.id_rng, name, None, built);
        let id = t.id.clone();
        s.bases[bi].tables.push(t);
        id
    }

    /// Adds a view (no filter, creation order) and returns its id.
    pub fn add_view(&self, base: &str, table: &str, name: &str, view_type: &str) -> String {
        let mut s = self.lock();
        let (bi, ti) = s
            .table_any(base, table)
            .expect("add_view: unknown base/table");
        let id = s.id_rng.id("viw");
        s.bases[bi].tables[ti].views.push(View {
            id: id.clone(),
            name: name.to_string(),
            view_type: view_type.to_string(),
        });
        id
    }

    /// Full record objects (field names as keys, empty cells omitted, computed
    /// cells included), in creation order.
    pub fn records(&self, base: &str, table: &str) -> Vec<Value> {
        let s = self.lock();
        let (bi, ti) = s
            .table_any(base, table)
            .expect("records: unknown base/table");
        let t = &s.bases[bi].tables[ti];
        let opts = OutOpts::default();
        t.records
            .iter()
            .map(|r| record_json(t, r, &s.user, &opts))
            .collect()
    }

    /// Seeds records directly (no rate limit, no stats, no 10-record cap). Keys are
    /// field names or ids; values are checked as with `typecast: true`. Panics on
    /// invalid input.
    pub fn insert_records(
        &self,
        base: &str,
        table: &str,
        fields: Vec<Map<String, Value>>,
    ) -> Vec<String> {
        let mut guard = self.lock();
        let (bi, ti) = guard
            .table_any(base, table)
            .expect("insert_records: unknown base/table");
        let s = &mut *guard;
        let t = &mut s.bases[bi].tables[ti];
        let mut ids = Vec::new();
        for input in &fields {
            let cells = build_cells(&mut t.fields, input, true, &mut s.id_rng)
                .unwrap_or_else(|e| panic!("insert_records: {}", e.body));
            ids.push(insert_record(t, cells, &mut s.id_rng));
        }
        ids
    }

    /// The table as `GET /v0/meta/bases/{base}/tables` shows it.
    pub fn table_schema(&self, base: &str, table: &str) -> Value {
        let s = self.lock();
        let (bi, ti) = s
            .table_any(base, table)
            .expect("table_schema: unknown base/table");
        table_json(&s.bases[bi].tables[ti], false)
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    /// Resolves once `done` holds, checked now and after every request the fake answers
    /// (an event, not a poll); from any runtime.
    pub async fn until(&self, done: impl Fn(&FakeAirtable) -> bool) {
        let mut answered = self.lock().answered.subscribe();
        while !done(self) {
            if answered.changed().await.is_err() {
                panic!("fake airtable: stopped before the condition held");
            }
        }
    }

    pub fn reset_stats(&self) {
        self.lock().stats = Stats::default();
    }

    /// Replaces the faults and reseeds the fault PRNG with `faults.seed`.
    pub fn set_faults(&self, faults: Faults) {
        let mut s = self.lock();
        s.fault_rng = Rng::new(faults.seed);
        s.config.faults = faults;
    }

    /// Changes the config of a running fake (token, limits, lockout, ...).
    /// Changing `faults` here does not reseed; use [`FakeAirtable::set_faults`].
    pub fn update_config(&self, f: impl FnOnce(&mut FakeConfig)) {
        f(&mut self.lock().config);
    }

    /// The token is revoked: every request carrying it gets 401 `UNAUTHORIZED`.
    pub fn revoke_token(&self) {
        self.lock().config.token = "patREVOKED".to_string();
    }

    /// The token's scopes from now on (`GET /v0/meta/whoami` lists them; a request needing
    /// one that is missing gets 403).
    pub fn set_scopes(&self, scopes: &[&str]) {
        self.lock().config.scopes = scopes.iter().map(|s| s.to_string()).collect();
    }

    /// Lifts every lockout and forgets the rate windows.
    pub fn clear_rate_limits(&self) {
        let mut s = self.lock();
        s.token_locked_until = None;
        s.token_window.clear();
        for b in &mut s.bases {
            b.locked_until = None;
            b.window.clear();
        }
    }

    /// Every offset handed out so far becomes invalid
    /// (422 `LIST_RECORDS_ITERATOR_NOT_AVAILABLE`).
    pub fn expire_offsets(&self) {
        self.lock().iterators.clear();
    }

    /// The token loses access to the base (id or name): 403
    /// `INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND`, and it leaves `GET /v0/meta/bases`.
    pub fn deny_base(&self, base: &str) {
        let mut s = self.lock();
        let bi = s.base_idx_any(base).expect("deny_base: unknown base");
        s.bases[bi].denied = true;
    }

    /// Undoes [`FakeAirtable::deny_base`].
    pub fn allow_base(&self, base: &str) {
        let mut s = self.lock();
        let bi = s.base_idx_any(base).expect("allow_base: unknown base");
        s.bases[bi].denied = false;
    }
}

impl Drop for FakeAirtable {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

// ---------------------------------------------------------------------------
// Connection plumbing: a listener whose connections can be cut from a handler
// ---------------------------------------------------------------------------

struct FakeListener(TcpListener);

#[derive(Clone, Debug)]
struct ConnMeta {
    peer: SocketAddr,
    kill: Arc<AtomicBool>,
}

impl Listener for FakeListener {
    type Io = KillableIo;
    type Addr = ConnMeta;

    async fn accept(&mut self) -> (KillableIo, ConnMeta) {
        loop {
            match self.0.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let kill = Arc::new(AtomicBool::new(false));
                    let io = KillableIo {
                        inner: stream,
                        kill: kill.clone(),
                    };
                    return (io, ConnMeta { peer, kill });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<ConnMeta> {
        Ok(ConnMeta {
            peer: self.0.local_addr()?,
            kill: Arc::default(),
        })
    }
}

impl Connected<IncomingStream<'_, FakeListener>> for ConnMeta {
    fn connect_info(stream: IncomingStream<'_, FakeListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP stream that, once `kill` is set, fails every I/O call; hyper then drops
/// it, and the zero linger turns the close into an RST.
struct KillableIo {
    inner: TcpStream,
    kill: Arc<AtomicBool>,
}

impl KillableIo {
    fn killed(&self) -> bool {
        if self.kill.load(Ordering::SeqCst) {
            let _ = self.inner.set_zero_linger();
            true
        } else {
            false
        }
    }
}

fn reset_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "fake airtable: injected reset",
    )
}

impl AsyncRead for KillableIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.killed() {
            return Poll::Ready(Err(reset_error()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.killed() {
            return Poll::Ready(Err(reset_error()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.killed() {
            return Poll::Ready(Err(reset_error()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.killed() {
            return Poll::Ready(Err(reset_error()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.killed() {
            return Poll::Ready(Err(reset_error()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------
// HTTP entry point
// ---------------------------------------------------------------------------

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum Outcome {
    Reply(u16, Value),
    Reset,
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    ConnectInfo(conn): ConnectInfo<ConnMeta>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let response = answer(&inner, &conn, method, uri, headers, body).await;
    lock(&inner).answered.send_modify(|n| *n += 1);
    response
}

async fn answer(
    inner: &Mutex<Inner>,
    conn: &ConnMeta,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let limit = lock(inner).config.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        lock(inner).stats.requests_total += 1;
        return json_response(413, &too_large_body());
    }
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            lock(inner).stats.requests_total += 1;
            return json_response(413, &too_large_body());
        }
    };
    let outcome = lock(inner).handle(&method, &uri, &headers, &bytes);
    match outcome {
        Outcome::Reply(status, body) => json_response(status, &body),
        Outcome::Reset => {
            conn.kill.store(true, Ordering::SeqCst);
            json_response(500, &json!({}))
        }
    }
}

// INVENTED: 413 body (the real one may come from a proxy).
fn too_large_body() -> Value {
    json!({"error": {"type": "REQUEST_TOO_LARGE", "message": "Request body is too large"}})
}

fn json_response(status: u16, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct ApiErr {
    status: u16,
    body: Value,
}

type Res<T> = Result<T, ApiErr>;
/// Validated cells of a write: (field index, value; `None` = empty).
type Cells = Vec<(usize, Option<Value>)>;
/// One element of a write's `records`: (`id`, `fields`).
type RecordInput = (Option<String>, Map<String, Value>);

const MSG_PARAM: &str = "Invalid request: parameter validation failed. Check your request data.";
const MSG_403: &str = "Invalid permissions, or the requested model was not found. Check that both your user and your token have the required permissions, and that the model names and/or ids are correct.";

fn api_err(status: u16, kind: &str, message: impl Into<String>) -> ApiErr {
    ApiErr {
        status,
        body: json!({"error": {"type": kind, "message": message.into()}}),
    }
}

/// 422 `INVALID_REQUEST_UNKNOWN`, the generic parameter-validation error.
fn bad_param(detail: impl std::fmt::Display) -> ApiErr {
    api_err(
        422,
        "INVALID_REQUEST_UNKNOWN",
        format!("{MSG_PARAM} ({detail})"),
    )
}

fn not_found_403() -> ApiErr {
    api_err(403, "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND", MSG_403)
}

fn unknown_field(name: &str) -> ApiErr {
    api_err(
        422,
        "UNKNOWN_FIELD_NAME",
        format!("Unknown field name: \"{name}\""),
    )
}

fn record_not_found() -> ApiErr {
    api_err(404, "MODEL_ID_NOT_FOUND", "Record not found")
}

fn rate_limited() -> ApiErr {
    api_err(
        429,
        "RATE_LIMIT_REACHED",
        "Rate limit exceeded. Please try again later",
    )
}

fn iterator_gone() -> ApiErr {
    api_err(
        422,
        "LIST_RECORDS_ITERATOR_NOT_AVAILABLE",
        "The list records iterator is not available. Restart pagination without an offset.",
    )
}

fn invalid_value(field: &Field) -> ApiErr {
    api_err(
        422,
        "INVALID_VALUE_FOR_COLUMN",
        format!("Field \"{}\" cannot accept the provided value", field.name),
    )
}

// ---------------------------------------------------------------------------
// PRNG and ids
// ---------------------------------------------------------------------------

/// splitmix64: tiny, seeded, good enough for ids and fault draws.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// `prefix` + 14 alphanumeric characters (17 in all for 3-letter prefixes).
    fn id(&mut self, prefix: &str) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut s = String::with_capacity(prefix.len() + 14);
        s.push_str(prefix);
        for _ in 0..14 {
            s.push(ALPHABET[(self.next_u64() % ALPHABET.len() as u64) as usize] as char);
        }
        s
    }
}

fn now_iso() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

// ---------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------

const TEXT_TYPES: &[&str] = &[
    "singleLineText",
    "email",
    "url",
    "multilineText",
    "phoneNumber",
    "richText",
];
const NUMBER_TYPES: &[&str] = &["number", "percent", "currency", "duration", "rating"];
/// Read-only field types: writes get 422 `INVALID_VALUE_FOR_COLUMN`, creation via the
/// API gets 422 `INVALID_FIELD_TYPE`. (button/aiText/externalSyncSource: INVENTED.)
const COMPUTED_TYPES: &[&str] = &[
    "formula",
    "createdTime",
    "autoNumber",
    "rollup",
    "count",
    "multipleLookupValues",
    "lastModifiedTime",
    "createdBy",
    "lastModifiedBy",
    "button",
    "aiText",
    "externalSyncSource",
];
const KNOWN_TYPES: &[&str] = &[
    "singleLineText",
    "email",
    "url",
    "multilineText",
    "number",
    "percent",
    "currency",
    "singleSelect",
    "multipleSelects",
    "singleCollaborator",
    "multipleCollaborators",
    "multipleRecordLinks",
    "date",
    "dateTime",
    "phoneNumber",
    "multipleAttachments",
    "checkbox",
    "formula",
    "createdTime",
    "rollup",
    "count",
    "multipleLookupValues",
    "autoNumber",
    "barcode",
    "rating",
    "richText",
    "duration",
    "lastModifiedTime",
    "button",
    "createdBy",
    "lastModifiedBy",
    "externalSyncSource",
    "aiText",
    "manualSort",
];
const SELECT_COLORS: &[&str] = &[
    "blueLight2",
    "cyanLight2",
    "tealLight2",
    "greenLight2",
    "yellowLight2",
    "orangeLight2",
    "redLight2",
    "pinkLight2",
    "purpleLight2",
    "grayLight2",
];

fn is_computed(t: &str) -> bool {
    COMPUTED_TYPES.contains(&t)
}

#[derive(Clone, Debug)]
struct Field {
    id: String,
    name: String,
    ftype: String,
    description: Option<String>,
    options: Option<Value>,
}

#[derive(Clone, Debug)]
struct View {
    id: String,
    name: String,
    view_type: String,
}

#[derive(Clone, Debug)]
struct Record {
    id: String,
    created: String,
    modified: String,
    autonumber: u64,
    /// field id → non-empty value
    cells: HashMap<String, Value>,
}

#[derive(Clone, Debug)]
struct Table {
    id: String,
    name: String,
    description: Option<String>,
    fields: Vec<Field>,
    views: Vec<View>,
    records: Vec<Record>,
    next_autonumber: u64,
}

impl Table {
    fn field_idx(&self, key: &str) -> Option<usize> {
        field_idx_in(&self.fields, key)
    }
    fn rec_idx(&self, id: &str) -> Option<usize> {
        self.records.iter().position(|r| r.id == id)
    }
}

fn field_idx_in(fields: &[Field], key: &str) -> Option<usize> {
    fields
        .iter()
        .position(|f| f.id == key)
        .or_else(|| fields.iter().position(|f| f.name == key))
}

struct Base {
    id: String,
    name: String,
    permission: String,
    denied: bool,
    tables: Vec<Table>,
    /// accepted requests in the last second (rate limiter)
    window: VecDeque<Instant>,
    /// all arrivals in the last second (stats)
    arrivals: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

impl Base {
    fn accessible(&self) -> bool {
        !self.denied && self.permission != "none"
    }
    fn table_idx(&self, key: &str) -> Option<usize> {
        self.tables
            .iter()
            .position(|t| t.id == key)
            .or_else(|| self.tables.iter().position(|t| t.name == key))
    }
}

struct Iter {
    base: String,
    table: String,
    ids: Vec<String>,
    created: Instant,
}

struct Inner {
    config: FakeConfig,
    fault_rng: Rng,
    id_rng: Rng,
    user: Value,
    user_id: String,
    bases: Vec<Base>,
    iterators: HashMap<String, Iter>,
    stats: Stats,
    /// Requests answered so far, for [`FakeAirtable::until`].
    answered: watch::Sender<u64>,
    token_window: VecDeque<Instant>,
    token_arrivals: VecDeque<Instant>,
    token_locked_until: Option<Instant>,
}

fn new_table(rng: &mut Rng, name: &str, description: Option<String>, fields: Vec<Field>) -> Table {
    Table {
        id: rng.id("tbl"),
        name: name.to_string(),
        description,
        fields,
        views: vec![View {
            id: rng.id("viw"),
            name: "Grid view".to_string(),
            view_type: "grid".to_string(),
        }],
        records: Vec::new(),
        next_autonumber: 1,
    }
}

// ---------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Whoami,
    ListBases,
    Schema,
    CreateTable,
    UpdateTable,
    CreateField,
    UpdateField,
    List,
    ListPost,
    Create,
    UpdateMany { replace: bool },
    DeleteMany,
    Get,
    UpdateOne { replace: bool },
    DeleteOne,
}

impl Kind {
    fn is_records(self) -> bool {
        !matches!(
            self,
            Kind::Whoami
                | Kind::ListBases
                | Kind::Schema
                | Kind::CreateTable
                | Kind::UpdateTable
                | Kind::CreateField
                | Kind::UpdateField
        )
    }
}

struct Route {
    kind: Kind,
    base: Option<String>,
    table: String,
    item: String,
}

fn pct_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn parse_route(method: &Method, path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/v0/")?;
    let segs: Vec<String> = rest
        .split('/')
        .map(pct_decode)
        .collect::<Option<Vec<_>>>()?;
    if segs.iter().any(|s| s.is_empty()) {
        return None;
    }
    let s: Vec<&str> = segs.iter().map(|x| x.as_str()).collect();
    let m = method.as_str();
    let route = |kind: Kind, base: Option<&str>, table: &str, item: &str| Route {
        kind,
        base: base.map(str::to_string),
        table: table.to_string(),
        item: item.to_string(),
    };
    if s[0] == "meta" {
        return match (m, &s[1..]) {
            ("GET", ["whoami"]) => Some(route(Kind::Whoami, None, "", "")),
            ("GET", ["bases"]) => Some(route(Kind::ListBases, None, "", "")),
            ("GET", ["bases", b, "tables"]) => Some(route(Kind::Schema, Some(b), "", "")),
            ("POST", ["bases", b, "tables"]) => Some(route(Kind::CreateTable, Some(b), "", "")),
            ("PATCH", ["bases", b, "tables", t]) => Some(route(Kind::UpdateTable, Some(b), t, "")),
            ("POST", ["bases", b, "tables", t, "fields"]) => {
                Some(route(Kind::CreateField, Some(b), t, ""))
            }
            ("PATCH", ["bases", b, "tables", t, "fields", f]) => {
                Some(route(Kind::UpdateField, Some(b), t, f))
            }
            _ => None,
        };
    }
    let kind = match (m, s.len()) {
        ("GET", 2) => Kind::List,
        ("POST", 2) => Kind::Create,
        ("PATCH", 2) => Kind::UpdateMany { replace: false },
        ("PUT", 2) => Kind::UpdateMany { replace: true },
        ("DELETE", 2) => Kind::DeleteMany,
        ("POST", 3) if s[2] == "listRecords" => Kind::ListPost,
        ("GET", 3) => Kind::Get,
        ("PATCH", 3) => Kind::UpdateOne { replace: false },
        ("PUT", 3) => Kind::UpdateOne { replace: true },
        ("DELETE", 3) => Kind::DeleteOne,
        _ => return None,
    };
    Some(route(
        kind,
        Some(s[0]),
        s[1],
        s.get(2).copied().unwrap_or(""),
    ))
}

// ---------------------------------------------------------------------------
// Request handling
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Fault {
    TooMany,
    E500,
    E503,
    ResetBefore,
    ResetAfter,
}

fn prune(window: &mut VecDeque<Instant>, now: Instant) {
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        window.pop_front();
    }
}

impl Inner {
    fn new(config: FakeConfig) -> Self {
        let mut id_rng = Rng::new(0xA1B2_C3D4_E5F6_0718);
        let user_id = id_rng.id("usr");
        Inner {
            fault_rng: Rng::new(config.faults.seed),
            user: json!({"id": user_id, "email": "fake.user@example.com", "name": "Fake User"}),
            user_id,
            id_rng,
            config,
            bases: Vec::new(),
            iterators: HashMap::new(),
            stats: Stats::default(),
            answered: watch::Sender::new(0),
            token_window: VecDeque::new(),
            token_arrivals: VecDeque::new(),
            token_locked_until: None,
        }
    }

    fn base_idx_any(&self, key: &str) -> Option<usize> {
        self.bases
            .iter()
            .position(|b| b.id == key)
            .or_else(|| self.bases.iter().position(|b| b.name == key))
    }

    fn table_any(&self, base: &str, table: &str) -> Option<(usize, usize)> {
        let bi = self.base_idx_any(base)?;
        let ti = self.bases[bi].table_idx(table)?;
        Some((bi, ti))
    }

    fn table_idx(&self, bi: usize, key: &str) -> Res<usize> {
        self.bases[bi].table_idx(key).ok_or_else(not_found_403)
    }

    fn handle(&mut self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Outcome {
        let now = Instant::now();
        self.stats.requests_total += 1;
        let Some(route) = parse_route(method, uri.path()) else {
            return Outcome::Reply(404, json!({"error": "NOT_FOUND"}));
        };
        let url_len = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
        if url_len >= self.config.max_url_len {
            // INVENTED: status and type for an over-long URL.
            let e = api_err(
                414,
                "URL_TOO_LONG",
                "The URL must be shorter than 16000 characters",
            );
            return Outcome::Reply(e.status, e.body);
        }
        if let Err(e) = self.check_auth(headers) {
            return Outcome::Reply(e.status, e.body);
        }
        let base_idx = route
            .base
            .as_deref()
            .and_then(|b| self.bases.iter().position(|x| x.id == b));
        self.note_arrival(base_idx, now);
        if let Some(e) = self.rate_limit(base_idx, now) {
            return Outcome::Reply(e.status, e.body);
        }
        if route.base.is_some() && base_idx.is_none_or(|i| !self.bases[i].accessible()) {
            let e = not_found_403();
            return Outcome::Reply(e.status, e.body);
        }
        let mut reset_after = false;
        if route.kind.is_records() {
            match self.draw_fault() {
                Some(Fault::TooMany) => {
                    self.stats.injected_429 += 1;
                    let e = rate_limited();
                    return Outcome::Reply(e.status, e.body);
                }
                Some(Fault::E500) => {
                    self.stats.injected_500 += 1;
                    let e = api_err(
                        500,
                        "SERVER_ERROR",
                        "Internal server error (injected fault)",
                    );
                    return Outcome::Reply(e.status, e.body);
                }
                Some(Fault::E503) => {
                    self.stats.injected_503 += 1;
                    let e = api_err(503, "SERVER_ERROR", "Service unavailable (injected fault)");
                    return Outcome::Reply(e.status, e.body);
                }
                Some(Fault::ResetBefore) => {
                    self.stats.injected_reset_before += 1;
                    return Outcome::Reset;
                }
                Some(Fault::ResetAfter) => {
                    self.stats.injected_reset_after += 1;
                    reset_after = true;
                }
                None => {}
            }
        }
        let query = uri.query().unwrap_or("");
        let result = self.dispatch(&route, base_idx, query, body, now);
        if reset_after {
            return Outcome::Reset;
        }
        match result {
            Ok((status, v)) => Outcome::Reply(status, v),
            Err(e) => Outcome::Reply(e.status, e.body),
        }
    }

    fn check_auth(&self, headers: &HeaderMap) -> Res<()> {
        let required = || api_err(401, "AUTHENTICATION_REQUIRED", "Authentication required");
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(required)?
            .to_str()
            .map_err(|_| required())?;
        let (scheme, token) = value.split_once(' ').ok_or_else(required)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(required());
        }
        if token != self.config.token {
            return Err(api_err(401, "UNAUTHORIZED", "Invalid authentication token"));
        }
        Ok(())
    }

    fn note_arrival(&mut self, base_idx: Option<usize>, now: Instant) {
        prune(&mut self.token_arrivals, now);
        self.token_arrivals.push_back(now);
        self.stats.max_requests_1s_token = self
            .stats
            .max_requests_1s_token
            .max(self.token_arrivals.len());
        if let Some(i) = base_idx {
            let b = &mut self.bases[i];
            prune(&mut b.arrivals, now);
            b.arrivals.push_back(now);
            let n = b.arrivals.len();
            *self
                .stats
                .requests_per_base
                .entry(b.id.clone())
                .or_default() += 1;
            let m = self
                .stats
                .max_requests_1s_per_base
                .entry(b.id.clone())
                .or_default();
            *m = (*m).max(n);
        }
    }

    /// Rolling 1 s windows; a request over the limit gets 429 and locks the base
    /// (or token) out for `lockout`; requests during a lockout get 429 and do not
    /// extend it. Refused requests do not enter the windows.
    fn rate_limit(&mut self, base_idx: Option<usize>, now: Instant) -> Option<ApiErr> {
        let locked = |until: Option<Instant>| until.is_some_and(|t| now < t);
        if locked(self.token_locked_until)
            || base_idx.is_some_and(|i| locked(self.bases[i].locked_until))
        {
            self.stats.rate_limited_429 += 1;
            return Some(rate_limited());
        }
        let lockout = self.config.lockout;
        prune(&mut self.token_window, now);
        let per_token = self.config.per_token_rps as usize;
        if per_token > 0 && self.token_window.len() >= per_token {
            self.token_locked_until = Some(now + lockout);
            self.stats.lockouts_started += 1;
            self.stats.rate_limited_429 += 1;
            return Some(rate_limited());
        }
        let per_base = self.config.per_base_rps as usize;
        if let Some(i) = base_idx {
            let b = &mut self.bases[i];
            prune(&mut b.window, now);
            if per_base > 0 && b.window.len() >= per_base {
                b.locked_until = Some(now + lockout);
                self.stats.lockouts_started += 1;
                self.stats.rate_limited_429 += 1;
                return Some(rate_limited());
            }
            b.window.push_back(now);
        }
        self.token_window.push_back(now);
        None
    }

    fn draw_fault(&mut self) -> Option<Fault> {
        let f = &self.config.faults;
        let table = [
            (f.rate_429, Fault::TooMany),
            (f.rate_500, Fault::E500),
            (f.rate_503, Fault::E503),
            (f.rate_reset_before, Fault::ResetBefore),
            (f.rate_reset_after, Fault::ResetAfter),
        ];
        if table.iter().all(|(r, _)| *r <= 0.0) {
            return None;
        }
        let u = self.fault_rng.unit();
        let mut acc = 0.0;
        for (rate, kind) in table {
            acc += rate.max(0.0);
            if u < acc {
                return Some(kind);
            }
        }
        None
    }

    fn need_scope(&self, scope: &str) -> Res<()> {
        if self.config.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(not_found_403())
        }
    }

    fn need_record_write(&self, bi: usize, ti: usize, verb: &str) -> Res<()> {
        let b = &self.bases[bi];
        if matches!(b.permission.as_str(), "edit" | "create" | "owner") {
            return Ok(());
        }
        let t = &b.tables[ti];
        Err(api_err(
            403,
            "INVALID_PERMISSIONS",
            format!(
                "You are not permitted to {verb} records in table {} ({})",
                t.name, t.id
            ),
        ))
    }

    fn need_schema_write(&self, bi: usize) -> Res<()> {
        if matches!(self.bases[bi].permission.as_str(), "create" | "owner") {
            Ok(())
        } else {
            // INVENTED: message.
            Err(api_err(
                403,
                "INVALID_PERMISSIONS",
                "You are not permitted to perform this operation",
            ))
        }
    }

    fn dispatch(
        &mut self,
        route: &Route,
        base_idx: Option<usize>,
        query: &str,
        body: &[u8],
        now: Instant,
    ) -> Res<(u16, Value)> {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        if route.kind == Kind::Whoami {
            return Ok((
                200,
                json!({"id": self.user_id, "scopes": self.config.scopes}),
            ));
        }
        if route.kind == Kind::ListBases {
            return self.list_bases(&pairs);
        }
        let bi = base_idx.ok_or_else(not_found_403)?;
        let (t, item) = (route.table.as_str(), route.item.as_str());
        match route.kind {
            Kind::Schema => self.schema(bi, &pairs),
            Kind::CreateTable => self.create_table(bi, body),
            Kind::UpdateTable => self.update_table(bi, t, body),
            Kind::CreateField => self.create_field(bi, t, body),
            Kind::UpdateField => self.update_field(bi, t, item, body),
            Kind::List => {
                self.need_scope("data.records:read")?;
                let ti = self.table_idx(bi, t)?;
                let p = list_params_from_query(&pairs)?;
                self.list(bi, ti, p, now)
            }
            Kind::ListPost => {
                self.need_scope("data.records:read")?;
                let ti = self.table_idx(bi, t)?;
                let p = list_params_from_body(body, &pairs)?;
                self.list(bi, ti, p, now)
            }
            Kind::Get => self.get_one(bi, t, item, &pairs),
            Kind::Create => self.create(bi, t, body),
            Kind::UpdateMany { replace } => self.update_many(bi, t, body, replace),
            Kind::UpdateOne { replace } => self.update_one(bi, t, item, body, replace),
            Kind::DeleteMany => self.delete_many(bi, t, &pairs),
            Kind::DeleteOne => self.delete_one(bi, t, item),
            Kind::Whoami | Kind::ListBases => unreachable!(),
        }
    }

    // ----- meta -------------------------------------------------------------

    fn list_bases(&self, pairs: &[(String, String)]) -> Res<(u16, Value)> {
        self.need_scope("schema.bases:read")?;
        let mut offset = None;
        for (k, v) in pairs {
            match k.as_str() {
                "offset" => offset = Some(v.clone()),
                _ => return Err(bad_param(format!("unknown parameter \"{k}\""))),
            }
        }
        let visible: Vec<&Base> = self.bases.iter().filter(|b| b.accessible()).collect();
        let start = match offset {
            None => 0,
            Some(o) => visible
                .iter()
                .position(|b| b.id == o)
                // INVENTED: type for a bad bases offset.
                .ok_or_else(|| {
                    api_err(
                        422,
                        "INVALID_OFFSET_VALUE",
                        format!("The offset \"{o}\" is invalid"),
                    )
                })?,
        };
        let page = self.config.bases_page_size.max(1);
        let end = (start + page).min(visible.len());
        let bases: Vec<Value> = visible[start..end]
            .iter()
            .map(|b| json!({"id": b.id, "name": b.name, "permissionLevel": b.permission}))
            .collect();
        let mut out = json!({"bases": bases});
        if end < visible.len() {
            out["offset"] = json!(visible[end].id);
        }
        Ok((200, out))
    }

    fn schema(&self, bi: usize, pairs: &[(String, String)]) -> Res<(u16, Value)> {
        self.need_scope("schema.bases:read")?;
        let mut visible = false;
        for (k, v) in pairs {
            match (k.as_str(), v.as_str()) {
                ("include[]", "visibleFieldIds") => visible = true,
                _ => return Err(bad_param(format!("unknown parameter \"{k}\""))),
            }
        }
        let tables: Vec<Value> = self.bases[bi]
            .tables
            .iter()
            .map(|t| table_json(t, visible))
            .collect();
        Ok((200, json!({"tables": tables})))
    }

    fn create_table(&mut self, bi: usize, body: &[u8]) -> Res<(u16, Value)> {
        self.need_scope("schema.bases:write")?;
        self.need_schema_write(bi)?;
        let obj = parse_obj(body)?;
        check_keys(&obj, &["name", "description", "fields"])?;
        let name = req_str(&obj, "name")?.trim().to_string();
        if name.is_empty() {
            return Err(bad_param("name must not be empty"));
        }
        if self.bases[bi]
            .tables
            .iter()
            .any(|t| t.name.eq_ignore_ascii_case(&name))
        {
            // INVENTED: type and message.
            return Err(api_err(
                422,
                "DUPLICATE_TABLE_NAME",
                format!("A table named \"{name}\" already exists in this base"),
            ));
        }
        let description = opt_description(&obj)?;
        let specs = match obj.get("fields") {
            Some(Value::Array(a)) if !a.is_empty() => a,
            _ => return Err(bad_param("fields must be a non-empty array")),
        };
        let mut fields: Vec<Field> = Vec::new();
        for spec in specs {
            let f = build_field(spec, &mut self.id_rng, true)?;
            if fields.iter().any(|x| x.name.eq_ignore_ascii_case(&f.name)) {
                return Err(duplicate_field(&f.name));
            }
            fields.push(f);
        }
        let t = new_table(&mut self.id_rng, &name, description, fields);
        let out = table_json(&t, false);
        self.bases[bi].tables.push(t);
        Ok((200, out))
    }

    fn update_table(&mut self, bi: usize, tkey: &str, body: &[u8]) -> Res<(u16, Value)> {
        self.need_scope("schema.bases:write")?;
        let ti = self.table_idx(bi, tkey)?;
        self.need_schema_write(bi)?;
        let obj = parse_obj(body)?;
        check_keys(&obj, &["name", "description"])?;
        let name = match obj.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(_) => return Err(bad_param("name must be a non-empty string")),
        };
        let description = opt_description(&obj)?;
        let tables = &mut self.bases[bi].tables;
        if let Some(n) = &name
            && tables
                .iter()
                .enumerate()
                .any(|(i, t)| i != ti && t.name.eq_ignore_ascii_case(n))
        {
            return Err(api_err(
                422,
                "DUPLICATE_TABLE_NAME",
                format!("A table named \"{n}\" already exists in this base"),
            ));
        }
        let t = &mut tables[ti];
        if let Some(n) = name {
            t.name = n;
        }
        if obj.contains_key("description") {
            t.description = description;
        }
        Ok((200, table_json(t, false)))
    }

    fn create_field(&mut self, bi: usize, tkey: &str, body: &[u8]) -> Res<(u16, Value)> {
        self.need_scope("schema.bases:write")?;
        let ti = self.table_idx(bi, tkey)?;
        self.need_schema_write(bi)?;
        let spec: Value = parse_json(body)?;
        let f = build_field(&spec, &mut self.id_rng, true)?;
        let t = &mut self.bases[bi].tables[ti];
        if t.fields
            .iter()
            .any(|x| x.name.eq_ignore_ascii_case(&f.name))
        {
            return Err(duplicate_field(&f.name));
        }
        let out = field_json(&f);
        t.fields.push(f);
        Ok((200, out))
    }

    fn update_field(
        &mut self,
        bi: usize,
        tkey: &str,
        fkey: &str,
        body: &[u8],
    ) -> Res<(u16, Value)> {
        self.need_scope("schema.bases:write")?;
        let ti = self.table_idx(bi, tkey)?;
        self.need_schema_write(bi)?;
        let obj = parse_obj(body)?;
        if obj.contains_key("type") || obj.contains_key("options") {
            return Err(bad_param(
                "only name and description of a field can be changed",
            ));
        }
        check_keys(&obj, &["name", "description"])?;
        let t = &mut self.bases[bi].tables[ti];
        let fi = t.field_idx(fkey).ok_or_else(not_found_403)?;
        let name = match obj.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(_) => {
                return Err(api_err(
                    422,
                    "DUPLICATE_OR_EMPTY_FIELD_NAME",
                    "Field name must not be empty",
                ));
            }
        };
        if let Some(n) = &name
            && t.fields
                .iter()
                .enumerate()
                .any(|(i, f)| i != fi && f.name.eq_ignore_ascii_case(n))
        {
            return Err(duplicate_field(n));
        }
        let description = opt_description(&obj)?;
        let f = &mut t.fields[fi];
        if let Some(n) = name {
            f.name = n;
        }
        if obj.contains_key("description") {
            f.description = description;
        }
        Ok((200, field_json(f)))
    }

    // ----- records ----------------------------------------------------------

    fn list(&mut self, bi: usize, ti: usize, p: ListParams, now: Instant) -> Res<(u16, Value)> {
        let max = self.config.page_size_max;
        let page_size = p.page_size.unwrap_or(max);
        if page_size == 0 || page_size > max {
            return Err(bad_param(format!("pageSize must be between 1 and {max}")));
        }
        if p.max_records == Some(0) {
            return Err(bad_param("maxRecords must be at least 1"));
        }
        let string_format = match p.cell_format.as_deref() {
            None | Some("json") => false,
            Some("string") => {
                if p.time_zone.is_none() || p.user_locale.is_none() {
                    return Err(bad_param(
                        "cellFormat \"string\" requires the timeZone and userLocale parameters",
                    ));
                }
                true
            }
            Some(other) => return Err(bad_param(format!("invalid cellFormat \"{other}\""))),
        };
        let mut comment_count = false;
        for m in &p.record_metadata {
            if m == "commentCount" {
                comment_count = true;
            } else {
                return Err(bad_param(format!("invalid recordMetadata \"{m}\"")));
            }
        }
        let base_id = self.bases[bi].id.clone();
        let table = &self.bases[bi].tables[ti];
        let only = match &p.fields {
            None => None,
            Some(keys) => Some(
                keys.iter()
                    .map(|k| table.field_idx(k).ok_or_else(|| unknown_field(k)))
                    .collect::<Res<Vec<usize>>>()?,
            ),
        };
        if let Some(v) = &p.view
            && !table.views.iter().any(|x| &x.id == v || &x.name == v)
        {
            // INVENTED (from memory of real responses): type and message.
            return Err(api_err(
                422,
                "VIEW_NAME_NOT_FOUND",
                format!("Could not find view \"{v}\""),
            ));
        }
        let (iter_id, ids, pos) = match &p.offset {
            Some(offset) => {
                let (itr, cursor) = offset.split_once('/').ok_or_else(iterator_gone)?;
                let it = self.iterators.get(itr).ok_or_else(iterator_gone)?;
                let expired = self
                    .config
                    .offset_ttl
                    .is_some_and(|ttl| now.duration_since(it.created) >= ttl);
                if expired || it.base != base_id || it.table != table.id {
                    return Err(iterator_gone());
                }
                let pos = it
                    .ids
                    .iter()
                    .position(|x| x == cursor)
                    .ok_or_else(iterator_gone)?;
                (itr.to_string(), it.ids.clone(), pos)
            }
            None => {
                let filter = match p.formula.as_deref().map(str::trim) {
                    None | Some("") => None,
                    Some(src) => Some(parse_formula(src, &table.fields).map_err(formula_error)?),
                };
                let sort = p
                    .sort
                    .iter()
                    .map(|(k, desc)| {
                        table
                            .field_idx(k)
                            .map(|i| (i, *desc))
                            .ok_or_else(|| unknown_field(k))
                    })
                    .collect::<Res<Vec<_>>>()?;
                let mut kept: Vec<usize> = (0..table.records.len())
                    .filter(|&ri| match &filter {
                        None => true,
                        Some(e) => {
                            let c = Ctx {
                                table,
                                rec: &table.records[ri],
                                user: &self.user,
                                depth: 0,
                            };
                            truthy(&eval(e, &c))
                        }
                    })
                    .collect();
                if !sort.is_empty() {
                    let keys: Vec<Vec<SortKey>> = (0..table.records.len())
                        .map(|ri| {
                            sort.iter()
                                .map(|(fi, _)| {
                                    sort_key(cell_value(
                                        table,
                                        &table.records[ri],
                                        *fi,
                                        &self.user,
                                        0,
                                    ))
                                })
                                .collect()
                        })
                        .collect();
                    kept.sort_by(|&a, &b| {
                        for (n, (_, desc)) in sort.iter().enumerate() {
                            let o = keys[a][n].cmp_key(&keys[b][n]);
                            let o = if *desc { o.reverse() } else { o };
                            if o != std::cmp::Ordering::Equal {
                                return o;
                            }
                        }
                        std::cmp::Ordering::Equal
                    });
                }
                if let Some(m) = p.max_records {
                    kept.truncate(m);
                }
                let ids: Vec<String> = kept
                    .iter()
                    .map(|&ri| table.records[ri].id.clone())
                    .collect();
                (self.id_rng.id("itr"), ids, 0)
            }
        };
        let table = &self.bases[bi].tables[ti];
        let end = (pos + page_size).min(ids.len());
        let index: HashMap<&str, usize> = table
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.as_str(), i))
            .collect();
        let opts = OutOpts {
            by_id: p.by_id,
            only,
            string_format,
            comment_count,
        };
        let records: Vec<Value> = ids[pos..end]
            .iter()
            .filter_map(|id| index.get(id.as_str()))
            .map(|&ri| record_json(table, &table.records[ri], &self.user, &opts))
            .collect();
        let mut out = json!({"records": records});
        if end < ids.len() {
            out["offset"] = json!(format!("{iter_id}/{}", ids[end]));
            let table_id = table.id.clone();
            self.iterators.entry(iter_id).or_insert_with(|| Iter {
                base: base_id,
                table: table_id,
                ids,
                created: now,
            });
        }
        Ok((200, out))
    }

    fn get_one(
        &self,
        bi: usize,
        tkey: &str,
        rec: &str,
        pairs: &[(String, String)],
    ) -> Res<(u16, Value)> {
        self.need_scope("data.records:read")?;
        let ti = self.table_idx(bi, tkey)?;
        let mut opts = OutOpts::default();
        let (mut tz, mut locale, mut format) = (false, false, None);
        for (k, v) in pairs {
            match k.as_str() {
                "returnFieldsByFieldId" => opts.by_id = parse_bool_param(k, v)?,
                "cellFormat" => format = Some(v.clone()),
                "timeZone" => tz = true,
                "userLocale" => locale = true,
                _ => return Err(bad_param(format!("unknown parameter \"{k}\""))),
            }
        }
        match format.as_deref() {
            None | Some("json") => {}
            Some("string") if tz && locale => opts.string_format = true,
            Some("string") => {
                return Err(bad_param(
                    "cellFormat \"string\" requires the timeZone and userLocale parameters",
                ));
            }
            Some(o) => return Err(bad_param(format!("invalid cellFormat \"{o}\""))),
        }
        let t = &self.bases[bi].tables[ti];
        let ri = t.rec_idx(rec).ok_or_else(record_not_found)?;
        Ok((200, record_json(t, &t.records[ri], &self.user, &opts)))
    }

    fn create(&mut self, bi: usize, tkey: &str, body: &[u8]) -> Res<(u16, Value)> {
        self.need_scope("data.records:write")?;
        let ti = self.table_idx(bi, tkey)?;
        let obj = parse_obj(body)?;
        check_keys(
            &obj,
            &["records", "fields", "typecast", "returnFieldsByFieldId"],
        )?;
        let typecast = opt_bool(&obj, "typecast")?;
        let by_id = opt_bool(&obj, "returnFieldsByFieldId")?;
        self.need_record_write(bi, ti, "create")?;
        let (single, inputs) = match (obj.get("records"), obj.get("fields")) {
            (Some(r), None) => (false, record_inputs(r, false)?),
            (None, Some(f)) => (true, vec![(None, as_obj(f, "fields")?)]),
            _ => return Err(bad_param("provide either \"records\" or \"fields\"")),
        };
        let Inner {
            bases,
            id_rng,
            user,
            ..
        } = self;
        let table = &mut bases[bi].tables[ti];
        let mut fields = table.fields.clone();
        let mut all = Vec::new();
        for (_, input) in &inputs {
            all.push(build_cells(&mut fields, input, typecast, id_rng)?);
        }
        table.fields = fields;
        let ids: Vec<String> = all
            .into_iter()
            .map(|c| insert_record(table, c, id_rng))
            .collect();
        let opts = OutOpts {
            by_id,
            ..OutOpts::default()
        };
        let recs = records_json(table, &ids, user, &opts);
        if single {
            Ok((200, recs.into_iter().next().unwrap_or(Value::Null)))
        } else {
            Ok((200, json!({"records": recs})))
        }
    }

    fn update_many(
        &mut self,
        bi: usize,
        tkey: &str,
        body: &[u8],
        replace: bool,
    ) -> Res<(u16, Value)> {
        self.need_scope("data.records:write")?;
        let ti = self.table_idx(bi, tkey)?;
        let obj = parse_obj(body)?;
        check_keys(
            &obj,
            &[
                "records",
                "typecast",
                "returnFieldsByFieldId",
                "performUpsert",
            ],
        )?;
        let typecast = opt_bool(&obj, "typecast")?;
        let by_id = opt_bool(&obj, "returnFieldsByFieldId")?;
        let inputs = record_inputs(
            obj.get("records")
                .ok_or_else(|| bad_param("records is required"))?,
            true,
        )?;
        let merge_on: Option<Vec<usize>> = match obj.get("performUpsert") {
            None | Some(Value::Null) => None,
            Some(Value::Object(u)) => {
                check_keys(u, &["fieldsToMergeOn"])?;
                let names = match u.get("fieldsToMergeOn") {
                    Some(Value::Array(a)) if (1..=3).contains(&a.len()) => a,
                    _ => {
                        return Err(bad_param(
                            "performUpsert.fieldsToMergeOn must be an array of 1 to 3 field names",
                        ));
                    }
                };
                let table = &self.bases[bi].tables[ti];
                let mut idxs = Vec::new();
                for n in names {
                    let n = n
                        .as_str()
                        .ok_or_else(|| bad_param("fieldsToMergeOn must contain strings"))?;
                    let fi = table.field_idx(n).ok_or_else(|| unknown_field(n))?;
                    if is_computed(&table.fields[fi].ftype) {
                        return Err(bad_param(format!(
                            "field \"{n}\" is computed and cannot be merged on"
                        )));
                    }
                    idxs.push(fi);
                }
                Some(idxs)
            }
            Some(_) => return Err(bad_param("performUpsert must be an object")),
        };
        self.need_record_write(
            bi,
            ti,
            if merge_on.is_some() {
                "create"
            } else {
                "update"
            },
        )?;
        let Inner {
            bases,
            id_rng,
            user,
            ..
        } = self;
        let table = &mut bases[bi].tables[ti];
        let mut fields = table.fields.clone();
        // Some(record index) = update, None = create.
        let mut plans: Vec<(Option<usize>, Cells)> = Vec::new();
        for (i, (id, input)) in inputs.iter().enumerate() {
            let cells = build_cells(&mut fields, input, typecast, id_rng)?;
            let target = if let Some(id) = id {
                Some(table.rec_idx(id).ok_or_else(record_not_found)?)
            } else if let Some(keys) = &merge_on {
                let mut want = Vec::new();
                for &k in keys {
                    let Some((_, v)) = cells.iter().find(|(fi, _)| *fi == k) else {
                        return Err(bad_param(format!(
                            "records[{i}].fields must include a value for \"{}\" (fieldsToMergeOn)",
                            fields[k].name
                        )));
                    };
                    want.push((fields[k].id.clone(), v.clone()));
                }
                let matches: Vec<usize> = table
                    .records
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| want.iter().all(|(fid, v)| r.cells.get(fid) == v.as_ref()))
                    .map(|(ri, _)| ri)
                    .collect();
                match matches.len() {
                    0 => None,
                    1 => Some(matches[0]),
                    n => {
                        // INVENTED: type and message (facts: "request fails").
                        return Err(api_err(
                            422,
                            "INVALID_REQUEST_UNKNOWN",
                            format!(
                                "Cannot upsert records[{i}]: {n} records match the fieldsToMergeOn values; at most one may match"
                            ),
                        ));
                    }
                }
            } else {
                return Err(bad_param(format!("records[{i}].id is required")));
            };
            plans.push((target, cells));
        }
        table.fields = fields;
        let (mut ids, mut created, mut updated) = (Vec::new(), Vec::new(), Vec::new());
        for (target, cells) in plans {
            match target {
                Some(ri) => {
                    apply_update(table, ri, cells, replace);
                    let id = table.records[ri].id.clone();
                    updated.push(id.clone());
                    ids.push(id);
                }
                None => {
                    let id = insert_record(table, cells, id_rng);
                    created.push(id.clone());
                    ids.push(id);
                }
            }
        }
        let opts = OutOpts {
            by_id,
            ..OutOpts::default()
        };
        let mut out = json!({"records": records_json(table, &ids, user, &opts)});
        if merge_on.is_some() {
            out["createdRecords"] = json!(created);
            out["updatedRecords"] = json!(updated);
        }
        Ok((200, out))
    }

    fn update_one(
        &mut self,
        bi: usize,
        tkey: &str,
        rec: &str,
        body: &[u8],
        replace: bool,
    ) -> Res<(u16, Value)> {
        self.need_scope("data.records:write")?;
        let ti = self.table_idx(bi, tkey)?;
        let obj = parse_obj(body)?;
        check_keys(&obj, &["fields", "typecast", "returnFieldsByFieldId"])?;
        let typecast = opt_bool(&obj, "typecast")?;
        let by_id = opt_bool(&obj, "returnFieldsByFieldId")?;
        let input = as_obj(
            obj.get("fields")
                .ok_or_else(|| bad_param("fields is required"))?,
            "fields",
        )?;
        self.need_record_write(bi, ti, "update")?;
        let Inner {
            bases,
            id_rng,
            user,
            ..
        } = self;
        let table = &mut bases[bi].tables[ti];
        let ri = table.rec_idx(rec).ok_or_else(record_not_found)?;
        let mut fields = table.fields.clone();
        let cells = build_cells(&mut fields, &input, typecast, id_rng)?;
        table.fields = fields;
        apply_update(table, ri, cells, replace);
        let opts = OutOpts {
            by_id,
            ..OutOpts::default()
        };
        Ok((200, record_json(table, &table.records[ri], user, &opts)))
    }

    fn delete_many(
        &mut self,
        bi: usize,
        tkey: &str,
        pairs: &[(String, String)],
    ) -> Res<(u16, Value)> {
        self.need_scope("data.records:write")?;
        let ti = self.table_idx(bi, tkey)?;
        let mut ids: Vec<String> = Vec::new();
        for (k, v) in pairs {
            if k == "records[]" || indexed_key(k, "records").is_some() {
                ids.push(v.clone());
            } else {
                return Err(bad_param(format!("unknown parameter \"{k}\"")));
            }
        }
        if ids.is_empty() {
            return Err(bad_param("records[] is required"));
        }
        if ids.len() > 10 {
            return Err(bad_param(format!(
                "records must be at most 10 records, got {}",
                ids.len()
            )));
        }
        self.need_record_write(bi, ti, "delete")?;
        let table = &mut self.bases[bi].tables[ti];
        for id in &ids {
            table.rec_idx(id).ok_or_else(record_not_found)?;
        }
        table.records.retain(|r| !ids.contains(&r.id));
        let out: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "deleted": true}))
            .collect();
        Ok((200, json!({"records": out})))
    }

    fn delete_one(&mut self, bi: usize, tkey: &str, rec: &str) -> Res<(u16, Value)> {
        self.need_scope("data.records:write")?;
        let ti = self.table_idx(bi, tkey)?;
        self.need_record_write(bi, ti, "delete")?;
        let table = &mut self.bases[bi].tables[ti];
        let ri = table.rec_idx(rec).ok_or_else(record_not_found)?;
        table.records.remove(ri);
        Ok((200, json!({"id": rec, "deleted": true})))
    }
}

fn duplicate_field(name: &str) -> ApiErr {
    api_err(
        422,
        "DUPLICATE_OR_EMPTY_FIELD_NAME",
        format!("A field named \"{name}\" already exists, or the name is empty"),
    )
}

fn insert_record(table: &mut Table, cells: Cells, rng: &mut Rng) -> String {
    let now = now_iso();
    let mut map = HashMap::new();
    for (fi, v) in cells {
        if let Some(v) = v {
            map.insert(table.fields[fi].id.clone(), v);
        }
    }
    let id = rng.id("rec");
    table.records.push(Record {
        id: id.clone(),
        created: now.clone(),
        modified: now,
        autonumber: table.next_autonumber,
        cells: map,
    });
    table.next_autonumber += 1;
    id
}

fn apply_update(table: &mut Table, ri: usize, cells: Cells, replace: bool) {
    let rec = &mut table.records[ri];
    if replace {
        rec.cells.clear();
    }
    for (fi, v) in cells {
        let fid = table.fields[fi].id.clone();
        match v {
            Some(v) => {
                rec.cells.insert(fid, v);
            }
            None => {
                rec.cells.remove(&fid);
            }
        }
    }
    rec.modified = now_iso();
}

// ---------------------------------------------------------------------------
// Body / parameter helpers
// ---------------------------------------------------------------------------

fn parse_json(body: &[u8]) -> Res<Value> {
    // INVENTED: 400 type/message for an unparseable body.
    serde_json::from_slice(body).map_err(|e| {
        api_err(
            400,
            "INVALID_REQUEST_BODY",
            format!("Could not parse request body: {e}"),
        )
    })
}

fn parse_obj(body: &[u8]) -> Res<Map<String, Value>> {
    match parse_json(body)? {
        Value::Object(m) => Ok(m),
        _ => Err(bad_param("the request body must be a JSON object")),
    }
}

fn check_keys(obj: &Map<String, Value>, allowed: &[&str]) -> Res<()> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad_param(format!("unknown key \"{k}\""))),
        None => Ok(()),
    }
}

fn opt_bool(obj: &Map<String, Value>, key: &str) -> Res<bool> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad_param(format!("{key} must be a boolean"))),
    }
}

fn req_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Res<&'a str> {
    obj.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| bad_param(format!("{key} must be a string")))
}

fn opt_description(obj: &Map<String, Value>) -> Res<Option<String>> {
    match obj.get("description") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= 20_000 => {
            Ok(Some(s.clone()).filter(|s| !s.is_empty()))
        }
        Some(Value::String(_)) => Err(bad_param("description must be at most 20000 characters")),
        Some(_) => Err(bad_param("description must be a string")),
    }
}

fn as_obj(v: &Value, what: &str) -> Res<Map<String, Value>> {
    v.as_object()
        .cloned()
        .ok_or_else(|| bad_param(format!("{what} must be an object")))
}

/// `records` array of a write: 1..=10 objects `{"fields": {...}}` (+ `"id"` when
/// `with_id`).
fn record_inputs(v: &Value, with_id: bool) -> Res<Vec<RecordInput>> {
    let arr = v
        .as_array()
        .ok_or_else(|| bad_param("records must be an array"))?;
    if arr.is_empty() {
        return Err(bad_param("records must contain at least 1 record"));
    }
    if arr.len() > 10 {
        return Err(bad_param(format!(
            "records must be at most 10 records, got {}",
            arr.len()
        )));
    }
    let allowed: &[&str] = if with_id {
        &["id", "fields"]
    } else {
        &["fields"]
    };
    let mut out = Vec::new();
    for (i, r) in arr.iter().enumerate() {
        let o = r
            .as_object()
            .ok_or_else(|| bad_param(format!("records[{i}] must be an object")))?;
        check_keys(o, allowed)?;
        let id = match o.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad_param(format!("records[{i}].id must be a string"))),
        };
        let fields = as_obj(
            o.get("fields")
                .ok_or_else(|| bad_param(format!("records[{i}].fields is required")))?,
            "fields",
        )?;
        out.push((id, fields));
    }
    Ok(out)
}

fn parse_bool_param(k: &str, v: &str) -> Res<bool> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(bad_param(format!("{k} must be true or false"))),
    }
}

fn parse_usize_param(k: &str, v: &str) -> Res<usize> {
    v.parse::<usize>()
        .map_err(|_| bad_param(format!("{k} must be a non-negative integer")))
}

/// `name[N]` → Some(N).
fn indexed_key(k: &str, name: &str) -> Option<usize> {
    k.strip_prefix(name)?
        .strip_prefix('[')?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// `sort[N][part]` → Some((N, part)).
fn sort_key_param(k: &str) -> Option<(usize, &str)> {
    let rest = k.strip_prefix("sort[")?;
    let (n, rest) = rest.split_once(']')?;
    let part = rest.strip_prefix('[')?.strip_suffix(']')?;
    Some((n.parse().ok()?, part))
}

#[derive(Default, Debug)]
struct ListParams {
    page_size: Option<usize>,
    max_records: Option<usize>,
    offset: Option<String>,
    view: Option<String>,
    formula: Option<String>,
    /// (field name or id, descending)
    sort: Vec<(String, bool)>,
    fields: Option<Vec<String>>,
    cell_format: Option<String>,
    time_zone: Option<String>,
    user_locale: Option<String>,
    by_id: bool,
    record_metadata: Vec<String>,
}

fn parse_direction(d: &str) -> Res<bool> {
    match d {
        "asc" => Ok(false),
        "desc" => Ok(true),
        _ => Err(bad_param(format!(
            "sort direction must be \"asc\" or \"desc\", got \"{d}\""
        ))),
    }
}

fn list_params_from_query(pairs: &[(String, String)]) -> Res<ListParams> {
    let mut p = ListParams::default();
    let mut sorts: BTreeMap<usize, (Option<String>, Option<String>)> = BTreeMap::new();
    for (k, v) in pairs {
        match k.as_str() {
            "pageSize" => p.page_size = Some(parse_usize_param(k, v)?),
            "maxRecords" => p.max_records = Some(parse_usize_param(k, v)?),
            "offset" => p.offset = Some(v.clone()),
            "view" => p.view = Some(v.clone()),
            "filterByFormula" => p.formula = Some(v.clone()),
            "cellFormat" => p.cell_format = Some(v.clone()),
            "timeZone" => p.time_zone = Some(v.clone()),
            "userLocale" => p.user_locale = Some(v.clone()),
            "returnFieldsByFieldId" => p.by_id = parse_bool_param(k, v)?,
            "fields[]" => p.fields.get_or_insert_with(Vec::new).push(v.clone()),
            "recordMetadata[]" => p.record_metadata.push(v.clone()),
            _ => {
                if let Some((n, part)) = sort_key_param(k) {
                    let e = sorts.entry(n).or_default();
                    match part {
                        "field" => e.0 = Some(v.clone()),
                        "direction" => e.1 = Some(v.clone()),
                        _ => return Err(bad_param(format!("unknown parameter \"{k}\""))),
                    }
                } else if indexed_key(k, "fields").is_some() {
                    p.fields.get_or_insert_with(Vec::new).push(v.clone());
                } else {
                    // Strict: the real API rejects unknown parameters too.
                    return Err(bad_param(format!("unknown parameter \"{k}\"")));
                }
            }
        }
    }
    for (n, (field, dir)) in sorts {
        let field = field.ok_or_else(|| bad_param(format!("sort[{n}][field] is required")))?;
        let desc = parse_direction(dir.as_deref().unwrap_or("asc"))?;
        p.sort.push((field, desc));
    }
    Ok(p)
}

fn list_params_from_body(body: &[u8], pairs: &[(String, String)]) -> Res<ListParams> {
    let obj = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        parse_obj(body)?
    };
    check_keys(
        &obj,
        &[
            "pageSize",
            "maxRecords",
            "offset",
            "view",
            "filterByFormula",
            "sort",
            "fields",
            "cellFormat",
            "timeZone",
            "userLocale",
            "returnFieldsByFieldId",
            "recordMetadata",
        ],
    )?;
    let mut p = ListParams::default();
    let num = |k: &str| -> Res<Option<usize>> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| bad_param(format!("{k} must be a non-negative integer"))),
        }
    };
    let string = |k: &str| -> Res<Option<String>> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad_param(format!("{k} must be a string"))),
        }
    };
    let strings = |k: &str| -> Res<Option<Vec<String>>> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad_param(format!("{k} must be an array of strings")))
                })
                .collect::<Res<Vec<_>>>()
                .map(Some),
            Some(_) => Err(bad_param(format!("{k} must be an array of strings"))),
        }
    };
    p.page_size = num("pageSize")?;
    p.max_records = num("maxRecords")?;
    p.offset = string("offset")?;
    p.view = string("view")?;
    p.formula = string("filterByFormula")?;
    p.cell_format = string("cellFormat")?;
    p.time_zone = string("timeZone")?;
    p.user_locale = string("userLocale")?;
    p.fields = strings("fields")?;
    p.record_metadata = strings("recordMetadata")?.unwrap_or_default();
    p.by_id = opt_bool(&obj, "returnFieldsByFieldId")?;
    match obj.get("sort") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            for (i, s) in a.iter().enumerate() {
                let o = s
                    .as_object()
                    .ok_or_else(|| bad_param(format!("sort[{i}] must be an object")))?;
                check_keys(o, &["field", "direction"])?;
                let field = req_str(o, "field")?.to_string();
                let desc = match o.get("direction") {
                    None | Some(Value::Null) => false,
                    Some(Value::String(d)) => parse_direction(d)?,
                    Some(_) => return Err(bad_param("sort direction must be a string")),
                };
                p.sort.push((field, desc));
            }
        }
        Some(_) => return Err(bad_param("sort must be an array")),
    }
    // pyairtable keeps timeZone/userLocale in the query string.
    for (k, v) in pairs {
        match k.as_str() {
            "timeZone" => p.time_zone = Some(v.clone()),
            "userLocale" => p.user_locale = Some(v.clone()),
            _ => return Err(bad_param(format!("unknown parameter \"{k}\""))),
        }
    }
    Ok(p)
}

// ---------------------------------------------------------------------------
// Schema JSON and field definitions
// ---------------------------------------------------------------------------

fn field_json(f: &Field) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(f.id));
    m.insert("name".into(), json!(f.name));
    m.insert("type".into(), json!(f.ftype));
    if let Some(d) = &f.description {
        m.insert("description".into(), json!(d));
    }
    if let Some(o) = &f.options {
        m.insert("options".into(), o.clone());
    }
    Value::Object(m)
}

fn table_json(t: &Table, visible_field_ids: bool) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(t.id));
    m.insert("name".into(), json!(t.name));
    if let Some(d) = &t.description {
        m.insert("description".into(), json!(d));
    }
    m.insert("primaryFieldId".into(), json!(t.fields[0].id));
    m.insert(
        "fields".into(),
        Value::Array(t.fields.iter().map(field_json).collect()),
    );
    let views: Vec<Value> = t
        .views
        .iter()
        .map(|v| {
            let mut o = json!({"id": v.id, "name": v.name, "type": v.view_type});
            if visible_field_ids && v.view_type == "grid" {
                o["visibleFieldIds"] =
                    json!(t.fields.iter().map(|f| f.id.clone()).collect::<Vec<_>>());
            }
            o
        })
        .collect();
    m.insert("views".into(), Value::Array(views));
    Value::Object(m)
}

/// Field from `{"name","type","description"?,"options"?}`. `from_api`: computed
/// types are refused (422 `INVALID_FIELD_TYPE`, INVENTED type).
fn build_field(spec: &Value, rng: &mut Rng, from_api: bool) -> Res<Field> {
    let obj = spec
        .as_object()
        .ok_or_else(|| bad_param("a field must be an object"))?;
    check_keys(obj, &["name", "type", "description", "options"])?;
    let name = match obj.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            return Err(api_err(
                422,
                "DUPLICATE_OR_EMPTY_FIELD_NAME",
                "Field name must not be empty",
            ));
        }
    };
    let ftype = req_str(obj, "type")?.to_string();
    if !KNOWN_TYPES.contains(&ftype.as_str()) {
        return Err(api_err(
            422,
            "INVALID_FIELD_TYPE",
            format!("Unknown field type \"{ftype}\""),
        ));
    }
    if from_api && is_computed(&ftype) {
        return Err(api_err(
            422,
            "INVALID_FIELD_TYPE",
            format!("Creating fields of type \"{ftype}\" is not supported via the API"),
        ));
    }
    let description = opt_description(obj)?;
    let mut options = match obj.get("options") {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => Some(Value::Object(o.clone())),
        Some(_) => return Err(bad_param("options must be an object")),
    };
    if ftype == "singleSelect" || ftype == "multipleSelects" {
        // INVENTED leniency: the real API requires options.choices; here it defaults to [].
        let mut choices = Vec::new();
        let given = options
            .as_ref()
            .and_then(|o| o.get("choices"))
            .cloned()
            .unwrap_or(json!([]));
        let given = given
            .as_array()
            .ok_or_else(|| bad_param("options.choices must be an array"))?
            .clone();
        for (i, c) in given.iter().enumerate() {
            let (cname, color) = match c {
                Value::String(s) => (s.clone(), None),
                Value::Object(o) => (
                    o.get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad_param("every choice needs a name"))?
                        .to_string(),
                    o.get("color").and_then(Value::as_str).map(str::to_string),
                ),
                _ => return Err(bad_param("options.choices must contain objects")),
            };
            let color = color.unwrap_or_else(|| SELECT_COLORS[i % SELECT_COLORS.len()].to_string());
            choices.push(json!({"id": rng.id("sel"), "name": cname, "color": color}));
        }
        options = Some(json!({"choices": choices}));
    }
    Ok(Field {
        id: rng.id("fld"),
        name,
        ftype,
        description,
        options,
    })
}

// ---------------------------------------------------------------------------
// Cell values: validation on write, rendering on read
// ---------------------------------------------------------------------------

/// Validates and normalizes every cell of a write. Returns (field index, value);
/// `None` = empty (the cell is cleared / omitted).
fn build_cells(
    fields: &mut [Field],
    input: &Map<String, Value>,
    typecast: bool,
    rng: &mut Rng,
) -> Res<Cells> {
    let mut out = Vec::new();
    for (k, v) in input {
        let fi = field_idx_in(fields, k).ok_or_else(|| unknown_field(k))?;
        let v = normalize_cell(&mut fields[fi], v, typecast, rng)?;
        out.push((fi, v));
    }
    Ok(out)
}

fn num_json(n: f64) -> Value {
    if n.is_finite() && n.fract() == 0.0 && n.abs() < 9.0e15 {
        json!(n as i64)
    } else {
        json!(n)
    }
}

fn ensure_choice(field: &mut Field, name: &str, typecast: bool, rng: &mut Rng) -> Res<()> {
    let options = field.options.get_or_insert_with(|| json!({"choices": []}));
    if !options.get("choices").is_some_and(Value::is_array) {
        options["choices"] = json!([]);
    }
    let choices = options["choices"]
        .as_array_mut()
        .expect("choices is an array");
    if choices
        .iter()
        .any(|c| c.get("name").and_then(Value::as_str) == Some(name))
    {
        return Ok(());
    }
    if !typecast {
        return Err(api_err(
            422,
            "INVALID_MULTIPLE_CHOICE_OPTIONS",
            format!("Insufficient permissions to create new select option \"\"{name}\"\""),
        ));
    }
    let color = SELECT_COLORS[choices.len() % SELECT_COLORS.len()];
    choices.push(json!({"id": rng.id("sel"), "name": name, "color": color}));
    Ok(())
}

fn scalar_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn normalize_cell(
    field: &mut Field,
    v: &Value,
    typecast: bool,
    rng: &mut Rng,
) -> Res<Option<Value>> {
    let t = field.ftype.clone();
    if is_computed(&t) {
        return Err(api_err(
            422,
            "INVALID_VALUE_FOR_COLUMN",
            format!(
                "Field \"{}\" cannot accept a value because the field is computed",
                field.name
            ),
        ));
    }
    if v.is_null() {
        return Ok(None);
    }
    let non_empty = |s: String| {
        if s.is_empty() {
            None
        } else {
            Some(Value::String(s))
        }
    };
    if TEXT_TYPES.contains(&t.as_str()) {
        return match v {
            Value::String(s) => Ok(non_empty(s.clone())),
            Value::Number(_) | Value::Bool(_) if typecast => {
                Ok(scalar_to_string(v).and_then(non_empty))
            }
            _ => Err(invalid_value(field)),
        };
    }
    if NUMBER_TYPES.contains(&t.as_str()) {
        return match v {
            Value::Number(n) => Ok(Some(num_json(n.as_f64().unwrap_or(0.0)))),
            Value::String(s) if typecast => {
                let s = s.trim().replace(',', "");
                if s.is_empty() {
                    return Ok(None);
                }
                s.parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .map(|n| Some(num_json(n)))
                    .ok_or_else(|| invalid_value(field))
            }
            _ => Err(invalid_value(field)),
        };
    }
    match t.as_str() {
        "checkbox" => {
            let b = match v {
                Value::Bool(b) => *b,
                Value::String(s) if typecast => match s.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "checked" | "on" | "x" => true,
                    "" | "false" | "0" | "no" | "off" => false,
                    _ => return Err(invalid_value(field)),
                },
                Value::Number(n) if typecast => n.as_f64().unwrap_or(0.0) != 0.0,
                _ => return Err(invalid_value(field)),
            };
            Ok(if b { Some(Value::Bool(true)) } else { None })
        }
        "singleSelect" => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) if typecast => {
                    scalar_to_string(v).unwrap_or_default()
                }
                _ => return Err(invalid_value(field)),
            };
            if s.is_empty() {
                return Ok(None);
            }
            ensure_choice(field, &s, typecast, rng)?;
            Ok(Some(Value::String(s)))
        }
        "multipleSelects" => {
            let items: Vec<String> = match v {
                Value::Array(a) => a
                    .iter()
                    .map(|x| match x {
                        Value::String(s) => Ok(s.clone()),
                        Value::Number(_) | Value::Bool(_) if typecast => {
                            Ok(scalar_to_string(x).unwrap_or_default())
                        }
                        _ => Err(invalid_value(field)),
                    })
                    .collect::<Res<Vec<_>>>()?,
                Value::String(s) if typecast => s
                    .split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect(),
                _ => return Err(invalid_value(field)),
            };
            let mut uniq: Vec<String> = Vec::new();
            for s in items {
                if s.is_empty() {
                    return Err(invalid_value(field));
                }
                ensure_choice(field, &s, typecast, rng)?;
                if !uniq.contains(&s) {
                    uniq.push(s);
                }
            }
            Ok(if uniq.is_empty() {
                None
            } else {
                Some(json!(uniq))
            })
        }
        "multipleRecordLinks" => {
            let ids: Vec<Value> = match v {
                Value::Array(a) => a.clone(),
                Value::String(_) if typecast => vec![v.clone()],
                _ => return Err(invalid_value(field)),
            };
            for id in &ids {
                let ok = id.as_str().is_some_and(|s| {
                    s.len() == 17
                        && s.starts_with("rec")
                        && s.chars().all(|c| c.is_ascii_alphanumeric())
                });
                if !ok {
                    return Err(invalid_value(field));
                }
            }
            Ok(if ids.is_empty() {
                None
            } else {
                Some(Value::Array(ids))
            })
        }
        "date" => {
            let Value::String(s) = v else {
                return Err(invalid_value(field));
            };
            if s.is_empty() {
                return Ok(None);
            }
            if chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() {
                return Ok(Some(Value::String(s.clone())));
            }
            match chrono::DateTime::parse_from_rfc3339(s) {
                Ok(dt) if typecast => Ok(Some(json!(dt.format("%Y-%m-%d").to_string()))),
                _ => Err(invalid_value(field)),
            }
        }
        "dateTime" => {
            let Value::String(s) = v else {
                return Err(invalid_value(field));
            };
            if s.is_empty() {
                return Ok(None);
            }
            if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
                let utc = dt.with_timezone(&chrono::Utc);
                return Ok(Some(json!(
                    utc.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
                )));
            }
            if chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() {
                return Ok(Some(json!(format!("{s}T00:00:00.000Z"))));
            }
            Err(invalid_value(field))
        }
        "multipleAttachments" => {
            let items: Vec<Value> = match v {
                Value::Array(a) => a.clone(),
                Value::String(s) if typecast => vec![json!({"url": s})],
                _ => return Err(invalid_value(field)),
            };
            let mut out = Vec::new();
            for it in items {
                let o = it.as_object().ok_or_else(|| invalid_value(field))?;
                let url = o.get("url").and_then(Value::as_str);
                let id = o.get("id").and_then(Value::as_str);
                if url.is_none() && id.is_none() {
                    return Err(invalid_value(field));
                }
                let url = url
                    .unwrap_or("https://example.invalid/attachment")
                    .to_string();
                let filename = o
                    .get("filename")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| url.rsplit('/').next().unwrap_or("file").to_string());
                let id = id.map(str::to_string).unwrap_or_else(|| rng.id("att"));
                out.push(json!({"id": id, "url": url, "filename": filename}));
            }
            Ok(if out.is_empty() {
                None
            } else {
                Some(Value::Array(out))
            })
        }
        "singleCollaborator" => match v {
            Value::Object(o) if o.contains_key("id") || o.contains_key("email") => {
                Ok(Some(v.clone()))
            }
            _ => Err(invalid_value(field)),
        },
        "multipleCollaborators" => match v {
            Value::Array(a) => {
                if a.iter().all(|x| {
                    x.as_object()
                        .is_some_and(|o| o.contains_key("id") || o.contains_key("email"))
                }) {
                    Ok(if a.is_empty() { None } else { Some(v.clone()) })
                } else {
                    Err(invalid_value(field))
                }
            }
            _ => Err(invalid_value(field)),
        },
        "barcode" => match v {
            Value::Object(o) if o.get("text").is_some_and(Value::is_string) => Ok(Some(v.clone())),
            Value::String(s) if typecast => Ok(non_empty(s.clone()).map(|s| json!({"text": s}))),
            _ => Err(invalid_value(field)),
        },
        _ => Ok(if is_empty_value(v) {
            None
        } else {
            Some(v.clone())
        }),
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The value of a cell as the API returns it (computed cells included).
fn cell_value(table: &Table, rec: &Record, fi: usize, user: &Value, depth: u8) -> Option<Value> {
    let f = &table.fields[fi];
    match f.ftype.as_str() {
        "createdTime" => Some(json!(rec.created)),
        "lastModifiedTime" => Some(json!(rec.modified)),
        "autoNumber" => Some(json!(rec.autonumber)),
        "createdBy" | "lastModifiedBy" => Some(user.clone()),
        "formula" => {
            if depth > 8 {
                return None;
            }
            let src = f.options.as_ref()?.get("formula")?.as_str()?;
            let e = parse_formula(src, &table.fields).ok()?;
            let c = Ctx {
                table,
                rec,
                user,
                depth: depth + 1,
            };
            v_to_json(&eval(&e, &c))
        }
        "count" => {
            let key = f.options.as_ref()?.get("recordLinkFieldId")?.as_str()?;
            let li = table.field_idx(key)?;
            let n = rec
                .cells
                .get(&table.fields[li].id)
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            Some(json!(n))
        }
        t if is_computed(t) => None,
        _ => rec.cells.get(&f.id).cloned(),
    }
}

#[derive(Default)]
struct OutOpts {
    by_id: bool,
    only: Option<Vec<usize>>,
    string_format: bool,
    comment_count: bool,
}

fn record_json(t: &Table, r: &Record, user: &Value, o: &OutOpts) -> Value {
    let mut fields = Map::new();
    for (i, f) in t.fields.iter().enumerate() {
        if o.only.as_ref().is_some_and(|only| !only.contains(&i)) {
            continue;
        }
        let Some(v) = cell_value(t, r, i, user, 0) else {
            continue;
        };
        if is_empty_value(&v) {
            continue;
        }
        let v = if o.string_format {
            json!(to_str(&json_to_v(&v)))
        } else {
            v
        };
        let key = if o.by_id {
            f.id.clone()
        } else {
            f.name.clone()
        };
        fields.insert(key, v);
    }
    let mut out = json!({"id": r.id, "createdTime": r.created, "fields": fields});
    if o.comment_count {
        out["commentCount"] = json!(0);
    }
    out
}

fn records_json(t: &Table, ids: &[String], user: &Value, o: &OutOpts) -> Vec<Value> {
    ids.iter()
        .filter_map(|id| t.rec_idx(id))
        .map(|ri| record_json(t, &t.records[ri], user, o))
        .collect()
}

// ---------------------------------------------------------------------------
// Sorting
// ---------------------------------------------------------------------------

/// INVENTED details: blanks sort first ascending; text compares case-insensitively;
/// numbers before text.
#[derive(Debug)]
enum SortKey {
    Blank,
    Num(f64),
    Text(String),
}

impl SortKey {
    fn rank(&self) -> u8 {
        match self {
            SortKey::Blank => 0,
            SortKey::Num(_) => 1,
            SortKey::Text(_) => 2,
        }
    }
    fn cmp_key(&self, other: &SortKey) -> std::cmp::Ordering {
        match (self, other) {
            (SortKey::Num(a), SortKey::Num(b)) => a.total_cmp(b),
            (SortKey::Text(a), SortKey::Text(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

fn sort_key(v: Option<Value>) -> SortKey {
    match v {
        None => SortKey::Blank,
        Some(v) if is_empty_value(&v) => SortKey::Blank,
        Some(Value::Number(n)) => SortKey::Num(n.as_f64().unwrap_or(0.0)),
        Some(Value::Bool(b)) => SortKey::Num(if b { 1.0 } else { 0.0 }),
        Some(v) => SortKey::Text(to_str(&json_to_v(&v)).to_lowercase()),
    }
}

// ---------------------------------------------------------------------------
// filterByFormula: tokenizer, parser, evaluator
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum V {
    Num(f64),
    Str(String),
    Bool(bool),
    Arr(Vec<V>),
    Blank,
    Err,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Field(String),
    Ident(String),
    LParen,
    RParen,
    Comma,
    Op(&'static str),
}

#[derive(Clone, Debug)]
enum Expr {
    Num(f64),
    Str(String),
    Bool(bool),
    Field(usize),
    Neg(Box<Expr>),
    Bin(&'static str, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
}

enum FormulaError {
    Syntax(String),
    UnknownField(String),
}

fn formula_error(e: FormulaError) -> ApiErr {
    let detail = match e {
        FormulaError::Syntax(d) => {
            format!("Invalid formula. Please check your formula text. ({d})")
        }
        FormulaError::UnknownField(n) => format!("Unknown field names: {n}"),
    };
    api_err(
        422,
        "INVALID_FILTER_BY_FORMULA",
        format!("The formula for filtering records is invalid: {detail}"),
    )
}

/// (name, min args, max args)
const FUNCTIONS: &[(&str, usize, usize)] = &[
    ("AND", 1, usize::MAX),
    ("OR", 1, usize::MAX),
    ("NOT", 1, 1),
    ("IF", 2, 3),
    ("FIND", 2, 3),
    ("SEARCH", 2, 3),
    ("LOWER", 1, 1),
    ("UPPER", 1, 1),
    ("LEN", 1, 1),
    ("TRIM", 1, 1),
    ("ARRAYJOIN", 1, 2),
    ("CONCATENATE", 1, usize::MAX),
    ("BLANK", 0, 0),
    ("RECORD_ID", 0, 0),
    ("TRUE", 0, 0),
    ("FALSE", 0, 0),
];

fn tokenize(src: &str) -> Result<Vec<Tok>, FormulaError> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let syntax = FormulaError::Syntax;
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        match ch {
            _ if ch.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '{' => {
                let end = c[i + 1..]
                    .iter()
                    .position(|&x| x == '}')
                    .ok_or_else(|| syntax("unterminated field reference".into()))?;
                out.push(Tok::Field(c[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
            }
            '\'' | '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match c.get(i) {
                        None => return Err(syntax("unterminated string".into())),
                        Some('\\') => {
                            let e = c
                                .get(i + 1)
                                .ok_or_else(|| syntax("unterminated string".into()))?;
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                other => *other,
                            });
                            i += 2;
                        }
                        Some(&q) if q == ch => {
                            i += 1;
                            break;
                        }
                        Some(&x) => {
                            s.push(x);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(s));
            }
            '0'..='9' | '.' => {
                let start = i;
                while i < c.len() && (c[i].is_ascii_digit() || c[i] == '.') {
                    i += 1;
                }
                let text: String = c[start..i].iter().collect();
                let n = text
                    .parse::<f64>()
                    .map_err(|_| syntax(format!("bad number \"{text}\"")))?;
                out.push(Tok::Num(n));
            }
            '!' if next == Some('=') => {
                out.push(Tok::Op("!="));
                i += 2;
            }
            '<' if next == Some('=') => {
                out.push(Tok::Op("<="));
                i += 2;
            }
            '>' if next == Some('=') => {
                out.push(Tok::Op(">="));
                i += 2;
            }
            '<' | '>' | '=' | '&' | '+' | '-' | '*' | '/' => {
                out.push(Tok::Op(match ch {
                    '<' => "<",
                    '>' => ">",
                    '=' => "=",
                    '&' => "&",
                    '+' => "+",
                    '-' => "-",
                    '*' => "*",
                    _ => "/",
                }));
                i += 1;
            }
            _ if ch.is_alphabetic() || ch == '_' => {
                let start = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                out.push(Tok::Ident(c[start..i].iter().collect()));
            }
            _ => return Err(syntax(format!("unexpected character '{ch}'"))),
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    fields: &'a [Field],
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn bump(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn peek_op(&self, ops: &[&'static str]) -> Option<&'static str> {
        match self.peek() {
            Some(Tok::Op(o)) if ops.contains(o) => Some(o),
            _ => None,
        }
    }
    fn binary(
        &mut self,
        ops: &[&'static str],
        next: fn(&mut Self) -> Result<Expr, FormulaError>,
    ) -> Result<Expr, FormulaError> {
        let mut left = next(self)?;
        while let Some(op) = self.peek_op(ops) {
            self.pos += 1;
            let right = next(self)?;
            left = Expr::Bin(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn expr(&mut self) -> Result<Expr, FormulaError> {
        self.binary(&["=", "!=", "<", ">", "<=", ">="], Self::concat)
    }
    fn concat(&mut self) -> Result<Expr, FormulaError> {
        self.binary(&["&"], Self::additive)
    }
    fn additive(&mut self) -> Result<Expr, FormulaError> {
        self.binary(&["+", "-"], Self::multiplicative)
    }
    fn multiplicative(&mut self) -> Result<Expr, FormulaError> {
        self.binary(&["*", "/"], Self::unary)
    }
    fn unary(&mut self) -> Result<Expr, FormulaError> {
        if self.peek_op(&["-"]).is_some() {
            self.pos += 1;
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.primary()
    }
    fn field(&self, name: &str) -> Result<Expr, FormulaError> {
        field_idx_in(self.fields, name)
            .map(Expr::Field)
            .ok_or_else(|| FormulaError::UnknownField(name.to_string()))
    }
    fn primary(&mut self) -> Result<Expr, FormulaError> {
        match self.bump() {
            Some(Tok::Num(n)) => Ok(Expr::Num(n)),
            Some(Tok::Str(s)) => Ok(Expr::Str(s)),
            Some(Tok::Field(name)) => self.field(&name),
            Some(Tok::LParen) => {
                let e = self.expr()?;
                match self.bump() {
                    Some(Tok::RParen) => Ok(e),
                    _ => Err(FormulaError::Syntax("missing ')'".into())),
                }
            }
            Some(Tok::Ident(name)) => {
                if self.peek() != Some(&Tok::LParen) {
                    return match name.to_ascii_uppercase().as_str() {
                        "TRUE" => Ok(Expr::Bool(true)),
                        "FALSE" => Ok(Expr::Bool(false)),
                        _ => self.field(&name),
                    };
                }
                self.pos += 1;
                let upper = name.to_ascii_uppercase();
                let Some(&(_, min, max)) = FUNCTIONS.iter().find(|(n, _, _)| *n == upper) else {
                    return Err(FormulaError::Syntax(format!("unknown function {name}")));
                };
                let mut args = Vec::new();
                if self.peek() == Some(&Tok::RParen) {
                    self.pos += 1;
                } else {
                    loop {
                        args.push(self.expr()?);
                        match self.bump() {
                            Some(Tok::Comma) => continue,
                            Some(Tok::RParen) => break,
                            _ => {
                                return Err(FormulaError::Syntax(format!(
                                    "expected ',' or ')' in {upper}()"
                                )));
                            }
                        }
                    }
                }
                if args.len() < min || args.len() > max {
                    return Err(FormulaError::Syntax(format!(
                        "wrong number of arguments to {upper}()"
                    )));
                }
                Ok(Expr::Call(upper, args))
            }
            Some(t) => Err(FormulaError::Syntax(format!("unexpected {t:?}"))),
            None => Err(FormulaError::Syntax("unexpected end of formula".into())),
        }
    }
}

fn parse_formula(src: &str, fields: &[Field]) -> Result<Expr, FormulaError> {
    let toks = tokenize(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        fields,
    };
    let e = p.expr()?;
    if p.pos < p.toks.len() {
        return Err(FormulaError::Syntax(format!(
            "unexpected {:?}",
            p.toks[p.pos]
        )));
    }
    Ok(e)
}

struct Ctx<'a> {
    table: &'a Table,
    rec: &'a Record,
    user: &'a Value,
    depth: u8,
}

fn fmt_num(n: f64) -> String {
    if n.is_finite() && n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// Arrays join with ", " (how Airtable shows a multi-value cell as text).
fn to_str(v: &V) -> String {
    match v {
        V::Num(n) => fmt_num(*n),
        V::Str(s) => s.clone(),
        V::Bool(b) => if *b { "1" } else { "0" }.to_string(),
        V::Arr(items) => items.iter().map(to_str).collect::<Vec<_>>().join(", "),
        V::Blank => String::new(),
        V::Err => "#ERROR!".to_string(),
    }
}

fn to_num(v: &V) -> Option<f64> {
    match v {
        V::Num(n) => Some(*n),
        V::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        V::Blank => Some(0.0),
        V::Str(s) if s.trim().is_empty() => Some(0.0),
        V::Str(s) => s.trim().parse().ok(),
        V::Arr(a) if a.len() == 1 => to_num(&a[0]),
        _ => None,
    }
}

fn truthy(v: &V) -> bool {
    match v {
        V::Num(n) => *n != 0.0 && !n.is_nan(),
        V::Str(s) => !s.is_empty(),
        V::Bool(b) => *b,
        V::Arr(a) => !a.is_empty(),
        V::Blank | V::Err => false,
    }
}

fn json_to_v(v: &Value) -> V {
    match v {
        Value::Null => V::Blank,
        Value::Bool(b) => V::Bool(*b),
        Value::Number(n) => V::Num(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => V::Str(s.clone()),
        Value::Array(a) => V::Arr(a.iter().map(json_to_v).collect()),
        Value::Object(o) => ["filename", "name", "email", "text", "id", "url"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str))
            .map_or(V::Blank, |s| V::Str(s.to_string())),
    }
}

fn v_to_json(v: &V) -> Option<Value> {
    match v {
        V::Num(n) if n.is_finite() => Some(num_json(*n)),
        V::Num(_) => None,
        V::Str(s) if !s.is_empty() => Some(json!(s)),
        V::Str(_) => None,
        V::Bool(b) => Some(json!(if *b { 1 } else { 0 })),
        V::Arr(a) if !a.is_empty() => Some(Value::Array(a.iter().filter_map(v_to_json).collect())),
        V::Arr(_) | V::Blank | V::Err => None,
    }
}

fn numericish(v: &V) -> bool {
    matches!(v, V::Num(_) | V::Bool(_) | V::Blank)
}

fn values_equal(a: &V, b: &V) -> bool {
    if numericish(a) && numericish(b) {
        return to_num(a) == to_num(b);
    }
    match (a, b) {
        (V::Num(n), V::Str(s)) | (V::Str(s), V::Num(n)) => match s.trim().parse::<f64>() {
            Ok(x) => x == *n,
            Err(_) => fmt_num(*n) == *s,
        },
        _ => to_str(a) == to_str(b),
    }
}

fn compare(a: &V, b: &V) -> std::cmp::Ordering {
    match (to_num(a), to_num(b)) {
        (Some(x), Some(y)) if !(matches!(a, V::Str(_)) && matches!(b, V::Str(_))) => {
            x.total_cmp(&y)
        }
        _ => to_str(a).cmp(&to_str(b)),
    }
}

fn find_pos(needle: &str, hay: &str, start: Option<f64>) -> usize {
    let h: Vec<char> = hay.chars().collect();
    let n: Vec<char> = needle.chars().collect();
    let from = start.map_or(0, |s| if s >= 1.0 { s as usize - 1 } else { 0 });
    if from > h.len() {
        return 0;
    }
    if n.is_empty() {
        return from + 1;
    }
    (from..h.len())
        .find(|&i| h[i..].starts_with(&n))
        .map_or(0, |i| i + 1)
}

fn eval(e: &Expr, c: &Ctx) -> V {
    match e {
        Expr::Num(n) => V::Num(*n),
        Expr::Str(s) => V::Str(s.clone()),
        Expr::Bool(b) => V::Bool(*b),
        Expr::Field(i) => {
            if c.depth > 8 {
                return V::Err;
            }
            match cell_value(c.table, c.rec, *i, c.user, c.depth + 1) {
                None => V::Blank,
                Some(v) => json_to_v(&v),
            }
        }
        Expr::Neg(x) => match eval(x, c) {
            V::Err => V::Err,
            v => to_num(&v).map_or(V::Err, |n| V::Num(-n)),
        },
        Expr::Bin(op, a, b) => {
            let (a, b) = (eval(a, c), eval(b, c));
            if a == V::Err || b == V::Err {
                return V::Err;
            }
            match *op {
                "&" => V::Str(to_str(&a) + &to_str(&b)),
                "=" => V::Bool(values_equal(&a, &b)),
                "!=" => V::Bool(!values_equal(&a, &b)),
                "<" => V::Bool(compare(&a, &b).is_lt()),
                ">" => V::Bool(compare(&a, &b).is_gt()),
                "<=" => V::Bool(compare(&a, &b).is_le()),
                ">=" => V::Bool(compare(&a, &b).is_ge()),
                _ => {
                    let (Some(x), Some(y)) = (to_num(&a), to_num(&b)) else {
                        return V::Err;
                    };
                    match *op {
                        "+" => V::Num(x + y),
                        "-" => V::Num(x - y),
                        "*" => V::Num(x * y),
                        _ if y == 0.0 => V::Err,
                        _ => V::Num(x / y),
                    }
                }
            }
        }
        Expr::Call(name, args) => call(name, args, c),
    }
}

fn call(name: &str, args: &[Expr], c: &Ctx) -> V {
    if name == "IF" {
        let cond = eval(&args[0], c);
        if cond == V::Err {
            return V::Err;
        }
        return if truthy(&cond) {
            eval(&args[1], c)
        } else {
            args.get(2).map_or(V::Blank, |e| eval(e, c))
        };
    }
    let vals: Vec<V> = args.iter().map(|a| eval(a, c)).collect();
    if vals.contains(&V::Err) {
        return V::Err;
    }
    let s = |i: usize| to_str(&vals[i]);
    match name {
        "AND" => V::Bool(vals.iter().all(truthy)),
        "OR" => V::Bool(vals.iter().any(truthy)),
        "NOT" => V::Bool(!truthy(&vals[0])),
        "FIND" | "SEARCH" => {
            let start = vals.get(2).and_then(to_num);
            let pos = find_pos(&s(0), &s(1), start);
            if pos == 0 && name == "SEARCH" {
                V::Blank
            } else {
                V::Num(pos as f64)
            }
        }
        "LOWER" => V::Str(s(0).to_lowercase()),
        "UPPER" => V::Str(s(0).to_uppercase()),
        "LEN" => V::Num(s(0).chars().count() as f64),
        "TRIM" => V::Str(s(0).trim().to_string()),
        "ARRAYJOIN" => {
            let sep = if vals.len() > 1 {
                s(1)
            } else {
                ", ".to_string()
            };
            match &vals[0] {
                V::Arr(items) => V::Str(items.iter().map(to_str).collect::<Vec<_>>().join(&sep)),
                other => V::Str(to_str(other)),
            }
        }
        "CONCATENATE" => V::Str(vals.iter().map(to_str).collect()),
        "BLANK" => V::Blank,
        "RECORD_ID" => V::Str(c.rec.id.clone()),
        "TRUE" => V::Bool(true),
        "FALSE" => V::Bool(false),
        _ => V::Err,
    }
}
