//! How the server reports on itself: logs (human-readable by default, JSON lines with
//! `--log-json` / `APEX_LOG_FORMAT=json`; tokens and message text are never logged),
//! metrics (`GET /metrics`, Prometheus text; the catalogue is `apex_telemetry`) and, in a
//! build with the `otlp` feature, traces exported over OTLP/HTTP (the `otlp` module).
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry};

use crate::AppState;

/// A layer of the process's subscriber.
type Layer = Box<dyn tracing_subscriber::Layer<Registry> + Send + Sync>;

/// What `init` set up that must outlive the server: dropping it sends the traces still
/// queued (with the `otlp` feature).
#[must_use = "dropping it stops the trace export"]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(traces) = self.traces.take() {
            if let Err(e) = traces.shutdown() {
                eprintln!("apex: the last traces could not be exported: {e}");
            }
        }
    }
}

/// Installs the process's subscriber: logs to stderr and, when an OTLP endpoint is set,
/// trace export.
pub fn init(json: bool) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    #[cfg_attr(not(feature = "otlp"), allow(unused_mut))]
    let mut layers: Vec<Layer> = vec![if json { logs.json().flatten_event(true).boxed() } else { logs.boxed() }];
    let endpoint = otlp_endpoint();
    #[cfg(feature = "otlp")]
    let (traces, failed) = match endpoint.as_ref().map(|_| otlp::layer()) {
        Some(Ok((layer, provider))) => {
            layers.push(layer);
            (Some(provider), None)
        }
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let _ = tracing_subscriber::registry().with(layers).with(filter).try_init();
    #[cfg(feature = "otlp")]
    match (&traces, failed) {
        (Some(_), _) => {
            tracing::info!(endpoint = %endpoint.unwrap_or_default(), "exporting traces over OTLP/HTTP")
        }
        (None, Some(e)) => {
            tracing::error!(error = %e, "the OTLP trace exporter could not be set up; traces are not exported")
        }
        (None, None) => {}
    }
    #[cfg(not(feature = "otlp"))]
    if endpoint.is_some() {
        tracing::warn!("OTEL_EXPORTER_OTLP_ENDPOINT is set, but this build has no OTLP export (build with `--features otlp`)");
    }
    Telemetry {
        #[cfg(feature = "otlp")]
        traces,
    }
}

/// Where traces go, when an OTLP endpoint is set (the standard variables).
fn otlp_endpoint() -> Option<String> {
    ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

/// Trace export over OTLP/HTTP (protobuf), configured the OpenTelemetry way, from the
/// environment: `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
/// turns it on; `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
/// `OTEL_SERVICE_NAME` (default `apex`), `OTEL_RESOURCE_ATTRIBUTES` and the batch
/// processor's `OTEL_BSP_*` are honoured. Every span the logs have is exported (`connection`,
/// `run`, `agent`, `tool`) with its fields (`user_id`, `thread_id`, `run_id`, `agent`,
/// `tool`) as attributes; like the logs, spans never carry tokens or message text.
#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use opentelemetry_sdk::Resource;
    use tracing_subscriber::Layer as _;

    use super::Layer;

    pub(super) fn layer() -> anyhow::Result<(Layer, SdkTracerProvider)> {
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("apex");
        }
        let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
        let tracer = provider.tracer("apex");
        Ok((tracing_opentelemetry::layer().with_tracer(tracer).boxed(), provider))
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics() -> impl IntoResponse {
    let tasks = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    metrics::gauge!(apex_telemetry::RUNTIME_TASKS_ALIVE).set(tasks as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], apex_telemetry::render())
}
