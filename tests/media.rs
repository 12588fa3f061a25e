//! Media in both directions: Infobip's two-step HEAD/GET of outbound media served from the cache
//! (the source fetched once), CTLive's GET of inbound media downloaded once however many ask, and
//! the guard rails of fetching.

mod support;

use std::time::Duration;

use awc::http::header::HeaderMap;
use awc::http::{Method, StatusCode};
use bytes::Bytes;
use futures::future::join_all;
use serde_json::{json, Value};
use support::app::{with_infobip, StoreKind, TestGateway, DEFAULT_INFOBIP_KEY};
use support::fixtures::batch;
use support::omni_schema::assert_valid_omni;
use support::poll::{eventually, stays, PATIENCE};
use support::standin::{Reply, StandIn};

/// `n` bytes that are not all alike.
fn noise(n: usize) -> Bytes {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// A request to the gateway: status, headers, body.
async fn fetch(method: Method, url: &str, range: Option<&str>) -> (StatusCode, HeaderMap, Bytes) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let mut request = client.request(method, url);
    if let Some(range) = range {
        request = request.insert_header(("Range", range));
    }
    let mut response = request.send().await.expect("the gateway answers");
    let body = response.body().limit(64 << 20).await.expect("a body");
    (response.status(), response.headers().clone(), body)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

struct Setup {
    ctlive: StandIn,
    infobip: StandIn,
    app: TestGateway,
}

async fn setup(store: StoreKind, tweak: impl FnOnce(&mut imchannel::config::Settings)) -> Setup {
    let (ctlive, infobip) = (StandIn::start(), StandIn::start());
    let app = TestGateway::spawn(store, &ctlive, |settings| {
        with_infobip(settings, &infobip);
        tweak(settings);
    })
    .await;
    Setup {
        ctlive,
        infobip,
        app,
    }
}

/// Sends `whatsapp` to one customer and returns the body Infobip received.
async fn send_and_receive(setup: &Setup, message_id: &str, whatsapp: Value) -> Value {
    let send = json!({"destinations": [{"to": {"phoneNumber": "41790101010"}, "messageId": message_id}], "whatsApp": whatsapp});
    let (status, answer) = setup.app.send(&send).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    eventually("the send at Infobip", PATIENCE, || {
        setup
            .infobip
            .taken()
            .into_iter()
            .find(|body| body["destinations"][0]["messageId"] == message_id)
    })
    .await
}

/// Posts an inbound `kind` message of `message_id` whose media is at `path` on the Infobip
/// stand-in (tenant `tenant`), and returns the link CTLive got in its place.
async fn post_inbound(
    setup: &Setup,
    tenant: &str,
    message_id: &str,
    kind: &str,
    url: &str,
) -> String {
    let event = json!({"from": "385910000001", "to": "1", "messageId": message_id, "message": {"type": kind, "url": url}});
    let credentials = if tenant == "acme" {
        support::app::ACME_WEBHOOK
    } else {
        support::app::DEFAULT_WEBHOOK
    };
    let path = format!("/{tenant}/imchannel/message");
    let (status, answer) = setup
        .app
        .post(&path, batch(vec![event]).to_string(), Some(credentials))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let forwarded = eventually("the event at CTLive", PATIENCE, || {
        setup
            .ctlive
            .taken_events()
            .into_iter()
            .find(|event| event["messageId"] == message_id)
    })
    .await;
    forwarded["message"]["url"]
        .as_str()
        .expect("a link")
        .to_owned()
}

/// GETs all `urls` at once while `source` holds the download back, and releases it once the GETs
/// had time to arrive and wait for it; their answers.
async fn get_while_held(
    source: &StandIn,
    urls: Vec<String>,
) -> Vec<(StatusCode, HeaderMap, Bytes)> {
    let gets = join_all(urls.iter().map(|url| fetch(Method::GET, url, None)));
    let release = async {
        stays(
            "the download held while the GETs arrive",
            Duration::from_millis(300),
            || source.held() == 1,
        )
        .await;
        source.release_held();
    };
    futures::join!(gets, release).0
}

/// An image send: Infobip gets imchannel's link; HEAD answers type, length and ETag without a
/// body, GET and GET again the exact bytes; the source was fetched exactly once.
async fn infobip_fetches_outbound_media_in_two_steps(store: StoreKind) {
    let setup = setup(store, |_| {}).await;
    let origin = StandIn::start();
    let image = noise(3000);
    origin.put_file("/logo.png", "image/png", image.clone());
    let body = send_and_receive(
        &setup,
        "media-image",
        json!({"text": "look", "imageUrl": origin.url("/logo.png")}),
    )
    .await;
    assert_valid_omni(&body);
    let link = body["whatsApp"]["imageUrl"]
        .as_str()
        .expect("a link")
        .to_owned();
    assert!(
        link.starts_with(&format!(
            "{}/default/imchannel/getImageMessage/",
            setup.app.address
        )),
        "{link}"
    );
    let (status, headers, empty) = fetch(Method::HEAD, &link, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-type"), "image/png");
    assert_eq!(header(&headers, "content-length"), "3000");
    assert!(!header(&headers, "etag").is_empty(), "an ETag");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    assert!(empty.is_empty(), "HEAD has no body");
    for _ in 0..2 {
        let (status, headers, bytes) = fetch(Method::GET, &link, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&headers, "content-type"), "image/png");
        assert!(bytes == image, "GET returns the source's bytes");
    }
    assert_eq!(origin.hits("/logo.png"), 1, "the source was fetched once");
}

/// A 20 MiB document comes back byte for byte, and ranges of it as asked.
async fn a_large_document_is_served_whole_and_in_ranges(store: StoreKind) {
    let setup = setup(store, |_| {}).await;
    let origin = StandIn::start();
    let document = noise(20 << 20);
    origin.put_file("/big.pdf", "application/pdf", document.clone());
    let body = send_and_receive(
        &setup,
        "media-document",
        json!({"text": "big.pdf", "fileUrl": origin.url("/big.pdf")}),
    )
    .await;
    let link = body["whatsApp"]["fileUrl"]
        .as_str()
        .expect("a link")
        .to_owned();
    assert!(link.contains("/getDocumentMessage/"), "{link}");
    let (status, headers, bytes) = fetch(Method::GET, &link, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-length"), (20 << 20).to_string());
    assert!(bytes == document, "20 MiB identical");
    let last = document.len() as u64 - 1;
    for (range, expected, content_range) in [
        (
            "bytes=100-199",
            document.slice(100..200),
            format!("bytes 100-199/{}", document.len()),
        ),
        (
            "bytes=-10",
            document.slice(document.len() - 10..),
            format!("bytes {}-{last}/{}", last - 9, document.len()),
        ),
        (
            "bytes=262140-262150",
            document.slice(262_140..262_151),
            format!("bytes 262140-262150/{}", document.len()),
        ),
    ] {
        let (status, headers, bytes) = fetch(Method::GET, &link, Some(range)).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(header(&headers, "content-range"), content_range, "{range}");
        assert!(bytes == expected, "{range}: the bytes asked for");
    }
    let whole = fetch(Method::GET, &link, Some("bytes=0-18446744073709551615")).await;
    assert_eq!(
        whole.0,
        StatusCode::PARTIAL_CONTENT,
        "a last byte past the end means the end"
    );
    assert!(whole.2 == document);
    for unsatisfiable in [format!("bytes={}-", document.len()), "bytes=-0".to_owned()] {
        let (status, headers, body) = fetch(Method::GET, &link, Some(&unsatisfiable)).await;
        assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE, "{unsatisfiable}");
        assert_eq!(
            header(&headers, "content-range"),
            format!("bytes */{}", document.len())
        );
        assert!(
            String::from_utf8_lossy(&body).contains("RANGE_NOT_SATISFIABLE"),
            "a JSON error"
        );
    }
    assert_eq!(origin.hits("/big.pdf"), 1);
}

/// A `data:` URL is decoded into the cache, served with its own type.
async fn a_data_url_is_served_with_its_type(store: StoreKind) {
    use base64::Engine;
    let setup = setup(store, |_| {}).await;
    let audio = noise(777);
    let data = format!(
        "data:audio/ogg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&audio)
    );
    let body = send_and_receive(
        &setup,
        "media-data",
        json!({"text": "listen", "audioUrl": data}),
    )
    .await;
    let link = body["whatsApp"]["audioUrl"]
        .as_str()
        .expect("a link")
        .to_owned();
    assert!(link.contains("/getAudioMessage/"), "{link}");
    let (status, headers, bytes) = fetch(Method::GET, &link, None).await;
    assert_eq!(
        (status, header(&headers, "content-type")),
        (StatusCode::OK, "audio/ogg")
    );
    assert!(bytes == audio);
}

/// A source that cannot be fetched makes the send fail for good: CTLive gets a `REJECTED` report
/// saying why, and Infobip never hears of it.
async fn an_unfetchable_source_rejects_the_send(store: StoreKind) {
    let setup = setup(store, |_| {}).await;
    let origin = StandIn::start();
    origin.reply_next([Reply::Status(404)]);
    let send = json!({"destinations": [{"to": {"phoneNumber": "41790202020"}, "messageId": "media-missing"}], "whatsApp": {"text": "x", "videoUrl": origin.url("/gone.mp4")}});
    assert_eq!(setup.app.send(&send).await.0, StatusCode::OK);
    let report = eventually("the REJECTED report", PATIENCE, || {
        setup.ctlive.taken_events().first().cloned()
    })
    .await;
    assert_eq!(report["messageId"], "media-missing");
    assert_eq!(report["status"]["groupName"], "REJECTED");
    let reason = report["error"]["description"].as_str().unwrap_or_default();
    assert!(reason.contains("HTTP 404"), "{reason}");
    assert!(setup.infobip.received().is_empty());
}

/// Unknown ids are 404; ids expire after `store.media_ttl_secs`.
async fn unknown_and_expired_ids_are_404(store: StoreKind) {
    let setup = setup(store, |s| s.store.media_ttl_secs = 3).await;
    let origin = StandIn::start();
    origin.put_file("/short.png", "image/png", noise(10));
    let body = send_and_receive(
        &setup,
        "media-short",
        json!({"text": "x", "imageUrl": origin.url("/short.png")}),
    )
    .await;
    let link = body["whatsApp"]["imageUrl"]
        .as_str()
        .expect("a link")
        .to_owned();
    assert_eq!(fetch(Method::GET, &link, None).await.0, StatusCode::OK);
    let unknown = format!(
        "{}/default/imchannel/getImageMessage/{}",
        setup.app.address,
        uuid::Uuid::new_v4()
    );
    let (status, _, body) = fetch(Method::GET, &unknown, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("NOT_FOUND"));
    let mut expired = false;
    let until = std::time::Instant::now() + PATIENCE;
    let mut tick = actix_web::rt::time::interval(Duration::from_millis(100));
    while !expired && std::time::Instant::now() < until {
        tick.tick().await;
        expired = fetch(Method::GET, &link, None).await.0 == StatusCode::NOT_FOUND;
    }
    assert!(expired, "the id expired after media_ttl_secs");
}

/// An inbound image is forwarded at once with imchannel's link; CTLive's GET gets the exact bytes,
/// downloaded with the tenant's Infobip credentials.
async fn inbound_media_is_linked_and_downloaded_once(store: StoreKind) {
    let setup = setup(store, |_| {}).await;
    let image = noise(5000);
    setup.infobip.put_file(
        "/default/whatsapp/1/senders/447796344125/media/abc",
        "image/jpeg",
        image.clone(),
    );
    let event = json!({
        "from": "385919998888", "to": "447796344125", "integrationType": "WHATSAPP",
        "receivedAt": "2018-09-10T11:27:17.980+0000", "messageId": "inbound-image",
        "message": {"type": "IMAGE", "caption": "Image Caption", "url": setup.infobip.url("/default/whatsapp/1/senders/447796344125/media/abc")}
    });
    assert_eq!(
        setup.app.webhook(&batch(vec![event.clone()])).await.0,
        StatusCode::OK
    );
    let forwarded = eventually("the event at CTLive", PATIENCE, || {
        setup.ctlive.taken_events().first().cloned()
    })
    .await;
    let link = forwarded["message"]["url"]
        .as_str()
        .expect("a link")
        .to_owned();
    assert!(
        link.starts_with(&format!("{}/default/imchannel/media/", setup.app.address)),
        "{link}"
    );
    let mut expected = event;
    expected["message"]["url"] = json!(link);
    assert_eq!(forwarded, expected, "every field intact but the url");
    let (status, headers, bytes) = fetch(Method::GET, &link, None).await;
    assert_eq!(
        (status, header(&headers, "content-type")),
        (StatusCode::OK, "image/jpeg")
    );
    assert!(bytes == image);
    let downloads: Vec<_> = setup
        .infobip
        .received()
        .into_iter()
        .filter(|r| r.path.contains("/media/abc"))
        .collect();
    assert_eq!(downloads.len(), 1, "downloaded once");
    assert_eq!(
        downloads[0].authorization.as_deref(),
        Some(format!("App {DEFAULT_INFOBIP_KEY}").as_str())
    );
}

/// Fifty GETs of a fresh inbound item, all at once while its download is held up, get the same
/// bytes from one download.
async fn concurrent_gets_share_one_download(store: StoreKind) {
    let setup = setup(store, |_| {}).await;
    let voice = noise(300_000);
    setup
        .infobip
        .put_file("/default/media/voice", "audio/ogg", voice.clone());
    setup.infobip.reply_next([Reply::Hold]);
    let voice_url = setup.infobip.url("/default/media/voice");
    let link = post_inbound(&setup, "default", "inbound-voice", "VOICE", &voice_url).await;
    eventually("the download held", PATIENCE, || {
        (setup.infobip.held() == 1).then_some(())
    })
    .await;
    let answers = get_while_held(&setup.infobip, vec![link; 50]).await;
    for (status, _, bytes) in answers {
        assert_eq!(status, StatusCode::OK);
        assert!(bytes == voice);
    }
    assert_eq!(
        setup.infobip.hits("/default/media/voice"),
        1,
        "one download for fifty GETs"
    );
}

/// A throttled download (429) is tried again, not lost.
async fn a_throttled_download_is_retried(store: StoreKind) {
    let setup = setup(store, |_| {}).await;
    let sticker = noise(64);
    setup
        .infobip
        .put_file("/default/media/sticker", "image/webp", sticker.clone());
    setup
        .infobip
        .reply_next([Reply::TooManyRequests { retry_after: 0 }]);
    let sticker_url = setup.infobip.url("/default/media/sticker");
    let link = post_inbound(
        &setup,
        "default",
        "inbound-sticker",
        "STICKER",
        &sticker_url,
    )
    .await;
    let (status, _, bytes) = fetch(Method::GET, &link, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(bytes == sticker);
    assert_eq!(
        setup.infobip.hits("/default/media/sticker"),
        2,
        "one 429, one download"
    );
}

/// A source that keeps throttling past one fetch's tries leaves the item pending, not failed: the
/// send waits and goes once the source serves it, and is not reported `REJECTED`.
async fn a_source_throttling_for_long_delays_the_send_without_losing_it(store: StoreKind) {
    let setup = setup(store, |_| {}).await;
    let origin = StandIn::start();
    let image = noise(100);
    origin.put_file("/busy.png", "image/png", image.clone());
    origin.reply_next(vec![Reply::TooManyRequests { retry_after: 0 }; 8]);
    let body = send_and_receive(
        &setup,
        "media-busy",
        json!({"text": "x", "imageUrl": origin.url("/busy.png")}),
    )
    .await;
    let link = body["whatsApp"]["imageUrl"]
        .as_str()
        .expect("a link")
        .to_owned();
    let (status, _, bytes) = fetch(Method::GET, &link, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(bytes == image);
    assert_eq!(origin.hits("/busy.png"), 9, "eight refusals, one download");
    assert!(setup.ctlive.received().is_empty(), "no REJECTED report");
}

/// The guard rails, each failing the download with a clear reason (502 to CTLive's GET): a host
/// that is neither Infobip's nor in media_hosts, a redirect to one, a private address when not
/// allowed, a file over media_max_bytes.
async fn guard_rails_refuse_with_a_reason(store: StoreKind) {
    let setup = setup(store, |s| {
        s.store.media_max_bytes = 1000;
        s.tenants
            .get_mut("acme")
            .expect("acme")
            .allow_private_media_hosts = false;
    })
    .await;
    setup
        .infobip
        .put_file("/default/media/big", "image/png", noise(5000));
    let localhost = setup
        .infobip
        .url("/default/media/big")
        .replace("127.0.0.1", "localhost");
    let redirect = setup.infobip.url("/default/media/redirect");
    let cases = [
        (
            "default",
            "refused-host",
            localhost.clone(),
            "refused host localhost",
        ),
        (
            "default",
            "too-large",
            setup.infobip.url("/default/media/big"),
            "larger than store.media_max_bytes",
        ),
        (
            "acme",
            "private",
            setup.infobip.url("/acme/media/x"),
            "private address",
        ),
        ("default", "redirected", redirect, "refused host localhost"),
    ];
    for (tenant, id, url, says) in cases {
        if id == "redirected" {
            setup
                .infobip
                .reply_next([Reply::Redirect(localhost.clone())]);
        }
        let link = post_inbound(&setup, tenant, &format!("guard-{id}"), "DOCUMENT", &url).await;
        let (status, _, body) = fetch(Method::GET, &link, None).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{id}");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(says), "{id}: expected {says:?} in {text}");
    }
}

/// Two instances on one Redis: an inbound item whose download the first started is served by the
/// second too, from that one download.
#[actix_web::test]
async fn two_instances_share_one_download() {
    let (ctlive, infobip) = (StandIn::start(), StandIn::start());
    let redis = support::redis_server::RedisServer::start().await;
    let mut settings = support::app::settings(&ctlive, &redis.url());
    with_infobip(&mut settings, &infobip);
    let first = TestGateway::spawn_with(settings.clone()).await;
    let second = TestGateway::spawn_with(settings).await;
    let document = noise(700_000);
    infobip.put_file("/default/media/shared", "application/pdf", document.clone());
    infobip.reply_next([Reply::Hold]);
    let event = json!({"from": "385910000003", "to": "1", "messageId": "inbound-shared", "message": {"type": "DOCUMENT", "url": infobip.url("/default/media/shared")}});
    assert_eq!(first.webhook(&batch(vec![event])).await.0, StatusCode::OK);
    let forwarded = eventually("the event at CTLive", PATIENCE, || {
        ctlive.taken_events().first().cloned()
    })
    .await;
    let link = forwarded["message"]["url"]
        .as_str()
        .expect("a link")
        .to_owned();
    let on_second = link.replace(&first.address, &second.address);
    eventually("the first instance's download held", PATIENCE, || {
        (infobip.held() == 1).then_some(())
    })
    .await;
    let answers = get_while_held(&infobip, vec![on_second.clone(), link, on_second]).await;
    for (status, _, bytes) in answers {
        assert_eq!(status, StatusCode::OK);
        assert!(bytes == document);
    }
    assert_eq!(
        infobip.hits("/default/media/shared"),
        1,
        "one download for both instances"
    );
}

on_both_stores!(
    infobip_fetches_outbound_media_in_two_steps,
    a_large_document_is_served_whole_and_in_ranges,
    a_data_url_is_served_with_its_type,
    an_unfetchable_source_rejects_the_send,
    unknown_and_expired_ids_are_404,
    inbound_media_is_linked_and_downloaded_once,
    concurrent_gets_share_one_download,
    a_throttled_download_is_retried,
    a_source_throttling_for_long_delays_the_send_without_losing_it,
    guard_rails_refuse_with_a_reason,
);
