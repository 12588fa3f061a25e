//! One HTTP attempt and what it means for the retry loop: taken, worth another try, or refused
//! for good.

use std::time::{Duration, SystemTime};

use actix_web::http::header::{self, HeaderMap};
use actix_web::http::StatusCode;
use awc::error::SendRequestError;
use awc::SendClientRequest;
use bytes::Bytes;
use imchannel_actors::ports::DeliveryFailure;

/// How much of an answer's body is read.
const ANSWER_LIMIT: usize = 64 * 1024;
/// How much of an answer's body a failure reason quotes.
const REASON_LIMIT: usize = 512;

/// A receiver's 2xx answer.
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its body (up to 64 KiB).
    pub body: Bytes,
}

/// An attempt that failed, with what the receiver said, if it answered.
pub struct Failed {
    /// The answer's status, if there was an answer.
    pub status: Option<StatusCode>,
    /// The answer's body (empty without an answer).
    pub body: Bytes,
    /// What it means for the retry loop.
    pub failure: DeliveryFailure,
}

impl From<Failed> for DeliveryFailure {
    fn from(failed: Failed) -> Self {
        failed.failure
    }
}

/// Sends the request and judges the answer: 2xx is taken; connection errors, timeouts, 408, 429
/// and 5xx are worth another try (not before a `Retry-After`); any other answer is refused for good.
pub async fn exchange(request: SendClientRequest) -> Result<Answer, Failed> {
    let mut response = request.await.map_err(|error| {
        let reason = match error {
            SendRequestError::Timeout => "timed out".to_owned(),
            other => format!("could not be sent: {other}"),
        };
        Failed {
            status: None,
            body: Bytes::new(),
            failure: DeliveryFailure::transient(reason, None),
        }
    })?;
    let status = response.status();
    let not_before = retry_after(response.headers());
    let body = response
        .body()
        .limit(ANSWER_LIMIT)
        .await
        .unwrap_or_default();
    if status.is_success() {
        return Ok(Answer { status, body });
    }
    let reason = format!(
        "HTTP {}: {}",
        status.as_u16(),
        String::from_utf8_lossy(&body[..body.len().min(REASON_LIMIT)])
    );
    let failure = if is_transient(status) {
        DeliveryFailure::transient(reason, not_before)
    } else {
        DeliveryFailure::permanent(reason)
    };
    Err(Failed {
        status: Some(status),
        body,
        failure,
    })
}

/// Whether an answer with `status` is worth another try: 408, 429 and 5xx.
pub fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// The pause an answer's `Retry-After` asks for, if it asks for one.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(retry_after_value)
}

/// A `Retry-After` value: delay-seconds or an HTTP date.
fn retry_after_value(value: &str) -> Option<Duration> {
    let value = value.trim();
    match value.parse::<u64>() {
        Ok(seconds) => Some(Duration::from_secs(seconds)),
        Err(_) => httpdate::parse_http_date(value)
            .ok()
            .map(|at| at.duration_since(SystemTime::now()).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both forms of `Retry-After` are understood; garbage is ignored.
    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after_value(" 7 "), Some(Duration::from_secs(7)));
        let in_a_minute = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(60));
        let pause = retry_after_value(&in_a_minute).expect("a date");
        assert!(
            pause > Duration::from_secs(55) && pause <= Duration::from_secs(60),
            "{pause:?}"
        );
        assert_eq!(
            retry_after_value("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after_value("soon"), None);
    }
}
