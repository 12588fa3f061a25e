//! Passing events on to CTLive (DESIGN.md §4.2–4.4): in order per conversation, retried through
//! failures, dead-lettered when refused for good, bounded, and idle actors stopped.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use awc::http::StatusCode;
use futures::future::join_all;
use redis::Commands;
use serde_json::Value;
use support::app::{StoreKind, TestGateway};
use support::fixtures::{batch, text_message};
use support::poll::{eventually, PATIENCE};
use support::standin::{Reply, StandIn};

fn message_id(event: &Value) -> String {
    event["messageId"].as_str().unwrap_or_default().to_owned()
}

/// Twenty conversations post fifteen messages each, in parallel, while CTLive fails every few
/// requests (500, 429, 408, 503, a hang past the timeout): CTLive takes every message exactly once
/// and each conversation's in the order it was posted.
async fn order_holds_per_conversation_through_failures(store: StoreKind) {
    let ctlive = StandIn::start();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    ctlive.reply_with(move |_| match counter.fetch_add(1, Ordering::Relaxed) {
        n if n % 31 == 5 => Reply::Hang,
        n if n % 7 == 3 => Reply::Status(500),
        n if n % 11 == 4 => Reply::TooManyRequests { retry_after: 0 },
        n if n % 13 == 6 => Reply::Status(408),
        n if n % 17 == 2 => Reply::Status(503),
        _ => Reply::Ok,
    });
    let app = TestGateway::spawn(store, &ctlive, |s| s.delivery.timeout_ms = 1000).await;
    let (conversations, per_conversation) = (20, 15);
    let posting = (0..conversations).map(|c| {
        let app = &app;
        async move {
            for m in 0..per_conversation {
                let body = batch(vec![text_message(
                    &format!("49160{c:05}"),
                    &format!("order-{c}-{m}"),
                    "x",
                )]);
                let (status, answer) = app.webhook(&body).await;
                assert_eq!(status, StatusCode::OK, "order-{c}-{m}: {answer}");
            }
        }
    });
    join_all(posting).await;
    let total = conversations * per_conversation;
    eventually("every message taken", PATIENCE * 2, || {
        (ctlive.taken().len() >= total).then_some(())
    })
    .await;
    let by_conversation = ctlive.taken_by_customer();
    for c in 0..conversations {
        let expected: Vec<String> = (0..per_conversation)
            .map(|m| format!("order-{c}-{m}"))
            .collect();
        assert_eq!(
            by_conversation[&format!("49160{c:05}")],
            expected,
            "conversation {c} in order, each once"
        );
    }
    let failures = ctlive
        .received()
        .iter()
        .filter(|r| !matches!(r.reply, Reply::Ok))
        .count();
    assert!(failures >= 30, "the test injected failures ({failures})");
}

/// A 429 with `Retry-After: 1` is retried, and not sooner than a second later.
async fn retry_after_is_honoured(store: StoreKind) {
    let ctlive = StandIn::start();
    ctlive.reply_next([Reply::TooManyRequests { retry_after: 1 }]);
    let app = TestGateway::spawn(store, &ctlive, |_| {}).await;
    app.webhook(&batch(vec![text_message("491611111111", "throttled", "x")]))
        .await;
    eventually("the retry taken", PATIENCE, || {
        (ctlive.taken().len() == 1).then_some(())
    })
    .await;
    let received = ctlive.received();
    assert_eq!(received.len(), 2, "one refusal, one success");
    let pause = received[1].at.duration_since(received[0].at);
    assert!(
        pause >= Duration::from_millis(1000),
        "retried after {pause:?}, sooner than Retry-After: 1"
    );
}

/// A permanent refusal (400) is not retried: the event goes to the dead letters and the next one
/// of its conversation is passed on.
async fn a_permanent_refusal_is_dead_lettered_and_the_conversation_moves_on(store: StoreKind) {
    let ctlive = StandIn::start();
    ctlive.reply_with(|body| {
        if body["results"][0]["messageId"] == "refused" {
            Reply::Status(400)
        } else {
            Reply::Ok
        }
    });
    let app = TestGateway::spawn(store, &ctlive, |_| {}).await;
    let from = "491622222222";
    app.webhook(&batch(vec![
        text_message(from, "refused", "a"),
        text_message(from, "after-refused", "b"),
    ]))
    .await;
    eventually("the next message taken", PATIENCE, || {
        (ctlive.taken().len() == 1).then_some(())
    })
    .await;
    let attempts: Vec<String> = ctlive
        .received()
        .iter()
        .map(|r| message_id(&r.body["results"][0]))
        .collect();
    assert_eq!(
        attempts,
        ["refused", "after-refused"],
        "the refused one tried once, then the next"
    );
    if let Some(redis) = &app.redis {
        let mut connection = redis.connection();
        let letters: Vec<String> = eventually("a dead letter", PATIENCE, || {
            let letters: Vec<String> = connection.lrange("imch:deadletters", 0, -1).ok()?;
            (!letters.is_empty()).then_some(letters)
        })
        .await;
        assert_eq!(letters.len(), 1, "{letters:?}");
        let letter: Value = serde_json::from_str(&letters[0]).expect("a JSON dead letter");
        assert_eq!(letter["reference"], "refused");
        assert!(
            letter["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("HTTP 400"),
            "{letter}"
        );
        eventually("an empty journal", PATIENCE, || {
            (redis.journal_len() == 0).then_some(())
        })
        .await;
    }
}

/// An event CTLive keeps failing is retried until `delivery.max_age_secs`, then dead-lettered.
async fn retries_stop_at_max_age(store: StoreKind) {
    let ctlive = StandIn::start();
    ctlive.reply_with(|body| {
        if body["results"][0]["messageId"] == "doomed" {
            Reply::Status(500)
        } else {
            Reply::Ok
        }
    });
    let app = TestGateway::spawn(store, &ctlive, |s| s.delivery.max_age_secs = 1).await;
    let from = "491633333333";
    app.webhook(&batch(vec![
        text_message(from, "doomed", "a"),
        text_message(from, "after-doomed", "b"),
    ]))
    .await;
    eventually("the next message taken", PATIENCE, || {
        (ctlive.taken().len() == 1).then_some(())
    })
    .await;
    let doomed = ctlive
        .received()
        .iter()
        .filter(|r| r.body["results"][0]["messageId"] == "doomed")
        .count();
    assert!(
        doomed >= 3,
        "retried several times before giving up ({doomed})"
    );
    assert_eq!(message_id(&ctlive.taken_events()[0]), "after-doomed");
}

/// At `conversation.max_backlog` a conversation's webhook is answered 503 with `Retry-After`,
/// nothing of the refused batch is kept, and other conversations are still taken.
async fn a_full_conversation_answers_503(store: StoreKind) {
    let ctlive = StandIn::start();
    ctlive.reply_next([Reply::Hold]);
    let app = TestGateway::spawn(store, &ctlive, |s| {
        s.conversation.max_backlog = 2;
        s.delivery.timeout_ms = 60_000;
    })
    .await;
    let from = "491644444444";
    for n in 0..2 {
        let (status, _) = app
            .webhook(&batch(vec![text_message(from, &format!("full-{n}"), "x")]))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let refused = batch(vec![text_message(from, "full-2", "x")]);
    let (status, headers, answer) = app
        .post_with_headers(
            "/imchannel/message",
            refused.to_string(),
            Some(support::app::DEFAULT_WEBHOOK),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(
        headers.contains_key("retry-after"),
        "503 carries Retry-After"
    );
    let text = answer["requestError"]["serviceException"]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("max_backlog"), "{answer}");
    let (status, _) = app
        .webhook(&batch(vec![text_message("491655555555", "other", "x")]))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "another conversation is not affected"
    );
    ctlive.release_held();
    // Infobip's retry of the refused batch is new to the gateway, since nothing of it was kept.
    let (status, answer) = eventually_accepted(&app, &refused).await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{answer}"
    );
    eventually("the conversation drained", PATIENCE, || {
        (ctlive.taken().len() == 4).then_some(())
    })
    .await;
    let ours: Vec<String> = ctlive
        .taken_events()
        .iter()
        .filter(|event| event["from"] == from)
        .map(message_id)
        .collect();
    assert_eq!(ours, ["full-0", "full-1", "full-2"]);
}

/// Posts `body` until it is not refused for lack of room (Infobip's retry loop, in short).
async fn eventually_accepted(app: &TestGateway, body: &Value) -> (StatusCode, Value) {
    let mut answer = app.webhook(body).await;
    let until = std::time::Instant::now() + PATIENCE;
    while answer.0 == StatusCode::SERVICE_UNAVAILABLE && std::time::Instant::now() < until {
        answer = app.webhook(body).await;
    }
    answer
}

/// At `conversation.max_live` busy conversations, a new one is answered 503; idle ones make room.
async fn live_conversations_are_bounded(store: StoreKind) {
    let ctlive = StandIn::start();
    ctlive.reply_with(|body| {
        if body["results"][0]["from"] == "1" {
            Reply::Ok
        } else {
            Reply::Hang
        }
    });
    let app = TestGateway::spawn(store, &ctlive, |s| {
        s.conversation.max_live = 2;
        s.delivery.timeout_ms = 60_000;
    })
    .await;
    // Conversation "1" finishes at once and turns idle.
    assert_eq!(
        app.webhook(&batch(vec![text_message("1", "live-1", "x")]))
            .await
            .0,
        StatusCode::OK
    );
    eventually("live-1 settled", PATIENCE, || {
        (ctlive.taken().len() == 1 && app.gateway.pending_events() == 0).then_some(())
    })
    .await;
    // Two busy conversations fill the bound, the idle one is retired to make room.
    assert_eq!(
        app.webhook(&batch(vec![text_message("2", "live-2", "x")]))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        app.webhook(&batch(vec![text_message("3", "live-3", "x")]))
            .await
            .0,
        StatusCode::OK
    );
    let (status, answer) = app
        .webhook(&batch(vec![text_message("4", "live-4", "x")]))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(answer["requestError"]["serviceException"]["text"]
        .as_str()
        .unwrap_or_default()
        .contains("max_live"));
    assert_eq!(app.gateway.live_conversations(), 2);
}

/// At the bound, a batch naming an idle conversation and a new one is refused when the busy ones
/// leave no room, and the count of live actors stays true: once everything is idle and stopped it
/// is 0, and the full bound is usable again.
async fn the_live_count_stays_true_at_the_bound(store: StoreKind) {
    let ctlive = StandIn::start();
    let app = TestGateway::spawn(store, &ctlive, |s| {
        s.conversation.max_live = 2;
        s.conversation.idle_secs = 1;
        s.delivery.timeout_ms = 60_000;
    })
    .await;
    app.webhook(&batch(vec![text_message("10", "bound-a", "x")]))
        .await;
    eventually("bound-a settled", PATIENCE, || {
        (ctlive.taken().len() == 1 && app.gateway.pending_events() == 0).then_some(())
    })
    .await;
    ctlive.reply_next([Reply::Hold]);
    assert_eq!(
        app.webhook(&batch(vec![text_message("11", "bound-b", "x")]))
            .await
            .0,
        StatusCode::OK
    );
    let both = batch(vec![
        text_message("10", "bound-a2", "x"),
        text_message("12", "bound-c", "x"),
    ]);
    let (status, answer) = app.webhook(&both).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(
        app.gateway.live_conversations() <= 2,
        "live {}",
        app.gateway.live_conversations()
    );
    ctlive.release_held();
    eventually("every actor idle and stopped", PATIENCE, || {
        (app.gateway.live_conversations() == 0).then_some(())
    })
    .await;
    let (status, answer) = app.webhook(&both).await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (StatusCode::OK, Some(2)),
        "{answer}"
    );
    assert_eq!(app.gateway.live_conversations(), 2);
}

/// Conversation actors with nothing to do stop after `conversation.idle_secs`.
async fn idle_conversations_stop(store: StoreKind) {
    let ctlive = StandIn::start();
    let app = TestGateway::spawn(store, &ctlive, |s| s.conversation.idle_secs = 1).await;
    for n in 0..3 {
        app.webhook(&batch(vec![text_message(
            &format!("49167{n}"),
            &format!("idle-{n}"),
            "x",
        )]))
        .await;
    }
    eventually("three actors live", PATIENCE, || {
        (app.gateway.live_conversations() == 3).then_some(())
    })
    .await;
    eventually("every idle actor stopped", PATIENCE, || {
        (app.gateway.live_conversations() == 0).then_some(())
    })
    .await;
    assert_eq!(ctlive.taken().len(), 3, "stopping came after forwarding");
}

on_both_stores!(
    order_holds_per_conversation_through_failures,
    retry_after_is_honoured,
    a_permanent_refusal_is_dead_lettered_and_the_conversation_moves_on,
    retries_stop_at_max_age,
    a_full_conversation_answers_503,
    live_conversations_are_bounded,
    the_live_count_stays_true_at_the_bound,
    idle_conversations_stop,
);
