//! Every error answer: a status per variant, a body in Infobip's error shape, the cause in the log.

use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use imchannel_actors::intake::IntakeError;
use imchannel_actors::ports::StoreError;
use imchannel_actors::registry::Refusal;
use log::warn;

use crate::protocol::error::ErrorBody;

/// How long a refused client is asked to wait before trying again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not what the route takes.
    #[error("{0}")]
    BadRequest(String),
    /// Credentials missing or wrong.
    #[error("missing or wrong credentials")]
    Unauthorized,
    /// No tenant of that name, or no such route.
    #[error("{0}")]
    NotFound(String),
    /// The body is larger than `server.max_body_bytes`.
    #[error("the body is larger than {limit} bytes (server.max_body_bytes)")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// A bound is reached: the caller (Infobip) should retry later.
    #[error("{0}; retry later")]
    Overloaded(String),
    /// A bound is reached: the caller (CTLive) should slow down and retry later.
    #[error("{0}; retry later")]
    TooManyRequests(String),
    /// The store did not answer: the caller should retry later.
    #[error("the store is unavailable; retry later")]
    StoreUnavailable,
    /// What imchannel had to fetch could not be fetched.
    #[error("{0}")]
    BadGateway(String),
    /// The gateway is shutting down: the caller should retry (elsewhere, or later).
    #[error("the gateway is stopping; retry later")]
    Stopping,
}

impl From<IntakeError> for ApiError {
    fn from(error: IntakeError) -> Self {
        match error {
            IntakeError::Refused(Refusal::Overloaded(reason)) => Self::Overloaded(reason),
            IntakeError::Refused(Refusal::Stopped) => Self::Stopping,
            IntakeError::Store(cause) => Self::store(cause),
        }
    }
}

impl ApiError {
    /// A store failure: logged with its cause, answered without it.
    pub fn store(cause: StoreError) -> Self {
        warn!("[IMCHANNEL] [store] {cause}");
        Self::StoreUnavailable
    }

    /// The answer to a send that was not taken: a full conversation is CTLive's to slow down
    /// for (429), a store outage is not (503).
    pub fn on_send(error: IntakeError) -> Self {
        match Self::from(error) {
            Self::Overloaded(reason) => Self::TooManyRequests(reason),
            other => other,
        }
    }

    /// The stable code of the error body's `messageId`.
    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "BAD_REQUEST",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::NotFound(_) => "NOT_FOUND",
            Self::TooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Self::Overloaded(_) | Self::StoreUnavailable | Self::Stopping => "SERVICE_UNAVAILABLE",
            Self::TooManyRequests(_) => "TOO_MANY_REQUESTS",
            Self::BadGateway(_) => "BAD_GATEWAY",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Overloaded(_) | Self::StoreUnavailable | Self::Stopping => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let text = self.to_string();
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::Unauthorized => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"imchannel\""),
                ));
            }
            Self::Overloaded(_)
            | Self::StoreUnavailable
            | Self::Stopping
            | Self::TooManyRequests(_) => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER.as_secs()));
            }
            _ => {}
        }
        response.json(ErrorBody::new(self.code(), &text))
    }
}

/// The answer to a path no route takes.
pub async fn not_found() -> HttpResponse {
    ApiError::NotFound("no such route".into()).error_response()
}
