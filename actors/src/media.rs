//! The media cache: media items kept in the store in chunks, under random ids, for a TTL. The
//! actor makes sure a source is fetched once however many ask at once; the bytes never pass
//! through its mailbox: whoever serves an item reads its chunks from the store.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use futures::future::{BoxFuture, LocalBoxFuture, Shared};
use futures::FutureExt;
use log::warn;

use crate::ports::StoreError;

/// How long a claim to fetch an item lasts: longer than any fetch (its attempts are bounded),
/// short enough that the item is fetched again soon after its fetcher died.
pub const FETCH_LEASE: Duration = Duration::from_secs(15 * 60);
/// How often an instance waiting for another's fetch looks at the item.
const CLAIM_POLL: Duration = Duration::from_millis(100);

/// How big one stored chunk is: what a server holds of an item per request at a time.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Where an item's bytes come from, recorded when its id is handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaSource {
    /// The tenant whose credentials and rules apply to the fetch.
    pub tenant: String,
    /// An `http(s)` URL, or a `data:` URL.
    pub url: String,
    /// Inbound media (from Infobip, with the tenant's Infobip credentials and host rules), or an
    /// outbound source CTLive named.
    pub inbound: bool,
}

/// A fetched item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaMeta {
    /// The `Content-Type` its source declared.
    pub content_type: String,
    /// Its length in bytes.
    pub length: u64,
}

/// Where an item stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaState {
    /// Its id is handed out; its bytes are not fetched (or not completely).
    Pending(MediaSource),
    /// Its bytes are in the store.
    Ready(MediaMeta),
    /// Its fetch failed for good, for this reason.
    Failed(String),
}

/// Where media items are kept, in chunks of [`CHUNK_BYTES`], each key expiring after the TTL.
pub trait MediaStore: Send + Sync + 'static {
    /// Records the source of a new id.
    fn register(
        &self,
        id: String,
        source: MediaSource,
    ) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Where the item stands; `None` when unknown or expired.
    fn state(&self, id: String) -> BoxFuture<'static, Result<Option<MediaState>, StoreError>>;
    /// Stores chunk `index` of the item.
    fn put_chunk(
        &self,
        id: String,
        index: u64,
        bytes: Bytes,
    ) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Marks the item fetched (a no-op unless it is pending).
    fn finish(&self, id: String, meta: MediaMeta) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Marks the item's fetch failed for good and frees the chunks it left (a no-op unless it
    /// is pending: another instance may have fetched it meanwhile).
    fn fail(&self, id: String, reason: String) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Forgets an item whose link was never handed out (its send or event was a duplicate).
    fn forget(&self, id: String) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Takes the right to fetch the item for `lease` (one fetcher among the instances sharing
    /// the store); `false` when another holds it.
    fn claim(&self, id: String, lease: Duration) -> BoxFuture<'static, Result<bool, StoreError>>;
    /// Gives the right to fetch the item back (settling the item gives it back too).
    fn release(&self, id: String) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Chunk `index` of the item; `None` when missing or expired.
    fn chunk(
        &self,
        id: String,
        index: u64,
    ) -> BoxFuture<'static, Result<Option<Bytes>, StoreError>>;
}

/// Why a fetch did not bring an item in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchError {
    /// It cannot succeed (refused source, too large, not found): the item failed for good.
    Failed(String),
    /// Not now (the source throttles or is down, the store did not answer): the item stays
    /// pending, and the next to ask tries again.
    Unavailable(String),
}

/// Fetches a source into the store: puts its chunks, returns what it fetched or why not
/// (retrying a while what is worth retrying itself). Lives on the media arbiter.
pub trait Fetcher {
    /// Fetches `source` as item `id`.
    fn fetch(
        &self,
        id: String,
        source: MediaSource,
    ) -> LocalBoxFuture<'static, Result<MediaMeta, FetchError>>;
}

/// Makes the [`Fetcher`] on the media arbiter.
pub type FetcherFactory = Arc<dyn Fn() -> Rc<dyn Fetcher> + Send + Sync>;

/// Why an item cannot be served.
#[derive(Clone, Debug, thiserror::Error)]
pub enum MediaError {
    /// No such id, or it expired.
    #[error("no media with that id (unknown or expired)")]
    NotFound,
    /// Its fetch failed for good.
    #[error("the media could not be fetched: {0}")]
    FetchFailed(String),
    /// Not now: the source or the store did not answer; asking again tries again.
    #[error("the media is not available yet: {0}")]
    Unavailable(String),
}

type Fetching = Shared<LocalBoxFuture<'static, Result<MediaMeta, MediaError>>>;

/// The actor that fetches each item once.
pub struct MediaCache {
    store: Arc<dyn MediaStore>,
    fetcher: Rc<dyn Fetcher>,
    fetching: HashMap<String, Fetching>,
}

/// Resolves when item `id` is in the store (fetching it first if nobody has yet).
#[derive(Message)]
#[rtype(result = "Result<MediaMeta, MediaError>")]
pub struct Ensure(pub String);

/// Starts fetching item `id` now, without waiting for it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Prefetch(pub String);

/// A fetch that ended: forget its shared future.
#[derive(Message)]
#[rtype(result = "()")]
struct Fetched(String);

impl Actor for MediaCache {
    type Context = Context<Self>;
}

impl MediaCache {
    /// Starts the cache on an arbiter of its own, with the fetcher `fetchers` makes there.
    pub fn start(
        store: Arc<dyn MediaStore>,
        fetchers: FetcherFactory,
    ) -> (Addr<MediaCache>, Arbiter) {
        let arbiter = Arbiter::new();
        let addr = MediaCache::start_in_arbiter(&arbiter.handle(), move |_| MediaCache {
            store,
            fetcher: fetchers(),
            fetching: HashMap::new(),
        });
        (addr, arbiter)
    }

    /// The shared fetch of `id`: the one under way, or a new one.
    fn fetching(&mut self, id: String, ctx: &mut Context<Self>) -> Fetching {
        if let Some(fetching) = self.fetching.get(&id) {
            return fetching.clone();
        }
        let store = self.store.clone();
        let fetcher = self.fetcher.clone();
        let me = ctx.address();
        let key = id.clone();
        let fetching = async move {
            let outcome = ensure(&store, fetcher.as_ref(), id.clone()).await;
            me.do_send(Fetched(id));
            outcome
        }
        .boxed_local()
        .shared();
        self.fetching.insert(key, fetching.clone());
        // The fetch runs on the actor whether or not anyone waits for it.
        ctx.spawn(fetching.clone().map(|_| ()).into_actor(self));
        fetching
    }
}

/// What `Ensure` does, once per id at a time: serve what the store has, or fetch it.
async fn ensure(
    store: &Arc<dyn MediaStore>,
    fetcher: &dyn Fetcher,
    id: String,
) -> Result<MediaMeta, MediaError> {
    let stored = |error: StoreError| MediaError::Unavailable(error.to_string());
    loop {
        let source = match store.state(id.clone()).await.map_err(stored)? {
            None => return Err(MediaError::NotFound),
            Some(MediaState::Ready(meta)) => return Ok(meta),
            Some(MediaState::Failed(reason)) => return Err(MediaError::FetchFailed(reason)),
            Some(MediaState::Pending(source)) => source,
        };
        if store.claim(id.clone(), FETCH_LEASE).await.map_err(stored)? {
            return fetch_claimed(store, fetcher, id, source).await;
        }
        // Another instance is fetching it: wait for its outcome (or for its claim to lapse).
        actix::clock::sleep(CLAIM_POLL).await;
    }
}

/// Fetches an item this instance claimed, records the outcome, gives the claim back.
async fn fetch_claimed(
    store: &Arc<dyn MediaStore>,
    fetcher: &dyn Fetcher,
    id: String,
    source: MediaSource,
) -> Result<MediaMeta, MediaError> {
    let outcome = match fetcher.fetch(id.clone(), source).await {
        Ok(meta) => store
            .finish(id.clone(), meta.clone())
            .await
            .map(|()| Ok(meta)),
        Err(FetchError::Failed(reason)) => {
            warn!("[IMCHANNEL] [media] {id} failed for good: {reason}");
            store
                .fail(id.clone(), reason.clone())
                .await
                .map(|()| Err(MediaError::FetchFailed(reason)))
        }
        Err(FetchError::Unavailable(reason)) => {
            warn!("[IMCHANNEL] [media] {id} not fetched for now: {reason}");
            Ok(Err(MediaError::Unavailable(reason)))
        }
    };
    // Settling gives the claim back; anything else must, so that the next to ask can try.
    if !matches!(outcome, Ok(Ok(_)) | Ok(Err(MediaError::FetchFailed(_)))) {
        let _released = store.release(id).await;
    }
    outcome.unwrap_or_else(|error| Err(MediaError::Unavailable(error.to_string())))
}

impl Handler<Ensure> for MediaCache {
    type Result = ResponseFuture<Result<MediaMeta, MediaError>>;

    fn handle(&mut self, Ensure(id): Ensure, ctx: &mut Self::Context) -> Self::Result {
        Box::pin(self.fetching(id, ctx))
    }
}

impl Handler<Prefetch> for MediaCache {
    type Result = ();

    fn handle(&mut self, Prefetch(id): Prefetch, ctx: &mut Self::Context) {
        // Started on the actor, it runs without a waiter.
        let _running = self.fetching(id, ctx);
    }
}

impl Handler<Fetched> for MediaCache {
    type Result = ();

    fn handle(&mut self, Fetched(id): Fetched, _: &mut Self::Context) {
        self.fetching.remove(&id);
    }
}
