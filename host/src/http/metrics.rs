//! `GET /metrics` in the Prometheus text format: per-plugin calls, errors,
//! timeouts and a latency histogram; HTTP requests by route and status;
//! model tokens and provider round latency; reloads and rejected loads.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::agent::usage::LATENCY_BUCKETS;
use crate::plugins::stats::{BUCKETS, StatsSnapshot};

/// Requests counted by (method, route, status). A std `Mutex`: held for one
/// map update, never across an await.
#[derive(Default)]
pub struct HttpMetrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
}

pub async fn count_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().to_string();
    // The route pattern, not the path: ids must not explode the label set.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    let key = (method, route, response.status().as_u16());
    *state
        .http_metrics
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default() += 1;
    response
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = String::new();
    let snapshot = state.registry.snapshot();

    let stats: Vec<_> = snapshot
        .plugins()
        .map(|p| {
            (
                p.name().to_string(),
                p.manifest.version.clone(),
                p.stats.snapshot(),
            )
        })
        .collect();
    let counters: [Counter; 3] = [
        (
            "wasmgate_plugin_calls_total",
            "Calls into each loaded plugin version.",
            |s| s.calls,
        ),
        (
            "wasmgate_plugin_errors_total",
            "Calls that failed in the plugin (traps, limits, deadlines).",
            |s| s.errors,
        ),
        (
            "wasmgate_plugin_timeouts_total",
            "Calls stopped at their deadline.",
            |s| s.timeouts,
        ),
    ];
    for (metric, help, value) in counters {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
        for (name, version, s) in &stats {
            let _ = writeln!(
                out,
                "{metric}{{plugin=\"{name}\",version=\"{}\"}} {}",
                escape(version),
                value(s)
            );
        }
    }
    out += "# HELP wasmgate_plugin_call_duration_seconds Time per call, instantiation included.\n# TYPE wasmgate_plugin_call_duration_seconds histogram\n";
    for (name, version, s) in &stats {
        let labels = format!("plugin=\"{name}\",version=\"{}\"", escape(version));
        for (le, count) in BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".to_string()])
            .zip(&s.cumulative)
        {
            let _ = writeln!(
                out,
                "wasmgate_plugin_call_duration_seconds_bucket{{{labels},le=\"{le}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "wasmgate_plugin_call_duration_seconds_sum{{{labels}}} {}",
            s.seconds_total
        );
        let _ = writeln!(
            out,
            "wasmgate_plugin_call_duration_seconds_count{{{labels}}} {}",
            s.calls
        );
    }

    out += "# HELP wasmgate_http_requests_total HTTP requests by route and status.\n# TYPE wasmgate_http_requests_total counter\n";
    for ((method, route, status), count) in state
        .http_metrics
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        let _ = writeln!(
            out,
            "wasmgate_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {count}",
            escape(route)
        );
    }

    out += "# HELP wasmgate_plugin_outbound_requests_total Requests tools made with the http capability, by host and outcome.\n# TYPE wasmgate_plugin_outbound_requests_total counter\n";
    for ((plugin, host, outcome), count) in state.runtime.outbound_counts() {
        let _ = writeln!(
            out,
            "wasmgate_plugin_outbound_requests_total{{plugin=\"{}\",host=\"{}\",outcome=\"{outcome}\"}} {count}",
            escape(&plugin),
            escape(&host)
        );
    }

    out += "# HELP wasmgate_llm_tokens_total Tokens the model providers reported, by provider, model and kind (input, output).\n# TYPE wasmgate_llm_tokens_total counter\n";
    for ((provider, model, kind), count) in state.agent.llm_metrics.tokens() {
        let _ = writeln!(
            out,
            "wasmgate_llm_tokens_total{{provider=\"{}\",model=\"{}\",kind=\"{kind}\"}} {count}",
            escape(&provider),
            escape(&model)
        );
    }
    out += "# HELP wasmgate_llm_round_duration_seconds Time per provider round, from the request to the complete answer.\n# TYPE wasmgate_llm_round_duration_seconds histogram\n";
    for (provider, latency) in state.agent.llm_metrics.latency() {
        let labels = format!("provider=\"{}\"", escape(&provider));
        let mut cumulative = 0;
        for (le, count) in LATENCY_BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".to_string()])
            .zip(latency.buckets)
        {
            cumulative += count;
            let _ = writeln!(
                out,
                "wasmgate_llm_round_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "wasmgate_llm_round_duration_seconds_sum{{{labels}}} {}\nwasmgate_llm_round_duration_seconds_count{{{labels}}} {}",
            latency.seconds_total, latency.count
        );
    }

    use std::sync::atomic::Ordering::Relaxed;
    out += "# HELP wasmgate_plugin_reloads_total Reloads of the plugin directory.\n# TYPE wasmgate_plugin_reloads_total counter\n";
    let _ = writeln!(
        out,
        "wasmgate_plugin_reloads_total {}",
        state.reloader.reloads.load(Relaxed)
    );
    out += "# HELP wasmgate_plugin_rejected_loads_total Plugin loads a reload rejected.\n# TYPE wasmgate_plugin_rejected_loads_total counter\n";
    let _ = writeln!(
        out,
        "wasmgate_plugin_rejected_loads_total {}",
        state.reloader.rejected.load(Relaxed)
    );
    out += "# HELP wasmgate_plugins_loaded Plugins serving now.\n# TYPE wasmgate_plugins_loaded gauge\n";
    let _ = writeln!(
        out,
        "wasmgate_plugins_loaded {}",
        snapshot.plugins().count()
    );

    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// A per-plugin counter: name, help text, and how to read it.
type Counter = (&'static str, &'static str, fn(&StatsSnapshot) -> u64);

/// Label values escape backslashes, quotes and newlines.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
