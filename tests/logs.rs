//! Logs (DESIGN.md §5): a messageId's whole path can be grepped, and no configured password, key,
//! or the Basic form of one, ever appears in a log line or an error answer, even at debug level.

mod support;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use support::fixtures::{batch, text_message};
use support::poll::{eventually, PATIENCE};
use support::process::GatewayProcess;
use support::standin::{Reply, StandIn};

const WEBHOOK_PASSWORD: &str = "wh-pass-6d1f0c";
const CTLIVE_PASSWORD: &str = "ctl-pass-a83e27";
const API_PASSWORD: &str = "api-pass-19bb4d";
const INFOBIP_KEY: &str = "ib-key-0f5e11c2";
const INFOBIP_PASSWORD: &str = "ib-pass-7a7a90";

/// A message retried through a 500 and taken, a message refused for good, a send, bad credentials
/// and a bad batch: the log tells each messageId's story and holds no secret; neither does any
/// answer.
#[actix_web::test]
async fn a_message_can_be_followed_and_no_secret_leaks() {
    let ctlive = StandIn::start();
    let mut failed_once = false;
    ctlive.reply_with(move |body| match body["results"][0]["messageId"].as_str() {
        Some("log-refused") => Reply::Status(401),
        Some("log-retried") if !failed_once => {
            failed_once = true;
            Reply::Status(500)
        }
        _ => Reply::Ok,
    });
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
bind = "127.0.0.1:0"
[delivery]
initial_backoff_ms = 20
[tenants.default]
webhook_user = "infobip"
webhook_password = "{WEBHOOK_PASSWORD}"
api_password = "{API_PASSWORD}"
ctlive_url = "{}"
ctlive_user = "ctlive"
ctlive_password = "{CTLIVE_PASSWORD}"
infobip_api_key = "{INFOBIP_KEY}"
infobip_user = "ib"
infobip_password = "{INFOBIP_PASSWORD}"
infobip_base_url = "{infobip}"
[tenants.basic]
webhook_password = "{WEBHOOK_PASSWORD}"
api_password = "{API_PASSWORD}"
ctlive_url = "{}"
infobip_auth = "basic"
infobip_user = "ib"
infobip_password = "{INFOBIP_PASSWORD}"
infobip_base_url = "{infobip}"
"#,
            ctlive.url("/ctlive"),
            ctlive.url("/ctlive"),
            infobip = ctlive.url("/infobip"),
        ),
    )
    .expect("config written");
    let gateway = GatewayProcess::start(dir.path(), &config, &[], "debug").await;

    let client = awc::Client::default();
    let webhook = "/imchannel/message";
    let send = serde_json::json!({
        "destinations": [{"to": {"phoneNumber": "492000000004"}, "messageId": "log-send"}],
        "whatsApp": {"text": "hello"}
    });
    let mut answers = Vec::new();
    for (path, user, password, body) in [
        (
            webhook,
            "infobip",
            WEBHOOK_PASSWORD,
            batch(vec![text_message("492000000001", "log-retried", "a")]).to_string(),
        ),
        (
            webhook,
            "infobip",
            WEBHOOK_PASSWORD,
            batch(vec![text_message("492000000002", "log-refused", "b")]).to_string(),
        ),
        (
            webhook,
            "infobip",
            "wrong",
            batch(vec![text_message("492000000003", "log-unauthorized", "c")]).to_string(),
        ),
        (
            webhook,
            "infobip",
            WEBHOOK_PASSWORD,
            "{\"results\":[{\"messageId\":1}]}".to_owned(),
        ),
        (
            "/imchannel/omni/1/advanced",
            "ctlive",
            API_PASSWORD,
            send.to_string(),
        ),
        (
            "/imchannel/omni/1/advanced",
            "ctlive",
            "wrong",
            send.to_string(),
        ),
        (
            "/basic/imchannel/omni/1/advanced",
            "ctlive",
            API_PASSWORD,
            send.to_string().replace("log-send", "log-basic-send"),
        ),
    ] {
        let mut response = client
            .post(format!("{}{path}", gateway.address))
            .basic_auth(user, password)
            .send_body(body)
            .await
            .expect("the gateway answers");
        answers.push(
            String::from_utf8_lossy(&response.body().await.expect("answer body")).into_owned(),
        );
    }
    eventually("both messages settled", PATIENCE, || {
        let log = gateway.log();
        (log.contains("messageId log-retried forwarded")
            && log.contains("messageId log-refused")
            && log.contains("failed for good")
            && log.contains("messageId log-send response")
            && log.contains("messageId log-basic-send response"))
        .then_some(())
    })
    .await;
    let log = gateway.log();

    let story = |id: &str| {
        log.lines()
            .filter(|line| line.contains(id))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let retried = story("log-retried");
    for step in [
        "[IMCHANNEL] [onMessage] Message received",
        "[IMCHANNEL] [forwardMessage] messageId log-retried",
        "HTTP 500",
        "retrying in",
        "forwarded to",
    ] {
        assert!(
            retried.contains(step),
            "grep log-retried should show {step:?}; it shows:\n{retried}"
        );
    }
    let sent = story("log-send");
    for step in [
        "[IMCHANNEL] [onSend] Send received",
        "[IMCHANNEL] [sendMessage] request to [",
        "/infobip/omni/1/advanced] Data [{",
        "with api key header",
        "[IMCHANNEL] [sendMessage] messageId log-send response [200]",
    ] {
        assert!(
            sent.contains(step),
            "grep log-send should show {step:?}; it shows:\n{sent}"
        );
    }
    assert!(
        story("log-basic-send").contains("with basic auth header"),
        "{}",
        story("log-basic-send")
    );
    let refused = story("log-refused");
    assert!(
        refused.contains("failed for good") && refused.contains("HTTP 401"),
        "grep log-refused:\n{refused}"
    );

    let basic = |user: &str, password: &str| STANDARD.encode(format!("{user}:{password}"));
    let secrets = [
        WEBHOOK_PASSWORD.to_owned(),
        CTLIVE_PASSWORD.to_owned(),
        API_PASSWORD.to_owned(),
        INFOBIP_KEY.to_owned(),
        INFOBIP_PASSWORD.to_owned(),
        basic("infobip", WEBHOOK_PASSWORD),
        basic("ctlive", CTLIVE_PASSWORD),
        basic("ib", INFOBIP_PASSWORD),
        basic("ctlive", API_PASSWORD),
    ];
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "the log leaks {secret}");
        for answer in &answers {
            assert!(
                !answer.contains(secret.as_str()),
                "an answer leaks {secret}: {answer}"
            );
        }
    }
}
