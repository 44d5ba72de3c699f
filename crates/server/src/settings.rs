//! Configuration, layered: defaults → optional TOML file → environment → command-line
//! flags. Every layer is a [`Layer`] (all fields optional); [`Settings::resolve`] folds them.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

#[derive(Clone, Debug)]
pub struct Settings {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Dsn,
    /// Connections in the PostgreSQL pool.
    pub db_max_connections: u32,
    /// PostgreSQL cancels any statement running longer than this.
    pub db_statement_timeout: Duration,
    pub redis_url: Option<Dsn>,
    /// An instance silent for this long loses its runs to the others (as interrupted).
    pub instance_lease: Duration,
    pub demo_mode: bool,
    pub env: String,
    pub jwt_secret: Option<SecretString>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    /// Who writes the answer: `builtin`, `openai` or `local`.
    pub llm: String,
    /// An OpenAI-compatible endpoint, up to the API version (`…/v1`).
    pub openai_base_url: String,
    pub openai_api_key: Option<SecretString>,
    /// The model to ask (`openai`); defaults to `gpt-4o-mini`.
    pub llm_model: Option<String>,
    /// The GGUF file of the local model (`local`); defaults to the one `apex models pull` fetches.
    pub llm_model_path: Option<PathBuf>,
    /// How long to wait for a model's first and each next token before giving up on it.
    pub llm_timeout: Duration,
    /// The longest answer a model may write, in tokens.
    pub llm_max_tokens: u32,
    /// Threads the local model computes with (`local`); default: one per physical core.
    /// Read once, before the process starts other threads (see `apex serve`).
    pub llm_threads: Option<usize>,
    /// Largest accepted client text frame, in bytes.
    pub max_frame_bytes: usize,
    pub ping_interval: Duration,
    pub run_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Frames queued for one connection before its producers wait.
    pub outbound_queue: usize,
    /// A connection whose socket accepts nothing for this long is dropped as a slow consumer.
    pub write_timeout: Duration,
    /// Client frames per second allowed per connection (bursts of twice that).
    pub rate_limit: u32,
    /// Open WebSocket connections beyond this are closed with 1013 (try again later).
    pub max_connections: usize,
    /// TCP connections from one address beyond this are closed at once.
    pub max_connections_per_ip: usize,
    /// WebSocket connections of one user beyond this are refused (429).
    pub max_connections_per_user: usize,
    /// Runs one user may have in flight at once (in the deployment, with Redis).
    pub max_runs_per_user: usize,
    /// Client frames per second per user, all connections together (bursts of twice that).
    pub user_rate_limit: u32,
    /// An HTTP request's headers must arrive within this (also the longest idle time of a
    /// keep-alive connection between requests).
    pub header_timeout: Duration,
    /// Origins whose pages may open WebSockets besides the server's own (`*`: any).
    pub allowed_origins: Vec<String>,
    pub log_json: bool,
    /// Fault injection: every tool call waits this long first (0 = off).
    pub tool_delay: Duration,
    /// Negotiated prices that replace the catalog's (TOML, see `prices.rs`).
    pub prices_file: Option<PathBuf>,
}

/// One configuration layer; `None` leaves the value of the layers below.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub bind: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<Dsn>,
    pub db_max_connections: Option<u32>,
    pub db_statement_timeout_secs: Option<f64>,
    pub redis_url: Option<Dsn>,
    pub instance_lease_secs: Option<f64>,
    pub demo_mode: Option<bool>,
    pub env: Option<String>,
    pub jwt_secret: Option<SecretString>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub llm: Option<String>,
    pub openai_base_url: Option<String>,
    pub openai_api_key: Option<SecretString>,
    pub llm_model: Option<String>,
    pub llm_model_path: Option<PathBuf>,
    pub llm_timeout_secs: Option<f64>,
    pub llm_max_tokens: Option<u32>,
    pub llm_threads: Option<usize>,
    pub max_frame_bytes: Option<usize>,
    pub ping_interval_secs: Option<f64>,
    pub run_timeout_secs: Option<f64>,
    pub shutdown_grace_secs: Option<f64>,
    pub outbound_queue: Option<usize>,
    pub write_timeout_secs: Option<f64>,
    pub rate_limit: Option<u32>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub max_connections_per_user: Option<usize>,
    pub max_runs_per_user: Option<usize>,
    pub user_rate_limit: Option<u32>,
    pub header_timeout_secs: Option<f64>,
    /// Comma-separated.
    pub allowed_origins: Option<String>,
    pub log_json: Option<bool>,
    pub tool_delay_ms: Option<u64>,
    pub prices_file: Option<PathBuf>,
}

/// A database or Redis URL. It may hold a password (`postgres://apex:PASSWORD@db/apex`),
/// so its `Debug` form masks one; the URL itself is what `Deref` gives.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Dsn(pub String);

impl std::ops::Deref for Dsn {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for Dsn {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for Dsn {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl std::fmt::Debug for Dsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `scheme://user:password@host…`: the password is what sits between the first `:`
        // after the scheme and the last `@` of the authority.
        let url = &self.0;
        let masked = url.split_once("://").and_then(|(scheme, rest)| {
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (userinfo, host) = rest[..authority_end].rsplit_once('@')?;
            let user = userinfo.split_once(':').map(|(user, _)| user)?;
            Some(format!("{scheme}://{user}:[redacted]@{host}{}", &rest[authority_end..]))
        });
        write!(f, "{:?}", masked.as_deref().unwrap_or(url))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("invalid config file {0}: {1}")]
    Parse(PathBuf, toml::de::Error),
    #[error("invalid value for {0}: {1}")]
    Env(&'static str, String),
    #[error("{0}")]
    Invalid(String),
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./apex-data"),
            database_url: Dsn::default(),
            db_max_connections: 16,
            db_statement_timeout: Duration::from_secs(30),
            redis_url: None,
            instance_lease: Duration::from_secs(10),
            demo_mode: true,
            env: "development".into(),
            jwt_secret: None,
            jwt_issuer: None,
            jwt_audience: None,
            llm: "builtin".into(),
            openai_base_url: "https://api.openai.com/v1".into(),
            openai_api_key: None,
            llm_model: None,
            llm_model_path: None,
            llm_timeout: Duration::from_secs(20),
            llm_max_tokens: 400,
            llm_threads: None,
            max_frame_bytes: apex_protocol::DEFAULT_MAX_CLIENT_FRAME,
            ping_interval: Duration::from_secs(30),
            run_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(25),
            outbound_queue: 256,
            write_timeout: Duration::from_secs(10),
            rate_limit: 50,
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            max_connections_per_user: 32,
            max_runs_per_user: 8,
            user_rate_limit: 100,
            header_timeout: Duration::from_secs(10),
            allowed_origins: Vec::new(),
            log_json: false,
            tool_delay: Duration::ZERO,
            prices_file: None,
        }
    }
}

impl Settings {
    /// How the store connects to a database server.
    pub fn store_options(&self) -> apex_store::StoreOptions {
        apex_store::StoreOptions {
            max_connections: self.db_max_connections,
            statement_timeout: self.db_statement_timeout,
            ..apex_store::StoreOptions::default()
        }
    }

    /// Defaults, then the file (if any), then the environment, then `flags`.
    pub fn load(file: Option<&Path>, flags: Layer) -> Result<Self, ConfigError> {
        let mut layers = Vec::with_capacity(3);
        if let Some(path) = file {
            layers.push(Layer::from_file(path)?);
        }
        layers.push(Layer::from_env(|k| std::env::var(k).ok())?);
        layers.push(flags);
        Self::resolve(layers)
    }

    pub fn resolve(layers: impl IntoIterator<Item = Layer>) -> Result<Self, ConfigError> {
        let mut s = Settings::default();
        for l in layers {
            s.apply(l)?;
        }
        s.finish()
    }

    fn apply(&mut self, l: Layer) -> Result<(), ConfigError> {
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = l.$field { self.$field = v; } )* };
        }
        macro_rules! set_some {
            ($($field:ident),*) => { $( if l.$field.is_some() { self.$field = l.$field; } )* };
        }
        set!(
            bind,
            data_dir,
            database_url,
            db_max_connections,
            demo_mode,
            env,
            llm,
            openai_base_url,
            llm_max_tokens,
            max_frame_bytes,
            outbound_queue,
            rate_limit,
            max_connections,
            max_connections_per_ip,
            max_connections_per_user,
            max_runs_per_user,
            user_rate_limit,
            log_json
        );
        if let Some(list) = l.allowed_origins {
            self.allowed_origins = list.split(',').map(|o| o.trim().to_owned()).filter(|o| !o.is_empty()).collect();
        }
        set_some!(
            redis_url,
            jwt_secret,
            jwt_issuer,
            jwt_audience,
            prices_file,
            openai_api_key,
            llm_model,
            llm_model_path,
            llm_threads
        );
        if let Some(ms) = l.tool_delay_ms {
            self.tool_delay = Duration::from_millis(ms);
        }
        for (value, target, name) in [
            (l.ping_interval_secs, &mut self.ping_interval, "ping_interval_secs"),
            (l.run_timeout_secs, &mut self.run_timeout, "run_timeout_secs"),
            (l.shutdown_grace_secs, &mut self.shutdown_grace, "shutdown_grace_secs"),
            (l.write_timeout_secs, &mut self.write_timeout, "write_timeout_secs"),
            (l.db_statement_timeout_secs, &mut self.db_statement_timeout, "db_statement_timeout_secs"),
            (l.instance_lease_secs, &mut self.instance_lease, "instance_lease_secs"),
            (l.llm_timeout_secs, &mut self.llm_timeout, "llm_timeout_secs"),
            (l.header_timeout_secs, &mut self.header_timeout, "header_timeout_secs"),
        ] {
            if let Some(secs) = value {
                *target = Duration::try_from_secs_f64(secs)
                    .map_err(|_| ConfigError::Invalid(format!("{name} must be a non-negative number of seconds")))?;
            }
        }
        Ok(())
    }

    /// Derived values and the rules that tie settings together.
    fn finish(mut self) -> Result<Self, ConfigError> {
        if self.env == "production" {
            self.demo_mode = false;
        }
        if self.database_url.is_empty() {
            self.database_url = Dsn(format!("sqlite://{}", self.data_dir.join("apex.db").display()));
        }
        if !matches!(self.llm.as_str(), "builtin" | "openai" | "local") {
            return Err(ConfigError::Invalid(format!("APEX_LLM={} is unknown: use builtin, openai or local", self.llm)));
        }
        if self.llm_timeout.is_zero() {
            return Err(ConfigError::Invalid("llm_timeout_secs must be greater than zero".into()));
        }
        if self.llm_threads == Some(0) {
            return Err(ConfigError::Invalid("llm_threads must be at least 1".into()));
        }
        if self.max_frame_bytes < 256 || self.outbound_queue == 0 || self.rate_limit == 0 {
            return Err(ConfigError::Invalid(
                "max_frame_bytes must be at least 256, outbound_queue and rate_limit at least 1".into(),
            ));
        }
        if self.instance_lease < std::time::Duration::from_millis(500) {
            return Err(ConfigError::Invalid("instance_lease_secs must be at least 0.5".into()));
        }
        if self.db_max_connections == 0 || self.db_statement_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "db_max_connections and db_statement_timeout_secs must be greater than zero".into(),
            ));
        }
        if self.max_connections_per_ip == 0
            || self.max_connections_per_user == 0
            || self.max_runs_per_user == 0
            || self.user_rate_limit == 0
        {
            return Err(ConfigError::Invalid(
                "max_connections_per_ip, max_connections_per_user, max_runs_per_user and user_rate_limit must be at least 1"
                    .into(),
            ));
        }
        if self.header_timeout.is_zero() {
            return Err(ConfigError::Invalid("header_timeout_secs must be greater than zero".into()));
        }
        if self.ping_interval.is_zero() {
            return Err(ConfigError::Invalid("ping_interval_secs must be greater than zero".into()));
        }
        Ok(self)
    }
}

impl Layer {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse(path.into(), e))
    }

    /// Reads the documented environment variables through `get` (so tests need not touch
    /// the process environment).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        fn parse<T: std::str::FromStr>(name: &'static str, v: Option<String>) -> Result<Option<T>, ConfigError> {
            v.map(|s| s.trim().parse::<T>().map_err(|_| ConfigError::Env(name, s))).transpose()
        }
        let flag = |name: &'static str| -> Result<Option<bool>, ConfigError> {
            get(name)
                .map(|v| match v.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => Ok(true),
                    "0" | "false" | "no" | "off" => Ok(false),
                    _ => Err(ConfigError::Env(name, v)),
                })
                .transpose()
        };
        Ok(Layer {
            bind: parse("APEX_BIND", get("APEX_BIND"))?,
            data_dir: get("APEX_DATA_DIR").map(PathBuf::from),
            database_url: get("DATABASE_URL").map(Dsn),
            db_max_connections: parse("APEX_DB_MAX_CONNECTIONS", get("APEX_DB_MAX_CONNECTIONS"))?,
            db_statement_timeout_secs: parse("APEX_DB_STATEMENT_TIMEOUT_SECS", get("APEX_DB_STATEMENT_TIMEOUT_SECS"))?,
            redis_url: get("REDIS_URL").filter(|s| !s.is_empty()).map(Dsn),
            instance_lease_secs: parse("APEX_INSTANCE_LEASE_SECS", get("APEX_INSTANCE_LEASE_SECS"))?,
            demo_mode: flag("DEMO_MODE")?,
            env: get("APEX_ENV"),
            jwt_secret: get("APEX_JWT_SECRET").filter(|s| !s.is_empty()).map(SecretString::from),
            jwt_issuer: get("APEX_JWT_ISSUER"),
            jwt_audience: get("APEX_JWT_AUDIENCE"),
            llm: get("APEX_LLM").filter(|s| !s.is_empty()),
            openai_base_url: get("OPENAI_BASE_URL").filter(|s| !s.is_empty()),
            openai_api_key: get("OPENAI_API_KEY").filter(|s| !s.is_empty()).map(SecretString::from),
            llm_model: get("APEX_LLM_MODEL").filter(|s| !s.is_empty()),
            llm_model_path: get("APEX_LLM_MODEL_PATH").filter(|s| !s.is_empty()).map(PathBuf::from),
            llm_timeout_secs: parse("APEX_LLM_TIMEOUT_SECS", get("APEX_LLM_TIMEOUT_SECS"))?,
            llm_max_tokens: parse("APEX_LLM_MAX_TOKENS", get("APEX_LLM_MAX_TOKENS"))?,
            llm_threads: parse("APEX_LLM_THREADS", get("APEX_LLM_THREADS"))?,
            max_frame_bytes: parse("APEX_MAX_FRAME_BYTES", get("APEX_MAX_FRAME_BYTES"))?,
            ping_interval_secs: parse("APEX_PING_INTERVAL_SECS", get("APEX_PING_INTERVAL_SECS"))?,
            run_timeout_secs: parse("APEX_RUN_TIMEOUT_SECS", get("APEX_RUN_TIMEOUT_SECS"))?,
            shutdown_grace_secs: parse("APEX_SHUTDOWN_GRACE_SECS", get("APEX_SHUTDOWN_GRACE_SECS"))?,
            outbound_queue: parse("APEX_OUTBOUND_QUEUE", get("APEX_OUTBOUND_QUEUE"))?,
            write_timeout_secs: parse("APEX_WRITE_TIMEOUT_SECS", get("APEX_WRITE_TIMEOUT_SECS"))?,
            rate_limit: parse("APEX_RATE_LIMIT", get("APEX_RATE_LIMIT"))?,
            max_connections: parse("APEX_MAX_CONNECTIONS", get("APEX_MAX_CONNECTIONS"))?,
            max_connections_per_ip: parse("APEX_MAX_CONNECTIONS_PER_IP", get("APEX_MAX_CONNECTIONS_PER_IP"))?,
            max_connections_per_user: parse("APEX_MAX_CONNECTIONS_PER_USER", get("APEX_MAX_CONNECTIONS_PER_USER"))?,
            max_runs_per_user: parse("APEX_MAX_RUNS_PER_USER", get("APEX_MAX_RUNS_PER_USER"))?,
            user_rate_limit: parse("APEX_USER_RATE_LIMIT", get("APEX_USER_RATE_LIMIT"))?,
            header_timeout_secs: parse("APEX_HEADER_TIMEOUT_SECS", get("APEX_HEADER_TIMEOUT_SECS"))?,
            allowed_origins: get("APEX_ALLOWED_ORIGINS"),
            log_json: get("APEX_LOG_FORMAT").map(|f| f.eq_ignore_ascii_case("json")),
            tool_delay_ms: parse("APEX_TOOL_DELAY_MS", get("APEX_TOOL_DELAY_MS"))?,
            prices_file: get("APEX_PRICES_FILE").filter(|s| !s.is_empty()).map(PathBuf::from),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order_and_production_disables_demo() {
        let file: Layer = toml::from_str("bind = \"127.0.0.1:9000\"\nrun_timeout_secs = 5\ndemo_mode = true").unwrap();
        let env = Layer::from_env(|k| match k {
            "APEX_BIND" => Some("127.0.0.1:9001".into()),
            "APEX_ENV" => Some("production".into()),
            _ => None,
        })
        .unwrap();
        let flags = Layer { bind: Some("127.0.0.1:9002".parse().unwrap()), ..Layer::default() };
        let s = Settings::resolve([file, env, flags]).unwrap();
        assert_eq!(s.bind.port(), 9002);
        assert_eq!(s.run_timeout, Duration::from_secs(5));
        assert!(!s.demo_mode);
        assert!(s.database_url.starts_with("sqlite://") && s.database_url.ends_with("apex.db"));
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let env = Layer::from_env(|k| match k {
            "APEX_JWT_SECRET" => Some("jwt-secret-value-0123456789".into()),
            "OPENAI_API_KEY" => Some("sk-api-key-value".into()),
            "DATABASE_URL" => Some("postgres://apex:db-password-value@db.internal:5432/apex?sslmode=require".into()),
            "REDIS_URL" => Some("redis://:redis-password-value@cache.internal:6379/0".into()),
            _ => None,
        })
        .unwrap();
        let file: Layer = toml::from_str("jwt_secret = \"file-secret-value-0123456789\"").unwrap();
        let printed = format!("{env:?} {file:?} {:?}", Settings::resolve([file.clone(), env.clone()]).unwrap());
        for secret in ["jwt-secret-value", "file-secret-value", "sk-api-key-value", "db-password-value", "redis-password-value"] {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
        }
        // What is not secret stays readable.
        assert!(printed.contains("postgres://apex:[redacted]@db.internal:5432/apex?sslmode=require"), "{printed}");
        assert!(printed.contains("redis://:[redacted]@cache.internal:6379/0"), "{printed}");
        // And the values themselves are intact.
        let s = Settings::resolve([env]).unwrap();
        assert_eq!(&*s.database_url, "postgres://apex:db-password-value@db.internal:5432/apex?sslmode=require");
        assert_eq!(s.jwt_secret.as_ref().map(secrecy::ExposeSecret::expose_secret), Some("jwt-secret-value-0123456789"));
        assert_eq!(format!("{:?}", Dsn::from("sqlite:///tmp/a@b/apex.db")), "\"sqlite:///tmp/a@b/apex.db\"");
    }

    #[test]
    fn bad_values_are_named() {
        let err = Layer::from_env(|k| (k == "DEMO_MODE").then(|| "maybe".into())).unwrap_err();
        assert!(err.to_string().contains("DEMO_MODE"), "{err}");
        assert!(toml::from_str::<Layer>("unknown_key = 1").is_err());
    }
}
