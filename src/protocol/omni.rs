//! OMNI advanced sends (`POST /omni/1/advanced`) as CTLive posts them: checked, split into one
//! send per destination (each destination is its own conversation), the answer Infobip would give,
//! and the report that tells CTLive a send failed for good.

use std::collections::HashSet;
use std::time::SystemTime;

use bytes::Bytes;
use imchannel_actors::ports::{Candidate, ConversationKey, Lane, Notice};

use super::media_links::{MediaLinks, OUTBOUND_MEDIA};
use super::webhook::EventKind;
use serde_json::{json, Map, Value};

/// The longest WhatsApp text, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;
/// The longest destination messageId accepted.
const MAX_MESSAGE_ID_CHARS: usize = 200;
/// The longest phone number, in digits.
const MAX_PHONE_DIGITS: usize = 20;
/// The fields that make a send a template send.
const TEMPLATE_FIELDS: [&str; 5] = [
    "templateName",
    "templateNamespace",
    "templateData",
    "language",
    "policy",
];

/// One destination's share of a send, as Infobip will receive it.
#[derive(Debug)]
pub struct Send {
    /// The destination's messageId: CTLive's, or generated.
    pub message_id: String,
    /// The customer's number.
    pub phone: String,
    /// The OMNI body for this destination alone.
    pub body: Bytes,
}

impl Send {
    /// The store candidate of this send for `tenant`: deduplicated by its messageId, in the
    /// outbound lane of the customer's conversation.
    pub fn into_candidate(self, tenant: &str) -> Candidate {
        Candidate {
            dedup_key: format!("{tenant}:send:{}", self.message_id),
            rank: None,
            conversation: ConversationKey::new(tenant, self.phone),
            lane: Lane::Outbound,
            after: None,
            reference: self.message_id,
            payload: self.body,
        }
    }
}

/// The media source of a send: fetched once into item `id`, which Infobip then fetches from
/// imchannel.
#[derive(Debug, PartialEq, Eq)]
pub struct OutboundMedia {
    /// The item's id in the media cache.
    pub id: String,
    /// The URL CTLive gave: `http(s)` or `data:`.
    pub source: String,
}

/// A checked send: one send per destination, and its media source if it has one.
#[derive(Debug)]
pub struct ParsedSend {
    /// One per destination, in order.
    pub sends: Vec<Send>,
    /// The media all of them share.
    pub media: Option<OutboundMedia>,
}

/// Checks `tenant`'s send and splits it per destination, with `default_scenario` where CTLive
/// gave no `scenarioKey` (none when empty: Infobip then uses the account's default), and its media
/// URL replaced by imchannel's own (`links`). The first problem found is the error, naming where
/// it is.
pub fn parse_send(
    body: &[u8],
    tenant: &str,
    default_scenario: &str,
    links: &MediaLinks,
) -> Result<ParsedSend, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|error| format!("malformed JSON: {error}"))?;
    let Value::Object(mut send) = value else {
        return Err("body: expected a JSON object".into());
    };
    let no_scenario = match send.get("scenarioKey") {
        None | Some(Value::Null) => true,
        Some(Value::String(key)) => key.trim().is_empty(),
        Some(_) => return Err("scenarioKey: expected a string".into()),
    };
    if no_scenario {
        send.remove("scenarioKey");
        if !default_scenario.is_empty() {
            send.insert("scenarioKey".into(), default_scenario.into());
        }
    }
    check_whatsapp(send.get("whatsApp"))?;
    if let Some(sms) = send.get("sms") {
        let text = sms.get("text").and_then(Value::as_str).unwrap_or_default();
        if !sms.is_object() || text.trim().is_empty() {
            return Err("sms.text: missing (an sms failover block needs its text)".into());
        }
    }
    let destinations = match send.remove("destinations") {
        Some(Value::Array(destinations)) if !destinations.is_empty() => destinations,
        Some(Value::Array(_)) => return Err("destinations: empty".into()),
        Some(_) => return Err("destinations: expected a list".into()),
        None => return Err("destinations: missing".into()),
    };
    let media = link_media(&mut send, tenant, links);
    let mut seen = HashSet::new();
    let sends = destinations
        .into_iter()
        .enumerate()
        .map(|(index, destination)| {
            let send = split(&send, index, destination)?;
            if !seen.insert(send.message_id.clone()) {
                return Err(format!(
                    "destinations[{index}].messageId: {} appears twice",
                    send.message_id
                ));
            }
            Ok(send)
        })
        .collect::<Result<_, _>>()?;
    Ok(ParsedSend { sends, media })
}

/// Replaces the send's media URL (checked before) by imchannel's own link to a new item; the
/// item's id and the original URL.
fn link_media(
    send: &mut Map<String, Value>,
    tenant: &str,
    links: &MediaLinks,
) -> Option<OutboundMedia> {
    let whatsapp = send.get_mut("whatsApp")?.as_object_mut()?;
    let (field, route) = OUTBOUND_MEDIA
        .into_iter()
        .find(|(field, _)| whatsapp.contains_key(*field))?;
    let id = MediaLinks::new_id();
    let source = whatsapp.insert(field.to_owned(), links.outbound(tenant, route, &id).into())?;
    Some(OutboundMedia {
        id,
        source: source.as_str().unwrap_or_default().trim().to_owned(),
    })
}

/// The send for one destination: the request with only that destination, its messageId set.
fn split(send: &Map<String, Value>, index: usize, destination: Value) -> Result<Send, String> {
    let at = format!("destinations[{index}]");
    let Value::Object(mut destination) = destination else {
        return Err(format!("{at}: expected an object"));
    };
    let phone = destination
        .get("to")
        .and_then(|to| to.get("phoneNumber"))
        .ok_or_else(|| format!("{at}.to.phoneNumber: missing"))?;
    // The conversation is keyed without a leading `+`; the body keeps the number as sent.
    let phone = phone
        .as_str()
        .map(super::customer_number)
        .filter(|number| {
            !number.is_empty()
                && number.len() <= MAX_PHONE_DIGITS
                && number.bytes().all(|b| b.is_ascii_digit())
        })
        .ok_or_else(|| {
            format!(
                "{at}.to.phoneNumber: expected 1 to {MAX_PHONE_DIGITS} digits after an optional +, got {phone}"
            )
        })?
        .to_owned();
    let message_id = match destination.get("messageId") {
        None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
        Some(Value::String(id)) if !id.trim().is_empty() && id.chars().count() <= MAX_MESSAGE_ID_CHARS => id.clone(),
        Some(_) => return Err(format!("{at}.messageId: expected a non-empty string of at most {MAX_MESSAGE_ID_CHARS} characters")),
    };
    destination.insert("messageId".into(), message_id.clone().into());
    let mut body = send.clone();
    body.insert(
        "destinations".into(),
        Value::Array(vec![Value::Object(destination)]),
    );
    Ok(Send {
        message_id,
        phone,
        body: Value::Object(body).to_string().into(),
    })
}

/// Checks the `whatsApp` block: a template with its mandatory fields, or a text, with at most one
/// media URL.
fn check_whatsapp(whatsapp: Option<&Value>) -> Result<(), String> {
    let Some(Value::Object(whatsapp)) = whatsapp else {
        return Err(match whatsapp {
            None => "whatsApp: missing".into(),
            Some(_) => "whatsApp: expected an object".into(),
        });
    };
    let string = |field: &str| -> Result<Option<&str>, String> {
        match whatsapp.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.as_str())),
            Some(_) => Err(format!("whatsApp.{field}: expected a string")),
        }
    };
    if let Some(text) = string("text")? {
        let chars = text.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(format!(
                "whatsApp.text: {chars} characters, at most {MAX_TEXT_CHARS}"
            ));
        }
    }
    let media: Vec<&str> = OUTBOUND_MEDIA
        .into_iter()
        .map(|(field, _)| field)
        .filter(|field| whatsapp.contains_key(*field))
        .collect();
    for field in &media {
        let url = string(field)?.unwrap_or_default().trim();
        if url.is_empty() {
            return Err(format!(
                "whatsApp.{field}: empty (a media send needs its URL)"
            ));
        }
        if !["http://", "https://", "data:"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            return Err(format!(
                "whatsApp.{field}: expected an http(s) or data: URL"
            ));
        }
    }
    if media.len() > 1 {
        return Err(format!(
            "whatsApp: at most one of imageUrl, fileUrl, audioUrl, videoUrl, got {}",
            media.join(" and ")
        ));
    }
    if TEMPLATE_FIELDS
        .iter()
        .any(|field| whatsapp.contains_key(*field))
    {
        for field in ["templateName", "language"] {
            if string(field)?.is_none_or(|value| value.trim().is_empty()) {
                return Err(format!("whatsApp.{field}: missing (a template send needs templateName, templateData and language)"));
            }
        }
        match whatsapp.get("templateData") {
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
            Some(_) => return Err("whatsApp.templateData: expected a list of strings".into()),
            None => return Err("whatsApp.templateData: missing (a template send needs templateName, templateData and language)".into()),
        }
        string("templateNamespace")?;
        string("policy")?;
    } else if string("text")?.is_none_or(|text| text.trim().is_empty()) {
        return Err("whatsApp: no text and no template (templateName)".into());
    }
    Ok(())
}

/// Infobip's answer to an accepted send: one `PENDING_ACCEPTED` per destination.
pub fn accepted_answer(sends: &[Send]) -> Value {
    let messages: Vec<Value> = sends
        .iter()
        .map(|send| {
            json!({
                "to": {"phoneNumber": send.phone},
                "status": {
                    "groupId": 1,
                    "groupName": "PENDING",
                    "id": 26,
                    "name": "PENDING_ACCEPTED",
                    "description": "Message accepted, pending for delivery."
                },
                "messageId": send.message_id,
            })
        })
        .collect();
    json!({ "messages": messages })
}

/// Why a send failed for good, as its report tells CTLive.
pub struct Rejection<'a> {
    /// Infobip's status of the message (id and name), when its answer carried one.
    pub status: Option<(i64, &'a str)>,
    /// The HTTP status of Infobip's answer, when there was one.
    pub http_status: Option<u16>,
    /// What went wrong, for people.
    pub description: &'a str,
}

/// The delivery report (group `REJECTED`) that reaches CTLive for `tenant`'s send that failed
/// for good, with the identity of a report Infobip could send about it too.
pub fn rejected_report(
    tenant: &str,
    message_id: &str,
    destination: &str,
    sent_at: SystemTime,
    rejection: &Rejection<'_>,
) -> Notice {
    let (status_id, status_name) = rejection.status.unwrap_or((0, "REJECTED_NOT_SENT"));
    let (dedup_key, rank) = EventKind::final_delivery(status_name).identity(tenant, message_id);
    let payload = json!({
        "bulkId": "",
        "messageId": message_id,
        "to": destination,
        "sentAt": infobip_time(sent_at),
        "doneAt": infobip_time(SystemTime::now()),
        "channel": "WHATSAPP",
        "status": {
            "groupId": 5,
            "groupName": "REJECTED",
            "id": status_id,
            "name": status_name,
            "description": rejection.description,
        },
        "error": {
            "groupId": 0,
            "groupName": "IMCHANNEL",
            "id": rejection.http_status.unwrap_or(0),
            "name": "NOT_SENT",
            "description": rejection.description,
            "permanent": true,
        },
    })
    .to_string()
    .into();
    Notice {
        dedup_key,
        rank,
        payload,
    }
}

/// A time as Infobip writes it: `2019-04-09T16:01:56.494+0000`.
fn infobip_time(at: SystemTime) -> String {
    let rfc3339 = humantime::format_rfc3339_millis(at).to_string();
    format!("{}+0000", rfc3339.trim_end_matches('Z'))
}

/// The text of Infobip's error answer (`requestError.serviceException.text`), or the raw body.
pub fn error_text(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|answer| {
            answer["requestError"]["serviceException"]["text"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned())
}

/// The status Infobip's 200 answer gives the message, when it is in group `REJECTED`: its id,
/// name and description.
pub fn rejected_status(answer: &[u8]) -> Option<(i64, String, String)> {
    let answer: Value = serde_json::from_slice(answer).ok()?;
    let status = &answer["messages"][0]["status"];
    (status["groupId"].as_i64() == Some(5) || status["groupName"] == "REJECTED").then(|| {
        (
            status["id"].as_i64().unwrap_or(0),
            status["name"].as_str().unwrap_or("REJECTED").to_owned(),
            status["description"]
                .as_str()
                .unwrap_or("rejected by Infobip")
                .to_owned(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Infobip's timestamp form.
    #[test]
    fn times_are_written_as_infobip_writes_them() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_554_825_716_494);
        assert_eq!(infobip_time(at), "2019-04-09T16:01:56.494+0000");
    }

    /// A send is split per destination, each with its messageId and the tenant's scenario.
    #[test]
    fn splits_per_destination() {
        let body = br#"{"bulkId":"b","destinations":[{"to":{"phoneNumber":"1"},"messageId":"m1"},{"to":{"phoneNumber":"2"}}],"whatsApp":{"text":"hi"},"extra":1}"#;
        let links = MediaLinks::new("http://gw");
        let sends = parse_send(body, "t", "SCEN", &links).expect("valid").sends;
        assert_eq!(sends.len(), 2);
        assert_eq!(sends[0].message_id, "m1");
        let second: Value = serde_json::from_slice(&sends[1].body).expect("JSON");
        assert_eq!(second["destinations"][0]["to"]["phoneNumber"], "2");
        assert_eq!(
            second["destinations"][0]["messageId"],
            sends[1].message_id.as_str()
        );
        assert_eq!(second["scenarioKey"], "SCEN");
        assert_eq!(second["extra"], 1);
        assert_eq!(
            second["bulkId"], "b",
            "the body CTLive sent, destination aside"
        );
    }
}
