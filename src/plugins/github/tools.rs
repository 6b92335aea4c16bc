//! The `github_*` tools. Few tools, each with a `method` where reads of one object belong
//! together (as github-mcp-server does), answers with only the fields a model needs unless it
//! asks for `full`, and lists bounded by `per_page` with the next page to ask for.

use std::sync::Arc;

use reqwest::Method;
use rmcp::model::{CallToolResult, ContentBlock};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    GitHub,
    client::{DIFF, JSON, Response, TEXT_MATCH, advice},
};
use crate::plugin::{Hints, ToolContext, ToolDef, ToolError, ToolOutcome};

pub fn all(gh: Arc<GitHub>) -> Vec<ToolDef> {
    let read = Hints::read_only().open_world();
    let g = |gh: &Arc<GitHub>| gh.clone();
    let (a, b, c, d, e, f, h, i) = (
        g(&gh),
        g(&gh),
        g(&gh),
        g(&gh),
        g(&gh),
        g(&gh),
        g(&gh),
        g(&gh),
    );
    vec![
        ToolDef::new(
            "list_issues",
            "List a repository's issues (pull requests left out unless include_pull_requests), \
             newest first, filtered by state, labels, assignee and since.",
            read,
            move |args: ListIssues, cx| {
                let gh = a.clone();
                async move { gh.list_issues(args, cx).await }
            },
        )
        .with_title("List GitHub issues"),
        ToolDef::new(
            "issue_read",
            "Read an issue or pull request by number: `get` (the issue with its body) or \
             `get_comments` (its comments, oldest first).",
            read,
            move |args: IssueRead, cx| {
                let gh = b.clone();
                async move { gh.issue_read(args, cx).await }
            },
        )
        .with_title("Read a GitHub issue"),
        ToolDef::new(
            "issue_write",
            "Create an issue (`create`: title required) or change one (`update`: only the fields \
             given change; labels and assignees replace the current ones; state closes or \
             reopens).",
            Hints::destructive(false).open_world(),
            move |args: IssueWrite, cx| {
                let gh = c.clone();
                async move { gh.issue_write(args, cx).await }
            },
        )
        .with_title("Create or update a GitHub issue"),
        ToolDef::new(
            "add_issue_comment",
            "Comment on an issue or pull request.",
            Hints::additive().open_world(),
            move |args: AddComment, cx| {
                let gh = d.clone();
                async move { gh.add_comment(args, cx).await }
            },
        )
        .with_title("Comment on a GitHub issue"),
        ToolDef::new(
            "list_pull_requests",
            "List a repository's pull requests, filtered by state, head and base branch.",
            read,
            move |args: ListPulls, cx| {
                let gh = e.clone();
                async move { gh.list_pulls(args, cx).await }
            },
        )
        .with_title("List GitHub pull requests"),
        ToolDef::new(
            "pull_request_read",
            "Read a pull request: `get` (state, branches, mergeability, counts, body), \
             `get_files` (changed files with line counts, paged) or `get_diff` (the unified \
             diff, optionally of some files, in pieces of max_bytes; a truncated piece ends with \
             the offset to continue from).",
            read,
            move |args: PullRead, cx| {
                let gh = f.clone();
                async move { gh.pull_read(args, cx).await }
            },
        )
        .with_title("Read a GitHub pull request"),
        ToolDef::new(
            "create_pull_request",
            "Open a pull request from branch `head` (`owner:branch` for a fork) into `base`.",
            Hints::additive().open_world(),
            move |args: CreatePull, cx| {
                let gh = h.clone();
                async move { gh.create_pull(args, cx).await }
            },
        )
        .with_title("Open a GitHub pull request"),
        ToolDef::new(
            "search_code",
            "Search code on default branches with GitHub's code search syntax, e.g. `parse_url \
             repo:owner/name language:rust` (needs a search term; at most 10 searches a minute).",
            read,
            move |args: SearchCode, cx| {
                let gh = i.clone();
                async move { gh.search_code(args, cx).await }
            },
        )
        .with_title("Search GitHub code"),
        ToolDef::new(
            "search_issues",
            "Search issues and pull requests across repositories with GitHub's search syntax, \
             e.g. `crash repo:owner/name is:open label:bug`.",
            read,
            move |args: SearchIssues, cx| {
                let gh = gh.clone();
                async move { gh.search_issues(args, cx).await }
            },
        )
        .with_title("Search GitHub issues and pull requests"),
    ]
}

// ---- arguments ---------------------------------------------------------------------------

#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Open,
    Closed,
    All,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Closed => "closed",
            State::All => "all",
        }
    }
}

#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Asc,
    Desc,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Asc => "asc",
            Direction::Desc => "desc",
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListIssues {
    owner: String,
    repo: String,
    /// Default open.
    #[serde(default)]
    state: Option<State>,
    /// Only issues with all of these labels.
    #[serde(default)]
    labels: Vec<String>,
    /// A login, `none` or `*`.
    #[serde(default)]
    assignee: Option<String>,
    /// Only issues updated at or after this time (ISO 8601).
    #[serde(default)]
    since: Option<String>,
    /// created (default), updated or comments.
    #[serde(default)]
    sort: Option<IssueSort>,
    #[serde(default)]
    direction: Option<Direction>,
    #[serde(default)]
    include_pull_requests: bool,
    /// Page to read (default 1).
    #[serde(default)]
    #[schemars(range(min = 1))]
    page: Option<u32>,
    /// Items per page (default 30, at most 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    per_page: Option<u32>,
    /// Every field GitHub returns instead of the essentials.
    #[serde(default)]
    full: bool,
}

#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum IssueSort {
    Created,
    Updated,
    Comments,
}

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IssueReadMethod {
    Get,
    GetComments,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueRead {
    method: IssueReadMethod,
    owner: String,
    repo: String,
    issue_number: u64,
    /// get_comments: only comments updated at or after this time (ISO 8601).
    #[serde(default)]
    since: Option<String>,
    /// get_comments: page to read (default 1).
    #[serde(default)]
    #[schemars(range(min = 1))]
    page: Option<u32>,
    /// get_comments: comments per page (default 30, at most 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    per_page: Option<u32>,
    /// Every field GitHub returns instead of the essentials.
    #[serde(default)]
    full: bool,
}

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IssueWriteMethod {
    Create,
    Update,
}

#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum OpenClosed {
    Open,
    Closed,
}

#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum StateReason {
    Completed,
    NotPlanned,
    Duplicate,
    Reopened,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueWrite {
    method: IssueWriteMethod,
    owner: String,
    repo: String,
    /// update: the issue to change.
    #[serde(default)]
    issue_number: Option<u64>,
    #[serde(default)]
    title: Option<String>,
    /// Markdown.
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    labels: Option<Vec<String>>,
    /// Logins.
    #[serde(default)]
    assignees: Option<Vec<String>>,
    /// Milestone number.
    #[serde(default)]
    milestone: Option<u64>,
    /// update: close or reopen.
    #[serde(default)]
    state: Option<OpenClosed>,
    /// update: why it was closed (or `reopened`).
    #[serde(default)]
    state_reason: Option<StateReason>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddComment {
    owner: String,
    repo: String,
    issue_number: u64,
    /// Markdown.
    body: String,
}

#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub enum PullSort {
    Created,
    Updated,
    Popularity,
    LongRunning,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListPulls {
    owner: String,
    repo: String,
    /// Default open.
    #[serde(default)]
    state: Option<State>,
    /// Source branch as `owner:branch`.
    #[serde(default)]
    head: Option<String>,
    /// Target branch.
    #[serde(default)]
    base: Option<String>,
    #[serde(default)]
    sort: Option<PullSort>,
    #[serde(default)]
    direction: Option<Direction>,
    /// Page to read (default 1).
    #[serde(default)]
    #[schemars(range(min = 1))]
    page: Option<u32>,
    /// Items per page (default 30, at most 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    per_page: Option<u32>,
    /// Every field GitHub returns instead of the essentials.
    #[serde(default)]
    full: bool,
}

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PullReadMethod {
    Get,
    GetFiles,
    GetDiff,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRead {
    method: PullReadMethod,
    owner: String,
    repo: String,
    pull_number: u64,
    /// get_diff: only these files' parts of the diff (paths as get_files lists them).
    #[serde(default)]
    files: Vec<String>,
    /// get_diff: byte offset to continue from (a truncated piece names it).
    #[serde(default)]
    offset: Option<u64>,
    /// get_diff: most bytes to return (default 20000).
    #[serde(default)]
    #[schemars(range(min = 1000, max = 200000))]
    max_bytes: Option<u32>,
    /// get_files: page to read (default 1).
    #[serde(default)]
    #[schemars(range(min = 1))]
    page: Option<u32>,
    /// get_files: files per page (default 30, at most 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    per_page: Option<u32>,
    /// Every field GitHub returns instead of the essentials (get_files: with patches).
    #[serde(default)]
    full: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePull {
    owner: String,
    repo: String,
    title: String,
    /// Branch with the changes (`owner:branch` for a fork).
    head: String,
    /// Branch to merge into.
    base: String,
    /// Markdown.
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    draft: bool,
    /// Let maintainers push to the head branch.
    #[serde(default)]
    maintainer_can_modify: Option<bool>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchCode {
    /// GitHub code search query.
    query: String,
    /// Page to read (default 1).
    #[serde(default)]
    #[schemars(range(min = 1))]
    page: Option<u32>,
    /// Results per page (default 20, at most 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    per_page: Option<u32>,
    /// Every field GitHub returns instead of the essentials.
    #[serde(default)]
    full: bool,
}

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Issue,
    PullRequest,
    Any,
}

#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub enum SearchSort {
    Comments,
    Reactions,
    Created,
    Updated,
    Interactions,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchIssues {
    /// GitHub issue search query.
    query: String,
    /// Adds is:issue or is:pr to the query (default any).
    #[serde(default)]
    kind: Option<Kind>,
    /// Default: best match.
    #[serde(default)]
    sort: Option<SearchSort>,
    #[serde(default)]
    order: Option<Direction>,
    /// Page to read (default 1).
    #[serde(default)]
    #[schemars(range(min = 1))]
    page: Option<u32>,
    /// Results per page (default 30, at most 100).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    per_page: Option<u32>,
    /// Every field GitHub returns instead of the essentials.
    #[serde(default)]
    full: bool,
}

// ---- handlers ----------------------------------------------------------------------------

/// Default size of one piece of a diff.
const DIFF_PIECE: usize = 20_000;

impl GitHub {
    fn repo_url(&self, owner: &str, repo: &str, rest: &[&str]) -> Result<url::Url, ToolError> {
        for (what, v) in [("owner", owner), ("repo", repo)] {
            if v.is_empty() || v.contains('/') || v == "." || v == ".." {
                return Err(ToolError::InvalidArguments(format!(
                    "`{what}` must be a single name (for github.com/octo/hello: owner `octo`, repo `hello`), got `{v}`"
                )));
            }
        }
        let mut segments = vec!["repos", owner, repo];
        segments.extend_from_slice(rest);
        Ok(self.client.url(&segments))
    }

    async fn get(
        &self,
        url: url::Url,
        cx: &ToolContext,
        what: &str,
    ) -> Result<Response, ToolError> {
        self.client.get(url, cx).await.map_err(|f| advice(f, what))
    }

    async fn write(
        &self,
        method: Method,
        url: url::Url,
        body: &Value,
        cx: &ToolContext,
        what: &str,
    ) -> Result<Value, ToolError> {
        let response = self
            .client
            .send(method, url, JSON, Some(body), cx)
            .await
            .map_err(|f| advice(f, what))?;
        response.json()
    }

    pub async fn list_issues(&self, args: ListIssues, cx: ToolContext) -> ToolOutcome {
        let mut url = self.repo_url(&args.owner, &args.repo, &["issues"])?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("state", args.state.unwrap_or(State::Open).as_str());
            if !args.labels.is_empty() {
                q.append_pair("labels", &args.labels.join(","));
            }
            if let Some(a) = &args.assignee {
                q.append_pair("assignee", a);
            }
            if let Some(s) = &args.since {
                q.append_pair("since", &timestamp(s)?);
            }
            if let Some(s) = args.sort {
                q.append_pair(
                    "sort",
                    match s {
                        IssueSort::Created => "created",
                        IssueSort::Updated => "updated",
                        IssueSort::Comments => "comments",
                    },
                );
            }
            if let Some(d) = args.direction {
                q.append_pair("direction", d.as_str());
            }
        }
        let page = paged(&mut url, args.page, args.per_page, 30);
        let what = format!("listing issues of {}/{}", args.owner, args.repo);
        let response = self.get(url, &cx, &what).await?;
        let items = array(response.json()?)?;
        let total = items.len();
        let issues: Vec<Value> = items
            .into_iter()
            .filter(|i| args.include_pull_requests || i.get("pull_request").is_none())
            .map(|i| if args.full { i } else { slim_issue(&i, false) })
            .collect();
        let mut out = listing("issues", issues, page, &response);
        if total > out["count"].as_u64().unwrap_or(0) as usize {
            out["pull_requests_skipped"] =
                json!(total - out["count"].as_u64().unwrap_or(0) as usize);
        }
        structured(out)
    }

    pub async fn issue_read(&self, args: IssueRead, cx: ToolContext) -> ToolOutcome {
        let n = args.issue_number.to_string();
        let name = format!("{}/{}#{}", args.owner, args.repo, n);
        match args.method {
            IssueReadMethod::Get => {
                let url = self.repo_url(&args.owner, &args.repo, &["issues", &n])?;
                let issue = self
                    .get(url, &cx, &format!("getting {name}"))
                    .await?
                    .json()?;
                structured(if args.full {
                    issue
                } else {
                    slim_issue(&issue, true)
                })
            }
            IssueReadMethod::GetComments => {
                let mut url =
                    self.repo_url(&args.owner, &args.repo, &["issues", &n, "comments"])?;
                if let Some(s) = &args.since {
                    url.query_pairs_mut().append_pair("since", &timestamp(s)?);
                }
                let page = paged(&mut url, args.page, args.per_page, 30);
                let response = self
                    .get(url, &cx, &format!("getting the comments of {name}"))
                    .await?;
                let comments = array(response.json()?)?
                    .into_iter()
                    .map(|c| if args.full { c } else { slim_comment(&c) })
                    .collect();
                structured(listing("comments", comments, page, &response))
            }
        }
    }

    pub async fn issue_write(&self, args: IssueWrite, cx: ToolContext) -> ToolOutcome {
        let mut body = Map::new();
        if let Some(t) = &args.title {
            if t.trim().is_empty() {
                return Err(ToolError::InvalidArguments("title is empty".into()));
            }
            body.insert("title".into(), json!(t));
        }
        if let Some(b) = &args.body {
            body.insert("body".into(), json!(b));
        }
        if let Some(l) = &args.labels {
            body.insert("labels".into(), json!(l));
        }
        if let Some(a) = &args.assignees {
            body.insert("assignees".into(), json!(a));
        }
        if let Some(m) = args.milestone {
            body.insert("milestone".into(), json!(m));
        }
        let (method, url, what) = match args.method {
            IssueWriteMethod::Create => {
                if args.issue_number.is_some()
                    || args.state.is_some()
                    || args.state_reason.is_some()
                {
                    return Err(ToolError::InvalidArguments(
                        "create takes no issue_number, state or state_reason; to change an \
                         existing issue use method `update`"
                            .into(),
                    ));
                }
                if args.title.is_none() {
                    return Err(ToolError::InvalidArguments("create needs a title".into()));
                }
                (
                    Method::POST,
                    self.repo_url(&args.owner, &args.repo, &["issues"])?,
                    format!("creating an issue in {}/{}", args.owner, args.repo),
                )
            }
            IssueWriteMethod::Update => {
                let Some(n) = args.issue_number else {
                    return Err(ToolError::InvalidArguments(
                        "update needs issue_number".into(),
                    ));
                };
                if let Some(s) = args.state {
                    body.insert(
                        "state".into(),
                        json!(match s {
                            OpenClosed::Open => "open",
                            OpenClosed::Closed => "closed",
                        }),
                    );
                }
                if let Some(r) = args.state_reason {
                    body.insert(
                        "state_reason".into(),
                        json!(match r {
                            StateReason::Completed => "completed",
                            StateReason::NotPlanned => "not_planned",
                            StateReason::Duplicate => "duplicate",
                            StateReason::Reopened => "reopened",
                        }),
                    );
                }
                if body.is_empty() {
                    return Err(ToolError::InvalidArguments(
                        "update changes nothing: give at least one of title, body, labels, \
                         assignees, milestone, state, state_reason"
                            .into(),
                    ));
                }
                let n = n.to_string();
                (
                    Method::PATCH,
                    self.repo_url(&args.owner, &args.repo, &["issues", &n])?,
                    format!("updating {}/{}#{n}", args.owner, args.repo),
                )
            }
        };
        let issue = self
            .write(method, url, &Value::Object(body), &cx, &what)
            .await?;
        structured(slim_issue(&issue, false))
    }

    pub async fn add_comment(&self, args: AddComment, cx: ToolContext) -> ToolOutcome {
        if args.body.trim().is_empty() {
            return Err(ToolError::InvalidArguments("body is empty".into()));
        }
        let n = args.issue_number.to_string();
        let url = self.repo_url(&args.owner, &args.repo, &["issues", &n, "comments"])?;
        let what = format!("commenting on {}/{}#{n}", args.owner, args.repo);
        let comment = self
            .write(Method::POST, url, &json!({"body": args.body}), &cx, &what)
            .await?;
        structured(pick(&comment, &["id", "html_url", "created_at"]))
    }

    pub async fn list_pulls(&self, args: ListPulls, cx: ToolContext) -> ToolOutcome {
        let mut url = self.repo_url(&args.owner, &args.repo, &["pulls"])?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("state", args.state.unwrap_or(State::Open).as_str());
            if let Some(h) = &args.head {
                q.append_pair("head", h);
            }
            if let Some(b) = &args.base {
                q.append_pair("base", b);
            }
            if let Some(s) = args.sort {
                q.append_pair(
                    "sort",
                    match s {
                        PullSort::Created => "created",
                        PullSort::Updated => "updated",
                        PullSort::Popularity => "popularity",
                        PullSort::LongRunning => "long-running",
                    },
                );
            }
            if let Some(d) = args.direction {
                q.append_pair("direction", d.as_str());
            }
        }
        let page = paged(&mut url, args.page, args.per_page, 30);
        let what = format!("listing pull requests of {}/{}", args.owner, args.repo);
        let response = self.get(url, &cx, &what).await?;
        let pulls = array(response.json()?)?
            .into_iter()
            .map(|p| if args.full { p } else { slim_pull(&p, false) })
            .collect();
        structured(listing("pull_requests", pulls, page, &response))
    }

    pub async fn pull_read(&self, args: PullRead, cx: ToolContext) -> ToolOutcome {
        let n = args.pull_number.to_string();
        let name = format!("{}/{}#{n}", args.owner, args.repo);
        match args.method {
            PullReadMethod::Get => {
                let url = self.repo_url(&args.owner, &args.repo, &["pulls", &n])?;
                let pull = self
                    .get(url, &cx, &format!("getting {name}"))
                    .await?
                    .json()?;
                structured(if args.full {
                    pull
                } else {
                    slim_pull(&pull, true)
                })
            }
            PullReadMethod::GetFiles => {
                let mut url = self.repo_url(&args.owner, &args.repo, &["pulls", &n, "files"])?;
                let page = paged(&mut url, args.page, args.per_page, 30);
                let response = self
                    .get(url, &cx, &format!("listing the files of {name}"))
                    .await?;
                let files = array(response.json()?)?
                    .into_iter()
                    .map(|mut f| {
                        if args.full {
                            cap_patch(&mut f);
                            f
                        } else {
                            pick(
                                &f,
                                &[
                                    "filename",
                                    "status",
                                    "additions",
                                    "deletions",
                                    "previous_filename",
                                ],
                            )
                        }
                    })
                    .collect();
                structured(listing("files", files, page, &response))
            }
            PullReadMethod::GetDiff => {
                let url = self.repo_url(&args.owner, &args.repo, &["pulls", &n])?;
                let what = format!("getting the diff of {name}");
                let response = self
                    .client
                    .send(Method::GET, url, DIFF, None, &cx)
                    .await
                    .map_err(|f| advice(f, &what))?;
                let diff = String::from_utf8_lossy(&response.body).into_owned();
                let diff = if args.files.is_empty() {
                    diff
                } else {
                    let (kept, missing) = only_files(&diff, &args.files);
                    if kept.is_empty() {
                        return Err(ToolError::NotFound(format!(
                            "{what}: no changes to {} in this pull request; method get_files lists \
                             the changed paths",
                            missing.join(", ")
                        )));
                    }
                    kept
                };
                let max = args.max_bytes.map(|m| m as usize).unwrap_or(DIFF_PIECE);
                let offset = args.offset.unwrap_or(0) as usize;
                Ok(CallToolResult::success(vec![ContentBlock::text(piece(
                    &diff, offset, max,
                ))]))
            }
        }
    }

    pub async fn create_pull(&self, args: CreatePull, cx: ToolContext) -> ToolOutcome {
        if args.title.trim().is_empty() {
            return Err(ToolError::InvalidArguments("title is empty".into()));
        }
        let mut body = json!({
            "title": args.title,
            "head": args.head,
            "base": args.base,
            "draft": args.draft,
        });
        if let Some(b) = &args.body {
            body["body"] = json!(b);
        }
        if let Some(m) = args.maintainer_can_modify {
            body["maintainer_can_modify"] = json!(m);
        }
        let url = self.repo_url(&args.owner, &args.repo, &["pulls"])?;
        let what = format!(
            "opening a pull request from {} into {} in {}/{}",
            args.head, args.base, args.owner, args.repo
        );
        let pull = self.write(Method::POST, url, &body, &cx, &what).await?;
        structured(slim_pull(&pull, false))
    }

    pub async fn search_code(&self, args: SearchCode, cx: ToolContext) -> ToolOutcome {
        let query = args.query.trim();
        if query.is_empty() {
            return Err(ToolError::InvalidArguments("query is empty".into()));
        }
        let mut url = self.client.url(&["search", "code"]);
        url.query_pairs_mut().append_pair("q", query);
        let page = paged(&mut url, args.page, args.per_page, 20);
        let what = format!("searching code for `{query}`");
        let response = self
            .client
            .send(Method::GET, url, TEXT_MATCH, None, &cx)
            .await
            .map_err(|f| advice(f, &what))?;
        let mut body = response.json()?;
        let items = array(body["items"].take())?
            .into_iter()
            .map(|i| if args.full { i } else { slim_code(&i) })
            .collect();
        let mut out = listing("items", items, page, &response);
        out["total_count"] = body["total_count"].take();
        if body["incomplete_results"] == json!(true) {
            out["incomplete_results"] = json!(true);
        }
        structured(out)
    }

    pub async fn search_issues(&self, args: SearchIssues, cx: ToolContext) -> ToolOutcome {
        let mut query = args.query.trim().to_owned();
        if query.is_empty() {
            return Err(ToolError::InvalidArguments("query is empty".into()));
        }
        let qualifier = match args.kind.unwrap_or(Kind::Any) {
            Kind::Issue => Some("is:issue"),
            Kind::PullRequest => Some("is:pr"),
            Kind::Any => None,
        };
        if let Some(q) = qualifier
            && !query.split_whitespace().any(|w| w == q)
        {
            query.push(' ');
            query.push_str(q);
        }
        let mut url = self.client.url(&["search", "issues"]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("q", &query);
            if let Some(s) = args.sort {
                q.append_pair(
                    "sort",
                    match s {
                        SearchSort::Comments => "comments",
                        SearchSort::Reactions => "reactions",
                        SearchSort::Created => "created",
                        SearchSort::Updated => "updated",
                        SearchSort::Interactions => "interactions",
                    },
                );
            }
            if let Some(o) = args.order {
                q.append_pair("order", o.as_str());
            }
        }
        let page = paged(&mut url, args.page, args.per_page, 30);
        let what = format!("searching issues for `{query}`");
        let response = self.get(url, &cx, &what).await?;
        let mut body = response.json()?;
        let items = array(body["items"].take())?
            .into_iter()
            .map(|i| {
                if args.full {
                    return i;
                }
                let mut slim = slim_issue(&i, false);
                if let Some(repo) = i["repository_url"].as_str().and_then(repo_of) {
                    slim["repository"] = json!(repo);
                }
                slim
            })
            .collect();
        let mut out = listing("items", items, page, &response);
        out["total_count"] = body["total_count"].take();
        if body["incomplete_results"] == json!(true) {
            out["incomplete_results"] = json!(true);
        }
        structured(out)
    }
}

// ---- shaping answers -----------------------------------------------------------------------

fn structured(value: Value) -> ToolOutcome {
    Ok(CallToolResult::structured(value))
}

fn array(value: Value) -> Result<Vec<Value>, ToolError> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(ToolError::Upstream(format!(
            "GitHub answered with {} where a list was expected",
            match other {
                Value::Object(_) => "an object",
                Value::Null => "nothing",
                _ => "a value",
            }
        ))),
    }
}

/// Add `page` and `per_page` to the query; returns the page asked for.
fn paged(url: &mut url::Url, page: Option<u32>, per_page: Option<u32>, default: u32) -> u32 {
    let page = page.unwrap_or(1).max(1);
    url.query_pairs_mut()
        .append_pair(
            "per_page",
            &per_page.unwrap_or(default).clamp(1, 100).to_string(),
        )
        .append_pair("page", &page.to_string());
    page
}

/// `{key: items, count, page, truncated, next_page?, last_page?}` from the Link header.
fn listing(key: &str, items: Vec<Value>, page: u32, response: &Response) -> Value {
    let mut out = json!({
        key: items,
        "count": items.len(),
        "page": page,
        "truncated": response.next.is_some(),
    });
    if let Some(next) = response.next_page() {
        out["next_page"] = json!(next);
    }
    if let Some(last) = response.last_page() {
        out["last_page"] = json!(last);
    }
    out
}

/// The listed keys that are present and not null.
fn pick(v: &Value, keys: &[&str]) -> Value {
    let mut out = Map::new();
    for k in keys {
        if let Some(x) = v.get(*k).filter(|x| !x.is_null()) {
            out.insert((*k).to_owned(), x.clone());
        }
    }
    Value::Object(out)
}

fn login(v: &Value) -> Value {
    v.get("login").cloned().unwrap_or(Value::Null)
}

fn names(v: &Value, key: &str) -> Value {
    Value::Array(
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.get(key).cloned())
            .collect(),
    )
}

/// An issue (or the issue side of a pull request) with the fields a model works with.
fn slim_issue(i: &Value, with_body: bool) -> Value {
    let mut out = pick(
        i,
        &[
            "number",
            "title",
            "state",
            "state_reason",
            "comments",
            "created_at",
            "updated_at",
            "closed_at",
            "html_url",
        ],
    );
    let o = out.as_object_mut().expect("an object");
    o.insert("user".into(), login(&i["user"]));
    o.insert("labels".into(), names(&i["labels"], "name"));
    o.insert("assignees".into(), names(&i["assignees"], "login"));
    if let Some(title) = i["milestone"]["title"].as_str() {
        o.insert("milestone".into(), json!(title));
    }
    if i.get("pull_request").is_some_and(|p| !p.is_null()) {
        o.insert("pull_request".into(), json!(true));
    }
    if with_body {
        o.insert("body".into(), i["body"].clone());
        if i["locked"] == json!(true) {
            o.insert("locked".into(), json!(true));
        }
    }
    out
}

fn slim_comment(c: &Value) -> Value {
    let mut out = pick(c, &["id", "body", "created_at", "html_url"]);
    out["user"] = login(&c["user"]);
    if c["updated_at"] != c["created_at"] && !c["updated_at"].is_null() {
        out["updated_at"] = c["updated_at"].clone();
    }
    out
}

fn slim_pull(p: &Value, detail: bool) -> Value {
    let mut out = pick(
        p,
        &[
            "number",
            "title",
            "state",
            "draft",
            "created_at",
            "updated_at",
            "closed_at",
            "merged_at",
            "html_url",
        ],
    );
    let o = out.as_object_mut().expect("an object");
    o.insert("user".into(), login(&p["user"]));
    o.insert("head".into(), p["head"]["label"].clone());
    o.insert("base".into(), p["base"]["ref"].clone());
    let labels = names(&p["labels"], "name");
    if labels.as_array().is_some_and(|l| !l.is_empty()) {
        o.insert("labels".into(), labels);
    }
    if detail {
        for k in [
            "merged",
            "mergeable",
            "mergeable_state",
            "commits",
            "additions",
            "deletions",
            "changed_files",
            "comments",
            "review_comments",
            "body",
        ] {
            if let Some(v) = p.get(k) {
                o.insert(k.into(), v.clone());
            }
        }
        o.insert("head_sha".into(), p["head"]["sha"].clone());
        o.insert(
            "requested_reviewers".into(),
            names(&p["requested_reviewers"], "login"),
        );
    }
    out
}

/// A code search hit: where, and the matching fragments when GitHub sent them.
fn slim_code(i: &Value) -> Value {
    let mut out = pick(i, &["path", "html_url"]);
    out["repository"] = i["repository"]["full_name"].clone();
    let fragments: Vec<Value> = i["text_matches"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["fragment"].as_str())
        .map(|f| json!(truncate(f, 400)))
        .collect();
    if !fragments.is_empty() {
        out["fragments"] = Value::Array(fragments);
    }
    out
}

/// `…/repos/{owner}/{repo}` → `owner/repo`.
fn repo_of(url: &str) -> Option<String> {
    let rest = &url[url.find("/repos/")? + "/repos/".len()..];
    let mut parts = rest.split('/');
    Some(format!("{}/{}", parts.next()?, parts.next()?))
}

/// Most bytes of one file's patch in `get_files` with `full`.
const PATCH_MAX: usize = 4_000;

/// Keep a file's patch bounded; the whole of it is in `get_diff` with `files`.
fn cap_patch(file: &mut Value) {
    let Some(patch) = file["patch"].as_str() else {
        return;
    };
    if patch.len() > PATCH_MAX {
        let name = file["filename"].as_str().unwrap_or("");
        let text = format!(
            "{}\n[patch truncated: {} bytes; get_diff with files: [\"{name}\"] reads all of it]",
            truncate(patch, PATCH_MAX).trim_end_matches('…'),
            patch.len()
        );
        file["patch"] = json!(text);
    }
}

/// A time as GitHub wants it (`2024-01-31T00:00:00Z`), from RFC 3339 or a bare date.
fn timestamp(text: &str) -> Result<String, ToolError> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(format!("{}T00:00:00Z", d.format("%Y-%m-%d")));
    }
    Err(ToolError::InvalidArguments(format!(
        "since `{text}` is not a date or time; use ISO 8601, e.g. 2024-01-31 or 2024-01-31T09:00:00Z"
    )))
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The parts of a unified diff (`diff --git a/x b/y` sections) that touch `files`; also the
/// files asked for that had no part.
fn only_files(diff: &str, files: &[String]) -> (String, Vec<String>) {
    let mut kept = String::new();
    let mut found = vec![false; files.len()];
    for section in sections(diff) {
        let header = section.lines().next().unwrap_or("");
        let hit = files.iter().enumerate().find(|(_, f)| {
            header.ends_with(&format!(" b/{f}")) || header.contains(&format!(" a/{f} "))
        });
        if let Some((i, _)) = hit {
            found[i] = true;
            kept.push_str(section);
        }
    }
    let missing = files
        .iter()
        .zip(found)
        .filter(|(_, f)| !f)
        .map(|(n, _)| n.clone())
        .collect();
    (kept, missing)
}

fn sections(diff: &str) -> Vec<&str> {
    let mut starts: Vec<usize> = diff
        .match_indices("diff --git ")
        .map(|(i, _)| i)
        .filter(|&i| i == 0 || diff.as_bytes()[i - 1] == b'\n')
        .collect();
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    starts.push(diff.len());
    starts
        .windows(2)
        .map(|w| &diff[w[0]..w[1]])
        .filter(|s| !s.is_empty())
        .collect()
}

/// At most `max` bytes of `text` from `offset`, ending at a line break where one is near, and
/// a closing line saying what was left out and where to continue.
fn piece(text: &str, offset: usize, max: usize) -> String {
    let total = text.len();
    if total == 0 {
        return "(this pull request changes no text: its diff is empty)".into();
    }
    if offset >= total {
        return format!(
            "[offset {offset} is past the end of the diff ({total} bytes); start from offset 0]"
        );
    }
    let mut start = offset;
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (start + max).min(total);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < total
        && let Some(nl) = text[start..end].rfind('\n')
        && nl > 0
    {
        end = start + nl + 1;
    }
    let mut out = text[start..end].to_owned();
    if start > 0 || end < total {
        if !out.ends_with('\n') {
            out.push('\n');
        }
        if end < total {
            out.push_str(&format!(
                "[diff truncated: bytes {start}–{end} of {total} shown; call again with offset {end} for the rest]"
            ));
        } else {
            out.push_str(&format!("[end of diff: bytes {start}–{end} of {total}]"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIFF: &str = "diff --git a/src/a.rs b/src/a.rs\n--- a/src/a.rs\n+++ b/src/a.rs\n@@ -1 +1 @@\n-old\n+new\ndiff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n@@ -1 +1,2 @@\n hi\n+there\n";

    #[test]
    fn diff_pieces_end_on_lines_and_say_where_to_continue() {
        let first = piece(DIFF, 0, 40);
        assert!(first.starts_with("diff --git a/src/a.rs"));
        let marker = first.lines().last().unwrap();
        assert!(marker.starts_with("[diff truncated: bytes 0–"), "{marker}");
        let end: usize = marker
            .split("offset ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(&DIFF[end - 1..end], "\n");
        // Following the offsets reassembles the whole diff.
        let mut whole = String::new();
        let mut offset = 0;
        loop {
            let p = piece(DIFF, offset, 40);
            let (body, marker) = p.rsplit_once('[').unwrap();
            whole.push_str(body);
            if marker.starts_with("end of diff") {
                break;
            }
            offset = marker
                .split("offset ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
        }
        assert_eq!(whole, DIFF);
        assert_eq!(piece(DIFF, 0, 100_000), DIFF);
        assert!(piece(DIFF, 10_000, 100).contains("past the end"));
    }

    #[test]
    fn times_and_patches_are_checked_and_bounded() {
        assert_eq!(timestamp("2024-01-31").unwrap(), "2024-01-31T00:00:00Z");
        assert_eq!(
            timestamp("2024-01-31T10:00:00+02:00").unwrap(),
            "2024-01-31T08:00:00Z"
        );
        assert!(
            timestamp("last week")
                .unwrap_err()
                .to_string()
                .contains("ISO 8601")
        );
        let mut file = json!({"filename": "big.rs", "patch": "+x\n".repeat(5_000)});
        cap_patch(&mut file);
        let patch = file["patch"].as_str().unwrap();
        assert!(patch.len() < PATCH_MAX + 200, "{}", patch.len());
        assert!(patch.ends_with(
            "[patch truncated: 15000 bytes; get_diff with files: [\"big.rs\"] reads all of it]"
        ));
    }

    #[test]
    fn diff_can_be_narrowed_to_files() {
        let (kept, missing) = only_files(DIFF, &["README.md".into(), "nope.rs".into()]);
        assert!(kept.starts_with("diff --git a/README.md"));
        assert!(!kept.contains("src/a.rs"));
        assert_eq!(missing, ["nope.rs"]);
    }

    #[test]
    fn slim_issue_keeps_the_essentials() {
        let issue = json!({
            "number": 7, "title": "t", "state": "open", "state_reason": null, "comments": 2,
            "user": {"login": "octocat", "id": 1}, "labels": [{"name": "bug", "color": "f00"}],
            "assignees": [{"login": "hubot"}], "milestone": null, "body": "b",
            "node_id": "x", "url": "u", "pull_request": {"url": "p"}, "html_url": "h",
            "repository_url": "https://api.github.com/repos/octo/hello"
        });
        let slim = slim_issue(&issue, false);
        assert_eq!(
            slim,
            json!({"number": 7, "title": "t", "state": "open", "comments": 2, "html_url": "h",
                   "user": "octocat", "labels": ["bug"], "assignees": ["hubot"], "pull_request": true})
        );
        assert_eq!(slim_issue(&issue, true)["body"], "b");
        assert_eq!(
            repo_of("https://api.github.com/repos/octo/hello").unwrap(),
            "octo/hello"
        );
    }
}
