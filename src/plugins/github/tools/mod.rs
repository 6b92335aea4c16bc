//! The `github_*` tools. Few tools, each with a `method` where reads of one object belong
//! together (as github-mcp-server does), answers with only the fields a model needs unless it
//! asks for `full`, and lists bounded by `per_page` with the next page to ask for.
//!
//! One file per family — [`issues`], [`pulls`], [`search`] — each with its arguments, handlers
//! and one function per tool that builds its [`ToolDef`]; [`diff`] cuts pull request diffs into
//! pieces. This file holds the published list and what the families share: request helpers and
//! the shaping of answers.

pub(crate) mod diff;
mod issues;
pub(crate) mod pulls;
pub(crate) mod search;

use std::sync::Arc;

use reqwest::Method;
use rmcp::model::CallToolResult;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    GitHub,
    client::{JSON, Response, advice},
};
use crate::plugin::{ToolContext, ToolDef, ToolError, ToolOutcome};

/// The tools in the order they are published.
pub(super) fn all(gh: Arc<GitHub>) -> Vec<ToolDef> {
    vec![
        issues::list_issues(&gh),
        issues::issue_read(&gh),
        issues::issue_write(&gh),
        issues::add_issue_comment(&gh),
        pulls::list_pull_requests(&gh),
        pulls::pull_request_read(&gh),
        pulls::create_pull_request(&gh),
        search::search_code(&gh),
        search::search_issues(&gh),
    ]
}

// ---- arguments shared by the families ----------------------------------------------------

#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum State {
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
enum Direction {
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

// ---- requests ----------------------------------------------------------------------------

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
pub(crate) fn slim_issue(i: &Value, with_body: bool) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
