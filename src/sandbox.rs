//! `imchannel sandbox`: stand-ins for Infobip and CTLive on the addresses the config names, each
//! printing what it receives, so that a newcomer can watch messages flow on one machine.

use std::collections::BTreeSet;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use awc::http::Uri;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::config::Settings;

/// Serves the stand-ins until interrupted.
pub async fn run(settings: &Settings) -> std::io::Result<()> {
    let mut addresses = BTreeSet::new();
    for tenant in settings.tenants.values() {
        for url in [&tenant.infobip_base_url, &tenant.ctlive_url] {
            addresses.insert(host_and_port(url)?);
        }
    }
    let mut server = HttpServer::new(|| App::new().default_service(web::to(receive))).workers(1);
    for address in &addresses {
        server = server.bind(address)?;
        println!("[sandbox] listening on http://{address}: POST /omni/1/advanced plays Infobip, any other POST plays CTLive");
    }
    server.run().await
}

fn host_and_port(url: &str) -> std::io::Result<String> {
    let invalid = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not a URL: {url}"),
        )
    };
    let uri: Uri = url.parse().map_err(|_| invalid())?;
    let host = uri.host().ok_or_else(invalid)?;
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    Ok(format!("{host}:{port}"))
}

/// Prints the request; answers a send as Infobip would, anything else as CTLive would.
async fn receive(req: HttpRequest, body: Bytes) -> HttpResponse {
    let text = String::from_utf8_lossy(&body);
    if req.path().ends_with("/omni/1/advanced") {
        println!("[sandbox] [infobip] {} {} {text}", req.method(), req.path());
        let destinations = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|send| send.get("destinations").cloned())
            .and_then(|d| d.as_array().cloned())
            .unwrap_or_default();
        let messages: Vec<Value> = destinations
            .iter()
            .map(|destination| {
                json!({
                    "to": {"phoneNumber": destination["to"]["phoneNumber"]},
                    "status": {"groupId": 1, "groupName": "PENDING", "id": 7, "name": "PENDING_ENROUTE", "description": "Message sent to next instance"},
                    "messageId": destination.get("messageId").cloned().unwrap_or_else(|| json!(uuid::Uuid::new_v4().to_string())),
                })
            })
            .collect();
        HttpResponse::Ok().json(json!({ "messages": messages }))
    } else {
        println!("[sandbox] [ctlive] {} {} {text}", req.method(), req.path());
        HttpResponse::Ok().json(json!({}))
    }
}
