//! Sends to Infobip: `POST {infobip_base_url}/omni/1/advanced`, one destination per request,
//! paced to the tenant's `infobip_rps`. A send that fails for good carries the `REJECTED` report
//! CTLive gets instead.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use futures::future::{self, FutureExt, LocalBoxFuture};
use imchannel_actors::media::MediaError;
use imchannel_actors::ports::{DeliveryFailure, Envelope, Sink};
use log::info;

use super::exchange::{exchange, Failed};
use super::loggable_url;
use super::pacer::Pacer;
use crate::config::{InfobipAuth, Secret, Settings};
use crate::media::Media;
use crate::protocol::media_links::{MediaLinks, OUTBOUND_MEDIA};
use crate::protocol::omni::{error_text, rejected_report, rejected_status, Rejection};
use crate::store::SharedPace;

/// Where and how one tenant's sends go.
pub struct InfobipTarget {
    url: String,
    /// The URL as log lines show it (no credentials).
    shown: Arc<str>,
    authorization: Secret,
    /// How the log names the credentials sent (never the credentials themselves).
    auth_kind: &'static str,
    pacer: Arc<Pacer>,
}

/// Every tenant's Infobip target, by tenant name.
pub type InfobipTargets = HashMap<String, InfobipTarget>;

/// The Infobip targets of every configured tenant, paced across instances with `pace`.
pub fn targets(settings: &Settings, pace: Option<Arc<dyn SharedPace>>) -> InfobipTargets {
    settings
        .tenants
        .iter()
        .map(|(name, tenant)| {
            let auth_kind = match tenant.infobip_auth {
                InfobipAuth::App => "api key",
                InfobipAuth::Basic => "basic auth",
            };
            let url = format!(
                "{}/omni/1/advanced",
                tenant.infobip_base_url.trim_end_matches('/')
            );
            let target = InfobipTarget {
                shown: loggable_url(&url).into(),
                url,
                authorization: tenant.infobip_authorization(),
                auth_kind,
                pacer: Arc::new(Pacer::new(
                    tenant.infobip_rps,
                    pace.clone().map(|pace| (pace, format!("infobip:{name}"))),
                )),
            };
            (name.clone(), target)
        })
        .collect()
}

/// The sink that posts sends to Infobip, with an `awc` client of its own arbiter; a send's media
/// is fetched into the cache before Infobip is told where to get it.
pub struct InfobipSender {
    client: awc::Client,
    targets: Arc<InfobipTargets>,
    media: Media,
}

impl InfobipSender {
    /// A sender whose every attempt times out after `timeout`. Build it on the arbiter that
    /// uses it: `awc::Client` is not `Send`.
    pub fn new(timeout: Duration, targets: Arc<InfobipTargets>, media: Media) -> Self {
        Self {
            client: awc::Client::builder().timeout(timeout).finish(),
            targets,
            media,
        }
    }
}

impl Sink for InfobipSender {
    fn name(&self) -> &'static str {
        "sendMessage"
    }

    fn deliver(&self, envelope: &Envelope) -> LocalBoxFuture<'static, Result<(), DeliveryFailure>> {
        let reference = envelope.reference.clone();
        let conversation = envelope.conversation.clone();
        let (message_id, sent_at) = (reference.clone(), envelope.accepted_at);
        let notice = move |rejection: Rejection<'_>| {
            rejected_report(
                &conversation.tenant,
                &message_id,
                &conversation.peer,
                sent_at,
                &rejection,
            )
        };
        let tenant = &envelope.conversation.tenant;
        let Some(target) = self.targets.get(tenant) else {
            let reason = format!("tenant {tenant} is no longer configured");
            let rejection = Rejection {
                status: None,
                http_status: None,
                description: &reason,
            };
            let failure = DeliveryFailure::permanent(&reason).with_notice(notice(rejection));
            return future::ready(Err(failure)).boxed_local();
        };
        let pacer = target.pacer.clone();
        let request = self
            .client
            .post(&target.url)
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .insert_header((header::AUTHORIZATION, target.authorization.expose()));
        let body = envelope.payload.clone();
        let url = target.shown.clone();
        let auth_kind = target.auth_kind;
        let media = self.media.clone();
        async move {
            if let Some(id) = media_id(&body, &media.links) {
                media.ensure(&id).await.map_err(|error| {
                    let description = error.to_string();
                    let failure = match error {
                        MediaError::Unavailable(_) => {
                            DeliveryFailure::transient(description.clone(), None)
                        }
                        MediaError::NotFound | MediaError::FetchFailed(_) => {
                            DeliveryFailure::permanent(description.clone())
                        }
                    };
                    let rejection = Rejection {
                        status: None,
                        http_status: None,
                        description: &description,
                    };
                    failure.with_notice(notice(rejection))
                })?;
            }
            pacer.wait().await;
            info!(
                "[IMCHANNEL] [sendMessage] request to [{url}] Data [{}] with {auth_kind} header",
                String::from_utf8_lossy(&body)
            );
            let answer = exchange(request.send_body(body)).await.map_err(|failed| {
                let Failed {
                    status,
                    body,
                    failure,
                } = failed;
                info!(
                    "[IMCHANNEL] [sendMessage] messageId {reference} response [{}] {}",
                    status.map_or("none".to_owned(), |s| s.as_u16().to_string()),
                    String::from_utf8_lossy(&body)
                );
                let description = if body.is_empty() {
                    failure.reason.clone()
                } else {
                    error_text(&body)
                };
                let rejection = Rejection {
                    status: None,
                    http_status: status.map(|s| s.as_u16()),
                    description: &description,
                };
                failure.with_notice(notice(rejection))
            })?;
            info!(
                "[IMCHANNEL] [sendMessage] messageId {reference} response [{}] {}",
                answer.status.as_u16(),
                String::from_utf8_lossy(&answer.body)
            );
            if let Some((id, name, description)) = rejected_status(&answer.body) {
                let rejection = Rejection {
                    status: Some((id, &name)),
                    http_status: Some(answer.status.as_u16()),
                    description: &description,
                };
                let failure = DeliveryFailure::permanent(format!(
                    "Infobip rejected it: {name}: {description}"
                ));
                return Err(failure.with_notice(notice(rejection)));
            }
            Ok(())
        }
        .boxed_local()
    }
}

/// The media item a send's body links to, if any.
fn media_id(body: &[u8], links: &MediaLinks) -> Option<String> {
    // Most sends are text: they are not parsed again.
    let prefix = links.prefix().as_bytes();
    if !body.windows(prefix.len()).any(|window| window == prefix) {
        return None;
    }
    let send: serde_json::Value = serde_json::from_slice(body).ok()?;
    let whatsapp = send.get("whatsApp")?;
    OUTBOUND_MEDIA
        .iter()
        .find_map(|(field, _)| whatsapp.get(*field)?.as_str())
        .and_then(|url| links.outbound_id(url))
        .map(str::to_owned)
}
