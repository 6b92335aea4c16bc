//! `github`: issues, pull requests and search on GitHub (or GitHub Enterprise Server) as a
//! small set of tools. Every request goes through one client (see `client.rs`) that sends the
//! headers GitHub asks for and keeps within its rate limits; `plugboard check --online` asks
//! GitHub whose token it is and what it may reach (`verify.rs`). With other replicas (through
//! Redis), the limits are theirs too (`shared.rs`).

pub(crate) mod client;
mod shared;
pub(crate) mod tools;
mod verify;

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use serde::Deserialize;

pub use client::{Client, Limits};

use crate::plugin::{Finding, Plugin, PluginError, PluginSetup, ToolDef};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    /// Seconds one HTTP request may take.
    request_timeout_secs: f64,
    /// Minimum seconds between writes (GitHub asks for no more than ~80 a minute).
    write_interval_secs: f64,
    /// Seconds to wait after a secondary rate limit that names no `retry-after`.
    secondary_wait_secs: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            request_timeout_secs: 30.0,
            write_interval_secs: 1.0,
            secondary_wait_secs: 60.0,
        }
    }
}

pub fn init(setup: PluginSetup) -> BoxFuture<'static, Result<Arc<dyn Plugin>, PluginError>> {
    Box::pin(async move {
        let settings: Settings = setup.settings()?;
        let token = crate::net::SecretString::from(
            setup
                .env("GITHUB_TOKEN")
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| PluginError::Init("GITHUB_TOKEN is not set".into()))?
                .trim(),
        );
        let base_url = setup
            .env("GITHUB_API_URL")
            .filter(|u| !u.trim().is_empty())
            .unwrap_or("https://api.github.com")
            .to_owned();
        let seconds = |v: f64, name: &str, min: f64| {
            if v.is_finite() && v >= min {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(PluginError::Init(format!("setting {name} must be ≥ {min}")))
            }
        };
        let limits = Limits {
            timeout: seconds(settings.request_timeout_secs, "request_timeout_secs", 0.001)?,
            write_interval: seconds(settings.write_interval_secs, "write_interval_secs", 0.0)?,
            secondary_wait: seconds(settings.secondary_wait_secs, "secondary_wait_secs", 0.0)?,
            ..Limits::default()
        };
        let client = Client::new(&base_url, token, limits)
            .map_err(PluginError::Init)?
            .share_limits(setup.shared.as_ref());
        Ok(Arc::new(GitHub {
            client: Arc::new(client),
        }) as Arc<dyn Plugin>)
    })
}

#[derive(Clone)]
pub(crate) struct GitHub {
    pub client: Arc<Client>,
}

impl Plugin for GitHub {
    fn tools(&self) -> Vec<ToolDef> {
        tools::all(Arc::new(self.clone()))
    }

    /// Degraded while Redis is away: the limits are this replica's share, not shared.
    fn condition(&self) -> Option<String> {
        self.client.condition()
    }

    /// The token against `GET /user`: accepted, and with the `repo` scope if it is classic.
    fn verify(&self) -> BoxFuture<'static, Vec<Finding>> {
        let client = self.client.clone();
        Box::pin(async move { vec![verify::verify(&client).await] })
    }
}
