//! imchannel: the gateway between CTLive and the Infobip WhatsApp channel. It deduplicates
//! Infobip's webhooks and forwards them to CTLive in order per conversation, sequences CTLive's
//! sends to Infobip the same way, proxies media in both directions, and keeps everything it
//! accepted until it was passed on (DESIGN.md).
//!
//! # Layout
//! - [`config`]: typed settings from `config.toml` and `IMCHANNEL__...` variables; [`cli`]: the
//!   command line.
//! - [`protocol`]: Infobip's JSON as imchannel reads and writes it (webhooks, sends, reports,
//!   media links); the error shape.
//! - [`http`]: the actix-web routes; [`state`]: what their handlers share.
//! - [`clients`]: where accepted work goes (CTLive over awc or a host actor; Infobip), and the
//!   media fetcher.
//! - [`media`]: the gateway's handle on media: the cache actor, the item store, the links.
//! - [`store`]: Redis and embedded-memory implementations of the actors' ports (work, media) and
//!   the shared rates.
//! - [`gateway`]: the library entry: build once, mount with [`Gateway::configure`].
//! - [`startup`]: the gateway as its own server; [`sandbox`]: stand-ins to watch it work.
//!
//! The concurrency core (conversation actors, registry, retries, the media cache actor) is the
//! `imchannel-actors` crate.

pub mod cli;
pub mod clients;
pub mod config;
pub mod gateway;
pub mod http;
pub mod media;
pub mod protocol;
pub mod sandbox;
pub mod startup;
pub mod state;
pub mod store;

pub use gateway::{Gateway, GatewayBuilder};

/// The tenant of the paths without a tenant segment.
pub const DEFAULT_TENANT: &str = "default";
