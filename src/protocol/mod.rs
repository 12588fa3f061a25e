//! The JSON of Infobip's and CTLive's protocol: what imchannel reads, checks and writes.

pub mod error;
pub mod media_links;
pub mod omni;
pub mod webhook;
