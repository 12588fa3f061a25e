//! Admits a request: its tenant, its credentials, its body up to `server.max_body_bytes`.

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::auth::BasicCredentials;
use super::error::ApiError;
use super::tenant_of;
use crate::state::{AppState, Tenant};

/// The whole body, or `TooLarge` as soon as it is known to pass `limit`.
async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::TooLarge { limit });
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::BadRequest(format!("the body could not be read: {error}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The tenant `req` names, once `req` presented the credentials `expected` picks from it, and the
/// body, read within `server.max_body_bytes`: 404, 401 and 413 in that order.
pub async fn admit<'a>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &'a AppState,
    expected: fn(&Tenant) -> &BasicCredentials,
) -> Result<(&'a Tenant, Bytes), ApiError> {
    let tenant = state.tenant(tenant_of(req))?;
    expected(tenant).check(req)?;
    let body = read_limited(req, payload, state.max_body_bytes).await?;
    Ok((tenant, body))
}
