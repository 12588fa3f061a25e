//! The stores behind the actors' ports: accepted work ([`Store`]) and media items
//! ([`MediaStore`]), each in Redis or in the embedded memory store used when no Redis is
//! configured; and the rates the instances on one Redis share ([`SharedPace`]).

mod media_memory;
mod media_redis;
mod memory;
mod pace;
mod redis;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use imchannel_actors::media::MediaStore;
use imchannel_actors::ports::{Envelope, Store, StoreError};

pub use self::media_memory::MemoryMedia;
pub use self::media_redis::RedisMedia;
pub use self::memory::MemoryStore;
pub use self::pace::{RedisPace, SharedPace};
pub use self::redis::RedisStore;
use crate::config::StoreSettings;

/// The stores of a gateway: accepted work, and media.
pub struct Stores {
    /// Dedup, journal and dead letters.
    pub work: Arc<dyn Store>,
    /// Media items, in chunks.
    pub media: Arc<dyn MediaStore>,
    /// Rates shared by the instances on one Redis; none for the embedded store.
    pub pace: Option<Arc<dyn SharedPace>>,
}

/// Opens the stores the settings name: Redis when `redis_url` is set, memory otherwise.
/// `instance` names this process among those sharing the Redis (see [`RedisStore`]).
pub async fn open(settings: &StoreSettings, instance: &str) -> Result<Stores, StoreError> {
    if settings.redis_url.is_empty() {
        let dedup_ttl = Duration::from_secs(settings.dedup_ttl_secs);
        let media_ttl = Duration::from_secs(settings.media_ttl_secs);
        Ok(Stores {
            work: Arc::new(MemoryStore::new(dedup_ttl)),
            media: Arc::new(MemoryMedia::new(media_ttl, settings.media_budget_bytes)),
            pace: None,
        })
    } else {
        let store = RedisStore::connect(settings, instance).await?;
        let media = RedisMedia::new(
            store.connection(),
            &settings.key_prefix,
            settings.media_ttl_secs,
        );
        let pace = RedisPace::new(store.connection(), &settings.key_prefix);
        Ok(Stores {
            work: Arc::new(store),
            media: Arc::new(media),
            pace: Some(Arc::new(pace)),
        })
    }
}

/// How many dead letters a store keeps; older ones are dropped (each was logged when it came).
const MAX_DEAD_LETTERS: usize = 100_000;

/// A dead letter as stored: the envelope and why it failed, as JSON.
fn dead_letter_json(envelope: &Envelope, reason: &str) -> String {
    serde_json::json!({
        "conversation": envelope.conversation.encode(),
        "reference": envelope.reference,
        "acceptedAtMs": millis_since_epoch(envelope.accepted_at),
        "failedAtMs": millis_since_epoch(SystemTime::now()),
        "reason": reason,
        "payload": String::from_utf8_lossy(&envelope.payload),
    })
    .to_string()
}

fn millis_since_epoch(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}
