//! `airtable`: Airtable bases as tools — schema at the detail a model needs, records (list,
//! get, search, create, update, upsert, delete) in batches of 10, tables and fields, and an
//! exactly-once bulk import. Every request goes through one paced client (see `client.rs`).

mod client;
mod tools;

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use serde::Deserialize;

pub use client::{Client, Limits};

use crate::plugin::{Plugin, PluginError, PluginSetup, ToolDef};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    /// Seconds Airtable refuses a base after a 429.
    lockout_secs: f64,
    /// Seconds one HTTP request may take.
    request_timeout_secs: f64,
    /// Most records one `list_records` / `search_records` call returns.
    max_records_per_call: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lockout_secs: 30.0,
            request_timeout_secs: 30.0,
            max_records_per_call: 100,
        }
    }
}

pub fn init(setup: PluginSetup) -> BoxFuture<'static, Result<Arc<dyn Plugin>, PluginError>> {
    Box::pin(async move {
        let settings: Settings = setup.settings()?;
        let token = setup
            .env("AIRTABLE_API_KEY")
            .ok_or_else(|| PluginError::Init("AIRTABLE_API_KEY is not set".into()))?
            .to_owned();
        let base_url = setup
            .env("AIRTABLE_BASE_URL")
            .unwrap_or("https://api.airtable.com")
            .to_owned();
        let positive = |v: f64, name: &str| {
            if v.is_finite() && v > 0.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(PluginError::Init(format!("setting {name} must be > 0")))
            }
        };
        let limits = Limits {
            lockout: positive(settings.lockout_secs, "lockout_secs")?,
            timeout: positive(settings.request_timeout_secs, "request_timeout_secs")?,
            ..Limits::default()
        };
        let client = Client::new(&base_url, &token, limits).map_err(PluginError::Init)?;
        Ok(Arc::new(Airtable {
            client,
            max_records: settings.max_records_per_call.clamp(1, 1000),
        }) as Arc<dyn Plugin>)
    })
}

pub(crate) struct Airtable {
    pub client: Arc<Client>,
    pub max_records: usize,
}

impl Plugin for Airtable {
    fn tools(&self) -> Vec<ToolDef> {
        tools::all(Arc::new(Airtable {
            client: self.client.clone(),
            max_records: self.max_records,
        }))
    }
}
