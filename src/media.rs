//! The gateway's media side: the cache actor that fetches each item once, the store that holds
//! the bytes, and the links handed out for them.

use std::sync::Arc;

use futures::future::join_all;

use actix::{Addr, Arbiter};
use imchannel_actors::media::{
    Ensure, MediaCache, MediaError, MediaMeta, MediaSource, MediaState, MediaStore, Prefetch,
};
use imchannel_actors::ports::StoreError;

use crate::protocol::media_links::MediaLinks;

/// Where media items are registered, fetched and read.
#[derive(Clone)]
pub struct Media {
    cache: Addr<MediaCache>,
    /// The chunks and states of the items.
    pub store: Arc<dyn MediaStore>,
    /// The URLs handed out for them.
    pub links: MediaLinks,
}

impl Media {
    /// Media served by `cache` from `store`, linked under `links`.
    pub fn new(cache: Addr<MediaCache>, store: Arc<dyn MediaStore>, links: MediaLinks) -> Self {
        Self {
            cache,
            store,
            links,
        }
    }

    /// Records where each item comes from, before their links are handed out; all at once.
    pub async fn register_all(&self, items: Vec<(String, MediaSource)>) -> Result<(), StoreError> {
        let registering = items
            .into_iter()
            .map(|(id, source)| self.store.register(id, source));
        join_all(registering).await.into_iter().collect()
    }

    /// Resolves when item `id` is in the store, fetching it first if nobody has. An id that is
    /// not a UUID is unknown without asking the store.
    pub async fn ensure(&self, id: &str) -> Result<MediaMeta, MediaError> {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(MediaError::NotFound);
        }
        // Most asks are for items fetched already: those skip the actor (a thread hop).
        if let Ok(Some(MediaState::Ready(meta))) = self.store.state(id.to_owned()).await {
            return Ok(meta);
        }
        self.cache
            .send(Ensure(id.to_owned()))
            .await
            .unwrap_or_else(|error| Err(MediaError::Unavailable(error.to_string())))
    }

    /// Forgets item `id`, whose link was never handed out, in the background; a store that does
    /// not answer leaves it to expire.
    pub fn forget(&self, id: &str) {
        let (store, id) = (self.store.clone(), id.to_owned());
        actix::spawn(async move {
            if let Err(error) = store.forget(id.clone()).await {
                log::warn!("[IMCHANNEL] [media] {id} unused, left to expire: {error}");
            }
        });
    }

    /// Starts fetching item `id` now, in the background.
    pub fn prefetch(&self, id: &str) {
        self.cache.do_send(Prefetch(id.to_owned()));
    }
}

/// Stops the media arbiter when the gateway goes.
pub struct MediaArbiter(pub Arbiter);

impl Drop for MediaArbiter {
    fn drop(&mut self) {
        self.0.stop();
    }
}
