//! Typed settings: `config.toml` overlaid with `IMCHANNEL__SECTION__KEY` environment variables
//! (DESIGN.md §6), checked once at start so that a wrong value is named before anything runs.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Everything the gateway is configured with.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The HTTP server.
    #[serde(default)]
    pub server: ServerSettings,
    /// Where state is kept.
    #[serde(default)]
    pub store: StoreSettings,
    /// Conversation actors.
    #[serde(default)]
    pub conversation: ConversationSettings,
    /// Passing work on: timeouts and retries.
    #[serde(default)]
    pub delivery: DeliverySettings,
    /// The CTLive customers, by the name that is their first path segment.
    pub tenants: BTreeMap<String, TenantSettings>,
}

/// `[server]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// The address to listen on.
    pub bind: String,
    /// The base of the URLs imchannel hands out (media).
    pub public_url: String,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            workers: 0,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// `[store]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Redis to use; empty means the embedded in-memory store.
    pub redis_url: Secret,
    /// Seed nodes of a Redis Cluster, instead of `redis_url`.
    #[serde(deserialize_with = "list_or_csv")]
    pub redis_cluster_nodes: Vec<String>,
    /// Prefix of every key imchannel writes.
    pub key_prefix: String,
    /// How long an accepted id is remembered for deduplication.
    pub dedup_ttl_secs: u64,
    /// How long an instance's claim on its unfinished work outlives its last heartbeat: after a
    /// crash, another instance takes the work over this long after the last renewal.
    pub instance_lease_secs: u64,
    /// How long media stays fetchable.
    pub media_ttl_secs: u64,
    /// The largest media item.
    pub media_max_bytes: u64,
    /// All media items together at most, in the embedded store.
    pub media_budget_bytes: usize,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            redis_url: Secret::default(),
            redis_cluster_nodes: Vec::new(),
            key_prefix: "imch".into(),
            dedup_ttl_secs: 7 * 24 * 3600,
            instance_lease_secs: 15,
            media_ttl_secs: 24 * 3600,
            media_max_bytes: 100 * 1024 * 1024,
            media_budget_bytes: 512 * 1024 * 1024,
        }
    }
}

/// `[conversation]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConversationSettings {
    /// An idle conversation actor stops after this long.
    pub idle_secs: u64,
    /// At most this many conversation actors live at once.
    pub max_live: usize,
    /// At most this many items wait in one conversation.
    pub max_backlog: usize,
}

impl Default for ConversationSettings {
    fn default() -> Self {
        Self {
            idle_secs: 300,
            max_live: 200_000,
            max_backlog: 1000,
        }
    }
}

/// `[delivery]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    /// One HTTP attempt times out after this long.
    pub timeout_ms: u64,
    /// Work not passed on after this long has failed for good.
    pub max_age_secs: u64,
    /// The first retry pause.
    pub initial_backoff_ms: u64,
    /// The longest retry pause (unless a `Retry-After` asks for more).
    pub max_backoff_ms: u64,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            timeout_ms: 10_000,
            max_age_secs: 24 * 3600,
            initial_backoff_ms: 200,
            max_backoff_ms: 10_000,
        }
    }
}

impl DeliverySettings {
    /// One HTTP attempt's time limit.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// How imchannel authenticates to Infobip.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InfobipAuth {
    /// `Authorization: App <key>`.
    #[default]
    App,
    /// Basic with `infobip_user`/`infobip_password`.
    Basic,
}

/// `[tenants.<name>]`: one CTLive customer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantSettings {
    /// Basic auth user Infobip must present on webhooks (both empty: no auth).
    pub webhook_user: String,
    /// Basic auth password Infobip must present on webhooks.
    pub webhook_password: Secret,
    /// Basic auth user CTLive must present on sends (both empty: no auth).
    pub api_user: String,
    /// Basic auth password CTLive must present on sends.
    pub api_password: Secret,
    /// Where inbound events are posted.
    pub ctlive_url: String,
    /// Basic auth user for CTLive (empty: none).
    pub ctlive_user: String,
    /// Basic auth password for CTLive.
    pub ctlive_password: Secret,
    /// Infobip's API base URL.
    pub infobip_base_url: String,
    /// How imchannel authenticates to Infobip.
    pub infobip_auth: InfobipAuth,
    /// Infobip API key, with `infobip_auth = "app"`.
    pub infobip_api_key: Secret,
    /// Infobip user, with `infobip_auth = "basic"`.
    pub infobip_user: String,
    /// Infobip password, with `infobip_auth = "basic"`.
    pub infobip_password: Secret,
    /// The OMNI scenario used where CTLive sends none.
    pub scenario_key: String,
    /// Cap on sends per second to Infobip.
    pub infobip_rps: u32,
    /// Hosts inbound media may be downloaded from, besides `infobip_base_url`'s.
    #[serde(deserialize_with = "list_or_csv")]
    pub media_hosts: Vec<String>,
    /// Whether media may come from loopback, private or link-local addresses.
    pub allow_private_media_hosts: bool,
    /// Cap on media downloads per second.
    pub media_rps: u32,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            webhook_user: "infobip".into(),
            webhook_password: Secret::from("change-me"),
            api_user: "ctlive".into(),
            api_password: Secret::from("change-me"),
            ctlive_url: "http://127.0.0.1:9002/imchannel/message".into(),
            ctlive_user: String::new(),
            ctlive_password: Secret::default(),
            infobip_base_url: "http://127.0.0.1:9001".into(),
            infobip_auth: InfobipAuth::App,
            infobip_api_key: Secret::default(),
            infobip_user: String::new(),
            infobip_password: Secret::default(),
            scenario_key: String::new(),
            infobip_rps: 100,
            media_hosts: Vec::new(),
            allow_private_media_hosts: false,
            media_rps: 10,
        }
    }
}

impl TenantSettings {
    /// The `Authorization` header value imchannel presents to Infobip for this tenant.
    pub fn infobip_authorization(&self) -> Secret {
        use base64::Engine;
        let value = match self.infobip_auth {
            InfobipAuth::App => format!("App {}", self.infobip_api_key.expose()),
            InfobipAuth::Basic => {
                let pair = format!("{}:{}", self.infobip_user, self.infobip_password.expose());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
        };
        Secret(value)
    }
}

/// A value that must never reach a log line or an error answer: `Debug` prints it redacted.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no secret is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"<redacted>\""
        })
    }
}

/// A list given as a TOML array, or as one comma-separated string (the form an environment
/// variable can carry).
fn list_or_csv<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCsv {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match ListOrCsv::deserialize(deserializer)? {
        ListOrCsv::List(list) => list,
        ListOrCsv::Csv(csv) => csv
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// A setting that is missing or wrong, named.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed, or a value has the wrong type.
    #[error("configuration {path}: {message}")]
    Load {
        /// The file.
        path: String,
        /// What was wrong, naming the key where the loader does.
        message: String,
    },
    /// A value has the right type but cannot be used.
    #[error("configuration key {key}: {message}")]
    Invalid {
        /// The key, e.g. `server.bind`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The longest dedup memory accepted: ten years.
const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

/// The prefix of the environment variables that override the file.
pub const ENV_PREFIX: &str = "IMCHANNEL";

impl Settings {
    /// Reads `path`, overlays the `IMCHANNEL__...` environment, and checks the result.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let load_error = |message: String| ConfigError::Load {
            path: path.display().to_string(),
            message,
        };
        if !path.is_file() {
            return Err(load_error("no such file".into()));
        }
        let settings: Settings = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            // No `try_parsing`: it would turn a password such as `007` into the number 7. Strings
            // reach typed fields through serde, which parses numbers and booleans there.
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__"),
            )
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|error| load_error(error.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Reads settings from TOML text alone (no environment), checked: for tests and embedding.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let settings: Settings = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|error| ConfigError::Load {
                path: "<inline>".into(),
                message: error.to_string(),
            })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            key: key.to_owned(),
            message: message.to_owned(),
        };
        self.server
            .bind
            .parse::<SocketAddr>()
            .map_err(|_| invalid("server.bind", "expected an address such as 127.0.0.1:8080"))?;
        check_http_url(&self.server.public_url).map_err(|m| invalid("server.public_url", m))?;
        if self.server.max_body_bytes == 0 {
            return Err(invalid("server.max_body_bytes", "must be at least 1"));
        }
        if !self.store.redis_cluster_nodes.is_empty() {
            return Err(invalid(
                "store.redis_cluster_nodes",
                "Redis Cluster is not supported yet: use store.redis_url",
            ));
        }
        if !(1..=MAX_TTL_SECS).contains(&self.store.dedup_ttl_secs) {
            return Err(invalid(
                "store.dedup_ttl_secs",
                "must be between 1 and 315360000 (ten years)",
            ));
        }
        if self.store.instance_lease_secs == 0 {
            return Err(invalid("store.instance_lease_secs", "must be at least 1"));
        }
        if self.conversation.idle_secs == 0 {
            return Err(invalid("conversation.idle_secs", "must be at least 1"));
        }
        if self.conversation.max_live == 0 || self.conversation.max_backlog == 0 {
            return Err(invalid(
                "conversation.max_live",
                "max_live and max_backlog must be at least 1",
            ));
        }
        if self.delivery.timeout_ms == 0 || self.delivery.initial_backoff_ms == 0 {
            return Err(invalid(
                "delivery.timeout_ms",
                "timeout_ms and initial_backoff_ms must be at least 1",
            ));
        }
        if self.tenants.is_empty() {
            return Err(invalid("tenants", "at least one tenant is needed"));
        }
        for (name, tenant) in &self.tenants {
            let key = |field: &str| format!("tenants.{name}.{field}");
            // Lowercase only: environment variable names are lowercased into keys, so a
            // mixed-case tenant could not be overridden from the environment.
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                return Err(invalid(
                    &format!("tenants.{name}"),
                    "a tenant name is lowercase letters, digits, '-' and '_'",
                ));
            }
            check_http_url(&tenant.ctlive_url).map_err(|m| invalid(&key("ctlive_url"), m))?;
            if tenant.infobip_rps == 0 || tenant.media_rps == 0 {
                return Err(invalid(
                    &key("infobip_rps"),
                    "infobip_rps and media_rps must be at least 1",
                ));
            }
            check_http_url(&tenant.infobip_base_url)
                .map_err(|m| invalid(&key("infobip_base_url"), m))?;
        }
        Ok(())
    }
}

/// Whether `url` is an absolute `http` or `https` URL.
fn check_http_url(url: &str) -> Result<(), &'static str> {
    let uri: awc::http::Uri = url
        .parse()
        .map_err(|_| "expected an http(s) URL such as http://127.0.0.1:9002/path")?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(()),
        _ => Err("expected an http(s) URL such as http://127.0.0.1:9002/path"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[tenants.default]\n";

    /// The shipped config.toml loads and passes its own checks.
    #[test]
    fn shipped_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        let settings = Settings::load(&path).expect("the shipped config.toml must load");
        assert!(settings.tenants.contains_key("default"));
        assert!(
            settings.store.redis_url.is_empty(),
            "the shipped config uses the embedded store"
        );
    }

    /// Sections left out take the documented defaults.
    #[test]
    fn defaults_are_the_documented_ones() {
        let settings = Settings::from_toml(MINIMAL).expect("minimal config");
        assert_eq!(settings.store.dedup_ttl_secs, 604_800);
        assert_eq!(settings.conversation.max_backlog, 1000);
        assert_eq!(settings.delivery.max_backoff_ms, 10_000);
        assert_eq!(settings.tenants["default"].media_rps, 10);
        assert_eq!(settings.tenants["default"].infobip_auth, InfobipAuth::App);
    }

    /// Each wrong value is refused with its key named.
    #[test]
    fn wrong_values_name_their_key() {
        let cases = [
            (
                "[server]\nbind = \"nowhere\"\n[tenants.default]\n",
                "server.bind",
            ),
            (
                "[server]\nworkers = \"many\"\n[tenants.default]\n",
                "workers",
            ),
            (
                "[tenants.default]\nctlive_url = \"ftp://x\"\n",
                "tenants.default.ctlive_url",
            ),
            ("[tenants.default]\ninfobip_auth = \"token\"\n", "token"),
            (
                "[server]\nbnd = \"127.0.0.1:1\"\n[tenants.default]\n",
                "bnd",
            ),
            ("[tenants.\"a/b\"]\n", "tenants.a/b"),
            ("[tenants.Acme]\n", "tenants.Acme"),
            (
                "[store]\ndedup_ttl_secs = 0\n[tenants.default]\n",
                "store.dedup_ttl_secs",
            ),
            ("[server]\n", "tenants"),
        ];
        for (text, named) in cases {
            let error = Settings::from_toml(text).expect_err(text).to_string();
            assert!(
                error.contains(named),
                "for {text:?} expected an error naming {named:?}, got {error:?}"
            );
        }
    }

    /// Secrets print redacted.
    #[test]
    fn secrets_do_not_print() {
        let settings =
            Settings::from_toml("[tenants.default]\ninfobip_api_key = \"k-123-secret\"\n")
                .expect("config");
        assert!(!format!("{settings:?}").contains("k-123-secret"));
    }

    /// A list can come as one comma-separated string (as from an environment variable).
    #[test]
    fn lists_accept_comma_separated_strings() {
        let settings =
            Settings::from_toml("[tenants.default]\nmedia_hosts = \"a.example, b.example\"\n")
                .expect("config");
        assert_eq!(
            settings.tenants["default"].media_hosts,
            ["a.example", "b.example"]
        );
    }
}
