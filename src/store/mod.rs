//! The two implementations of the actors' [`Store`] port: Redis, and the embedded memory store
//! used when no Redis is configured.

mod memory;
mod redis;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use imchannel_actors::ports::{Envelope, Store, StoreError};

pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;
use crate::config::StoreSettings;

/// Opens the store the settings name: Redis when `redis_url` is set, memory otherwise.
/// `instance` names this process among those sharing the Redis (see [`RedisStore`]).
pub async fn open(settings: &StoreSettings, instance: &str) -> Result<Arc<dyn Store>, StoreError> {
    if settings.redis_url.is_empty() {
        Ok(Arc::new(MemoryStore::new(Duration::from_secs(
            settings.dedup_ttl_secs,
        ))))
    } else {
        Ok(Arc::new(RedisStore::connect(settings, instance).await?))
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
