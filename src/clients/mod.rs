//! The [`Sink`](imchannel_actors::ports::Sink) implementations: where accepted work goes.

pub mod ctlive;
mod exchange;
pub mod host;
pub mod infobip;
pub mod media_fetch;
mod pacer;

use awc::http::Uri;

/// A URL as it may appear in a log line: without any `user:password@`.
pub fn loggable_url(url: &str) -> String {
    match url.parse::<Uri>() {
        Ok(uri) if uri.authority().is_some_and(|a| a.as_str().contains('@')) => {
            let authority = uri.authority().map_or("", |a| a.as_str());
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!(
                "{}://{}{}",
                uri.scheme_str().unwrap_or("http"),
                host,
                uri.path_and_query().map_or("", |p| p.as_str())
            )
        }
        Ok(_) => url.to_owned(),
        Err(_) => "<unparsable url>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::loggable_url;

    /// Credentials in a URL never reach the log.
    #[test]
    fn loggable_url_drops_credentials() {
        assert_eq!(
            loggable_url("http://u:p4ss@host:9/x?y=1"),
            "http://host:9/x?y=1"
        );
        assert_eq!(loggable_url("http://host/x"), "http://host/x");
    }
}
