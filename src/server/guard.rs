//! HTTP safety checks applied to every endpoint before anything else runs: the `Host` header
//! (DNS rebinding), the `Origin` header (browsers on foreign pages), and the bearer token:
//! the static one (`--token`), or an OAuth access token (`--oauth-issuer`, see [`super::oauth`]),
//! whose validated [`Principal`] goes into the request's extensions for the handlers.

use std::{net::IpAddr, sync::Arc};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use secrecy::{ExposeSecret, SecretString};

use super::oauth::{OAuth, Rejection};
use crate::plugin::Principal;

#[derive(Clone)]
pub struct Guard {
    /// Host names (no port) a request may be addressed to; `*` allows any.
    hosts: Arc<Vec<String>>,
    /// Extra browser origins allowed besides the allowed hosts, e.g. `https://app.example.com`.
    origins: Arc<Vec<String>>,
    /// Required as `Authorization: Bearer …` when set; a secret type so no `Debug` shows it.
    token: Option<Arc<SecretString>>,
    /// Accepts the issuer's access tokens too, when configured.
    oauth: Option<Arc<OAuth>>,
}

impl Guard {
    pub fn new(
        bind: IpAddr,
        extra_hosts: &[String],
        origins: &[String],
        token: Option<&SecretString>,
    ) -> Self {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
        if !bind.is_unspecified() && !bind.is_loopback() {
            hosts.push(bind.to_string());
        }
        hosts.extend(
            extra_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty()),
        );
        let origins = origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .collect();
        Self {
            hosts: Arc::new(hosts),
            origins: Arc::new(origins),
            token: token.cloned().map(Arc::new),
            oauth: None,
        }
    }

    /// Accept `oauth`'s access tokens besides the static token (either will do).
    pub fn with_oauth(mut self, oauth: Option<Arc<OAuth>>) -> Self {
        self.oauth = oauth;
        self
    }

    /// The bearer token's check: `Ok(None)` for the static token (or none needed),
    /// `Ok(Some(_))` for a valid access token, with who it was issued to.
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Principal>, Refusal> {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(bearer)
            .unwrap_or("");
        if let Some(token) = &self.token
            && constant_time_eq(given.as_bytes(), token.expose_secret().as_bytes())
        {
            return Ok(None);
        }
        match &self.oauth {
            Some(_) if given.is_empty() => Err(Refusal::Bearer(Rejection::Missing)),
            Some(oauth) => match oauth.authenticate(given).await {
                Ok(principal) => Ok(Some(principal)),
                Err(rejection) => Err(Refusal::Bearer(rejection)),
            },
            None if self.token.is_some() => Err(Refusal::Token),
            None => Ok(None),
        }
    }

    /// The answer to `refusal` on `path`: the REST API's problem document under `/api/`.
    fn refuse(&self, refusal: Refusal, path: &str) -> Response {
        let api = path.starts_with("/api/");
        let (Refusal::Bearer(rejection), Some(oauth)) = (refusal, &self.oauth) else {
            return if api {
                refusal.problem()
            } else {
                refusal.into_response()
            };
        };
        let (status, kind) = if rejection == Rejection::KeysUnavailable {
            (StatusCode::SERVICE_UNAVAILABLE, "authorization-unavailable")
        } else {
            (StatusCode::UNAUTHORIZED, "unauthorized")
        };
        let detail = match rejection {
            Rejection::Missing => "sign in: send `Authorization: Bearer <access token>` (the \
                                   WWW-Authenticate header names the authorization server's \
                                   metadata)"
                .to_owned(),
            other => other.to_string(),
        };
        let mut response = if api {
            crate::ops::Problem::new(status, kind, detail).into_response()
        } else {
            (status, detail).into_response()
        };
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, oauth.challenge(rejection));
        }
        response
    }

    pub(crate) fn host_allowed(&self, host: &str) -> bool {
        if self.hosts.iter().any(|h| h == "*") {
            return true;
        }
        // Only a host name (with its port) names a host, whatever the allowed list holds
        // (`--allowed-hosts "]"` let in `Host: ]` — found by fuzz/ http_guard).
        if host.parse::<axum::http::uri::Authority>().is_err() {
            return false;
        }
        let name = strip_port(host);
        // An IPv6 address names a host only in brackets (RFC 3986 §3.2.2).
        if name.contains(':') && !host.starts_with('[') {
            return self.hosts.iter().any(|h| h == "*");
        }
        let name = name.to_ascii_lowercase();
        self.hosts.iter().any(|h| h == "*" || *h == name)
    }

    /// Host, Origin and the static token, without OAuth: what the fuzz target and the unit
    /// tests drive (the middleware checks Host and Origin the same way, then the token).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        self.check_origin(headers)?;
        if let Some(token) = &self.token {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok())
                .and_then(bearer)
                .unwrap_or("");
            if !constant_time_eq(given.as_bytes(), token.expose_secret().as_bytes()) {
                return Err(Refusal::Token);
            }
        }
        Ok(())
    }

    /// Host and Origin only (a preflight's check: it carries no credentials).
    fn check_origin(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !self.host_allowed(host) {
            return Err(Refusal::Host);
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin
                .to_str()
                .unwrap_or("")
                .trim_end_matches('/')
                .to_ascii_lowercase();
            let by_host = origin.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https") && self.host_allowed(rest)
            });
            if !by_host && !self.origins.contains(&origin) {
                return Err(Refusal::Origin);
            }
        }
        Ok(())
    }
}

/// Why a request was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Host,
    Origin,
    Token,
    /// An OAuth access token missing or not accepted.
    Bearer(Rejection),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Host => (
                StatusCode::FORBIDDEN,
                "Host header is not allowed (add the name with --allowed-hosts)",
            )
                .into_response(),
            Refusal::Origin => (
                StatusCode::FORBIDDEN,
                "Origin is not allowed (add it with --allowed-origins)",
            )
                .into_response(),
            Refusal::Token | Refusal::Bearer(_) => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "missing or wrong bearer token (Authorization: Bearer …)",
            )
                .into_response(),
        }
    }
}

impl Refusal {
    /// The refusal as the REST API's problem document.
    fn problem(self) -> Response {
        use crate::ops::Problem;
        match self {
            Refusal::Host => Problem::new(
                StatusCode::FORBIDDEN,
                "host-not-allowed",
                "Host header is not allowed (add the name with --allowed-hosts)",
            )
            .into_response(),
            Refusal::Origin => Problem::new(
                StatusCode::FORBIDDEN,
                "origin-not-allowed",
                "Origin is not allowed (add it with --allowed-origins)",
            )
            .into_response(),
            Refusal::Token | Refusal::Bearer(_) => {
                let mut response = Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "missing or wrong bearer token (Authorization: Bearer …)",
                )
                .into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer"),
                );
                response
            }
        }
    }
}

pub async fn guard(State(guard): State<Guard>, mut request: Request<Body>, next: Next) -> Response {
    // A CORS preflight carries no credentials: it passes on Host and Origin alone, and is
    // answered here for an allowed origin (a foreign one was refused by the check).
    let preflight = request.method() == axum::http::Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    // The dashboard's page and assets carry no data: they load without the token (the page
    // then asks for it and sends it with each API call), but only on an allowed Host/Origin.
    let public = matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) && (crate::ops::dashboard::is_public(request.uri().path())
        // The protected resource metadata: how to sign in, for clients that have no token yet.
        || (guard.oauth.is_some() && super::oauth::is_metadata_path(request.uri().path())));
    let mut checked = guard.check_origin(request.headers());
    if checked.is_ok() && !preflight && !public {
        match guard.authenticate(request.headers()).await {
            Ok(Some(principal)) => {
                tracing::debug!(subject = %principal.subject, scopes = principal.scopes.len(), "OAuth: token accepted");
                if let Some(refused) = guard.lacks_required(&principal, request.uri().path()) {
                    return refused;
                }
                request.extensions_mut().insert(principal);
            }
            Ok(None) => {}
            Err(refusal) => checked = Err(refusal),
        }
    }
    if let Err(refusal) = checked {
        tracing::warn!(?refusal, path = %crate::plugin::clip_name(request.uri().path()), "HTTP request refused");
        return guard.refuse(refusal, request.uri().path());
    }
    let origin = request.headers().get(header::ORIGIN).cloned();
    if preflight {
        let Some(origin) = origin else {
            return StatusCode::NO_CONTENT.into_response();
        };
        return (
            StatusCode::NO_CONTENT,
            [
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin),
                (
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    "GET, POST, DELETE".parse().expect("static"),
                ),
                (
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    "authorization, content-type, accept, last-event-id, mcp-session-id, \
                     mcp-protocol-version, mcp-method, mcp-name"
                        .parse()
                        .expect("static"),
                ),
                (
                    header::ACCESS_CONTROL_MAX_AGE,
                    "600".parse().expect("static"),
                ),
                (header::VARY, "Origin".parse().expect("static")),
            ],
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            // `www-authenticate`: a browser client reads the sign-in challenge from it.
            "mcp-session-id, mcp-protocol-version, www-authenticate"
                .parse()
                .expect("static"),
        );
        headers.append(header::VARY, "Origin".parse().expect("static"));
    }
    response
}

impl Guard {
    /// The 403 for a valid token without the scopes every request needs
    /// (`--oauth-required-scopes`).
    fn lacks_required(&self, principal: &Principal, path: &str) -> Option<Response> {
        let oauth = self.oauth.as_ref()?;
        let missing = oauth.missing_required(principal);
        if missing.is_empty() {
            return None;
        }
        tracing::info!(subject = %principal.subject, "OAuth: token without the required scopes refused (403)");
        let detail = format!(
            "the token lacks the scope {} this server requires: sign in again with it",
            missing.join(" ")
        );
        Some(super::oauth::step_up::insufficient(
            path,
            oauth.insufficient(principal, &missing),
            detail,
        ))
    }
}

/// The credentials of `Bearer <token>`. The scheme is case-insensitive (RFC 9110 §11.1), so
/// `bearer` and `BEARER` count too.
pub(crate) fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_matches(' '))
}

/// `example.com:3000` → `example.com`; `[::1]:3000` → `::1`. Anything else after `]` is no
/// port, and the host stays as given (so it matches no allowed name).
pub(crate) fn strip_port(host: &str) -> &str {
    let is_port = |port: &str| port.chars().all(|c| c.is_ascii_digit());
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((name, "")) => name,
            Some((name, port)) if port.strip_prefix(':').is_some_and(is_port) => name,
            _ => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && is_port(port) => name,
        _ => host,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn loopback_hosts_pass_and_foreign_ones_do_not() {
        let g = Guard::new("127.0.0.1".parse().unwrap(), &[], &[], None);
        assert!(
            g.check(&headers(&[(header::HOST, "127.0.0.1:3000")]))
                .is_ok()
        );
        assert!(g.check(&headers(&[(header::HOST, "localhost")])).is_ok());
        assert!(g.check(&headers(&[(header::HOST, "[::1]:3000")])).is_ok());
        assert!(
            g.check(&headers(&[(header::HOST, "evil.example:3000")]))
                .is_err()
        );
        let foreign = [
            (header::HOST, "127.0.0.1:3000"),
            (header::ORIGIN, "https://evil.example"),
        ];
        assert_eq!(g.check(&headers(&foreign)).unwrap_err(), Refusal::Origin);
        let local = [
            (header::HOST, "127.0.0.1:3000"),
            (header::ORIGIN, "http://localhost:5173"),
        ];
        assert!(g.check(&headers(&local)).is_ok());
    }

    #[test]
    fn a_bracketed_host_with_more_than_a_port_after_it_is_refused() {
        // Regression (fuzz/ http_guard): everything after `]` was ignored, so `[::1]` followed
        // by anything passed as loopback; and so did `::1` without brackets.
        assert_eq!(strip_port("[::1]:3000"), "::1");
        assert_eq!(strip_port("[::1]"), "::1");
        assert_eq!(strip_port("[::1]:4\\040"), "[::1]:4\\040");
        assert_eq!(strip_port("[::1]evil.example"), "[::1]evil.example");
        let g = Guard::new("127.0.0.1".parse().unwrap(), &[], &[], None);
        for host in [
            "[::1]:4\\040",
            "[::1]evil.example",
            "[::1]:80]",
            "::1",
            "::1:3000",
        ] {
            assert_eq!(
                g.check(&headers(&[(header::HOST, host)])).unwrap_err(),
                Refusal::Host,
                "{host}"
            );
        }
        let origin = [
            (header::HOST, "127.0.0.1:3000"),
            (header::ORIGIN, "http://[::1]evil.example"),
        ];
        assert_eq!(g.check(&headers(&origin)).unwrap_err(), Refusal::Origin);
    }

    #[test]
    fn an_allowed_name_that_is_no_host_name_lets_nothing_in() {
        // Regression (fuzz/ http_guard, 10-minute run): `--allowed-hosts "]"` let in `Host: ]`.
        let hosts = ["]".to_owned(), "mcp.example".to_owned()];
        let g = Guard::new("127.0.0.1".parse().unwrap(), &hosts, &[], None);
        assert_eq!(
            g.check(&headers(&[(header::HOST, "]")])).unwrap_err(),
            Refusal::Host
        );
        assert!(
            g.check(&headers(&[(header::HOST, "mcp.example:443")]))
                .is_ok()
        );
    }

    #[test]
    fn token_is_required_when_set() {
        let g = Guard::new(
            "0.0.0.0".parse().unwrap(),
            &["*".into()],
            &[],
            Some(&SecretString::from("s3cret")),
        );
        assert_eq!(
            g.check(&headers(&[(header::HOST, "10.0.0.5")]))
                .unwrap_err(),
            Refusal::Token
        );
        let wrong = [
            (header::HOST, "10.0.0.5"),
            (header::AUTHORIZATION, "Bearer nope"),
        ];
        assert!(g.check(&headers(&wrong)).is_err());
        let right = [
            (header::HOST, "10.0.0.5"),
            (header::AUTHORIZATION, "Bearer s3cret"),
        ];
        assert!(g.check(&headers(&right)).is_ok());
    }
}
