//! Configuration: one [`Settings`] struct declares every key (its TOML name, type and
//! documentation); [`Settings::default`] gives each its default. Sources are layered with
//! `figment`: defaults → optional TOML file → environment → command-line flags (and, in
//! tests, code), then [`Settings::finish`] derives and checks. Adding a key is one field and
//! its default; its environment variable is `APEX_` and the key in capitals (the few
//! conventional names in [`ENV_ALIASES`] excepted).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Dsn,
    /// Connections in the PostgreSQL pool.
    pub db_max_connections: u32,
    /// PostgreSQL cancels any statement running longer than this.
    #[serde(rename = "db_statement_timeout_secs", deserialize_with = "secs")]
    pub db_statement_timeout: Duration,
    pub redis_url: Option<Dsn>,
    /// An instance silent for this long loses its runs to the others (as interrupted).
    #[serde(rename = "instance_lease_secs", deserialize_with = "secs")]
    pub instance_lease: Duration,
    pub demo_mode: bool,
    pub env: String,
    pub jwt_secret: Option<SecretString>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    /// A public key tokens are signed with (RS256, ES256/ES384 or EdDSA, by its type): PEM
    /// text or the path of a PEM file.
    pub jwt_public_key: Option<String>,
    /// The identity provider's JWKS: tokens are verified with the key their `kid` names.
    pub jwt_jwks_url: Option<String>,
    /// The soonest the JWKS is fetched again for a token naming a key id it does not hold.
    #[serde(rename = "jwt_jwks_refresh_secs", deserialize_with = "secs")]
    pub jwt_jwks_refresh: Duration,
    /// Sign-in with an OpenID Connect provider (authorization code + PKCE): its issuer URL
    /// (discovery at `<issuer>/.well-known/openid-configuration`) and this client's id.
    pub oidc_issuer: Option<String>,
    pub oidc_client_id: Option<String>,
    /// For a confidential client (sent as HTTP Basic to the token endpoint).
    pub oidc_client_secret: Option<SecretString>,
    /// Where the provider sends the browser back (registered with it); default: this
    /// server's `/api/auth/oidc/callback` at the address the browser used.
    pub oidc_redirect_url: Option<String>,
    /// The sign-in button's name for the provider ("Sign in with …").
    pub oidc_name: String,
    /// Scopes asked for besides `openid` (space-separated).
    pub oidc_scopes: String,
    /// The ID-token claim that lists the user's groups.
    pub oidc_groups_claim: String,
    /// Groups (comma-separated) whose members are admins of this install; when set, every
    /// other provider user is a member (the role follows the groups at each sign-in).
    pub oidc_admin_groups: Option<String>,
    /// Who may create a local account on the page: `closed` (admins create them with
    /// `apex users`), `invite` (with an invitation) or `open`.
    pub signup: Signup,
    /// How long a local account's access token is valid (the page refreshes it).
    #[serde(rename = "access_token_ttl_secs", deserialize_with = "secs")]
    pub access_token_ttl: Duration,
    /// A sign-in session ends when unused for this long (each refresh extends it).
    #[serde(rename = "session_ttl_secs", deserialize_with = "secs")]
    pub session_ttl: Duration,
    /// Wrong passwords in a row that lock an account.
    pub login_max_failures: u32,
    /// How long a locked account refuses sign-in.
    #[serde(rename = "login_lockout_secs", deserialize_with = "secs")]
    pub login_lockout: Duration,
    /// Sign-in attempts per minute from one address (bursts of that many).
    pub login_rate_limit: u32,
    /// Whether the session cookie is `Secure` (sent over HTTPS only). Default: on unless
    /// demo mode is (the demo is served on plain http://127.0.0.1).
    pub cookie_secure: Option<bool>,
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
    #[serde(rename = "llm_timeout_secs", deserialize_with = "secs")]
    pub llm_timeout: Duration,
    /// The longest answer a model may write, in tokens.
    pub llm_max_tokens: u32,
    /// What the model does: `plan` (calls the agents' tools, reads the thread's history,
    /// writes) or `phrase` (phrases the computed answer). Default: `plan` for `openai`,
    /// `phrase` for `local` (a small local model cannot plan).
    pub llm_mode: Option<String>,
    /// Sampling temperature of the model's requests (0 = greedy).
    pub llm_temperature: f32,
    /// Tool calls a model may make while planning one run.
    pub llm_max_steps: u32,
    /// Tokens (prompts and answers) a model may use for one run before it is dropped.
    pub llm_max_run_tokens: u64,
    /// Added to the model's instructions, e.g. the team's conventions.
    pub llm_prompt_addendum: Option<String>,
    /// Threads the local model computes with (`local`); default: one per physical core.
    /// Read once, before the process starts other threads (see `apex serve`).
    pub llm_threads: Option<usize>,
    /// Largest accepted client text frame, in bytes.
    pub max_frame_bytes: usize,
    #[serde(rename = "ping_interval_secs", deserialize_with = "secs")]
    pub ping_interval: Duration,
    #[serde(rename = "run_timeout_secs", deserialize_with = "secs")]
    pub run_timeout: Duration,
    #[serde(rename = "shutdown_grace_secs", deserialize_with = "secs")]
    pub shutdown_grace: Duration,
    /// Frames queued for one connection before its producers wait.
    pub outbound_queue: usize,
    /// A connection whose socket accepts nothing for this long is dropped as a slow consumer.
    #[serde(rename = "write_timeout_secs", deserialize_with = "secs")]
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
    #[serde(rename = "header_timeout_secs", deserialize_with = "secs")]
    pub header_timeout: Duration,
    /// Origins whose pages may open WebSockets besides the server's own (`*`: any); a
    /// comma-separated string or a list.
    #[serde(deserialize_with = "comma_list")]
    pub allowed_origins: Vec<String>,
    /// `human` or `json` log lines.
    pub log_format: LogFormat,
    /// Serve `/metrics` on this address only (its own listener) instead of on `bind`.
    pub metrics_bind: Option<SocketAddr>,
    /// Fault injection: every tool call waits this long first (0 = off).
    #[serde(rename = "tool_delay_ms", deserialize_with = "millis")]
    pub tool_delay: Duration,
    /// Negotiated prices that replace the catalog's (TOML, see `prices.rs`).
    pub prices_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Signup {
    Closed,
    #[default]
    Invite,
    Open,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// Environment variables whose names are conventions of their own, and their keys; every
/// other key is read from `APEX_` and the key in capitals.
pub const ENV_ALIASES: [(&str, &str); 6] = [
    ("DATABASE_URL", "database_url"),
    ("REDIS_URL", "redis_url"),
    ("DEMO_MODE", "demo_mode"),
    ("OPENAI_BASE_URL", "openai_base_url"),
    ("OPENAI_API_KEY", "openai_api_key"),
    ("APEX_LOG_FORMAT", "log_format"),
];

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
    #[error("cannot read config file {0}: it does not exist or is not a file")]
    Read(PathBuf),
    /// A value of the wrong type or an unknown key; names the key and where it came from
    /// (the file, or the environment variable).
    #[error("{0}")]
    Source(#[from] Box<figment::Error>),
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
            jwt_public_key: None,
            jwt_jwks_url: None,
            jwt_jwks_refresh: Duration::from_secs(30),
            oidc_issuer: None,
            oidc_client_id: None,
            oidc_client_secret: None,
            oidc_redirect_url: None,
            oidc_name: "SSO".into(),
            oidc_scopes: "email profile".into(),
            oidc_groups_claim: "groups".into(),
            oidc_admin_groups: None,
            signup: Signup::Invite,
            access_token_ttl: Duration::from_secs(15 * 60),
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            login_max_failures: 5,
            login_lockout: Duration::from_secs(15 * 60),
            login_rate_limit: 20,
            cookie_secure: None,
            llm: "builtin".into(),
            openai_base_url: "https://api.openai.com/v1".into(),
            openai_api_key: None,
            llm_model: None,
            llm_model_path: None,
            llm_timeout: Duration::from_secs(20),
            llm_max_tokens: 400,
            llm_mode: None,
            llm_temperature: 0.0,
            llm_max_steps: 6,
            llm_max_run_tokens: 60_000,
            llm_prompt_addendum: None,
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
            log_format: LogFormat::Human,
            metrics_bind: None,
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

    /// Defaults, then the file (if any), then the process environment, then `overrides`
    /// (command-line flags).
    pub fn load(file: Option<&Path>, overrides: impl FnOnce(&mut Settings)) -> Result<Self, ConfigError> {
        Self::extract(Self::sources(file, std::env::vars())?, overrides)
    }

    /// The file (if any), then the variables of `env` that name a key (empty values count as
    /// unset), over the defaults.
    pub fn sources(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Read(path.into()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        Ok(figment.merge(Environment::new(env)))
    }

    /// The settings `figment` gives over the defaults, with `overrides` applied last.
    pub fn extract(figment: Figment, overrides: impl FnOnce(&mut Settings)) -> Result<Self, ConfigError> {
        // Lossy: the environment's values are text, read as the key's type ("8", "yes").
        let mut settings: Settings = figment.extract_lossy().map_err(Box::new)?;
        overrides(&mut settings);
        settings.finish()
    }

    /// Whether the session cookie is sent over HTTPS only.
    pub fn secure_cookies(&self) -> bool {
        self.cookie_secure.unwrap_or(!self.demo_mode)
    }

    pub fn log_json(&self) -> bool {
        self.log_format == LogFormat::Json
    }

    /// Derived values and the rules that tie settings together.
    pub fn finish(mut self) -> Result<Self, ConfigError> {
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
        if let Some(mode) = self.llm_mode.as_deref().filter(|m| !matches!(*m, "plan" | "phrase")) {
            return Err(ConfigError::Invalid(format!("APEX_LLM_MODE={mode} is unknown: use plan or phrase")));
        }
        if !(0.0..=2.0).contains(&self.llm_temperature) {
            return Err(ConfigError::Invalid("llm_temperature must be between 0 and 2".into()));
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
        if self.oidc_issuer.is_some() != self.oidc_client_id.is_some() {
            return Err(ConfigError::Invalid("APEX_OIDC_ISSUER and APEX_OIDC_CLIENT_ID go together".into()));
        }
        if self.header_timeout.is_zero() {
            return Err(ConfigError::Invalid("header_timeout_secs must be greater than zero".into()));
        }
        if self.access_token_ttl < Duration::from_secs(30) || self.session_ttl < self.access_token_ttl {
            return Err(ConfigError::Invalid(
                "access_token_ttl_secs must be at least 30 and session_ttl_secs at least as long".into(),
            ));
        }
        if self.login_max_failures == 0 || self.login_rate_limit == 0 {
            return Err(ConfigError::Invalid("login_max_failures and login_rate_limit must be at least 1".into()));
        }
        if self.ping_interval.is_zero() {
            return Err(ConfigError::Invalid("ping_interval_secs must be greater than zero".into()));
        }
        Ok(self)
    }
}

/// The environment as a configuration source: every variable that names a key, as text.
struct Environment(Dict);

impl Environment {
    fn new(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let keys = serde_aux::serde_introspection::serde_introspect::<Settings>();
        let dict = vars
            .into_iter()
            .filter(|(_, value)| !value.trim().is_empty())
            .filter_map(|(name, value)| {
                let key = match ENV_ALIASES.iter().find(|(alias, _)| *alias == name) {
                    Some((_, key)) => (*key).to_owned(),
                    None => name.strip_prefix("APEX_")?.to_ascii_lowercase(),
                };
                keys.contains(&key.as_str()).then(|| (key, Value::from(value.trim().to_owned())))
            })
            .collect();
        Self(dict)
    }

    /// The variable a key is read from.
    fn var(key: &str) -> String {
        ENV_ALIASES
            .iter()
            .find(|(_, k)| *k == key)
            .map_or_else(|| format!("APEX_{}", key.to_ascii_uppercase()), |(alias, _)| (*alias).to_owned())
    }
}

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable").interpolater(|_: &Profile, keys: &[&str]| Environment::var(&keys.join(".")))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

fn secs<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let secs = f64::deserialize(de)?;
    Duration::try_from_secs_f64(secs).map_err(|_| serde::de::Error::custom("expected a non-negative number of seconds"))
}

fn millis<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    u64::deserialize(de).map(Duration::from_millis)
}

fn comma_list<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Text(String),
        Items(Vec<String>),
    }
    let items = match List::deserialize(de)? {
        List::Text(text) => text.split(',').map(str::to_owned).collect(),
        List::Items(items) => items,
    };
    Ok(items.into_iter().map(|o| o.trim().to_owned()).filter(|o| !o.is_empty()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn toml(text: &str) -> Figment {
        Figment::new().merge(Toml::string(text))
    }

    #[test]
    fn layers_apply_in_order_and_production_disables_demo() {
        let file = toml("bind = \"127.0.0.1:9000\"\nrun_timeout_secs = 5\ndemo_mode = true\nllm_max_tokens = 100");
        let env = Environment::new(vars(&[
            ("APEX_BIND", "127.0.0.1:9001"),
            ("APEX_ENV", "production"),
            ("APEX_LLM_MAX_TOKENS", "200"),
        ]));
        let s = Settings::extract(file.merge(env), |s| s.bind = "127.0.0.1:9002".parse().unwrap()).unwrap();
        assert_eq!(s.bind.port(), 9002, "code (flags) over the environment over the file");
        assert_eq!(s.llm_max_tokens, 200, "the environment over the file");
        assert_eq!(s.run_timeout, Duration::from_secs(5), "the file over the defaults");
        assert_eq!(s.ping_interval, Duration::from_secs(30), "the default");
        assert!(!s.demo_mode);
        assert!(s.database_url.starts_with("sqlite://") && s.database_url.ends_with("apex.db"));
    }

    #[test]
    fn every_key_reads_from_its_environment_variable_as_text() {
        let env = Environment::new(vars(&[
            ("DEMO_MODE", "off"),
            ("APEX_LOG_FORMAT", "json"),
            ("APEX_JWT_SECRET", "12345678901234567890123456789012"),
            ("APEX_DB_STATEMENT_TIMEOUT_SECS", "2.5"),
            ("APEX_TOOL_DELAY_MS", "40"),
            ("APEX_ALLOWED_ORIGINS", " https://a.example, ,https://b.example "),
            ("APEX_LLM_THREADS", "3"),
            ("REDIS_URL", ""),
            ("APEX_METRICS_BIND", " "),
            // Not settings: ignored, however they are spelt.
            ("APEX_URL", "http://example"),
            ("APEX_WEB_TESTS", "1"),
            ("PATH", "/usr/bin"),
        ]));
        let s = Settings::extract(Figment::new().merge(env), |_| ()).unwrap();
        assert!(!s.demo_mode);
        assert!(s.log_json());
        assert_eq!(
            s.jwt_secret.as_ref().map(secrecy::ExposeSecret::expose_secret),
            Some("12345678901234567890123456789012"),
            "digits stay text where the key is text"
        );
        assert_eq!(s.db_statement_timeout, Duration::from_millis(2500));
        assert_eq!(s.tool_delay, Duration::from_millis(40));
        assert_eq!(s.allowed_origins, ["https://a.example", "https://b.example"]);
        assert_eq!(s.llm_threads, Some(3));
        assert_eq!(s.redis_url, None, "an empty variable is unset");
        assert_eq!(s.metrics_bind, None);
        // A list in the file is a list.
        let s = Settings::extract(toml("allowed_origins = [\"https://c.example\"]"), |_| ()).unwrap();
        assert_eq!(s.allowed_origins, ["https://c.example"]);
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let env = Environment::new(vars(&[
            ("APEX_JWT_SECRET", "jwt-secret-value-0123456789"),
            ("OPENAI_API_KEY", "sk-api-key-value"),
            ("DATABASE_URL", "postgres://apex:db-password-value@db.internal:5432/apex?sslmode=require"),
            ("REDIS_URL", "redis://:redis-password-value@cache.internal:6379/0"),
        ]));
        let s = Settings::extract(Figment::new().merge(env), |_| ()).unwrap();
        let from_file = Settings::extract(toml("jwt_secret = \"file-secret-value-0123456789\""), |_| ()).unwrap();
        let printed = format!("{s:?} {from_file:?}");
        for secret in ["jwt-secret-value", "file-secret-value", "sk-api-key-value", "db-password-value", "redis-password-value"] {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
        }
        // What is not secret stays readable.
        assert!(printed.contains("postgres://apex:[redacted]@db.internal:5432/apex?sslmode=require"), "{printed}");
        assert!(printed.contains("redis://:[redacted]@cache.internal:6379/0"), "{printed}");
        // And the values themselves are intact.
        assert_eq!(&*s.database_url, "postgres://apex:db-password-value@db.internal:5432/apex?sslmode=require");
        assert_eq!(s.jwt_secret.as_ref().map(secrecy::ExposeSecret::expose_secret), Some("jwt-secret-value-0123456789"));
        assert_eq!(format!("{:?}", Dsn::from("sqlite:///tmp/a@b/apex.db")), "\"sqlite:///tmp/a@b/apex.db\"");
    }

    #[test]
    fn bad_values_and_unknown_keys_are_named_with_their_source() {
        let env = |name: &str, value: &str| {
            let figment = Figment::new().merge(Environment::new(vars(&[(name, value)])));
            Settings::extract(figment, |_| ()).unwrap_err().to_string()
        };
        let err = env("DEMO_MODE", "maybe");
        assert!(err.contains("DEMO_MODE"), "{err}");
        let err = env("APEX_RUN_TIMEOUT_SECS", "-1");
        assert!(err.contains("APEX_RUN_TIMEOUT_SECS") && err.contains("seconds"), "{err}");
        let err = env("APEX_LOG_FORMAT", "xml");
        assert!(err.contains("APEX_LOG_FORMAT"), "{err}");
        let err = Settings::extract(toml("unknown_key = 1"), |_| ()).unwrap_err().to_string();
        assert!(err.contains("unknown_key"), "{err}");
        let err = Settings::extract(toml("run_timeout = 1"), |_| ()).unwrap_err().to_string();
        assert!(err.contains("run_timeout"), "a field's own name is not its key: {err}");
        let missing = Settings::sources(Some(Path::new("/nonexistent/apex.toml")), vars(&[])).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/apex.toml"), "{missing}");
    }

    #[test]
    fn the_readme_documents_every_key_and_its_variable() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
        for key in serde_aux::serde_introspection::serde_introspect::<Settings>() {
            let var = format!("`{}`", Environment::var(key));
            // The first cell of a row of the table names the variable (one row may hold two).
            let line = readme
                .lines()
                .find(|l| l.starts_with("| `") && l.split('|').nth(1).is_some_and(|cell| cell.contains(&var)))
                .unwrap_or_else(|| panic!("README's configuration table has no row for {var}"));
            assert!(line.contains(&format!("`{key}`")), "the row of {key} names another TOML key: {line}");
        }
    }

    #[test]
    fn a_file_names_itself_in_its_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apex.toml");
        std::fs::write(&path, "max_connections = \"many\"\n").unwrap();
        let err = Settings::extract(Settings::sources(Some(&path), vars(&[])).unwrap(), |_| ()).unwrap_err().to_string();
        assert!(err.contains("max_connections") && err.contains("apex.toml"), "{err}");
        std::fs::write(&path, "max_connections = 5\n").unwrap();
        let s =
            Settings::extract(Settings::sources(Some(&path), vars(&[("APEX_MAX_CONNECTIONS", "6")])).unwrap(), |_| ()).unwrap();
        assert_eq!(s.max_connections, 6);
    }
}
