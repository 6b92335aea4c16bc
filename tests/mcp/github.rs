//! The `github` plugin against the stateful fake of the GitHub REST API
//! (`tests/support/github.rs`), driven as users drive it: the built binary with the shipped
//! manifest's variables, rmcp's client over stdio. Rate limits, retries and backoff are
//! tested in process under paused time ([`Setup::in_process`]), with GitHub's real windows
//! and the shipped write spacing, asserting the exact waits.
//!
//! The fake keeps GitHub's real limits (10 code searches and 30 searches per window, 5,000 core
//! requests); tests that need a limit reached shrink it in the fake only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{
    airtable::{Client, call_tool, fails, ok},
    fake_github::{FakeConfig, FakeGitHub, LOGIN, TOKEN},
    inproc::Server,
    support::{Fixture, text},
};

struct Setup {
    fx: Fixture,
    fake: FakeGitHub,
    api_url: String,
}

impl Setup {
    fn new() -> Self {
        Self::with(FakeConfig::default())
    }

    fn with(config: FakeConfig) -> Self {
        let fake = FakeGitHub::start_in_thread(config);
        let api_url = fake.api_url();
        let fx = Fixture::empty();
        fx.manifest("github", &manifest());
        Self { fx, fake, api_url }
    }

    /// For a paused-time test: the fake on the test's runtime, and the shipped manifest as it
    /// is (writes a second apart), for [`Setup::in_process_client`].
    async fn in_process(config: FakeConfig) -> Self {
        let fake = FakeGitHub::start(config).await;
        let api_url = fake.api_url();
        let fx = Fixture::empty();
        fx.manifest("github", include_str!("../../plugins/github/plugin.toml"));
        Self { fx, fake, api_url }
    }

    /// The plugin in process, with what `plugboard serve --call-timeout` would get.
    async fn in_process_client(&self, call_timeout: Duration) -> Client {
        Server::new(&self.fx)
            .env("GITHUB_TOKEN", TOKEN)
            .env("GITHUB_API_URL", &self.api_url)
            .call_timeout(call_timeout)
            .client()
            .await
    }

    /// GitHub Enterprise Server's layout: the API under `/api/v3`.
    fn ghes() -> Self {
        let mut setup = Self::new();
        setup.api_url = setup.fake.ghes_url();
        setup
    }

    async fn client(&self) -> Client {
        self.client_with(&[], TOKEN).await
    }

    async fn client_with(&self, extra: &[&str], token: &str) -> Client {
        self.fx
            .stdio_env(
                extra,
                &[
                    ("GITHUB_TOKEN", token),
                    ("GITHUB_API_URL", self.api_url.as_str()),
                ],
                None,
            )
            .await
            .0
    }

    /// The requests the fake received for `path` (without the query).
    fn hits(&self, path: &str) -> Vec<crate::fake_github::Recorded> {
        self.fake
            .requests()
            .into_iter()
            .filter(|r| r.path.split('?').next() == Some(path))
            .collect()
    }
}

/// The shipped manifest (its `[env]` declarations hand the variables to the plugin), with
/// writes unspaced so the tests stay fast.
fn manifest() -> String {
    let shipped = include_str!("../../plugins/github/plugin.toml");
    let head = shipped.split("\n[settings]").next().unwrap();
    assert!(head.contains("[env.GITHUB_TOKEN]"), "{shipped}");
    format!("{head}\n[settings]\nwrite_interval_secs = 0.0\n")
}

/// octo/hello with five issues (one closed, labelled and assigned in various ways) and two
/// pull requests, which GitHub lists among the issues.
fn seed(fake: &FakeGitHub) {
    fake.add_repo("octo/hello", false, true);
    fake.add_issue(
        "octo/hello",
        "Crash on start",
        "It crashes.",
        &["bug"],
        Some("hubot"),
        "open",
    );
    fake.add_issue("octo/hello", "Docs typo", "teh", &["docs"], None, "open");
    fake.add_issue("octo/hello", "Old bug", "fixed", &["bug"], None, "closed");
    fake.add_pull(
        "octo/hello",
        "Fix the crash",
        "fix-crash",
        "main",
        &[(
            "src/main.rs",
            "modified",
            "@@ -1,3 +1,3 @@\n fn main() {\n-    panic!();\n+    run();\n }",
        )],
    );
    fake.add_issue(
        "octo/hello",
        "Slow build",
        "",
        &["perf", "bug"],
        None,
        "open",
    );
    fake.add_pull(
        "octo/hello",
        "Add docs",
        "docs",
        "main",
        &[("README.md", "added", "@@ -0,0 +1 @@\n+# Hello")],
    );
    fake.add_issue(
        "octo/hello",
        "Feature idea",
        "more",
        &[],
        Some(LOGIN),
        "open",
    );
}

fn numbers(list: &Value, key: &str) -> Vec<u64> {
    list[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["number"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn github_issue_lists_leave_out_pull_requests_and_page_through_the_link_header() {
    let s = Setup::new();
    seed(&s.fake);
    let c = s.client().await;

    // Newest first, pull requests (#4, #6) left out and counted.
    let all = ok(
        &c,
        "github_list_issues",
        json!({"owner": "octo", "repo": "hello"}),
    )
    .await;
    assert_eq!(numbers(&all, "issues"), [7, 5, 2, 1]);
    assert_eq!(all["pull_requests_skipped"], 2);
    assert_eq!(all["truncated"], false);
    let first = &all["issues"][3];
    assert_eq!(first["title"], "Crash on start");
    assert_eq!(first["labels"], json!(["bug"]));
    assert_eq!(first["assignees"], json!(["hubot"]));
    assert_eq!(first["user"], LOGIN);
    assert!(
        first.get("body").is_none() && first.get("node_id").is_none(),
        "{first}"
    );

    // Pages of 2 over the 6 open issues and pulls: the Link header says there are 3.
    let page1 = ok(
        &c,
        "github_list_issues",
        json!({"owner": "octo", "repo": "hello", "per_page": 2, "include_pull_requests": true}),
    )
    .await;
    assert_eq!(numbers(&page1, "issues"), [7, 6]);
    assert_eq!(page1["issues"][1]["pull_request"], true);
    assert_eq!(
        (
            &page1["truncated"],
            &page1["next_page"],
            &page1["last_page"]
        ),
        (&json!(true), &json!(2), &json!(3))
    );
    let page3 = ok(
        &c,
        "github_list_issues",
        json!({"owner": "octo", "repo": "hello", "per_page": 2, "page": 3, "include_pull_requests": true}),
    )
    .await;
    assert_eq!(numbers(&page3, "issues"), [2, 1]);
    assert_eq!(page3["truncated"], false);
    assert!(page3.get("next_page").is_none());

    // Filters go to GitHub as its parameters.
    let bugs = ok(
        &c,
        "github_list_issues",
        json!({"owner": "octo", "repo": "hello", "labels": ["bug"], "state": "all", "sort": "created", "direction": "asc"}),
    )
    .await;
    assert_eq!(numbers(&bugs, "issues"), [1, 3, 5]);
    let mine = ok(
        &c,
        "github_list_issues",
        json!({"owner": "octo", "repo": "hello", "assignee": LOGIN}),
    )
    .await;
    assert_eq!(numbers(&mine, "issues"), [7]);
    let closed = ok(
        &c,
        "github_list_issues",
        json!({"owner": "octo", "repo": "hello", "state": "closed", "full": true}),
    )
    .await;
    assert_eq!(numbers(&closed, "issues"), [3]);
    assert!(
        closed["issues"][0]["node_id"].is_string(),
        "full: every field"
    );

    // Every request carried the headers GitHub asks for.
    let requests = s.hits("/repos/octo/hello/issues");
    assert_eq!(requests.len(), 6);
    for r in &requests {
        assert_eq!(r.headers["x-github-api-version"], "2022-11-28");
        assert_eq!(r.headers["accept"], "application/vnd.github+json");
        assert!(
            r.headers["user-agent"].starts_with("plugboard/"),
            "{:?}",
            r.headers
        );
        // The fake records its own token as `<token>`: ours was sent as a bearer token.
        assert_eq!(r.headers["authorization"], "Bearer <token>");
        assert_eq!(r.status, 200);
    }
    assert!(
        requests[3].path.contains("labels=bug"),
        "{}",
        requests[3].path
    );
    c.cancel().await.unwrap();
}

/// Over REST, the GitHub calls show in `/metrics`: what is left of each rate-limit bucket, as
/// GitHub's headers said, and the time writes waited to be spaced out.
#[tokio::test]
async fn github_quota_and_waits_are_in_the_metrics() {
    let s = Setup::new();
    seed(&s.fake);
    // Writes 0.3 s apart: the second comment waits.
    let shipped = include_str!("../../plugins/github/plugin.toml");
    let head = shipped.split("\n[settings]").next().unwrap();
    s.fx.manifest(
        "github",
        &format!("{head}\n[settings]\nwrite_interval_secs = 0.3\n"),
    );
    let mut serve = s.fx.command(&["serve", "--http", "127.0.0.1:0"]);
    serve.envs([
        ("GITHUB_TOKEN", TOKEN),
        ("GITHUB_API_URL", s.api_url.as_str()),
    ]);
    let api = crate::rest::Api::serve(&s.fx, serve).await;
    for n in 0..2 {
        let (status, result) = api
            .post(
                "/api/v1/tools/github_add_issue_comment/call",
                json!({"owner": "octo", "repo": "hello", "issue_number": 1,
                       "body": format!("comment {n}")}),
            )
            .await;
        assert_eq!(status, 200, "{result}");
        assert_eq!(result["isError"], false, "{result}");
    }
    let metrics = api.metrics().await;
    let remaining = metrics.sample("plugboard_github_ratelimit_remaining", &["bucket=\"core\""]);
    assert!(remaining > 0.0 && remaining < 5000.0, "{remaining}");
    let spaced = metrics.sample(
        "plugboard_github_wait_seconds_count",
        &["reason=\"write_spacing\""],
    );
    assert!(spaced >= 1.0, "{spaced}");
    let waited = metrics.sample(
        "plugboard_github_wait_seconds_sum",
        &["reason=\"write_spacing\""],
    );
    assert!(waited > 0.1, "{waited}");
}

#[tokio::test]
async fn github_issues_are_created_updated_commented_and_read_back_once() {
    let s = Setup::new();
    seed(&s.fake);
    let c = s.client().await;

    let created = ok(
        &c,
        "github_issue_write",
        json!({"method": "create", "owner": "octo", "repo": "hello", "title": "New bug",
               "body": "Steps: run it.", "labels": ["bug", "triage"], "assignees": [LOGIN]}),
    )
    .await;
    let n = created["number"].as_u64().unwrap();
    assert_eq!(n, 8);
    assert_eq!(created["labels"], json!(["bug", "triage"]));
    assert_eq!(created["state"], "open");
    let stored: Vec<Value> = s
        .fake
        .issues("octo/hello")
        .into_iter()
        .filter(|i| i["title"] == "New bug")
        .collect();
    assert_eq!(stored.len(), 1, "created exactly once");
    assert_eq!(stored[0]["body"], "Steps: run it.");

    let closed = ok(
        &c,
        "github_issue_write",
        json!({"method": "update", "owner": "octo", "repo": "hello", "issue_number": n,
               "state": "closed", "state_reason": "not_planned", "labels": ["wontfix"]}),
    )
    .await;
    assert_eq!(closed["state"], "closed");
    assert_eq!(closed["state_reason"], "not_planned");
    assert_eq!(closed["labels"], json!(["wontfix"]));

    let comment = ok(
        &c,
        "github_add_issue_comment",
        json!({"owner": "octo", "repo": "hello", "issue_number": n, "body": "Closing: duplicate of #1."}),
    )
    .await;
    assert!(comment["id"].as_u64().is_some(), "{comment}");
    assert_eq!(s.fake.comments("octo/hello", n).len(), 1);

    let issue = ok(
        &c,
        "github_issue_read",
        json!({"method": "get", "owner": "octo", "repo": "hello", "issue_number": n}),
    )
    .await;
    assert_eq!(issue["body"], "Steps: run it.");
    assert_eq!(issue["comments"], 1);
    let comments = ok(
        &c,
        "github_issue_read",
        json!({"method": "get_comments", "owner": "octo", "repo": "hello", "issue_number": n}),
    )
    .await;
    assert_eq!(comments["count"], 1);
    assert_eq!(comments["comments"][0]["body"], "Closing: duplicate of #1.");
    assert_eq!(comments["comments"][0]["user"], LOGIN);

    // Mistakes are caught before anything is sent, with what to do instead.
    let before = s.fake.requests().len();
    let e = fails(
        &c,
        "github_issue_write",
        json!({"method": "update", "owner": "octo", "repo": "hello", "issue_number": n}),
    )
    .await;
    assert!(e.contains("changes nothing"), "{e}");
    let e = fails(
        &c,
        "github_issue_write",
        json!({"method": "create", "owner": "octo", "repo": "hello", "body": "no title"}),
    )
    .await;
    assert!(e.contains("needs a title"), "{e}");
    let e = fails(
        &c,
        "github_issue_read",
        json!({"method": "get", "owner": "octo/hello", "repo": "hello", "issue_number": 1}),
    )
    .await;
    assert!(e.contains("owner `octo`"), "{e}");
    let e = fails(
        &c,
        "github_issue_read",
        json!({"method": "fetch", "owner": "octo", "repo": "hello", "issue_number": 1}),
    )
    .await;
    assert!(e.contains("method"), "{e}");
    assert_eq!(
        s.fake.requests().len(),
        before,
        "nothing sent for bad arguments"
    );
    assert_eq!(
        s.fake.issues("octo/hello").len(),
        8,
        "7 seeded + 1 created + nothing else"
    );
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn github_pull_requests_files_and_diffs_in_bounded_pieces() {
    let s = Setup::new();
    s.fake.add_repo("octo/big", false, true);
    // A pull request changing 12 files, each with a 40-line hunk: a diff of ~14 KB.
    let hunks: Vec<(String, String)> = (0..12)
        .map(|f| {
            let lines: String = (0..40)
                .map(|l| format!("\n+line {l} of file {f}: some added text"))
                .collect();
            (
                format!("src/file{f:02}.rs"),
                format!("@@ -0,0 +1,40 @@{lines}"),
            )
        })
        .collect();
    let files: Vec<(&str, &str, &str)> = hunks
        .iter()
        .map(|(name, patch)| (name.as_str(), "added", patch.as_str()))
        .collect();
    let n = s
        .fake
        .add_pull("octo/big", "Big change", "feature", "main", &files);
    let c = s.client().await;

    let pulls = ok(
        &c,
        "github_list_pull_requests",
        json!({"owner": "octo", "repo": "big"}),
    )
    .await;
    assert_eq!(numbers(&pulls, "pull_requests"), [n]);
    assert_eq!(pulls["pull_requests"][0]["head"], "octo:feature");
    assert_eq!(pulls["pull_requests"][0]["base"], "main");

    let pull = ok(
        &c,
        "github_pull_request_read",
        json!({"method": "get", "owner": "octo", "repo": "big", "pull_number": n}),
    )
    .await;
    assert_eq!(pull["changed_files"], 12);
    assert_eq!(pull["additions"], 480);
    assert_eq!(pull["mergeable"], true);

    let files = ok(
        &c,
        "github_pull_request_read",
        json!({"method": "get_files", "owner": "octo", "repo": "big", "pull_number": n, "per_page": 5}),
    )
    .await;
    assert_eq!(files["count"], 5);
    assert_eq!(files["next_page"], 2);
    assert_eq!(files["last_page"], 3);
    assert_eq!(
        files["files"][0],
        json!({"filename": "src/file00.rs", "status": "added", "additions": 40, "deletions": 0})
    );

    // The whole diff, then the same diff in pieces of at most 3,000 bytes: each piece ends on
    // a line and says where to go on; put together they are the diff, byte for byte.
    let whole = diff(&c, json!({"pull_number": n, "max_bytes": 200000})).await;
    assert!(
        whole.starts_with("diff --git a/src/file00.rs b/src/file00.rs"),
        "{whole}"
    );
    assert!(
        whole.len() > 12_000 && !whole.contains("[diff truncated"),
        "{}",
        whole.len()
    );
    let (mut joined, mut offset, mut pieces) = (String::new(), 0u64, 0);
    loop {
        let piece = diff(
            &c,
            json!({"pull_number": n, "max_bytes": 3000, "offset": offset}),
        )
        .await;
        pieces += 1;
        let (body, marker) = piece.rsplit_once("\n[").expect("a closing marker");
        assert!(body.len() <= 3000, "{}", body.len());
        joined.push_str(body);
        joined.push('\n');
        if marker.starts_with("end of diff") {
            break;
        }
        assert!(marker.starts_with("diff truncated: bytes "), "{marker}");
        offset = marker
            .split("offset ")
            .nth(1)
            .and_then(|m| m.split(' ').next())
            .and_then(|m| m.parse().ok())
            .expect("an offset to continue from");
        assert!(pieces < 20, "the pieces must advance");
    }
    assert!(pieces >= 5, "{pieces}");
    assert_eq!(joined, whole);
    let diff_requests = s.hits(&format!("/repos/octo/big/pulls/{n}"));
    assert!(
        diff_requests
            .iter()
            .filter(|r| r.headers["accept"] == "application/vnd.github.diff")
            .count()
            > 5
    );

    // One file's part only.
    let one = diff(&c, json!({"pull_number": n, "files": ["src/file07.rs"]})).await;
    assert!(
        one.starts_with("diff --git a/src/file07.rs b/src/file07.rs"),
        "{one}"
    );
    assert_eq!(one.matches("diff --git").count(), 1);
    let e = fails(
        &c,
        "github_pull_request_read",
        json!({"method": "get_diff", "owner": "octo", "repo": "big", "pull_number": n, "files": ["nope.rs"]}),
    )
    .await;
    assert!(
        e.contains("no changes to nope.rs") && e.contains("get_files"),
        "{e}"
    );

    // Opening pull requests: one that GitHub accepts, then its validation errors.
    s.fake.add_branch("octo/big", "next");
    let opened = ok(
        &c,
        "github_create_pull_request",
        json!({"owner": "octo", "repo": "big", "title": "Next", "head": "next", "base": "main", "draft": true}),
    )
    .await;
    assert_eq!(opened["number"], n + 1);
    assert_eq!(opened["draft"], true);
    let e = fails(
        &c,
        "github_create_pull_request",
        json!({"owner": "octo", "repo": "big", "title": "Again", "head": "next", "base": "main"}),
    )
    .await;
    assert!(e.contains("A pull request already exists"), "{e}");
    let e = fails(
        &c,
        "github_create_pull_request",
        json!({"owner": "octo", "repo": "big", "title": "Nowhere", "head": "no-such-branch", "base": "main"}),
    )
    .await;
    assert!(
        e.contains("Validation Failed") && e.contains("head: invalid"),
        "{e}"
    );
    c.cancel().await.unwrap();
}

async fn diff(c: &Client, mut args: Value) -> String {
    args["method"] = json!("get_diff");
    args["owner"] = json!("octo");
    args["repo"] = json!("big");
    let result = call_tool(c, "github_pull_request_read", args).await;
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    text(&result)
}

#[tokio::test]
async fn github_search_finds_code_issues_and_pull_requests() {
    let s = Setup::ghes();
    seed(&s.fake);
    s.fake
        .add_code("octo/hello", "src/url.rs", "pub fn parse_url(s: &str) {}\n");
    s.fake.add_code(
        "octo/hello",
        "src/main.rs",
        "fn main() { parse_url(\"x\"); }\n",
    );
    s.fake.add_code("octo/hello", "README.md", "nothing here\n");
    let c = s.client().await;

    let code = ok(
        &c,
        "github_search_code",
        json!({"query": "parse_url repo:octo/hello language:rust"}),
    )
    .await;
    assert_eq!(code["total_count"], 2);
    assert_eq!(code["items"][0]["repository"], "octo/hello");
    let paths: Vec<&str> = code["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["src/main.rs", "src/url.rs"]);

    let prs = ok(
        &c,
        "github_search_issues",
        json!({"query": "repo:octo/hello fix", "kind": "pull_request"}),
    )
    .await;
    assert_eq!(numbers(&prs, "items"), [4]);
    assert_eq!(prs["items"][0]["repository"], "octo/hello");
    assert_eq!(prs["items"][0]["pull_request"], true);
    let bugs = ok(
        &c,
        "github_search_issues",
        json!({"query": "repo:octo/hello label:bug", "kind": "issue", "per_page": 1}),
    )
    .await;
    assert_eq!(bugs["total_count"], 3);
    assert_eq!(bugs["next_page"], 2);
    let searches = s.hits("/api/v3/search/issues");
    assert!(
        searches[0].path.contains("is%3Apr") || searches[0].path.contains("is:pr"),
        "{}",
        searches[0].path
    );

    // Beyond GitHub's 1,000 results: what to do instead.
    let e = fails(
        &c,
        "github_search_issues",
        json!({"query": "repo:octo/hello bug", "page": 11, "per_page": 100}),
    )
    .await;
    assert!(
        e.contains("first 1,000 results") && e.contains("narrow the query"),
        "{e}"
    );
    // A code search GitHub refuses (no search term).
    let e = fails(
        &c,
        "github_search_code",
        json!({"query": "repo:octo/hello"}),
    )
    .await;
    assert!(e.contains("GitHub rejected it"), "{e}");
    // All of it under the GHES prefix.
    assert!(
        s.fake
            .requests()
            .iter()
            .all(|r| r.path.starts_with("/api/v3/"))
    );
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn github_errors_say_what_to_fix_and_never_show_the_token() {
    let s = Setup::new();
    seed(&s.fake);
    s.fake.add_repo("octo/secret", true, false);
    s.fake.mark_gone("octo/hello", 2);
    let c = s.client().await;

    let e = fails(
        &c,
        "github_list_issues",
        json!({"owner": "octo", "repo": "secret"}),
    )
    .await;
    assert!(
        e.contains("private") && e.contains("GITHUB_TOKEN cannot see it"),
        "{e}"
    );
    let e = fails(
        &c,
        "github_issue_read",
        json!({"method": "get", "owner": "octo", "repo": "hello", "issue_number": 2}),
    )
    .await;
    assert!(e.contains("gone") && e.contains("deleted"), "{e}");
    let e = fails(
        &c,
        "github_issue_read",
        json!({"method": "get", "owner": "octo", "repo": "hello", "issue_number": 99}),
    )
    .await;
    assert!(e.contains("not found"), "{e}");
    // The server keeps serving after every error.
    let still = ok(
        &c,
        "github_list_issues",
        json!({"owner": "octo", "repo": "hello"}),
    )
    .await;
    assert_eq!(still["count"], 3);
    c.cancel().await.unwrap();

    let wrong = "ghp_wrongwrongwrongwrongwrongwrongwrong";
    let c = s.client_with(&[], wrong).await;
    let e = fails(
        &c,
        "github_list_issues",
        json!({"owner": "octo", "repo": "hello"}),
    )
    .await;
    assert!(
        e.contains("Bad credentials") && e.contains("GITHUB_TOKEN"),
        "{e}"
    );
    assert!(!e.contains(wrong), "{e}");
    c.cancel().await.unwrap();
}

/// The wall clock's Unix seconds, which the client reads `x-ratelimit-reset` against.
fn wall_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A secondary limit's `retry-after` (GitHub asks for a minute) is waited out exactly, then
/// the write is sent again and lands once.
#[tokio::test(start_paused = true)]
async fn github_secondary_limits_are_waited_out_and_retried() {
    let s = Setup::in_process(FakeConfig::default()).await;
    seed(&s.fake);
    let c = s.in_process_client(Duration::from_secs(120)).await;
    s.fake.secondary_limit_next(1, Duration::from_secs(60));
    let created = ok(
        &c,
        "github_add_issue_comment",
        json!({"owner": "octo", "repo": "hello", "issue_number": 1, "body": "once"}),
    )
    .await;
    assert!(created["id"].is_u64());
    let posts = s.hits("/repos/octo/hello/issues/1/comments");
    assert_eq!(
        posts.iter().map(|r| r.status).collect::<Vec<_>>(),
        [403, 201],
        "refused once, then sent again"
    );
    assert_eq!(posts[1].at - posts[0].at, Duration::from_secs(60));
    assert_eq!(
        s.fake.comments("octo/hello", 1).len(),
        1,
        "exactly one comment"
    );
    c.cancel().await.unwrap();
}

/// GitHub's 10 code searches a minute: the eleventh waits for the window's reset instead of
/// being refused, as long as the header said (to the reset, plus a second).
#[tokio::test(start_paused = true)]
async fn github_code_search_stays_under_its_per_minute_limit() {
    let s = Setup::in_process(FakeConfig::default()).await;
    seed(&s.fake);
    s.fake.add_code("octo/hello", "a.rs", "needle\n");
    let c = s.in_process_client(Duration::from_secs(120)).await;
    let search = json!({"query": "needle repo:octo/hello"});
    for _ in 0..10 {
        let found = ok(&c, "github_search_code", search.clone()).await;
        assert_eq!(found["total_count"], 1);
    }
    let (before, started) = (wall_secs(), Instant::now());
    let found = ok(&c, "github_search_code", search.clone()).await;
    let (waited, after) = (started.elapsed(), wall_secs());
    assert_eq!(found["total_count"], 1);
    let hits = s.hits("/search/code");
    let statuses: Vec<u16> = hits.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200; 11], "never refused");
    assert_eq!(
        hits[10].at - hits[9].at,
        waited,
        "the wait was before sending"
    );
    // `reset − now + 1 s`, now being the wall clock's second when the client decided.
    let reset = hits[9].rate_reset.expect("x-ratelimit-reset");
    let hinted = (reset - after + 1)..=(reset - before + 1);
    assert!(
        waited.subsec_nanos() == 0 && hinted.contains(&waited.as_secs()),
        "waited {waited:?}; the reset asked for {hinted:?} s"
    );
    assert!(waited >= Duration::from_secs(60), "a whole window");
    c.cancel().await.unwrap();
}

/// A limit that would outlast the call is reported at once, saying when to try again, and
/// the request is never sent.
#[tokio::test(start_paused = true)]
async fn github_says_plainly_when_a_rate_limit_outlasts_the_call() {
    // Code search: 10 a minute; the call may run 30 s, so the eleventh search cannot wait.
    let s = Setup::in_process(FakeConfig {
        core_limit: 3,
        ..FakeConfig::default()
    })
    .await;
    seed(&s.fake);
    s.fake.add_code("octo/hello", "a.rs", "needle\n");
    let c = s.in_process_client(Duration::from_secs(30)).await;
    let search = json!({"query": "needle repo:octo/hello"});
    for _ in 0..10 {
        ok(&c, "github_search_code", search.clone()).await;
    }
    let started = Instant::now();
    let e = fails(&c, "github_search_code", search.clone()).await;
    assert_eq!(started.elapsed(), Duration::ZERO, "answered at once");
    assert!(
        e.contains("code-search rate limit (10 requests a minute) is used up until")
            && e.contains("longer than this call may still wait")
            && e.contains("try again after"),
        "{e}"
    );
    assert_eq!(
        s.hits("/search/code").len(),
        10,
        "the eleventh was never sent"
    );

    // The core limit (3 an hour here, 5,000 for real): the fourth request is not sent either.
    for _ in 0..3 {
        ok(
            &c,
            "github_list_issues",
            json!({"owner": "octo", "repo": "hello"}),
        )
        .await;
    }
    let started = Instant::now();
    let e = fails(
        &c,
        "github_list_issues",
        json!({"owner": "octo", "repo": "hello"}),
    )
    .await;
    assert_eq!(started.elapsed(), Duration::ZERO, "answered at once");
    assert!(
        e.contains("REST rate limit (3 requests an hour) is used up"),
        "{e}"
    );
    assert_eq!(s.hits("/repos/octo/hello/issues").len(), 3);
    c.cancel().await.unwrap();
}

/// A secondary limit asking for longer than the call may run is reported at once, not
/// applied; once it has passed, the same call goes through (a write spacing later).
#[tokio::test(start_paused = true)]
async fn github_secondary_limit_longer_than_the_call_is_reported_at_once() {
    let s = Setup::in_process(FakeConfig::default()).await;
    seed(&s.fake);
    let c = s.in_process_client(Duration::from_secs(30)).await;
    s.fake.secondary_limit_next(1, Duration::from_secs(90));
    let started = Instant::now();
    let comment = json!({"owner": "octo", "repo": "hello", "issue_number": 1, "body": "later"});
    let e = fails(&c, "github_add_issue_comment", comment.clone()).await;
    assert_eq!(started.elapsed(), Duration::ZERO, "answered at once");
    assert!(
        e.contains("secondary rate limit asks to wait 90 s")
            && e.contains("not applied; try again after"),
        "{e}"
    );
    assert!(s.fake.comments("octo/hello", 1).is_empty());
    // The limit has passed in the fake: the same call now goes through.
    ok(&c, "github_add_issue_comment", comment).await;
    assert_eq!(s.fake.comments("octo/hello", 1).len(), 1);
    let posts = s.hits("/repos/octo/hello/issues/1/comments");
    assert_eq!(
        posts[1].at - posts[0].at,
        Duration::from_secs(1),
        "the shipped write spacing"
    );
    c.cancel().await.unwrap();
}

/// 5xx on a read are retried after a backoff (500 ms doubling, each jittered to between half
/// and all of itself); a write GitHub refused (503) is sent again, no sooner than the write
/// spacing allows; a write that may have landed (500) is reported, never repeated.
#[tokio::test(start_paused = true)]
async fn github_server_errors_retry_reads_and_never_repeat_a_write() {
    let s = Setup::in_process(FakeConfig::default()).await;
    seed(&s.fake);
    let c = s.in_process_client(Duration::from_secs(120)).await;
    // A read through a 502 and a 500: retried, answered.
    s.fake.fail_next(1, 502, false);
    s.fake.fail_next(1, 500, false);
    let listed = ok(
        &c,
        "github_list_issues",
        json!({"owner": "octo", "repo": "hello"}),
    )
    .await;
    assert_eq!(listed["count"], 4);
    let reads = s.hits("/repos/octo/hello/issues");
    let statuses: Vec<u16> = reads.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [502, 500, 200]);
    let ms = Duration::from_millis;
    let first = reads[1].at - reads[0].at;
    let second = reads[2].at - reads[1].at;
    assert!((ms(250)..=ms(500)).contains(&first), "{first:?}");
    assert!((ms(500)..=ms(1000)).contains(&second), "{second:?}");

    // A write refused with 503 (not applied): sent again, lands once.
    s.fake.fail_next(1, 503, false);
    ok(
        &c,
        "github_add_issue_comment",
        json!({"owner": "octo", "repo": "hello", "issue_number": 2, "body": "first"}),
    )
    .await;
    assert_eq!(s.fake.comments("octo/hello", 2).len(), 1);
    let posts = s.hits("/repos/octo/hello/issues/2/comments");
    assert_eq!(
        posts[1].at - posts[0].at,
        Duration::from_secs(1),
        "the backoff (≤ 500 ms), then the rest of the write spacing"
    );

    // A write that landed but whose answer was a 500: reported, not repeated.
    s.fake.fail_next(1, 500, true);
    let e = fails(
        &c,
        "github_add_issue_comment",
        json!({"owner": "octo", "repo": "hello", "issue_number": 2, "body": "second"}),
    )
    .await;
    assert!(e.contains("may or may not have been made"), "{e}");
    assert_eq!(
        s.fake.comments("octo/hello", 2).len(),
        2,
        "landed exactly once"
    );
    assert_eq!(s.hits("/repos/octo/hello/issues/2/comments").len(), 3);
    c.cancel().await.unwrap();
}

#[tokio::test]
async fn github_read_only_mode_publishes_only_the_read_tools() {
    let s = Setup::new();
    let c = s.client_with(&["--read-only"], TOKEN).await;
    let mut names: Vec<String> = c
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    let read: Vec<String> = crate::snapshots::snapshotted("github_")
        .into_iter()
        .filter(|(_, tool)| tool["annotations"]["readOnlyHint"] == true)
        .map(|(name, _)| name)
        .collect();
    assert!(!read.is_empty() && names == read, "{names:?}, not {read:?}");
    c.cancel().await.unwrap();
}

/// An error body that repeats the request's headers never shows the token.
#[tokio::test]
async fn github_an_error_echoing_the_headers_shows_no_token() {
    let s = Setup::new();
    seed(&s.fake);
    let c = s.client().await;
    s.fake.echo_headers_next(1);
    let e = fails(
        &c,
        "github_list_issues",
        json!({"owner": "octo", "repo": "hello"}),
    )
    .await;
    assert!(e.contains("Bad request; headers: "), "{e}");
    assert!(e.contains("authorization: Bearer [redacted]"), "{e}");
    assert!(!e.contains(TOKEN), "{e}");
    c.cancel().await.unwrap();
}

/// Rate-limit headers no clock can hold (`retry-after` and `x-ratelimit-reset` of u64::MAX,
/// 1e300) are reported as waits too long for the call, never an overflow.
#[tokio::test]
async fn github_hostile_rate_limit_headers_are_reported() {
    let s = Setup::new();
    seed(&s.fake);
    let c = s.client_with(&["--call-timeout", "5"], TOKEN).await;
    let max = u64::MAX.to_string();
    let secondary = r#"{"message":"You have exceeded a secondary rate limit."}"#;
    for retry_after in [max.as_str(), "1e300"] {
        s.fake
            .raw_next(403, &[("retry-after", retry_after)], secondary);
        let e = fails(
            &c,
            "github_list_issues",
            json!({"owner": "octo", "repo": "hello"}),
        )
        .await;
        assert!(e.contains("secondary rate limit asks to wait"), "{e}");
    }
    s.fake.raw_next(
        403,
        &[
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &max),
        ],
        r#"{"message":"API rate limit exceeded"}"#,
    );
    let e = fails(
        &c,
        "github_list_issues",
        json!({"owner": "octo", "repo": "hello"}),
    )
    .await;
    assert!(
        e.contains("REST rate limit (5000 requests an hour) is used up"),
        "{e}"
    );
    c.cancel().await.unwrap();
}

/// Every secret the server holds is masked in everything it returns, whatever the text came
/// from: here a model provider's key (which the GitHub client never sees) inside an issue
/// body and inside an upstream error, in both the text and the structured result.
#[tokio::test]
async fn a_key_held_anywhere_is_masked_in_any_result() {
    let s = Setup::new();
    seed(&s.fake);
    let other = crate::fake_llm::KEY;
    let n = s.fake.add_issue(
        "octo/hello",
        "Leaked",
        &format!("my key is {other} oops"),
        &[],
        None,
        "open",
    );
    let c =
        s.fx.stdio_env(
            &[],
            &[
                ("GITHUB_TOKEN", TOKEN),
                ("GITHUB_API_URL", s.api_url.as_str()),
                ("OPENAI_API_KEY", other),
            ],
            None,
        )
        .await
        .0;
    let result = call_tool(
        &c,
        "github_issue_read",
        json!({"owner": "octo", "repo": "hello", "issue_number": n, "method": "get"}),
    )
    .await;
    let shown = format!("{} {:?}", text(&result), result.structured_content);
    assert!(shown.contains("my key is [redacted] oops"), "{shown}");
    assert!(!shown.contains(other), "{shown}");
    s.fake.raw_next(
        400,
        &[],
        &format!(r#"{{"message":"Bad request: x-upstream-key: {other}"}}"#),
    );
    let e = fails(
        &c,
        "github_list_issues",
        json!({"owner": "octo", "repo": "hello"}),
    )
    .await;
    assert!(e.contains("x-upstream-key: [redacted]"), "{e}");
    assert!(!e.contains(other), "{e}");
    c.cancel().await.unwrap();
}
