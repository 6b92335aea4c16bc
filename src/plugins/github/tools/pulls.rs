//! Pull requests: `list_pull_requests`, `pull_request_read` (the pull request, its files or
//! its diff in pieces) and `create_pull_request`.

use std::sync::Arc;

use reqwest::Method;
use rmcp::model::{CallToolResult, ContentBlock};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Direction, State, array,
    diff::{DIFF_PIECE, cap_patch, only_files, piece},
    listing, login, names, paged, pick, structured,
};
use crate::{
    plugin::{Hints, ToolContext, ToolDef, ToolError, ToolOutcome},
    plugins::github::{
        GitHub,
        client::{DIFF, advice},
    },
};

pub(super) fn list_pull_requests(gh: &Arc<GitHub>) -> ToolDef {
    let gh = gh.clone();
    ToolDef::new(
        "list_pull_requests",
        "List a repository's pull requests, filtered by state, head and base branch.",
        Hints::read_only().open_world(),
        move |args: ListPulls, cx| {
            let gh = gh.clone();
            async move { gh.list_pulls(args, cx).await }
        },
    )
    .with_title("List GitHub pull requests")
}

pub(super) fn pull_request_read(gh: &Arc<GitHub>) -> ToolDef {
    let gh = gh.clone();
    ToolDef::new(
        "pull_request_read",
        "Read a pull request: `get` (state, branches, mergeability, counts, body), `get_files` \
         (changed files, paged) or `get_diff` (the unified diff, optionally of some files, in \
         pieces of `max_bytes`).",
        Hints::read_only().open_world(),
        move |args: PullRead, cx| {
            let gh = gh.clone();
            async move { gh.pull_read(args, cx).await }
        },
    )
    .with_title("Read a GitHub pull request")
}

pub(super) fn create_pull_request(gh: &Arc<GitHub>) -> ToolDef {
    let gh = gh.clone();
    ToolDef::new(
        "create_pull_request",
        "Open a pull request from branch `head` (`owner:branch` for a fork) into `base`.",
        Hints::additive().open_world(),
        move |args: CreatePull, cx| {
            let gh = gh.clone();
            async move { gh.create_pull(args, cx).await }
        },
    )
    .with_title("Open a GitHub pull request")
}

// ---- arguments ---------------------------------------------------------------------------

#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum PullSort {
    Created,
    Updated,
    Popularity,
    LongRunning,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListPulls {
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

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum PullReadMethod {
    Get,
    GetFiles,
    GetDiff,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PullRead {
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
    /// get_files only.
    #[serde(default)]
    #[schemars(range(min = 1))]
    page: Option<u32>,
    /// get_files: default 30.
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    per_page: Option<u32>,
    /// All of GitHub's fields, not just the essentials (get_files: with patches).
    #[serde(default)]
    full: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreatePull {
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

// ---- handlers ----------------------------------------------------------------------------

impl GitHub {
    async fn list_pulls(&self, args: ListPulls, cx: ToolContext) -> ToolOutcome {
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

    async fn pull_read(&self, args: PullRead, cx: ToolContext) -> ToolOutcome {
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

    async fn create_pull(&self, args: CreatePull, cx: ToolContext) -> ToolOutcome {
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
}

// ---- shaping answers -----------------------------------------------------------------------

pub(crate) fn slim_pull(p: &Value, detail: bool) -> Value {
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
