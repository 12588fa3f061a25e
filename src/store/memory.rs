//! The embedded store: everything in this process's memory, gone when it exits. It gives the
//! guarantees of the Redis store for the life of the process.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use futures::future::{self, BoxFuture, FutureExt};
use imchannel_actors::ports::{
    recall_key, Candidate, ConversationKey, Envelope, Lane, Receipt, Store, StoreError, Verdict,
};
use log::warn;

use super::{dead_letter_json, MAX_DEAD_LETTERS};

/// How many accepts pass between sweeps of expired marks.
const SWEEP_EVERY: u64 = 4096;

/// The store of a gateway without Redis.
pub struct MemoryStore {
    state: Mutex<State>,
    dedup_ttl: Duration,
}

#[derive(Default)]
struct State {
    /// Dedup keys and when they expire.
    marks: HashMap<String, Instant>,
    /// Highest rank accepted per subject, and when it expires.
    ranks: HashMap<String, (u8, Instant)>,
    /// The conversation of outbound work by recall key, and when it is forgotten.
    memos: HashMap<String, (ConversationKey, Instant)>,
    next_receipt: u64,
    accepts: u64,
    dead_letters: VecDeque<String>,
}

impl MemoryStore {
    /// An empty store remembering dedup keys for `dedup_ttl`.
    pub fn new(dedup_ttl: Duration) -> Self {
        Self {
            state: Mutex::new(State::default()),
            dedup_ttl,
        }
    }

    /// Judges a batch under one lock: atomic, like the Redis script.
    fn judge_all(&self, batch: Vec<Candidate>) -> Vec<Verdict> {
        let now = Instant::now();
        let expires = now + self.dedup_ttl;
        let mut state = self.state();
        state.accepts += 1;
        if state.accepts.is_multiple_of(SWEEP_EVERY) {
            state.sweep(now);
        }
        batch
            .into_iter()
            .map(|candidate| state.judge(candidate, now, expires))
            .collect()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock, and the state stays consistent if one did.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn sweep(&mut self, now: Instant) {
        self.marks.retain(|_, expires| *expires > now);
        self.ranks.retain(|_, (_, expires)| *expires > now);
        self.memos.retain(|_, (_, expires)| *expires > now);
    }

    fn judge(&mut self, candidate: Candidate, now: Instant, expires: Instant) -> Verdict {
        let fresh = self
            .marks
            .get(&candidate.dedup_key)
            .is_none_or(|until| *until <= now);
        if !fresh {
            return Verdict::Duplicate;
        }
        self.marks.insert(candidate.dedup_key, expires);
        if let Some(rank) = candidate.rank {
            let seen = self
                .ranks
                .get(&rank.subject)
                .filter(|(_, until)| *until > now)
                .map_or(0, |(value, _)| *value);
            if rank.value < seen {
                return Verdict::Superseded;
            }
            if rank.value > seen {
                self.ranks.insert(rank.subject, (rank.value, expires));
            }
        }
        if candidate.lane == Lane::Outbound {
            let key = recall_key(&candidate.conversation.tenant, &candidate.reference);
            self.memos
                .insert(key, (candidate.conversation.clone(), expires));
        }
        Verdict::Accepted(Envelope {
            receipt: self.next_receipt(),
            conversation: candidate.conversation,
            lane: candidate.lane,
            after: candidate.after,
            reference: candidate.reference,
            payload: candidate.payload,
            accepted_at: SystemTime::now(),
        })
    }

    fn next_receipt(&mut self) -> Receipt {
        self.next_receipt += 1;
        Receipt(self.next_receipt.to_string())
    }
}

impl Store for MemoryStore {
    fn accept(
        &self,
        batch: Vec<Candidate>,
    ) -> BoxFuture<'static, Result<Vec<Verdict>, StoreError>> {
        future::ready(Ok(self.judge_all(batch))).boxed()
    }

    fn complete(&self, _: Receipt) -> BoxFuture<'static, Result<(), StoreError>> {
        future::ready(Ok(())).boxed()
    }

    fn replace(
        &self,
        _: Receipt,
        notice: Candidate,
    ) -> BoxFuture<'static, Result<Option<Envelope>, StoreError>> {
        let envelope = match self.judge_all(vec![notice]).pop() {
            Some(Verdict::Accepted(envelope)) => Some(envelope),
            _ => None,
        };
        future::ready(Ok(envelope)).boxed()
    }

    fn recall(
        &self,
        keys: Vec<String>,
    ) -> BoxFuture<'static, Result<Vec<Option<ConversationKey>>, StoreError>> {
        let now = Instant::now();
        let state = self.state();
        let remembered = keys
            .iter()
            .map(|key| {
                state
                    .memos
                    .get(key)
                    .filter(|(_, until)| *until > now)
                    .map(|(conversation, _)| conversation.clone())
            })
            .collect();
        future::ready(Ok(remembered)).boxed()
    }

    fn dead_letter(
        &self,
        envelope: Envelope,
        reason: String,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut state = self.state();
        if state.dead_letters.len() == MAX_DEAD_LETTERS {
            warn!("[IMCHANNEL] [deadLetter] the memory store holds {MAX_DEAD_LETTERS} dead letters: dropping the oldest");
            state.dead_letters.pop_front();
        }
        state
            .dead_letters
            .push_back(dead_letter_json(&envelope, &reason));
        future::ready(Ok(())).boxed()
    }

    fn unfinished(&self) -> BoxFuture<'static, Result<Vec<Envelope>, StoreError>> {
        // Nothing outlives the process that accepted it.
        future::ready(Ok(Vec::new())).boxed()
    }

    fn renew_and_adopt(&self) -> BoxFuture<'static, Result<Vec<Envelope>, StoreError>> {
        // One process, nobody to adopt from.
        future::ready(Ok(Vec::new())).boxed()
    }

    fn ping(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        future::ready(Ok(())).boxed()
    }
}
