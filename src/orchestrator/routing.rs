//! `auto`: which provider takes a prompt. Rules are tried in order; the first whose
//! conditions all hold and whose provider is available wins. After it (or when none holds)
//! come the providers of `order`, then every other available one: the fallbacks tried when a
//! provider fails before answering.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Routing {
    pub rules: Vec<Rule>,
    /// Preference when no rule decides, and the order of fallbacks.
    pub order: Vec<String>,
}

/// Send prompts that match to `provider`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub provider: String,
    /// Any of these words in the prompt (case-insensitive, whole words).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// The prompt has at least this many characters.
    pub min_chars: Option<usize>,
    /// The prompt has at most this many characters.
    pub max_chars: Option<usize>,
}

impl Rule {
    /// Why this rule takes `prompt`, if it does.
    fn matches(&self, prompt: &str, words: &[String]) -> Option<String> {
        let chars = prompt.chars().count();
        let mut why = Vec::new();
        if !self.keywords.is_empty() {
            let hit = self
                .keywords
                .iter()
                .find(|k| words.iter().any(|w| w.eq_ignore_ascii_case(k)))?;
            why.push(format!("keyword `{hit}`"));
        }
        if let Some(min) = self.min_chars {
            (chars >= min).then_some(())?;
            why.push(format!("{chars} ≥ {min} characters"));
        }
        if let Some(max) = self.max_chars {
            (chars <= max).then_some(())?;
            why.push(format!("{chars} ≤ {max} characters"));
        }
        Some(why.join(", "))
    }
}

impl Routing {
    /// The providers to try for `prompt`, best first, and why the first was chosen.
    pub fn pick(&self, prompt: &str, available: &[String]) -> (Vec<String>, String) {
        let words: Vec<String> = prompt
            .split(|c: char| !c.is_alphanumeric() && c != '+' && c != '#')
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect();
        let mut order = Vec::new();
        let mut reason = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if !available.contains(&rule.provider) {
                continue;
            }
            if let Some(why) = rule.matches(prompt, &words) {
                order.push(rule.provider.clone());
                reason = Some(format!("routing rule {} ({why})", i + 1));
                break;
            }
        }
        for name in self.order.iter().chain(available) {
            if available.contains(name) && !order.contains(name) {
                order.push(name.clone());
            }
        }
        let reason = reason.unwrap_or_else(|| "first available in the routing order".into());
        (order, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing() -> Routing {
        toml::from_str(
            r#"
            order = ["anthropic", "openai"]
            [[rules]]
            provider = "gemini"
            min_chars = 100
            [[rules]]
            provider = "deepseek"
            keywords = ["rust", "python"]
            "#,
        )
        .unwrap()
    }

    #[test]
    fn rules_then_order_then_the_rest() {
        let all: Vec<String> = ["anthropic", "deepseek", "gemini", "openai"]
            .map(String::from)
            .to_vec();
        let (order, why) = routing().pick("Fix this Rust borrow error", &all);
        assert_eq!(order, ["deepseek", "anthropic", "openai", "gemini"]);
        assert_eq!(
            why,
            "routing rule 2 (keyword `python`)".replace("python", "rust")
        );
        let long = "x ".repeat(60);
        let (order, why) = routing().pick(&long, &all);
        assert_eq!(order[0], "gemini");
        assert_eq!(why, "routing rule 1 (120 ≥ 100 characters)");
        let (order, why) = routing().pick("hello", &all);
        assert_eq!(order, ["anthropic", "openai", "deepseek", "gemini"]);
        assert_eq!(why, "first available in the routing order");
        // An unavailable rule provider is skipped; "rustacean" is not the word "rust".
        let some: Vec<String> = ["openai"].map(String::from).to_vec();
        let (order, _) = routing().pick("rust", &some);
        assert_eq!(order, ["openai"]);
        let (order, _) = routing().pick("rustacean", &all);
        assert_eq!(order[0], "anthropic");
    }
}
