//! Basic authentication of the callers (Infobip on webhooks, CTLive on sends).

use actix_web::http::header;
use actix_web::HttpRequest;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::error::ApiError;
use crate::config::Secret;

/// The Basic credentials a caller must present: `user:password`, or none when both are empty.
pub struct BasicCredentials {
    expected: Option<Secret>,
}

impl BasicCredentials {
    /// The pair a tenant configured.
    pub fn new(user: &str, password: &Secret) -> Self {
        let none = user.is_empty() && password.is_empty();
        Self {
            expected: (!none)
                .then(|| Secret::from(format!("{user}:{}", password.expose()).as_str())),
        }
    }

    /// Whether `req` presents these credentials.
    pub fn check(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let Some(expected) = &self.expected else {
            return Ok(());
        };
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .and_then(|(_, encoded)| STANDARD.decode(encoded.trim()).ok())
            .ok_or(ApiError::Unauthorized)?;
        if constant_time_eq(&presented, expected.expose().as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// Compares without an early exit, so the time taken does not tell how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
