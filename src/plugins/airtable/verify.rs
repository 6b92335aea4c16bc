//! `plugboard check --online` for Airtable: `GET /v0/meta/whoami` says whose token it is and
//! which scopes it carries. Each scope the tools use and the token lacks is named, with the
//! tools it stops.

use serde_json::Value;

use super::client::{Client, parse_error};
use crate::plugin::Finding;

/// The scopes the tools use, and the tools that fail without each.
const SCOPES: &[(&str, &str)] = &[
    (
        "data.records:read",
        "list_records, get_record, search_records",
    ),
    (
        "data.records:write",
        "create_records, update_records, upsert_records, delete_records, bulk_import",
    ),
    (
        "schema.bases:read",
        "list_bases, list_tables, describe_base, bulk_import",
    ),
    (
        "schema.bases:write",
        "create_table, create_field, update_field",
    ),
];

pub async fn verify(client: &Client) -> Finding {
    let (status, body) = match client.probe(client.url(&["meta", "whoami"])).await {
        Ok(answer) => answer,
        Err(why) => return Finding::failed("", format!("cannot reach {} ({why})", client.host())),
    };
    let whoami: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match status.as_u16() {
        200 => scopes(&whoami),
        401 => Finding::failed(
            "",
            "token rejected (revoked or mistyped): set AIRTABLE_API_KEY to a valid personal \
             access token (pat…)",
        ),
        429 => Finding::failed(
            "",
            "Airtable is refusing this token's requests for now (rate limit, 429): try again in \
             30 s",
        ),
        _ => {
            let e = parse_error(status, &body);
            let said = if e.message.is_empty() {
                e.kind
            } else {
                format!("{} ({})", e.message, e.kind)
            };
            Finding::failed("", format!("Airtable answered {}: {said}", status.as_u16()))
        }
    }
}

/// The finding for a whoami answer: ok, or the scopes missing and what they stop.
fn scopes(whoami: &Value) -> Finding {
    let user = whoami["id"].as_str().unwrap_or("?");
    let has: Vec<&str> = whoami["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let missing: Vec<String> = SCOPES
        .iter()
        .filter(|(scope, _)| !has.contains(scope))
        .map(|(scope, tools)| format!("{scope} (for {tools})"))
        .collect();
    if missing.is_empty() {
        return Finding::ok("", format!("user {user}; scopes {}", has.join(", ")));
    }
    Finding::failed(
        "",
        format!(
            "the token of user {user} lacks {}: add the scope{} to the token at \
             airtable.com/create/tokens",
            missing.join(", "),
            if missing.len() == 1 { "" } else { "s" }
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_scope_is_named_with_its_tools() {
        let all = serde_json::json!({"id": "usr1", "scopes": [
            "data.records:read", "data.records:write", "schema.bases:read", "schema.bases:write",
        ]});
        assert!(!scopes(&all).is_failed());
        let some = serde_json::json!({"id": "usr1", "scopes": ["data.records:read"]});
        let found = scopes(&some);
        let crate::plugin::Verdict::Failed(detail) = &found.verdict else {
            panic!("{found:?}")
        };
        assert!(
            detail
                .starts_with("the token of user usr1 lacks data.records:write (for create_records")
                && detail.contains("schema.bases:write (for create_table"),
            "{detail}"
        );
    }
}
