//! Fetches media sources into the media store: `data:` URLs decoded, `http(s)` URLs downloaded
//! (inbound ones with the tenant's Infobip credentials, paced to its `media_rps`), streamed into
//! chunks with the size cap enforced as the bytes come, redirects followed and re-checked, and no
//! private address unless the tenant allows it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_tls::connect::{Connector as TcpConnector, Resolve, Resolver};
use actix_web::http::header;
use actix_web::rt::time::{sleep, timeout};
use awc::http::Uri;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures::future::{FutureExt, LocalBoxFuture};
use futures::StreamExt;
use imchannel_actors::media::{
    FetchError, Fetcher, MediaMeta, MediaSource, MediaStore, CHUNK_BYTES, FETCH_LEASE,
};
use imchannel_actors::retry::RetryPolicy;
use log::info;

use super::exchange::{is_transient, retry_after};
use super::loggable_url;
use super::pacer::Pacer;
use crate::config::{Secret, Settings};
use crate::store::SharedPace;

/// How many redirects one fetch follows.
const MAX_REDIRECTS: usize = 5;
/// How many times one fetch tries (on 429, 5xx, timeouts, connection errors) before it leaves the
/// item pending for the next to ask.
const MAX_ATTEMPTS: u32 = 6;
/// The longest one download attempt may take, however steadily the bytes come (100 MiB, the
/// largest item, in that time is under 1 MB/s).
const ATTEMPT_LIMIT: Duration = Duration::from_secs(120);
/// How long before its claim lapses a fetch gives up (leaving the item pending), so that two
/// instances never fetch one item at once.
const LEASE_MARGIN: Duration = Duration::from_secs(60);
/// The type of a source that declares none.
const DEFAULT_TYPE: &str = "application/octet-stream";

/// Scheme, host and port of a URL: what must match before credentials go along.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn of(uri: &Uri) -> Option<Self> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let host = uri.host()?.trim_matches(['[', ']']).to_ascii_lowercase();
        Some(Self { scheme, host, port })
    }
}

/// What a tenant allows its media fetches.
pub struct MediaRules {
    /// Hosts inbound media may come from: `infobip_base_url`'s and `media_hosts`.
    hosts: Vec<String>,
    /// Where the tenant's Infobip credentials may go: `infobip_base_url`'s origin.
    infobip: Option<Origin>,
    allow_private: bool,
    authorization: Secret,
    pacer: Pacer,
}

/// Every tenant's media rules, by tenant name.
pub type MediaRuleBook = HashMap<String, MediaRules>;

/// The media rules of every configured tenant, downloads paced across instances with `pace`.
pub fn rules(settings: &Settings, pace: Option<Arc<dyn SharedPace>>) -> MediaRuleBook {
    settings
        .tenants
        .iter()
        .map(|(name, tenant)| {
            let infobip = tenant
                .infobip_base_url
                .parse::<Uri>()
                .ok()
                .and_then(|uri| Origin::of(&uri));
            let mut hosts: Vec<String> = infobip.iter().map(|origin| origin.host.clone()).collect();
            hosts.extend(
                tenant
                    .media_hosts
                    .iter()
                    .map(|host| host.to_ascii_lowercase()),
            );
            let rules = MediaRules {
                hosts,
                infobip,
                allow_private: tenant.allow_private_media_hosts,
                authorization: tenant.infobip_authorization(),
                pacer: Pacer::new(
                    tenant.media_rps,
                    pace.clone().map(|pace| (pace, format!("media:{name}"))),
                ),
            };
            (name.clone(), rules)
        })
        .collect()
}

/// The fetcher of the media arbiter.
pub struct HttpFetcher {
    /// For tenants that allow private media hosts.
    client: awc::Client,
    /// For the others: its resolver refuses private addresses when it connects, so a name
    /// checked public cannot turn private for the connection (DNS rebinding).
    public_only: awc::Client,
    /// How long a download may go without a byte.
    idle: Duration,
    rules: Arc<MediaRuleBook>,
    store: Arc<dyn MediaStore>,
    max_bytes: u64,
    retry: RetryPolicy,
}

impl HttpFetcher {
    /// A fetcher writing into `store`, refusing items over `max_bytes`, giving up an attempt
    /// after `timeout` without an answer or a byte. Build it on the arbiter that uses it:
    /// `awc::Client` is not `Send`.
    pub fn new(
        timeout: Duration,
        rules: Arc<MediaRuleBook>,
        store: Arc<dyn MediaStore>,
        max_bytes: u64,
        retry: RetryPolicy,
    ) -> Self {
        let public_only = awc::Connector::new()
            .connector(TcpConnector::new(Resolver::custom(PublicOnly)).service());
        Self {
            public_only: awc::Client::builder()
                .connector(public_only)
                .timeout(timeout)
                .disable_redirects()
                .finish(),
            client: awc::Client::builder()
                .timeout(timeout)
                .disable_redirects()
                .finish(),
            idle: timeout,
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
    ) -> LocalBoxFuture<'static, Result<MediaMeta, FetchError>> {
        let (client, public_only) = (self.client.clone(), self.public_only.clone());
        let rules = self.rules.clone();
        let writer = ChunkWriter {
            store: self.store.clone(),
            id: id.clone(),
            max_bytes: self.max_bytes,
            idle: self.idle,
        };
        let retry = self.retry.clone();
        async move {
            let rules = rules
                .get(&source.tenant)
                .ok_or_else(|| FetchError::Failed(format!("tenant {} is no longer configured", source.tenant)))?;
            if let Some(data) = source.url.strip_prefix("data:") {
                return writer.write_data_url(data).await;
            }
            let client = if rules.allow_private { client } else { public_only };
            let mut failures = 0;
            // The whole fetch ends within its claim, so no other instance starts it meanwhile.
            let deadline = Instant::now() + FETCH_LEASE.saturating_sub(LEASE_MARGIN);
            loop {
                if source.inbound {
                    rules.pacer.wait().await;
                }
                let limit = ATTEMPT_LIMIT.min(deadline.saturating_duration_since(Instant::now()));
                let attempt = timeout(limit, download(&client, rules, &source, &writer))
                    .await
                    .unwrap_or_else(|_| Err(Attempt::Retry(format!("took longer than {limit:?}"), None)));
                match attempt {
                    Ok(meta) => {
                        info!("[IMCHANNEL] [media] {id} fetched: {} bytes of {}", meta.length, meta.content_type);
                        return Ok(meta);
                    }
                    Err(Attempt::Fail(reason)) => return Err(FetchError::Failed(reason)),
                    Err(Attempt::Retry(reason, not_before)) => {
                        failures += 1;
                        if failures >= MAX_ATTEMPTS {
                            return Err(FetchError::Unavailable(format!("{reason} ({failures} attempts)")));
                        }
                        let pause = retry.delay(failures, not_before);
                        if Instant::now() + pause >= deadline {
                            return Err(FetchError::Unavailable(format!("{reason} (out of time for this fetch)")));
                        }
                        info!(
                            "[IMCHANNEL] [media] {id} attempt {failures} failed: {reason}; retrying in {} ms",
                            pause.as_millis()
                        );
                        sleep(pause).await;
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
            .map_err(|_| Attempt::Fail(format!("not a URL: {}", loggable_url(&url))))?;
        check_target(&uri, rules, source.inbound).await?;
        // Compressed answers are refused: the size cap must hold for the bytes as they come.
        let mut request = client
            .get(&uri)
            .no_decompress()
            .insert_header((header::ACCEPT_ENCODING, "identity"));
        if source.inbound
            && Origin::of(&uri).is_some_and(|origin| Some(&origin) == rules.infobip.as_ref())
        {
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
            let not_before = retry_after(response.headers());
            return Err(if is_transient(status) {
                Attempt::Retry(reason, not_before)
            } else {
                Attempt::Fail(reason)
            });
        }
        let encoding = response
            .headers()
            .get(header::CONTENT_ENCODING)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("identity");
        if !encoding.eq_ignore_ascii_case("identity") {
            return Err(Attempt::Fail(format!(
                "the source sent it {encoding}-encoded, asked for identity"
            )));
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
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map_or("", |authority| authority.as_str());
    if location.contains("://") {
        location.to_owned()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else if location.starts_with('?') {
        format!("{scheme}://{authority}{}{location}", base.path())
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |slash| slash + 1)];
        format!("{scheme}://{authority}{dir}{location}")
    }
}

/// Checks a fetch target against the tenant's rules.
async fn check_target(uri: &Uri, rules: &MediaRules, inbound: bool) -> Result<(), Attempt> {
    let origin = Origin::of(uri)
        .filter(|origin| origin.scheme == "http" || origin.scheme == "https")
        .ok_or_else(|| {
            Attempt::Fail(format!(
                "refused {}: only http and https sources are fetched",
                loggable_url(&uri.to_string())
            ))
        })?;
    let host = &origin.host;
    if inbound && !rules.hosts.contains(host) {
        return Err(Attempt::Fail(format!(
            "refused host {host}: inbound media comes only from infobip_base_url's host or media_hosts"
        )));
    }
    if !rules.allow_private {
        let addresses = tokio::net::lookup_host((host.as_str(), origin.port))
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
    Ok(())
}

/// Resolves host names for downloads, refusing any that resolves to a private address.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn std::error::Error>>> {
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
            if let Some(private) = addresses.iter().find(|address| is_private(address.ip())) {
                return Err(
                    format!("{host} resolves to the private address {}", private.ip()).into(),
                );
            }
            Ok(addresses)
        })
    }
}

/// Whether an address is not on the public internet: loopback, private, link-local, shared,
/// reserved, multicast, unspecified, and IPv6 forms that embed such an IPv4 address.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_multicast()
        || v4.is_broadcast()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || (a == 192 && b == 0 && c == 0)
}

fn is_private_v6(v6: Ipv6Addr) -> bool {
    let segments = v6.segments();
    let embedded = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    v6.is_loopback()
        || v6.is_unspecified()
        || v6.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00
        || (segments[0] & 0xffc0) == 0xfe80
        // IPv4-mapped and IPv4-compatible (::a.b.c.d).
        || v6.to_ipv4().is_some_and(is_private_v4)
        // NAT64 (64:ff9b::/96 and 64:ff9b:1::/48) carries the address in the last 32 bits.
        || (segments[0] == 0x64 && (segments[1] == 0xff9b) && is_private_v4(embedded(segments[6], segments[7])))
        // 6to4 (2002::/16) carries it in bits 16 to 48.
        || (segments[0] == 0x2002 && is_private_v4(embedded(segments[1], segments[2])))
}

/// Writes an item's bytes into the store in chunks, within the size cap.
struct ChunkWriter {
    store: Arc<dyn MediaStore>,
    id: String,
    max_bytes: u64,
    idle: Duration,
}

impl ChunkWriter {
    fn too_large(&self) -> String {
        format!(
            "larger than store.media_max_bytes ({} bytes)",
            self.max_bytes
        )
    }

    /// Streams a response body into chunks; fails as soon as it passes the cap, and retries
    /// when no byte comes for the idle time.
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
        loop {
            let piece = timeout(self.idle, body.next())
                .await
                .map_err(|_| Attempt::Retry(format!("no byte came for {:?}", self.idle), None))?;
            let Some(piece) = piece else {
                break;
            };
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
    async fn write_data_url(&self, data: &str) -> Result<MediaMeta, FetchError> {
        let failed = |reason: &str| FetchError::Failed(reason.to_owned());
        let (header, payload) = data
            .split_once(',')
            .ok_or_else(|| failed("a data: URL without a comma"))?;
        let content_type = header
            .strip_suffix(";base64")
            .ok_or_else(|| failed("a data: URL that is not base64"))?;
        let bytes = STANDARD
            .decode(payload.trim())
            .map_err(|error| FetchError::Failed(format!("a data: URL with bad base64: {error}")))?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(FetchError::Failed(self.too_large()));
        }
        let bytes = Bytes::from(bytes);
        for (index, start) in (0..bytes.len()).step_by(CHUNK_BYTES).enumerate() {
            let end = (start + CHUNK_BYTES).min(bytes.len());
            self.put(index as u64, bytes.slice(start..end))
                .await
                .map_err(|attempt| match attempt {
                    Attempt::Retry(reason, _) => FetchError::Unavailable(reason),
                    Attempt::Fail(reason) => FetchError::Failed(reason),
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

    /// Stores one chunk; a store that does not take it is a reason to try later, not to fail.
    async fn put(&self, index: u64, chunk: Bytes) -> Result<(), Attempt> {
        self.store
            .put_chunk(self.id.clone(), index, chunk)
            .await
            .map_err(|error| Attempt::Retry(format!("the store did not take it: {error}"), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Addresses of this side of the network are private, in every form; public ones are not.
    #[test]
    fn private_addresses_are_recognised() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "198.18.0.1",
            "192.0.0.8",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::10.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b:1::a00:1",
            "2002:a00:1::",
        ] {
            assert!(
                is_private(private.parse().expect("an address")),
                "{private} is private"
            );
        }
        for public in [
            "8.8.8.8",
            "2001:4860:4860::8888",
            "100.128.0.1",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            assert!(
                !is_private(public.parse().expect("an address")),
                "{public} is public"
            );
        }
    }

    /// The downloads' resolver refuses names of private addresses when it connects.
    #[actix_web::test]
    async fn the_public_resolver_refuses_private_names() {
        let refused = PublicOnly
            .lookup("localhost", 80)
            .await
            .expect_err("localhost is private");
        assert!(refused.to_string().contains("private address"), "{refused}");
    }

    /// Redirects resolve against the URL that answered, in every form a Location takes.
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
        assert_eq!(resolve(&base, "//c.example/five"), "http://c.example/five");
        assert_eq!(
            resolve(&base, "?y=2"),
            "http://a.example:8080/media/one?y=2"
        );
    }
}
