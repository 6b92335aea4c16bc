//! Checking one access token (a JWT, RFC 9068): an asymmetric algorithm only — `none` and the
//! HMAC algorithms are refused before any key is looked at, so a token "signed" with the
//! issuer's public key as a shared secret gets nowhere — a key of the issuer's JWKS that fits
//! the algorithm, the signature, `exp`/`nbf` with a little leeway for clocks, `iss`, and `aud`
//! naming this server.

use base64::Engine;
use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use serde::Deserialize;

use super::{OAuthConfig, Rejection, keys::Keys};

/// Clocks differ a little between the issuer and us.
const LEEWAY_SECS: u64 = 30;

/// The algorithms a token may be signed with: all asymmetric.
const ACCEPTED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// What a valid token says of its bearer.
#[derive(Debug)]
pub struct Checked {
    pub subject: String,
    pub scopes: Vec<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    client_id: Option<String>,
    /// RFC 9068 / RFC 8693: space-separated.
    scope: Option<String>,
    /// What some providers send instead (Entra ID, Okta): a list, or a string.
    scp: Option<Scp>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Scp {
    List(Vec<String>),
    Text(String),
}

/// The header, read without trusting it: only to learn its `alg`, `kid` and `crit`.
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

pub async fn validate(
    token: &str,
    config: &OAuthConfig,
    keys: &Keys,
) -> Result<Checked, Rejection> {
    let raw = raw_header(token)?;
    if raw.crit.is_some() {
        return Err(Rejection::Critical);
    }
    let alg = raw
        .alg
        .as_deref()
        .and_then(|a| a.parse::<Algorithm>().ok())
        .filter(|a| ACCEPTED.contains(a))
        .ok_or(Rejection::Algorithm)?;
    let key = keys
        .find(raw.kid.as_deref(), alg)
        .await
        .map_err(|()| Rejection::KeysUnavailable)?
        .ok_or(Rejection::UnknownKey)?;
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_issuer(&[&config.issuer]);
    validation.set_audience(&[&config.resource]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation).map_err(|e| match e
        .kind()
    {
        ErrorKind::InvalidSignature => Rejection::Signature,
        ErrorKind::ExpiredSignature => Rejection::Expired,
        ErrorKind::ImmatureSignature => Rejection::NotYetValid,
        ErrorKind::InvalidIssuer => Rejection::Issuer,
        ErrorKind::InvalidAudience => Rejection::Audience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => Rejection::Algorithm,
        ErrorKind::MissingRequiredClaim(claim) => Rejection::MissingClaim(match claim.as_str() {
            "exp" => "exp",
            "iss" => "iss",
            "aud" => "aud",
            _ => "required",
        }),
        _ => Rejection::Malformed,
    })?;
    let claims = data.claims;
    let mut scopes: Vec<String> = Vec::new();
    let words = |text: &str| {
        text.split_ascii_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    if let Some(scope) = &claims.scope {
        scopes.extend(words(scope));
    }
    match claims.scp {
        Some(Scp::List(list)) => scopes.extend(list),
        Some(Scp::Text(text)) => scopes.extend(words(&text)),
        None => {}
    }
    scopes.dedup();
    let subject = claims
        .sub
        .or(claims.client_id)
        .unwrap_or_else(|| "unknown".to_owned());
    Ok(Checked {
        subject: crate::plugin::clip_name(&subject).into_owned(),
        scopes,
    })
}

fn raw_header(token: &str) -> Result<RawHeader, Rejection> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::Malformed);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| Rejection::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Rejection::Malformed)
}
