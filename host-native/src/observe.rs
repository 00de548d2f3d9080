//! What an operator sees of a running server: request logs (tower-http's `TraceLayer`: method,
//! route, status, latency, bytes — never a query string, so never a `?token=`), Prometheus
//! metrics at `/metrics` (the `metrics` facade with `metrics-exporter-prometheus`), and the
//! `/livez` / `/readyz` probes.
//!
//! Counters and histograms are recorded where things happen (each request here, each job as
//! it ends in `drive.rs`); what is a state rather than an event — vectors and log bytes per
//! index, jobs per kind and state, indexes loading — is read from the engine when scraped.

use crate::db::{Db, lock};
use crate::http::St;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cairn_core::{Job, JobKind, JobStatus};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::TraceLayer;
use tracing::Span;

/// How the server writes its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

/// Installs the log subscriber (`RUST_LOG` filters; default `info`).
pub fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => b
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
        LogFormat::Json => b
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's metrics recorder, installed on first use (`None` if another recorder was
/// installed first: metrics are then not rendered, the server runs on).
fn prometheus() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let buckets = [
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ];
            PrometheusBuilder::new()
                .set_buckets(&buckets)
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

/// Installs the metrics recorder now (before the first request is counted).
pub fn init_metrics() {
    let _ = prometheus();
}

/// The route a request matched, as registered (`/api/v1/index/{name}/search`): what logs and
/// metrics name it by, so neither carries ids, names or query strings.
fn route_of(req: &Request) -> String {
    req.extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string())
}

/// The request-log layer's type (see [`trace_layer`]).
pub type RequestLog = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    fn(&Request) -> Span,
    (),
    fn(&Response, Duration, &Span),
>;

/// The request-log layer: a span per request with its method and route, and one event at the
/// response with its status, latency and bytes.
pub fn trace_layer() -> RequestLog {
    TraceLayer::new_for_http()
        .make_span_with(request_span as fn(&Request) -> Span)
        .on_request(())
        .on_response(log_response as fn(&Response, Duration, &Span))
}

fn request_span(req: &Request) -> Span {
    let bytes_in = content_length(req.headers());
    tracing::info_span!(
        "request",
        method = %req.method(),
        route = %route_of(req),
        bytes_in,
    )
}

fn log_response(res: &Response, latency: Duration, _span: &Span) {
    tracing::info!(
        target: "cairn::http",
        status = res.status().as_u16(),
        latency_us = latency.as_micros() as u64,
        bytes_out = body_bytes(res),
        "request"
    );
}

/// A response's body size where it is known up front (a streamed download counts 0).
fn body_bytes(res: &Response) -> u64 {
    use axum::body::HttpBody;
    res.body().size_hint().exact().unwrap_or(0)
}

fn content_length(h: &axum::http::HeaderMap) -> u64 {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Counts each request and its latency by method, route and status.
pub async fn count_request(req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = route_of(&req);
    let t0 = Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    let bytes = body_bytes(&res);
    metrics::counter!("cairn_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("cairn_http_request_duration_seconds", "method" => method, "route" => route.clone())
        .record(t0.elapsed().as_secs_f64());
    metrics::counter!("cairn_http_response_bytes_total", "route" => route).increment(bytes);
    res
}

/// Records a job that ended: its count and duration by kind and status; for a backup, its
/// bytes, throughput and the writes' pause.
pub fn job_ended(j: &Job, total: Option<Duration>) {
    let kind = kind_name(j.kind);
    let status = status_name(j.status);
    metrics::counter!("cairn_jobs_ended_total", "kind" => kind, "status" => status).increment(1);
    let secs = total.map(|d| d.as_secs_f64()).or_else(|| {
        Some(
            j.completed_at?
                .saturating_sub(j.started_at.unwrap_or(j.created_at)) as f64
                / 1e3,
        )
    });
    if let Some(s) = secs {
        metrics::histogram!("cairn_job_duration_seconds", "kind" => kind, "status" => status)
            .record(s);
    }
    if j.kind == JobKind::Backup && j.status == JobStatus::Completed {
        let bytes = j.archive_size.unwrap_or(0);
        metrics::counter!("cairn_backup_bytes_total").increment(bytes);
        if let Some(s) = secs.filter(|s| *s > 0.0) {
            metrics::gauge!("cairn_backup_last_bytes_per_second").set(bytes as f64 / s);
        }
        metrics::histogram!("cairn_backup_write_pause_seconds")
            .record(j.write_pause_us as f64 / 1e6);
    }
}

/// Records a checkpoint written (its bytes and how long it took).
pub fn checkpoint_written(bytes: u64, took: Duration) {
    metrics::counter!("cairn_checkpoints_total").increment(1);
    metrics::counter!("cairn_checkpoint_bytes_total").increment(bytes);
    metrics::histogram!("cairn_checkpoint_duration_seconds").record(took.as_secs_f64());
}

fn kind_name(k: JobKind) -> &'static str {
    match k {
        JobKind::Backup => "backup",
        JobKind::Restore => "restore",
        JobKind::Rebuild => "rebuild",
    }
}

fn status_name(s: JobStatus) -> &'static str {
    match s {
        JobStatus::Queued => "queued",
        JobStatus::Running => "running",
        JobStatus::Cancelling => "cancelling",
        JobStatus::Completed => "completed",
        JobStatus::Failed => "failed",
        JobStatus::Cancelled => "cancelled",
    }
}

/// `GET /metrics`: the Prometheus text format, state gauges read from the engine now.
#[utoipa::path(get, path = "/metrics", tag = "operations", summary = "Prometheus metrics (root token)", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(s): St) -> Response {
    let db = s.db.clone();
    let Some(h) = prometheus() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable",
        )
            .into_response();
    };
    let db2 = db.clone();
    let _ = tokio::task::spawn_blocking(move || scrape_state(&db2)).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        h.render(),
    )
        .into_response()
}

/// Sets the gauges that describe state: per index, its vectors, log and checkpoint bytes and
/// vectors waiting for graph links; jobs per kind and state; readiness.
fn scrape_state(db: &Db) {
    for h in db.handles() {
        let (vectors, pending) = {
            let ix = crate::db::read_lock(&h.index);
            (ix.len() as f64, ix.pending_links() as f64)
        };
        let name = h.name.clone();
        metrics::gauge!("cairn_index_vectors", "index" => name.clone()).set(vectors);
        metrics::gauge!("cairn_index_pending_links", "index" => name.clone()).set(pending);
        if let Some((log, ck)) = db.file_sizes(&name) {
            metrics::gauge!("cairn_index_log_bytes", "index" => name.clone()).set(log as f64);
            metrics::gauge!("cairn_index_checkpoint_bytes", "index" => name).set(ck as f64);
        }
    }
    let e = lock(&db.engine);
    let mut counts = std::collections::BTreeMap::new();
    for j in e.registry.list() {
        *counts
            .entry((kind_name(j.kind), status_name(j.status)))
            .or_insert(0u64) += 1;
    }
    for ((kind, status), n) in counts {
        metrics::gauge!("cairn_jobs", "kind" => kind, "status" => status).set(n as f64);
    }
    metrics::gauge!("cairn_indexes_loading").set(e.loading().count() as f64);
    metrics::gauge!("cairn_indexes_broken").set(e.broken().count() as f64);
}

/// `GET /livez`: the process answers.
#[utoipa::path(get, path = "/livez", tag = "operations", summary = "Liveness probe (no token)", responses((status = 200, description = "The process answers", body = Value)), security(()))]
pub async fn livez() -> Response {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "ok"})),
    )
        .into_response()
}

/// `GET /readyz`: 200 once every index found at start has loaded (or failed to, reported
/// under its name), 503 until then.
#[utoipa::path(get, path = "/readyz", tag = "operations", summary = "Readiness probe: every index loaded (no token)", responses((status = 200, description = "Ready", body = Value), (status = 503, description = "Still loading", body = Value)), security(()))]
pub async fn readyz(State(s): St) -> Response {
    let loading: Vec<String> = lock(&s.db.engine).loading().map(String::from).collect();
    if loading.is_empty() {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ready"})),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "loading", "loading": loading})),
        )
            .into_response()
    }
}
