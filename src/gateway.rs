//! The gateway as a library: built once, then mounted into any actix-web `App` (its own server or
//! a host application such as a CTLive sidecar) with [`Gateway::configure`].

use std::rc::Rc;
use std::sync::{Arc, Weak};
use std::time::Duration;

use actix::Recipient;
use actix_web::web;
use imchannel_actors::intake::Intake;
use imchannel_actors::media::{Fetcher, FetcherFactory, MediaCache, MediaStore};
use imchannel_actors::ports::{Sink, SinkFactory, Sinks, StoreError};
use imchannel_actors::registry::{Limits, Registry};
use imchannel_actors::retry::RetryPolicy;
use log::{info, warn};

use crate::clients::ctlive::{self, CtliveForwarder};
use crate::clients::host::{HostSink, InboundEvent};
use crate::clients::infobip::{self, InfobipSender};
use crate::clients::media_fetch::{self, HttpFetcher};
use crate::config::Settings;
use crate::media::{Media, MediaArbiter};
use crate::protocol::media_links::MediaLinks;
use crate::state::AppState;
use crate::store::SharedPace;
use crate::{http, store};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listener could not be bound.
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
}

/// Configures a [`Gateway`] before it starts.
pub struct GatewayBuilder {
    settings: Settings,
    host: Option<Recipient<InboundEvent>>,
    instance: Option<String>,
}

impl GatewayBuilder {
    /// Names this process among the instances sharing one Redis. A process restarting under the
    /// same name resumes its unfinished work at once; under another, the work is taken over
    /// `store.instance_lease_secs` after the old process's last heartbeat. Two live processes
    /// must never share a name. Default: `<hostname>:<pid>`.
    pub fn instance_id(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Hands inbound events to `recipient` as [`InboundEvent`] messages instead of posting them
    /// to the tenants' `ctlive_url`.
    pub fn forward_to_host(mut self, recipient: Recipient<InboundEvent>) -> Self {
        self.host = Some(recipient);
        self
    }

    /// Opens the store, starts the conversation registry and resumes the work a previous process
    /// accepted but did not pass on. Must run inside an actix `System`.
    pub async fn build(self) -> Result<Gateway, StartError> {
        let settings = self.settings;
        // awc's TLS (https to Infobip, CTLive and media sources) needs a process-wide crypto
        // provider; ring is the one built in. Installed already (by a host) is fine too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let instance = self
            .instance
            .unwrap_or_else(|| format!("{}:{}", hostname(), std::process::id()));
        let stores = store::open(&settings.store, &instance).await?;
        let store = stores.work;
        let timeout = settings.delivery.timeout();
        let (media, media_arbiter) = start_media(&settings, stores.media, stores.pace.clone());
        let infobip = Arc::new(infobip::targets(&settings, stores.pace.clone()));
        let sending_media = media.clone();
        let outbound = move || {
            Rc::new(InfobipSender::new(
                timeout,
                infobip.clone(),
                sending_media.clone(),
            )) as Rc<dyn Sink>
        };
        let sinks: SinkFactory = match self.host {
            Some(recipient) => Arc::new(move || Sinks {
                inbound: Rc::new(HostSink::new(recipient.clone())),
                outbound: outbound(),
            }),
            None => {
                let ctlive = Arc::new(ctlive::targets(&settings));
                Arc::new(move || Sinks {
                    inbound: Rc::new(CtliveForwarder::new(timeout, ctlive.clone())),
                    outbound: outbound(),
                })
            }
        };
        let registry = Registry::start(limits(&settings), store.clone(), sinks);
        let unfinished = store.unfinished().await?;
        if !unfinished.is_empty() {
            info!(
                "[IMCHANNEL] [resume] resuming {} accepted events that were not passed on yet",
                unfinished.len()
            );
        }
        registry.resume(unfinished);
        let state = Arc::new(AppState::new(
            &settings,
            Intake::new(store, registry),
            media,
            media_arbiter,
        ));
        let lease = Duration::from_secs(settings.store.instance_lease_secs);
        tend_store(Arc::downgrade(&state), lease / 3);
        Ok(Gateway {
            state: web::Data::from(state),
        })
    }
}

/// The running gateway: routes to mount and the actors behind them.
#[derive(Clone)]
pub struct Gateway {
    state: web::Data<AppState>,
}

impl Gateway {
    /// Starts configuring a gateway.
    pub fn builder(settings: Settings) -> GatewayBuilder {
        GatewayBuilder {
            settings,
            host: None,
            instance: None,
        }
    }

    /// Mounts the gateway's routes (and its state) into an actix-web `App`.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.state.clone());
        http::routes(cfg);
    }

    /// How many conversation actors are live now.
    pub fn live_conversations(&self) -> usize {
        self.state.intake.registry().live()
    }

    /// How many accepted events are queued or in flight now.
    pub fn pending_events(&self) -> usize {
        self.state.intake.registry().pending()
    }
}

/// Starts the media cache on an arbiter of its own, fetching with the tenants' media rules.
fn start_media(
    settings: &Settings,
    store: Arc<dyn MediaStore>,
    pace: Option<Arc<dyn SharedPace>>,
) -> (Media, MediaArbiter) {
    let rules = Arc::new(media_fetch::rules(settings, pace));
    let timeout = settings.delivery.timeout();
    let max_bytes = settings.store.media_max_bytes;
    let retry = retry_policy(settings);
    let fetch_into = store.clone();
    let fetchers: FetcherFactory = Arc::new(move || {
        Rc::new(HttpFetcher::new(
            timeout,
            rules.clone(),
            fetch_into.clone(),
            max_bytes,
            retry.clone(),
        )) as Rc<dyn Fetcher>
    });
    let (cache, arbiter) = MediaCache::start(store.clone(), fetchers);
    let links = MediaLinks::new(&settings.server.public_url);
    (Media::new(cache, store, links), MediaArbiter(arbiter))
}

/// Every `every`, until the gateway is dropped: renews this instance's lease and resumes the work
/// adopted from instances that died.
fn tend_store(state: Weak<AppState>, every: Duration) {
    actix::spawn(async move {
        let mut tick = actix_web::rt::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(state) = state.upgrade() else {
                return;
            };
            match state.intake.store().renew_and_adopt().await {
                Ok(adopted) => state.intake.registry().resume(adopted),
                Err(error) => {
                    warn!("[IMCHANNEL] [lease] could not renew this instance's lease: {error}")
                }
            }
        }
    });
}

/// This machine's name, for instance identities.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "imchannel".to_owned())
}

/// The registry's bounds and timings from the settings.
fn limits(settings: &Settings) -> Limits {
    Limits {
        shards: worker_count(settings),
        max_live: settings.conversation.max_live,
        max_backlog: settings.conversation.max_backlog,
        idle: Duration::from_secs(settings.conversation.idle_secs),
        retry: retry_policy(settings),
    }
}

/// How deliveries and fetches retry, from `[delivery]`.
fn retry_policy(settings: &Settings) -> RetryPolicy {
    let delivery = &settings.delivery;
    RetryPolicy {
        initial: Duration::from_millis(delivery.initial_backoff_ms),
        max: Duration::from_millis(delivery.max_backoff_ms.max(delivery.initial_backoff_ms)),
        max_age: Duration::from_secs(delivery.max_age_secs),
    }
}

/// `server.workers`, where 0 means one per core.
pub fn worker_count(settings: &Settings) -> usize {
    match settings.server.workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        workers => workers,
    }
}
