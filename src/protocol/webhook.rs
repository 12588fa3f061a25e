//! Infobip's webhook batch (`{"results":[...]}`), read just enough to classify, deduplicate and
//! route each event. The event itself stays exactly as received, unknown fields and types
//! included, so nothing is lost when it is forwarded.

use bytes::Bytes;
use imchannel_actors::ports::{Candidate, ConversationKey, Lane, Rank};
use indexmap::IndexMap;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::media_links::{MediaLinks, INBOUND_MEDIA_TYPES};

/// The batch: only `results` matters; `messageCount` and the rest are ignored.
#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(borrow)]
    results: Vec<&'a RawValue>,
}

/// The fields of an event that imchannel acts on.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventHead {
    message_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    message: Option<MessageHead>,
    status: Option<StatusHead>,
    seen_at: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct MessageHead {
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusHead {
    group_id: Option<i64>,
    group_name: Option<String>,
    name: Option<String>,
}

/// Ranks of a message's reports: a report ranked below one already accepted is not passed on.
const RANK_PENDING: u8 = 1;
const RANK_FINAL: u8 = 2;
const RANK_SEEN: u8 = 3;
/// Infobip's status group of pending messages.
const PENDING_GROUP_ID: i64 = 1;

/// What kind of event, with what identifies it beyond its messageId.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A customer's message (has `message`).
    Inbound,
    /// A delivery report (has `status`), with its status name and rank.
    Delivery {
        /// `status.name`, e.g. `DELIVERED_TO_HANDSET`.
        status: String,
        /// PENDING below the final statuses.
        rank: u8,
    },
    /// A seen report (has `seenAt`).
    Seen,
}

/// One event of a batch, checked, with its raw JSON.
#[derive(Debug)]
pub struct Event {
    /// What it is.
    pub kind: EventKind,
    /// Infobip's messageId.
    pub message_id: String,
    /// The customer's number: `from` of a message, `to` of a report.
    pub customer: String,
    /// The event exactly as received (until [`link_media`](Event::link_media) rewrites its
    /// media URL).
    pub raw: Bytes,
    /// The URL of an inbound media message, which imchannel downloads.
    pub media_url: Option<String>,
}

/// An inbound media item: downloaded from `source` once, into item `id`.
#[derive(Debug, PartialEq, Eq)]
pub struct InboundMedia {
    /// The item's id in the media cache.
    pub id: String,
    /// Infobip's URL of it.
    pub source: String,
}

impl EventKind {
    /// A final delivery report with status `name` (as imchannel writes for a failed send).
    pub fn final_delivery(name: &str) -> Self {
        EventKind::Delivery {
            status: name.to_owned(),
            rank: RANK_FINAL,
        }
    }

    /// The dedup key and status rank of an event of this kind about `message_id` for `tenant`:
    /// the same for a report from Infobip and for one imchannel makes itself.
    pub fn identity(&self, tenant: &str, message_id: &str) -> (String, Option<Rank>) {
        let (dedup_key, rank) = match self {
            EventKind::Inbound => (format!("{tenant}:in:{message_id}"), None),
            EventKind::Delivery { status, rank } => {
                (format!("{tenant}:dr:{message_id}:{status}"), Some(*rank))
            }
            EventKind::Seen => (format!("{tenant}:seen:{message_id}"), Some(RANK_SEEN)),
        };
        let rank = rank.map(|value| Rank {
            subject: format!("{tenant}:{message_id}"),
            value,
        });
        (dedup_key, rank)
    }
}

impl Event {
    /// For an inbound media message: points its `message.url` at imchannel's own link to a new
    /// item (`links`), keeping every other field; the item's id and Infobip's URL.
    pub fn link_media(&mut self, tenant: &str, links: &MediaLinks) -> Option<InboundMedia> {
        let source = self.media_url.take()?;
        let id = MediaLinks::new_id();
        // Every other value stays exactly as Infobip wrote it, in its place.
        type RawObject = IndexMap<String, Box<RawValue>>;
        let mut event: RawObject = serde_json::from_slice(&self.raw).ok()?;
        let mut message: RawObject = serde_json::from_str(event.get("message")?.get()).ok()?;
        let link = serde_json::to_string(&links.inbound(tenant, &id)).ok()?;
        message.insert("url".to_owned(), RawValue::from_string(link).ok()?);
        let message = RawValue::from_string(serde_json::to_string(&message).ok()?).ok()?;
        event.insert("message".to_owned(), message);
        self.raw = serde_json::to_vec(&event).ok()?.into();
        Some(InboundMedia { id, source })
    }

    /// The store candidate of this event for `tenant`: its dedup key, status rank and
    /// conversation.
    pub fn into_candidate(self, tenant: &str) -> Candidate {
        let (dedup_key, rank) = self.kind.identity(tenant, &self.message_id);
        // A report waits for the send it reports on, should that send still be on its way.
        let after = (self.kind != EventKind::Inbound).then(|| self.message_id.clone());
        Candidate {
            dedup_key,
            rank,
            conversation: ConversationKey::new(tenant, self.customer),
            lane: Lane::Inbound,
            after,
            reference: self.message_id,
            payload: self.raw,
        }
    }
}

/// The body of one forwarded event in CTLive's (Infobip's) webhook format.
pub fn forward_body(raw_event: &[u8]) -> Bytes {
    const HEAD: &[u8] = b"{\"results\":[";
    const TAIL: &[u8] = b"],\"messageCount\":1,\"pendingMessageCount\":0}";
    let mut body = Vec::with_capacity(HEAD.len() + raw_event.len() + TAIL.len());
    body.extend_from_slice(HEAD);
    body.extend_from_slice(raw_event);
    body.extend_from_slice(TAIL);
    body.into()
}

/// Parses and checks a whole batch; the first problem found is the error, naming where it is.
pub fn parse_batch(body: &[u8]) -> Result<Vec<Event>, String> {
    let starts_an_object = body.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'{');
    if !starts_an_object {
        return Err(match serde_json::from_slice::<IgnoredAny>(body) {
            Ok(_) => "body: expected a JSON object with a results list".to_owned(),
            Err(error) => format!("malformed JSON: {error}"),
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let batch: Batch<'_> =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| describe("", error))?;
    deserializer
        .end()
        .map_err(|error| format!("malformed JSON: {error}"))?;
    batch
        .results
        .into_iter()
        .enumerate()
        .map(|(index, raw)| parse_event(index, raw))
        .collect()
}

fn parse_event(index: usize, raw: &RawValue) -> Result<Event, String> {
    let at = format!("results[{index}]");
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    let head: EventHead = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| describe(&at, error))?;
    let missing = |field: &str| format!("{at}.{field}: missing");
    let message_id = non_empty(head.message_id).ok_or_else(|| missing("messageId"))?;
    let mut media_url = None;
    let (kind, customer) = if let Some(message) = head.message {
        let Some(kind) = non_empty(message.kind) else {
            return Err(missing("message.type"));
        };
        // A media message without a url (which Infobip does not send) is forwarded as it is.
        if INBOUND_MEDIA_TYPES.contains(&kind.as_str()) {
            media_url = match message.url {
                Some(Value::String(url)) if !url.trim().is_empty() => Some(url.trim().to_owned()),
                _ => None,
            };
        }
        let from = phone(head.from).ok_or_else(|| missing("from"))?;
        (EventKind::Inbound, from)
    } else if let Some(status) = head.status {
        let name = non_empty(status.name).ok_or_else(|| missing("status.name"))?;
        let pending = status.group_id == Some(PENDING_GROUP_ID)
            || status.group_name.as_deref() == Some("PENDING");
        let rank = if pending { RANK_PENDING } else { RANK_FINAL };
        let to = phone(head.to).ok_or_else(|| missing("to"))?;
        (EventKind::Delivery { status: name, rank }, to)
    } else if head.seen_at.is_some() {
        let to = phone(head.to).ok_or_else(|| missing("to"))?;
        (EventKind::Seen, to)
    } else {
        return Err(format!(
            "{at}: neither an inbound message (message), a delivery report (status) nor a seen report (seenAt)"
        ));
    };
    Ok(Event {
        kind,
        message_id,
        customer,
        raw: Bytes::copy_from_slice(raw.get().as_bytes()),
        media_url,
    })
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|text| !text.trim().is_empty())
}

/// A customer's number from a field, as conversations are keyed.
fn phone(value: Option<String>) -> Option<String> {
    non_empty(value).map(|number| super::customer_number(&number).to_owned())
}

/// A serde error as a sentence naming where in the document it is.
fn describe(at: &str, error: serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = error.path().to_string();
    let inner = error.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return format!("malformed JSON: {inner}");
    }
    let place = match (at.is_empty(), path.as_str()) {
        (true, ".") => "body".to_owned(),
        (true, path) => path.to_owned(),
        (false, ".") => at.to_owned(),
        (false, path) => format!("{at}.{path}"),
    };
    format!("{place}: {inner}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only_error(body: &str) -> String {
        parse_batch(body.as_bytes()).expect_err(body)
    }

    /// Each kind of event is recognised, with the customer taken from the right field.
    #[test]
    fn classifies_each_kind() {
        let body = r#"{"results":[
            {"from":"385919998888","to":"1234","messageId":"m1","message":{"type":"TEXT","text":"hi"}},
            {"messageId":"m2","to":"41793026731","status":{"groupId":3,"groupName":"DELIVERED","id":5,"name":"DELIVERED_TO_HANDSET"}},
            {"messageId":"m3","to":"41793026731","status":{"groupId":1,"groupName":"PENDING","id":7,"name":"PENDING_ENROUTE"}},
            {"messageId":"m4","to":"41793026731","sentAt":"x","seenAt":"y"}
        ]}"#;
        let events = parse_batch(body.as_bytes()).expect("valid batch");
        let kinds: Vec<_> = events
            .iter()
            .map(|e| (e.kind.clone(), e.customer.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (EventKind::Inbound, "385919998888"),
                (
                    EventKind::Delivery {
                        status: "DELIVERED_TO_HANDSET".into(),
                        rank: RANK_FINAL
                    },
                    "41793026731"
                ),
                (
                    EventKind::Delivery {
                        status: "PENDING_ENROUTE".into(),
                        rank: RANK_PENDING
                    },
                    "41793026731"
                ),
                (EventKind::Seen, "41793026731"),
            ]
        );
    }

    /// The raw event is kept byte for byte, and the forwarded body wraps it.
    #[test]
    fn keeps_the_event_verbatim() {
        let event = r#"{"from":"1","messageId":"m","message":{"type":"NEW_KIND","x":[1,2]},"extra":{"a":null}}"#;
        let events = parse_batch(format!(r#"{{"results":[{event}]}}"#).as_bytes()).expect("valid");
        assert_eq!(events[0].raw, event.as_bytes());
        let forwarded: serde_json::Value =
            serde_json::from_slice(&forward_body(&events[0].raw)).expect("forward body is JSON");
        assert_eq!(forwarded["results"][0]["message"]["x"][1], 2);
        assert_eq!(forwarded["messageCount"], 1);
    }

    /// Linking an inbound media message changes its url and nothing else, byte for byte.
    #[test]
    fn linking_media_keeps_every_other_byte() {
        let event = r#"{"z":1,"messageId":"m","from":"1","price":{"pricePerMessage":0.00,"big":12345678901234567890},"message":{"type":"IMAGE","url":"https://x/1","caption":"a\u00e9"}}"#;
        let mut events =
            parse_batch(format!(r#"{{"results":[{event}]}}"#).as_bytes()).expect("valid");
        let links = MediaLinks::new("http://gw");
        let media = events[0].link_media("t", &links).expect("an image");
        assert_eq!(media.source, "https://x/1");
        let expected = event.replace("https://x/1", &links.inbound("t", &media.id));
        assert_eq!(String::from_utf8_lossy(&events[0].raw), expected);
    }

    /// Errors say where the problem is.
    #[test]
    fn errors_name_the_place() {
        for (body, expected) in [
            ("{", "malformed JSON"),
            ("[]", "body: expected a JSON object"),
            ("", "malformed JSON"),
            ("{}", "missing field `results`"),
            (r#"{"results":{}}"#, "results: invalid type"),
            (
                r#"{"results":[{"messageId":5}]}"#,
                "results[0].messageId: invalid type: integer `5`",
            ),
            (
                r#"{"results":[{"message":{"type":"TEXT"},"from":"1"}]}"#,
                "results[0].messageId: missing",
            ),
            (
                r#"{"results":[{"messageId":"a","message":{"type":"TEXT"}}]}"#,
                "results[0].from: missing",
            ),
            (
                r#"{"results":[{"messageId":"a","from":"1","message":{}}]}"#,
                "results[0].message.type: missing",
            ),
            (
                r#"{"results":[{"messageId":"a","to":"1","status":{"groupId":"x"}}]}"#,
                "results[0].status.groupId: invalid type",
            ),
            (
                r#"{"results":[{"messageId":"a","to":"1"}]}"#,
                "results[0]: neither",
            ),
            (r#"{"results":[]} x"#, "malformed JSON"),
        ] {
            let error = only_error(body);
            assert!(
                error.contains(expected),
                "for {body} expected {expected:?} in {error:?}"
            );
        }
    }
}
