//! The newcomer's quickstart: `imchannel sandbox` plays Infobip and CTLive on the configured
//! addresses and prints what they receive; a webhook posted to `imchannel serve` shows up there.

mod support;

use std::time::Duration;

use support::fixtures;
use support::poll::eventually;
use support::process::GatewayProcess;
use support::redis_server::free_port;

/// The README's quickstart on free ports: the seed webhook goes through the gateway to the
/// sandbox's CTLive, and the sandbox's Infobip answers a send with Infobip's response shape.
#[actix_web::test]
async fn the_quickstart_shows_a_message_flowing() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let (infobip_port, ctlive_port) = (free_port(), free_port());
    let env = [
        ("IMCHANNEL__SERVER__BIND", "127.0.0.1:0".to_owned()),
        (
            "IMCHANNEL__TENANTS__DEFAULT__INFOBIP_BASE_URL",
            format!("http://127.0.0.1:{infobip_port}"),
        ),
        (
            "IMCHANNEL__TENANTS__DEFAULT__CTLIVE_URL",
            format!("http://127.0.0.1:{ctlive_port}/imchannel/message"),
        ),
    ];
    let sandbox = GatewayProcess::sandbox(dir.path(), &config, &env).await;
    let gateway = GatewayProcess::start(dir.path(), &config, &env, "info").await;
    let client = awc::Client::default();
    let seed = fixtures::webhook("seed_text_with_contact");
    let status = client
        .post(format!("{}/imchannel/message", gateway.address))
        .basic_auth("infobip", "change-me")
        .send_json(&seed)
        .await
        .expect("the gateway answers")
        .status();
    assert_eq!(status, 200, "the shipped credentials work");
    eventually(
        "the sandbox's CTLive prints the message",
        Duration::from_secs(15),
        || {
            sandbox
                .log()
                .lines()
                .any(|line| {
                    line.starts_with("[sandbox] [ctlive]")
                        && line.contains("ABEGOFl3VCQoAhBalbc6rTQT6mgS29EmGZ7a")
                })
                .then_some(())
        },
    )
    .await;

    let send = serde_json::json!({
        "scenarioKey": "CC9F01A5DC7BEE2C2B829D203482A654",
        "destinations": [{"to": {"phoneNumber": "41793026727"}}],
        "whatsApp": {"text": "This WhatsApp message will be delivered."}
    });
    let mut response = client
        .post(format!("http://127.0.0.1:{infobip_port}/omni/1/advanced"))
        .send_json(&send)
        .await
        .expect("the sandbox answers");
    let answer: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(answer["messages"][0]["to"]["phoneNumber"], "41793026727");
    assert_eq!(answer["messages"][0]["status"]["groupName"], "PENDING");
    assert!(sandbox
        .log()
        .contains("[sandbox] [infobip] POST /omni/1/advanced"));
}
