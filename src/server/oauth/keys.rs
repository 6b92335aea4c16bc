//! The issuer's signing keys (its JWKS), fetched when first needed, used for
//! `--oauth-jwks-refresh-secs`, and fetched again early when a token names a key id we do not
//! have (the issuer rotated). Those early fetches are spaced [`KID_REFETCH_INTERVAL`] apart,
//! so tokens with made-up key ids cannot make us hammer the issuer.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse},
};
use tokio::time::Instant;
use url::Url;

/// The least time between two fetches asked for by an unknown key id.
pub const KID_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// The least time between two fetches after one failed (the old keys are used meanwhile).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// How long one fetch of the metadata or the JWKS may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a metadata document or JWKS read.
const MAX_DOCUMENT: usize = 1024 * 1024;

/// One usable key.
pub struct Key {
    kid: Option<String>,
    /// The algorithm the JWKS pins the key to, if it does.
    alg: Option<Algorithm>,
    /// The curve of an EC or OKP key: each accepted algorithm has exactly one.
    curve: Option<EllipticCurve>,
    pub key: DecodingKey,
}

impl Key {
    /// Whether this key may verify a token signed with `alg`.
    fn fits(&self, alg: Algorithm) -> bool {
        let curve_fits = match alg {
            Algorithm::ES256 => self.curve == Some(EllipticCurve::P256),
            Algorithm::ES384 => self.curve == Some(EllipticCurve::P384),
            Algorithm::EdDSA => self.curve == Some(EllipticCurve::Ed25519),
            _ => self.curve.is_none(),
        };
        self.key.family() == alg.family() && self.alg.is_none_or(|a| a == alg) && curve_fits
    }

    fn from_jwk(jwk: &Jwk) -> Option<Self> {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return None;
        }
        let curve = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => None,
            AlgorithmParameters::EllipticCurve(ec) => Some(ec.curve.clone()),
            AlgorithmParameters::OctetKeyPair(okp) => Some(okp.curve.clone()),
            // A shared secret is no key a public JWKS can hold; anything else is unknown.
            _ => return None,
        };
        let alg = match jwk.common.key_algorithm {
            Some(a) => Some(Algorithm::try_from(a).ok()?),
            None => None,
        };
        Some(Self {
            kid: jwk.common.key_id.clone(),
            alg,
            curve,
            key: DecodingKey::from_jwk(jwk).ok()?,
        })
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Cache {
    keys: Arc<Vec<Arc<Key>>>,
    /// When the keys were last fetched (or a fetch last failed); `None`: never tried.
    fetched: Option<Instant>,
    /// When an unknown key id last made us fetch.
    kid_refetched: Option<Instant>,
    /// The JWKS's address, once known (given, or read from the issuer's metadata).
    jwks_url: Option<Url>,
}

#[derive(Debug)]
pub struct Keys {
    issuer: Url,
    refresh: Duration,
    cache: RwLock<Cache>,
    /// One fetch at a time; the others wait for it and use what it read.
    fetching: tokio::sync::Mutex<()>,
}

/// Why the keys could not be read (for the log; a client is told only that they could not).
pub type FetchError = String;

impl Keys {
    pub fn new(issuer: Url, jwks_url: Option<Url>, refresh: Duration) -> Self {
        Self {
            issuer,
            refresh,
            cache: RwLock::new(Cache {
                jwks_url,
                ..Cache::default()
            }),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn cache(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The key to verify a token signed with `alg` under `kid`. `Ok(None)`: no such key, even
    /// after a fetch (or a fetch was not allowed yet). `Err`: no keys could be read at all.
    pub async fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<Option<Arc<Key>>, ()> {
        let due = |c: &Cache| c.fetched.is_none_or(|at| at.elapsed() >= self.refresh);
        let mut fetched = false;
        if due(&self.cache()) {
            fetched = self.refetch(due, false).await;
        }
        if let Some(key) = pick(&self.cache().keys, kid, alg) {
            return Ok(Some(key));
        }
        // Perhaps the issuer rotated: look again, but not more often than the interval.
        if kid.is_some() && !fetched {
            let due = |c: &Cache| {
                c.kid_refetched
                    .is_none_or(|at| at.elapsed() >= KID_REFETCH_INTERVAL)
            };
            self.refetch(due, true).await;
        }
        let cache = self.cache();
        if cache.keys.is_empty() {
            return Err(());
        }
        Ok(pick(&cache.keys, kid, alg))
    }

    /// Fetch the keys now (at start). How many usable keys the issuer publishes.
    pub async fn load(&self) -> Result<usize, FetchError> {
        let _one = self.fetching.lock().await;
        self.fetch_and_store().await
    }

    /// Fetch if `due` still holds once it is our turn (another fetch may just have run);
    /// `for_kid`: the fetch is an unknown key id's, and counts towards their spacing. Whether
    /// a fetch was made.
    async fn refetch(&self, due: impl Fn(&Cache) -> bool, for_kid: bool) -> bool {
        let _one = self.fetching.lock().await;
        if !due(&self.cache()) {
            return false;
        }
        if for_kid {
            self.cache
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .kid_refetched = Some(Instant::now());
        }
        if let Err(e) = self.fetch_and_store().await {
            tracing::warn!(issuer = %self.issuer, error = %e, "OAuth: cannot read the issuer's keys; using those read before, if any");
        }
        true
    }

    async fn fetch_and_store(&self) -> Result<usize, FetchError> {
        let fetched = self.fetch().await;
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        match fetched {
            Ok((url, keys)) => {
                let n = keys.len();
                cache.jwks_url = Some(url);
                cache.keys = Arc::new(keys);
                cache.fetched = Some(Instant::now());
                Ok(n)
            }
            Err(e) => {
                // Tried: the next try waits a little rather than going out with every token.
                let wait_from = Instant::now() + RETRY_AFTER_FAILURE;
                cache.fetched = Some(wait_from.checked_sub(self.refresh).unwrap_or(wait_from));
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<(Url, Vec<Arc<Key>>), FetchError> {
        let known = self.cache().jwks_url.clone();
        let url = match known {
            Some(url) => url,
            None => self.discover().await?,
        };
        let body = get_json(&url).await?;
        let Some(listed) = body.get("keys").and_then(|k| k.as_array()) else {
            return Err(format!("{url} is no JWKS (no `keys` list)"));
        };
        // One key of a kind we do not use (an encryption key, a new key type) does not spoil
        // the others.
        let keys: Vec<Arc<Key>> = listed
            .iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .filter_map(|k| Key::from_jwk(&k))
            .map(Arc::new)
            .collect();
        tracing::debug!(%url, keys = keys.len(), "OAuth: JWKS read");
        Ok((url, keys))
    }

    /// The `jwks_uri` of the issuer's metadata: RFC 8414's well-known path first, then OpenID
    /// Connect's (inserted, then appended), as MCP clients look for them. The document must
    /// name the configured issuer.
    async fn discover(&self) -> Result<Url, FetchError> {
        let path = self.issuer.path().trim_end_matches('/');
        let at = |well_known: &str, path: String| {
            let mut url = self.issuer.clone();
            url.set_path(&path.replace("{wk}", well_known));
            url
        };
        let candidates = [
            at(
                "oauth-authorization-server",
                format!("/.well-known/{{wk}}{path}"),
            ),
            at("openid-configuration", format!("/.well-known/{{wk}}{path}")),
            at("openid-configuration", format!("{path}/.well-known/{{wk}}")),
        ];
        let mut errors = Vec::new();
        for url in candidates {
            if errors.iter().any(|(u, _): &(Url, String)| *u == url) {
                continue;
            }
            match get_json(&url).await {
                Ok(metadata) => {
                    let issuer = metadata.get("issuer").and_then(|i| i.as_str());
                    if issuer.map(|i| i.trim_end_matches('/'))
                        != Some(self.issuer.as_str().trim_end_matches('/'))
                    {
                        return Err(format!(
                            "{url} names another issuer ({}); check --oauth-issuer",
                            issuer.unwrap_or("none")
                        ));
                    }
                    let Some(jwks) = metadata.get("jwks_uri").and_then(|j| j.as_str()) else {
                        return Err(format!("{url} names no jwks_uri; set --oauth-jwks-url"));
                    };
                    return super::web_url(jwks, "jwks_uri");
                }
                Err(e) => errors.push((url, e)),
            }
        }
        Err(format!(
            "no authorization server metadata found ({}); set --oauth-jwks-url",
            errors
                .iter()
                .map(|(_, e)| e.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ))
    }
}

/// The key for `kid` (or, for a token naming none, the one key that fits `alg`).
fn pick(keys: &[Arc<Key>], kid: Option<&str>, alg: Algorithm) -> Option<Arc<Key>> {
    match kid {
        Some(kid) => keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid) && k.fits(alg))
            .cloned(),
        None => {
            let mut fitting = keys.iter().filter(|k| k.fits(alg));
            match (fitting.next(), fitting.next()) {
                (Some(key), None) => Some(key.clone()),
                _ => None,
            }
        }
    }
}

async fn get_json(url: &Url) -> Result<serde_json::Value, FetchError> {
    let client = crate::net::client()?;
    let response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("{url}: {}", crate::net::describe(&e)))?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    let body = crate::net::read_body(response, MAX_DOCUMENT)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    serde_json::from_slice(&body).map_err(|e| format!("{url} is no JSON document ({e})"))
}
