//! Nothing accepted is lost (DESIGN.md §4.3): an accepted event is in Redis before the 200, and a
//! gateway killed with SIGKILL while CTLive is down passes every accepted event on after its
//! restart, in order per conversation. Without Redis the gateway answers 503, never a lost 200.

mod support;

use std::collections::HashMap;
use std::net::TcpListener;

use awc::http::StatusCode;
use redis::Commands;
use support::app::{StoreKind, TestGateway};
use support::fixtures::{batch, text_message};
use support::poll::{eventually, PATIENCE};
use support::process::GatewayProcess;
use support::redis_server::RedisServer;
use support::standin::StandIn;

const CONFIG: &str = r#"
[server]
bind = "127.0.0.1:0"
workers = 2
[delivery]
timeout_ms = 1000
initial_backoff_ms = 20
max_backoff_ms = 200
[tenants.default]
webhook_user = "infobip"
webhook_password = "durable-secret"
"#;

async fn post(client: &awc::Client, address: &str, body: &serde_json::Value) -> StatusCode {
    client
        .post(format!("{address}/imchannel/message"))
        .basic_auth("infobip", "durable-secret")
        .send_json(body)
        .await
        .expect("the gateway answers")
        .status()
}

/// Events accepted while CTLive is unreachable survive a SIGKILL of the gateway: the restarted
/// process passes every one on, in order per conversation. The store and CTLive come from
/// environment overrides, which this also proves.
#[actix_web::test]
async fn accepted_events_survive_sigkill_and_arrive_in_order() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, CONFIG).expect("config written");
    // CTLive is down: its port is held by a socket that does not listen, so connections are
    // refused, until the stand-in binds it after the kill.
    let reserved =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    reserved
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .expect("an address")
                .into(),
        )
        .expect("a port for CTLive");
    let ctlive_port = reserved
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("bound")
        .port();
    let env = [
        ("IMCHANNEL__STORE__REDIS_URL", redis.url()),
        (
            "IMCHANNEL__TENANTS__DEFAULT__CTLIVE_URL",
            format!("http://127.0.0.1:{ctlive_port}/ctlive"),
        ),
    ];
    let mut gateway = GatewayProcess::start(dir.path(), &config, &env, "info").await;
    let client = awc::Client::default();
    let (conversations, per_conversation) = (5, 6);
    for m in 0..per_conversation {
        for c in 0..conversations {
            let body = batch(vec![text_message(
                &format!("49170{c:05}"),
                &format!("durable-{c}-{m}"),
                "x",
            )]);
            assert_eq!(post(&client, &gateway.address, &body).await, StatusCode::OK);
        }
    }
    let total = conversations * per_conversation;
    let journal: usize = redis
        .connection()
        .xlen("imch:journal")
        .expect("journal length");
    assert_eq!(journal, total, "every acknowledged event is in Redis");
    eventually("a retry against the unreachable CTLive", PATIENCE, || {
        gateway.log().contains("retrying in").then_some(())
    })
    .await;
    gateway.kill();

    drop(reserved);
    let ctlive =
        StandIn::start_on(TcpListener::bind(("127.0.0.1", ctlive_port)).expect("CTLive's port"));
    let restarted = GatewayProcess::start(dir.path(), &config, &env, "info").await;
    eventually("every event passed on after the restart", PATIENCE, || {
        (ctlive.taken().len() >= total).then_some(())
    })
    .await;
    let mut by_conversation: HashMap<String, Vec<String>> = HashMap::new();
    for event in ctlive.taken_events() {
        let from = event["from"].as_str().unwrap_or_default().to_owned();
        by_conversation
            .entry(from)
            .or_default()
            .push(event["messageId"].as_str().unwrap_or_default().to_owned());
    }
    for c in 0..conversations {
        let expected: Vec<String> = (0..per_conversation)
            .map(|m| format!("durable-{c}-{m}"))
            .collect();
        assert_eq!(
            by_conversation[&format!("49170{c:05}")],
            expected,
            "conversation {c}: all, in order, once"
        );
    }
    let mut connection = redis.connection();
    eventually("the journal emptied", PATIENCE, || {
        (connection.xlen::<_, usize>("imch:journal").ok()? == 0).then_some(())
    })
    .await;
    assert!(
        restarted
            .log()
            .contains(&format!("resuming {total} accepted events")),
        "the restart says what it resumed"
    );
}

/// With Redis gone, the webhook answers 503 with `Retry-After` (so Infobip retries) and `/readyz`
/// answers 503.
#[actix_web::test]
async fn without_redis_the_gateway_answers_503() {
    let ctlive = StandIn::start();
    let mut app = TestGateway::spawn(StoreKind::Redis, &ctlive, |_| {}).await;
    assert_eq!(app.get("/readyz").await.0, StatusCode::OK);
    app.redis.as_mut().expect("a redis").stop();
    let body = batch(vec![text_message("491800000000", "no-redis", "x")]).to_string();
    let (status, headers, answer) = app
        .post_with_headers(
            "/imchannel/message",
            body,
            Some(support::app::DEFAULT_WEBHOOK),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(
        answer["requestError"]["serviceException"]["messageId"],
        "SERVICE_UNAVAILABLE"
    );
    assert_eq!(app.get("/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert!(ctlive.received().is_empty(), "nothing was forwarded");
}
