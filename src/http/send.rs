//! `POST /{tenant}/imchannel/omni/1/advanced`: CTLive's sends. Parse and authenticate, make each
//! destination's send durable in its conversation's outbound lane, answer as Infobip would;
//! sequencing and delivery are the conversation actors'.

use actix_web::{web, HttpRequest, HttpResponse};
use imchannel_actors::intake::Outcome;
use imchannel_actors::media::MediaSource;
use log::info;

use super::body::admit;
use super::error::ApiError;
use crate::protocol::omni::{accepted_answer, parse_send, ParsedSend};
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
    let parsed = parse_send(
        &body,
        &tenant.name,
        &tenant.scenario_key,
        &state.media.links,
    )
    .map_err(|text| {
        info!("[IMCHANNEL] [onSend] send refused: {text}");
        ApiError::BadRequest(text)
    })?;
    let ParsedSend { sends, media } = parsed;
    if let Some(media) = &media {
        let source = MediaSource {
            tenant: tenant.name.clone(),
            url: media.source.clone(),
            inbound: false,
        };
        let registering = state.media.register_all(vec![(media.id.clone(), source)]);
        registering.await.map_err(ApiError::store)?;
    }
    let answer = accepted_answer(&sends);
    let references: Vec<String> = sends.iter().map(|send| send.message_id.clone()).collect();
    let candidates = sends
        .into_iter()
        .map(|send| send.into_candidate(&tenant.name))
        .collect();
    let submitted = state.intake.submit(candidates).await;
    // A media item linked from nothing that goes on (the send was refused, or is a resend).
    let linked = submitted
        .as_ref()
        .is_ok_and(|outcomes| outcomes.contains(&Outcome::Accepted));
    if let (Some(media), false) = (&media, linked) {
        state.media.forget(&media.id);
    }
    let outcomes = submitted.map_err(ApiError::on_send)?;
    for (reference, outcome) in references.iter().zip(&outcomes) {
        match outcome {
            Outcome::Accepted => info!("[IMCHANNEL] [onSend] messageId {reference} accepted"),
            Outcome::Duplicate | Outcome::Superseded => {
                info!("[IMCHANNEL] [onSend] messageId {reference} is a resend: not sent again")
            }
        }
    }
    Ok(HttpResponse::Ok().json(answer))
}
