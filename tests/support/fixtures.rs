//! The webhook fixtures under `tests/fixtures/webhooks/`: seed examples and Infobip's OpenAPI
//! examples, each with its own messageId.

use std::path::PathBuf;

use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks")
}

/// Every webhook fixture: (file stem, parsed body), sorted by name.
pub fn webhooks() -> Vec<(String, Value)> {
    let mut fixtures: Vec<(String, Value)> = std::fs::read_dir(dir())
        .expect("tests/fixtures/webhooks exists")
        .map(|entry| entry.expect("readable fixture dir").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable fixture");
            let body = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("fixture {} is not JSON: {e}", path.display()));
            let stem = path
                .file_stem()
                .expect("named")
                .to_string_lossy()
                .into_owned();
            (stem, body)
        })
        .collect();
    fixtures.sort_by(|a, b| a.0.cmp(&b.0));
    fixtures
}

/// One fixture by file stem.
pub fn webhook(stem: &str) -> Value {
    let text = std::fs::read_to_string(dir().join(format!("{stem}.json")))
        .unwrap_or_else(|e| panic!("fixture {stem}: {e}"));
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// An inbound TEXT message from `from` with its own messageId and text.
pub fn text_message(from: &str, message_id: &str, text: &str) -> Value {
    serde_json::json!({
        "from": from,
        "to": "447860099299",
        "integrationType": "WHATSAPP",
        "receivedAt": "2025-02-27T15:44:57.000+0000",
        "messageId": message_id,
        "pairedMessageId": null,
        "callbackData": null,
        "message": {"type": "TEXT", "text": text},
        "contact": {"name": "Test Customer"},
        "price": {"pricePerMessage": 0, "currency": "SEK"}
    })
}

/// A delivery report for `message_id` to `to` with the given status group and name.
pub fn delivery_report(
    to: &str,
    message_id: &str,
    group_id: u8,
    group_name: &str,
    name: &str,
) -> Value {
    serde_json::json!({
        "bulkId": "",
        "status": {"id": 5, "groupId": group_id, "groupName": group_name, "name": name, "description": name},
        "messageId": message_id,
        "doneAt": "2019-04-09T16:01:56.494-0300",
        "sentAt": "2019-04-09T16:00:58.647-0300",
        "to": to,
        "channel": "WHATSAPP"
    })
}

/// A seen report for `message_id` to `to`.
pub fn seen_report(to: &str, message_id: &str) -> Value {
    serde_json::json!({
        "messageId": message_id,
        "to": to,
        "sentAt": "2018-12-12T11:21:57.793+0000",
        "seenAt": "2018-12-12T11:21:58.251+0000"
    })
}

/// A webhook body carrying `events`.
pub fn batch(events: Vec<Value>) -> Value {
    let count = events.len();
    serde_json::json!({"results": events, "messageCount": count, "pendingMessageCount": 0})
}
