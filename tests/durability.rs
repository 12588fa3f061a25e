//! Nothing accepted is lost (DESIGN.md §4.3): an accepted event is in Redis before the 200, and a
//! gateway killed with SIGKILL while CTLive is down passes every accepted event on after its
//! restart, in order per conversation. Without Redis the gateway answers 503, never a lost 200.

mod support;

use awc::http::StatusCode;
use serde_json::Value;
use support::app::{StoreKind, TestGateway};
use support::fixtures::{batch, text_message};
use support::poll::{eventually, PATIENCE};
use support::process::{config_dir, GatewayProcess};
use support::redis_server::{free_port, RedisServer};
use support::standin::{DownPeer, StandIn};

/// A gateway's config for these tests: quick retries, the webhook password below.
const CONFIG: &str = r#"
[server]
bind = "127.0.0.1:0"
workers = 2
[store]
instance_lease_secs = 1
[delivery]
timeout_ms = 1000
initial_backoff_ms = 20
max_backoff_ms = 200
[tenants.default]
webhook_user = "infobip"
webhook_password = "durable-secret"
"#;

async fn post(client: &awc::Client, address: &str, body: &Value) -> StatusCode {
    client
        .post(format!("{address}/imchannel/message"))
        .basic_auth("infobip", "durable-secret")
        .send_json(body)
        .await
        .expect("the gateway answers")
        .status()
}

/// Posts `per_conversation` messages to each of `conversations` conversations, round-robin; each
/// must be answered 200.
async fn post_round_robin(address: &str, tag: &str, conversations: usize, per_conversation: usize) {
    let client = awc::Client::default();
    for m in 0..per_conversation {
        for c in 0..conversations {
            let body = batch(vec![text_message(
                &format!("49170{c:05}"),
                &format!("{tag}-{c}-{m}"),
                "x",
            )]);
            assert_eq!(post(&client, address, &body).await, StatusCode::OK);
        }
    }
}

/// Checks that CTLive took every message of [`post_round_robin`] exactly once, in order per
/// conversation.
fn assert_all_in_order_once(
    ctlive: &StandIn,
    tag: &str,
    conversations: usize,
    per_conversation: usize,
) {
    let taken = ctlive.taken_by_customer();
    for c in 0..conversations {
        let expected: Vec<String> = (0..per_conversation)
            .map(|m| format!("{tag}-{c}-{m}"))
            .collect();
        assert_eq!(
            taken[&format!("49170{c:05}")],
            expected,
            "conversation {c}: all, in order, once"
        );
    }
}

/// Events accepted while CTLive is unreachable survive a SIGKILL of the gateway: the restarted
/// process passes every one on, in order per conversation. The store and CTLive come from
/// environment overrides, which this also proves.
#[actix_web::test]
async fn accepted_events_survive_sigkill_and_arrive_in_order() {
    let redis = RedisServer::start().await;
    let (dir, config) = config_dir(CONFIG);
    let ctlive = DownPeer::reserve();
    // A fixed port keeps the gateway's identity across the restart: it resumes its own work.
    let port = free_port();
    let env = [
        ("IMCHANNEL__STORE__REDIS_URL", redis.url()),
        (
            "IMCHANNEL__TENANTS__DEFAULT__CTLIVE_URL",
            ctlive.url("/ctlive"),
        ),
        ("IMCHANNEL__SERVER__BIND", format!("127.0.0.1:{port}")),
    ];
    let mut gateway = GatewayProcess::start(dir.path(), &config, &env, "info").await;
    let (conversations, per_conversation) = (5, 6);
    post_round_robin(&gateway.address, "durable", conversations, per_conversation).await;
    let total = conversations * per_conversation;
    assert_eq!(
        redis.journal_len(),
        total,
        "every acknowledged event is in Redis"
    );
    eventually("a retry against the unreachable CTLive", PATIENCE, || {
        gateway.log().contains("retrying in").then_some(())
    })
    .await;
    gateway.kill();

    let ctlive = ctlive.bring_up();
    let restarted = GatewayProcess::start(dir.path(), &config, &env, "info").await;
    assert!(
        restarted
            .log()
            .contains(&format!("resuming {total} accepted events")),
        "the restart resumes at once"
    );
    eventually("every event passed on after the restart", PATIENCE, || {
        (ctlive.taken().len() >= total).then_some(())
    })
    .await;
    assert_all_in_order_once(&ctlive, "durable", conversations, per_conversation);
    eventually("the journal emptied", PATIENCE, || {
        (redis.journal_len() == 0).then_some(())
    })
    .await;
}

/// Sends acknowledged to CTLive while Infobip is unreachable survive a SIGKILL: the restarted
/// gateway posts every one to Infobip, in submission order per conversation.
#[actix_web::test]
async fn accepted_sends_survive_sigkill_and_arrive_in_order() {
    let redis = RedisServer::start().await;
    let (dir, config) = config_dir(CONFIG);
    let infobip = DownPeer::reserve();
    let port = free_port();
    let env = [
        ("IMCHANNEL__STORE__REDIS_URL", redis.url()),
        (
            "IMCHANNEL__TENANTS__DEFAULT__INFOBIP_BASE_URL",
            infobip.url(""),
        ),
        (
            "IMCHANNEL__TENANTS__DEFAULT__API_PASSWORD",
            "durable-api".to_owned(),
        ),
        ("IMCHANNEL__SERVER__BIND", format!("127.0.0.1:{port}")),
    ];
    let mut gateway = GatewayProcess::start(dir.path(), &config, &env, "info").await;
    let client = awc::Client::default();
    let (conversations, per_conversation) = (4, 5);
    for m in 0..per_conversation {
        for c in 0..conversations {
            let send = serde_json::json!({
                "destinations": [{"to": {"phoneNumber": format!("4177{c:05}")}, "messageId": format!("kept-{c}-{m}")}],
                "whatsApp": {"text": "x"}
            });
            let status = client
                .post(format!("{}/imchannel/omni/1/advanced", gateway.address))
                .basic_auth("ctlive", "durable-api")
                .send_json(&send)
                .await
                .expect("the gateway answers")
                .status();
            assert_eq!(status, StatusCode::OK);
        }
    }
    let total = conversations * per_conversation;
    assert_eq!(
        redis.journal_len(),
        total,
        "every acknowledged send is in Redis"
    );
    gateway.kill();

    let infobip = infobip.bring_up();
    let _restarted = GatewayProcess::start(dir.path(), &config, &env, "info").await;
    eventually("every send at Infobip after the restart", PATIENCE, || {
        (infobip.taken().len() >= total).then_some(())
    })
    .await;
    let taken = infobip.taken();
    for c in 0..conversations {
        let phone = format!("4177{c:05}");
        let ours: Vec<&str> = taken
            .iter()
            .filter(|body| body["destinations"][0]["to"]["phoneNumber"] == phone.as_str())
            .filter_map(|body| body["destinations"][0]["messageId"].as_str())
            .collect();
        let expected: Vec<String> = (0..per_conversation)
            .map(|m| format!("kept-{c}-{m}"))
            .collect();
        assert_eq!(ours, expected, "conversation {c}: all, in order, once");
    }
}

/// Journal entries written before conversations had lanes (fields `c`, `r`, `p` only) are read
/// as inbound work and passed on after a restart.
#[actix_web::test]
async fn journal_entries_of_the_first_format_are_resumed() {
    let redis = RedisServer::start().await;
    let (dir, config) = config_dir(CONFIG);
    let ctlive = StandIn::start();
    let port = free_port();
    let journal = format!("imch:journal:{}:{port}", imchannel::gateway::hostname());
    let event = text_message("491712345678", "first-format", "from an older imchannel");
    let _: String = redis::cmd("XADD")
        .arg(&journal)
        .arg("*")
        .arg("c")
        .arg("default/491712345678")
        .arg("r")
        .arg("first-format")
        .arg("p")
        .arg(event.to_string())
        .query(&mut redis.connection())
        .expect("an old-format entry");
    let env = [
        ("IMCHANNEL__STORE__REDIS_URL", redis.url()),
        (
            "IMCHANNEL__TENANTS__DEFAULT__CTLIVE_URL",
            ctlive.url("/ctlive"),
        ),
        ("IMCHANNEL__SERVER__BIND", format!("127.0.0.1:{port}")),
    ];
    let _gateway = GatewayProcess::start(dir.path(), &config, &env, "info").await;
    eventually("the old entry forwarded", PATIENCE, || {
        ctlive.taken_events().first().cloned()
    })
    .await;
    assert_eq!(ctlive.taken_events(), [event]);
}

/// A second instance starting on the same Redis leaves the first one's unfinished work alone
/// (nothing passed on twice); when the first is killed, the second takes its work over once the
/// lease ran out and passes it on, in order, exactly once.
#[actix_web::test]
async fn a_dead_instances_work_is_taken_over_once() {
    let redis = RedisServer::start().await;
    let (dir, config) = config_dir(CONFIG);
    let ctlive = DownPeer::reserve();
    let env = [
        ("IMCHANNEL__STORE__REDIS_URL", redis.url()),
        (
            "IMCHANNEL__TENANTS__DEFAULT__CTLIVE_URL",
            ctlive.url("/ctlive"),
        ),
    ];
    let mut first = GatewayProcess::start(dir.path(), &config, &env, "info").await;
    let (conversations, per_conversation) = (4, 5);
    post_round_robin(&first.address, "orphan", conversations, per_conversation).await;
    let second = GatewayProcess::start(dir.path(), &config, &env, "info").await;
    assert!(
        !second.log().contains("resuming"),
        "the second instance resumed nothing of the first's"
    );
    first.kill();
    eventually("the survivor takes the work over", PATIENCE, || {
        second
            .log()
            .contains("taking over its 20 unfinished events")
            .then_some(())
    })
    .await;
    let ctlive = ctlive.bring_up();
    let total = conversations * per_conversation;
    eventually("every event passed on by the survivor", PATIENCE, || {
        (ctlive.taken().len() >= total).then_some(())
    })
    .await;
    assert_all_in_order_once(&ctlive, "orphan", conversations, per_conversation);
    eventually("the adopted journal emptied", PATIENCE, || {
        (redis.journal_len() == 0).then_some(())
    })
    .await;
}

/// With Redis gone, the webhook answers 503 with `Retry-After` (so Infobip retries), so do sends,
/// and `/readyz` answers 503.
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
    let send = serde_json::json!({"destinations": [{"to": {"phoneNumber": "41"}}], "whatsApp": {"text": "x"}});
    let (status, answer) = app.send(&send).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a send without Redis: {answer}"
    );
    assert!(ctlive.received().is_empty(), "nothing was forwarded");
}
