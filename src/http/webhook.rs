//! `POST /{tenant}/imchannel/message`: Infobip's webhook. Parse and authenticate, make the batch
//! durable with its dedup, answer; order and delivery are the conversation actors'.

use actix_web::{web, HttpRequest, HttpResponse};
use imchannel_actors::intake::Outcome;
use imchannel_actors::media::MediaSource;
use log::info;
use serde_json::json;

use super::body::admit;
use super::error::ApiError;
use crate::protocol::webhook::parse_batch;
use crate::state::AppState;

/// Takes a batch of inbound messages, delivery reports and seen reports.
pub async fn receive(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, body) = admit(&req, payload, &state, |tenant| &tenant.webhook_auth).await?;
    info!(
        "[IMCHANNEL] [onMessage] Message received {}",
        String::from_utf8_lossy(&body)
    );
    let mut events = parse_batch(&body).map_err(|text| {
        info!("[IMCHANNEL] [onMessage] batch refused: {text}");
        ApiError::BadRequest(text)
    })?;
    let media: Vec<_> = events
        .iter_mut()
        .map(|event| event.link_media(&tenant.name, &state.media.links))
        .collect();
    let sources = media.iter().flatten().map(|item| {
        let source = MediaSource {
            tenant: tenant.name.clone(),
            url: item.source.clone(),
            inbound: true,
        };
        (item.id.clone(), source)
    });
    state
        .media
        .register_all(sources.collect())
        .await
        .map_err(ApiError::store)?;
    let references: Vec<String> = events
        .iter()
        .map(|event| event.message_id.clone())
        .collect();
    let candidates = events
        .into_iter()
        .map(|event| event.into_candidate(&tenant.name))
        .collect();
    let outcomes = state.intake.submit(candidates).await.inspect_err(|_| {
        // Nothing of the batch was accepted: no link of it was handed out.
        media
            .iter()
            .flatten()
            .for_each(|item| state.media.forget(&item.id));
    })?;
    let mut accepted = 0;
    for ((reference, outcome), item) in references.iter().zip(&outcomes).zip(&media) {
        match outcome {
            Outcome::Accepted => {
                accepted += 1;
                // The event is on its way already; its media comes down in the background.
                if let Some(item) = item {
                    state.media.prefetch(&item.id);
                }
            }
            Outcome::Duplicate => info!("[IMCHANNEL] [onMessage] messageId {reference} is a duplicate: not passed on again"),
            Outcome::Superseded => info!("[IMCHANNEL] [onMessage] messageId {reference} reports a status older than one passed on: not passed on"),
        }
        if let (Some(item), Outcome::Duplicate | Outcome::Superseded) = (item, outcome) {
            state.media.forget(&item.id);
        }
    }
    Ok(HttpResponse::Ok().json(json!({
        "accepted": accepted,
        "ignored": outcomes.len() - accepted,
    })))
}
