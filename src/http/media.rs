//! Serving media from the cache: `HEAD`/`GET .../get{Image,Document,Audio,Video}Message/{id}` for
//! Infobip (outbound items) and `GET .../media/{id}` for CTLive (inbound items, the answer waiting
//! for their download). The bytes stream from the store chunk by chunk; `Range` is honoured.

use actix_web::body::SizedStream;
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures::StreamExt;
use imchannel_actors::media::{MediaError, CHUNK_BYTES};
use log::info;

use super::error::ApiError;
use super::tenant_of;
use crate::protocol::error::ErrorBody;
use crate::state::AppState;

/// Serves item `{id}`; `function` names the route in the log (`getImageMessage`, `media`, ...).
pub async fn serve(
    req: HttpRequest,
    state: web::Data<AppState>,
    function: &'static str,
) -> Result<HttpResponse, ApiError> {
    state.tenant(tenant_of(&req))?;
    let id = req.match_info().get("id").unwrap_or_default().to_owned();
    info!("[IMCHANNEL] [{function}] {} {id}", req.method());
    let meta = state.media.ensure(&id).await.map_err(|error| match error {
        MediaError::NotFound => ApiError::NotFound(error.to_string()),
        MediaError::FetchFailed(_) => ApiError::BadGateway(error.to_string()),
        MediaError::Unavailable(reason) => {
            log::warn!("[IMCHANNEL] [{function}] {id}: {reason}");
            ApiError::Overloaded(format!("the media is not available yet: {reason}"))
        }
    })?;
    let range = match requested_range(&req, meta.length) {
        Ok(range) => range,
        Err(()) => {
            let text = format!(
                "the range asked for lies outside the item's {} bytes",
                meta.length
            );
            return Ok(HttpResponse::build(StatusCode::RANGE_NOT_SATISFIABLE)
                .insert_header((header::CONTENT_RANGE, format!("bytes */{}", meta.length)))
                .json(ErrorBody::new("RANGE_NOT_SATISFIABLE", &text)));
        }
    };
    let (start, end) = range.unwrap_or((0, meta.length));
    let mut response = HttpResponse::build(if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    });
    response
        .insert_header((header::CONTENT_TYPE, meta.content_type.clone()))
        .insert_header((header::ETAG, format!("\"{id}\"")))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        // Served under imchannel's origin: never sniffed, never run as a page.
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, "sandbox"));
    if range.is_some() {
        response.insert_header((
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{}", end - 1, meta.length),
        ));
    }
    let length = end - start;
    if req.method() == Method::HEAD {
        // The length is announced; actix sends no body to a HEAD, so nothing is read.
        let nothing = futures::stream::empty::<Result<Bytes, std::io::Error>>();
        return Ok(response.body(SizedStream::new(length, nothing)));
    }
    Ok(response.body(SizedStream::new(length, chunks(&state, id, start, end))))
}

/// The bytes `start..end` of an item, read from the store one chunk at a time.
fn chunks(
    state: &AppState,
    id: String,
    start: u64,
    end: u64,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + 'static {
    let store = state.media.store.clone();
    let chunk = CHUNK_BYTES as u64;
    let indexes = start / chunk..end.div_ceil(chunk);
    futures::stream::iter(indexes).then(move |index| {
        let (store, id) = (store.clone(), id.clone());
        async move {
            let bytes = store
                .chunk(id.clone(), index)
                .await
                .map_err(std::io::Error::other)?
                .ok_or_else(|| {
                    std::io::Error::other(format!("chunk {index} of media {id} expired"))
                })?;
            let offset = index * chunk;
            let from = start.saturating_sub(offset).min(bytes.len() as u64) as usize;
            let to = (end - offset).min(bytes.len() as u64) as usize;
            Ok(bytes.slice(from..to))
        }
    })
}

/// The single byte range a `Range` header asks for, as `start..end`: `Ok(None)` for none (or a
/// form not served: several ranges, another unit), `Err` when it lies past the item.
fn requested_range(req: &HttpRequest, length: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = req
        .headers()
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().strip_prefix("bytes="))
        .filter(|spec| !spec.contains(','))
    else {
        return Ok(None);
    };
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let range = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(first), Ok(last)) if first <= last => (first, last.saturating_add(1).min(length)),
        (Ok(first), Err(_)) if last.is_empty() => (first, length),
        (Err(_), Ok(suffix)) if first.is_empty() => (length.saturating_sub(suffix), length),
        _ => return Ok(None),
    };
    // Past the end, or empty (`bytes=-0`): nothing of the item can be served.
    if range.0 >= range.1 {
        return Err(());
    }
    Ok(Some(range))
}
