//! https: imchannel speaks TLS to its peers (Infobip's API, CTLive, media sources) and checks
//! their certificates: a source with a certificate no public authority signed is refused, with
//! the reason.

mod support;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use awc::http::StatusCode;
use serde_json::json;
use support::app::{with_infobip, StoreKind, TestGateway};
use support::fixtures::batch;
use support::poll::{eventually, PATIENCE};
use support::standin::StandIn;

/// An https server on 127.0.0.1 with a self-signed certificate for "localhost".
fn self_signed_https() -> u16 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("a TLS config");
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("bound").port();
    let server = HttpServer::new(|| {
        App::new().default_service(web::to(|| async { HttpResponse::Ok().body("image") }))
    })
    .workers(1)
    .disable_signals()
    .listen_rustls_0_23(listener, config)
    .expect("listen with TLS")
    .run();
    actix_web::rt::spawn(server);
    port
}

/// An inbound image on an https source whose certificate nobody vouches for: the download is
/// refused on TLS grounds (so TLS is spoken), and CTLive's GET says why.
#[actix_web::test]
async fn an_https_source_with_an_unknown_certificate_is_refused() {
    let port = self_signed_https();
    let (ctlive, infobip) = (StandIn::start(), StandIn::start());
    let app = TestGateway::spawn(StoreKind::Memory, &ctlive, |settings| {
        with_infobip(settings, &infobip);
        settings
            .tenants
            .get_mut("default")
            .expect("default")
            .media_hosts = vec!["localhost".into()];
    })
    .await;
    let url = format!("https://localhost:{port}/image.png");
    let event = json!({"from": "385910000009", "to": "1", "messageId": "tls-image", "message": {"type": "IMAGE", "url": url}});
    assert_eq!(app.webhook(&batch(vec![event])).await.0, StatusCode::OK);
    let forwarded = eventually("the event at CTLive", PATIENCE, || {
        ctlive.taken_events().first().cloned()
    })
    .await;
    let link = forwarded["message"]["url"]
        .as_str()
        .expect("a link")
        .to_owned();
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let mut response = client.get(&link).send().await.expect("the gateway answers");
    let body = response.body().await.expect("a body");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(
        text.contains("certificate"),
        "the reason names the certificate: {text}"
    );
}
