//! The OAuth 2.1 resource-server side of MCP's authorization (2025-11-25): users sign in with
//! the team's identity provider and clients send its access tokens, JWTs this module checks.
//!
//! - `GET /.well-known/oauth-protected-resource[/mcp]` is the Protected Resource Metadata
//!   (RFC 9728): which authorization server to sign in with, and which scopes exist. Public,
//!   behind the Host/Origin check only.
//! - A request without a usable token is answered 401 with
//!   `WWW-Authenticate: Bearer resource_metadata="…", scope="…"` (plus `error="invalid_token"`
//!   when one was sent), which is how a client finds the metadata and starts the flow.
//! - A token is accepted when it is signed by a key of the issuer's JWKS with an asymmetric
//!   algorithm ([`token`]), is within its lifetime, names the configured issuer, and names this
//!   server as its audience (RFC 8707): a token minted for another resource is refused, and no
//!   token is ever passed upstream. The JWKS is cached and re-read on rotation ([`keys`]).
//! - The token's scopes map to toolsets (`--oauth-scopes files=files,gh.read=github:read`): the
//!   request's caller sees only those tools, and a call outside them is answered 403
//!   `insufficient_scope` with the scope that would open it ([`step_up`]).
//!
//! The static `--token` keeps working beside it: either is accepted.

mod keys;
pub(crate) mod step_up;
mod token;

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use url::Url;

use crate::plugin::{Grant, Grants, Principal};

/// Where the metadata document is served (and, followed by the resource's path, its
/// path-suffixed form, which the challenge names).
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// How long the keys are used before they are read again unless `--oauth-jwks-refresh-secs`
/// says otherwise.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);

/// What `serve --oauth-*` configures.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The authorization server's issuer identifier, compared exactly with a token's `iss`.
    pub issuer: String,
    /// This server's canonical URL (its `/mcp`), which a token's `aud` must contain.
    pub resource: String,
    /// The JWKS, when the issuer's metadata is not to be asked for it.
    pub jwks_url: Option<Url>,
    /// Scope → what it opens, in the order given (a scope may appear more than once).
    pub scopes: Vec<(String, Grant)>,
    /// Scopes every token must carry.
    pub required_scopes: Vec<String>,
    /// How long fetched keys are used before they are read again.
    pub jwks_refresh: Duration,
}

impl OAuthConfig {
    /// The configuration for tokens from `issuer` meant for `resource`, checked: both URLs
    /// must be `https` (plain `http` only on a loopback host, for tests and local set-ups).
    pub fn new(issuer: &str, resource: &str) -> Result<Self, String> {
        let issuer = issuer.trim();
        let resource = resource.trim();
        let issuer_url = web_url(issuer, "--oauth-issuer")?;
        if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
            return Err("--oauth-issuer: an issuer has no query or fragment (RFC 8414)".into());
        }
        let resource_url = web_url(resource, "--oauth-resource")?;
        if resource_url.fragment().is_some() {
            return Err("--oauth-resource: a resource URL has no fragment (RFC 8707)".into());
        }
        Ok(Self {
            issuer: issuer.to_owned(),
            resource: resource.to_owned(),
            jwks_url: None,
            scopes: Vec::new(),
            required_scopes: Vec::new(),
            jwks_refresh: DEFAULT_JWKS_REFRESH,
        })
    }

    pub fn with_jwks_url(mut self, url: &str) -> Result<Self, String> {
        self.jwks_url = Some(web_url(url.trim(), "--oauth-jwks-url")?);
        Ok(self)
    }

    /// `scope=grant` entries: `files=files`, `gh.read=github:read`, `admin=*`.
    pub fn with_scopes<S: AsRef<str>>(mut self, entries: &[S]) -> Result<Self, String> {
        for entry in entries.iter().map(|e| e.as_ref().trim()) {
            if entry.is_empty() {
                continue;
            }
            let Some((scope, grant)) = entry.split_once('=') else {
                return Err(format!(
                    "--oauth-scopes: `{entry}` is not `scope=toolset` (e.g. `files=files`, \
                     `gh.read=github:read`, `admin=*`)"
                ));
            };
            let scope = scope_token(scope.trim(), "--oauth-scopes")?;
            let grant = grant
                .parse::<Grant>()
                .map_err(|e| format!("--oauth-scopes: {e}"))?;
            self.scopes.push((scope, grant));
        }
        Ok(self)
    }

    pub fn with_required_scopes<S: AsRef<str>>(mut self, scopes: &[S]) -> Result<Self, String> {
        for scope in scopes.iter().map(|s| s.as_ref().trim()) {
            if !scope.is_empty() {
                let scope = scope_token(scope, "--oauth-required-scopes")?;
                if !self.required_scopes.contains(&scope) {
                    self.required_scopes.push(scope);
                }
            }
        }
        Ok(self)
    }

    pub fn with_jwks_refresh(mut self, every: Duration) -> Self {
        self.jwks_refresh = every.max(Duration::from_secs(1));
        self
    }
}

/// A URL the server fetches or names: https, or http on a loopback host.
fn web_url(text: &str, flag: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{flag}: `{text}` is no URL ({e})"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(format!(
            "{flag}: `{text}` must be an https URL (http only on a loopback host)"
        )),
    }
}

/// A scope as RFC 6749 §3.3 spells one (no spaces, quotes or backslashes), so that it can be
/// put in a `WWW-Authenticate` header as it is.
fn scope_token(scope: &str, flag: &str) -> Result<String, String> {
    if is_scope_token(scope) {
        Ok(scope.to_owned())
    } else {
        Err(format!(
            "{flag}: `{scope}` is no scope (printable ASCII without spaces, `\"` or `\\`)"
        ))
    }
}

fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Why a bearer token was not accepted. Says nothing of the token itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("no bearer token was sent")]
    Missing,
    #[error("the token is no JWT")]
    Malformed,
    #[error(
        "the token's signing algorithm is not accepted (unsigned and shared-secret tokens are \
         refused; RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 and EdDSA are accepted)"
    )]
    Algorithm,
    #[error("the token is signed by a key the issuer does not publish")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by another issuer")]
    Issuer,
    #[error("the token is meant for another resource (its audience is not this server)")]
    Audience,
    #[error("the token lacks the `{0}` claim")]
    MissingClaim(&'static str),
    #[error("the token carries critical header parameters this server does not understand")]
    Critical,
    /// Not the token's fault: the issuer's keys could not be read.
    #[error("the authorization server's keys cannot be read just now; try again shortly")]
    KeysUnavailable,
}

/// The resource server: configuration, keys, and the challenges it answers with.
#[derive(Debug)]
pub struct OAuth {
    config: OAuthConfig,
    keys: keys::Keys,
    /// The URL of the path-suffixed metadata document, which every challenge names.
    metadata_url: String,
    /// Every scope the server knows, for the metadata and the first challenge.
    scopes_supported: Vec<String>,
}

impl OAuth {
    pub fn new(config: OAuthConfig) -> Result<Arc<Self>, String> {
        let resource =
            Url::parse(&config.resource).map_err(|e| format!("--oauth-resource: no URL ({e})"))?;
        let mut metadata_url = resource.clone();
        metadata_url.set_query(None);
        let suffix = resource.path().trim_end_matches('/');
        metadata_url.set_path(&format!("{METADATA_PATH}{suffix}"));
        let mut scopes_supported = config.required_scopes.clone();
        for (scope, _) in &config.scopes {
            if !scopes_supported.contains(scope) {
                scopes_supported.push(scope.clone());
            }
        }
        let issuer = Url::parse(&config.issuer).map_err(|e| format!("--oauth-issuer: {e}"))?;
        let keys = keys::Keys::new(issuer, config.jwks_url.clone(), config.jwks_refresh);
        Ok(Arc::new(Self {
            metadata_url: metadata_url.to_string(),
            scopes_supported,
            keys,
            config,
        }))
    }

    /// Read the keys once at start, so that a wrong issuer shows in the log at once rather
    /// than at the first sign-in. A failure is logged; the first token tries again.
    pub fn warm_up(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            match me.keys.load().await {
                Ok(n) => {
                    tracing::info!(keys = n, issuer = %me.config.issuer, "OAuth: issuer keys read")
                }
                Err(e) => {
                    tracing::warn!(issuer = %me.config.issuer, error = %e, "OAuth: cannot read the issuer's keys yet")
                }
            }
        });
    }

    /// The signed-in user behind `token`, or why the token is refused.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, Rejection> {
        let claims = token::validate(token, &self.config, &self.keys).await?;
        let scopes: Arc<[String]> = claims.scopes.into();
        let grants = (!self.config.scopes.is_empty()).then(|| {
            Arc::new(Grants(
                self.config
                    .scopes
                    .iter()
                    .filter(|(scope, _)| scopes.contains(scope))
                    .map(|(_, grant)| grant.clone())
                    .collect(),
            ))
        });
        Ok(Principal {
            subject: claims.subject.into(),
            scopes,
            grants,
        })
    }

    /// The required scopes `principal` lacks.
    pub fn missing_required(&self, principal: &Principal) -> Vec<String> {
        self.config
            .required_scopes
            .iter()
            .filter(|s| !principal.scopes.contains(s))
            .cloned()
            .collect()
    }

    /// The first configured scope that opens `tool` of `plugin`: what a 403 asks for.
    pub fn scope_for(&self, plugin: &str, tool: &rmcp::model::Tool) -> Option<&str> {
        self.config
            .scopes
            .iter()
            .find(|(_, grant)| grant.allows(plugin, tool))
            .map(|(scope, _)| scope.as_str())
    }

    /// The first configured scope that opens (some of) `plugin`.
    pub fn scope_showing(&self, plugin: &str) -> Option<String> {
        self.config
            .scopes
            .iter()
            .find(|(_, grant)| Grants(vec![grant.clone()]).shows_plugin(plugin))
            .map(|(scope, _)| scope.clone())
    }

    /// The 401 challenge: where the metadata is and which scopes to ask for, with the reason
    /// when a token was sent.
    pub fn challenge(&self, rejection: Rejection) -> HeaderValue {
        let mut value = String::from("Bearer ");
        if rejection != Rejection::Missing {
            value.push_str(&format!(
                "error=\"invalid_token\", error_description=\"{rejection}\", "
            ));
        }
        value.push_str(&format!("resource_metadata=\"{}\"", self.metadata_url));
        let wanted = if self.config.required_scopes.is_empty() {
            &self.scopes_supported
        } else {
            &self.config.required_scopes
        };
        if !wanted.is_empty() {
            value.push_str(&format!(", scope=\"{}\"", wanted.join(" ")));
        }
        header_value(value)
    }

    /// The 403 challenge for a token without `needed`: the scopes it holds plus those, so a
    /// client that steps up keeps what it had (MCP's scope challenge handling).
    pub fn insufficient(&self, principal: &Principal, needed: &[String]) -> HeaderValue {
        let mut scopes: Vec<&str> = principal
            .scopes
            .iter()
            .map(String::as_str)
            .filter(|s| is_scope_token(s))
            .collect();
        for scope in needed {
            if !scopes.contains(&scope.as_str()) {
                scopes.push(scope);
            }
        }
        header_value(format!(
            "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\", \
             error_description=\"{}\"",
            scopes.join(" "),
            self.metadata_url,
            if needed.is_empty() {
                "no scope opens this".to_owned()
            } else {
                format!("the token lacks the scope {}", needed.join(" "))
            }
        ))
    }

    /// The Protected Resource Metadata document (RFC 9728 §2).
    pub fn metadata(&self) -> serde_json::Value {
        serde_json::json!({
            "resource": self.config.resource,
            "authorization_servers": [self.config.issuer],
            "scopes_supported": self.scopes_supported,
            "bearer_methods_supported": ["header"],
        })
    }
}

/// Built from configuration checked to be printable (URLs, scope tokens, fixed texts).
fn header_value(value: String) -> HeaderValue {
    HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

/// The metadata documents' routes, for the HTTP router to merge.
pub fn routes(oauth: Arc<OAuth>) -> axum::Router {
    axum::Router::new()
        .route(METADATA_PATH, axum::routing::get(metadata))
        .route(
            &format!("{METADATA_PATH}/{{*rest}}"),
            axum::routing::get(metadata_for),
        )
        .with_state(oauth)
}

/// Whether `path` is one of the metadata documents (public: they carry no data).
pub fn is_metadata_path(path: &str) -> bool {
    path.strip_prefix(METADATA_PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// `GET /.well-known/oauth-protected-resource`.
pub async fn metadata(State(oauth): State<Arc<OAuth>>) -> Response {
    document(&oauth)
}

/// `GET /.well-known/oauth-protected-resource/<path>`: the document for the resource at
/// `<path>` (this server's, `/mcp`; the resource URL's own path when it sits behind a prefix).
pub async fn metadata_for(State(oauth): State<Arc<OAuth>>, Path(rest): Path<String>) -> Response {
    let own = Url::parse(&oauth.config.resource)
        .map(|u| u.path().trim_matches('/').to_owned())
        .unwrap_or_default();
    let rest = rest.trim_matches('/');
    if rest == own || rest == "mcp" {
        document(&oauth)
    } else {
        (StatusCode::NOT_FOUND, "no such protected resource").into_response()
    }
}

fn document(oauth: &OAuth) -> Response {
    (
        [(header::CACHE_CONTROL, "max-age=300")],
        axum::Json(oauth.metadata()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth(scopes: &[&str], required: &[&str]) -> Arc<OAuth> {
        OAuth::new(
            OAuthConfig::new("https://idp.example/realms/team", "https://mcp.example/mcp")
                .unwrap()
                .with_scopes(scopes)
                .unwrap()
                .with_required_scopes(required)
                .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn the_challenge_names_the_path_suffixed_metadata_and_the_scopes() {
        let o = oauth(&["files=files", "gh.read=github:read", "files=agents"], &[]);
        assert_eq!(
            o.challenge(Rejection::Missing),
            "Bearer resource_metadata=\"https://mcp.example/.well-known/oauth-protected-resource/mcp\", \
             scope=\"files gh.read\""
        );
        assert_eq!(
            o.challenge(Rejection::Expired),
            "Bearer error=\"invalid_token\", error_description=\"the token has expired\", \
             resource_metadata=\"https://mcp.example/.well-known/oauth-protected-resource/mcp\", \
             scope=\"files gh.read\""
        );
        let required = oauth(&["files=files"], &["mcp"]);
        assert!(
            required
                .challenge(Rejection::Missing)
                .to_str()
                .unwrap()
                .ends_with("scope=\"mcp\"")
        );
        assert_eq!(
            required.metadata()["scopes_supported"],
            serde_json::json!(["mcp", "files"])
        );
    }

    #[test]
    fn urls_must_be_https_off_loopback_and_scopes_well_formed() {
        assert!(OAuthConfig::new("http://idp.example", "https://mcp.example/mcp").is_err());
        assert!(OAuthConfig::new("http://127.0.0.1:8080", "http://localhost:3000/mcp").is_ok());
        assert!(OAuthConfig::new("https://idp.example", "https://mcp.example/mcp#x").is_err());
        let c = OAuthConfig::new("https://idp.example", "https://mcp.example/mcp").unwrap();
        assert!(c.clone().with_scopes(&["files"]).is_err());
        assert!(c.clone().with_scopes(&["a b=files"]).is_err());
        assert!(c.clone().with_scopes(&["a=files:write"]).is_err());
        assert!(c.clone().with_required_scopes(&["a\"b"]).is_err());
        let c = c.with_scopes(&["x=*:read", "y=github"]).unwrap();
        assert_eq!(
            c.scopes,
            vec![
                ("x".to_owned(), Grant::All { read_only: true }),
                (
                    "y".to_owned(),
                    Grant::Plugin {
                        plugin: "github".into(),
                        read_only: false
                    }
                ),
            ]
        );
    }

    #[test]
    fn metadata_paths_are_the_document_and_its_suffixed_forms_only() {
        assert!(is_metadata_path("/.well-known/oauth-protected-resource"));
        assert!(is_metadata_path(
            "/.well-known/oauth-protected-resource/mcp"
        ));
        assert!(!is_metadata_path("/.well-known/oauth-protected-resourcex"));
        assert!(!is_metadata_path("/mcp"));
    }
}
