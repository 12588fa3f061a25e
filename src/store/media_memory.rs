//! The embedded store's media: items in this process's memory, within a total byte budget.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{self, BoxFuture, FutureExt};
use imchannel_actors::media::{MediaMeta, MediaSource, MediaState, MediaStore};
use imchannel_actors::ports::StoreError;

/// Media items of the embedded store.
pub struct MemoryMedia {
    items: Mutex<Items>,
    ttl: Duration,
    budget: usize,
}

#[derive(Default)]
struct Items {
    by_id: HashMap<String, Item>,
    /// Bytes held by all chunks together.
    used: usize,
}

struct Item {
    state: MediaState,
    chunks: HashMap<u64, Bytes>,
    expires: Instant,
}

impl MemoryMedia {
    /// Items kept for `ttl`, all chunks together at most `budget` bytes.
    pub fn new(ttl: Duration, budget: usize) -> Self {
        Self {
            items: Mutex::new(Items::default()),
            ttl,
            budget,
        }
    }

    fn items(&self) -> MutexGuard<'_, Items> {
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Items {
    /// Forgets expired items and gives their bytes back to the budget.
    fn sweep(&mut self, now: Instant) {
        let mut freed = 0;
        self.by_id.retain(|_, item| {
            let keep = item.expires > now;
            if !keep {
                freed += item.chunks.values().map(Bytes::len).sum::<usize>();
            }
            keep
        });
        self.used -= freed;
    }

    fn live(&mut self, id: &str) -> Option<&mut Item> {
        let now = Instant::now();
        self.by_id.get_mut(id).filter(|item| item.expires > now)
    }

    fn set_state(&mut self, id: &str, state: MediaState) -> Result<(), StoreError> {
        let item = self.live(id).ok_or_else(|| {
            StoreError::Corrupt(format!("media {id} expired while it was fetched"))
        })?;
        item.state = state;
        Ok(())
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
        items.sweep(now);
        let item = Item {
            state: MediaState::Pending(source),
            chunks: HashMap::new(),
            expires: now + self.ttl,
        };
        items.by_id.insert(id, item);
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
        if items.used + bytes.len() > self.budget {
            items.sweep(Instant::now());
        }
        if items.used + bytes.len() > self.budget {
            let budget = self.budget;
            return ready(Err(StoreError::Unavailable(format!(
                "the embedded store's media budget ({budget} bytes) is full"
            ))));
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
        ready(self.items().set_state(&id, MediaState::Ready(meta)))
    }

    fn fail(&self, id: String, reason: String) -> BoxFuture<'static, Result<(), StoreError>> {
        ready(self.items().set_state(&id, MediaState::Failed(reason)))
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
}
