//! Sends on their way to Infobip: in submission order per conversation through Infobip's bad
//! moments, paced, bounded, and never lost silently: a send that fails for good reaches CTLive as
//! a `REJECTED` delivery report. A report on a send waits until Infobip acknowledged the send.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use awc::http::StatusCode;
use futures::future::join_all;
use serde_json::{json, Value};
use support::app::{with_infobip, StoreKind, TestGateway, DEFAULT_API};
use support::fixtures::{batch, delivery_report, text_message};
use support::omni_schema::assert_valid_omni;
use support::poll::{eventually, stays, PATIENCE};
use support::standin::{Reply, StandIn};

fn send_to(phone: &str, message_id: &str, text: &str) -> Value {
    json!({"destinations": [{"to": {"phoneNumber": phone}, "messageId": message_id}], "whatsApp": {"text": text}})
}

fn sent_id(body: &Value) -> String {
    body["destinations"][0]["messageId"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn gateway(
    store: StoreKind,
    ctlive: &StandIn,
    infobip: &StandIn,
    tweak: impl FnOnce(&mut imchannel::config::Settings),
) -> TestGateway {
    TestGateway::spawn(store, ctlive, |settings| {
        with_infobip(settings, infobip);
        tweak(settings);
    })
    .await
}

/// Fifteen conversations each submit ten sends one after another, in parallel, while Infobip
/// fails every few requests (500, 429, 408, 503, a hang past the timeout): Infobip acknowledges
/// every send exactly once, each conversation's in submission order, every body valid.
async fn sends_keep_submission_order_through_failures(store: StoreKind) {
    let (ctlive, infobip) = (StandIn::start(), StandIn::start());
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    infobip.reply_with(move |_| match counter.fetch_add(1, Ordering::Relaxed) {
        n if n % 37 == 9 => Reply::Hang,
        n if n % 7 == 3 => Reply::Status(500),
        n if n % 11 == 4 => Reply::TooManyRequests { retry_after: 0 },
        n if n % 13 == 6 => Reply::Status(408),
        n if n % 17 == 2 => Reply::Status(503),
        _ => Reply::Ok,
    });
    let app = gateway(store, &ctlive, &infobip, |s| s.delivery.timeout_ms = 1000).await;
    let (conversations, per_conversation) = (15, 10);
    join_all((0..conversations).map(|c| {
        let app = &app;
        async move {
            for m in 0..per_conversation {
                let (status, answer) = app
                    .send(&send_to(
                        &format!("4178{c:05}"),
                        &format!("seq-{c}-{m}"),
                        "x",
                    ))
                    .await;
                assert_eq!(status, StatusCode::OK, "seq-{c}-{m}: {answer}");
            }
        }
    }))
    .await;
    let total = conversations * per_conversation;
    eventually("every send acknowledged", PATIENCE * 2, || {
        (infobip.taken().len() >= total).then_some(())
    })
    .await;
    let taken = infobip.taken();
    for c in 0..conversations {
        let phone = format!("4178{c:05}");
        let ours: Vec<String> = taken
            .iter()
            .filter(|body| body["destinations"][0]["to"]["phoneNumber"] == phone.as_str())
            .map(sent_id)
            .collect();
        let expected: Vec<String> = (0..per_conversation)
            .map(|m| format!("seq-{c}-{m}"))
            .collect();
        assert_eq!(
            ours, expected,
            "conversation {c}: in order, each acknowledged once"
        );
    }
    for received in infobip.received() {
        assert_valid_omni(&received.body);
    }
    assert!(
        infobip.received().len() > total + 20,
        "the test injected failures"
    );
}

/// Infobip refuses a send for good (400): CTLive gets a `REJECTED` report for its messageId with
/// Infobip's error text, and the conversation's next send goes on.
async fn a_refused_send_becomes_a_rejected_report(store: StoreKind) {
    let (ctlive, infobip) = (StandIn::start(), StandIn::start());
    infobip.reply_with(|body| {
        if sent_id(body) == "refused-send" {
            Reply::Status(400)
        } else {
            Reply::Ok
        }
    });
    let app = gateway(store, &ctlive, &infobip, |_| {}).await;
    let phone = "41794444444";
    app.send(&send_to(phone, "refused-send", "no")).await;
    app.send(&send_to(phone, "after-refused-send", "yes")).await;
    eventually("the next send acknowledged", PATIENCE, || {
        (infobip.taken().len() == 1).then_some(())
    })
    .await;
    let report = eventually("the REJECTED report at CTLive", PATIENCE, || {
        ctlive.taken_events().first().cloned()
    })
    .await;
    assert_eq!(report["messageId"], "refused-send");
    assert_eq!(report["to"], phone);
    assert_eq!(report["channel"], "WHATSAPP");
    assert_eq!(report["status"]["groupId"], 5);
    assert_eq!(report["status"]["groupName"], "REJECTED");
    assert_eq!(report["status"]["name"], "REJECTED_NOT_SENT");
    assert_eq!(report["error"]["id"], 400);
    assert_eq!(report["error"]["name"], "NOT_SENT");
    assert_eq!(report["error"]["groupName"], "IMCHANNEL");
    assert_eq!(report["error"]["permanent"], true);
    assert_eq!(
        report["error"]["description"], "stand-in answered 400",
        "Infobip's error text"
    );
    assert!(
        report["sentAt"]
            .as_str()
            .is_some_and(|at| at.ends_with("+0000")),
        "{report}"
    );
    let attempts: Vec<String> = infobip
        .received()
        .iter()
        .map(|r| sent_id(&r.body))
        .collect();
    assert_eq!(
        attempts,
        ["refused-send", "after-refused-send"],
        "a 400 is not retried"
    );
    if let Some(redis) = &app.redis {
        eventually("nothing left in the journals", PATIENCE, || {
            (redis.journal_len() == 0).then_some(())
        })
        .await;
    }
}

/// Infobip answers 200 but with the message in group REJECTED: CTLive gets a `REJECTED` report
/// with Infobip's status.
async fn a_rejected_status_in_the_answer_becomes_a_report(store: StoreKind) {
    let (ctlive, infobip) = (StandIn::start(), StandIn::start());
    infobip.reply_next([Reply::Json(json!({"messages": [{
        "to": {"phoneNumber": "41795555555"},
        "status": {"groupId": 5, "groupName": "REJECTED", "id": 51, "name": "REJECTED_DESTINATION", "description": "Invalid destination address."},
        "messageId": "rejected-in-answer"
    }]}))]);
    let app = gateway(store, &ctlive, &infobip, |_| {}).await;
    app.send(&send_to("41795555555", "rejected-in-answer", "x"))
        .await;
    let report = eventually("the REJECTED report at CTLive", PATIENCE, || {
        ctlive.taken_events().first().cloned()
    })
    .await;
    assert_eq!(report["messageId"], "rejected-in-answer");
    assert_eq!(report["status"]["id"], 51);
    assert_eq!(report["status"]["name"], "REJECTED_DESTINATION");
    assert_eq!(
        report["status"]["description"],
        "Invalid destination address."
    );
    assert_eq!(report["error"]["id"], 200);
}

/// A send Infobip keeps failing is retried until `delivery.max_age_secs`, then reported
/// `REJECTED` with the cause.
async fn a_send_out_of_retries_becomes_a_rejected_report(store: StoreKind) {
    let (ctlive, infobip) = (StandIn::start(), StandIn::start());
    infobip.reply_with(|_| Reply::Status(503));
    let app = gateway(store, &ctlive, &infobip, |s| s.delivery.max_age_secs = 1).await;
    app.send(&send_to("41796666666", "out-of-retries", "x"))
        .await;
    let report = eventually("the REJECTED report at CTLive", PATIENCE, || {
        ctlive.taken_events().first().cloned()
    })
    .await;
    assert_eq!(report["messageId"], "out-of-retries");
    assert_eq!(report["error"]["id"], 503);
    assert!(infobip.received().len() >= 3, "retried before giving up");
}

/// A delivery report for a send that Infobip has not acknowledged yet waits in the conversation
/// until it is, then reaches CTLive.
async fn a_report_waits_for_its_send(store: StoreKind) {
    let (ctlive, infobip) = (StandIn::start(), StandIn::start());
    infobip.reply_next([Reply::Hold]);
    let app = gateway(store, &ctlive, &infobip, |s| s.delivery.timeout_ms = 60_000).await;
    let phone = "41797777777";
    app.send(&send_to(phone, "held-send", "x")).await;
    eventually("the send held at Infobip", PATIENCE, || {
        (infobip.held() == 1).then_some(())
    })
    .await;
    let report = delivery_report(phone, "held-send", 3, "DELIVERED", "DELIVERED_TO_HANDSET");
    assert_eq!(
        app.webhook(&batch(vec![report.clone()])).await.0,
        StatusCode::OK
    );
    app.webhook(&batch(vec![text_message("41790000000", "unrelated", "x")]))
        .await;
    eventually("an unrelated message forwarded", PATIENCE, || {
        (ctlive.taken().len() == 1).then_some(())
    })
    .await;
    assert_eq!(
        app.gateway.pending_events(),
        2,
        "the send and its waiting report"
    );
    stays("the report held back", Duration::from_millis(200), || {
        ctlive.taken().len() == 1
    })
    .await;
    infobip.release_held();
    eventually("the report forwarded", PATIENCE, || {
        (ctlive.taken().len() == 2).then_some(())
    })
    .await;
    assert_eq!(ctlive.taken_events()[1], report);
}

/// A report on a send that Infobip keeps failing (a timeout after it took the message, say) proves
/// Infobip has it: the send is settled, not retried any more nor reported `REJECTED`, and the
/// report and the next send go on. The report joins the send's conversation even where its `to`
/// is written differently.
async fn a_report_acknowledges_a_send_in_retry(store: StoreKind) {
    let (ctlive, infobip) = (StandIn::start(), StandIn::start());
    infobip.reply_with(|body| {
        if sent_id(body) == "lost-answer" {
            Reply::Status(503)
        } else {
            Reply::Ok
        }
    });
    let app = gateway(store, &ctlive, &infobip, |s| {
        s.delivery.initial_backoff_ms = 300;
        s.delivery.max_backoff_ms = 300;
    })
    .await;
    let phone = "41791212121";
    app.send(&send_to(phone, "lost-answer", "x")).await;
    app.send(&send_to(phone, "after-lost-answer", "y")).await;
    eventually("the send failing at Infobip", PATIENCE, || {
        (!infobip.received().is_empty()).then_some(())
    })
    .await;
    let report = delivery_report(
        "0041791212121",
        "lost-answer",
        3,
        "DELIVERED",
        "DELIVERED_TO_HANDSET",
    );
    assert_eq!(
        app.webhook(&batch(vec![report.clone()])).await.0,
        StatusCode::OK
    );
    eventually("the report forwarded", PATIENCE, || {
        (ctlive.taken().len() == 1).then_some(())
    })
    .await;
    assert_eq!(ctlive.taken_events()[0], report);
    eventually("the next send acknowledged", PATIENCE, || {
        (infobip.taken().len() == 1).then_some(())
    })
    .await;
    assert_eq!(sent_id(&infobip.taken()[0]), "after-lost-answer");
    eventually("nothing pending", PATIENCE, || {
        (app.gateway.pending_events() == 0).then_some(())
    })
    .await;
    let attempts = infobip
        .received()
        .iter()
        .filter(|r| sent_id(&r.body) == "lost-answer")
        .count();
    stays(
        "no more attempts and no REJECTED report",
        Duration::from_millis(400),
        || {
            infobip
                .received()
                .iter()
                .filter(|r| sent_id(&r.body) == "lost-answer")
                .count()
                == attempts
                && ctlive.received().len() == 1
        },
    )
    .await;
}

/// The `REJECTED` report imchannel makes counts as that report: Infobip's own copy of it later is
/// a duplicate, and a PENDING after it is not passed on.
async fn a_rejected_notice_is_deduplicated_like_a_report(store: StoreKind) {
    let (ctlive, infobip) = (StandIn::start(), StandIn::start());
    infobip.reply_next([Reply::Status(400)]);
    let app = gateway(store, &ctlive, &infobip, |_| {}).await;
    let phone = "41791313131";
    app.send(&send_to(phone, "noticed", "x")).await;
    eventually("the REJECTED report at CTLive", PATIENCE, || {
        (ctlive.taken().len() == 1).then_some(())
    })
    .await;
    let copy = delivery_report(phone, "noticed", 5, "REJECTED", "REJECTED_NOT_SENT");
    let pending = delivery_report(phone, "noticed", 1, "PENDING", "PENDING_ENROUTE");
    let (_, answer) = app.webhook(&batch(vec![copy, pending])).await;
    assert_eq!(answer["accepted"], 0, "{answer}");
}

/// At `conversation.max_backlog`, CTLive's send is answered 429 with `Retry-After`.
async fn a_full_conversation_answers_429(store: StoreKind) {
    let (ctlive, infobip) = (StandIn::start(), StandIn::start());
    infobip.reply_next([Reply::Hold]);
    let app = gateway(store, &ctlive, &infobip, |s| {
        s.conversation.max_backlog = 2;
        s.delivery.timeout_ms = 60_000;
    })
    .await;
    let phone = "41798888888";
    for n in 0..2 {
        assert_eq!(
            app.send(&send_to(phone, &format!("full-send-{n}"), "x"))
                .await
                .0,
            StatusCode::OK
        );
    }
    let body = send_to(phone, "full-send-2", "x").to_string();
    let (status, headers, answer) = app
        .post_with_headers("/imchannel/omni/1/advanced", body, Some(DEFAULT_API))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(
        answer["requestError"]["serviceException"]["messageId"],
        "TOO_MANY_REQUESTS"
    );
    infobip.release_held();
}

/// With `infobip_rps = 20`, twenty-one sends to twenty-one conversations reach Infobip no faster
/// than the cap: the first and the last are at least a second apart.
async fn sends_are_paced_to_infobip_rps(store: StoreKind) {
    let (ctlive, infobip) = (StandIn::start(), StandIn::start());
    let app = gateway(store, &ctlive, &infobip, |s| {
        for tenant in s.tenants.values_mut() {
            tenant.infobip_rps = 20;
        }
    })
    .await;
    let sends: Vec<Value> = (0..21)
        .map(|n| send_to(&format!("4179900{n:04}"), &format!("paced-{n}"), "x"))
        .collect();
    join_all(sends.iter().map(|send| app.send(send))).await;
    eventually("every paced send at Infobip", PATIENCE, || {
        (infobip.taken().len() == 21).then_some(())
    })
    .await;
    let received = infobip.received();
    let span = received[20].at.duration_since(received[0].at);
    assert!(
        span >= Duration::from_millis(950),
        "21 sends at 20/s took only {span:?}"
    );
}

/// Two instances on one Redis share the tenant's `infobip_rps`: twenty-one sends split between
/// them reach Infobip no faster than the one cap allows.
#[actix_web::test]
async fn instances_on_one_redis_share_the_cap() {
    let (ctlive, infobip) = (StandIn::start(), StandIn::start());
    let redis = support::redis_server::RedisServer::start().await;
    let mut settings = support::app::settings(&ctlive, &redis.url());
    with_infobip(&mut settings, &infobip);
    for tenant in settings.tenants.values_mut() {
        tenant.infobip_rps = 20;
    }
    let first = TestGateway::spawn_with(settings.clone()).await;
    let second = TestGateway::spawn_with(settings).await;
    let sends: Vec<Value> = (0..21)
        .map(|n| send_to(&format!("4179800{n:04}"), &format!("shared-cap-{n}"), "x"))
        .collect();
    join_all(sends.iter().enumerate().map(|(n, send)| {
        if n % 2 == 0 {
            first.send(send)
        } else {
            second.send(send)
        }
    }))
    .await;
    eventually("every send at Infobip", PATIENCE, || {
        (infobip.taken().len() == 21).then_some(())
    })
    .await;
    let received = infobip.received();
    let span = received[20].at.duration_since(received[0].at);
    assert!(
        span >= Duration::from_millis(950),
        "21 sends at 20/s across two instances took only {span:?}"
    );
}

on_both_stores!(
    sends_keep_submission_order_through_failures,
    a_refused_send_becomes_a_rejected_report,
    a_rejected_status_in_the_answer_becomes_a_report,
    a_send_out_of_retries_becomes_a_rejected_report,
    a_report_waits_for_its_send,
    a_full_conversation_answers_429,
    a_report_acknowledges_a_send_in_retry,
    a_rejected_notice_is_deduplicated_like_a_report,
    sends_are_paced_to_infobip_rps,
);
