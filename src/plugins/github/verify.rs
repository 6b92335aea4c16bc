//! `plugboard check --online` for GitHub: `GET /user` says whose token it is. A classic token's
//! scopes come back in `x-oauth-scopes`, and the tools need `repo` (`public_repo` reaches
//! public repositories only); fine-grained and app tokens send no such header — their access
//! is set per repository on github.com, which is no fault to report.

use reqwest::header::HeaderMap;
use serde_json::Value;

use super::client::Client;
use crate::plugin::Finding;

pub async fn verify(client: &Client) -> Finding {
    let (status, headers, body) = match client.probe(client.url(&["user"])).await {
        Ok(answer) => answer,
        Err(why) => return Finding::failed("", format!("cannot reach {} ({why})", client.host())),
    };
    let user: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let said = user["message"].as_str().unwrap_or("no message");
    match status.as_u16() {
        200 => {
            let login = user["login"].as_str().unwrap_or("?");
            let scopes = headers.get("x-oauth-scopes").and_then(|v| v.to_str().ok());
            scoped(login, scopes)
        }
        401 => Finding::failed(
            "",
            format!(
                "token rejected (revoked or mistyped; GitHub says “{said}”): set GITHUB_TOKEN to \
                 a valid token"
            ),
        ),
        403 | 429 if used_up(&headers) => Finding::failed(
            "",
            "the token's rate limit is used up for now: try again when it resets (within the hour)",
        ),
        code => Finding::failed("", format!("GitHub answered {code}: {said}")),
    }
}

fn used_up(headers: &HeaderMap) -> bool {
    headers
        .get("x-ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "0")
}

/// The finding for user `login` whose token has `scopes` (`None`: GitHub lists none).
fn scoped(login: &str, scopes: Option<&str>) -> Finding {
    let Some(scopes) = scopes else {
        return Finding::ok(
            "",
            format!(
                "user {login}; a fine-grained or app token (GitHub lists no scopes for it): the \
                 repositories it reaches are chosen with the token on github.com"
            ),
        );
    };
    let has: Vec<&str> = scopes
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let listed = if has.is_empty() {
        "none".to_owned()
    } else {
        has.join(", ")
    };
    if has.contains(&"repo") {
        return Finding::ok("", format!("user {login}; scopes {listed}"));
    }
    let reach = if has.contains(&"public_repo") {
        "private repositories are out of reach"
    } else {
        "private repositories are out of reach, and issues and pull requests cannot be written \
         anywhere (`public_repo` would allow it in public ones)"
    };
    Finding::failed(
        "",
        format!(
            "the token of user {login} lacks the `repo` scope: {reach} (scopes: {listed}); add \
             `repo` to it at github.com/settings/tokens"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_tokens_need_repo_and_fine_grained_ones_pass() {
        assert!(!scoped("octocat", Some("repo, read:org")).is_failed());
        assert!(!scoped("octocat", None).is_failed());
        let public = scoped("octocat", Some("public_repo"));
        assert!(public.is_failed(), "{public:?}");
        assert!(format!("{public:?}").contains("lacks the `repo` scope"));
        assert!(scoped("octocat", Some("")).is_failed());
    }
}
