//! Configuration from the environment (DESIGN.md §6): `IMCHANNEL__SECTION__KEY` overrides the
//! file, values keep their text (a password `007` stays `007`), and a wrong value stops the start
//! with an error naming its key.

mod support;

use std::path::Path;

use support::fixtures::{batch, text_message};
use support::process::{config_dir, GatewayProcess};

const CONFIG: &str = r#"
[server]
bind = "127.0.0.1:0"
[tenants.default]
webhook_user = "infobip"
webhook_password = "from-the-file"
"#;

/// Environment values override the file, numbers parse into numeric keys, and a numeric-looking
/// password is taken as written.
#[actix_web::test]
async fn environment_overrides_keep_their_text() {
    let (dir, config) = config_dir(CONFIG);
    let env = [
        (
            "IMCHANNEL__TENANTS__DEFAULT__WEBHOOK_PASSWORD",
            "007".to_owned(),
        ),
        ("IMCHANNEL__SERVER__MAX_BODY_BYTES", "600".to_owned()),
    ];
    let gateway = GatewayProcess::start(dir.path(), &config, &env, "info").await;
    let client = awc::Client::default();
    let post = |password: &'static str, text: String| {
        let request = client
            .post(format!("{}/imchannel/message", gateway.address))
            .basic_auth("infobip", password);
        async move {
            let body = batch(vec![text_message("1", "env-1", &text)]).to_string();
            request
                .send_body(body)
                .await
                .expect("the gateway answers")
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        post("007", "short".into()).await,
        200,
        "the password is 007, not 7"
    );
    assert_eq!(post("7", "short".into()).await, 401);
    assert_eq!(
        post("from-the-file", "short".into()).await,
        401,
        "the environment wins"
    );
    assert_eq!(
        post("007", "x".repeat(700)).await,
        413,
        "max_body_bytes came from the environment"
    );
}

/// A wrong value from the environment stops the start with an error naming the key.
#[actix_web::test]
async fn a_wrong_setting_names_its_key() {
    let (dir, config) = config_dir(CONFIG);
    let cases = [
        ("IMCHANNEL__SERVER__BIND", "nowhere", "server.bind"),
        ("IMCHANNEL__CONVERSATION__MAX_LIVE", "lots", "max_live"),
        (
            "IMCHANNEL__TENANTS__DEFAULT__CTLIVE_URL",
            "not a url",
            "tenants.default.ctlive_url",
        ),
    ];
    for (key, value, named) in cases {
        let (ok, output) =
            GatewayProcess::run_to_end(dir.path(), &config, &[(key, value.to_owned())]);
        assert!(!ok, "{key}={value} must stop the start");
        assert!(
            output.contains(named),
            "{key}={value}: expected the error to name {named}, got {output}"
        );
    }
    let (ok, output) =
        GatewayProcess::run_to_end(dir.path(), Path::new("/nonexistent/imchannel.toml"), &[]);
    assert!(
        !ok && output.contains("/nonexistent/imchannel.toml"),
        "{output}"
    );
}
