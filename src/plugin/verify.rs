//! What a plugin's online check found. `plugboard check --online` asks every running plugin
//! to try its configuration against the service it talks to ([`super::Plugin::verify`]): a
//! key the service accepts, the permissions the plugin needs, the model it names.

use serde::Serialize;

/// One thing a plugin checked: its own service (`subject` empty) or one part of its
/// configuration (an AI provider of the agents plugin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What was checked within the plugin; empty for the plugin's own service.
    pub subject: String,
    pub verdict: Verdict,
}

/// How a check came out, in words a user can act on. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum Verdict {
    /// It works: what was confirmed (`user usr…`, `gpt-4.1 is offered`).
    Ok(String),
    /// It does not: what is wrong and what to fix.
    Failed(String),
}

impl Finding {
    pub fn ok(subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            verdict: Verdict::Ok(detail.into()),
        }
    }

    pub fn failed(subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            verdict: Verdict::Failed(detail.into()),
        }
    }

    pub fn is_failed(&self) -> bool {
        matches!(self.verdict, Verdict::Failed(_))
    }

    /// The same finding with every secret the process holds masked out: a service's own
    /// words can repeat what it was sent.
    pub fn masked(mut self) -> Self {
        use crate::net::secret::mask_held_in;
        mask_held_in(&mut self.subject);
        match &mut self.verdict {
            Verdict::Ok(detail) | Verdict::Failed(detail) => mask_held_in(detail),
        }
        self
    }
}

/// A list for a user to read: the first `shown` items, then how many there are in all.
pub fn some_of(items: &[String], shown: usize) -> String {
    if items.len() <= shown {
        return items.join(", ");
    }
    format!("{}, … ({} in all)", items[..shown].join(", "), items.len())
}
