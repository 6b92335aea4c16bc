//! Errors of the REST API as problem documents (RFC 9457): `application/problem+json` with a
//! type, a title, the status and a detail that says what to fix.

use axum::{
    extract::{FromRequest, Request, rejection::JsonRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};
use utoipa::ToSchema;

/// The media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem document (RFC 9457).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// What kind of problem: `urn:plugboard:problem:<kind>` (e.g. `unknown-tool`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The kind in words; the same for every problem of the kind.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time and what to do about it.
    pub detail: String,
    /// The tool the request named, if it named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The plugin concerned, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Seconds to wait before trying again (also sent as `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem of `kind` (kebab-case) with `status`; the title is the status's reason.
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        let mut detail = detail.into();
        crate::net::secret::mask_held_in(&mut detail);
        Self {
            kind: format!("urn:plugboard:problem:{kind}"),
            title: title(kind, status),
            status: status.as_u16(),
            detail,
            tool: None,
            plugin: None,
            retry_after: None,
        }
    }

    pub fn bad_request(kind: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind, detail)
    }

    pub fn not_found(kind: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, kind, detail)
    }

    pub fn with_tool(mut self, tool: &str) -> Self {
        self.tool = Some(crate::plugin::clip_name(tool).into_owned());
        self
    }

    pub fn with_plugin(mut self, plugin: &str) -> Self {
        self.plugin = Some(plugin.to_owned());
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// The titles of the kinds this API answers; others get the status's reason.
fn title(kind: &str, status: StatusCode) -> String {
    let known = match kind {
        "unknown-tool" => "Unknown tool",
        "unknown-plugin" => "Unknown plugin",
        "invalid-arguments" => "Invalid arguments",
        "invalid-body" => "The request body is not what this endpoint takes",
        "plugin-not-ready" => "The plugin is not ready",
        "too-many-calls" => "Too many calls in flight",
        "timeout" => "The call ran out of time",
        "panic" => "The plugin failed unexpectedly",
        "body-too-large" => "Request body too large",
        "not-acceptable" => "Not acceptable",
        _ => status.canonical_reason().unwrap_or("Error"),
    };
    known.to_owned()
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = retry {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A JSON body whose rejection is a problem document: axum's own `Json` answers in plain
/// text, with 415 and 422 where the API says 400.
pub struct Body<T>(pub T);

impl<T, S> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(rejected(rejection)),
        }
    }
}

fn rejected(rejection: JsonRejection) -> Problem {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid-body",
            "send the body as JSON, with `Content-Type: application/json`",
        ),
        JsonRejection::JsonSyntaxError(e) => Problem::bad_request(
            "invalid-body",
            format!("the body is not JSON: {}", e.body_text()),
        ),
        JsonRejection::JsonDataError(e) => Problem::bad_request(
            "invalid-body",
            format!("the body does not fit: {}", e.body_text()),
        ),
        e => Problem::bad_request("invalid-body", e.body_text()),
    }
}
