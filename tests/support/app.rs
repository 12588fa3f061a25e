//! The real gateway, in-process on port 0, with the store a test asks for, pointed at stand-ins.

use actix_web::dev::ServerHandle;
use awc::http::header::HeaderMap;
use awc::http::StatusCode;
use imchannel::config::Settings;
use imchannel::startup::Application;
use imchannel::Gateway;
use serde_json::Value;

use super::redis_server::RedisServer;
use super::standin::StandIn;

/// Which store a gateway under test uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded memory store.
    Memory,
    /// A redis-server started for the test.
    Redis,
}

/// Credentials of the test tenants.
pub const DEFAULT_WEBHOOK: (&str, &str) = ("infobip", "wh-secret-default-5b1e");
pub const ACME_WEBHOOK: (&str, &str) = ("acme-infobip", "wh-secret-acme-77c2");
pub const CTLIVE_AUTH: (&str, &str) = ("ctlive-user", "ctlive-secret-91ad");
pub const DEFAULT_API: (&str, &str) = ("ctlive", "api-secret-default-0c4d");
pub const ACME_API: (&str, &str) = ("acme-ctlive", "api-secret-acme-e61b");
pub const DEFAULT_INFOBIP_KEY: &str = "infobip-key-secret-3f0a";
pub const ACME_INFOBIP: (&str, &str) = ("acme-ib", "acme-ib-secret-2d9e");
pub const DEFAULT_SCENARIO: &str = "TENANT-DEFAULT-SCENARIO";

/// Settings for a gateway on port 0 with tenants `default` and `acme` posting to `ctlive`, quick
/// retries, and `redis_url` (empty for the memory store).
pub fn settings(ctlive: &StandIn, redis_url: &str) -> Settings {
    let text = format!(
        r#"
[server]
bind = "127.0.0.1:0"
workers = 2
[store]
redis_url = "{redis_url}"
[delivery]
timeout_ms = 1000
initial_backoff_ms = 20
max_backoff_ms = 200
[tenants.default]
webhook_user = "{}"
webhook_password = "{}"
ctlive_url = "{}"
ctlive_user = "{}"
ctlive_password = "{}"
api_user = "{}"
api_password = "{}"
infobip_api_key = "{DEFAULT_INFOBIP_KEY}"
scenario_key = "{DEFAULT_SCENARIO}"
allow_private_media_hosts = true
[tenants.acme]
webhook_user = "{}"
webhook_password = "{}"
api_user = "{}"
api_password = "{}"
ctlive_url = "{}"
infobip_auth = "basic"
infobip_user = "{}"
infobip_password = "{}"
allow_private_media_hosts = true
"#,
        DEFAULT_WEBHOOK.0,
        DEFAULT_WEBHOOK.1,
        ctlive.url("/default/ctlive"),
        CTLIVE_AUTH.0,
        CTLIVE_AUTH.1,
        DEFAULT_API.0,
        DEFAULT_API.1,
        ACME_WEBHOOK.0,
        ACME_WEBHOOK.1,
        ACME_API.0,
        ACME_API.1,
        ctlive.url("/acme/ctlive"),
        ACME_INFOBIP.0,
        ACME_INFOBIP.1,
    );
    Settings::from_toml(&text).expect("test settings are valid")
}

/// Points every tenant's Infobip at `infobip`, under `/<tenant>`.
pub fn with_infobip(settings: &mut Settings, infobip: &StandIn) {
    for (name, tenant) in settings.tenants.iter_mut() {
        tenant.infobip_base_url = infobip.url(&format!("/{name}"));
    }
}

/// A gateway serving on 127.0.0.1:<port>, and the redis-server it uses, if any.
pub struct TestGateway {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The library handle (live conversations, ...).
    pub gateway: Gateway,
    /// The Redis it uses, if it was started for it.
    pub redis: Option<RedisServer>,
    handle: ServerHandle,
    client: awc::Client,
}

impl TestGateway {
    /// A gateway with `store`, pointed at `ctlive`, after `tweak` adjusted its settings.
    pub async fn spawn(
        store: StoreKind,
        ctlive: &StandIn,
        tweak: impl FnOnce(&mut Settings),
    ) -> Self {
        let redis = match store {
            StoreKind::Memory => None,
            StoreKind::Redis => Some(RedisServer::start().await),
        };
        let url = redis.as_ref().map(RedisServer::url).unwrap_or_default();
        let mut settings = settings(ctlive, &url);
        tweak(&mut settings);
        let mut gateway = Self::spawn_with(settings).await;
        gateway.redis = redis;
        gateway
    }

    /// A gateway with exactly these settings, but for `server.public_url`, which becomes its
    /// real address.
    pub async fn spawn_with(mut settings: Settings) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = listener.local_addr().expect("bound").port();
        settings.server.public_url = format!("http://127.0.0.1:{port}");
        let application = Application::build_on(settings, listener)
            .await
            .expect("the gateway starts");
        let address = format!("http://127.0.0.1:{}", application.port());
        let gateway = application.gateway().clone();
        let handle = application.handle();
        actix_web::rt::spawn(application.run_until_stopped());
        Self {
            address,
            gateway,
            redis: None,
            handle,
            client: awc::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .finish(),
        }
    }

    /// Posts `body` to `path` with Basic `credentials`; the status and the JSON answer.
    pub async fn post(
        &self,
        path: &str,
        body: impl Into<bytes::Bytes>,
        credentials: Option<(&str, &str)>,
    ) -> (StatusCode, Value) {
        let (status, _, json) = self.post_with_headers(path, body, credentials).await;
        (status, json)
    }

    /// Like [`post`](Self::post), with the answer's headers.
    pub async fn post_with_headers(
        &self,
        path: &str,
        body: impl Into<bytes::Bytes>,
        credentials: Option<(&str, &str)>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request = self
            .client
            .post(format!("{}{path}", self.address))
            .insert_header(("Content-Type", "application/json"));
        if let Some((user, password)) = credentials {
            request = request.basic_auth(user, password);
        }
        let mut response = request
            .send_body(body.into())
            .await
            .expect("the gateway answers");
        let status = response.status();
        let bytes = response
            .body()
            .limit(1 << 20)
            .await
            .expect("a readable answer");
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "answer {status} is not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, response.headers().clone(), json)
    }

    /// Posts a webhook batch to the default tenant with its credentials.
    pub async fn webhook(&self, batch: &Value) -> (StatusCode, Value) {
        self.post(
            "/imchannel/message",
            batch.to_string(),
            Some(DEFAULT_WEBHOOK),
        )
        .await
    }

    /// Posts an OMNI send to the default tenant with its CTLive credentials.
    pub async fn send(&self, send: &Value) -> (StatusCode, Value) {
        self.post(
            "/imchannel/omni/1/advanced",
            send.to_string(),
            Some(DEFAULT_API),
        )
        .await
    }

    /// GETs `path`; the status and the JSON answer.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let mut response = self
            .client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("the gateway answers");
        let status = response.status();
        let json = response.json().await.unwrap_or(Value::Null);
        (status, json)
    }

    /// Stops the server (the actors stop with the last handle).
    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}
