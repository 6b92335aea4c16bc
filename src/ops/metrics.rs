//! `GET /metrics` in Prometheus's text format, through the `metrics` facade and its
//! Prometheus exporter: plugins and the server record with `metrics::counter!` and friends
//! wherever they are, and this module owns the recorder, the call observer and the gauges
//! that are read at scrape time (plugin states, sessions).
//!
//! Labels are bounded: plugin, tool (published names only; an unknown name a client sent is
//! counted under `tool=""`), face, outcome, provider, model, bucket. Never an argument, an id
//! a client chose, or a value.

use std::sync::{Arc, OnceLock};

use axum::{
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::Ops;
use crate::plugin::{CallFinished, CallObserver, CallStarted, ErrorKind, Manager, Outcome};

/// Seconds: from a cached answer (tens of µs) to a long model call (minutes).
const CALL_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The process's recorder: installed once, on the first HTTP server's start.
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the Prometheus recorder for this process (once) and describe every metric.
/// `None` if another recorder was installed first (then nothing is exported).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), CALL_BUCKETS)
                .ok()?
                .install_recorder()
                .map_err(
                    |e| tracing::warn!(error = %e, "no /metrics: a recorder is already installed"),
                )
                .ok()?;
            describe();
            // Histograms keep their samples until rendered: fold them in on a timer so a
            // server nobody scrapes stays bounded.
            let upkeep = handle.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    upkeep.run_upkeep();
                }
            });
            Some(handle)
        })
        .clone()
}

fn describe() {
    describe_counter!(
        "plugboard_tool_calls_total",
        "Tool calls by plugin, tool, face (stdio, http, sse, rest, cli, agent, dashboard) and outcome (ok, tool_error, unknown_tool, invalid_arguments, timeout, cancelled, panic, unavailable, failed)"
    );
    describe_histogram!(
        "plugboard_tool_call_duration_seconds",
        Unit::Seconds,
        "Time from a call's schema check to its result, by plugin, tool and face"
    );
    describe_gauge!(
        "plugboard_tool_calls_in_flight",
        "Tool calls running now, by face"
    );
    describe_gauge!(
        "plugboard_plugin_up",
        "1 when the plugin is ready (or degraded but serving), 0 otherwise"
    );
    describe_gauge!(
        "plugboard_plugin_state",
        "1 for the plugin's current state (ready, degraded, down, failed, unconfigured, disabled), 0 for the others"
    );
    describe_gauge!(
        "plugboard_plugin_load_seconds",
        Unit::Seconds,
        "How long the plugin's last start took"
    );
    describe_gauge!(
        "plugboard_sessions",
        "Open client sessions by transport (streamable_http, legacy_sse)"
    );
    describe_gauge!("plugboard_http_connections", "Open HTTP connections");
    describe_gauge!(
        "plugboard_replicas",
        "Replicas sharing limits through Redis (PLUGBOARD_REDIS_URL), this one included, as of the last heartbeat"
    );
    describe_gauge!(
        "plugboard_shared_limits_degraded",
        "1 while Redis cannot be asked: this replica keeps to its share of each limit (the limit over the replicas last seen)"
    );
    describe_counter!(
        "plugboard_provider_requests_total",
        "Requests to model providers by provider, model and outcome (ok, error, timeout)"
    );
    describe_counter!(
        "plugboard_provider_tokens_total",
        "Tokens by provider, model and direction (input, output)"
    );
    describe_histogram!(
        "plugboard_provider_request_duration_seconds",
        Unit::Seconds,
        "Time of one provider request, by provider and model"
    );
    describe_counter!(
        "plugboard_provider_retries_total",
        "Provider requests sent again, by provider and reason (rate_limited, server_error, transport)"
    );
    describe_gauge!(
        "plugboard_provider_cost_usd",
        "US dollars spent on each provider and model since start, by the agents manifest's price table"
    );
    describe_counter!(
        "plugboard_import_rows_total",
        "Rows of bulk imports, by service and outcome (created, updated, failed, skipped)"
    );
    describe_gauge!(
        "plugboard_github_ratelimit_remaining",
        "Requests left in GitHub's current window, by bucket (core, search, graphql, …), from x-ratelimit-remaining"
    );
    describe_histogram!(
        "plugboard_github_wait_seconds",
        Unit::Seconds,
        "Time GitHub requests waited before being sent, by reason (primary: a rate-limit bucket used up; secondary: GitHub asked to slow down; write_spacing: writes spaced out)"
    );
    describe_counter!(
        "plugboard_airtable_rate_limited_total",
        "429 answers from Airtable (each one a 30 s lockout of the base), by base"
    );
    describe_histogram!(
        "plugboard_airtable_pacer_wait_seconds",
        Unit::Seconds,
        "Time each request waited for the Airtable pacer (5 requests/s per base, 50 per token), by base"
    );
}

/// Counts every call of `manager` (installed with the recorder).
pub fn observe(manager: &Manager) {
    manager.observers().add(Arc::new(CallMetrics));
}

struct CallMetrics;

impl CallObserver for CallMetrics {
    fn started(&self, call: &CallStarted<'_>) {
        gauge!("plugboard_tool_calls_in_flight", "face" => call.caller.face.as_str())
            .increment(1.0);
    }

    fn finished(&self, call: &CallFinished<'_>) {
        let face = call.caller.face.as_str();
        let unknown = call.outcome == Outcome::Failed(ErrorKind::UnknownTool);
        if !unknown {
            gauge!("plugboard_tool_calls_in_flight", "face" => face).decrement(1.0);
        }
        // A name no plugin serves is the client's text: not a label.
        let tool = if unknown {
            String::new()
        } else {
            call.tool.to_owned()
        };
        counter!(
            "plugboard_tool_calls_total",
            "plugin" => call.plugin.to_owned(),
            "tool" => tool.clone(),
            "face" => face,
            "outcome" => call.outcome.as_str(),
        )
        .increment(1);
        if !unknown {
            histogram!(
                "plugboard_tool_call_duration_seconds",
                "plugin" => call.plugin.to_owned(),
                "tool" => tool,
                "face" => face,
            )
            .record(call.duration.as_secs_f64());
        }
    }
}

const STATES: &[&str] = &[
    "ready",
    "degraded",
    "down",
    "failed",
    "unconfigured",
    "disabled",
];

/// The gauges read at scrape time.
fn scrape_gauges(ops: &Ops) {
    for plugin in ops.manager.statuses() {
        let state = super::api::PluginInfo::from(plugin.clone()).state;
        let up = matches!(state, "ready" | "degraded");
        gauge!("plugboard_plugin_up", "plugin" => plugin.name.clone()).set(f64::from(u8::from(up)));
        for s in STATES {
            gauge!("plugboard_plugin_state", "plugin" => plugin.name.clone(), "state" => *s)
                .set(f64::from(u8::from(*s == state)));
        }
        if let Some(ms) = plugin.load_ms {
            gauge!("plugboard_plugin_load_seconds", "plugin" => plugin.name.clone())
                .set(ms as f64 / 1e3);
        }
    }
    (ops.gauges)();
}

/// Every metric, in Prometheus's text format (0.0.4).
pub async fn render(State(ops): State<Ops>) -> Response {
    let Some(handle) = ops.metrics.clone() else {
        return super::Problem::new(
            axum::http::StatusCode::NOT_FOUND,
            "no-metrics",
            "metrics are not recorded by this server (it was started with --no-metrics)",
        )
        .into_response();
    };
    scrape_gauges(&ops);
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
