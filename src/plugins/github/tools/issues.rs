//! Issues: `list_issues`, `issue_read` (an issue or its comments), `issue_write` (create or
//! update) and `add_issue_comment`.

use std::sync::Arc;

use reqwest::Method;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Direction, State, array, listing, login, paged, pick, slim_issue, structured};
use crate::{
    plugin::{Hints, ToolContext, ToolDef, ToolError, ToolOutcome},
    plugins::github::GitHub,
};

pub(super) fn list_issues(gh: &Arc<GitHub>) -> ToolDef {
    let gh = gh.clone();
    ToolDef::new(
        "list_issues",
        "List a repository's issues (pull requests left out unless include_pull_requests), \
         newest first, filtered by state, labels, assignee and since.",
        Hints::read_only().open_world(),
        move |args: ListIssues, cx| {
            let gh = gh.clone();
            async move { gh.list_issues(args, cx).await }
        },
    )
    .with_title("List GitHub issues")
}

pub(super) fn issue_read(gh: &Arc<GitHub>) -> ToolDef {
    let gh = gh.clone();
    ToolDef::new(
        "issue_read",
        "Read an issue or pull request by number: `get` (the issue with its body) or \
         `get_comments` (its comments, oldest first).",
        Hints::read_only().open_world(),
        move |args: IssueRead, cx| {
            let gh = gh.clone();
            async move { gh.issue_read(args, cx).await }
        },
    )
    .with_title("Read a GitHub issue")
}

pub(super) fn issue_write(gh: &Arc<GitHub>) -> ToolDef {
    let gh = gh.clone();
    ToolDef::new(
        "issue_write",
        "Create an issue (`create`, with a title) or change one (`update`: only the given fields \
         change; labels and assignees are replaced).",
        Hints::destructive(false).open_world(),
        move |args: IssueWrite, cx| {
            let gh = gh.clone();
            async move { gh.issue_write(args, cx).await }
        },
    )
    .with_title("Create or update a GitHub issue")
}

pub(super) fn add_issue_comment(gh: &Arc<GitHub>) -> ToolDef {
    let gh = gh.clone();
    ToolDef::new(
        "add_issue_comment",
        "Comment on an issue or pull request.",
        Hints::additive().open_world(),
        move |args: AddComment, cx| {
            let gh = gh.clone();
            async move { gh.add_comment(args, cx).await }
        },
    )
    .with_title("Comment on a GitHub issue")
}

// ---- arguments ---------------------------------------------------------------------------

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListIssues {
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
    #[serde(default)]
    #[schemars(range(min = 1))]
    page: Option<u32>,
    /// Default 30.
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    per_page: Option<u32>,
    /// All of GitHub's fields, not just the essentials.
    #[serde(default)]
    full: bool,
}

#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum IssueSort {
    Created,
    Updated,
    Comments,
}

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum IssueReadMethod {
    Get,
    GetComments,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct IssueRead {
    method: IssueReadMethod,
    owner: String,
    repo: String,
    issue_number: u64,
    /// get_comments: only comments updated at or after this time (ISO 8601).
    #[serde(default)]
    since: Option<String>,
    /// get_comments only.
    #[serde(default)]
    #[schemars(range(min = 1))]
    page: Option<u32>,
    /// get_comments: default 30.
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    per_page: Option<u32>,
    /// All of GitHub's fields, not just the essentials.
    #[serde(default)]
    full: bool,
}

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum IssueWriteMethod {
    Create,
    Update,
}

#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum OpenClosed {
    Open,
    Closed,
}

#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum StateReason {
    Completed,
    NotPlanned,
    Duplicate,
    Reopened,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct IssueWrite {
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
struct AddComment {
    owner: String,
    repo: String,
    issue_number: u64,
    /// Markdown.
    body: String,
}

// ---- handlers ----------------------------------------------------------------------------

impl GitHub {
    async fn list_issues(&self, args: ListIssues, cx: ToolContext) -> ToolOutcome {
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

    async fn issue_read(&self, args: IssueRead, cx: ToolContext) -> ToolOutcome {
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

    async fn issue_write(&self, args: IssueWrite, cx: ToolContext) -> ToolOutcome {
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

    async fn add_comment(&self, args: AddComment, cx: ToolContext) -> ToolOutcome {
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
}

// ---- shaping answers -----------------------------------------------------------------------

fn slim_comment(c: &Value) -> Value {
    let mut out = pick(c, &["id", "body", "created_at", "html_url"]);
    out["user"] = login(&c["user"]);
    if c["updated_at"] != c["created_at"] && !c["updated_at"].is_null() {
        out["updated_at"] = c["updated_at"].clone();
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_checked() {
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
    }
}
