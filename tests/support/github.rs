//! Stateful, wire-faithful fake of the GitHub REST API, served by axum on
//! 127.0.0.1, for the integration tests and benches of plugboard's GitHub plugin.
//!
//! Include it with `#[path = "../support/github.rs"] mod github;` and start it with
//! [`FakeGitHub::start`] (current tokio runtime) or [`FakeGitHub::start_in_thread`]
//! (own thread and runtime, for benches and sync code). Point the client at
//! `fake.url` (like `https://api.github.com`, no prefix); everything is also served
//! under `/api/v3` (the GHES layout). Seed it with [`FakeGitHub::add_repo`],
//! [`FakeGitHub::add_issue`], [`FakeGitHub::add_pull`], [`FakeGitHub::add_comment`]
//! and [`FakeGitHub::add_code`]; every request is recorded ([`FakeGitHub::requests`]).
//!
//! The only accepted token is [`TOKEN`] (`Authorization: Bearer …` or `token …`);
//! it belongs to user `octocat` (id 1). Wire format, limits and errors follow
//! `shared/api-facts.md` §2 and the GitHub part of §5. Behaviour the facts do not
//! pin down is marked `INVENTED:` where it is implemented. The list:
//!
//! - Check order: record → `User-Agent` (403, plain text) → bad token (401) →
//!   `X-GitHub-Api-Version` (400 if not `2022-11-28`/`2026-03-10`) → secondary-limit
//!   fault → primary rate limit → route. Unknown routes and methods get 404
//!   `Not Found` (and count against `core`).
//! - Rate limits: buckets per (authenticated?, resource). `core` is 5000 with the
//!   token and 60 without, and never resets during a test (`reset` = start + 1 h).
//!   `search`/`code_search` buckets are fixed windows of `search_window` starting at
//!   the first request of a window; unauthenticated `search` is `min(10,
//!   search_limit)`. Exhausted → 403, `x-ratelimit-remaining: 0`, message
//!   "API rate limit exceeded for user ID 1." (unauthenticated: "… for 127.0.0.1.").
//!   Refused and 401/403-UA requests do not count. `GET /rate_limit` is free.
//!   Windows run on tokio's clock (paused in a test, they pass in virtual time);
//!   `x-ratelimit-reset` is wall-clock epoch seconds, as GitHub sends it, which is
//!   also what the client reads its waits from.
//! - Secondary-limit fault ([`FakeGitHub::secondary_limit_next`]): 403 with
//!   `retry-after` = the duration rounded up to whole seconds; it does not consume
//!   primary quota, and the `x-ratelimit-*` headers show quota left.
//! - Timestamps come from a fake clock: 2024-01-01T00:00:00Z plus one minute per
//!   created/updated object, so ordering is deterministic.
//! - `url` fields point at the fake (`{fake.url}/repos/…`), `html_url` fields at
//!   `https://github.com/…`. `Link` URLs use `{fake.url}[/api/v3]/repositories/{id}/…`
//!   for repository endpoints (as GitHub does), keep every query parameter as sent
//!   except `page`, which is appended last. No `Link` on a single page.
//! - Search cap: a page starting at result 1000 or later → 422 "Only the first 1000
//!   search results are available" whatever the total; a page straddling 1000 is
//!   truncated. `total_count` is the real count.
//! - Code search needs the token (401), at least one free-text term and a
//!   `repo:`/`org:`/`user:` qualifier (422 otherwise). It matches every term as a
//!   case-insensitive substring of the content; `path:`, `filename:`, `extension:`,
//!   `language:` (small extension table) narrow it. Items sorted by repo, then path.
//! - Issue search: `repo:`, `org:`/`user:`, `is:issue|pr|pull-request|open|closed`,
//!   `type:issue|pr`, `state:`, `label:` (repeatable, AND), `assignee:`, `author:`,
//!   `-` negation of qualifiers, `no:label`, `no:assignee`, quoted phrases; free
//!   text matches title or body case-insensitively. Default order: newest created
//!   first; `sort=created|updated|comments` with `order`. `score` is 1.0.
//!   A `repo:` naming an unknown or invisible repo → 422 Validation Failed.
//! - Visibility: a private repo is visible only with the token and `accessible`;
//!   a public repo is readable by all. Writes need the token (401 "Requires
//!   authentication") and `accessible` (403 "Resource not accessible by personal
//!   access token").
//! - Create issue: missing/null/empty `title` → 422 missing_field; assignees and
//!   labels are accepted whatever they are (labels are created on the fly,
//!   colour `ededed`). The singular `assignee` is honoured (and ignored under
//!   `2026-03-10`). Bad `state` on PATCH → 422 invalid.
//! - Create PR: branches known to a repo are its default `main`, the head/base of
//!   seeded pulls and [`FakeGitHub::add_branch`] ones. Unknown head/base → 422
//!   `{"resource":"PullRequest","field":"head"|"base","code":"invalid"}`; head ==
//!   base → 422 custom "No commits between main and main"; a duplicate open PR →
//!   422 custom "A pull request already exists for owner:branch.". New PRs have no
//!   files; `mergeable` is `true`, `merged` `false`.
//! - Diffs: `Accept: application/vnd.github.diff` (or `.v3.diff`) → `git diff`
//!   text, content type `application/vnd.github.diff; charset=utf-8`;
//!   `….patch` → an mbox `git format-patch` text. A file's `patch` is hunks only
//!   (as in the files API); an empty patch counts as binary. `additions`/`deletions`
//!   are counted from the hunks.
//! - Faults ([`FakeGitHub::fail_next`]): the next requests get a 5xx, before or after
//!   they are carried out.
//! - Gone issues ([`FakeGitHub::mark_gone`]): 410 "This issue was deleted" on get,
//!   patch and comments; left out of lists and search.
//! - Invalid `since` is ignored; `per_page` < 1 means 1; `page` < 1 means 1.
//! - Recorded `authorization` keeps its scheme: `Bearer <token>` / `token <token>`
//!   for [`TOKEN`], else `Bearer <redacted>`.
//! - `GET /user` answers [`LOGIN`]'s user object (401 "Requires authentication"
//!   without a token). [`TOKEN`] is a classic token with scope `repo`: every
//!   response to a request carrying it has `x-oauth-scopes: repo` (GitHub sends it on
//!   every authenticated answer). [`FakeGitHub::set_token_scopes`] changes the scopes,
//!   or with `None` makes the token fine-grained (no such header, as GitHub does);
//!   [`FakeGitHub::revoke_token`] makes it 401 "Bad credentials". Scopes are reported
//!   only: INVENTED, no endpoint enforces them.
#![allow(dead_code)]
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

// Each fake carries its own copy: a bench includes one fake without the others.
#[path = "output.rs"]
#[allow(clippy::duplicate_mod)]
mod output;

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/// The only token accepted.
pub const TOKEN: &str = "ghp_fake0123456789abcdef0123456789abcd";
/// The login of [`TOKEN`]'s user (id 1); also the author of seeded objects.
pub const LOGIN: &str = "octocat";
/// The default `X-GitHub-Api-Version`.
pub const API_VERSION: &str = "2022-11-28";

const SUPPORTED_VERSIONS: [&str; 2] = ["2022-11-28", "2026-03-10"];
const HTML: &str = "https://github.com";
const DOCS: &str = "https://docs.github.com/rest";
/// 2024-01-01T00:00:00Z, the fake clock's start.
const EPOCH0: i64 = 1_704_067_200;
const UNAUTH_CORE_LIMIT: u32 = 60;
const UNAUTH_SEARCH_LIMIT: u32 = 10;
const SEARCH_CAP: usize = 1000;

#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// `core` requests per hour with the token (real: 5000). Never resets.
    pub core_limit: u32,
    /// `search` requests per `search_window` with the token (real: 30/min).
    pub search_limit: u32,
    /// `code_search` requests per `search_window` (real: 10/min).
    pub code_search_limit: u32,
    /// `per_page` above this is clamped (real: 100).
    pub per_page_max: u32,
    /// `per_page` when absent (real: 30).
    pub default_per_page: u32,
    /// Window of the search buckets (real: 60 s).
    pub search_window: Duration,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            core_limit: 5000,
            search_limit: 30,
            code_search_limit: 10,
            per_page_max: 100,
            default_per_page: 30,
            search_window: Duration::from_secs(60),
        }
    }
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path with query, e.g. `/repos/o/r/issues?state=all`.
    pub path: String,
    /// Lower-case names; `authorization` redacted (`Bearer <token>` / `Bearer <redacted>`).
    pub headers: BTreeMap<String, String>,
    /// The parsed JSON body, `Value::Null` if absent or not JSON.
    pub body: Value,
    pub at: Instant,
    /// The status the fake answered.
    pub status: u16,
    /// The `x-ratelimit-reset` it answered with (epoch seconds), if any.
    pub rate_reset: Option<u64>,
}

/// A running fake. Stops when dropped.
pub struct FakeGitHub {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<Mutex<St>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeGitHub {
    /// Binds 127.0.0.1:0 and serves on the current tokio runtime.
    pub async fn start(config: FakeConfig) -> FakeGitHub {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake github: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake github: local addr");
        let url = format!("http://{addr}");
        let state = Arc::new(Mutex::new(St::new(config, url.clone())));
        let app = Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::disable())
            .with_state(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        FakeGitHub {
            url,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Like [`FakeGitHub::start`], but serves from its own thread and runtime.
    /// Callable with or without a runtime.
    pub fn start_in_thread(config: FakeConfig) -> FakeGitHub {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("fake-github".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake github: runtime");
                rt.block_on(async move {
                    let mut fake = FakeGitHub::start(config).await;
                    let task = fake.task.take();
                    if tx.send(fake).is_err() {
                        return;
                    }
                    if let Some(task) = task {
                        let _ = task.await;
                    }
                });
            })
            .expect("fake github: spawn thread");
        rx.recv().expect("fake github: start")
    }

    /// Same as `url`: GitHub's API root has no prefix (GHES' `/api/v3` is served too).
    pub fn api_url(&self) -> String {
        self.url.clone()
    }

    /// `{url}/api/v3`, the GHES-style root.
    pub fn ghes_url(&self) -> String {
        format!("{}/api/v3", self.url)
    }

    fn lock(&self) -> MutexGuard<'_, St> {
        lock(&self.state)
    }

    /// Adds a repository (`owner/name`, default branch `main`). `accessible`: whether
    /// [`TOKEN`] can see (private) / write to it.
    pub fn add_repo(&self, full_name: &str, private: bool, accessible: bool) {
        let (owner, name) = full_name
            .split_once('/')
            .expect("add_repo: expected owner/name");
        let mut s = self.lock();
        assert!(s.repo_idx(full_name).is_none(), "add_repo: duplicate");
        s.next_repo_id += 1;
        let id = s.next_repo_id;
        s.repos.push(Repo {
            id,
            owner: owner.to_string(),
            name: name.to_string(),
            private,
            accessible,
            default_branch: "main".to_string(),
            branches: vec!["main".to_string()],
            issues: Vec::new(),
            pulls: Vec::new(),
            comments: Vec::new(),
            code: Vec::new(),
        });
    }

    /// Adds a branch that `POST /pulls` accepts as head or base.
    pub fn add_branch(&self, repo: &str, branch: &str) {
        let mut s = self.lock();
        let ri = s.repo_idx(repo).expect("add_branch: unknown repo");
        s.repos[ri].add_branch(branch);
    }

    /// Adds an issue authored by `octocat`; returns its number.
    pub fn add_issue(
        &self,
        repo: &str,
        title: &str,
        body: &str,
        labels: &[&str],
        assignee: Option<&str>,
        state: &str,
    ) -> u64 {
        let mut s = self.lock();
        let ri = s.repo_idx(repo).expect("add_issue: unknown repo");
        let labels = labels.iter().map(|l| l.to_string()).collect();
        let assignees = assignee.map(|a| vec![a.to_string()]).unwrap_or_default();
        let n = s.new_issue(ri, title, Some(body.to_string()), labels, assignees, false);
        let t = s.tick();
        let issue = s.repos[ri].issue_mut(n).expect("issue");
        if state == "closed" {
            issue.state = "closed".into();
            issue.state_reason = Some("completed".into());
            issue.closed = Some(t);
            issue.updated = t;
        }
        n
    }

    /// Adds an open PR (and its backing issue, same number) from `head` into `base`.
    /// `files`: (filename, status, patch hunks).
    pub fn add_pull(
        &self,
        repo: &str,
        title: &str,
        head: &str,
        base: &str,
        files: &[(&str, &str, &str)],
    ) -> u64 {
        let mut s = self.lock();
        let ri = s.repo_idx(repo).expect("add_pull: unknown repo");
        let files = files
            .iter()
            .map(|(f, st, p)| PFile {
                filename: f.to_string(),
                status: st.to_string(),
                patch: p.to_string(),
            })
            .collect();
        s.new_pull(ri, title, None, head, base, false, files)
    }

    /// Adds a comment by `octocat` to issue or PR `number`; returns the comment id.
    pub fn add_comment(&self, repo: &str, number: u64, body: &str) -> u64 {
        let mut s = self.lock();
        let ri = s.repo_idx(repo).expect("add_comment: unknown repo");
        assert!(
            s.repos[ri].issue(number).is_some(),
            "add_comment: unknown issue"
        );
        s.new_comment(ri, number, body, LOGIN)
    }

    /// Adds a file on the default branch, for code search.
    pub fn add_code(&self, repo: &str, path: &str, content: &str) {
        let mut s = self.lock();
        let ri = s.repo_idx(repo).expect("add_code: unknown repo");
        s.repos[ri].code.push((
            path.trim_start_matches('/').to_string(),
            content.to_string(),
        ));
    }

    /// The issue (or PR) was deleted: 410 from now on.
    pub fn mark_gone(&self, repo: &str, number: u64) {
        let mut s = self.lock();
        let ri = s.repo_idx(repo).expect("mark_gone: unknown repo");
        s.repos[ri]
            .issue_mut(number)
            .expect("mark_gone: unknown issue")
            .gone = true;
    }

    /// The next `n` requests (that pass `User-Agent` and auth checks) get a secondary
    /// rate limit: 403 + `retry-after`.
    pub fn secondary_limit_next(&self, n: usize, retry_after: Duration) {
        let mut s = self.lock();
        s.secondary = n;
        s.secondary_retry = retry_after;
    }

    /// The next `n` requests are answered with `status` (a 5xx); with `applied`, each is
    /// carried out first (a write lands, its answer is lost).
    pub fn fail_next(&self, n: usize, status: u16, applied: bool) {
        let mut s = self.lock();
        s.faults.extend(std::iter::repeat_n((status, applied), n));
    }

    /// The next request is answered with exactly this (hostile headers, say).
    pub fn raw_next(&self, status: u16, headers: &[(&str, &str)], body: &str) {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.lock()
            .raw
            .push_back((status, headers, body.to_owned()));
    }

    /// The next `n` requests get a 400 whose message repeats their headers verbatim, token
    /// included (INVENTED: as a misconfigured proxy might).
    pub fn echo_headers_next(&self, n: usize) {
        self.lock().echo_headers = n;
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// [`TOKEN`]'s scopes as a classic token (`x-oauth-scopes`, default `repo`), or `None`:
    /// a fine-grained token, for which GitHub sends no scopes header.
    pub fn set_token_scopes(&self, scopes: Option<&[&str]>) {
        self.lock().token_scopes = scopes.map(|s| s.iter().map(|x| x.to_string()).collect());
    }

    /// [`TOKEN`] is revoked: every request carrying it gets 401 "Bad credentials".
    pub fn revoke_token(&self) {
        self.lock().revoked = true;
    }

    /// Issue objects (PR-backed ones included, gone ones excluded) in creation order.
    pub fn issues(&self, repo: &str) -> Vec<Value> {
        let s = self.lock();
        let ri = s.repo_idx(repo).expect("issues: unknown repo");
        let r = &s.repos[ri];
        r.issues
            .iter()
            .filter(|i| !i.gone)
            .map(|i| s.issue_json(r, i))
            .collect()
    }

    /// Comment objects of issue `number`, oldest first.
    pub fn comments(&self, repo: &str, number: u64) -> Vec<Value> {
        let s = self.lock();
        let ri = s.repo_idx(repo).expect("comments: unknown repo");
        let r = &s.repos[ri];
        r.comments
            .iter()
            .filter(|c| c.issue == number)
            .map(|c| s.comment_json(r, c))
            .collect()
    }
}

impl Drop for FakeGitHub {
    /// Stops serving. With `PLUGBOARD_TEST_OUTPUT` set, every request received is saved for
    /// the secret scan.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if output::dir().is_some() {
            let lines: Vec<String> = self
                .requests()
                .into_iter()
                .map(|r| {
                    json!({"method": r.method, "path": r.path, "headers": r.headers, "body": r.body})
                        .to_string()
                })
                .collect();
            output::save(
                "fake-github-requests",
                "requests the fake GitHub received (its own token redacted)",
                &(lines.join("\n") + "\n"),
            );
        }
    }
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

fn lock(m: &Mutex<St>) -> MutexGuard<'_, St> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Resource {
    Core,
    Search,
    CodeSearch,
}

impl Resource {
    fn name(self) -> &'static str {
        match self {
            Resource::Core => "core",
            Resource::Search => "search",
            Resource::CodeSearch => "code_search",
        }
    }
}

struct Bucket {
    limit: u32,
    used: u32,
    window: Option<Duration>,
    started: Instant,
    reset: u64,
}

#[derive(Clone, Copy)]
struct RateSnap {
    limit: u32,
    used: u32,
    reset: u64,
    resource: Resource,
}

struct Repo {
    id: u64,
    owner: String,
    name: String,
    private: bool,
    accessible: bool,
    default_branch: String,
    branches: Vec<String>,
    issues: Vec<Issue>,
    pulls: Vec<Pull>,
    comments: Vec<Comment>,
    code: Vec<(String, String)>,
}

impl Repo {
    fn full(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
    fn issue(&self, n: u64) -> Option<&Issue> {
        self.issues.iter().find(|i| i.number == n)
    }
    fn issue_mut(&mut self, n: u64) -> Option<&mut Issue> {
        self.issues.iter_mut().find(|i| i.number == n)
    }
    fn pull(&self, n: u64) -> Option<&Pull> {
        self.pulls.iter().find(|p| p.number == n)
    }
    fn add_branch(&mut self, b: &str) {
        if !self.branches.iter().any(|x| x == b) {
            self.branches.push(b.to_string());
        }
    }
    fn visible(&self, authed: bool) -> bool {
        !self.private || (authed && self.accessible)
    }
}

struct Issue {
    id: u64,
    number: u64,
    title: String,
    body: Option<String>,
    labels: Vec<String>,
    assignees: Vec<String>,
    state: String,
    state_reason: Option<String>,
    user: String,
    created: i64,
    updated: i64,
    closed: Option<i64>,
    is_pull: bool,
    gone: bool,
}

struct Pull {
    number: u64,
    id: u64,
    head: String,
    base: String,
    head_sha: String,
    draft: bool,
    files: Vec<PFile>,
}

struct PFile {
    filename: String,
    status: String,
    patch: String,
}

struct Comment {
    id: u64,
    issue: u64,
    body: String,
    user: String,
    created: i64,
    updated: i64,
}

/// An injected answer: status, headers, body.
type RawAnswer = (u16, Vec<(String, String)>, String);

struct St {
    config: FakeConfig,
    base_url: String,
    repos: Vec<Repo>,
    next_repo_id: u64,
    next_id: u64,
    clock: i64,
    started: Instant,
    started_epoch: u64,
    buckets: HashMap<(bool, Resource), Bucket>,
    secondary: usize,
    secondary_retry: Duration,
    /// Injected 5xx answers: (status, whether the request is carried out anyway).
    faults: std::collections::VecDeque<(u16, bool)>,
    /// Injected answers as they are: (status, headers, body).
    raw: std::collections::VecDeque<RawAnswer>,
    /// Requests still to be refused with a 400 that repeats their headers.
    echo_headers: usize,
    /// [`TOKEN`]'s classic scopes (`x-oauth-scopes`); `None` for a fine-grained token.
    token_scopes: Option<Vec<String>>,
    /// [`TOKEN`] no longer accepted.
    revoked: bool,
    requests: Vec<Recorded>,
    seq: u64,
}

impl St {
    fn new(config: FakeConfig, base_url: String) -> St {
        St {
            config,
            base_url,
            repos: Vec::new(),
            next_repo_id: 100_000,
            next_id: 1_000_000,
            clock: EPOCH0,
            started: Instant::now(),
            started_epoch: epoch_now(),
            buckets: HashMap::new(),
            secondary: 0,
            secondary_retry: Duration::from_secs(60),
            faults: Default::default(),
            raw: Default::default(),
            echo_headers: 0,
            token_scopes: Some(vec!["repo".to_owned()]),
            revoked: false,
            requests: Vec::new(),
            seq: 0,
        }
    }

    fn tick(&mut self) -> i64 {
        self.clock += 60;
        self.clock
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn repo_idx(&self, full: &str) -> Option<usize> {
        self.repos
            .iter()
            .position(|r| r.full().eq_ignore_ascii_case(full))
    }

    fn new_issue(
        &mut self,
        ri: usize,
        title: &str,
        body: Option<String>,
        labels: Vec<String>,
        assignees: Vec<String>,
        is_pull: bool,
    ) -> u64 {
        let id = self.id();
        let t = self.tick();
        let r = &mut self.repos[ri];
        let number = r.issues.iter().map(|i| i.number).max().unwrap_or(0) + 1;
        r.issues.push(Issue {
            id,
            number,
            title: title.to_string(),
            body,
            labels,
            assignees,
            state: "open".into(),
            state_reason: None,
            user: LOGIN.into(),
            created: t,
            updated: t,
            closed: None,
            is_pull,
            gone: false,
        });
        number
    }

    #[allow(clippy::too_many_arguments)]
    fn new_pull(
        &mut self,
        ri: usize,
        title: &str,
        body: Option<String>,
        head: &str,
        base: &str,
        draft: bool,
        files: Vec<PFile>,
    ) -> u64 {
        let n = self.new_issue(ri, title, body, Vec::new(), Vec::new(), true);
        let id = self.id();
        let r = &mut self.repos[ri];
        r.add_branch(head);
        r.add_branch(base);
        let head_sha = fake_sha(&format!("{}:{head}:{n}", r.full()));
        r.pulls.push(Pull {
            number: n,
            id,
            head: head.to_string(),
            base: base.to_string(),
            head_sha,
            draft,
            files,
        });
        n
    }

    fn new_comment(&mut self, ri: usize, number: u64, body: &str, user: &str) -> u64 {
        let id = self.id();
        let t = self.tick();
        let r = &mut self.repos[ri];
        r.comments.push(Comment {
            id,
            issue: number,
            body: body.to_string(),
            user: user.to_string(),
            created: t,
            updated: t,
        });
        if let Some(i) = r.issue_mut(number) {
            i.updated = t;
        }
        id
    }

    // ----- rate limiting -------------------------------------------------

    fn bucket(&mut self, authed: bool, res: Resource) -> &mut Bucket {
        let c = &self.config;
        let limit = match (authed, res) {
            (true, Resource::Core) => c.core_limit,
            (false, Resource::Core) => UNAUTH_CORE_LIMIT,
            (true, Resource::Search) => c.search_limit,
            (false, Resource::Search) => c.search_limit.min(UNAUTH_SEARCH_LIMIT),
            (_, Resource::CodeSearch) => c.code_search_limit,
        };
        let window = (res != Resource::Core).then_some(c.search_window);
        let core_reset = self.started_epoch + 3600;
        let now = Instant::now();
        let b = self.buckets.entry((authed, res)).or_insert_with(|| Bucket {
            limit,
            used: 0,
            window,
            started: now,
            reset: match window {
                Some(w) => epoch_after(w),
                None => core_reset,
            },
        });
        if let Some(w) = b.window
            && now.duration_since(b.started) >= w
        {
            b.used = 0;
            b.started = now;
            b.reset = epoch_after(w);
        }
        b
    }

    fn snap(&mut self, authed: bool, res: Resource) -> RateSnap {
        let b = self.bucket(authed, res);
        RateSnap {
            limit: b.limit,
            used: b.used,
            reset: b.reset,
            resource: res,
        }
    }

    /// Consumes one unit; `Err` if the bucket is empty.
    fn consume(&mut self, authed: bool, res: Resource) -> Result<RateSnap, RateSnap> {
        let b = self.bucket(authed, res);
        let ok = b.used < b.limit;
        if ok {
            b.used += 1;
        }
        let s = RateSnap {
            limit: b.limit,
            used: b.used,
            reset: b.reset,
            resource: res,
        };
        if ok { Ok(s) } else { Err(s) }
    }

    // ----- JSON shapes ---------------------------------------------------

    fn user_json(&self, login: &str) -> Value {
        let id = if login == LOGIN {
            1
        } else {
            1000 + hash_of(login) % 1_000_000
        };
        let api = format!("{}/users/{login}", self.base_url);
        json!({
            "login": login, "id": id, "node_id": format!("U_fake{id}"),
            "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
            "gravatar_id": "", "url": api, "html_url": format!("{HTML}/{login}"),
            "followers_url": format!("{api}/followers"),
            "repos_url": format!("{api}/repos"),
            "type": "User", "site_admin": false,
        })
    }

    fn repo_json(&self, r: &Repo, authed: bool) -> Value {
        let full = r.full();
        let open = r
            .issues
            .iter()
            .filter(|i| !i.gone && i.state == "open")
            .count();
        let mut v = json!({
            "id": r.id, "node_id": format!("R_fake{}", r.id), "name": r.name,
            "full_name": full, "private": r.private, "owner": self.user_json(&r.owner),
            "html_url": format!("{HTML}/{full}"), "description": null, "fork": false,
            "url": format!("{}/repos/{full}", self.base_url),
            "issues_url": format!("{}/repos/{full}/issues{{/number}}", self.base_url),
            "pulls_url": format!("{}/repos/{full}/pulls{{/number}}", self.base_url),
            "default_branch": r.default_branch,
            "visibility": if r.private { "private" } else { "public" },
            "has_issues": true, "archived": false, "disabled": false,
            "open_issues_count": open, "open_issues": open,
            "created_at": ts(EPOCH0), "updated_at": ts(EPOCH0), "pushed_at": ts(EPOCH0),
        });
        if authed {
            let w = r.accessible;
            v["permissions"] =
                json!({"admin": w, "maintain": w, "push": w, "triage": w, "pull": true});
        }
        v
    }

    fn label_json(&self, r: &Repo, name: &str) -> Value {
        let id = 10_000 + hash_of(&format!("{}#{name}", r.full())) % 1_000_000;
        json!({
            "id": id, "node_id": format!("LA_fake{id}"),
            "url": format!("{}/repos/{}/labels/{}", self.base_url, r.full(), encode(name)),
            "name": name, "description": null, "color": "ededed", "default": false,
        })
    }

    fn issue_json(&self, r: &Repo, i: &Issue) -> Value {
        let full = r.full();
        let api = format!("{}/repos/{full}", self.base_url);
        let url = format!("{api}/issues/{}", i.number);
        let kind = if i.is_pull { "pull" } else { "issues" };
        let comments = r.comments.iter().filter(|c| c.issue == i.number).count();
        let assignees: Vec<Value> = i.assignees.iter().map(|a| self.user_json(a)).collect();
        let mut v = json!({
            "id": i.id, "node_id": format!("I_fake{}", i.id), "url": url,
            "repository_url": api, "labels_url": format!("{url}/labels{{/name}}"),
            "comments_url": format!("{url}/comments"), "events_url": format!("{url}/events"),
            "html_url": format!("{HTML}/{full}/{kind}/{}", i.number),
            "number": i.number, "state": i.state, "state_reason": i.state_reason,
            "title": i.title, "body": i.body, "user": self.user_json(&i.user),
            "labels": i.labels.iter().map(|l| self.label_json(r, l)).collect::<Vec<_>>(),
            "assignee": assignees.first().cloned().unwrap_or(Value::Null),
            "assignees": assignees, "milestone": null, "locked": false,
            "active_lock_reason": null, "comments": comments,
            "closed_at": i.closed.map(ts), "created_at": ts(i.created),
            "updated_at": ts(i.updated), "author_association": "OWNER",
        });
        if i.is_pull {
            let draft = r.pull(i.number).is_some_and(|p| p.draft);
            v["draft"] = json!(draft);
            v["pull_request"] = json!({
                "url": format!("{api}/pulls/{}", i.number),
                "html_url": format!("{HTML}/{full}/pull/{}", i.number),
                "diff_url": format!("{HTML}/{full}/pull/{}.diff", i.number),
                "patch_url": format!("{HTML}/{full}/pull/{}.patch", i.number),
                "merged_at": null,
            });
        }
        v
    }

    fn comment_json(&self, r: &Repo, c: &Comment) -> Value {
        let full = r.full();
        let kind = if r.issue(c.issue).is_some_and(|i| i.is_pull) {
            "pull"
        } else {
            "issues"
        };
        json!({
            "id": c.id, "node_id": format!("IC_fake{}", c.id),
            "url": format!("{}/repos/{full}/issues/comments/{}", self.base_url, c.id),
            "html_url": format!("{HTML}/{full}/{kind}/{}#issuecomment-{}", c.issue, c.id),
            "body": c.body, "user": self.user_json(&c.user),
            "created_at": ts(c.created), "updated_at": ts(c.updated),
            "issue_url": format!("{}/repos/{full}/issues/{}", self.base_url, c.issue),
            "author_association": "OWNER",
        })
    }

    fn pull_json(&self, r: &Repo, p: &Pull, full_shape: bool) -> Value {
        let i = r.issue(p.number).expect("pull without issue");
        let full = r.full();
        let api = format!("{}/repos/{full}", self.base_url);
        let url = format!("{api}/pulls/{}", p.number);
        let html = format!("{HTML}/{full}/pull/{}", p.number);
        let repo = self.repo_json(r, false);
        let branch = |name: &str, sha: String| {
            json!({"label": format!("{}:{name}", r.owner), "ref": name, "sha": sha,
                   "user": self.user_json(&r.owner), "repo": repo.clone()})
        };
        let assignees: Vec<Value> = i.assignees.iter().map(|a| self.user_json(a)).collect();
        let mut v = json!({
            "url": url, "id": p.id, "node_id": format!("PR_fake{}", p.id),
            "html_url": html, "diff_url": format!("{html}.diff"),
            "patch_url": format!("{html}.patch"),
            "issue_url": format!("{api}/issues/{}", p.number),
            "commits_url": format!("{url}/commits"),
            "comments_url": format!("{api}/issues/{}/comments", p.number),
            "number": p.number, "state": i.state, "locked": false, "title": i.title,
            "user": self.user_json(&i.user), "body": i.body,
            "labels": i.labels.iter().map(|l| self.label_json(r, l)).collect::<Vec<_>>(),
            "milestone": null,
            "assignee": assignees.first().cloned().unwrap_or(Value::Null),
            "assignees": assignees, "requested_reviewers": [],
            "created_at": ts(i.created), "updated_at": ts(i.updated),
            "closed_at": i.closed.map(ts), "merged_at": null, "merge_commit_sha": null,
            "draft": p.draft,
            "head": branch(&p.head, p.head_sha.clone()),
            "base": branch(&p.base, fake_sha(&format!("{full}:{}", p.base))),
            "author_association": "OWNER", "auto_merge": null,
            "_links": {
                "self": {"href": url}, "html": {"href": html},
                "issue": {"href": format!("{api}/issues/{}", p.number)},
                "comments": {"href": format!("{api}/issues/{}/comments", p.number)},
            },
        });
        if full_shape {
            let (add, del) = p.files.iter().fold((0, 0), |(a, d), f| {
                let (fa, fd) = count_lines(&f.patch);
                (a + fa, d + fd)
            });
            let comments = r.comments.iter().filter(|c| c.issue == p.number).count();
            let o = v.as_object_mut().expect("object");
            o.insert("merged".into(), json!(false));
            o.insert("mergeable".into(), json!(i.state == "open"));
            o.insert("rebaseable".into(), json!(i.state == "open"));
            o.insert(
                "mergeable_state".into(),
                json!(if p.draft { "draft" } else { "clean" }),
            );
            o.insert("merged_by".into(), Value::Null);
            o.insert("comments".into(), json!(comments));
            o.insert("review_comments".into(), json!(0));
            o.insert("maintainer_can_modify".into(), json!(false));
            o.insert("commits".into(), json!(1));
            o.insert("additions".into(), json!(add));
            o.insert("deletions".into(), json!(del));
            o.insert("changed_files".into(), json!(p.files.len()));
        }
        v
    }

    fn file_json(&self, r: &Repo, p: &Pull, f: &PFile) -> Value {
        let (a, d) = count_lines(&f.patch);
        let full = r.full();
        let sha = fake_sha(&format!("{full}:{}:{}", p.head_sha, f.filename));
        let mut v = json!({
            "sha": sha, "filename": f.filename, "status": f.status,
            "additions": a, "deletions": d, "changes": a + d,
            "blob_url": format!("{HTML}/{full}/blob/{}/{}", p.head_sha, f.filename),
            "raw_url": format!("{HTML}/{full}/raw/{}/{}", p.head_sha, f.filename),
            "contents_url": format!("{}/repos/{full}/contents/{}?ref={}", self.base_url, f.filename, p.head_sha),
        });
        if !f.patch.is_empty() {
            v["patch"] = json!(f.patch);
        }
        v
    }
}

// ---------------------------------------------------------------------------
// Request handling
// ---------------------------------------------------------------------------

struct Req {
    method: Method,
    /// Path segments after the optional `/api/v3` prefix.
    segs: Vec<String>,
    /// `""` or `"/api/v3"`.
    prefix: String,
    /// The path as received (for `Link` of non-repository endpoints).
    path: String,
    raw_query: Option<String>,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Option<Value>,
    body_present: bool,
    authed: bool,
    version: String,
}

impl Req {
    fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn accept(&self) -> String {
        self.headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    }
}

async fn handle(State(state): State<Arc<Mutex<St>>>, req: Request) -> Response {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let parsed: Option<Value> = if bytes.is_empty() {
        None
    } else {
        serde_json::from_slice(&bytes).ok()
    };
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().map(str::to_string);
    let mut s = lock(&state);
    let idx = s.requests.len();
    s.requests.push(Recorded {
        method: parts.method.to_string(),
        path: match &raw_query {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        },
        headers: recorded_headers(&parts.headers),
        body: parsed.clone().unwrap_or(Value::Null),
        at,
        status: 0,
        rate_reset: None,
    });
    s.seq += 1;
    let seq = s.seq;

    let (prefix, rest) = match path.strip_prefix("/api/v3") {
        Some(r) if r.is_empty() || r.starts_with('/') => ("/api/v3".to_string(), r.to_string()),
        _ => (String::new(), path.clone()),
    };
    let segs: Vec<String> = rest
        .split('/')
        .filter(|x| !x.is_empty())
        .map(pct_decode)
        .collect();
    let version = parts
        .headers
        .get("x-github-api-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(API_VERSION)
        .to_string();
    let req = Req {
        method: parts.method.clone(),
        segs,
        prefix,
        path: path.clone(),
        query: parse_query(raw_query.as_deref()),
        raw_query,
        headers: parts.headers.clone(),
        body: parsed,
        body_present: !bytes.is_empty(),
        authed: false,
        version: version.clone(),
    };
    let echo = s.echo_headers > 0;
    if echo {
        s.echo_headers -= 1;
    }
    let raw = s.raw.pop_front();
    let mut resp = match s.faults.pop_front() {
        _ if echo => {
            let listed: Vec<String> = parts
                .headers
                .iter()
                .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v.as_bytes())))
                .collect();
            error(
                400,
                &format!("Bad request; headers: {}", listed.join(", ")),
                DOCS,
            )
        }
        _ if raw.is_some() => {
            let (status, headers, body) = raw.unwrap_or_default();
            let mut r = text_response(status, "application/json; charset=utf-8", &body);
            for (k, v) in &headers {
                if let (Ok(k), Ok(v)) = (
                    axum::http::HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(v),
                ) {
                    r.headers_mut().insert(k, v);
                }
            }
            r
        }
        None => s.dispatch(req),
        Some((status, applied)) => {
            if applied {
                // The change is made, then the answer is lost behind a 5xx.
                let _ = s.dispatch(req);
            }
            // INVENTED: wording.
            error(status, "Server Error", DOCS)
        }
    };
    let h = resp.headers_mut();
    h.insert(
        "x-github-request-id",
        hv(&format!("FAKE:{seq:04X}:{:06X}", hash_of(&path) % 0xFFFFFF)),
    );
    h.insert("x-github-api-version-selected", hv(&version));
    if !h.contains_key("x-github-media-type") {
        h.insert("x-github-media-type", hv("github.v3; format=json"));
    }
    s.requests[idx].status = resp.status().as_u16();
    s.requests[idx].rate_reset = resp
        .headers()
        .get("x-ratelimit-reset")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    resp
}

impl St {
    fn dispatch(&mut self, mut req: Req) -> Response {
        // Auth is parsed first so that even refusals carry the right rate headers.
        let auth = req
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bad_token = match &auth {
            None => false,
            Some(a) => match a.split_once(' ') {
                Some((scheme, tok))
                    if (scheme.eq_ignore_ascii_case("bearer")
                        || scheme.eq_ignore_ascii_case("token"))
                        && tok.trim() == TOKEN
                        && !self.revoked =>
                {
                    req.authed = true;
                    false
                }
                _ => true,
            },
        };

        let ua = req
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if ua.trim().is_empty() {
            let snap = self.snap(req.authed, Resource::Core);
            let mut r = text_response(
                403,
                "text/plain; charset=utf-8",
                "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes.\n",
            );
            rate_headers(&mut r, snap);
            return r;
        }
        if bad_token {
            let snap = self.snap(false, Resource::Core);
            let mut r = error(401, "Bad credentials", DOCS);
            rate_headers(&mut r, snap);
            return r;
        }
        let authed = req.authed;
        if !SUPPORTED_VERSIONS.contains(&req.version.as_str()) {
            let snap = self.snap(authed, Resource::Core);
            // INVENTED: message wording.
            let mut r = error(
                400,
                &format!("API version '{}' is not supported.", req.version),
                "https://docs.github.com/rest/about-the-rest-api/api-versions",
            );
            rate_headers(&mut r, snap);
            return r;
        }

        let segs: Vec<&str> = req.segs.iter().map(String::as_str).collect();
        let resource = match segs.as_slice() {
            ["search", "code", ..] => Resource::CodeSearch,
            ["search", ..] => Resource::Search,
            _ => Resource::Core,
        };

        if self.secondary > 0 {
            self.secondary -= 1;
            let secs =
                self.secondary_retry.as_secs() + u64::from(self.secondary_retry.subsec_nanos() > 0);
            let snap = self.snap(authed, resource);
            let mut r = error(
                403,
                &format!(
                    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID FAKE:{:04X}.",
                    self.seq
                ),
                "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
            );
            r.headers_mut().insert("retry-after", hv(&secs.to_string()));
            rate_headers(&mut r, snap);
            return r;
        }

        if segs.as_slice() == ["rate_limit"] && req.method == Method::GET {
            let snap = self.snap(authed, Resource::Core);
            let mut res = Map::new();
            for rs in [Resource::Core, Resource::Search, Resource::CodeSearch] {
                let s = self.snap(authed, rs);
                res.insert(rs.name().into(), snap_json(s));
            }
            let mut r = json_response(200, &json!({"resources": res, "rate": snap_json(snap)}));
            rate_headers(&mut r, snap);
            return r;
        }

        if resource == Resource::CodeSearch && !authed {
            let snap = self.snap(false, Resource::Core);
            let mut r = json_response(
                401,
                &json!({
                    "message": "Requires authentication",
                    "errors": [{"message": "Must be authenticated to access the code search API",
                                "resource": "Search", "field": "q", "code": "invalid"}],
                    "documentation_url": "https://docs.github.com/rest/search/search#search-code",
                    "status": "401",
                }),
            );
            rate_headers(&mut r, snap);
            return r;
        }

        let snap = match self.consume(authed, resource) {
            Ok(s) => s,
            Err(s) => {
                let who = if authed {
                    "user ID 1".to_string()
                } else {
                    "127.0.0.1".to_string()
                };
                let mut r = error(
                    403,
                    &format!(
                        "API rate limit exceeded for {who}. If you reach out to GitHub Support for help, please include the request ID FAKE:{:04X}.",
                        self.seq
                    ),
                    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits",
                );
                rate_headers(&mut r, s);
                return r;
            }
        };

        let mut r = match self.route(&req) {
            Ok(r) => r,
            Err(r) => r,
        };
        rate_headers(&mut r, snap);
        if let (true, Some(scopes)) = (authed, &self.token_scopes) {
            r.headers_mut()
                .insert("x-oauth-scopes", hv(&scopes.join(", ")));
        }
        r
    }

    fn route(&mut self, req: &Req) -> Result<Response, Response> {
        let segs: Vec<&str> = req.segs.iter().map(String::as_str).collect();
        let m = &req.method;
        match segs.as_slice() {
            ["user"] if m == Method::GET => {
                if !req.authed {
                    return Err(error(401, "Requires authentication", DOCS));
                }
                Ok(json_response(200, &self.user_json(LOGIN)))
            }
            ["search", "issues"] if m == Method::GET => self.search_issues(req),
            ["search", "code"] if m == Method::GET => self.search_code(req),
            ["repos", owner, name, rest @ ..] => {
                let full = format!("{owner}/{name}");
                let ri = self.repo_idx(&full).ok_or_else(not_found)?;
                self.repo_route(req, ri, rest)
            }
            ["repositories", id, rest @ ..] => {
                let id: u64 = id.parse().map_err(|_| not_found())?;
                let ri = self
                    .repos
                    .iter()
                    .position(|r| r.id == id)
                    .ok_or_else(not_found)?;
                self.repo_route(req, ri, rest)
            }
            _ => Err(not_found()),
        }
    }

    fn repo_route(&mut self, req: &Req, ri: usize, rest: &[&str]) -> Result<Response, Response> {
        if !self.repos[ri].visible(req.authed) {
            return Err(not_found());
        }
        let m = &req.method;
        let is_write = *m != Method::GET && *m != Method::HEAD;
        let route_ok = matches!(
            (m.as_str(), rest),
            ("GET", [])
                | ("GET" | "POST", ["issues"])
                | ("GET" | "PATCH", ["issues", _])
                | ("GET" | "POST", ["issues", _, "comments"])
                | ("GET" | "PATCH", ["issues", "comments", _])
                | ("GET" | "POST", ["pulls"])
                | ("GET", ["pulls", _])
                | ("GET", ["pulls", _, "files"])
        );
        if !route_ok {
            return Err(not_found());
        }
        if is_write {
            if !req.authed {
                return Err(error(401, "Requires authentication", DOCS));
            }
            if !self.repos[ri].accessible {
                return Err(error(
                    403,
                    "Resource not accessible by personal access token",
                    DOCS,
                ));
            }
            if req.body_present && req.body.is_none() {
                return Err(error(400, "Problems parsing JSON", DOCS));
            }
        }
        let link_base = format!(
            "{}{}/repositories/{}",
            self.base_url, req.prefix, self.repos[ri].id
        );
        match (m.as_str(), rest) {
            ("GET", []) => Ok(json_response(
                200,
                &self.repo_json(&self.repos[ri], req.authed),
            )),
            ("GET", ["issues"]) => self.list_issues(req, ri, &format!("{link_base}/issues")),
            ("POST", ["issues"]) => self.create_issue(req, ri),
            ("GET", ["issues", "comments", id]) => {
                let id = parse_num(id)?;
                let r = &self.repos[ri];
                let c = r
                    .comments
                    .iter()
                    .find(|c| c.id == id)
                    .ok_or_else(not_found)?;
                Ok(json_response(200, &self.comment_json(r, c)))
            }
            ("PATCH", ["issues", "comments", id]) => self.update_comment(req, ri, parse_num(id)?),
            ("GET", ["issues", n]) => {
                let n = parse_num(n)?;
                let r = &self.repos[ri];
                let i = live_issue(r, n)?;
                Ok(json_response(200, &self.issue_json(r, i)))
            }
            ("PATCH", ["issues", n]) => self.update_issue(req, ri, parse_num(n)?),
            ("GET", ["issues", n, "comments"]) => {
                let n = parse_num(n)?;
                let r = &self.repos[ri];
                live_issue(r, n)?;
                let since = req.q("since").and_then(parse_ts);
                let items: Vec<Value> = r
                    .comments
                    .iter()
                    .filter(|c| c.issue == n && since.is_none_or(|s| c.updated >= s))
                    .map(|c| self.comment_json(r, c))
                    .collect();
                Ok(self.paged(req, items, &format!("{link_base}/issues/{n}/comments")))
            }
            ("POST", ["issues", n, "comments"]) => {
                let n = parse_num(n)?;
                live_issue(&self.repos[ri], n)?;
                let body = req
                    .body
                    .as_ref()
                    .and_then(|b| b.get("body"))
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        validation(
                            json!([{"resource": "IssueComment", "code": "missing_field", "field": "body"}]),
                            "https://docs.github.com/rest/issues/comments#create-an-issue-comment",
                        )
                    })?
                    .to_string();
                let id = self.new_comment(ri, n, &body, LOGIN);
                let r = &self.repos[ri];
                let c = r.comments.iter().find(|c| c.id == id).expect("comment");
                let v = self.comment_json(r, c);
                Ok(created(&v))
            }
            ("GET", ["pulls"]) => self.list_pulls(req, ri, &format!("{link_base}/pulls")),
            ("POST", ["pulls"]) => self.create_pull(req, ri),
            ("GET", ["pulls", n]) => self.get_pull(req, ri, parse_num(n)?),
            ("GET", ["pulls", n, "files"]) => {
                let n = parse_num(n)?;
                let r = &self.repos[ri];
                let p = r.pull(n).ok_or_else(not_found)?;
                let items: Vec<Value> = p
                    .files
                    .iter()
                    .take(3000)
                    .map(|f| self.file_json(r, p, f))
                    .collect();
                Ok(self.paged(req, items, &format!("{link_base}/pulls/{n}/files")))
            }
            _ => Err(not_found()),
        }
    }

    // ----- pagination ------------------------------------------------------

    fn per_page(&self, req: &Req) -> usize {
        let pp = req
            .q("per_page")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(self.config.default_per_page as u64);
        pp.clamp(1, self.config.per_page_max.max(1) as u64) as usize
    }

    fn page(req: &Req) -> usize {
        req.q("page")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1)
    }

    /// One page of `items` as a JSON array response with a `Link` header.
    fn paged(&self, req: &Req, items: Vec<Value>, link_url: &str) -> Response {
        let pp = self.per_page(req);
        let page = St::page(req);
        let total = items.len();
        let page_items: Vec<Value> = items.into_iter().skip((page - 1) * pp).take(pp).collect();
        let mut r = json_response(200, &Value::Array(page_items));
        if let Some(link) = link_header(req, link_url, total, pp, page) {
            r.headers_mut().insert(header::LINK, hv(&link));
        }
        r
    }

    // ----- issues ----------------------------------------------------------

    fn list_issues(&self, req: &Req, ri: usize, link_url: &str) -> Result<Response, Response> {
        let r = &self.repos[ri];
        let state = req.q("state").unwrap_or("open");
        if !matches!(state, "open" | "closed" | "all") {
            return Err(validation(
                json!([{"resource": "Issue", "code": "invalid", "field": "state"}]),
                "https://docs.github.com/rest/issues/issues#list-repository-issues",
            ));
        }
        let labels: Vec<String> = req
            .q("labels")
            .map(|l| {
                l.split(',')
                    .map(|x| x.trim().to_lowercase())
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let assignee = req.q("assignee");
        let creator = req.q("creator");
        let since = req.q("since").and_then(parse_ts);
        let mut list: Vec<&Issue> = r
            .issues
            .iter()
            .filter(|i| !i.gone)
            .filter(|i| state == "all" || i.state == state)
            .filter(|i| {
                labels
                    .iter()
                    .all(|l| i.labels.iter().any(|x| x.to_lowercase() == *l))
            })
            .filter(|i| match assignee {
                None => true,
                Some("none") => i.assignees.is_empty(),
                Some("*") => !i.assignees.is_empty(),
                Some(a) => i.assignees.iter().any(|x| x.eq_ignore_ascii_case(a)),
            })
            .filter(|i| creator.is_none_or(|c| i.user.eq_ignore_ascii_case(c)))
            .filter(|i| since.is_none_or(|s| i.updated >= s))
            .collect();
        let comments = |i: &Issue| r.comments.iter().filter(|c| c.issue == i.number).count();
        let sort = req.q("sort").unwrap_or("created");
        list.sort_by_key(|i| match sort {
            "updated" => (i.updated, i.id),
            "comments" => (comments(i) as i64, i.id),
            _ => (i.created, i.id),
        });
        if req.q("direction") != Some("asc") {
            list.reverse();
        }
        let items = list.into_iter().map(|i| self.issue_json(r, i)).collect();
        Ok(self.paged(req, items, link_url))
    }

    fn create_issue(&mut self, req: &Req, ri: usize) -> Result<Response, Response> {
        let doc = "https://docs.github.com/rest/issues/issues#create-an-issue";
        let b = req.body.clone().unwrap_or(Value::Null);
        let title = match b.get("title") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Null) | None => {
                return Err(validation(
                    json!([{"resource": "Issue", "code": "missing_field", "field": "title"}]),
                    doc,
                ));
            }
            Some(Value::String(_)) => {
                return Err(validation(
                    json!([{"resource": "Issue", "code": "missing_field", "field": "title"}]),
                    doc,
                ));
            }
            Some(_) => {
                return Err(validation(
                    json!([{"resource": "Issue", "code": "invalid", "field": "title"}]),
                    doc,
                ));
            }
        };
        let body = b.get("body").and_then(Value::as_str).map(str::to_string);
        let labels = names(b.get("labels"));
        let mut assignees = names(b.get("assignees"));
        if req.version == API_VERSION
            && let Some(a) = b.get("assignee").and_then(Value::as_str)
            && !assignees.iter().any(|x| x == a)
        {
            assignees.insert(0, a.to_string());
        }
        let n = self.new_issue(ri, &title, body, labels, assignees, false);
        let r = &self.repos[ri];
        let v = self.issue_json(r, r.issue(n).expect("issue"));
        Ok(created(&v))
    }

    fn update_issue(&mut self, req: &Req, ri: usize, n: u64) -> Result<Response, Response> {
        let doc = "https://docs.github.com/rest/issues/issues#update-an-issue";
        live_issue(&self.repos[ri], n)?;
        let b = req.body.clone().unwrap_or(Value::Null);
        let invalid = |field: &str| {
            validation(
                json!([{"resource": "Issue", "code": "invalid", "field": field}]),
                doc,
            )
        };
        let state = match b.get("state") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == "open" || s == "closed" => Some(s.clone()),
            Some(_) => return Err(invalid("state")),
        };
        let reason = match b.get("state_reason") {
            None | Some(Value::Null) => None,
            Some(Value::String(s))
                if ["completed", "not_planned", "duplicate", "reopened"].contains(&s.as_str()) =>
            {
                Some(s.clone())
            }
            Some(_) => return Err(invalid("state_reason")),
        };
        let title = match b.get("title") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(x)) => Some(x.to_string()),
            Some(_) => return Err(invalid("title")),
        };
        let t = self.tick();
        let v2026 = req.version != API_VERSION;
        let i = self.repos[ri].issue_mut(n).expect("issue");
        if let Some(title) = title {
            i.title = title;
        }
        if let Some(body) = b.get("body") {
            i.body = body.as_str().map(str::to_string);
        }
        if b.get("labels").is_some() {
            i.labels = names(b.get("labels"));
        }
        if b.get("assignees").is_some() {
            i.assignees = names(b.get("assignees"));
        } else if !v2026 && let Some(a) = b.get("assignee") {
            i.assignees = a.as_str().map(|a| vec![a.to_string()]).unwrap_or_default();
        }
        if let Some(st) = state {
            if st == "closed" && i.state != "closed" {
                i.closed = Some(t);
                i.state_reason = Some(reason.clone().unwrap_or_else(|| "completed".into()));
            } else if st == "open" && i.state != "open" {
                i.closed = None;
                i.state_reason = Some("reopened".into());
            }
            i.state = st;
        }
        if let Some(rs) = reason
            && i.state == "closed"
        {
            i.state_reason = Some(rs);
        }
        i.updated = t;
        let r = &self.repos[ri];
        Ok(json_response(
            200,
            &self.issue_json(r, r.issue(n).expect("issue")),
        ))
    }

    fn update_comment(&mut self, req: &Req, ri: usize, id: u64) -> Result<Response, Response> {
        let body = req
            .body
            .as_ref()
            .and_then(|b| b.get("body"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        if !self.repos[ri].comments.iter().any(|c| c.id == id) {
            return Err(not_found());
        }
        let Some(body) = body else {
            return Err(validation(
                json!([{"resource": "IssueComment", "code": "missing_field", "field": "body"}]),
                "https://docs.github.com/rest/issues/comments#update-an-issue-comment",
            ));
        };
        let t = self.tick();
        let c = self.repos[ri]
            .comments
            .iter_mut()
            .find(|c| c.id == id)
            .expect("comment");
        c.body = body;
        c.updated = t;
        let r = &self.repos[ri];
        let c = r.comments.iter().find(|c| c.id == id).expect("comment");
        Ok(json_response(200, &self.comment_json(r, c)))
    }

    // ----- pulls -------------------------------------------------------------

    fn list_pulls(&self, req: &Req, ri: usize, link_url: &str) -> Result<Response, Response> {
        let r = &self.repos[ri];
        let state = req.q("state").unwrap_or("open");
        let head = req
            .q("head")
            .map(|h| h.split_once(':').map(|(_, b)| b).unwrap_or(h));
        let base = req.q("base");
        let mut list: Vec<(&Pull, &Issue)> = r
            .pulls
            .iter()
            .filter_map(|p| r.issue(p.number).map(|i| (p, i)))
            .filter(|(_, i)| !i.gone && (state == "all" || i.state == state))
            .filter(|(p, _)| head.is_none_or(|h| p.head == h))
            .filter(|(p, _)| base.is_none_or(|b| p.base == b))
            .collect();
        let sort = req.q("sort").unwrap_or("created");
        list.sort_by_key(|(_, i)| match sort {
            "updated" => (i.updated, i.id),
            _ => (i.created, i.id),
        });
        if req.q("direction") != Some("asc") {
            list.reverse();
        }
        let items = list
            .into_iter()
            .map(|(p, _)| self.pull_json(r, p, false))
            .collect();
        Ok(self.paged(req, items, link_url))
    }

    fn create_pull(&mut self, req: &Req, ri: usize) -> Result<Response, Response> {
        let doc = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request";
        let b = req.body.clone().unwrap_or(Value::Null);
        let s = |k: &str| b.get(k).and_then(Value::as_str).map(str::to_string);
        let mut missing = Vec::new();
        for f in ["head", "base", "title"] {
            if s(f).is_none_or(|v| v.is_empty()) {
                missing
                    .push(json!({"resource": "PullRequest", "code": "missing_field", "field": f}));
            }
        }
        if !missing.is_empty() {
            return Err(validation(Value::Array(missing), doc));
        }
        let raw_head = s("head").expect("head");
        let head = raw_head
            .split_once(':')
            .map(|(_, b)| b.to_string())
            .unwrap_or(raw_head.clone());
        let base = s("base").expect("base");
        let r = &self.repos[ri];
        for (field, name) in [("base", &base), ("head", &head)] {
            if !r.branches.iter().any(|x| x == name) {
                return Err(validation(
                    json!([{"resource": "PullRequest", "field": field, "code": "invalid"}]),
                    doc,
                ));
            }
        }
        if head == base {
            return Err(validation(
                json!([{"resource": "PullRequest", "code": "custom",
                        "message": format!("No commits between {base} and {head}")}]),
                doc,
            ));
        }
        let dup = r.pulls.iter().any(|p| {
            p.head == head
                && p.base == base
                && r.issue(p.number)
                    .is_some_and(|i| i.state == "open" && !i.gone)
        });
        if dup {
            return Err(validation(
                json!([{"resource": "PullRequest", "code": "custom",
                        "message": format!("A pull request already exists for {}:{head}.", r.owner)}]),
                doc,
            ));
        }
        let draft = b.get("draft").and_then(Value::as_bool).unwrap_or(false);
        let n = self.new_pull(
            ri,
            &s("title").expect("title"),
            s("body"),
            &head,
            &base,
            draft,
            Vec::new(),
        );
        let r = &self.repos[ri];
        let v = self.pull_json(r, r.pull(n).expect("pull"), true);
        Ok(created(&v))
    }

    fn get_pull(&self, req: &Req, ri: usize, n: u64) -> Result<Response, Response> {
        let r = &self.repos[ri];
        let p = r.pull(n).ok_or_else(not_found)?;
        live_issue(r, n)?;
        let accept = req.accept();
        if accept.contains("application/vnd.github.diff")
            || accept.contains("application/vnd.github.v3.diff")
        {
            let mut resp = text_response(
                200,
                "application/vnd.github.diff; charset=utf-8",
                &unified_diff(p),
            );
            resp.headers_mut()
                .insert("x-github-media-type", hv("github.v3; param=diff"));
            return Ok(resp);
        }
        if accept.contains("application/vnd.github.patch")
            || accept.contains("application/vnd.github.v3.patch")
        {
            let i = r.issue(n).expect("issue");
            let mut resp = text_response(
                200,
                "application/vnd.github.patch; charset=utf-8",
                &format_patch(p, i),
            );
            resp.headers_mut()
                .insert("x-github-media-type", hv("github.v3; param=patch"));
            return Ok(resp);
        }
        Ok(json_response(200, &self.pull_json(r, p, true)))
    }

    // ----- search ------------------------------------------------------------

    fn search_page_check(&self, req: &Req) -> Result<(usize, usize), Response> {
        let pp = self.per_page(req);
        let page = St::page(req);
        if (page - 1) * pp >= SEARCH_CAP {
            return Err(error(
                422,
                "Only the first 1000 search results are available",
                "https://docs.github.com/v3/search/",
            ));
        }
        Ok((pp, page))
    }

    fn search_response(&self, req: &Req, all: Vec<Value>) -> Response {
        let total = all.len();
        let pp = self.per_page(req);
        let page = St::page(req);
        let start = (page - 1) * pp;
        let end = (start + pp).min(SEARCH_CAP);
        let items: Vec<Value> = all
            .into_iter()
            .skip(start)
            .take(end.saturating_sub(start))
            .collect();
        let mut r = json_response(
            200,
            &json!({"total_count": total, "incomplete_results": false, "items": items}),
        );
        let url = format!("{}{}", self.base_url, req.path);
        if let Some(link) = link_header(req, &url, total.min(SEARCH_CAP), pp, page) {
            r.headers_mut().insert(header::LINK, hv(&link));
        }
        r
    }

    fn q_invalid(message: &str) -> Response {
        validation(
            json!([{"message": message, "resource": "Search", "field": "q", "code": "invalid"}]),
            "https://docs.github.com/v3/search/",
        )
    }

    /// Repos a query may search: `repo:` / `org:` / `user:` narrow the visible ones.
    fn search_repos(&self, req: &Req, terms: &[Term]) -> Result<Vec<usize>, Response> {
        let mut named: Vec<usize> = Vec::new();
        let mut owners: Vec<String> = Vec::new();
        for t in terms {
            match (t.key.as_deref(), t.neg) {
                (Some("repo"), false) => match self.repo_idx(&t.value) {
                    Some(ri) if self.repos[ri].visible(req.authed) => named.push(ri),
                    _ => {
                        return Err(St::q_invalid(
                            "The listed users and repositories cannot be searched either because the resources do not exist or you do not have permission to view them.",
                        ));
                    }
                },
                (Some("org" | "user" | "owner"), false) => owners.push(t.value.to_lowercase()),
                _ => {}
            }
        }
        Ok((0..self.repos.len())
            .filter(|&ri| self.repos[ri].visible(req.authed))
            .filter(|ri| named.is_empty() || named.contains(ri))
            .filter(|&ri| {
                owners.is_empty() || owners.contains(&self.repos[ri].owner.to_lowercase())
            })
            .collect())
    }

    fn search_issues(&self, req: &Req) -> Result<Response, Response> {
        let q = req.q("q").unwrap_or("").trim().to_string();
        if q.is_empty() {
            return Err(validation(
                json!([{"resource": "Search", "field": "q", "code": "missing"}]),
                "https://docs.github.com/v3/search",
            ));
        }
        self.search_page_check(req)?;
        let terms = tokenize(&q);
        let repos = self.search_repos(req, &terms)?;
        let mut hits: Vec<(usize, &Issue)> = Vec::new();
        for ri in repos {
            let r = &self.repos[ri];
            for i in r.issues.iter().filter(|i| !i.gone) {
                if terms.iter().all(|t| issue_matches(i, t)) {
                    hits.push((ri, i));
                }
            }
        }
        let sort = req.q("sort");
        let comments = |ri: usize, i: &Issue| {
            self.repos[ri]
                .comments
                .iter()
                .filter(|c| c.issue == i.number)
                .count() as i64
        };
        hits.sort_by_key(|(ri, i)| match sort {
            Some("updated") => (i.updated, i.id),
            Some("comments") => (comments(*ri, i), i.id),
            _ => (i.created, i.id),
        });
        if !(sort.is_some() && req.q("order") == Some("asc")) {
            hits.reverse();
        }
        let items = hits
            .into_iter()
            .map(|(ri, i)| {
                let mut v = self.issue_json(&self.repos[ri], i);
                v["score"] = json!(1.0);
                v
            })
            .collect();
        Ok(self.search_response(req, items))
    }

    fn search_code(&self, req: &Req) -> Result<Response, Response> {
        let q = req.q("q").unwrap_or("").trim().to_string();
        if q.is_empty() {
            return Err(validation(
                json!([{"resource": "Search", "field": "q", "code": "missing"}]),
                "https://docs.github.com/v3/search",
            ));
        }
        self.search_page_check(req)?;
        let terms = tokenize(&q);
        if !terms.iter().any(|t| t.key.is_none()) {
            // INVENTED: message.
            return Err(St::q_invalid(
                "Code search requires at least one search term.",
            ));
        }
        if !terms
            .iter()
            .any(|t| matches!(t.key.as_deref(), Some("repo" | "org" | "user" | "owner")))
        {
            return Err(St::q_invalid(
                "Must include at least one user, organization, or repository",
            ));
        }
        let repos = self.search_repos(req, &terms)?;
        let mut items = Vec::new();
        for ri in repos {
            let r = &self.repos[ri];
            let mut files: Vec<&(String, String)> = r.code.iter().collect();
            files.sort_by(|a, b| a.0.cmp(&b.0));
            for (path, content) in files {
                if !terms.iter().all(|t| code_matches(path, content, t)) {
                    continue;
                }
                let name = path.rsplit('/').next().unwrap_or(path);
                let full = r.full();
                let sha = fake_sha(&format!("{full}:{path}:{content}"));
                items.push(json!({
                    "name": name, "path": path, "sha": sha,
                    "url": format!("{}/repos/{full}/contents/{}?ref={}", self.base_url, path, fake_sha(&full)),
                    "git_url": format!("{}/repos/{full}/git/blobs/{sha}", self.base_url),
                    "html_url": format!("{HTML}/{full}/blob/{}/{}", fake_sha(&full), path),
                    "repository": self.repo_json(r, false),
                    "score": 1.0,
                }));
            }
        }
        Ok(self.search_response(req, items))
    }
}

// ---------------------------------------------------------------------------
// Search query language
// ---------------------------------------------------------------------------

struct Term {
    neg: bool,
    /// `None` for free text.
    key: Option<String>,
    value: String,
}

/// Splits on whitespace outside double quotes; `key:value` (value may be quoted)
/// becomes a qualifier, a leading `-` on a qualifier negates it.
fn tokenize(q: &str) -> Vec<Term> {
    let mut raw = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in q.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                cur.push(ch);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    raw.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        raw.push(cur);
    }
    raw.into_iter()
        .filter(|t| !matches!(t.as_str(), "AND" | "OR" | "NOT"))
        .map(|t| {
            let (neg, body) = match t.strip_prefix('-') {
                Some(b) if b.contains(':') => (true, b.to_string()),
                _ => (false, t.clone()),
            };
            if !body.starts_with('"')
                && let Some((k, v)) = body.split_once(':')
                && !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphabetic() || c == '-' || c == '_')
            {
                return Term {
                    neg,
                    key: Some(k.to_lowercase()),
                    value: v.trim_matches('"').to_string(),
                };
            }
            Term {
                neg: false,
                key: None,
                value: t.trim_matches('"').to_string(),
            }
        })
        .collect()
}

fn issue_matches(i: &Issue, t: &Term) -> bool {
    let v = t.value.to_lowercase();
    let hit = match t.key.as_deref() {
        None => {
            return i.title.to_lowercase().contains(&v)
                || i.body.as_deref().unwrap_or("").to_lowercase().contains(&v);
        }
        Some("repo" | "org" | "user" | "owner" | "in" | "sort") => return true,
        Some("is" | "type" | "state") => match v.as_str() {
            "issue" => !i.is_pull,
            "pr" | "pull-request" => i.is_pull,
            "open" | "closed" => i.state == v,
            _ => true,
        },
        Some("label") => v
            .split(',')
            .any(|l| i.labels.iter().any(|x| x.to_lowercase() == l)),
        Some("assignee") => i.assignees.iter().any(|x| x.to_lowercase() == v),
        Some("author") => i.user.to_lowercase() == v,
        Some("no") => match v.as_str() {
            "label" => i.labels.is_empty(),
            "assignee" => i.assignees.is_empty(),
            _ => true,
        },
        Some(_) => true,
    };
    hit != t.neg
}

fn code_matches(path: &str, content: &str, t: &Term) -> bool {
    let v = t.value.to_lowercase();
    let name = path.rsplit('/').next().unwrap_or(path).to_lowercase();
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    let hit = match t.key.as_deref() {
        None => return content.to_lowercase().contains(&v),
        Some("path") => path.to_lowercase().contains(v.trim_matches('/')),
        Some("filename") => name == v,
        Some("extension") => ext == v.trim_start_matches('.'),
        Some("language") => language_of(ext) == Some(v.as_str()),
        Some(_) => true,
    };
    hit != t.neg
}

fn language_of(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "rs" => "rust",
        "py" => "python",
        "go" => "go",
        "js" | "mjs" | "cjs" => "javascript",
        "ts" | "tsx" => "typescript",
        "java" => "java",
        "c" | "h" => "c",
        "cpp" | "cc" | "hpp" => "c++",
        "rb" => "ruby",
        "md" => "markdown",
        "toml" => "toml",
        "json" => "json",
        "yml" | "yaml" => "yaml",
        "sh" => "shell",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// Diffs
// ---------------------------------------------------------------------------

/// (additions, deletions) of hunk text; lines before the first `@@` are ignored
/// when there is one.
fn count_lines(patch: &str) -> (u64, u64) {
    let has_hunk = patch.lines().any(|l| l.starts_with("@@"));
    let mut in_hunk = !has_hunk;
    let (mut a, mut d) = (0, 0);
    for l in patch.lines() {
        if l.starts_with("@@") {
            in_hunk = true;
        } else if in_hunk && l.starts_with('+') {
            a += 1;
        } else if in_hunk && l.starts_with('-') {
            d += 1;
        }
    }
    (a, d)
}

fn unified_diff(p: &Pull) -> String {
    let mut out = String::new();
    for f in &p.files {
        let name = &f.filename;
        let old = &fake_sha(&format!("old:{name}"))[..7];
        let new = &fake_sha(&format!("new:{}:{name}", p.head_sha))[..7];
        out.push_str(&format!("diff --git a/{name} b/{name}\n"));
        let (from, to) = match f.status.as_str() {
            "added" => {
                out.push_str(&format!("new file mode 100644\nindex 0000000..{new}\n"));
                ("/dev/null".to_string(), format!("b/{name}"))
            }
            "removed" => {
                out.push_str(&format!("deleted file mode 100644\nindex {old}..0000000\n"));
                (format!("a/{name}"), "/dev/null".to_string())
            }
            _ => {
                out.push_str(&format!("index {old}..{new} 100644\n"));
                (format!("a/{name}"), format!("b/{name}"))
            }
        };
        if f.patch.is_empty() {
            out.push_str(&format!("Binary files {from} and {to} differ\n"));
            continue;
        }
        out.push_str(&format!("--- {from}\n+++ {to}\n"));
        out.push_str(&f.patch);
        if !f.patch.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

fn format_patch(p: &Pull, i: &Issue) -> String {
    let date = chrono::DateTime::from_timestamp(i.created, 0)
        .map(|d| d.format("%a, %-d %b %Y %H:%M:%S +0000").to_string())
        .unwrap_or_default();
    let mut out = format!(
        "From {} Mon Sep 17 00:00:00 2001\nFrom: {} <{}@users.noreply.github.com>\nDate: {date}\nSubject: [PATCH] {}\n\n",
        p.head_sha, i.user, i.user, i.title
    );
    if let Some(b) = i.body.as_deref().filter(|b| !b.is_empty()) {
        out.push_str(b);
        out.push('\n');
    }
    out.push_str("---\n");
    let (mut ta, mut td) = (0, 0);
    for f in &p.files {
        let (a, d) = count_lines(&f.patch);
        ta += a;
        td += d;
        out.push_str(&format!(
            " {} | {} {}{}\n",
            f.filename,
            a + d,
            "+".repeat(a as usize),
            "-".repeat(d as usize)
        ));
    }
    out.push_str(&format!(
        " {} file{} changed, {ta} insertion{}(+), {td} deletion{}(-)\n\n",
        p.files.len(),
        plural(p.files.len() as u64),
        plural(ta),
        plural(td)
    ));
    out.push_str(&unified_diff(p));
    out.push_str("-- \n2.43.0\n\n");
    out
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn live_issue(r: &Repo, n: u64) -> Result<&Issue, Response> {
    let i = r.issue(n).ok_or_else(not_found)?;
    if i.gone {
        return Err(error(
            410,
            "This issue was deleted",
            "https://docs.github.com/rest/issues/issues#get-an-issue",
        ));
    }
    Ok(i)
}

fn parse_num(s: &str) -> Result<u64, Response> {
    s.parse().map_err(|_| not_found())
}

/// Strings from an array of strings or of `{"name": …}` objects.
fn names(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| match x {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o) => o.get("name").and_then(Value::as_str).map(str::to_string),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// GitHub's `Link`: prev, next, last, first, absolute, every query parameter kept
/// as sent except `page`, which is appended last.
fn link_header(req: &Req, url: &str, total: usize, pp: usize, page: usize) -> Option<String> {
    let last = total.div_ceil(pp).max(1);
    if last <= 1 && page <= 1 {
        return None;
    }
    let kept: Vec<&str> = req
        .raw_query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .filter(|kv| kv.split('=').next().map(pct_decode).as_deref() != Some("page"))
        .collect();
    let mk = |n: usize| {
        let mut q = kept.join("&");
        if !q.is_empty() {
            q.push('&');
        }
        format!("<{url}?{q}page={n}>")
    };
    let mut parts = Vec::new();
    if page > 1 {
        parts.push(format!("{}; rel=\"prev\"", mk(page - 1)));
    }
    if page < last {
        parts.push(format!("{}; rel=\"next\"", mk(page + 1)));
        parts.push(format!("{}; rel=\"last\"", mk(last)));
    }
    if page > 1 {
        parts.push(format!("{}; rel=\"first\"", mk(1)));
    }
    Some(parts.join(", "))
}

fn rate_headers(r: &mut Response, s: RateSnap) {
    let h = r.headers_mut();
    h.insert("x-ratelimit-limit", hv(&s.limit.to_string()));
    h.insert(
        "x-ratelimit-remaining",
        hv(&s.limit.saturating_sub(s.used).to_string()),
    );
    h.insert("x-ratelimit-used", hv(&s.used.to_string()));
    h.insert("x-ratelimit-reset", hv(&s.reset.to_string()));
    h.insert("x-ratelimit-resource", hv(s.resource.name()));
}

fn snap_json(s: RateSnap) -> Value {
    json!({"limit": s.limit, "remaining": s.limit.saturating_sub(s.used), "reset": s.reset, "used": s.used, "resource": s.resource.name()})
}

fn json_response(status: u16, v: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("status"))
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(serde_json::to_vec(v).expect("json")))
        .expect("response")
}

fn text_response(status: u16, content_type: &str, text: &str) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("status"))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(text.to_string()))
        .expect("response")
}

/// 201 with `Location` = the object's `url`.
fn created(v: &Value) -> Response {
    let mut r = json_response(201, v);
    if let Some(u) = v.get("url").and_then(Value::as_str) {
        r.headers_mut().insert(header::LOCATION, hv(u));
    }
    r
}

/// basic-error: `{"message","documentation_url","status"}` (status a string).
fn error(status: u16, message: &str, doc: &str) -> Response {
    json_response(
        status,
        &json!({"message": message, "documentation_url": doc, "status": status.to_string()}),
    )
}

fn not_found() -> Response {
    error(404, "Not Found", DOCS)
}

fn validation(errors: Value, doc: &str) -> Response {
    json_response(
        422,
        &json!({"message": "Validation Failed", "errors": errors, "documentation_url": doc, "status": "422"}),
    )
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn recorded_headers(h: &HeaderMap) -> BTreeMap<String, String> {
    h.iter()
        .map(|(k, v)| {
            let name = k.as_str().to_ascii_lowercase();
            let mut val = String::from_utf8_lossy(v.as_bytes()).to_string();
            if name == "authorization" {
                val = match val.split_once(' ') {
                    Some((scheme, tok)) if tok.trim() == TOKEN => format!("{scheme} <token>"),
                    Some((scheme, _)) => format!("{scheme} <redacted>"),
                    None => "<redacted>".to_string(),
                };
            }
            (name, val)
        })
        .collect()
}

fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect()
}

/// Decodes `%XX` and `+` (as space).
fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(x) => {
                        out.push(x);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (c as char).to_string()
            }
            _ => format!("%{c:02X}"),
        })
        .collect()
}

fn hash_of(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// A deterministic 40-hex-digit SHA look-alike.
fn fake_sha(s: &str) -> String {
    format!(
        "{:016x}{:016x}{:08x}",
        hash_of(s),
        hash_of(&format!("1{s}")),
        hash_of(&format!("2{s}")) as u32
    )
}

fn ts(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn parse_ts(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp())
}

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Epoch seconds `d` from now, rounded up.
fn epoch_after(d: Duration) -> u64 {
    let t = SystemTime::now() + d;
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
