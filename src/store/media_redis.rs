//! Media in Redis: `<prefix>:media:<id>` is a hash of the item's state and source, and
//! `<prefix>:media:<id>:<n>` holds chunk n, each expiring after `store.media_ttl_secs`, so any
//! instance sharing the Redis serves any id; `<prefix>:media:<id>:claim` names the instance
//! fetching it, for the fetch's lease.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use imchannel_actors::media::{MediaMeta, MediaSource, MediaState, MediaStore};
use imchannel_actors::ports::StoreError;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

/// Media items in Redis.
pub struct RedisMedia {
    hot: ConnectionManager,
    prefix: String,
    ttl_secs: u64,
    settle: Script,
}

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

impl RedisMedia {
    /// Media over the store's multiplexed connection.
    pub fn new(hot: ConnectionManager, prefix: &str, ttl_secs: u64) -> Self {
        Self {
            hot,
            prefix: prefix.to_owned(),
            ttl_secs,
            settle: Script::new(include_str!("media_settle.lua")),
        }
    }

    fn item(&self, id: &str) -> String {
        format!("{}:media:{id}", self.prefix)
    }

    /// Runs media_settle.lua on an item: `ready`/`failed` with fields, or `forget`.
    fn settle(
        &self,
        id: &str,
        outcome: &'static str,
        fields: Vec<(&'static str, String)>,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut hot = self.hot.clone();
        let script = self.settle.clone();
        let key = self.item(id);
        async move {
            let mut invocation = script.key(&key);
            invocation.arg(outcome);
            for (field, value) in &fields {
                invocation.arg(*field).arg(value);
            }
            invocation
                .invoke_async::<()>(&mut hot)
                .await
                .map_err(unavailable)
        }
        .boxed()
    }
}

/// An item's state from its hash.
fn state_of(id: &str, fields: HashMap<String, String>) -> Result<Option<MediaState>, StoreError> {
    let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let state = match field("state").as_str() {
        "" => return Ok(None),
        "pending" => MediaState::Pending(MediaSource {
            tenant: field("tenant"),
            url: field("url"),
            inbound: field("inbound") == "1",
        }),
        "ready" => MediaState::Ready(MediaMeta {
            content_type: field("content_type"),
            length: field("length")
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("media {id}: unreadable length")))?,
        }),
        "failed" => MediaState::Failed(field("reason")),
        other => {
            return Err(StoreError::Corrupt(format!(
                "media {id}: unknown state {other}"
            )))
        }
    };
    Ok(Some(state))
}

impl MediaStore for RedisMedia {
    fn register(
        &self,
        id: String,
        source: MediaSource,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut hot = self.hot.clone();
        let key = self.item(&id);
        let ttl = self.ttl_secs as i64;
        async move {
            let fields = [
                ("state", "pending".to_owned()),
                ("tenant", source.tenant),
                ("url", source.url),
                ("inbound", if source.inbound { "1" } else { "0" }.to_owned()),
            ];
            redis::pipe()
                .atomic()
                .hset_multiple(&key, &fields)
                .ignore()
                .expire(&key, ttl)
                .ignore()
                .query_async::<()>(&mut hot)
                .await
                .map_err(unavailable)
        }
        .boxed()
    }

    fn state(&self, id: String) -> BoxFuture<'static, Result<Option<MediaState>, StoreError>> {
        let mut hot = self.hot.clone();
        let key = self.item(&id);
        async move {
            let fields: HashMap<String, String> = hot.hgetall(&key).await.map_err(unavailable)?;
            state_of(&id, fields)
        }
        .boxed()
    }

    fn put_chunk(
        &self,
        id: String,
        index: u64,
        bytes: Bytes,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut hot = self.hot.clone();
        let key = format!("{}:{index}", self.item(&id));
        let ttl = self.ttl_secs;
        async move {
            hot.set_ex::<_, _, ()>(&key, bytes.as_ref(), ttl)
                .await
                .map_err(unavailable)
        }
        .boxed()
    }

    fn finish(&self, id: String, meta: MediaMeta) -> BoxFuture<'static, Result<(), StoreError>> {
        let fields = vec![
            ("content_type", meta.content_type),
            ("length", meta.length.to_string()),
        ];
        self.settle(&id, "ready", fields)
    }

    fn fail(&self, id: String, reason: String) -> BoxFuture<'static, Result<(), StoreError>> {
        self.settle(&id, "failed", vec![("reason", reason)])
    }

    fn forget(&self, id: String) -> BoxFuture<'static, Result<(), StoreError>> {
        self.settle(&id, "forget", Vec::new())
    }

    fn chunk(
        &self,
        id: String,
        index: u64,
    ) -> BoxFuture<'static, Result<Option<Bytes>, StoreError>> {
        let mut hot = self.hot.clone();
        let key = format!("{}:{index}", self.item(&id));
        async move {
            let chunk: Option<Vec<u8>> = hot.get(&key).await.map_err(unavailable)?;
            Ok(chunk.map(Bytes::from))
        }
        .boxed()
    }

    fn claim(&self, id: String, lease: Duration) -> BoxFuture<'static, Result<bool, StoreError>> {
        let mut hot = self.hot.clone();
        let key = format!("{}:claim", self.item(&id));
        async move {
            let claimed: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg("1")
                .arg("NX")
                .arg("PX")
                .arg(lease.as_millis() as u64)
                .query_async(&mut hot)
                .await
                .map_err(unavailable)?;
            Ok(claimed.is_some())
        }
        .boxed()
    }

    fn release(&self, id: String) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut hot = self.hot.clone();
        let key = format!("{}:claim", self.item(&id));
        async move { hot.del::<_, ()>(&key).await.map_err(unavailable) }.boxed()
    }
}
