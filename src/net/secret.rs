//! The secrets a client holds (API keys, tokens): kept in [`SecretString`] from the moment
//! they are read out of the plugin's environment to the header they go in, and masked out of
//! every error text the client builds — an upstream error body may repeat the request's
//! headers, key included.

use std::borrow::Cow;

use reqwest::header::{HeaderValue, InvalidHeaderValue};
pub use secrecy::{ExposeSecret, SecretString};

/// What a masked secret reads as.
pub const REDACTED: &str = "[redacted]";

/// The secret values one client holds, to mask out of text.
#[derive(Debug, Clone, Default)]
pub struct Secrets(Vec<SecretString>);

impl Secrets {
    pub fn new(secrets: impl IntoIterator<Item = SecretString>) -> Self {
        Self(
            secrets
                .into_iter()
                // An empty secret would match everywhere; it is no secret anyway.
                .filter(|s| !s.expose_secret().is_empty())
                .collect(),
        )
    }

    /// `text` with every secret held replaced by `[redacted]`.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.0 {
            let secret = secret.expose_secret();
            if out.contains(secret) {
                out = Cow::Owned(out.replace(secret, REDACTED));
            }
        }
        out
    }

    /// [`Secrets::mask`] in place.
    pub fn mask_in(&self, text: &mut String) {
        if let Cow::Owned(masked) = self.mask(text) {
            *text = masked;
        }
    }
}

/// Every secret this process holds — each plugin's keys and tokens, the HTTP token — to mask
/// out of anything it returns or writes, whatever the text came from: a tool's result, an
/// upstream's error (or a proxy's, repeating the request's headers), a log line. A client's
/// own [`Secrets`] mask its errors where they are made; this is the last net, applied to
/// every tool result, notification and log line.
static HELD: std::sync::RwLock<Held> = std::sync::RwLock::new(Held {
    values: Vec::new(),
    matcher: None,
});

struct Held {
    values: Vec<SecretString>,
    matcher: Option<std::sync::Arc<aho_corasick::AhoCorasick>>,
}

/// Shorter values are not masked: they would match ordinary text, and are no real key.
pub const MIN_HELD: usize = 8;

/// Hold `value` as a secret from now on (a value already held, or shorter than
/// [`MIN_HELD`], changes nothing).
pub fn hold(value: &str) {
    if value.len() < MIN_HELD {
        return;
    }
    let mut held = HELD.write().unwrap_or_else(|e| e.into_inner());
    if held.values.iter().any(|v| v.expose_secret() == value) {
        return;
    }
    held.values.push(SecretString::from(value));
    // JSON spells some bytes out: a secret with a quote or backslash in it appears so.
    let mut patterns: Vec<String> = Vec::new();
    for v in &held.values {
        let v = v.expose_secret();
        patterns.push(v.to_owned());
        let escaped = serde_json::to_string(v).unwrap_or_default();
        let escaped = escaped.trim_matches('"');
        if escaped != v {
            patterns.push(escaped.to_owned());
        }
    }
    held.matcher = aho_corasick::AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostLongest)
        .build(&patterns)
        .ok()
        .map(std::sync::Arc::new);
}

/// Whether an environment variable named so holds a secret: `*_KEY`, `*_TOKEN`,
/// `*_SECRET`, `*_PASSWORD`, `*_PAT`, `*_CREDENTIALS` (any case).
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    SECRET_WORDS
        .iter()
        .any(|end| name == *end || name.ends_with(&format!("_{end}")))
}

/// The words that make a variable's name a secret's.
pub const SECRET_WORDS: [&str; 7] = [
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PAT",
    "CREDENTIALS",
];

/// `text` with every secret held replaced by `[redacted]`.
pub fn mask_held(text: &str) -> Cow<'_, str> {
    let matcher = HELD
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .matcher
        .clone();
    match matcher {
        Some(m) if m.is_match(text) => {
            Cow::Owned(m.replace_all(text, &vec![REDACTED; m.patterns_len()]))
        }
        _ => Cow::Borrowed(text),
    }
}

/// [`mask_held`] in place.
pub fn mask_held_in(text: &mut String) {
    if let Cow::Owned(masked) = mask_held(text) {
        *text = masked;
    }
}

/// Every string in `value` masked ([`mask_held`]).
pub fn mask_held_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => mask_held_in(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_held_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(mask_held_json),
        _ => {}
    }
}

/// `value` with every held secret masked in its strings, by way of its JSON form (for the
/// rarer results: prompts; tool results are walked directly).
pub fn mask_held_serde<T: serde::Serialize + serde::de::DeserializeOwned>(value: T) -> T {
    let Ok(text) = serde_json::to_string(&value) else {
        return value;
    };
    match mask_held(&text) {
        Cow::Borrowed(_) => value,
        Cow::Owned(masked) => serde_json::from_str(&masked).unwrap_or(value),
    }
}

/// A header value carrying a secret: `{prefix}{secret}` (`"Bearer "` for a bearer token,
/// `""` for an API-key header), marked sensitive so that it is never shown in a `Debug` of
/// the request and HTTP/2 never indexes it.
pub fn header(prefix: &str, secret: &SecretString) -> Result<HeaderValue, InvalidHeaderValue> {
    let mut value = HeaderValue::from_str(&format!("{prefix}{}", secret.expose_secret()))?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_held_is_masked() {
        let secrets = Secrets::new([
            SecretString::from("sk-test-123"),
            SecretString::from(""),
            SecretString::from("ghp_abc"),
        ]);
        assert_eq!(
            secrets.mask("bad request; headers: Authorization: Bearer sk-test-123, x: ghp_abc"),
            "bad request; headers: Authorization: Bearer [redacted], x: [redacted]"
        );
        assert!(matches!(secrets.mask("nothing here"), Cow::Borrowed(_)));
        let mut text = "sk-test-123sk-test-123".to_owned();
        secrets.mask_in(&mut text);
        assert_eq!(text, "[redacted][redacted]");
        assert!(!format!("{secrets:?}").contains("sk-test-123"));
    }

    #[test]
    fn held_secrets_are_masked_wherever_they_appear() {
        hold("sk-held-0123456789");
        hold("short");
        hold(r#"pa"ss\word-123"#);
        assert_eq!(
            mask_held("401: Authorization: Bearer sk-held-0123456789 (sk-held-0123456789)"),
            "401: Authorization: Bearer [redacted] ([redacted])"
        );
        assert_eq!(mask_held("short is not held"), "short is not held");
        // The JSON-escaped form too.
        assert_eq!(
            mask_held(r#"{"k":"pa\"ss\\word-123"}"#),
            r#"{"k":"[redacted]"}"#
        );
        let mut value = serde_json::json!({"a": ["x sk-held-0123456789"], "b": 1});
        mask_held_json(&mut value);
        assert_eq!(value, serde_json::json!({"a": ["x [redacted]"], "b": 1}));
        assert!(matches!(mask_held("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn secret_names_are_recognised() {
        for name in [
            "OPENAI_API_KEY",
            "GITHUB_TOKEN",
            "PLUGBOARD_HTTP_TOKEN",
            "db_password",
            "AIRTABLE_PAT",
            "X_SECRET",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "PATH",
            "HOME",
            "GITHUB_API_URL",
            "KEYBOARD",
            "MONKEY",
            "PLUGBOARD_TOOLS",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn a_secret_header_is_sensitive() {
        let value = header("Bearer ", &SecretString::from("sk-test-123")).unwrap();
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("sk-test-123"));
        assert!(header("", &SecretString::from("bad\nkey")).is_err());
    }
}
