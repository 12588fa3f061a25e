//! The path every accepted batch takes: reserve room in its conversations, make it durable with
//! its atomic dedup (one store call), then hand the new envelopes to their conversations.

use std::sync::Arc;

use crate::ports::{recall_key, Candidate, Store, StoreError, Verdict};
use crate::registry::{Refusal, Registry};

/// What became of one candidate of a submitted batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// New: durable, and on its way.
    Accepted,
    /// Seen before: not passed on again.
    Duplicate,
    /// Ranked below what was already accepted for its subject: not passed on.
    Superseded,
}

/// Why a batch was not taken; nothing of it was accepted.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// A bound of the registry is reached.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The store did not answer.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Admits batches: the store and the registry, used together in the one right order.
#[derive(Clone)]
pub struct Intake {
    store: Arc<dyn Store>,
    registry: Registry,
}

impl Intake {
    /// An intake over a store and the registry whose conversations pass the work on.
    pub fn new(store: Arc<dyn Store>, registry: Registry) -> Self {
        Self { store, registry }
    }

    /// Accepts a batch, all of it or (on error) none of it; one outcome per candidate, in order.
    /// When this returns `Ok`, every accepted candidate is durable. The work runs detached: a
    /// caller that gives up waiting (a dropped request) cannot leave a batch accepted by the
    /// store but never handed to its conversations.
    pub async fn submit(&self, batch: Vec<Candidate>) -> Result<Vec<Outcome>, IntakeError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let intake = self.clone();
        actix::spawn(async move { intake.submit_here(batch).await })
            .await
            .unwrap_or(Err(IntakeError::Refused(Refusal::Stopped)))
    }

    async fn submit_here(&self, mut batch: Vec<Candidate>) -> Result<Vec<Outcome>, IntakeError> {
        self.join_remembered_conversations(&mut batch).await?;
        let admission = self
            .registry
            .reserve(batch.iter().map(|candidate| candidate.conversation.clone()))
            .await?;
        let verdicts = self.store.accept(batch).await?;
        let mut accepted = Vec::new();
        let outcomes = verdicts
            .into_iter()
            .map(|verdict| match verdict {
                Verdict::Accepted(envelope) => {
                    accepted.push(envelope);
                    Outcome::Accepted
                }
                Verdict::Duplicate => Outcome::Duplicate,
                Verdict::Superseded => Outcome::Superseded,
            })
            .collect();
        self.registry.deliver(admission, accepted);
        Ok(outcomes)
    }

    /// Moves each candidate that waits for outbound work (`after`) into the conversation that
    /// work was accepted in, where the store remembers it.
    async fn join_remembered_conversations(
        &self,
        batch: &mut [Candidate],
    ) -> Result<(), StoreError> {
        let waiting: Vec<usize> = (0..batch.len())
            .filter(|&i| batch[i].after.is_some())
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        let keys = waiting
            .iter()
            .map(|&i| {
                recall_key(
                    &batch[i].conversation.tenant,
                    batch[i].after.as_deref().unwrap_or_default(),
                )
            })
            .collect();
        let remembered = self.store.recall(keys).await?;
        for (index, conversation) in waiting.into_iter().zip(remembered) {
            if let Some(conversation) = conversation {
                batch[index].conversation = conversation;
            }
        }
        Ok(())
    }

    /// The registry this intake feeds.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The store this intake writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}
