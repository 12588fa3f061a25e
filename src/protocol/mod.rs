//! The JSON of Infobip's and CTLive's protocol: what imchannel reads, checks and writes.

pub mod error;
pub mod media_links;
pub mod omni;
pub mod webhook;

/// A customer's number as conversations are keyed: trimmed, without a leading `+`, so that a
/// report's `to`, an inbound `from` and a send's destination name the same conversation.
pub fn customer_number(number: &str) -> &str {
    let number = number.trim();
    number.strip_prefix('+').unwrap_or(number)
}
