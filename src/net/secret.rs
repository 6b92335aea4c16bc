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
    fn a_secret_header_is_sensitive() {
        let value = header("Bearer ", &SecretString::from("sk-test-123")).unwrap();
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("sk-test-123"));
        assert!(header("", &SecretString::from("bad\nkey")).is_err());
    }
}
