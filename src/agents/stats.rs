//! Counters per provider: requests, errors, latency, tokens, cost. The providers resource,
//! the REST API and the dashboard show them.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Serialize;

use super::Usage;

/// What one provider has done since start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ProviderStats {
    pub requests: u64,
    pub errors: u64,
    /// Requests that were cut off by a deadline or cancelled.
    pub timeouts: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Sum of the latencies of finished requests, for the mean.
    pub latency_ms_total: u64,
    pub latency_ms_max: u64,
    /// US dollars spent, by the price table; absent while the model has no price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// Shared by every caller; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Stats(Arc<Mutex<BTreeMap<String, ProviderStats>>>);

/// How a request ended.
pub enum Outcome {
    /// With what it cost, when the model has a price.
    Answered(Usage, Option<f64>),
    Failed,
    TimedOut,
}

impl Stats {
    pub fn record(&self, provider: &str, latency: Duration, outcome: Outcome) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let s = all.entry(provider.to_owned()).or_default();
        s.requests += 1;
        let ms = latency.as_millis() as u64;
        s.latency_ms_total += ms;
        s.latency_ms_max = s.latency_ms_max.max(ms);
        match outcome {
            Outcome::Answered(usage, cost) => {
                s.input_tokens += usage.input_tokens;
                s.output_tokens += usage.output_tokens;
                if let Some(cost) = cost {
                    *s.cost_usd.get_or_insert(0.0) += cost;
                }
            }
            Outcome::Failed => s.errors += 1,
            Outcome::TimedOut => {
                s.errors += 1;
                s.timeouts += 1;
            }
        }
    }

    /// What `provider` has cost so far, when its model has a price.
    pub fn cost(&self, provider: &str) -> Option<f64> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.get(provider).and_then(|s| s.cost_usd)
    }

    pub fn snapshot(&self) -> BTreeMap<String, ProviderStats> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
