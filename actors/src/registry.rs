//! Finds or starts the actor of a conversation. Conversations are spread over shards, one per
//! arbiter thread; a shard starts its conversations' actors on its own thread (so it shares their
//! load counters without locks), bounds how much each holds and how many live, and retires the
//! idle ones.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::join_all;

use crate::conversation::{Conversation, Enqueue, Load, Retire};
use crate::ports::{ConversationKey, Envelope, SinkFactory, Sinks, Store};
use crate::retry::RetryPolicy;

/// The bounds and timings the registry keeps.
#[derive(Clone, Debug)]
pub struct Limits {
    /// How many shards (arbiter threads) carry the conversations.
    pub shards: usize,
    /// At most this many conversation actors live at once.
    pub max_live: usize,
    /// At most this much work waits in one conversation.
    pub max_backlog: usize,
    /// A conversation with nothing to do for this long is stopped.
    pub idle: Duration,
    /// How deliveries are retried.
    pub retry: RetryPolicy,
}

/// Why the registry would not take more work.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A bound is reached; the caller should ask again later.
    #[error("{0}")]
    Overloaded(String),
    /// The registry is shutting down.
    #[error("the gateway is stopping")]
    Stopped,
}

/// What every shard of one registry shares.
struct Shared {
    /// Live conversation actors, all shards together.
    live: AtomicUsize,
    /// Items reserved, queued or in flight, all conversations together.
    pending: Arc<AtomicUsize>,
    limits: Limits,
    store: Arc<dyn Store>,
}

impl Shared {
    /// Takes `n` of the `max_live` places, all or none.
    fn claim_live(&self, n: usize) -> bool {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                live.checked_add(n)
                    .filter(|wanted| *wanted <= self.limits.max_live)
            })
            .is_ok()
    }
}

/// Why a shard could not reserve room.
enum Shortage {
    /// A conversation's backlog is full.
    Backlog(String),
    /// `max_live` actors are live; retiring idle ones elsewhere may make room.
    Live(String),
    /// The shard is gone.
    Stopped,
}

impl From<Shortage> for Refusal {
    fn from(shortage: Shortage) -> Self {
        match shortage {
            Shortage::Backlog(reason) | Shortage::Live(reason) => Refusal::Overloaded(reason),
            Shortage::Stopped => Refusal::Stopped,
        }
    }
}

/// One live conversation as its shard sees it.
struct Slot {
    addr: Addr<Conversation>,
    load: Rc<Load>,
}

/// The actor owning the conversations of one shard.
pub struct RegistryShard {
    conversations: HashMap<ConversationKey, Slot>,
    sinks: Sinks,
    shared: Arc<Shared>,
}

/// How often a shard looks for idle conversations, at most.
const SWEEP_AT_MOST_EVERY: Duration = Duration::from_secs(5);
/// How often a shard looks for idle conversations, at least.
const SWEEP_AT_LEAST_EVERY: Duration = Duration::from_millis(50);

impl RegistryShard {
    /// The slot of `key`, starting its actor if it has none. The caller accounts for `live`.
    fn slot(&mut self, key: ConversationKey) -> &Slot {
        let shared = &self.shared;
        let sinks = &self.sinks;
        self.conversations.entry(key).or_insert_with_key(|key| {
            let load = Rc::new(Load::new(shared.pending.clone()));
            let addr = Conversation::new(
                key.clone(),
                load.clone(),
                sinks,
                shared.store.clone(),
                shared.limits.retry.clone(),
            )
            .start();
            Slot { addr, load }
        })
    }

    /// Stops the conversations idle for at least `min_idle`.
    fn retire_idle(&mut self, min_idle: Duration) {
        let now = Instant::now();
        let before = self.conversations.len();
        self.conversations
            .retain(|_, slot| match slot.load.idle_since() {
                Some(since) if now.duration_since(since) >= min_idle => {
                    slot.addr.do_send(Retire);
                    false
                }
                _ => true,
            });
        let retired = before - self.conversations.len();
        self.shared.live.fetch_sub(retired, Ordering::AcqRel);
    }

    /// Gives back reservations that were not used.
    fn release(&mut self, reserved: impl IntoIterator<Item = (ConversationKey, usize)>) {
        for (key, n) in reserved {
            if let Some(slot) = self.conversations.get(&key) {
                slot.load.remove(n);
            }
        }
    }
}

impl Actor for RegistryShard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let every = (self.shared.limits.idle / 2).clamp(SWEEP_AT_LEAST_EVERY, SWEEP_AT_MOST_EVERY);
        ctx.run_interval(every, |shard, _| {
            shard.retire_idle(shard.shared.limits.idle);
        });
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.shared
            .live
            .fetch_sub(self.conversations.len(), Ordering::AcqRel);
        Running::Stop
    }
}

/// Room for `n` more items in each named conversation, all or none.
#[derive(Message)]
#[rtype(result = "Result<(), Shortage>")]
struct Reserve(Vec<(ConversationKey, usize)>);

impl Handler<Reserve> for RegistryShard {
    type Result = Result<(), Shortage>;

    fn handle(&mut self, Reserve(wants): Reserve, _: &mut Self::Context) -> Self::Result {
        let max_backlog = self.shared.limits.max_backlog;
        let mut new = 0;
        for (key, n) in &wants {
            match self.conversations.get(key) {
                // An empty conversation takes any batch, so that no batch is refused forever.
                Some(slot) if slot.load.pending() > 0 && slot.load.pending() + n > max_backlog => {
                    return Err(Shortage::Backlog(format!(
                        "conversation {key} already holds {} items (conversation.max_backlog is {max_backlog})",
                        slot.load.pending()
                    )));
                }
                Some(_) => {}
                None => new += 1,
            }
        }
        if new > 0 && !self.shared.claim_live(new) {
            return Err(Shortage::Live(format!(
                "{} conversations are live (conversation.max_live is {})",
                self.shared.live.load(Ordering::Acquire),
                self.shared.limits.max_live
            )));
        }
        for (key, n) in wants {
            self.slot(key).load.add(n);
        }
        Ok(())
    }
}

/// Stops this shard's conversations idle for at least the given time.
#[derive(Message)]
#[rtype(result = "()")]
struct RetireIdle(Duration);

impl Handler<RetireIdle> for RegistryShard {
    type Result = ();

    fn handle(&mut self, RetireIdle(min_idle): RetireIdle, _: &mut Self::Context) {
        self.retire_idle(min_idle);
    }
}

/// Gives back reservations of a batch that was not accepted.
#[derive(Message)]
#[rtype(result = "()")]
struct Release(Vec<(ConversationKey, usize)>);

impl Handler<Release> for RegistryShard {
    type Result = ();

    fn handle(&mut self, Release(reserved): Release, _: &mut Self::Context) {
        self.release(reserved);
    }
}

/// Accepted envelopes for this shard's conversations, and the reservations they use.
#[derive(Message)]
#[rtype(result = "()")]
struct Deliver {
    envelopes: Vec<Envelope>,
    reserved: Vec<(ConversationKey, usize)>,
}

impl Handler<Deliver> for RegistryShard {
    type Result = ();

    fn handle(&mut self, msg: Deliver, _: &mut Self::Context) {
        let mut reserved: HashMap<ConversationKey, usize> = msg.reserved.into_iter().collect();
        let mut grouped: HashMap<ConversationKey, Vec<Envelope>> = HashMap::new();
        for envelope in msg.envelopes {
            grouped
                .entry(envelope.conversation.clone())
                .or_default()
                .push(envelope);
        }
        for (key, envelopes) in grouped {
            let held = reserved.remove(&key).unwrap_or(0);
            if !self.conversations.contains_key(&key) {
                // Resumed work is never refused: it was accepted before.
                self.shared.live.fetch_add(1, Ordering::AcqRel);
            }
            let slot = self.slot(key);
            if envelopes.len() > held {
                slot.load.add(envelopes.len() - held);
            } else {
                slot.load.remove(held - envelopes.len());
            }
            slot.addr.do_send(Enqueue(envelopes));
        }
        self.release(reserved);
    }
}

/// Finds or starts the actor of a conversation; the handle the rest of the gateway holds.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<Addr<RegistryShard>>,
    arbiters: Vec<Arbiter>,
    shared: Arc<Shared>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

/// Room reserved in some conversations; given back when dropped unused.
pub struct Admission {
    registry: Registry,
    reserved: Vec<Vec<(ConversationKey, usize)>>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        for (shard, reserved) in self
            .registry
            .inner
            .shards
            .iter()
            .zip(self.reserved.drain(..))
        {
            if !reserved.is_empty() {
                shard.do_send(Release(reserved));
            }
        }
    }
}

impl Registry {
    /// Starts `limits.shards` arbiter threads, each with a shard and the sink `sinks` makes there.
    /// Must run inside an actix `System`.
    pub fn start(limits: Limits, store: Arc<dyn Store>, sinks: SinkFactory) -> Self {
        let count = limits.shards.max(1);
        let shared = Arc::new(Shared {
            live: AtomicUsize::new(0),
            pending: Arc::new(AtomicUsize::new(0)),
            limits,
            store,
        });
        let (arbiters, shards) = (0..count)
            .map(|_| {
                let arbiter = Arbiter::new();
                let shared = shared.clone();
                let sinks = sinks.clone();
                let shard =
                    RegistryShard::start_in_arbiter(&arbiter.handle(), move |_| RegistryShard {
                        conversations: HashMap::new(),
                        sinks: sinks(),
                        shared,
                    });
                (arbiter, shard)
            })
            .unzip();
        Self {
            inner: Arc::new(Inner {
                shards,
                arbiters,
                shared,
            }),
        }
    }

    /// Reserves room for one item per key (keys may repeat), all or none. At `max_live`, every
    /// shard first retires its idle conversations, and the reservation is tried once more.
    pub async fn reserve(
        &self,
        keys: impl IntoIterator<Item = ConversationKey>,
    ) -> Result<Admission, Refusal> {
        let count = self.inner.shards.len();
        let mut wanted: Vec<HashMap<ConversationKey, usize>> = vec![HashMap::new(); count];
        for key in keys {
            *wanted[key.shard(count)].entry(key).or_default() += 1;
        }
        let wanted: Vec<Vec<(ConversationKey, usize)>> = wanted
            .into_iter()
            .map(|wants| wants.into_iter().collect())
            .collect();
        match self.try_reserve(&wanted).await {
            Err(Shortage::Live(_)) => {
                let retiring = self
                    .inner
                    .shards
                    .iter()
                    .map(|shard| shard.send(RetireIdle(Duration::ZERO)));
                join_all(retiring).await;
                self.try_reserve(&wanted).await.map_err(Refusal::from)
            }
            reserved => reserved.map_err(Refusal::from),
        }
    }

    /// One attempt at reserving `wanted[shard]` on every shard, all or none.
    async fn try_reserve(
        &self,
        wanted: &[Vec<(ConversationKey, usize)>],
    ) -> Result<Admission, Shortage> {
        let mut admission = self.empty_admission();
        let asks = wanted
            .iter()
            .enumerate()
            .filter(|(_, wants)| !wants.is_empty())
            .map(|(index, wants)| {
                let answer = self.inner.shards[index].send(Reserve(wants.clone()));
                async move { (index, answer.await) }
            });
        let mut shortage = None;
        for (index, answer) in join_all(asks).await {
            match answer {
                Ok(Ok(())) => admission.reserved[index] = wanted[index].clone(),
                Ok(Err(short)) => shortage = Some(short),
                Err(MailboxError::Closed | MailboxError::Timeout) => {
                    shortage = Some(Shortage::Stopped)
                }
            }
        }
        // On a shortage, dropping `admission` gives back what the other shards reserved.
        match shortage {
            Some(short) => Err(short),
            None => Ok(admission),
        }
    }

    /// Hands accepted envelopes to their conversations, using (and giving back the rest of) the
    /// room `admission` reserved.
    pub fn deliver(&self, mut admission: Admission, envelopes: Vec<Envelope>) {
        let count = self.inner.shards.len();
        let mut routed: Vec<Vec<Envelope>> = vec![Vec::new(); count];
        for envelope in envelopes {
            routed[envelope.conversation.shard(count)].push(envelope);
        }
        let reserved = std::mem::take(&mut admission.reserved);
        for ((shard, envelopes), reserved) in self.inner.shards.iter().zip(routed).zip(reserved) {
            if !envelopes.is_empty() || !reserved.is_empty() {
                shard.do_send(Deliver {
                    envelopes,
                    reserved,
                });
            }
        }
    }

    /// Hands work accepted earlier (by a process that stopped) to its conversations, past the
    /// bounds: it was acknowledged already and must not be lost.
    pub fn resume(&self, envelopes: Vec<Envelope>) {
        self.deliver(self.empty_admission(), envelopes);
    }

    /// How many conversation actors are live now.
    pub fn live(&self) -> usize {
        self.inner.shared.live.load(Ordering::Acquire)
    }

    /// How many items are reserved, queued or in flight now, all conversations together.
    pub fn pending(&self) -> usize {
        self.inner.shared.pending.load(Ordering::Acquire)
    }

    fn empty_admission(&self) -> Admission {
        Admission {
            registry: self.clone(),
            reserved: vec![Vec::new(); self.inner.shards.len()],
        }
    }
}
