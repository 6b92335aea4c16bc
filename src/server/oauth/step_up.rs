//! Scope step-up: a signed-in caller calling a tool its token's scopes do not open is answered
//! at the HTTP level, `403` with `WWW-Authenticate: Bearer error="insufficient_scope",
//! scope="…"`, as MCP's authorization asks, so that its client can ask the user for the
//! missing scope and try again. Decided here, before the call reaches the MCP session or the
//! REST handler: for `POST /mcp` by the JSON-RPC body (`tools/call` and the tool it names; the
//! body is in memory already), for the REST API by the path (`/api/v1/tools/{name}/call`,
//! `/api/v1/ask`, `/api/v1/consensus`).
//!
//! A tool that no configured scope opens stays unknown to that caller (the pipeline answers it
//! as any unknown tool): no scope would help, so none is asked for. Listing never gets a 403:
//! it shows what the token opens.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use super::OAuth;
use crate::plugin::{Manager, Principal};

#[derive(Clone)]
pub struct StepUp {
    pub oauth: Arc<OAuth>,
    pub manager: Arc<Manager>,
}

#[derive(Deserialize)]
struct Call<'a> {
    #[serde(borrow)]
    method: Option<std::borrow::Cow<'a, str>>,
    params: Option<CallParams>,
}

#[derive(Deserialize)]
struct CallParams {
    name: Option<String>,
    arguments: Option<CallArguments>,
}

/// The discovery tool `plugboard_call_tool` names the tool it runs in its arguments.
#[derive(Deserialize)]
struct CallArguments {
    name: Option<serde_json::Value>,
}

impl CallParams {
    /// The tool this call runs.
    fn tool(self) -> Option<String> {
        let name = self.name?;
        if name != crate::server::discovery::CALL {
            return Some(name);
        }
        match self.arguments?.name? {
            serde_json::Value::String(inner) => Some(inner),
            _ => None,
        }
    }
}

pub async fn refuse_out_of_scope(
    State(step_up): State<StepUp>,
    request: Request,
    next: Next,
) -> Response {
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return next.run(request).await;
    };
    if principal.grants.is_none() || request.method() != Method::POST {
        return next.run(request).await;
    }
    let path = request.uri().path().to_owned();
    if let Some(plugin) = path
        .strip_prefix("/api/v1/plugins/")
        .and_then(|rest| rest.strip_suffix("/reload"))
    {
        return match reload_refused(&step_up.oauth, &principal, plugin, &path) {
            Some(refused) => refused,
            None => next.run(request).await,
        };
    }
    let (request, tool) = if path == "/mcp" {
        let (parts, body) = request.into_parts();
        // Already in memory (`gate::read_body`).
        let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        let tool = serde_json::from_slice::<Call>(&bytes)
            .ok()
            .filter(|c| c.method.as_deref() == Some("tools/call"))
            .and_then(|c| c.params?.tool());
        (Request::from_parts(parts, Body::from(bytes)), tool)
    } else {
        let tool = rest_tool(&step_up.manager, &path);
        (request, tool)
    };
    let Some(tool) = tool else {
        return next.run(request).await;
    };
    let registry = step_up.manager.registry();
    let (Some(found), Some(plugin)) = (registry.get(&tool), registry.plugin_of(&tool)) else {
        return next.run(request).await;
    };
    let allowed = principal
        .grants
        .as_ref()
        .is_none_or(|g| g.allows(plugin, found));
    if allowed {
        return next.run(request).await;
    }
    let Some(scope) = step_up.oauth.scope_for(plugin, found) else {
        return next.run(request).await;
    };
    tracing::info!(subject = %principal.subject, tool = %crate::plugin::clip_name(&tool), scope, "OAuth: call outside the token's scopes refused (403)");
    let challenge = step_up.oauth.insufficient(&principal, &[scope.to_owned()]);
    let detail = format!(
        "the token's scopes do not open `{}`: sign in again with the scope `{scope}`",
        crate::plugin::clip_name(&tool)
    );
    insufficient(&path, challenge, detail)
}

/// Reloading a plugin is for those whose scopes open (some of) it.
fn reload_refused(
    oauth: &OAuth,
    principal: &Principal,
    plugin: &str,
    path: &str,
) -> Option<Response> {
    if principal
        .grants
        .as_ref()
        .is_none_or(|g| g.shows_plugin(plugin))
    {
        return None;
    }
    let plugin = crate::plugin::clip_name(plugin);
    let needed: Vec<String> = oauth.scope_showing(&plugin).into_iter().collect();
    let detail = match needed.first() {
        Some(scope) => format!(
            "the token's scopes do not open the plugin `{plugin}`: sign in again with the \
             scope `{scope}`"
        ),
        None => format!("no scope opens the plugin `{plugin}`"),
    };
    Some(insufficient(
        path,
        oauth.insufficient(principal, &needed),
        detail,
    ))
}

/// The 403 itself: a problem document on the REST API, plain text elsewhere.
pub fn insufficient(path: &str, challenge: axum::http::HeaderValue, detail: String) -> Response {
    let mut response = if path.starts_with("/api/") {
        crate::ops::Problem::new(StatusCode::FORBIDDEN, "insufficient-scope", detail)
            .into_response()
    } else {
        (StatusCode::FORBIDDEN, detail).into_response()
    };
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, challenge);
    response
}

/// The tool a REST call path runs.
fn rest_tool(manager: &Manager, path: &str) -> Option<String> {
    if let Some(name) = path
        .strip_prefix("/api/v1/tools/")
        .and_then(|rest| rest.strip_suffix("/call"))
    {
        return Some(name.to_owned());
    }
    let local = match path {
        "/api/v1/ask" => "ask",
        "/api/v1/consensus" => "consensus",
        _ => return None,
    };
    manager.find_tool("agents", local)
}
