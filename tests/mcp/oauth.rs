//! Sign-in with an identity provider (`serve --oauth-issuer`): MCP's authorization, resource
//! server side, against a small issuer run here (its own keys, made each run, its metadata and
//! JWKS on 127.0.0.1): valid, expired, not-yet-valid, wrong-audience, wrong-issuer, unsigned,
//! HS256-with-the-public-key and unknown-key tokens, key rotation, scopes mapped to toolsets
//! over MCP and REST, the metadata documents, and the static token beside it all.

use std::{
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    rand::SystemRandom,
    rsa::KeySize,
    signature::{self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use rmcp::{
    ServiceExt,
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{BIN, Fixture, Recorder};

/// The canonical URL the server is told it has (what tokens must name as audience).
pub(crate) const RESOURCE: &str = "http://localhost/mcp";
const METADATA_URL: &str = "http://localhost/.well-known/oauth-protected-resource/mcp";
pub(crate) const SCOPES: &str = "files.read=files:read,kit=testkit,admin=*";

/// One signing key of the issuer.
pub(crate) struct SigningKey {
    kid: String,
    sign: Signer,
    jwk: Value,
}

enum Signer {
    /// ES256 and EdDSA, through jsonwebtoken.
    Jwt(Algorithm, EncodingKey),
    /// RS256, signed here (aws-lc-rs makes RSA keys as PKCS#8, jsonwebtoken wants PKCS#1).
    Rsa(Box<signature::RsaKeyPair>),
}

impl SigningKey {
    pub(crate) fn es256(kid: &str) -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        Self::jwt(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_der(pkcs8.as_ref()),
        )
    }

    fn eddsa(kid: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).unwrap();
        Self::jwt(
            kid,
            Algorithm::EdDSA,
            EncodingKey::from_ed_der(pkcs8.as_ref()),
        )
    }

    fn jwt(kid: &str, alg: Algorithm, key: EncodingKey) -> Self {
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key, alg).unwrap()).unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        Self {
            kid: kid.to_owned(),
            sign: Signer::Jwt(alg, key),
            jwk,
        }
    }

    fn rs256(kid: &str) -> Self {
        let pair = signature::RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let public = pair.public_key();
        let jwk = json!({
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": B64.encode(public.modulus().big_endian_without_leading_zero()),
            "e": B64.encode(public.exponent().big_endian_without_leading_zero()),
        });
        Self {
            kid: kid.to_owned(),
            sign: Signer::Rsa(Box::new(pair)),
            jwk,
        }
    }

    /// A token with `claims`, signed by this key under its kid (or `kid` instead).
    pub(crate) fn token(&self, claims: &Value) -> String {
        self.token_as(claims, Some(&self.kid))
    }

    fn token_as(&self, claims: &Value, kid: Option<&str>) -> String {
        match &self.sign {
            Signer::Jwt(alg, key) => {
                let mut header = Header::new(*alg);
                header.kid = kid.map(str::to_owned);
                jsonwebtoken::encode(&header, claims, key).unwrap()
            }
            Signer::Rsa(pair) => {
                let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": kid});
                let message = format!(
                    "{}.{}",
                    B64.encode(header.to_string()),
                    B64.encode(claims.to_string())
                );
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message.as_bytes(),
                    &mut sig,
                )
                .unwrap();
                format!("{message}.{}", B64.encode(sig))
            }
        }
    }
}

/// The issuer: RFC 8414 metadata and a JWKS whose keys a test can swap.
pub(crate) struct Issuer {
    /// Its issuer identifier (with a path, as many providers have: a tenant or realm).
    pub(crate) url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    /// How often the JWKS was fetched.
    jwks_hits: Arc<AtomicUsize>,
}

impl Issuer {
    pub(crate) async fn start(keys: &[&SigningKey]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let url = format!("{base}/tenant");
        let published = Arc::new(Mutex::new(
            keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>(),
        ));
        let jwks_hits = Arc::new(AtomicUsize::new(0));
        let metadata = json!({
            "issuer": url,
            "authorization_endpoint": format!("{url}/authorize"),
            "token_endpoint": format!("{url}/token"),
            "jwks_uri": format!("{url}/jwks"),
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
        });
        let (jwks, hits) = (published.clone(), jwks_hits.clone());
        let app = axum::Router::new()
            .route(
                "/.well-known/oauth-authorization-server/tenant",
                axum::routing::get(move || async move { axum::Json(metadata) }),
            )
            .route(
                "/tenant/jwks",
                axum::routing::get(move || async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let keys = jwks.lock().unwrap().clone();
                    axum::Json(json!({ "keys": keys }))
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url,
            keys: published,
            jwks_hits,
        }
    }

    fn publish(&self, keys: &[&SigningKey]) {
        *self.keys.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    fn hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }

    /// Claims for a token this issuer gives `sub` for our server, with `scope`.
    pub(crate) fn claims(&self, scope: &str) -> Value {
        let now = now();
        json!({
            "iss": self.url, "sub": "ada@example.com", "aud": RESOURCE,
            "iat": now, "exp": now + 600, "scope": scope, "client_id": "claude",
        })
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A `plugboard serve --http` signing users in with `issuer`; its stderr is kept (at debug
/// level) to check that no token ever shows in it.
struct Server {
    url: String,
    http: reqwest::Client,
    stderr: Arc<Mutex<String>>,
    _child: tokio::process::Child,
}

impl Server {
    async fn start(fx: &Fixture, issuer: &Issuer, extra: &[&str]) -> Self {
        let mut child = fx
            .command(&["serve", "--http", "127.0.0.1:0", "--no-watch"])
            .args(["--oauth-issuer", &issuer.url, "--oauth-resource", RESOURCE])
            .args(["--oauth-scopes", SCOPES])
            .args(extra)
            .env("PLUGBOARD_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("server exited before listening");
            stderr.lock().unwrap().push_str(&format!("{line}\n"));
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        let kept = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Self {
            url,
            http: reqwest::Client::new(),
            stderr,
            _child: child,
        }
    }

    /// A raw `tools/call` of `tool` on `/mcp` with `token` (no session: the token is checked
    /// first, and the scope before the session).
    async fn mcp_call(&self, token: Option<&str>, tool: &str) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/mcp", self.url))
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": tool, "arguments": {"text": "hi"}}}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// rmcp's client over Streamable HTTP with `token`.
    async fn client(
        &self,
        token: &str,
    ) -> rmcp::service::RunningService<rmcp::RoleClient, Recorder> {
        let config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", self.url))
            .auth_header(token);
        Recorder::default()
            .serve(StreamableHttpClientTransport::from_config(config))
            .await
            .expect("initialize with a valid token")
    }

    /// Nothing the server wrote holds any of `tokens`.
    fn assert_no_token_logged(&self, tokens: &[&str]) {
        let text = self.stderr.lock().unwrap().clone();
        for token in tokens {
            let signature = token.rsplit('.').next().unwrap_or(token);
            assert!(
                !text.contains(token) && (signature.len() < 16 || !text.contains(signature)),
                "a token reached the server's log:\n{text}"
            );
        }
    }
}

fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn invalid(description: &str) -> String {
    format!(
        "Bearer error=\"invalid_token\", error_description=\"{description}\", \
         resource_metadata=\"{METADATA_URL}\", scope=\"files.read kit admin\""
    )
}

async fn names(client: &rmcp::service::RunningService<rmcp::RoleClient, Recorder>) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_valid_token_lists_and_calls_the_tools_its_scopes_open() {
    let fx = Fixture::new();
    let key = SigningKey::es256("es-1");
    let issuer = Issuer::start(&[&key]).await;
    let server = Server::start(&fx, &issuer, &[]).await;

    let everything = key.token(&issuer.claims("files.read kit"));
    let client = server.client(&everything).await;
    let all = names(&client).await;
    assert!(all.iter().any(|n| n == "files_read"), "{all:?}");
    assert!(all.iter().any(|n| n == "testkit_echo"), "{all:?}");
    let echoed = client
        .call_tool(
            rmcp::model::CallToolRequestParams::new("testkit_echo")
                .with_arguments(crate::support::args(json!({"text": "hello"}))),
        )
        .await
        .unwrap();
    assert_ne!(echoed.is_error, Some(true), "{echoed:?}");
    client.cancel().await.unwrap();

    // `files.read` opens the files plugin's read-only tools, and nothing of testkit.
    let files_only = key.token(&issuer.claims("files.read"));
    let client = server.client(&files_only).await;
    let shown = names(&client).await;
    assert!(!shown.is_empty());
    assert!(shown.iter().all(|n| n.starts_with("files_")), "{shown:?}");
    // A call outside the scopes never reaches the tool: rmcp's client hears the 403.
    let refused = client
        .call_tool(
            rmcp::model::CallToolRequestParams::new("testkit_echo")
                .with_arguments(crate::support::args(json!({"text": "hello"}))),
        )
        .await
        .unwrap_err();
    assert!(
        format!("{refused:?}").contains("insufficient_scope"),
        "{refused:?}"
    );
    // The client's transport ends on the 403; closing it may find it closed already.
    let _ = client.cancel().await;

    let response = server.mcp_call(Some(&files_only), "testkit_echo").await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        challenge(&response),
        format!(
            "Bearer error=\"insufficient_scope\", scope=\"files.read kit\", \
             resource_metadata=\"{METADATA_URL}\", error_description=\"the token lacks the scope kit\""
        )
    );
    // Through the discovery tool the same.
    let through = server
        .http
        .post(format!("{}/mcp", server.url))
        .bearer_auth(&files_only)
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "plugboard_call_tool",
            "arguments": {"name": "testkit_echo", "arguments": {"text": "hi"}}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(through.status(), 403);
    // A tool no scope could open is simply unknown: no step-up is offered.
    let response = server.mcp_call(Some(&files_only), "no_such_tool").await;
    assert_ne!(response.status(), 403);
    server.assert_no_token_logged(&[&everything, &files_only]);
}

#[tokio::test]
async fn tokens_that_are_not_ours_are_refused_with_the_challenge() {
    let fx = Fixture::new();
    let key = SigningKey::eddsa("ed-1");
    let issuer = Issuer::start(&[&key]).await;
    let server = Server::start(&fx, &issuer, &[]).await;
    let claims = issuer.claims("kit");
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims.clone();
        change(&mut c);
        c
    };
    let now = now();

    let response = server.mcp_call(None, "testkit_echo").await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        challenge(&response),
        format!("Bearer resource_metadata=\"{METADATA_URL}\", scope=\"files.read kit admin\"")
    );

    // An unsigned token, and one "signed" with HS256 using the public key as the secret.
    let header = |alg: &str| B64.encode(json!({"alg": alg, "kid": "ed-1"}).to_string());
    let body = B64.encode(claims.to_string());
    let unsigned = format!("{}.{body}.", header("none"));
    let public = key.jwk["x"].as_str().unwrap();
    let hs256 = jsonwebtoken::encode(
        &Header {
            kid: Some("ed-1".into()),
            ..Header::new(Algorithm::HS256)
        },
        &claims,
        &EncodingKey::from_secret(public.as_bytes()).unwrap(),
    )
    .unwrap();
    let mut tampered = key.token(&claims);
    tampered.truncate(tampered.len() - 4);
    tampered.push_str("AAAA");
    let stranger = SigningKey::eddsa("ed-1");
    let cases: Vec<(&str, String, &str)> = vec![
        ("garbage", "not-a-jwt".into(), "the token is no JWT"),
        (
            "expired",
            key.token(&with(&|c| {
                c["iat"] = json!(now - 7200);
                c["exp"] = json!(now - 3600);
            })),
            "the token has expired",
        ),
        (
            "not yet valid",
            key.token(&with(&|c| c["nbf"] = json!(now + 3600))),
            "the token is not valid yet",
        ),
        (
            "wrong audience",
            key.token(&with(&|c| c["aud"] = json!("https://other.example/mcp"))),
            "the token is meant for another resource (its audience is not this server)",
        ),
        (
            "wrong issuer",
            key.token(&with(&|c| c["iss"] = json!("https://evil.example/tenant"))),
            "the token was issued by another issuer",
        ),
        (
            "no audience",
            key.token(&with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            })),
            "the token lacks the `aud` claim",
        ),
        (
            "alg none",
            unsigned,
            "the token's signing algorithm is not accepted (unsigned and shared-secret tokens are \
             refused; RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 and EdDSA are accepted)",
        ),
        (
            "HS256 with the public key",
            hs256,
            "the token's signing algorithm is not accepted (unsigned and shared-secret tokens are \
             refused; RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 and EdDSA are accepted)",
        ),
        (
            "tampered",
            tampered,
            "the token's signature does not verify",
        ),
        (
            "another key under a known kid",
            stranger.token(&claims),
            "the token's signature does not verify",
        ),
        (
            "unknown kid",
            key.token_as(&claims, Some("who-knows")),
            "the token is signed by a key the issuer does not publish",
        ),
    ];
    let mut tokens = Vec::new();
    for (what, token, description) in &cases {
        let response = server.mcp_call(Some(token), "testkit_echo").await;
        assert_eq!(response.status(), 401, "{what}");
        assert_eq!(challenge(&response), invalid(description), "{what}");
        // The REST API refuses it the same way, as a problem document.
        let response = server.get("/api/v1/tools", Some(token)).await;
        assert_eq!(response.status(), 401, "{what}");
        assert_eq!(challenge(&response), invalid(description), "{what}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["detail"], json!(description), "{what}");
        tokens.push(token.as_str());
    }
    // The one good token among them is accepted.
    let good = key.token(&claims);
    let response = server.get("/api/v1/tools", Some(&good)).await;
    assert_eq!(response.status(), 200);
    tokens.push(&good);
    server.assert_no_token_logged(&tokens);
}

#[tokio::test]
async fn a_rotated_key_is_fetched_and_a_removed_one_refused() {
    let fx = Fixture::new();
    let old = SigningKey::rs256("rsa-2025");
    let new = SigningKey::eddsa("ed-2026");
    let issuer = Issuer::start(&[&old]).await;
    let server = Server::start(&fx, &issuer, &[]).await;
    let claims = issuer.claims("kit");

    let old_token = old.token(&claims);
    assert_eq!(
        server.get("/api/v1/tools", Some(&old_token)).await.status(),
        200
    );
    let fetched = issuer.hits();
    assert!(fetched >= 1);

    // The issuer rotates: the new key replaces the old one. A token under the new kid makes
    // the server read the JWKS again, once.
    issuer.publish(&[&new]);
    let new_token = new.token(&claims);
    assert_eq!(
        server.get("/api/v1/tools", Some(&new_token)).await.status(),
        200
    );
    assert_eq!(issuer.hits(), fetched + 1);
    assert_eq!(
        server.get("/api/v1/tools", Some(&new_token)).await.status(),
        200
    );
    assert_eq!(issuer.hits(), fetched + 1, "a known key needs no fetch");

    // The old key is gone with that fetch: its tokens are refused.
    let response = server.get("/api/v1/tools", Some(&old_token)).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        challenge(&response),
        invalid("the token is signed by a key the issuer does not publish")
    );
    // Made-up key ids cannot make the server hammer the issuer: unknown kids refetch at most
    // once per interval.
    for i in 0..20 {
        let junk = new.token_as(&claims, Some(&format!("junk-{i}")));
        assert_eq!(server.get("/api/v1/tools", Some(&junk)).await.status(), 401);
    }
    assert_eq!(issuer.hits(), fetched + 1);
    server.assert_no_token_logged(&[&old_token, &new_token]);
}

#[tokio::test]
async fn the_metadata_documents_are_public_behind_the_host_check() {
    let fx = Fixture::new();
    let key = SigningKey::es256("es-1");
    let issuer = Issuer::start(&[&key]).await;
    let server = Server::start(&fx, &issuer, &["--oauth-required-scopes", "mcp"]).await;
    let expected = json!({
        "resource": RESOURCE,
        "authorization_servers": [issuer.url],
        "scopes_supported": ["mcp", "files.read", "kit", "admin"],
        "bearer_methods_supported": ["header"],
    });
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let response = server.get(path, None).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.json::<Value>().await.unwrap(), expected, "{path}");
        let foreign = server
            .http
            .get(format!("{}{path}", server.url))
            .header("host", "evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(foreign.status(), 403, "{path}");
    }
    let response = server
        .get("/.well-known/oauth-protected-resource/elsewhere", None)
        .await;
    assert_eq!(response.status(), 404);
    // With required scopes, the first challenge asks for those.
    let response = server.mcp_call(None, "files_read").await;
    assert_eq!(
        challenge(&response),
        format!("Bearer resource_metadata=\"{METADATA_URL}\", scope=\"mcp\"")
    );
}

#[tokio::test]
async fn the_rest_api_honours_the_same_scopes() {
    let fx = Fixture::new();
    let key = SigningKey::es256("es-1");
    let issuer = Issuer::start(&[&key]).await;
    let server = Server::start(&fx, &issuer, &[]).await;
    let files_only = key.token(&issuer.claims("files.read"));

    let listed: Vec<Value> = server
        .get("/api/v1/tools", Some(&files_only))
        .await
        .json()
        .await
        .unwrap();
    assert!(!listed.is_empty());
    assert!(listed.iter().all(|t| t["plugin"] == "files"), "{listed:?}");
    assert_eq!(
        server
            .get("/api/v1/tools/testkit_echo", Some(&files_only))
            .await
            .status(),
        404
    );
    let read = server
        .post(
            "/api/v1/tools/files_read/call",
            &files_only,
            json!({"path": "docs/guide.md"}),
        )
        .await;
    assert_eq!(read.status(), 200);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["isError"], json!(false), "{read}");

    let refused = server
        .post(
            "/api/v1/tools/testkit_echo/call",
            &files_only,
            json!({"text": "hi"}),
        )
        .await;
    assert_eq!(refused.status(), 403);
    assert_eq!(
        challenge(&refused),
        format!(
            "Bearer error=\"insufficient_scope\", scope=\"files.read kit\", \
             resource_metadata=\"{METADATA_URL}\", error_description=\"the token lacks the scope kit\""
        )
    );
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "urn:plugboard:problem:insufficient-scope");
    // Reloading is for plugins the token opens.
    let reload = server
        .post("/api/v1/plugins/testkit/reload", &files_only, json!({}))
        .await;
    assert_eq!(reload.status(), 403);
    assert!(challenge(&reload).contains("scope=\"files.read kit\""));
    let reload = server
        .post("/api/v1/plugins/files/reload", &files_only, json!({}))
        .await;
    assert_eq!(reload.status(), 200);
    // In a batch, the tool is unknown to this caller.
    let batch: Value = server
        .post(
            "/api/v1/batch",
            &files_only,
            json!({"calls": [{"tool": "testkit_echo", "arguments": {"text": "x"}}]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(batch["results"][0]["status"], 404, "{batch}");
    // Without a token: 401, as a problem document with the challenge.
    let response = server.get("/api/v1/tools", None).await;
    assert_eq!(response.status(), 401);
    assert!(challenge(&response).starts_with("Bearer resource_metadata="));
    server.assert_no_token_logged(&[&files_only]);
}

#[tokio::test]
async fn the_static_token_still_works_beside_sign_in() {
    let fx = Fixture::new();
    let key = SigningKey::es256("es-1");
    let issuer = Issuer::start(&[&key]).await;
    let static_token = "tok-oauth-static-7d6c5b";
    let server = Server::start(
        &fx,
        &issuer,
        &["--token", static_token, "--oauth-required-scopes", "mcp"],
    )
    .await;

    // The static token: everything, as before.
    let client = server.client(static_token).await;
    let all = names(&client).await;
    assert!(all.iter().any(|n| n == "files_read") && all.iter().any(|n| n == "testkit_echo"));
    client.cancel().await.unwrap();
    // A token without the required scope: 403, asking for it.
    let lacking = key.token(&issuer.claims("kit"));
    let response = server.get("/api/v1/tools", Some(&lacking)).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        challenge(&response),
        format!(
            "Bearer error=\"insufficient_scope\", scope=\"kit mcp\", \
             resource_metadata=\"{METADATA_URL}\", error_description=\"the token lacks the scope mcp\""
        )
    );
    // With it: in, and only to testkit.
    let signed_in = key.token(&issuer.claims("mcp kit"));
    let client = server.client(&signed_in).await;
    let shown = names(&client).await;
    assert!(shown.iter().all(|n| n.starts_with("testkit_")), "{shown:?}");
    client.cancel().await.unwrap();
    // Neither: refused.
    assert_eq!(
        server
            .get("/api/v1/tools", Some("tok-wrong"))
            .await
            .status(),
        401
    );
    server.assert_no_token_logged(&[static_token, &lacking, &signed_in]);
}

/// Off loopback the server wants a token: sign-in counts as one.
#[tokio::test]
async fn sign_in_satisfies_the_off_loopback_rule() {
    let fx = Fixture::empty();
    let key = SigningKey::es256("es-1");
    let issuer = Issuer::start(&[&key]).await;
    let mut child = tokio::process::Command::new(BIN);
    fx.configure(&mut child);
    let mut child = child
        .args([
            "serve",
            "--no-watch",
            "--http",
            "0.0.0.0:0",
            "--allowed-hosts",
            "localhost",
        ])
        .args(["--oauth-issuer", &issuer.url, "--oauth-resource", RESOURCE])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = fx.listening_url(&mut child).await;
    assert!(url.contains("0.0.0.0"), "{url}");
}

/// Resources and prompts belong to plugins too: a token sees those of the plugins its scopes
/// open, and to it the others do not exist.
#[tokio::test]
async fn resources_and_prompts_follow_the_plugins_the_scopes_open() {
    let fx = Fixture::new();
    fx.manifest("conformance", &crate::protocol::manifest(""));
    let key = SigningKey::es256("es-1");
    let issuer = Issuer::start(&[&key]).await;
    let server = Server::start(&fx, &issuer, &[]).await;

    let admin = server.client(&key.token(&issuer.claims("admin"))).await;
    let resources = admin.list_all_resources().await.unwrap();
    let prompts = admin.list_all_prompts().await.unwrap();
    assert!(!resources.is_empty() && !prompts.is_empty());
    let _ = admin.cancel().await;

    let files_only = server
        .client(&key.token(&issuer.claims("files.read")))
        .await;
    assert!(files_only.list_all_resources().await.unwrap().is_empty());
    assert!(files_only.list_all_prompts().await.unwrap().is_empty());
    assert!(
        files_only
            .list_all_resource_templates()
            .await
            .unwrap()
            .is_empty()
    );
    let read = files_only
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            resources[0].uri.clone(),
        ))
        .await;
    assert!(read.is_err(), "{read:?}");
    let prompt = files_only
        .get_prompt(rmcp::model::GetPromptRequestParams::new(
            prompts[0].name.clone(),
        ))
        .await;
    assert!(prompt.is_err(), "{prompt:?}");
    let _ = files_only.cancel().await;
}

/// A key the issuer stops publishing is dropped at the next refresh, even while no unknown
/// key id asks for one: rotation with overlap, as providers do it.
#[tokio::test]
async fn keys_are_read_again_after_the_refresh_interval() {
    let fx = Fixture::new();
    let old = SigningKey::es256("es-old");
    let new = SigningKey::es256("es-new");
    let issuer = Issuer::start(&[&old, &new]).await;
    let server = Server::start(&fx, &issuer, &["--oauth-jwks-refresh-secs", "1"]).await;
    let claims = issuer.claims("kit");
    let old_token = old.token(&claims);
    assert_eq!(
        server.get("/api/v1/tools", Some(&old_token)).await.status(),
        200
    );

    issuer.publish(&[&new]);
    // Until the keys are read again the old one still holds.
    assert_eq!(
        server.get("/api/v1/tools", Some(&old_token)).await.status(),
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let response = server.get("/api/v1/tools", Some(&old_token)).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        server
            .get("/api/v1/tools", Some(&new.token(&claims)))
            .await
            .status(),
        200
    );
}

/// When the issuer's keys cannot be read, a token cannot be checked: 503, not a 401 that would
/// send the client to sign in again for nothing.
#[tokio::test]
async fn an_unreachable_jwks_is_a_503() {
    let fx = Fixture::new();
    let key = SigningKey::es256("es-1");
    let issuer = Issuer::start(&[&key]).await;
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks = format!("http://{}/jwks", gone.local_addr().unwrap());
    drop(gone);
    let server = Server::start(&fx, &issuer, &["--oauth-jwks-url", &jwks]).await;
    let token = key.token(&issuer.claims("kit"));
    let response = server.get("/api/v1/tools", Some(&token)).await;
    assert_eq!(response.status(), 503);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(
        problem["type"],
        "urn:plugboard:problem:authorization-unavailable"
    );
    assert_eq!(
        issuer.hits(),
        0,
        "the configured JWKS is used, not the metadata's"
    );
    server.assert_no_token_logged(&[&token]);
}

/// A session belongs to the user who opened it: another signed-in user naming its id (leaked,
/// guessed) is told there is no such session, as for an unknown id; its owner goes on using it.
#[tokio::test]
async fn a_session_is_bound_to_the_user_who_opened_it() {
    let key = SigningKey::es256("k1");
    let issuer = Issuer::start(&[&key]).await;
    let fx = Fixture::new();
    let server = Server::start(&fx, &issuer, &[]).await;
    let ada = key.token(&issuer.claims("kit"));
    let mut bobs = issuer.claims("kit");
    bobs["sub"] = json!("bob@example.com");
    let bob = key.token(&bobs);
    let post = |token: &str, session: Option<&str>, body: Value| {
        let mut request = server
            .http
            .post(format!("{}/mcp", server.url))
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(session) = session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-11-25");
        }
        request.send()
    };
    let init = post(
        &ada,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "ada", "version": "1"}}}),
    )
    .await
    .unwrap();
    assert_eq!(init.status(), 200);
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let initialized = post(
        &ada,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await
    .unwrap();
    assert!(
        initialized.status().is_success(),
        "{}",
        initialized.status()
    );
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let by_bob = post(&bob, Some(&session), list.clone()).await.unwrap();
    assert_eq!(by_bob.status(), 404);
    let by_ada = post(&ada, Some(&session), list).await.unwrap();
    assert_eq!(by_ada.status(), 200);
}
