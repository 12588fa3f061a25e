//! Fetches media sources into the media store: `data:` URLs decoded, `http(s)` URLs downloaded
//! (inbound ones with the tenant's Infobip credentials, paced to its `media_rps`), streamed into
//! chunks with the size cap enforced as the bytes come, redirects followed and re-checked, and no
//! private address unless the tenant allows it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::http::StatusCode;
use awc::http::Uri;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures::future::{FutureExt, LocalBoxFuture};
use futures::StreamExt;
use imchannel_actors::media::{Fetcher, MediaMeta, MediaSource, MediaStore, CHUNK_BYTES};
use imchannel_actors::retry::RetryPolicy;
use log::info;

use super::pacer::Pacer;
use crate::config::{Secret, Settings};

/// How many redirects one fetch follows.
const MAX_REDIRECTS: usize = 5;
/// How many times a fetch is tried (on 429, 5xx, timeouts, connection errors).
const MAX_ATTEMPTS: u32 = 6;
/// The type of a source that declares none.
const DEFAULT_TYPE: &str = "application/octet-stream";

/// What a tenant allows its media fetches.
pub struct MediaRules {
    /// Hosts inbound media may come from: `infobip_base_url`'s and `media_hosts`.
    hosts: Vec<String>,
    /// Hosts that get the tenant's Infobip credentials: `infobip_base_url`'s.
    infobip_host: String,
    allow_private: bool,
    authorization: Secret,
    pacer: Pacer,
}

/// Every tenant's media rules, by tenant name.
pub type MediaRuleBook = HashMap<String, MediaRules>;

/// The media rules of every configured tenant.
pub fn rules(settings: &Settings) -> MediaRuleBook {
    settings
        .tenants
        .iter()
        .map(|(name, tenant)| {
            let infobip_host = host_of(&tenant.infobip_base_url).unwrap_or_default();
            let mut hosts = vec![infobip_host.clone()];
            hosts.extend(
                tenant
                    .media_hosts
                    .iter()
                    .map(|host| host.to_ascii_lowercase()),
            );
            let rules = MediaRules {
                hosts,
                infobip_host,
                allow_private: tenant.allow_private_media_hosts,
                authorization: tenant.infobip_authorization(),
                pacer: Pacer::new(tenant.media_rps),
            };
            (name.clone(), rules)
        })
        .collect()
}

fn host_of(url: &str) -> Option<String> {
    url.parse::<Uri>()
        .ok()?
        .host()
        .map(|host| host.trim_matches(['[', ']']).to_ascii_lowercase())
}

/// The fetcher of the media arbiter.
pub struct HttpFetcher {
    client: awc::Client,
    rules: Arc<MediaRuleBook>,
    store: Arc<dyn MediaStore>,
    max_bytes: u64,
    retry: RetryPolicy,
}

impl HttpFetcher {
    /// A fetcher writing into `store`, refusing items over `max_bytes`. Build it on the arbiter
    /// that uses it: `awc::Client` is not `Send`.
    pub fn new(
        timeout: Duration,
        rules: Arc<MediaRuleBook>,
        store: Arc<dyn MediaStore>,
        max_bytes: u64,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            client: awc::Client::builder()
                .timeout(timeout)
                .disable_redirects()
                .finish(),
            rules,
            store,
            max_bytes,
            retry,
        }
    }
}

/// Why one attempt failed: worth another try (not before a pause), or not.
enum Attempt {
    Retry(String, Option<Duration>),
    Fail(String),
}

impl Fetcher for HttpFetcher {
    fn fetch(
        &self,
        id: String,
        source: MediaSource,
    ) -> LocalBoxFuture<'static, Result<MediaMeta, String>> {
        let client = self.client.clone();
        let rules = self.rules.clone();
        let store = self.store.clone();
        let max_bytes = self.max_bytes;
        let retry = self.retry.clone();
        async move {
            let rules = rules
                .get(&source.tenant)
                .ok_or_else(|| format!("tenant {} is no longer configured", source.tenant))?;
            let writer = ChunkWriter { store, id: id.clone(), max_bytes };
            if let Some(data) = source.url.strip_prefix("data:") {
                return writer.write_data_url(data).await;
            }
            let mut failures = 0;
            loop {
                if source.inbound {
                    let wait = rules.pacer.reserve();
                    if !wait.is_zero() {
                        actix_web::rt::time::sleep(wait).await;
                    }
                }
                match download(&client, rules, &source, &writer).await {
                    Ok(meta) => {
                        info!("[IMCHANNEL] [media] {id} fetched: {} bytes of {}", meta.length, meta.content_type);
                        return Ok(meta);
                    }
                    Err(Attempt::Fail(reason)) => return Err(reason),
                    Err(Attempt::Retry(reason, not_before)) => {
                        failures += 1;
                        if failures >= MAX_ATTEMPTS {
                            return Err(format!("{reason} (after {failures} attempts)"));
                        }
                        let pause = retry.delay(failures, not_before);
                        info!("[IMCHANNEL] [media] {id} attempt {failures} failed: {reason}; retrying in {} ms", pause.as_millis());
                        actix_web::rt::time::sleep(pause).await;
                    }
                }
            }
        }
        .boxed_local()
    }
}

/// One download of `source`, redirects followed, into the store.
async fn download(
    client: &awc::Client,
    rules: &MediaRules,
    source: &MediaSource,
    writer: &ChunkWriter,
) -> Result<MediaMeta, Attempt> {
    let mut url = source.url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let uri: Uri = url
            .parse()
            .map_err(|_| Attempt::Fail(format!("not a URL: {url}")))?;
        let host = check_target(&uri, rules, source.inbound).await?;
        let mut request = client.get(&uri);
        if source.inbound && host == rules.infobip_host {
            request = request.insert_header((header::AUTHORIZATION, rules.authorization.expose()));
        }
        let mut response = request
            .send()
            .await
            .map_err(|error| Attempt::Retry(format!("could not be fetched: {error}"), None))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .ok_or_else(|| {
                    Attempt::Fail(format!("HTTP {} without a Location", status.as_u16()))
                })?;
            url = resolve(&uri, location);
            continue;
        }
        if !status.is_success() {
            let reason = format!("the source answered HTTP {}", status.as_u16());
            let not_before = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse().ok())
                .map(Duration::from_secs);
            let transient = status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::REQUEST_TIMEOUT
                || status.is_server_error();
            return Err(if transient {
                Attempt::Retry(reason, not_before)
            } else {
                Attempt::Fail(reason)
            });
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or(DEFAULT_TYPE)
            .to_owned();
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > writer.max_bytes) {
            return Err(Attempt::Fail(writer.too_large()));
        }
        return writer.write_stream(&mut response, content_type).await;
    }
    Err(Attempt::Fail(format!(
        "more than {MAX_REDIRECTS} redirects"
    )))
}

/// A `Location` made absolute against the URL that answered it.
fn resolve(base: &Uri, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map_or("", |authority| authority.as_str());
    if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |slash| slash + 1)];
        format!("{scheme}://{authority}{dir}{location}")
    }
}

/// Checks a fetch target against the tenant's rules; its host.
async fn check_target(uri: &Uri, rules: &MediaRules, inbound: bool) -> Result<String, Attempt> {
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(Attempt::Fail(format!(
            "refused {uri}: only http and https sources are fetched"
        )));
    }
    let host = uri
        .host()
        .map(|host| host.trim_matches(['[', ']']).to_ascii_lowercase())
        .unwrap_or_default();
    if inbound && !rules.hosts.contains(&host) {
        return Err(Attempt::Fail(format!(
            "refused host {host}: inbound media comes only from infobip_base_url's host or media_hosts"
        )));
    }
    if !rules.allow_private {
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let addresses = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|error| Attempt::Retry(format!("cannot resolve {host}: {error}"), None))?;
        for address in addresses {
            if is_private(address.ip()) {
                return Err(Attempt::Fail(format!(
                    "refused host {host}: it resolves to the private address {} (allow_private_media_hosts is off)",
                    address.ip()
                )));
            }
        }
    }
    Ok(host)
}

/// Loopback, private, link-local, unspecified and the like: addresses of this side of the network.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1])
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

/// Writes an item's bytes into the store in chunks, within the size cap.
struct ChunkWriter {
    store: Arc<dyn MediaStore>,
    id: String,
    max_bytes: u64,
}

impl ChunkWriter {
    fn too_large(&self) -> String {
        format!(
            "larger than store.media_max_bytes ({} bytes)",
            self.max_bytes
        )
    }

    /// Streams a response body into chunks; fails as soon as it passes the cap.
    async fn write_stream<S>(
        &self,
        body: &mut S,
        content_type: String,
    ) -> Result<MediaMeta, Attempt>
    where
        S: futures::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
    {
        let mut pending = BytesMut::with_capacity(CHUNK_BYTES);
        let (mut length, mut index) = (0u64, 0u64);
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|error| {
                Attempt::Retry(format!("the download broke off: {error}"), None)
            })?;
            length += piece.len() as u64;
            if length > self.max_bytes {
                return Err(Attempt::Fail(self.too_large()));
            }
            pending.extend_from_slice(&piece);
            while pending.len() >= CHUNK_BYTES {
                let chunk = pending.split_to(CHUNK_BYTES).freeze();
                self.put(index, chunk).await?;
                index += 1;
            }
        }
        if !pending.is_empty() {
            self.put(index, pending.freeze()).await?;
        }
        Ok(MediaMeta {
            content_type,
            length,
        })
    }

    /// Decodes `data:[<type>][;base64],<data>` (base64 only) into chunks.
    async fn write_data_url(&self, data: &str) -> Result<MediaMeta, String> {
        let (header, payload) = data.split_once(',').ok_or("a data: URL without a comma")?;
        let content_type = header
            .strip_suffix(";base64")
            .ok_or("a data: URL that is not base64")?;
        let bytes = STANDARD
            .decode(payload.trim())
            .map_err(|error| format!("a data: URL with bad base64: {error}"))?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(self.too_large());
        }
        let bytes = Bytes::from(bytes);
        for (index, start) in (0..bytes.len()).step_by(CHUNK_BYTES).enumerate() {
            let end = (start + CHUNK_BYTES).min(bytes.len());
            self.put(index as u64, bytes.slice(start..end))
                .await
                .map_err(|attempt| match attempt {
                    Attempt::Retry(reason, _) | Attempt::Fail(reason) => reason,
                })?;
        }
        let content_type = if content_type.is_empty() {
            DEFAULT_TYPE
        } else {
            content_type
        };
        Ok(MediaMeta {
            content_type: content_type.to_owned(),
            length: bytes.len() as u64,
        })
    }

    async fn put(&self, index: u64, chunk: Bytes) -> Result<(), Attempt> {
        self.store
            .put_chunk(self.id.clone(), index, chunk)
            .await
            .map_err(|error| Attempt::Fail(format!("the store did not take it: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Addresses of this side of the network are private; public ones are not.
    #[test]
    fn private_addresses_are_recognised() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(
                is_private(private.parse().expect("an address")),
                "{private} is private"
            );
        }
        for public in ["8.8.8.8", "2001:4860:4860::8888", "100.128.0.1"] {
            assert!(
                !is_private(public.parse().expect("an address")),
                "{public} is public"
            );
        }
    }

    /// Relative redirects resolve against the URL that answered.
    #[test]
    fn redirects_resolve() {
        let base: Uri = "http://a.example:8080/media/one?x=1"
            .parse()
            .expect("a URL");
        assert_eq!(resolve(&base, "/two"), "http://a.example:8080/two");
        assert_eq!(resolve(&base, "three"), "http://a.example:8080/media/three");
        assert_eq!(
            resolve(&base, "https://b.example/four"),
            "https://b.example/four"
        );
    }
}
