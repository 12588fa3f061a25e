//! Forwards inbound events to CTLive: one event per POST, in Infobip's webhook format.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use futures::future::{self, FutureExt, LocalBoxFuture};
use imchannel_actors::ports::{DeliveryFailure, Envelope, Sink};
use log::info;

use super::exchange::exchange;
use super::loggable_url;
use crate::config::{Secret, Settings};
use crate::protocol::webhook::forward_body;

/// Where one tenant's events go.
pub struct CtliveTarget {
    url: String,
    /// The URL as log lines show it (no credentials).
    shown: Arc<str>,
    credentials: Option<(String, Secret)>,
}

/// Every tenant's CTLive target, by tenant name.
pub type CtliveTargets = HashMap<String, CtliveTarget>;

/// The CTLive targets of every configured tenant.
pub fn targets(settings: &Settings) -> CtliveTargets {
    settings
        .tenants
        .iter()
        .map(|(name, tenant)| {
            let credentials = (!tenant.ctlive_user.is_empty()
                || !tenant.ctlive_password.is_empty())
            .then(|| (tenant.ctlive_user.clone(), tenant.ctlive_password.clone()));
            let target = CtliveTarget {
                url: tenant.ctlive_url.clone(),
                shown: loggable_url(&tenant.ctlive_url).into(),
                credentials,
            };
            (name.clone(), target)
        })
        .collect()
}

/// The sink that posts events to CTLive, with an `awc` client of its own arbiter.
pub struct CtliveForwarder {
    client: awc::Client,
    targets: Arc<CtliveTargets>,
}

impl CtliveForwarder {
    /// A forwarder whose every attempt times out after `timeout`. Build it on the arbiter that
    /// uses it: `awc::Client` is not `Send`.
    pub fn new(timeout: Duration, targets: Arc<CtliveTargets>) -> Self {
        Self {
            client: awc::Client::builder().timeout(timeout).finish(),
            targets,
        }
    }
}

impl Sink for CtliveForwarder {
    fn name(&self) -> &'static str {
        "forwardMessage"
    }

    fn deliver(&self, envelope: &Envelope) -> LocalBoxFuture<'static, Result<(), DeliveryFailure>> {
        let tenant = &envelope.conversation.tenant;
        let Some(target) = self.targets.get(tenant) else {
            let failure =
                DeliveryFailure::permanent(format!("tenant {tenant} is no longer configured"));
            return future::ready(Err(failure)).boxed_local();
        };
        let mut request = self
            .client
            .post(&target.url)
            .insert_header((header::CONTENT_TYPE, "application/json"));
        if let Some((user, password)) = &target.credentials {
            request = request.basic_auth(user, password.expose());
        }
        let sending = request.send_body(forward_body(&envelope.payload));
        let reference = envelope.reference.clone();
        let url = target.shown.clone();
        async move {
            let answer = exchange(sending).await?;
            info!(
                "[IMCHANNEL] [forwardMessage] messageId {reference} forwarded to [{url}]: HTTP {}",
                answer.status.as_u16()
            );
            Ok(())
        }
        .boxed_local()
    }
}
