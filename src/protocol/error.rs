//! Infobip's error shape, which every error answer of imchannel carries.

use serde::Serialize;

/// `{"requestError":{"serviceException":{"messageId":..,"text":..}}}`
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody<'a> {
    request_error: RequestError<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestError<'a> {
    service_exception: ServiceException<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceException<'a> {
    message_id: &'a str,
    text: &'a str,
}

impl<'a> ErrorBody<'a> {
    /// An error with a stable code (`BAD_REQUEST`, `UNAUTHORIZED`, ...) and a text for people.
    pub fn new(code: &'a str, text: &'a str) -> Self {
        Self {
            request_error: RequestError {
                service_exception: ServiceException {
                    message_id: code,
                    text,
                },
            },
        }
    }
}
