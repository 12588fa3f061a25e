//! For a host application that embeds the gateway (a CTLive sidecar): inbound events arrive as
//! actor messages instead of HTTP posts, with the same order, retries and durability.

use actix::prelude::*;
use bytes::Bytes;
use futures::future::{FutureExt, LocalBoxFuture};
use imchannel_actors::ports::{DeliveryFailure, Envelope, Sink};
use log::info;

/// One inbound event (message, delivery report or seen report) for the host. Answer `Err` to have
/// it retried later; the next event of its conversation waits until this one was taken.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), HostRefusal>")]
pub struct InboundEvent {
    /// The tenant it belongs to.
    pub tenant: String,
    /// The customer's number (the conversation).
    pub customer: String,
    /// Infobip's messageId.
    pub message_id: String,
    /// The event's JSON as Infobip sent it, but for a media message's `message.url`, which
    /// points at imchannel's copy.
    pub event: Bytes,
}

impl InboundEvent {
    /// The event parsed as JSON.
    pub fn json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::from_slice(&self.event)
    }
}

/// The host could not take an event now; it will be offered again.
#[derive(Debug)]
pub struct HostRefusal(pub String);

/// The sink that hands events to the host's actor.
pub struct HostSink {
    recipient: Recipient<InboundEvent>,
}

impl HostSink {
    /// A sink delivering to `recipient`.
    pub fn new(recipient: Recipient<InboundEvent>) -> Self {
        Self { recipient }
    }
}

impl Sink for HostSink {
    fn name(&self) -> &'static str {
        "forwardMessage"
    }

    fn deliver(&self, envelope: &Envelope) -> LocalBoxFuture<'static, Result<(), DeliveryFailure>> {
        let reference = envelope.reference.clone();
        let sending = self.recipient.send(InboundEvent {
            tenant: envelope.conversation.tenant.clone(),
            customer: envelope.conversation.peer.clone(),
            message_id: envelope.reference.clone(),
            event: envelope.payload.clone(),
        });
        async move {
            match sending.await {
                Ok(Ok(())) => {
                    info!("[IMCHANNEL] [forwardMessage] messageId {reference} handed to the host");
                    Ok(())
                }
                Ok(Err(HostRefusal(reason))) => Err(DeliveryFailure::transient(
                    format!("the host refused: {reason}"),
                    None,
                )),
                Err(error) => Err(DeliveryFailure::transient(
                    format!("the host did not answer: {error}"),
                    None,
                )),
            }
        }
        .boxed_local()
    }
}
