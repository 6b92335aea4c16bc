//! Search: `search_code` and `search_issues` (issues and pull requests across repositories),
//! with GitHub's search syntax.

use std::sync::Arc;

use reqwest::Method;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Direction, array, listing, paged, pick, slim_issue, structured, truncate};
use crate::{
    plugin::{Hints, ToolContext, ToolDef, ToolError, ToolOutcome},
    plugins::github::{
        GitHub,
        client::{TEXT_MATCH, advice},
    },
};

pub(super) fn search_code(gh: &Arc<GitHub>) -> ToolDef {
    let gh = gh.clone();
    ToolDef::new(
        "search_code",
        "Search code on default branches with GitHub's code search syntax, e.g. `parse_url \
         repo:owner/name language:rust` (needs a search term; at most 10 searches a minute).",
        Hints::read_only().open_world(),
        move |args: SearchCode, cx| {
            let gh = gh.clone();
            async move { gh.search_code(args, cx).await }
        },
    )
    .with_title("Search GitHub code")
}

pub(super) fn search_issues(gh: &Arc<GitHub>) -> ToolDef {
    let gh = gh.clone();
    ToolDef::new(
        "search_issues",
        "Search issues and pull requests across repositories with GitHub's search syntax, \
         e.g. `crash repo:owner/name is:open label:bug`.",
        Hints::read_only().open_world(),
        move |args: SearchIssues, cx| {
            let gh = gh.clone();
            async move { gh.search_issues(args, cx).await }
        },
    )
    .with_title("Search GitHub issues and pull requests")
}

// ---- arguments ---------------------------------------------------------------------------

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchCode {
    /// GitHub code search query.
    query: String,
    #[serde(default)]
    #[schemars(range(min = 1))]
    page: Option<u32>,
    /// Default 20.
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    per_page: Option<u32>,
    /// All of GitHub's fields, not just the essentials.
    #[serde(default)]
    full: bool,
}

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Issue,
    PullRequest,
    Any,
}

#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum SearchSort {
    Comments,
    Reactions,
    Created,
    Updated,
    Interactions,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchIssues {
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

// ---- handlers ----------------------------------------------------------------------------

impl GitHub {
    async fn search_code(&self, args: SearchCode, cx: ToolContext) -> ToolOutcome {
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

    async fn search_issues(&self, args: SearchIssues, cx: ToolContext) -> ToolOutcome {
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

/// A code search hit: where, and the matching fragments when GitHub sent them.
pub(crate) fn slim_code(i: &Value) -> Value {
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
pub(crate) fn repo_of(url: &str) -> Option<String> {
    let rest = &url[url.find("/repos/")? + "/repos/".len()..];
    let mut parts = rest.split('/');
    Some(format!("{}/{}", parts.next()?, parts.next()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_hits_name_their_repository() {
        assert_eq!(
            repo_of("https://api.github.com/repos/octo/hello").unwrap(),
            "octo/hello"
        );
    }
}
