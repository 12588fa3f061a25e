//! `/healthz` (the process answers) and `/readyz` (the store answers too).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::error::ApiError;
use crate::state::AppState;

/// The process is up.
pub async fn alive() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "up"}))
}

/// The store answers, so accepted work can be made durable.
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.intake.store().ping().await.map_err(|cause| {
        log::warn!("[IMCHANNEL] [readyz] {cause}");
        ApiError::StoreUnavailable
    })?;
    Ok(HttpResponse::Ok().json(json!({
        "status": "ready",
        "liveConversations": state.intake.registry().live(),
        "pendingEvents": state.intake.registry().pending(),
    })))
}
