//! Counters per provider: requests, errors, latency, tokens. They feed metrics.

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
}

/// Shared by every caller; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Stats(Arc<Mutex<BTreeMap<String, ProviderStats>>>);

/// How a request ended.
pub enum Outcome {
    Answered(Usage),
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
            Outcome::Answered(usage) => {
                s.input_tokens += usage.input_tokens;
                s.output_tokens += usage.output_tokens;
            }
            Outcome::Failed => s.errors += 1,
            Outcome::TimedOut => {
                s.errors += 1;
                s.timeouts += 1;
            }
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, ProviderStats> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
