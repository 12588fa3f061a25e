//! `POST /{tenant}/imchannel/omni/1/advanced`: CTLive's sends. Parse and authenticate, make each
//! destination's send durable in its conversation's outbound lane, answer as Infobip would;
//! sequencing and delivery are the conversation actors'.

use actix_web::{web, HttpRequest, HttpResponse};
use imchannel_actors::intake::Outcome;
use imchannel_actors::media::MediaSource;
use log::info;

use super::body::admit;
use super::error::ApiError;
use crate::protocol::omni::{accepted_answer, parse_send};
use crate::state::AppState;

/// Takes an OMNI advanced send.
pub async fn receive(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, body) = admit(&req, payload, &state, |tenant| &tenant.api_auth).await?;
    info!(
        "[IMCHANNEL] [onSend] Send received {}",
        String::from_utf8_lossy(&body)
    );
    let mut parsed = parse_send(
        &body,
        &tenant.name,
        &tenant.scenario_key,
        &state.media.links,
    )
    .map_err(|text| {
        info!("[IMCHANNEL] [onSend] send refused: {text}");
        ApiError::BadRequest(text)
    })?;
    if let Some(media) = &parsed.media {
        let source = MediaSource {
            tenant: tenant.name.clone(),
            url: media.source.clone(),
            inbound: false,
        };
        state
            .media
            .register(&media.id, source)
            .await
            .map_err(ApiError::store)?;
    }
    let sends = std::mem::take(&mut parsed.sends);
    let answer = accepted_answer(&sends);
    let references: Vec<String> = sends.iter().map(|send| send.message_id.clone()).collect();
    let candidates = sends
        .into_iter()
        .map(|send| send.into_candidate(&tenant.name))
        .collect();
    let outcomes = state
        .intake
        .submit(candidates)
        .await
        .map_err(ApiError::on_send)?;
    for (reference, outcome) in references.iter().zip(&outcomes) {
        match outcome {
            Outcome::Accepted => info!("[IMCHANNEL] [onSend] messageId {reference} accepted"),
            Outcome::Duplicate | Outcome::Superseded => {
                info!("[IMCHANNEL] [onSend] messageId {reference} is a resend: not sent again")
            }
        }
    }
    if let Some(media) = &parsed.media {
        // A resend's media item is not linked from anything that goes on.
        if !outcomes.contains(&Outcome::Accepted) {
            state.media.forget(&media.id).await;
        }
    }
    Ok(HttpResponse::Ok().json(answer))
}
