//! CTLive's sends (`POST /{tenant}/imchannel/omni/1/advanced`): checked, answered
//! `PENDING_ACCEPTED`, and posted to Infobip one destination at a time, valid against Infobip's
//! own schema, with the tenant's credentials and scenario; bad sends are refused with a 4xx.

mod support;

use std::time::Duration;

use awc::http::StatusCode;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use support::app::{
    with_infobip, StoreKind, TestGateway, ACME_API, ACME_INFOBIP, DEFAULT_API, DEFAULT_INFOBIP_KEY,
    DEFAULT_SCENARIO, DEFAULT_WEBHOOK,
};
use support::omni_schema::{assert_valid_omni, is_valid_omni};
use support::poll::{eventually, stays, PATIENCE};
use support::standin::StandIn;

/// A send of `whatsapp` to one customer.
fn send_to(phone: &str, message_id: Option<&str>, whatsapp: Value) -> Value {
    let mut destination = json!({"to": {"phoneNumber": phone}});
    if let Some(id) = message_id {
        destination["messageId"] = json!(id);
    }
    json!({"destinations": [destination], "whatsApp": whatsapp})
}

async fn gateway(store: StoreKind, ctlive: &StandIn, infobip: &StandIn) -> TestGateway {
    TestGateway::spawn(store, ctlive, |settings| with_infobip(settings, infobip)).await
}

/// Every kind of send (text, each media, templates with and without their optional fields, SMS
/// failover, the seed examples) is answered `PENDING_ACCEPTED` with its messageId and reaches
/// Infobip as sent, one destination, its messageId and the scenario set, valid against Infobip's
/// schema, with `Authorization: App <key>`.
async fn every_kind_of_send_reaches_infobip_as_sent(store: StoreKind) {
    let (ctlive, infobip, origin) = (StandIn::start(), StandIn::start(), StandIn::start());
    for (path, content_type) in [
        ("/infobip-logo.png", "image/png"),
        ("/doc.pdf", "application/pdf"),
        ("/a.mp3", "audio/mpeg"),
        ("/v.mp4", "video/mp4"),
    ] {
        origin.put_file(
            path,
            content_type,
            bytes::Bytes::from_static(b"media bytes"),
        );
    }
    let app = gateway(store, &ctlive, &infobip).await;
    let cases = vec![
        send_to(
            "41793026727",
            Some("kind-text"),
            json!({"text": "This WhatsApp message will be delivered."}),
        ),
        send_to(
            "41793026728",
            Some("kind-image"),
            json!({"text": "Get your message across!", "imageUrl": origin.url("/infobip-logo.png")}),
        ),
        send_to(
            "41793026729",
            Some("kind-file"),
            json!({"text": "File caption", "fileUrl": origin.url("/doc.pdf")}),
        ),
        send_to(
            "41793026730",
            Some("kind-audio"),
            json!({"text": "Listen", "audioUrl": origin.url("/a.mp3")}),
        ),
        send_to(
            "41793026731",
            Some("kind-video"),
            json!({"text": "Watch", "videoUrl": origin.url("/v.mp4")}),
        ),
        send_to(
            "41793026732",
            Some("kind-template"),
            json!({"templateName": "template_name", "templateNamespace": "whatsapp:hsm:templatenamespace", "templateData": ["1", "12"], "language": "en_US", "policy": "deterministic"}),
        ),
        send_to(
            "41793026733",
            Some("kind-template-minimal"),
            json!({"templateName": "template_name", "templateData": [], "language": "en"}),
        ),
        {
            let mut send = send_to(
                "41793026734",
                Some("kind-failover"),
                json!({"text": "Get your message across!", "imageUrl": origin.url("/infobip-logo.png")}),
            );
            send["scenarioKey"] = json!("CC9F01A5DC7BEE2C2B829D203482A654");
            send["sms"] = json!({"text": "This text will be received via SMS if WhatsApp message is not delivered.", "validityPeriod": 1});
            send
        },
    ];
    for send in &cases {
        let (status, answer) = app.send(send).await;
        assert_eq!(status, StatusCode::OK, "{send} answered {answer}");
        let message = &answer["messages"][0];
        assert_eq!(message["status"]["name"], "PENDING_ACCEPTED", "{answer}");
        assert_eq!(message["status"]["groupName"], "PENDING");
        assert_eq!(
            message["to"]["phoneNumber"],
            send["destinations"][0]["to"]["phoneNumber"]
        );
        assert_eq!(message["messageId"], send["destinations"][0]["messageId"]);
    }
    eventually("every send at Infobip", PATIENCE, || {
        (infobip.taken().len() == cases.len()).then_some(())
    })
    .await;
    let received = infobip.received();
    for send in &cases {
        let id = &send["destinations"][0]["messageId"];
        let got = received
            .iter()
            .find(|r| r.body["destinations"][0]["messageId"] == *id)
            .unwrap_or_else(|| panic!("{id} did not reach Infobip"));
        assert_eq!(got.path, "/default/omni/1/advanced");
        assert_eq!(
            got.authorization.as_deref(),
            Some(format!("App {DEFAULT_INFOBIP_KEY}").as_str())
        );
        assert_eq!(got.content_type.as_deref(), Some("application/json"));
        assert_valid_omni(&got.body);
        let mut expected = send["whatsApp"].clone();
        for (field, kind) in [
            ("imageUrl", "Image"),
            ("fileUrl", "Document"),
            ("audioUrl", "Audio"),
            ("videoUrl", "Video"),
        ] {
            if expected.get(field).is_some() {
                let link = got.body["whatsApp"][field].as_str().unwrap_or_default();
                let prefix = format!("{}/default/imchannel/get{kind}Message/", app.address);
                let id = link
                    .strip_prefix(&prefix)
                    .unwrap_or_else(|| panic!("{field} {link} is not imchannel's link"));
                assert!(uuid::Uuid::parse_str(id).is_ok(), "{id} is a UUID");
                expected[field] = json!(link);
            }
        }
        assert_eq!(
            got.body["whatsApp"], expected,
            "whatsApp passed on, its media URL imchannel's own"
        );
        assert_eq!(
            got.body["destinations"], send["destinations"],
            "one destination, its messageId kept"
        );
        assert_eq!(got.body.get("sms"), send.get("sms"));
        let scenario = send
            .get("scenarioKey")
            .cloned()
            .unwrap_or(json!(DEFAULT_SCENARIO));
        assert_eq!(
            got.body["scenarioKey"], scenario,
            "CTLive's scenario, else the tenant's"
        );
    }
}

/// A send to several destinations is answered per destination, in order, and becomes one
/// request per destination (each its own conversation), each with its own messageId.
async fn several_destinations_become_one_send_each(store: StoreKind) {
    let (ctlive, infobip) = (StandIn::start(), StandIn::start());
    let app = gateway(store, &ctlive, &infobip).await;
    let send = json!({
        "bulkId": "bulk-1",
        "destinations": [
            {"to": {"phoneNumber": "41790000001"}, "messageId": "multi-1"},
            {"to": {"phoneNumber": "41790000002"}},
            {"to": {"phoneNumber": "41790000003"}, "messageId": "multi-3"}
        ],
        "whatsApp": {"text": "to all"}
    });
    let (status, answer) = app.send(&send).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let messages = answer["messages"].as_array().expect("messages");
    let phones: Vec<&str> = messages
        .iter()
        .map(|m| m["to"]["phoneNumber"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(phones, ["41790000001", "41790000002", "41790000003"]);
    assert_eq!(messages[0]["messageId"], "multi-1");
    assert_eq!(messages[2]["messageId"], "multi-3");
    let generated = messages[1]["messageId"]
        .as_str()
        .expect("a generated messageId");
    assert_eq!(
        uuid::Uuid::parse_str(generated)
            .map(|id| id.get_version_num())
            .ok(),
        Some(4),
        "{generated}"
    );
    eventually("three sends at Infobip", PATIENCE, || {
        (infobip.taken().len() == 3).then_some(())
    })
    .await;
    for message in messages {
        let got = infobip
            .received()
            .into_iter()
            .find(|r| r.body["destinations"][0]["messageId"] == message["messageId"])
            .expect("each destination sent");
        assert_eq!(got.body["destinations"].as_array().map(Vec::len), Some(1));
        assert_eq!(got.body["destinations"][0]["to"], message["to"]);
        assert_eq!(
            got.body["bulkId"], "bulk-1",
            "the body CTLive sent, destination aside"
        );
        assert_valid_omni(&got.body);
    }
}

/// A resend with the same messageId is answered again, the same, and not sent twice.
async fn a_resend_is_answered_and_not_sent_twice(store: StoreKind) {
    let (ctlive, infobip) = (StandIn::start(), StandIn::start());
    let app = gateway(store, &ctlive, &infobip).await;
    let send = send_to("41791111111", Some("resend-1"), json!({"text": "once"}));
    let first = app.send(&send).await;
    let second = app.send(&send).await;
    assert_eq!(first, second, "the resend gets the same answer");
    assert_eq!(first.0, StatusCode::OK);
    app.send(&send_to(
        "41791111111",
        Some("resend-2"),
        json!({"text": "next"}),
    ))
    .await;
    eventually("the next send at Infobip", PATIENCE, || {
        (infobip.taken().len() == 2).then_some(())
    })
    .await;
    stays("no third send", Duration::from_millis(300), || {
        infobip.received().len() == 2
    })
    .await;
    let ids: Vec<Value> = infobip
        .received()
        .iter()
        .map(|r| r.body["destinations"][0]["messageId"].clone())
        .collect();
    assert_eq!(ids, [json!("resend-1"), json!("resend-2")]);
}

/// The tenant `acme` authenticates to Infobip with Basic auth, and CTLive with acme's own
/// credentials.
async fn a_basic_auth_tenant_sends_with_basic_auth(store: StoreKind) {
    let (ctlive, infobip) = (StandIn::start(), StandIn::start());
    let app = gateway(store, &ctlive, &infobip).await;
    let send = send_to("41792222222", Some("acme-1"), json!({"text": "from acme"}));
    let (status, answer) = app
        .post(
            "/acme/imchannel/omni/1/advanced",
            send.to_string(),
            Some(ACME_API),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _) = app
        .post(
            "/acme/imchannel/omni/1/advanced",
            send.to_string(),
            Some(DEFAULT_API),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "another tenant's credentials"
    );
    eventually("acme's send at Infobip", PATIENCE, || {
        (infobip.taken().len() == 1).then_some(())
    })
    .await;
    let got = &infobip.received()[0];
    assert_eq!(got.path, "/acme/omni/1/advanced");
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", ACME_INFOBIP.0, ACME_INFOBIP.1))
    );
    assert_eq!(got.authorization.as_deref(), Some(basic.as_str()));
    assert!(
        got.body.get("scenarioKey").is_none(),
        "acme has no scenario: Infobip's default applies"
    );
    assert_valid_omni(&got.body);
}

/// An empty `scenarioKey` counts as none: the tenant's is used; a `+` before the number is
/// accepted.
async fn an_empty_scenario_key_takes_the_tenants(store: StoreKind) {
    let (ctlive, infobip) = (StandIn::start(), StandIn::start());
    let app = gateway(store, &ctlive, &infobip).await;
    let mut send = send_to("+41793030303", Some("empty-scenario"), json!({"text": "x"}));
    send["scenarioKey"] = json!("");
    let (status, answer) = app.send(&send).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["messages"][0]["to"]["phoneNumber"], "41793030303");
    eventually("the send at Infobip", PATIENCE, || {
        infobip.taken().first().cloned()
    })
    .await;
    let got = &infobip.taken()[0];
    assert_eq!(got["scenarioKey"], DEFAULT_SCENARIO);
    assert_eq!(
        got["destinations"][0]["to"]["phoneNumber"], "+41793030303",
        "the number as CTLive wrote it"
    );
}

/// Each bad send gets its 4xx with a JSON error saying what is wrong; nothing reaches Infobip.
async fn bad_sends_are_refused_and_nothing_is_sent(store: StoreKind) {
    let (ctlive, infobip) = (StandIn::start(), StandIn::start());
    let app = TestGateway::spawn(store, &ctlive, |settings| {
        with_infobip(settings, &infobip);
        settings.server.max_body_bytes = 16384;
    })
    .await;
    let text = |t: &str| json!({"text": t});
    let path = "/imchannel/omni/1/advanced";
    let cases: Vec<BadSend> = vec![
        ("malformed JSON", "{\"destinations\":".into(), Some(DEFAULT_API), StatusCode::BAD_REQUEST, "malformed JSON"),
        ("no destination", json!({"destinations": [], "whatsApp": text("x")}).to_string(), Some(DEFAULT_API), StatusCode::BAD_REQUEST, "destinations: empty"),
        ("destinations missing", json!({"whatsApp": text("x")}).to_string(), Some(DEFAULT_API), StatusCode::BAD_REQUEST, "destinations: missing"),
        ("phone not digits", send_to("+41-79", None, text("x")).to_string(), Some(DEFAULT_API), StatusCode::BAD_REQUEST, "destinations[0].to.phoneNumber"),
        ("phone a number", json!({"destinations": [{"to": {"phoneNumber": 41}}], "whatsApp": text("x")}).to_string(), Some(DEFAULT_API), StatusCode::BAD_REQUEST, "phoneNumber"),
        ("no text and no template", send_to("41", None, json!({})).to_string(), Some(DEFAULT_API), StatusCode::BAD_REQUEST, "no text and no template"),
        ("no whatsApp", json!({"destinations": [{"to": {"phoneNumber": "41"}}]}).to_string(), Some(DEFAULT_API), StatusCode::BAD_REQUEST, "whatsApp: missing"),
        ("text too long", send_to("41", None, text(&"é".repeat(4097))).to_string(), Some(DEFAULT_API), StatusCode::BAD_REQUEST, "4097 characters, at most 4096"),
        ("image without imageUrl", send_to("41", None, json!({"text": "x", "imageUrl": ""})).to_string(), Some(DEFAULT_API), StatusCode::BAD_REQUEST, "whatsApp.imageUrl: empty"),
        ("image url not a URL", send_to("41", None, json!({"text": "x", "imageUrl": "logo.png"})).to_string(), Some(DEFAULT_API), StatusCode::BAD_REQUEST, "whatsApp.imageUrl"),
        ("two media", send_to("41", None, json!({"text": "x", "imageUrl": "http://a/b", "fileUrl": "http://a/c"})).to_string(), Some(DEFAULT_API), StatusCode::BAD_REQUEST, "at most one"),
        ("template without name", send_to("41", None, json!({"templateData": ["1"], "language": "en"})).to_string(), Some(DEFAULT_API), StatusCode::BAD_REQUEST, "whatsApp.templateName: missing"),
        ("template without data", send_to("41", None, json!({"templateName": "t", "language": "en"})).to_string(), Some(DEFAULT_API), StatusCode::BAD_REQUEST, "whatsApp.templateData: missing"),
        ("template without language", send_to("41", None, json!({"templateName": "t", "templateData": []})).to_string(), Some(DEFAULT_API), StatusCode::BAD_REQUEST, "whatsApp.language: missing"),
        ("template data not strings", send_to("41", None, json!({"templateName": "t", "templateData": [1], "language": "en"})).to_string(), Some(DEFAULT_API), StatusCode::BAD_REQUEST, "list of strings"),
        ("sms without text", json!({"destinations": [{"to": {"phoneNumber": "41"}}], "whatsApp": text("x"), "sms": {}}).to_string(), Some(DEFAULT_API), StatusCode::BAD_REQUEST, "sms.text"),
        ("a messageId twice", json!({"destinations": [{"to": {"phoneNumber": "41"}, "messageId": "m"}, {"to": {"phoneNumber": "42"}, "messageId": "m"}], "whatsApp": text("x")}).to_string(), Some(DEFAULT_API), StatusCode::BAD_REQUEST, "appears twice"),
        ("oversize body", send_to("41", None, text(&"x".repeat(20_000))).to_string(), Some(DEFAULT_API), StatusCode::PAYLOAD_TOO_LARGE, "16384"),
        ("no credentials", send_to("41", None, text("x")).to_string(), None, StatusCode::UNAUTHORIZED, "credentials"),
        ("the webhook's credentials", send_to("41", None, text("x")).to_string(), Some(DEFAULT_WEBHOOK), StatusCode::UNAUTHORIZED, "credentials"),
    ];
    for (label, body, credentials, expected, says) in cases {
        let (status, answer) = app.post(path, body, credentials).await;
        assert_eq!(status, expected, "{label}: answered {answer}");
        let text = answer["requestError"]["serviceException"]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(
            text.contains(says),
            "{label}: expected {says:?} in {answer}"
        );
    }
    let (status, _) = app
        .post(
            "/nobody/imchannel/omni/1/advanced",
            send_to("41", None, text("x")).to_string(),
            Some(DEFAULT_API),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.send(&send_to("41793333333", Some("bad-sentinel"), text("after")))
        .await;
    eventually("the sentinel at Infobip", PATIENCE, || {
        (!infobip.taken().is_empty()).then_some(())
    })
    .await;
    stays("only the sentinel sent", Duration::from_millis(300), || {
        infobip.received().len() == 1
    })
    .await;
}

/// One row of the bad-send table: label, body, credentials, expected status, and a fragment the
/// error text must contain.
type BadSend = (
    &'static str,
    String,
    Option<(&'static str, &'static str)>,
    StatusCode,
    &'static str,
);

/// The schema the stand-in checks with refuses what Infobip would refuse (the check is real).
#[test]
fn the_omni_schema_refuses_a_malformed_send() {
    assert!(is_valid_omni(
        &json!({"destinations": [{"to": {"phoneNumber": "41"}}], "whatsApp": {"text": "x"}})
    ));
    assert!(!is_valid_omni(
        &json!({"destinations": "41", "whatsApp": {"text": "x"}})
    ));
    assert!(!is_valid_omni(
        &json!({"destinations": [{"to": {"phoneNumber": "41"}}], "whatsApp": {"text": 5}})
    ));
}

on_both_stores!(
    every_kind_of_send_reaches_infobip_as_sent,
    several_destinations_become_one_send_each,
    a_resend_is_answered_and_not_sent_twice,
    a_basic_auth_tenant_sends_with_basic_auth,
    bad_sends_are_refused_and_nothing_is_sent,
    an_empty_scenario_key_takes_the_tenants,
);
