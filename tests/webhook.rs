//! The webhook `POST /{tenant}/imchannel/message`: every payload shape is accepted and forwarded
//! intact; every bad input gets its 4xx in Infobip's error shape and nothing is forwarded.

mod support;

use std::time::Duration;

use awc::http::StatusCode;
use serde_json::json;
use support::app::{StoreKind, TestGateway, ACME_WEBHOOK, CTLIVE_AUTH, DEFAULT_WEBHOOK};
use support::fixtures::{self, batch, text_message};
use support::poll::{eventually, stays, PATIENCE};
use support::standin::StandIn;

/// Each fixture (seed examples, Infobip's OpenAPI examples) is answered 200 and reaches CTLive as
/// a one-event batch whose event is exactly the one sent, with Basic auth and JSON content type.
async fn every_fixture_is_forwarded_intact(store: StoreKind) {
    let ctlive = StandIn::start();
    let app = TestGateway::spawn(store, &ctlive, |_| {}).await;
    let fixtures = fixtures::webhooks();
    assert!(
        fixtures.len() >= 30,
        "expected the whole fixture table, found {}",
        fixtures.len()
    );
    let mut expected = Vec::new();
    for (name, body) in &fixtures {
        let (status, answer) = app.webhook(body).await;
        assert_eq!(status, StatusCode::OK, "fixture {name} answered {answer}");
        expected.extend(body["results"].as_array().expect("results").iter().cloned());
    }
    eventually("every fixture forwarded", PATIENCE, || {
        (ctlive.taken().len() >= expected.len()).then_some(())
    })
    .await;
    let received = ctlive.received();
    for event in &expected {
        let copy = received
            .iter()
            .find(|r| r.body["results"][0]["messageId"] == event["messageId"])
            .unwrap_or_else(|| panic!("messageId {} was not forwarded", event["messageId"]));
        let mut expected = event.clone();
        let media_types = ["IMAGE", "DOCUMENT", "AUDIO", "VIDEO", "VOICE", "STICKER"];
        if media_types
            .iter()
            .any(|kind| event["message"]["type"] == *kind)
        {
            let link = copy.body["results"][0]["message"]["url"]
                .as_str()
                .unwrap_or_default();
            let prefix = format!("{}/default/imchannel/media/", app.address);
            assert!(
                link.starts_with(&prefix),
                "a media message's url is imchannel's own: {link}"
            );
            expected["message"]["url"] = json!(link);
        }
        assert_eq!(
            copy.body["results"][0], expected,
            "the forwarded event differs from the one received (media url aside)"
        );
        assert_eq!(copy.body["messageCount"], 1);
        assert_eq!(copy.body["pendingMessageCount"], 0);
        assert_eq!(copy.path, "/default/ctlive");
        assert_eq!(copy.content_type.as_deref(), Some("application/json"));
        let expected_auth = format!(
            "Basic {}",
            base64_of(&format!("{}:{}", CTLIVE_AUTH.0, CTLIVE_AUTH.1))
        );
        assert_eq!(copy.authorization.as_deref(), Some(expected_auth.as_str()));
    }
    stays(
        "each event forwarded exactly once",
        Duration::from_millis(300),
        || ctlive.taken().len() == expected.len(),
    )
    .await;
}

/// A batch mixing messages, delivery reports, seen reports and a type not known yet is accepted
/// whole; the unknown type and unknown fields pass through unchanged.
async fn a_mixed_batch_with_unknown_types_passes_through(store: StoreKind) {
    let ctlive = StandIn::start();
    let app = TestGateway::spawn(store, &ctlive, |_| {}).await;
    let mut novel = text_message("491701111111", "mixed-novel", "");
    novel["message"] = json!({"type": "HOLOGRAM", "hologram": {"frames": [1, 2, 3]}});
    novel["someFutureField"] = json!({"nested": [true, null]});
    let events = vec![
        text_message("491701111111", "mixed-text", "hello"),
        fixtures::delivery_report(
            "491702222222",
            "mixed-dr",
            3,
            "DELIVERED",
            "DELIVERED_TO_HANDSET",
        ),
        fixtures::seen_report("491703333333", "mixed-seen"),
        novel.clone(),
    ];
    let (status, answer) = app.webhook(&batch(events.clone())).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 4);
    eventually("four events forwarded", PATIENCE, || {
        (ctlive.taken().len() == 4).then_some(())
    })
    .await;
    let taken = ctlive.taken_events();
    for event in &events {
        assert!(
            taken.contains(event),
            "{event} was not forwarded unchanged; CTLive got {taken:?}"
        );
    }
}

/// Each bad input gets its 4xx with a JSON error saying what was wrong, and nothing of its batch
/// (not even the good events in it) is forwarded.
async fn bad_input_is_refused_and_nothing_is_forwarded(store: StoreKind) {
    let ctlive = StandIn::start();
    let app = TestGateway::spawn(store, &ctlive, |settings| {
        settings.server.max_body_bytes = 4096
    })
    .await;
    let good = text_message("491700000001", "bad-good-1", "fine");
    let cases: Vec<BadInput> = vec![
        (
            "malformed JSON",
            "/imchannel/message",
            "{\"results\":[".into(),
            Some(DEFAULT_WEBHOOK),
            StatusCode::BAD_REQUEST,
            "malformed JSON",
        ),
        (
            "not an object",
            "/imchannel/message",
            "[1,2]".into(),
            Some(DEFAULT_WEBHOOK),
            StatusCode::BAD_REQUEST,
            "expected a JSON object",
        ),
        (
            "no results",
            "/imchannel/message",
            "{}".into(),
            Some(DEFAULT_WEBHOOK),
            StatusCode::BAD_REQUEST,
            "results",
        ),
        (
            "results not a list",
            "/imchannel/message",
            r#"{"results":{"a":1}}"#.into(),
            Some(DEFAULT_WEBHOOK),
            StatusCode::BAD_REQUEST,
            "results: invalid type",
        ),
        (
            "messageId a number",
            "/imchannel/message",
            batch(vec![
                good.clone(),
                json!({"from":"1","messageId":7,"message":{"type":"TEXT"}}),
            ])
            .to_string(),
            Some(DEFAULT_WEBHOOK),
            StatusCode::BAD_REQUEST,
            "results[1].messageId",
        ),
        (
            "messageId missing",
            "/imchannel/message",
            batch(vec![
                good.clone(),
                json!({"from":"1","message":{"type":"TEXT"}}),
            ])
            .to_string(),
            Some(DEFAULT_WEBHOOK),
            StatusCode::BAD_REQUEST,
            "results[1].messageId: missing",
        ),
        (
            "from missing",
            "/imchannel/message",
            batch(vec![
                good.clone(),
                json!({"messageId":"x","message":{"type":"TEXT"}}),
            ])
            .to_string(),
            Some(DEFAULT_WEBHOOK),
            StatusCode::BAD_REQUEST,
            "results[1].from: missing",
        ),
        (
            "message type missing",
            "/imchannel/message",
            batch(vec![
                json!({"messageId":"x","from":"1","message":{"text":"t"}}),
                good.clone(),
            ])
            .to_string(),
            Some(DEFAULT_WEBHOOK),
            StatusCode::BAD_REQUEST,
            "results[0].message.type: missing",
        ),
        (
            "status name missing",
            "/imchannel/message",
            batch(vec![
                good.clone(),
                json!({"messageId":"x","to":"1","status":{"groupId":3}}),
            ])
            .to_string(),
            Some(DEFAULT_WEBHOOK),
            StatusCode::BAD_REQUEST,
            "results[1].status.name: missing",
        ),
        (
            "status of the wrong type",
            "/imchannel/message",
            batch(vec![
                good.clone(),
                json!({"messageId":"x","to":"1","status":"DELIVERED"}),
            ])
            .to_string(),
            Some(DEFAULT_WEBHOOK),
            StatusCode::BAD_REQUEST,
            "results[1].status: invalid type",
        ),
        (
            "unclassifiable event",
            "/imchannel/message",
            batch(vec![good.clone(), json!({"messageId":"x","to":"1"})]).to_string(),
            Some(DEFAULT_WEBHOOK),
            StatusCode::BAD_REQUEST,
            "neither",
        ),
        (
            "oversize body",
            "/imchannel/message",
            batch(vec![text_message("1", "big", &"x".repeat(5000))]).to_string(),
            Some(DEFAULT_WEBHOOK),
            StatusCode::PAYLOAD_TOO_LARGE,
            "4096",
        ),
        (
            "no credentials",
            "/imchannel/message",
            batch(vec![good.clone()]).to_string(),
            None,
            StatusCode::UNAUTHORIZED,
            "credentials",
        ),
        (
            "wrong password",
            "/imchannel/message",
            batch(vec![good.clone()]).to_string(),
            Some((DEFAULT_WEBHOOK.0, "guess")),
            StatusCode::UNAUTHORIZED,
            "credentials",
        ),
        (
            "another tenant's credentials",
            "/acme/imchannel/message",
            batch(vec![good.clone()]).to_string(),
            Some(DEFAULT_WEBHOOK),
            StatusCode::UNAUTHORIZED,
            "credentials",
        ),
        (
            "unknown tenant with valid credentials",
            "/nobody/imchannel/message",
            batch(vec![good.clone()]).to_string(),
            Some(DEFAULT_WEBHOOK),
            StatusCode::NOT_FOUND,
            "nobody",
        ),
    ];
    for (label, path, body, credentials, expected_status, expected_text) in cases {
        let (status, answer) = app.post(path, body, credentials).await;
        assert_eq!(status, expected_status, "{label}: answered {answer}");
        let text = answer["requestError"]["serviceException"]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(
            text.contains(expected_text),
            "{label}: expected {expected_text:?} in the error text, got {answer}"
        );
        assert!(
            answer["requestError"]["serviceException"]["messageId"].is_string(),
            "{label}: no error code in {answer}"
        );
    }
    // A valid batch after all of them proves the gateway processed them; none of them got through.
    let (status, _) = app
        .webhook(&batch(vec![text_message(
            "491709999999",
            "bad-sentinel",
            "after",
        )]))
        .await;
    assert_eq!(status, StatusCode::OK);
    eventually("the sentinel forwarded", PATIENCE, || {
        (!ctlive.taken().is_empty()).then_some(())
    })
    .await;
    // Nothing of a refused batch was kept: its good event is new when it comes again.
    let (_, answer) = app.webhook(&batch(vec![good])).await;
    assert_eq!(answer["accepted"], 1, "{answer}");
    eventually("the good event forwarded", PATIENCE, || {
        (ctlive.taken().len() == 2).then_some(())
    })
    .await;
    stays(
        "only the sentinel and the good event forwarded",
        Duration::from_millis(300),
        || {
            ctlive.received().iter().all(|r| {
                let id = &r.body["results"][0]["messageId"];
                id == "bad-sentinel" || id == "bad-good-1"
            })
        },
    )
    .await;
}

/// `/imchannel/...` is the tenant `default`; `/acme/imchannel/...` reaches acme's CTLive with
/// acme's credentials.
async fn tenant_paths_route_to_their_tenant(store: StoreKind) {
    let ctlive = StandIn::start();
    let app = TestGateway::spawn(store, &ctlive, |_| {}).await;
    let to_default = batch(vec![text_message("1", "route-default", "d")]);
    let to_default_explicit = batch(vec![text_message("2", "route-default-explicit", "d")]);
    let to_acme = batch(vec![text_message("3", "route-acme", "a")]);
    assert_eq!(app.webhook(&to_default).await.0, StatusCode::OK);
    assert_eq!(
        app.post(
            "/default/imchannel/message",
            to_default_explicit.to_string(),
            Some(DEFAULT_WEBHOOK)
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        app.post(
            "/acme/imchannel/message",
            to_acme.to_string(),
            Some(ACME_WEBHOOK)
        )
        .await
        .0,
        StatusCode::OK
    );
    eventually("three forwards", PATIENCE, || {
        (ctlive.taken().len() == 3).then_some(())
    })
    .await;
    let path_of = |id: &str| {
        ctlive
            .received()
            .into_iter()
            .find(|r| r.body["results"][0]["messageId"] == id)
            .map(|r| (r.path, r.authorization.is_some()))
    };
    assert_eq!(
        path_of("route-default"),
        Some(("/default/ctlive".into(), true))
    );
    assert_eq!(
        path_of("route-default-explicit"),
        Some(("/default/ctlive".into(), true))
    );
    assert_eq!(
        path_of("route-acme"),
        Some(("/acme/ctlive".into(), false)),
        "acme has no CTLive credentials"
    );
}

/// Health answers; an unknown path is a JSON 404.
async fn health_and_unknown_paths(store: StoreKind) {
    let ctlive = StandIn::start();
    let app = TestGateway::spawn(store, &ctlive, |_| {}).await;
    assert_eq!(app.get("/healthz").await.0, StatusCode::OK);
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    let (status, answer) = app.get("/no/such/path").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        answer["requestError"]["serviceException"]["messageId"],
        "NOT_FOUND"
    );
}

/// One row of the bad-input table: label, path, body, credentials, expected status, and a
/// fragment the error text must contain.
type BadInput = (
    &'static str,
    &'static str,
    String,
    Option<(&'static str, &'static str)>,
    StatusCode,
    &'static str,
);

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

on_both_stores!(
    every_fixture_is_forwarded_intact,
    a_mixed_batch_with_unknown_types_passes_through,
    bad_input_is_refused_and_nothing_is_forwarded,
    tenant_paths_route_to_their_tenant,
    health_and_unknown_paths,
);
