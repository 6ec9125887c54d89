//! The Hub's one configuration struct, [`Config`], and where its values come from.
//!
//! Every tunable the Hub has lives here so no module reads the environment or a file ad hoc
//! (DESIGN §2). Values are layered, lowest to highest precedence:
//!
//! 1. built-in defaults (the Hub runs with zero configuration: `./jecp-data`, `127.0.0.1:8080`),
//! 2. a TOML file (`--config path`; unknown keys are rejected so typos fail loudly),
//! 3. `JECP_*` environment variables (one per scalar setting, e.g. `JECP_LISTEN`),
//! 4. command-line flags ([`ServeFlags`]).
//!
//! [`Config::from_sources`] takes the environment as a lookup function so tests never touch the
//! process environment. Everything is validated once, at start; the error names the bad key
//! (`invalid config: vendor_prefix "Hub1" must be 2-8 lowercase letters`).
//!
//! The admin token is a secret: `Config`'s `Debug` redacts it and nothing here logs it.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use crate::protocol::HubLinks;

/// Default listen address: loopback only, so a fresh `serve` is never exposed by accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./jecp-data";
/// 10 MiB: the spec's request body ceiling (413 `INPUT_TOO_LARGE` above it).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;

/// Upper bounds for numeric settings. They exist so a typo (an extra zero) fails at start
/// instead of turning into a resource exhaustion later.
const TIMEOUT_MS_MAX: u64 = 3_600_000;
const SHUTDOWN_GRACE_MS_MAX: u64 = 600_000;
const FSYNC_INTERVAL_MS_MAX: u64 = 1_000;
const MAX_CONNECTIONS_MAX: usize = 1_000_000;
const MAX_BODY_BYTES_MAX: u64 = 1024 * 1024 * 1024;
const FREE_CALLS_MAX: u64 = 1_000_000;
const RPM_MAX: u32 = 1_000_000;
const TOPUP_USD_MAX: u64 = 10_000;
const TOPUP_AMOUNTS_MAX: usize = 16;
/// Idempotency records must live at least 24 h (DESIGN §3.6); 30 days bounds the table.
const IDEMPOTENCY_TTL_S_MIN: u64 = 86_400;
const IDEMPOTENCY_TTL_S_MAX: u64 = 30 * 86_400;
const WRITER_QUEUE_CAPACITY_MAX: usize = 16 * 1024 * 1024;
/// An operator token shorter than this is guessable; refuse it rather than run insecurely.
const ADMIN_TOKEN_LEN_MIN: usize = 16;
const ADMIN_TOKEN_LEN_MAX: usize = 512;
const TEXT_SETTING_LEN_MAX: usize = 200;
const PUBLIC_URL_LEN_MAX: usize = 2_048;

/// When an acknowledged write is on disk (DESIGN §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    /// Acknowledge only after the commit holding the write is fsynced (the default).
    Immediate,
    /// Acknowledge after the in-memory commit; fsync at most every `fsync_interval_ms`.
    Batched,
}

impl DurabilityMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            DurabilityMode::Immediate => "immediate",
            DurabilityMode::Batched => "batched",
        }
    }
}

impl FromStr for DurabilityMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "immediate" => Ok(DurabilityMode::Immediate),
            "batched" => Ok(DurabilityMode::Batched),
            _ => Err("expected `immediate` or `batched`".into()),
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected `text` or `json`".into()),
        }
    }
}

/// Requests per minute allowed per agent at each trust tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierRpm {
    pub bronze: u32,
    pub silver: u32,
    pub gold: u32,
    pub platinum: u32,
}

impl Default for TierRpm {
    fn default() -> Self {
        TierRpm {
            bronze: 10,
            silver: 30,
            gold: 100,
            platinum: 500,
        }
    }
}

/// The validated configuration of one Hub process.
#[derive(Clone, PartialEq)]
pub struct Config {
    /// Socket address the HTTP server binds.
    pub listen: SocketAddr,
    /// Directory holding the database file; created at start if missing.
    pub data_dir: PathBuf,
    /// Public base URL (scheme + host [+ path]), no trailing slash. Used in discovery documents
    /// and error links. Defaults to `http://{listen}`.
    pub public_url: String,
    /// 2-8 lowercase letters used in agent ids and keys (`<prefix>_ag_...`).
    pub vendor_prefix: String,
    /// Namespace of the built-in capabilities (`<hub_namespace>/<name>`).
    pub hub_namespace: String,
    /// Human-readable Hub name for discovery documents.
    pub hub_name: String,
    /// Who operates this Hub (legal entity or person).
    pub operator_name: String,
    /// Support contact (email or URL) published in discovery documents.
    pub support_contact: String,
    /// When acknowledged writes are durable.
    pub durability: DurabilityMode,
    /// Batched mode: longest time between fsyncs (the stated loss window).
    pub fsync_interval_ms: u64,
    /// Log line format.
    pub log_format: LogFormat,
    /// Most TCP connections served at once; further clients wait in the accept backlog.
    pub max_connections: usize,
    /// Time a client has to send a complete request head (and between keep-alive requests).
    pub header_read_timeout_ms: u64,
    /// Time a client has to send a complete request body (408 after it).
    pub body_read_timeout_ms: u64,
    /// On SIGINT/SIGTERM, how long in-flight requests may take before connections are cut.
    pub shutdown_grace_ms: u64,
    /// Largest request body accepted (413 `INPUT_TOO_LARGE` above it).
    pub max_body_bytes: u64,
    /// Free calls a newly registered agent gets.
    pub free_calls_per_agent: u64,
    /// Agent registrations accepted per minute from one IP address.
    pub registration_per_minute_per_ip: u32,
    /// Per-agent rate limits by trust tier.
    pub tier_rpm: TierRpm,
    /// Top-up amounts (whole USD) the Hub accepts.
    pub allowed_topup_usd: Vec<u64>,
    /// Bearer token for the operator API; `None` disables it. Never printed.
    pub admin_token: Option<String>,
    /// How long idempotency records are kept.
    pub idempotency_ttl_s: u64,
    /// Most writes queued for the store's writer thread before callers get 503.
    pub writer_queue_capacity: usize,
    /// Raw `[catalog]` table from the config file (capability overrides), converted by the catalog.
    pub catalog: toml::Table,
    /// Stripe Checkout top-ups; `None` disables card top-up (operators credit wallets instead).
    pub stripe: Option<StripeSettings>,
}

/// Stripe settings. All four of secret key, webhook secret, success URL and cancel URL are
/// needed; the secrets never appear in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct StripeSettings {
    pub secret_key: String,
    pub webhook_secret: String,
    pub success_url: String,
    pub cancel_url: String,
    /// Stripe's API origin; tests point it at a fake on loopback.
    pub api_base: String,
}

impl fmt::Debug for StripeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeSettings")
            .field("secret_key", &"[redacted]")
            .field("webhook_secret", &"[redacted]")
            .field("success_url", &self.success_url)
            .field("cancel_url", &self.cancel_url)
            .field("api_base", &self.api_base)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        let listen: SocketAddr = DEFAULT_LISTEN
            .parse()
            .expect("DEFAULT_LISTEN is a valid socket address");
        Config {
            listen,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            public_url: format!("http://{listen}"),
            vendor_prefix: "hub".into(),
            hub_namespace: "hub".into(),
            hub_name: "JECP Hub".into(),
            operator_name: "Self-hosted JECP Hub operator".into(),
            support_contact: "operator@localhost".into(),
            durability: DurabilityMode::Immediate,
            fsync_interval_ms: 5,
            log_format: LogFormat::Text,
            max_connections: 10_000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            shutdown_grace_ms: 10_000,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            free_calls_per_agent: 100,
            registration_per_minute_per_ip: 10,
            tier_rpm: TierRpm::default(),
            allowed_topup_usd: vec![5, 20, 100],
            admin_token: None,
            idempotency_ttl_s: 86_400,
            writer_queue_capacity: 65_536,
            catalog: toml::Table::new(),
            stripe: None,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("public_url", &self.public_url)
            .field("vendor_prefix", &self.vendor_prefix)
            .field("hub_namespace", &self.hub_namespace)
            .field("hub_name", &self.hub_name)
            .field("operator_name", &self.operator_name)
            .field("support_contact", &self.support_contact)
            .field("durability", &self.durability)
            .field("fsync_interval_ms", &self.fsync_interval_ms)
            .field("log_format", &self.log_format)
            .field("max_connections", &self.max_connections)
            .field("header_read_timeout_ms", &self.header_read_timeout_ms)
            .field("body_read_timeout_ms", &self.body_read_timeout_ms)
            .field("shutdown_grace_ms", &self.shutdown_grace_ms)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("free_calls_per_agent", &self.free_calls_per_agent)
            .field(
                "registration_per_minute_per_ip",
                &self.registration_per_minute_per_ip,
            )
            .field("tier_rpm", &self.tier_rpm)
            .field("allowed_topup_usd", &self.allowed_topup_usd)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "[redacted]"),
            )
            .field("idempotency_ttl_s", &self.idempotency_ttl_s)
            .field("writer_queue_capacity", &self.writer_queue_capacity)
            .field("catalog", &self.catalog)
            .field("stripe", &self.stripe)
            .finish()
    }
}

/// A configuration problem found at start. The message names the key at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(String);

impl ConfigError {
    fn new(message: impl Into<String>) -> ConfigError {
        ConfigError(message.into())
    }

    fn invalid(key: &str, value: impl fmt::Debug, rule: &str) -> ConfigError {
        ConfigError(format!("invalid config: {key} {value:?} {rule}"))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A string that must not end up in logs or `Debug` output (the admin token on the command line).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(pub String);

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for SecretString {
    type Err = std::convert::Infallible;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(SecretString(text.to_owned()))
    }
}

/// Flags of `jecp-hub serve`. Every scalar setting has a flag; flags override the environment,
/// which overrides the config file, which overrides the defaults.
#[derive(clap::Args, Clone, Debug, Default, PartialEq)]
pub struct ServeFlags {
    /// TOML configuration file (unknown keys are rejected).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address to listen on [env: JECP_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Data directory, created if missing [env: JECP_DATA_DIR] [default: ./jecp-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Public base URL used in discovery documents and error links [env: JECP_PUBLIC_URL]
    /// [default: http://{listen}].
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Vendor prefix in agent ids and keys, 2-8 lowercase letters [env: JECP_VENDOR_PREFIX]
    /// [default: hub].
    #[arg(long, value_name = "PREFIX")]
    pub vendor_prefix: Option<String>,
    /// Namespace of built-in capabilities [env: JECP_HUB_NAMESPACE] [default: hub].
    #[arg(long, value_name = "NAMESPACE")]
    pub hub_namespace: Option<String>,
    /// Hub name shown in discovery documents [env: JECP_HUB_NAME] [default: "JECP Hub"].
    #[arg(long, value_name = "NAME")]
    pub hub_name: Option<String>,
    /// Operator (legal entity or person) [env: JECP_OPERATOR_NAME].
    #[arg(long, value_name = "NAME")]
    pub operator_name: Option<String>,
    /// Support contact, email or URL [env: JECP_SUPPORT_CONTACT].
    #[arg(long, value_name = "CONTACT")]
    pub support_contact: Option<String>,
    /// When acknowledged writes are durable [env: JECP_DURABILITY] [default: immediate].
    #[arg(long, value_name = "MODE")]
    pub durability: Option<DurabilityMode>,
    /// Batched durability: most milliseconds between fsyncs, 1-1000 [env: JECP_FSYNC_INTERVAL_MS]
    /// [default: 5].
    #[arg(long, value_name = "MS")]
    pub fsync_interval_ms: Option<u64>,
    /// Log format; RUST_LOG sets the filter [env: JECP_LOG_FORMAT] [default: text].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Most concurrent connections [env: JECP_MAX_CONNECTIONS] [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Milliseconds a client has to send a request head [env: JECP_HEADER_READ_TIMEOUT_MS]
    /// [default: 10000].
    #[arg(long, value_name = "MS")]
    pub header_read_timeout_ms: Option<u64>,
    /// Milliseconds a client has to send a request body (408 after)
    /// [env: JECP_BODY_READ_TIMEOUT_MS] [default: 30000].
    #[arg(long, value_name = "MS")]
    pub body_read_timeout_ms: Option<u64>,
    /// Milliseconds in-flight requests get after SIGINT/SIGTERM [env: JECP_SHUTDOWN_GRACE_MS]
    /// [default: 10000].
    #[arg(long, value_name = "MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Largest request body in bytes (413 above) [env: JECP_MAX_BODY_BYTES] [default: 10485760].
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<u64>,
    /// Free calls for each new agent [env: JECP_FREE_CALLS_PER_AGENT] [default: 100].
    #[arg(long, value_name = "N")]
    pub free_calls_per_agent: Option<u64>,
    /// Registrations per minute per IP [env: JECP_REGISTRATION_PER_MINUTE_PER_IP] [default: 10].
    #[arg(long, value_name = "N")]
    pub registration_per_minute_per_ip: Option<u32>,
    /// Bronze tier requests per minute [env: JECP_TIER_RPM_BRONZE] [default: 10].
    #[arg(long, value_name = "RPM")]
    pub tier_rpm_bronze: Option<u32>,
    /// Silver tier requests per minute [env: JECP_TIER_RPM_SILVER] [default: 30].
    #[arg(long, value_name = "RPM")]
    pub tier_rpm_silver: Option<u32>,
    /// Gold tier requests per minute [env: JECP_TIER_RPM_GOLD] [default: 100].
    #[arg(long, value_name = "RPM")]
    pub tier_rpm_gold: Option<u32>,
    /// Platinum tier requests per minute [env: JECP_TIER_RPM_PLATINUM] [default: 500].
    #[arg(long, value_name = "RPM")]
    pub tier_rpm_platinum: Option<u32>,
    /// Accepted top-up amounts in whole USD, comma-separated [env: JECP_ALLOWED_TOPUP_USD]
    /// [default: 5,20,100].
    #[arg(long, value_name = "LIST")]
    pub allowed_topup_usd: Option<String>,
    /// Operator API bearer token, at least 16 characters; unset disables the operator API.
    /// Prefer the environment or the config file: flags are visible in the process list
    /// [env: JECP_ADMIN_TOKEN].
    #[arg(long, value_name = "TOKEN")]
    pub admin_token: Option<SecretString>,
    /// Seconds idempotency records are kept, at least 86400 [env: JECP_IDEMPOTENCY_TTL_S]
    /// [default: 86400].
    #[arg(long, value_name = "SECONDS")]
    pub idempotency_ttl_s: Option<u64>,
    /// Writes queued for the store writer before 503 [env: JECP_WRITER_QUEUE_CAPACITY]
    /// [default: 65536].
    #[arg(long, value_name = "N")]
    pub writer_queue_capacity: Option<usize>,
    /// Where Stripe sends the payer after paying [env: JECP_STRIPE_SUCCESS_URL]. Stripe's
    /// secret key and webhook secret come only from the environment (JECP_STRIPE_SECRET_KEY,
    /// JECP_STRIPE_WEBHOOK_SECRET) or the config file, never from flags.
    #[arg(long, value_name = "URL")]
    pub stripe_success_url: Option<String>,
    /// Where Stripe sends the payer after cancelling [env: JECP_STRIPE_CANCEL_URL].
    #[arg(long, value_name = "URL")]
    pub stripe_cancel_url: Option<String>,
    /// Stripe API origin [env: JECP_STRIPE_API_BASE] [default: `https://api.stripe.com`].
    #[arg(long, value_name = "URL")]
    pub stripe_api_base: Option<String>,
}

/// One source's worth of settings; `None` means "this source does not set it".
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layer {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    public_url: Option<String>,
    vendor_prefix: Option<String>,
    hub_namespace: Option<String>,
    hub_name: Option<String>,
    operator_name: Option<String>,
    support_contact: Option<String>,
    durability: Option<DurabilityMode>,
    fsync_interval_ms: Option<u64>,
    log_format: Option<LogFormat>,
    max_connections: Option<usize>,
    header_read_timeout_ms: Option<u64>,
    body_read_timeout_ms: Option<u64>,
    shutdown_grace_ms: Option<u64>,
    max_body_bytes: Option<u64>,
    free_calls_per_agent: Option<u64>,
    registration_per_minute_per_ip: Option<u32>,
    #[serde(default)]
    tier_rpm: TierRpmLayer,
    allowed_topup_usd: Option<Vec<u64>>,
    admin_token: Option<String>,
    idempotency_ttl_s: Option<u64>,
    writer_queue_capacity: Option<usize>,
    catalog: Option<toml::Table>,
    stripe_secret_key: Option<String>,
    stripe_webhook_secret: Option<String>,
    stripe_success_url: Option<String>,
    stripe_cancel_url: Option<String>,
    stripe_api_base: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TierRpmLayer {
    bronze: Option<u32>,
    silver: Option<u32>,
    gold: Option<u32>,
    platinum: Option<u32>,
}

impl Layer {
    fn from_file(path: &Path) -> Result<Layer, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::new(format!(
                "invalid config: cannot read {}: {error}",
                path.display()
            ))
        })?;
        toml::from_str(&text).map_err(|error| {
            // toml's message quotes the offending line; never echo the admin token's line.
            let on_secret_line = error.span().is_some_and(|span| {
                let line_start = text[..span.start.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
                let line = text[line_start..].lines().next().unwrap_or("");
                line.contains("admin_token")
            });
            let detail = if on_secret_line {
                format!("admin_token must be a string of {ADMIN_TOKEN_LEN_MIN}-{ADMIN_TOKEN_LEN_MAX} characters")
            } else {
                error.to_string().trim().to_owned()
            };
            ConfigError::new(format!("invalid config: {}: {detail}", path.display()))
        })
    }

    fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Layer, ConfigError> {
        Ok(Layer {
            listen: env_value(env, "JECP_LISTEN", "listen")?,
            data_dir: env("JECP_DATA_DIR").map(PathBuf::from),
            public_url: env("JECP_PUBLIC_URL"),
            vendor_prefix: env("JECP_VENDOR_PREFIX"),
            hub_namespace: env("JECP_HUB_NAMESPACE"),
            hub_name: env("JECP_HUB_NAME"),
            operator_name: env("JECP_OPERATOR_NAME"),
            support_contact: env("JECP_SUPPORT_CONTACT"),
            durability: env_value(env, "JECP_DURABILITY", "durability")?,
            fsync_interval_ms: env_value(env, "JECP_FSYNC_INTERVAL_MS", "fsync_interval_ms")?,
            log_format: env_value(env, "JECP_LOG_FORMAT", "log_format")?,
            max_connections: env_value(env, "JECP_MAX_CONNECTIONS", "max_connections")?,
            header_read_timeout_ms: env_value(
                env,
                "JECP_HEADER_READ_TIMEOUT_MS",
                "header_read_timeout_ms",
            )?,
            body_read_timeout_ms: env_value(
                env,
                "JECP_BODY_READ_TIMEOUT_MS",
                "body_read_timeout_ms",
            )?,
            shutdown_grace_ms: env_value(env, "JECP_SHUTDOWN_GRACE_MS", "shutdown_grace_ms")?,
            max_body_bytes: env_value(env, "JECP_MAX_BODY_BYTES", "max_body_bytes")?,
            free_calls_per_agent: env_value(
                env,
                "JECP_FREE_CALLS_PER_AGENT",
                "free_calls_per_agent",
            )?,
            registration_per_minute_per_ip: env_value(
                env,
                "JECP_REGISTRATION_PER_MINUTE_PER_IP",
                "registration_per_minute_per_ip",
            )?,
            tier_rpm: TierRpmLayer {
                bronze: env_value(env, "JECP_TIER_RPM_BRONZE", "tier_rpm.bronze")?,
                silver: env_value(env, "JECP_TIER_RPM_SILVER", "tier_rpm.silver")?,
                gold: env_value(env, "JECP_TIER_RPM_GOLD", "tier_rpm.gold")?,
                platinum: env_value(env, "JECP_TIER_RPM_PLATINUM", "tier_rpm.platinum")?,
            },
            allowed_topup_usd: match env("JECP_ALLOWED_TOPUP_USD") {
                Some(text) => Some(parse_amount_list(
                    &text,
                    "allowed_topup_usd (JECP_ALLOWED_TOPUP_USD)",
                )?),
                None => None,
            },
            admin_token: env("JECP_ADMIN_TOKEN"),
            idempotency_ttl_s: env_value(env, "JECP_IDEMPOTENCY_TTL_S", "idempotency_ttl_s")?,
            writer_queue_capacity: env_value(
                env,
                "JECP_WRITER_QUEUE_CAPACITY",
                "writer_queue_capacity",
            )?,
            catalog: None,
            stripe_secret_key: env("JECP_STRIPE_SECRET_KEY"),
            stripe_webhook_secret: env("JECP_STRIPE_WEBHOOK_SECRET"),
            stripe_success_url: env("JECP_STRIPE_SUCCESS_URL"),
            stripe_cancel_url: env("JECP_STRIPE_CANCEL_URL"),
            stripe_api_base: env("JECP_STRIPE_API_BASE"),
        })
    }

    fn from_flags(flags: &ServeFlags) -> Result<Layer, ConfigError> {
        Ok(Layer {
            listen: flags.listen,
            data_dir: flags.data_dir.clone(),
            public_url: flags.public_url.clone(),
            vendor_prefix: flags.vendor_prefix.clone(),
            hub_namespace: flags.hub_namespace.clone(),
            hub_name: flags.hub_name.clone(),
            operator_name: flags.operator_name.clone(),
            support_contact: flags.support_contact.clone(),
            durability: flags.durability,
            fsync_interval_ms: flags.fsync_interval_ms,
            log_format: flags.log_format,
            max_connections: flags.max_connections,
            header_read_timeout_ms: flags.header_read_timeout_ms,
            body_read_timeout_ms: flags.body_read_timeout_ms,
            shutdown_grace_ms: flags.shutdown_grace_ms,
            max_body_bytes: flags.max_body_bytes,
            free_calls_per_agent: flags.free_calls_per_agent,
            registration_per_minute_per_ip: flags.registration_per_minute_per_ip,
            tier_rpm: TierRpmLayer {
                bronze: flags.tier_rpm_bronze,
                silver: flags.tier_rpm_silver,
                gold: flags.tier_rpm_gold,
                platinum: flags.tier_rpm_platinum,
            },
            allowed_topup_usd: match &flags.allowed_topup_usd {
                Some(text) => Some(parse_amount_list(
                    text,
                    "allowed_topup_usd (--allowed-topup-usd)",
                )?),
                None => None,
            },
            admin_token: flags.admin_token.as_ref().map(|secret| secret.0.clone()),
            idempotency_ttl_s: flags.idempotency_ttl_s,
            writer_queue_capacity: flags.writer_queue_capacity,
            catalog: None,
            stripe_secret_key: None,
            stripe_webhook_secret: None,
            stripe_success_url: flags.stripe_success_url.clone(),
            stripe_cancel_url: flags.stripe_cancel_url.clone(),
            stripe_api_base: flags.stripe_api_base.clone(),
        })
    }

    /// Overwrites every setting this layer sets.
    fn apply_to(self, config: &mut Config) {
        fn set<T>(target: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *target = value;
            }
        }
        set(&mut config.listen, self.listen);
        set(&mut config.data_dir, self.data_dir);
        set(&mut config.public_url, self.public_url);
        set(&mut config.vendor_prefix, self.vendor_prefix);
        set(&mut config.hub_namespace, self.hub_namespace);
        set(&mut config.hub_name, self.hub_name);
        set(&mut config.operator_name, self.operator_name);
        set(&mut config.support_contact, self.support_contact);
        set(&mut config.durability, self.durability);
        set(&mut config.fsync_interval_ms, self.fsync_interval_ms);
        set(&mut config.log_format, self.log_format);
        set(&mut config.max_connections, self.max_connections);
        set(
            &mut config.header_read_timeout_ms,
            self.header_read_timeout_ms,
        );
        set(&mut config.body_read_timeout_ms, self.body_read_timeout_ms);
        set(&mut config.shutdown_grace_ms, self.shutdown_grace_ms);
        set(&mut config.max_body_bytes, self.max_body_bytes);
        set(&mut config.free_calls_per_agent, self.free_calls_per_agent);
        set(
            &mut config.registration_per_minute_per_ip,
            self.registration_per_minute_per_ip,
        );
        set(&mut config.tier_rpm.bronze, self.tier_rpm.bronze);
        set(&mut config.tier_rpm.silver, self.tier_rpm.silver);
        set(&mut config.tier_rpm.gold, self.tier_rpm.gold);
        set(&mut config.tier_rpm.platinum, self.tier_rpm.platinum);
        set(&mut config.allowed_topup_usd, self.allowed_topup_usd);
        if let Some(token) = self.admin_token {
            config.admin_token = Some(token);
        }
        set(&mut config.idempotency_ttl_s, self.idempotency_ttl_s);
        set(
            &mut config.writer_queue_capacity,
            self.writer_queue_capacity,
        );
        set(&mut config.catalog, self.catalog);
        let stripe_given = [
            &self.stripe_secret_key,
            &self.stripe_webhook_secret,
            &self.stripe_success_url,
            &self.stripe_cancel_url,
            &self.stripe_api_base,
        ]
        .iter()
        .any(|value| value.is_some());
        if stripe_given {
            let stripe = config.stripe.get_or_insert_with(|| StripeSettings {
                secret_key: String::new(),
                webhook_secret: String::new(),
                success_url: String::new(),
                cancel_url: String::new(),
                api_base: crate::funding::DEFAULT_STRIPE_API_BASE.to_owned(),
            });
            set(&mut stripe.secret_key, self.stripe_secret_key);
            set(&mut stripe.webhook_secret, self.stripe_webhook_secret);
            set(&mut stripe.success_url, self.stripe_success_url);
            set(&mut stripe.cancel_url, self.stripe_cancel_url);
            set(&mut stripe.api_base, self.stripe_api_base);
        }
    }
}

/// Parses one environment variable; the error names both the variable and the config key.
fn env_value<T>(
    env: &dyn Fn(&str) -> Option<String>,
    var: &str,
    key: &str,
) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match env(var) {
        None => Ok(None),
        Some(text) => text.trim().parse::<T>().map(Some).map_err(|error| {
            ConfigError::new(format!(
                "invalid config: {key} ({var}) {:?}: {error}",
                redact_if_long(&text)
            ))
        }),
    }
}

/// Echoes a bad value back in the error, but never a huge one.
fn redact_if_long(text: &str) -> String {
    const ECHO_LEN_MAX: usize = 64;
    if text.chars().count() > ECHO_LEN_MAX {
        let head: String = text.chars().take(ECHO_LEN_MAX).collect();
        format!("{head}...")
    } else {
        text.to_owned()
    }
}

fn parse_amount_list(text: &str, key: &str) -> Result<Vec<u64>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<u64>().map_err(|_| {
                ConfigError::new(format!(
                    "invalid config: {key} {:?}: expected comma-separated whole USD amounts",
                    redact_if_long(text)
                ))
            })
        })
        .collect()
}

impl Config {
    /// Builds the configuration from defaults, the optional TOML `file`, the `env` lookup
    /// (`JECP_*` names) and `flags`, in increasing precedence, then validates it.
    pub fn from_sources(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        flags: &ServeFlags,
    ) -> Result<Config, ConfigError> {
        let file_layer = match file {
            Some(path) => Layer::from_file(path)?,
            None => Layer::default(),
        };
        let layers = [file_layer, Layer::from_env(env)?, Layer::from_flags(flags)?];
        let public_url_given = layers.iter().any(|layer| layer.public_url.is_some());
        let mut config = Config::default();
        for layer in layers {
            layer.apply_to(&mut config);
        }
        config.public_url = if public_url_given {
            config.public_url.trim().trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", config.listen)
        };
        config.validate()?;
        Ok(config)
    }

    /// Reads the process environment and `flags` (including `--config`).
    pub fn from_process(flags: &ServeFlags) -> Result<Config, ConfigError> {
        Config::from_sources(
            flags.config.as_deref(),
            &|name| std::env::var(name).ok(),
            flags,
        )
    }

    /// Records the address the listener actually bound (it differs when the port was 0). A
    /// `public_url` still equal to the one derived from `listen` follows it; any other is kept.
    pub fn set_bound_address(&mut self, bound: SocketAddr) {
        if self.public_url == format!("http://{}", self.listen) {
            self.public_url = format!("http://{bound}");
        }
        self.listen = bound;
    }

    /// The facts error envelopes link to.
    pub fn hub_links(&self) -> HubLinks {
        HubLinks {
            public_url: self.public_url.clone(),
            allowed_topup_usd: self.allowed_topup_usd.clone(),
        }
    }

    /// The durability mode as `/health` reports it: `immediate` or `batched(5ms)`.
    pub fn durability_label(&self) -> String {
        match self.durability {
            DurabilityMode::Immediate => "immediate".into(),
            DurabilityMode::Batched => format!("batched({}ms)", self.fsync_interval_ms),
        }
    }

    /// Checks every rule; the first violation is reported with its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_public_url(&self.public_url)?;
        if let Some(stripe) = &self.stripe {
            for (key, value) in [
                ("stripe_secret_key", &stripe.secret_key),
                ("stripe_webhook_secret", &stripe.webhook_secret),
                ("stripe_success_url", &stripe.success_url),
                ("stripe_cancel_url", &stripe.cancel_url),
            ] {
                if value.trim().is_empty() {
                    return Err(ConfigError::new(format!(
                        "invalid config: {key} is missing; Stripe top-up needs stripe_secret_key, \
                         stripe_webhook_secret, stripe_success_url and stripe_cancel_url together"
                    )));
                }
            }
        }
        if !(2..=8).contains(&self.vendor_prefix.len())
            || !self.vendor_prefix.bytes().all(|b| b.is_ascii_lowercase())
        {
            return Err(ConfigError::invalid(
                "vendor_prefix",
                &self.vendor_prefix,
                "must be 2-8 lowercase letters",
            ));
        }
        if !is_namespace(&self.hub_namespace) {
            return Err(ConfigError::invalid(
                "hub_namespace",
                &self.hub_namespace,
                "must be 2-32 characters: a lowercase letter, then lowercase letters, digits or '-'",
            ));
        }
        // The agent-guide schema bounds hub_name to 2-100 characters.
        check_text("hub_name", &self.hub_name, 2, 100)?;
        check_text(
            "operator_name",
            &self.operator_name,
            1,
            TEXT_SETTING_LEN_MAX,
        )?;
        check_text(
            "support_contact",
            &self.support_contact,
            3,
            TEXT_SETTING_LEN_MAX,
        )?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "data_dir",
                &self.data_dir,
                "must not be empty",
            ));
        }
        check_range(
            "fsync_interval_ms",
            self.fsync_interval_ms,
            1,
            FSYNC_INTERVAL_MS_MAX,
        )?;
        check_range(
            "max_connections",
            self.max_connections as u64,
            1,
            MAX_CONNECTIONS_MAX as u64,
        )?;
        check_range(
            "header_read_timeout_ms",
            self.header_read_timeout_ms,
            1,
            TIMEOUT_MS_MAX,
        )?;
        check_range(
            "body_read_timeout_ms",
            self.body_read_timeout_ms,
            1,
            TIMEOUT_MS_MAX,
        )?;
        check_range(
            "shutdown_grace_ms",
            self.shutdown_grace_ms,
            0,
            SHUTDOWN_GRACE_MS_MAX,
        )?;
        check_range("max_body_bytes", self.max_body_bytes, 1, MAX_BODY_BYTES_MAX)?;
        check_range(
            "free_calls_per_agent",
            self.free_calls_per_agent,
            0,
            FREE_CALLS_MAX,
        )?;
        check_range(
            "registration_per_minute_per_ip",
            u64::from(self.registration_per_minute_per_ip),
            1,
            u64::from(RPM_MAX),
        )?;
        let tiers = [
            ("tier_rpm.bronze", self.tier_rpm.bronze),
            ("tier_rpm.silver", self.tier_rpm.silver),
            ("tier_rpm.gold", self.tier_rpm.gold),
            ("tier_rpm.platinum", self.tier_rpm.platinum),
        ];
        for (key, rpm) in tiers {
            check_range(key, u64::from(rpm), 1, u64::from(RPM_MAX))?;
        }
        // A higher tier with a lower limit would punish trust; reject the likely typo.
        for pair in tiers.windows(2) {
            let ((lower_key, lower), (higher_key, higher)) = (pair[0], pair[1]);
            if higher < lower {
                return Err(ConfigError::invalid(
                    higher_key,
                    higher,
                    &format!("must be at least {lower_key} ({lower})"),
                ));
            }
        }
        if self.allowed_topup_usd.is_empty() || self.allowed_topup_usd.len() > TOPUP_AMOUNTS_MAX {
            return Err(ConfigError::invalid(
                "allowed_topup_usd",
                &self.allowed_topup_usd,
                &format!("must list 1-{TOPUP_AMOUNTS_MAX} amounts"),
            ));
        }
        for (index, amount) in self.allowed_topup_usd.iter().enumerate() {
            if !(1..=TOPUP_USD_MAX).contains(amount)
                || self.allowed_topup_usd[..index].contains(amount)
            {
                return Err(ConfigError::invalid(
                    "allowed_topup_usd",
                    &self.allowed_topup_usd,
                    &format!("must hold distinct whole-USD amounts in 1-{TOPUP_USD_MAX}"),
                ));
            }
        }
        if let Some(token) = &self.admin_token
            && !(ADMIN_TOKEN_LEN_MIN..=ADMIN_TOKEN_LEN_MAX).contains(&token.len())
        {
            // The value is a secret: name the key and the rule, never the token.
            return Err(ConfigError::new(format!(
                "invalid config: admin_token must be {ADMIN_TOKEN_LEN_MIN}-{ADMIN_TOKEN_LEN_MAX} characters"
            )));
        }
        check_range(
            "idempotency_ttl_s",
            self.idempotency_ttl_s,
            IDEMPOTENCY_TTL_S_MIN,
            IDEMPOTENCY_TTL_S_MAX,
        )?;
        check_range(
            "writer_queue_capacity",
            self.writer_queue_capacity as u64,
            1,
            WRITER_QUEUE_CAPACITY_MAX as u64,
        )?;
        Ok(())
    }
}

fn check_range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "invalid config: {key} {value} must be in {min}..={max}"
        )))
    }
}

fn check_text(key: &str, value: &str, len_min: usize, len_max: usize) -> Result<(), ConfigError> {
    let len = value.chars().count();
    if value.trim() != value
        || !(len_min..=len_max).contains(&len)
        || value.chars().any(char::is_control)
    {
        return Err(ConfigError::invalid(
            key,
            redact_if_long(value),
            &format!("must be {len_min}-{len_max} printable characters without surrounding spaces"),
        ));
    }
    Ok(())
}

fn is_namespace(text: &str) -> bool {
    let bytes = text.as_bytes();
    (2..=32).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

fn validate_public_url(url: &str) -> Result<(), ConfigError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|rest| rest.split('/').next().unwrap_or(""));
    let well_formed = match host {
        Some(host) => {
            !host.is_empty()
                && url.len() <= PUBLIC_URL_LEN_MAX
                && !url.contains(['?', '#', ' '])
                && !url.chars().any(char::is_control)
                && !host.contains('@')
        }
        None => false,
    };
    if well_formed {
        Ok(())
    } else {
        // A URL with credentials in it is not echoed back.
        let shown = if url.contains('@') {
            "[redacted]".to_owned()
        } else {
            redact_if_long(url)
        };
        Err(ConfigError::invalid(
            "public_url",
            shown,
            "must be an http:// or https:// URL with a host and no query, fragment or credentials",
        ))
    }
}
