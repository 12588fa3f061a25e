//! The embedded store's media: items in this process's memory, within a total byte budget that
//! counts their chunks and their sources (a `data:` source can be large).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{self, BoxFuture, FutureExt};
use imchannel_actors::media::{MediaMeta, MediaSource, MediaState, MediaStore};
use imchannel_actors::ports::StoreError;

/// How often, at most, expired items are swept out.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Media items of the embedded store.
pub struct MemoryMedia {
    items: Mutex<Items>,
    ttl: Duration,
    budget: usize,
}

struct Items {
    by_id: HashMap<String, Item>,
    /// Bytes held by all items together (chunks and sources).
    used: usize,
    last_sweep: Instant,
}

struct Item {
    state: MediaState,
    chunks: HashMap<u64, Bytes>,
    expires: Instant,
}

impl Item {
    /// The bytes this item holds.
    fn size(&self) -> usize {
        let source = match &self.state {
            MediaState::Pending(source) => source.url.len(),
            _ => 0,
        };
        source + self.chunks.values().map(Bytes::len).sum::<usize>()
    }
}

impl MemoryMedia {
    /// Items kept for `ttl`, all together at most `budget` bytes.
    pub fn new(ttl: Duration, budget: usize) -> Self {
        Self {
            items: Mutex::new(Items {
                by_id: HashMap::new(),
                used: 0,
                last_sweep: Instant::now(),
            }),
            ttl,
            budget,
        }
    }

    fn items(&self) -> MutexGuard<'_, Items> {
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn full(&self) -> StoreError {
        StoreError::Unavailable(format!(
            "the embedded store's media budget ({} bytes) is full",
            self.budget
        ))
    }
}

impl Items {
    /// Forgets expired items (at most once a second, or at once when `now_or_never`).
    fn sweep(&mut self, now: Instant, now_or_never: bool) {
        if !now_or_never && now.duration_since(self.last_sweep) < SWEEP_EVERY {
            return;
        }
        self.last_sweep = now;
        let mut freed = 0;
        self.by_id.retain(|_, item| {
            let keep = item.expires > now;
            if !keep {
                freed += item.size();
            }
            keep
        });
        self.used -= freed;
    }

    fn live(&mut self, id: &str) -> Option<&mut Item> {
        let now = Instant::now();
        self.by_id.get_mut(id).filter(|item| item.expires > now)
    }

    /// Makes room for `bytes` more, sweeping if needed.
    fn room(&mut self, bytes: usize, budget: usize) -> bool {
        if self.used + bytes > budget {
            self.sweep(Instant::now(), true);
        }
        self.used + bytes <= budget
    }

    /// Moves a pending item to `state`, dropping its chunks when it failed.
    fn settle(&mut self, id: &str, state: MediaState) {
        let Some(item) = self.live(id) else {
            return;
        };
        if !matches!(item.state, MediaState::Pending(_)) {
            return;
        }
        let before = item.size();
        if matches!(state, MediaState::Failed(_)) {
            item.chunks.clear();
        }
        item.state = state;
        let after = item.size();
        self.used = self.used + after - before;
    }
}

fn ready<T: Send + 'static>(value: T) -> BoxFuture<'static, T> {
    future::ready(value).boxed()
}

impl MediaStore for MemoryMedia {
    fn register(
        &self,
        id: String,
        source: MediaSource,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let now = Instant::now();
        let mut items = self.items();
        items.sweep(now, false);
        let item = Item {
            state: MediaState::Pending(source),
            chunks: HashMap::new(),
            expires: now + self.ttl,
        };
        if !items.room(item.size(), self.budget) {
            return ready(Err(self.full()));
        }
        items.used += item.size();
        if let Some(old) = items.by_id.insert(id, item) {
            items.used -= old.size();
        }
        ready(Ok(()))
    }

    fn state(&self, id: String) -> BoxFuture<'static, Result<Option<MediaState>, StoreError>> {
        ready(Ok(self.items().live(&id).map(|item| item.state.clone())))
    }

    fn put_chunk(
        &self,
        id: String,
        index: u64,
        bytes: Bytes,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut items = self.items();
        if !items.room(bytes.len(), self.budget) {
            return ready(Err(self.full()));
        }
        let length = bytes.len();
        let Some(item) = items.live(&id) else {
            return ready(Err(StoreError::Corrupt(format!(
                "media {id} expired while it was fetched"
            ))));
        };
        let replaced = item.chunks.insert(index, bytes).map_or(0, |old| old.len());
        items.used = items.used + length - replaced;
        ready(Ok(()))
    }

    fn finish(&self, id: String, meta: MediaMeta) -> BoxFuture<'static, Result<(), StoreError>> {
        self.items().settle(&id, MediaState::Ready(meta));
        ready(Ok(()))
    }

    fn fail(&self, id: String, reason: String) -> BoxFuture<'static, Result<(), StoreError>> {
        self.items().settle(&id, MediaState::Failed(reason));
        ready(Ok(()))
    }

    fn forget(&self, id: String) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut items = self.items();
        if let Some(item) = items.by_id.remove(&id) {
            items.used -= item.size();
        }
        ready(Ok(()))
    }

    fn chunk(
        &self,
        id: String,
        index: u64,
    ) -> BoxFuture<'static, Result<Option<Bytes>, StoreError>> {
        ready(Ok(self
            .items()
            .live(&id)
            .and_then(|item| item.chunks.get(&index).cloned())))
    }

    fn claim(&self, _: String, _: Duration) -> BoxFuture<'static, Result<bool, StoreError>> {
        // One process: its media cache already fetches each item once.
        ready(Ok(true))
    }

    fn release(&self, _: String) -> BoxFuture<'static, Result<(), StoreError>> {
        ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> MediaSource {
        MediaSource {
            tenant: "t".into(),
            url: "http://x/y".into(),
            inbound: true,
        }
    }

    /// A failed item gives its chunks back to the budget; a forgotten one everything.
    #[actix_web::test]
    async fn failing_and_forgetting_free_the_budget() {
        let media = MemoryMedia::new(Duration::from_secs(60), 100);
        media.register("a".into(), source()).await.expect("room");
        media
            .put_chunk("a".into(), 0, Bytes::from(vec![0; 80]))
            .await
            .expect("room");
        assert!(
            media
                .put_chunk("a".into(), 1, Bytes::from(vec![0; 80]))
                .await
                .is_err(),
            "over budget"
        );
        media
            .fail("a".into(), "broken".into())
            .await
            .expect("failed");
        media
            .register("b".into(), source())
            .await
            .expect("room again");
        media
            .put_chunk("b".into(), 0, Bytes::from(vec![0; 80]))
            .await
            .expect("room again");
        media.forget("b".into()).await.expect("forgotten");
        assert_eq!(
            media.items().used,
            0,
            "nothing held but the failed item's state"
        );
    }
}
