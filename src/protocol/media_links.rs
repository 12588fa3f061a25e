//! The media URLs imchannel hands out: `get{Image,Document,Audio,Video}Message/{id}` for Infobip
//! to fetch outbound media, `media/{id}` for CTLive to fetch inbound media. Ids are random v4
//! UUIDs: the URL is the capability.

/// The fields of an outbound media send, and the route Infobip fetches each kind from.
pub const OUTBOUND_MEDIA: [(&str, &str); 4] = [
    ("imageUrl", "getImageMessage"),
    ("fileUrl", "getDocumentMessage"),
    ("audioUrl", "getAudioMessage"),
    ("videoUrl", "getVideoMessage"),
];

/// Inbound message types whose `url` imchannel downloads.
pub const INBOUND_MEDIA_TYPES: [&str; 6] =
    ["IMAGE", "DOCUMENT", "AUDIO", "VIDEO", "VOICE", "STICKER"];

/// Builds and reads imchannel's media URLs under `server.public_url`.
#[derive(Clone, Debug)]
pub struct MediaLinks {
    public_url: String,
}

impl MediaLinks {
    /// Links under `public_url`.
    pub fn new(public_url: &str) -> Self {
        Self {
            public_url: public_url.trim_end_matches('/').to_owned(),
        }
    }

    /// The base every link starts with.
    pub fn prefix(&self) -> &str {
        &self.public_url
    }

    /// A new, unguessable media id.
    pub fn new_id() -> String {
        uuid::Uuid::new_v4().to_string()
    }

    /// Where Infobip fetches outbound item `id` from its `route` (`getImageMessage`, ...).
    pub fn outbound(&self, tenant: &str, route: &str, id: &str) -> String {
        format!("{}/{tenant}/imchannel/{route}/{id}", self.public_url)
    }

    /// Where CTLive fetches inbound item `id`.
    pub fn inbound(&self, tenant: &str, id: &str) -> String {
        format!("{}/{tenant}/imchannel/media/{id}", self.public_url)
    }

    /// The item id of an outbound media URL imchannel handed out, if `url` is one.
    pub fn outbound_id<'a>(&self, url: &'a str) -> Option<&'a str> {
        let rest = url.strip_prefix(&self.public_url)?;
        let (_, id) = rest.rsplit_once("Message/")?;
        uuid::Uuid::parse_str(id).is_ok().then_some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An outbound link carries the tenant and the kind, and gives its id back.
    #[test]
    fn outbound_links_round_trip() {
        let links = MediaLinks::new("http://gw.example/");
        let id = MediaLinks::new_id();
        let url = links.outbound("acme", "getImageMessage", &id);
        assert_eq!(
            url,
            format!("http://gw.example/acme/imchannel/getImageMessage/{id}")
        );
        assert_eq!(links.outbound_id(&url), Some(id.as_str()));
        assert_eq!(
            links.outbound_id("http://elsewhere/acme/imchannel/getImageMessage/x"),
            None
        );
    }
}
