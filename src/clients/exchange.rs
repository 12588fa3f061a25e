//! One HTTP attempt and what it means for the retry loop: taken, worth another try, or refused
//! for good.

use std::time::Duration;

use actix_web::http::header;
use actix_web::http::StatusCode;
use awc::error::SendRequestError;
use awc::SendClientRequest;
use imchannel_actors::ports::DeliveryFailure;

/// How much of an answer's body is read (for the failure reason).
const ANSWER_LIMIT: usize = 64 * 1024;

/// Sends the request and judges the answer: 2xx is taken; connection errors, timeouts, 408, 429
/// and 5xx are worth another try (not before a `Retry-After`); any other answer is refused for good.
pub async fn exchange(request: SendClientRequest) -> Result<StatusCode, DeliveryFailure> {
    let mut response = request.await.map_err(|error| match error {
        SendRequestError::Timeout => DeliveryFailure::transient("timed out", None),
        other => DeliveryFailure::transient(format!("could not be sent: {other}"), None),
    })?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = response
        .body()
        .limit(ANSWER_LIMIT)
        .await
        .unwrap_or_default();
    if status.is_success() {
        return Ok(status);
    }
    let reason = format!(
        "HTTP {}: {}",
        status.as_u16(),
        String::from_utf8_lossy(&body[..body.len().min(512)])
    );
    let transient = status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error();
    Err(if transient {
        DeliveryFailure::transient(reason, retry_after)
    } else {
        DeliveryFailure::permanent(reason)
    })
}
