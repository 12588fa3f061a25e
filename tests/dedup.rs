//! Deduplication (DESIGN.md §4.1): every copy of an event is answered 2xx and exactly one is
//! passed on, also when copies race on two instances sharing one Redis; a status never goes
//! backwards.

mod support;

use std::time::Duration;

use awc::http::StatusCode;
use futures::future::join_all;
use serde_json::Value;
use support::app::{settings, StoreKind, TestGateway};
use support::fixtures::{batch, delivery_report, seen_report, text_message};
use support::poll::{eventually, stays, PATIENCE};
use support::redis_server::RedisServer;
use support::standin::StandIn;

fn ids_taken(ctlive: &StandIn) -> Vec<String> {
    ctlive
        .taken_events()
        .iter()
        .map(|event| event["messageId"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Twenty copies of one message, posted at once, all get 200 and one reaches CTLive; a resend
/// later is still a duplicate.
async fn concurrent_copies_pass_one_on(store: StoreKind) {
    let ctlive = StandIn::start();
    let app = TestGateway::spawn(store, &ctlive, |_| {}).await;
    let body = batch(vec![text_message("491700000010", "dup-concurrent", "once")]);
    let answers = join_all((0..20).map(|_| app.webhook(&body))).await;
    assert!(
        answers.iter().all(|(status, _)| *status == StatusCode::OK),
        "every copy answered 200: {answers:?}"
    );
    let accepted: u64 = answers
        .iter()
        .map(|(_, answer)| answer["accepted"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(accepted, 1, "exactly one copy accepted");
    eventually("the message forwarded", PATIENCE, || {
        (!ctlive.taken().is_empty()).then_some(())
    })
    .await;
    let (status, answer) = app.webhook(&body).await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (StatusCode::OK, Some(0))
    );
    // A later message of the same conversation arriving proves the resend was processed first.
    app.webhook(&batch(vec![text_message(
        "491700000010",
        "dup-after",
        "next",
    )]))
    .await;
    eventually("the next message forwarded", PATIENCE, || {
        (ctlive.taken().len() == 2).then_some(())
    })
    .await;
    assert_eq!(ids_taken(&ctlive), ["dup-concurrent", "dup-after"]);
}

/// A copy inside the same batch is a duplicate too.
async fn a_copy_within_one_batch_is_a_duplicate(store: StoreKind) {
    let ctlive = StandIn::start();
    let app = TestGateway::spawn(store, &ctlive, |_| {}).await;
    let event = text_message("491700000011", "dup-in-batch", "twice");
    let (status, answer) = app.webhook(&batch(vec![event.clone(), event])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (answer["accepted"].as_u64(), answer["ignored"].as_u64()),
        (Some(1), Some(1))
    );
}

/// A delivery report after a seen report, a PENDING after a final status are acknowledged and not
/// passed on; an exact repeat is a duplicate; a second, different final status is passed on.
async fn a_status_never_goes_backwards(store: StoreKind) {
    let ctlive = StandIn::start();
    let app = TestGateway::spawn(store, &ctlive, |_| {}).await;
    let to = "491700000012";
    let steps: Vec<(Value, bool)> = vec![
        (
            delivery_report(to, "out-1", 1, "PENDING", "PENDING_ENROUTE"),
            true,
        ),
        (
            delivery_report(to, "out-1", 3, "DELIVERED", "DELIVERED_TO_HANDSET"),
            true,
        ),
        (
            delivery_report(to, "out-1", 1, "PENDING", "PENDING_WAITING_DELIVERY"),
            false,
        ),
        (
            delivery_report(to, "out-1", 3, "DELIVERED", "DELIVERED_TO_HANDSET"),
            false,
        ),
        (seen_report(to, "out-1"), true),
        (
            delivery_report(
                to,
                "out-1",
                2,
                "UNDELIVERABLE",
                "UNDELIVERABLE_NOT_DELIVERED",
            ),
            false,
        ),
        (seen_report(to, "out-1"), false),
        (
            delivery_report(to, "out-2", 3, "DELIVERED", "DELIVERED_TO_HANDSET"),
            true,
        ),
        (
            delivery_report(to, "out-2", 5, "REJECTED", "REJECTED_NETWORK"),
            true,
        ),
    ];
    let mut expected = Vec::new();
    for (event, passes) in steps {
        let (status, answer) = app.webhook(&batch(vec![event.clone()])).await;
        assert_eq!(status, StatusCode::OK, "{event} answered {answer}");
        assert_eq!(
            answer["accepted"].as_u64(),
            Some(u64::from(passes)),
            "{event}: {answer}"
        );
        if passes {
            expected.push(event);
        }
    }
    eventually("the passing reports forwarded", PATIENCE, || {
        (ctlive.taken().len() == expected.len()).then_some(())
    })
    .await;
    assert_eq!(
        ctlive.taken_events(),
        expected,
        "CTLive got exactly the reports that move forward, in order"
    );
}

/// Two gateway instances on one Redis receive the same messageIds at the same instant: every
/// copy is answered 200 and each messageId reaches CTLive exactly once.
#[actix_web::test]
async fn two_instances_on_one_redis_pass_each_message_on_once() {
    let ctlive = StandIn::start();
    let redis = RedisServer::start().await;
    let first = TestGateway::spawn_with(settings(&ctlive, &redis.url())).await;
    let second = TestGateway::spawn_with(settings(&ctlive, &redis.url())).await;
    let messages = 50;
    for n in 0..messages {
        let body = batch(vec![text_message(
            &format!("4917100{n:05}"),
            &format!("race-{n}"),
            "race",
        )]);
        let (a, b) = futures::join!(first.webhook(&body), second.webhook(&body));
        assert_eq!(
            (a.0, b.0),
            (StatusCode::OK, StatusCode::OK),
            "both copies of race-{n} answered 200"
        );
        let accepted =
            a.1["accepted"].as_u64().unwrap_or(0) + b.1["accepted"].as_u64().unwrap_or(0);
        assert_eq!(
            accepted, 1,
            "race-{n}: exactly one instance accepted it ({a:?}, {b:?})"
        );
    }
    eventually("every message forwarded", PATIENCE, || {
        (ctlive.taken().len() >= messages).then_some(())
    })
    .await;
    stays(
        "no second copy forwarded",
        Duration::from_millis(300),
        || ctlive.taken().len() == messages,
    )
    .await;
    let mut ids = ids_taken(&ctlive);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), messages, "each messageId once");
}

on_both_stores!(
    concurrent_copies_pass_one_on,
    a_copy_within_one_batch_is_a_duplicate,
    a_status_never_goes_backwards,
);
