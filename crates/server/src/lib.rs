//! The Apex server: axum over the run engine.
//!
//! [`run`] takes a bound listener, the settings and a shutdown future; tests bind
//! `127.0.0.1:0` and pass their own. [`Server`] is the same with seams for tests and
//! embedders (replace a tool, or the usage data source).
#![forbid(unsafe_code)]

pub mod accounts;
pub mod api;
pub mod auth;
pub mod health;
pub mod limits;
pub mod listen;
pub mod orgs;
pub mod prices;
pub mod settings;
pub mod shares;
pub mod telemetry;
pub mod usage;
pub mod web;
pub mod ws;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apex_costs::PriceBook;
use apex_engine::agents::ModelWriter;
use apex_engine::{DynTool, EngineSettings, RunManager, StoredUsage, Tools, UsageSource};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use auth::{Auth, Identity};
pub use settings::{LogFormat, Settings};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub auth: Arc<Auth>,
    /// What usage costs here: the catalog and this deployment's negotiated rates.
    pub prices: PriceBook,
    pub runs: RunManager,
    /// Cancelled when shutdown begins: sessions announce `server_shutdown`.
    pub shutting_down: CancellationToken,
    /// Cancelled when runs are over: sessions flush and close with 1012.
    pub close_sessions: CancellationToken,
    pub sessions: TaskTracker,
    pub connections: Arc<AtomicUsize>,
    /// Per-user allowances shared by all of a user's connections.
    pub users: Arc<limits::UserLimits>,
    /// Sockets of signed-in sessions, closed when their session ends.
    pub revocations: Arc<accounts::revocation::Revocations>,
    /// Sign-in attempts per address.
    pub sign_in_attempts: Arc<limits::AttemptLimits>,
    /// The OpenID Connect provider's metadata, once fetched.
    pub oidc: Arc<accounts::oidc::Discovery>,
}

impl AppState {
    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// A server under construction.
pub struct Server {
    settings: Settings,
    tools: Tools,
    /// `None`: the user's imported usage from the store (demo data until they import).
    source: Option<Arc<dyn UsageSource>>,
}

impl Server {
    pub fn new(settings: Settings) -> Self {
        Self { settings, tools: apex_engine::tools::builtin(), source: None }
    }

    /// Replaces the tool of the same name.
    pub fn with_tool(mut self, tool: Arc<dyn DynTool>) -> Self {
        self.tools = self.tools.with(tool);
        self
    }

    pub fn with_usage_source(mut self, source: Arc<dyn UsageSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// Opens the store, recovers unfinished runs, and serves until `shutdown` resolves;
    /// then stops accepting, tells clients, lets runs finish within the grace period and
    /// closes every socket with 1012.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let state = self.build().await?;
        let app = router(state.clone());
        let stop_accepting = CancellationToken::new();
        let settings = &state.settings;
        // WebSockets beyond `max_connections` are told to come back (1013) rather than
        // dropped: the TCP cap leaves room for them and for health checks.
        let total = settings.max_connections + (settings.max_connections / 10).max(64);
        let admission = listen::Admission::new(total, settings.max_connections_per_ip);
        let server = tokio::spawn(listen::serve(
            listener,
            app,
            admission,
            settings.header_timeout,
            stop_accepting.clone(),
            Duration::from_secs(5),
        ));
        // `/metrics` on a listener of its own: scraped on a private address, never public.
        if let Some(addr) = settings.metrics_bind {
            let metrics = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("APEX_METRICS_BIND {addr}: {e}"))?;
            tracing::info!(addr = %metrics.local_addr()?, "metrics served on their own listener");
            let router = telemetry::router().layer(trace_layer()).with_state(state.clone());
            let admission = listen::Admission::new(64, 64);
            let stop = stop_accepting.clone();
            tokio::spawn(listen::serve(metrics, router, admission, settings.header_timeout, stop, Duration::from_secs(1)));
        }
        tracing::info!("ready");

        shutdown.await;
        let grace = state.settings.shutdown_grace;
        tracing::info!(grace_ms = grace.as_millis() as u64, active_runs = state.runs.active_runs(), "shutting down");
        stop_accepting.cancel();
        state.shutting_down.cancel();
        let interrupted = state.runs.shutdown(grace).await;
        state.close_sessions.cancel();
        state.sessions.close();
        if tokio::time::timeout(Duration::from_secs(5), state.sessions.wait()).await.is_err() {
            tracing::warn!("some connections did not close in time");
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        tracing::info!(interrupted, "stopped");
        Ok(())
    }

    async fn build(self) -> anyhow::Result<AppState> {
        // Before anything records a metric: what is recorded earlier is lost.
        if apex_telemetry::install().is_none() {
            tracing::warn!("another metrics recorder is installed in this process; /metrics stays empty");
        }
        let settings = self.settings;
        let auth = Auth::from_settings(&settings)?;
        auth.warm().await;
        let prices = prices::book(&settings).map_err(anyhow::Error::msg)?;
        if !prices.overrides().is_empty() {
            tracing::info!(overrides = prices.overrides().len(), "negotiated prices replace the catalog's for these models");
        }
        if settings.demo_mode {
            tracing::warn!("demo mode is on: clients without a token are admitted as demo users (set DEMO_MODE=0 or APEX_ENV=production to turn it off)");
        }
        if settings.database_url.starts_with("sqlite:") {
            std::fs::create_dir_all(&settings.data_dir)?;
        }
        let store = apex_store::connect_with(&settings.database_url, &settings.store_options()).await?;
        let mut tools = self.tools;
        if !settings.tool_delay.is_zero() {
            let delay = settings.tool_delay;
            tracing::warn!(delay_ms = delay.as_millis() as u64, "fault injection: every tool call is delayed");
            tools = tools.map(|inner| Arc::new(apex_engine::tools::Delayed { inner, delay }));
        }
        let model = model_writer(&settings).await?;
        if let Some(m) = &model {
            tracing::info!(system = m.provider.system(), model = m.provider.model(), "a language model writes the reports");
        }
        let engine = EngineSettings {
            run_timeout: settings.run_timeout,
            lease: settings.instance_lease,
            max_runs_per_user: settings.max_runs_per_user,
            model,
            prices: prices.clone(),
            ..EngineSettings::default()
        };
        let source = self.source.unwrap_or_else(|| Arc::new(StoredUsage::new(store.clone())));
        let cluster: Option<Arc<dyn apex_engine::Cluster>> = match &settings.redis_url {
            Some(url) => {
                tracing::info!("REDIS_URL is set: runs can be followed, resumed and stopped from any instance");
                Some(apex_cluster::RedisCluster::start(url)?)
            }
            None => None,
        };
        let runs = RunManager::start_in_cluster(store, engine, tools, source, cluster).await?;
        let users = Arc::new(limits::UserLimits::new(settings.max_connections_per_user, settings.user_rate_limit));
        let revocations = Arc::new(accounts::revocation::Revocations::default());
        let sign_in_attempts = Arc::new(limits::AttemptLimits::new(settings.login_rate_limit));
        let shutting_down = CancellationToken::new();
        tokio::spawn(revocations.clone().watch_store(runs.store().clone(), shutting_down.clone()));
        if auth.can_mint() && !settings.demo_mode {
            match apex_store::Accounts::accounts(runs.store().as_ref()).await {
                Ok(accounts) if accounts.is_empty() => tracing::warn!(
                    "no accounts yet: create the first (an admin) with `apex users create NAME` and this server's configuration"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not count the accounts"),
            }
        }
        Ok(AppState {
            settings: Arc::new(settings),
            auth: Arc::new(auth),
            prices,
            runs,
            shutting_down,
            close_sessions: CancellationToken::new(),
            sessions: TaskTracker::new(),
            connections: Arc::new(AtomicUsize::new(0)),
            users,
            revocations,
            sign_in_attempts,
            oidc: Arc::default(),
        })
    }
}

/// The configured language model (`APEX_LLM`), or `None` for the built-in writer.
/// A report may take half the run's time from the model: the rest is the fallback's.
async fn model_writer(settings: &Settings) -> anyhow::Result<Option<ModelWriter>> {
    let provider: Arc<dyn apex_llm::LlmProvider> = match settings.llm.as_str() {
        "openai" => {
            let model = settings.llm_model.clone().unwrap_or_else(|| "gpt-4o-mini".into());
            let mut config = apex_llm::openai::OpenAiConfig::new(&settings.openai_base_url, model);
            config.api_key = settings.openai_api_key.clone();
            config.read_timeout = settings.llm_timeout;
            Arc::new(apex_llm::openai::OpenAi::new(config)?)
        }
        "local" => {
            let path = settings.llm_model_path.clone().unwrap_or_else(|| apex_llm::local::default_model_path(&settings.data_dir));
            if !path.is_file() {
                anyhow::bail!(
                    "APEX_LLM=local: no model at {} (run `apex models pull smollm2`, or set APEX_LLM_MODEL_PATH)",
                    path.display()
                );
            }
            let started = std::time::Instant::now();
            let model = tokio::task::spawn_blocking(move || apex_llm::local::LocalModel::load(&path)).await??;
            tracing::info!(load_ms = started.elapsed().as_millis() as u64, "local model loaded");
            Arc::new(model)
        }
        _ => return Ok(None),
    };
    let mut model = ModelWriter::new(provider, settings.run_timeout / 2, settings.llm_max_tokens);
    model.plans = match settings.llm_mode.as_deref() {
        Some(mode) => mode == "plan",
        None => settings.llm == "openai",
    };
    model.temperature = settings.llm_temperature;
    model.max_steps = settings.llm_max_steps;
    model.max_run_tokens = settings.llm_max_run_tokens;
    model.addendum = settings.llm_prompt_addendum.clone();
    Ok(Some(model))
}

/// Serves with the built-in tools and demo data until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Server::new(settings).serve(listener, shutdown).await
}

/// Each feature module owns its routes; this merges them. Every request is traced (an
/// `http` span with its method, route, status and, once authenticated, its user and run).
pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .merge(health::router())
        .merge(ws::router())
        .merge(api::router())
        .merge(accounts::router())
        .merge(usage::router())
        .merge(orgs::router())
        .merge(shares::router())
        .merge(web::router());
    if state.settings.metrics_bind.is_none() {
        router = router.merge(telemetry::router());
    }
    router.layer(trace_layer()).with_state(state)
}

type HttpRequest = axum::http::Request<axum::body::Body>;
type HttpResponse = axum::http::Response<axum::body::Body>;
type TraceLayer = tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    fn(&HttpRequest) -> tracing::Span,
    (),
    fn(&HttpResponse, Duration, &tracing::Span),
>;

/// The span of an HTTP request: method and route template (never the query, which may
/// hold a token), then the status and, filled in by the handlers, the user and run ids.
fn trace_layer() -> TraceLayer {
    fn span(request: &HttpRequest) -> tracing::Span {
        let route = request.extensions().get::<axum::extract::MatchedPath>().map_or("unmatched", |m| m.as_str());
        let empty = tracing::field::Empty;
        tracing::info_span!("http", method = %request.method(), route, status = empty, user_id = empty, run_id = empty)
    }
    fn response(response: &HttpResponse, latency: Duration, span: &tracing::Span) {
        span.record("status", response.status().as_u16());
        tracing::debug!(latency_ms = latency.as_secs_f64() * 1e3, "response");
    }
    tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(span as fn(&_) -> _)
        .on_request(())
        .on_response(response as fn(&_, _, &_))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
