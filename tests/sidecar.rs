//! Embedded in a host actix-web application (a CTLive sidecar): the gateway's routes mount next
//! to the host's own, and inbound events reach a host actor as messages instead of HTTP posts,
//! still in order, deduplicated and retried.

mod support;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix_web::{web, App, HttpResponse, HttpServer};
use imchannel::clients::host::{HostRefusal, InboundEvent};
use imchannel::Gateway;
use support::app::{settings, StoreKind, DEFAULT_WEBHOOK};
use support::fixtures::{batch, text_message};
use support::poll::{eventually, stays, PATIENCE};
use support::redis_server::RedisServer;
use support::standin::StandIn;

/// The host's actor: refuses its first event once (as a busy host would), keeps the rest.
struct Inbox {
    taken: Arc<Mutex<Vec<InboundEvent>>>,
    refused_once: bool,
}

impl Actor for Inbox {
    type Context = Context<Self>;
}

impl Handler<InboundEvent> for Inbox {
    type Result = Result<(), HostRefusal>;

    fn handle(&mut self, event: InboundEvent, _: &mut Self::Context) -> Self::Result {
        if !self.refused_once {
            self.refused_once = true;
            return Err(HostRefusal("busy".into()));
        }
        self.taken.lock().expect("inbox").push(event);
        Ok(())
    }
}

/// The host serves its own route and the gateway's; webhook events reach the host actor in order,
/// once each, the refused one retried, and nothing is posted to CTLive.
async fn the_host_mounts_the_gateway_and_takes_events_as_messages(store: StoreKind) {
    let ctlive = StandIn::start();
    let redis = match store {
        StoreKind::Memory => None,
        StoreKind::Redis => Some(RedisServer::start().await),
    };
    let settings = settings(
        &ctlive,
        &redis.as_ref().map(RedisServer::url).unwrap_or_default(),
    );
    let taken = Arc::new(Mutex::new(Vec::new()));
    let inbox = Inbox {
        taken: taken.clone(),
        refused_once: false,
    }
    .start();
    let gateway = Gateway::builder(settings)
        .forward_to_host(inbox.recipient())
        .build()
        .await
        .expect("the gateway builds");

    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = format!("http://{}", listener.local_addr().expect("bound"));
    let mounted = gateway.clone();
    let server = HttpServer::new(move || {
        let gateway = mounted.clone();
        App::new()
            .route(
                "/host/hello",
                web::get().to(|| async { HttpResponse::Ok().body("host") }),
            )
            .configure(move |cfg| gateway.configure(cfg))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    actix_web::rt::spawn(server);

    let client = awc::Client::default();
    let mut hello = client
        .get(format!("{address}/host/hello"))
        .send()
        .await
        .expect("host answers");
    assert_eq!(
        hello.body().await.expect("body"),
        "host",
        "the host's own route still works"
    );
    let from = "491900000000";
    let events = vec![
        text_message(from, "side-1", "a"),
        text_message(from, "side-2", "b"),
        text_message(from, "side-1", "a"),
    ];
    let status = client
        .post(format!("{address}/imchannel/message"))
        .basic_auth(DEFAULT_WEBHOOK.0, DEFAULT_WEBHOOK.1)
        .send_json(&batch(events))
        .await
        .expect("the gateway answers")
        .status();
    assert_eq!(status, 200);
    eventually("both events taken by the host", PATIENCE, || {
        (taken.lock().ok()?.len() == 2).then_some(())
    })
    .await;
    stays("no third event taken", Duration::from_millis(300), || {
        taken.lock().is_ok_and(|taken| taken.len() == 2)
    })
    .await;
    let taken = taken.lock().expect("inbox");
    let ids: Vec<&str> = taken
        .iter()
        .map(|event| event.message_id.as_str())
        .collect();
    assert_eq!(
        ids,
        ["side-1", "side-2"],
        "in order, the duplicate not passed on, the refused one retried"
    );
    assert_eq!(taken[0].tenant, "default");
    assert_eq!(taken[0].customer, from);
    assert_eq!(taken[0].json().expect("event JSON")["message"]["text"], "a");
    assert!(
        ctlive.received().is_empty(),
        "nothing went to CTLive over HTTP"
    );
}

on_both_stores!(the_host_mounts_the_gateway_and_takes_events_as_messages);
