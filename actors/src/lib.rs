//! imchannel's concurrency core: conversation actors, their registry and the ports they talk
//! through. It knows nothing of HTTP or of Infobip's JSON: work arrives as opaque payloads keyed by
//! conversation.
//!
//! # Layout
//! - [`ports`]: the [`Store`](ports::Store) that deduplicates work and keeps it durable, the
//!   [`Sink`](ports::Sink) that passes it on, and the values that cross them.
//! - [`intake`]: admit, make durable, hand over: the one path every accepted batch takes.
//! - [`registry`]: finds or starts the actor of a conversation, bounds how many live and how much
//!   each holds, stops idle ones.
//! - [`conversation`]: one chat's two ordered lanes (inbound, outbound), each passed on one item
//!   at a time with retries.
//! - [`retry`]: exponential backoff with jitter.
//! - [`media`]: the media cache: fetch each source once, keep it in the store in chunks.

pub mod conversation;
pub mod intake;
pub mod media;
pub mod ports;
pub mod registry;
pub mod retry;
