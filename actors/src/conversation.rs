//! One chat's ordered queue: the actor passes one envelope at a time to its sink and moves on only
//! when the head was taken or failed for good. A retry waits on a timer, not in a handler, so the
//! mailbox stays open (new work queues up behind the head meanwhile).

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures::future::BoxFuture;
use log::{info, warn};

use crate::ports::{
    ConversationKey, DeliveryFailure, Envelope, RetryHint, Sink, Store, StoreError,
};
use crate::retry::RetryPolicy;

/// How much work a conversation holds (reserved, queued or in flight), shared between the actor
/// and its registry shard, which live on the same arbiter thread; `total` adds up every
/// conversation's, for the whole registry.
#[derive(Debug)]
pub(crate) struct Load {
    pending: Cell<usize>,
    idle_since: Cell<Instant>,
    total: Arc<AtomicUsize>,
}

impl Load {
    pub(crate) fn new(total: Arc<AtomicUsize>) -> Self {
        Self {
            pending: Cell::new(0),
            idle_since: Cell::new(Instant::now()),
            total,
        }
    }

    pub(crate) fn pending(&self) -> usize {
        self.pending.get()
    }

    pub(crate) fn add(&self, n: usize) {
        self.pending.set(self.pending.get() + n);
        self.total.fetch_add(n, Ordering::AcqRel);
    }

    pub(crate) fn remove(&self, n: usize) {
        let removed = n.min(self.pending.get());
        let left = self.pending.get() - removed;
        self.pending.set(left);
        self.total.fetch_sub(removed, Ordering::AcqRel);
        if left == 0 {
            self.idle_since.set(Instant::now());
        }
    }

    /// Since when nothing has been pending, if nothing is.
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        (self.pending.get() == 0).then(|| self.idle_since.get())
    }
}

/// The actor of one conversation.
pub(crate) struct Conversation {
    key: ConversationKey,
    queue: VecDeque<Envelope>,
    /// The head is with the sink, or waiting for its retry.
    busy: bool,
    /// Failed attempts at the head so far.
    failures: u32,
    load: Rc<Load>,
    sink: Rc<dyn Sink>,
    store: Arc<dyn Store>,
    retry: RetryPolicy,
}

impl Conversation {
    pub(crate) fn new(
        key: ConversationKey,
        load: Rc<Load>,
        sink: Rc<dyn Sink>,
        store: Arc<dyn Store>,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            key,
            queue: VecDeque::new(),
            busy: false,
            failures: 0,
            load,
            sink,
            store,
            retry,
        }
    }

    /// Hands the head to the sink unless it is already there.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let Some(head) = self.queue.front() else {
            return;
        };
        self.busy = true;
        let delivery = self.sink.deliver(head);
        ctx.spawn(
            delivery
                .into_actor(self)
                .map(|outcome, act, ctx| act.settle(outcome, ctx)),
        );
    }

    /// Acts on the sink's answer for the head.
    fn settle(&mut self, outcome: Result<(), DeliveryFailure>, ctx: &mut Context<Self>) {
        let Some(head) = self.queue.front() else {
            self.busy = false;
            return;
        };
        match outcome {
            Ok(()) => {
                let completion = self.store.complete(head.receipt.clone());
                self.move_on(completion, ctx);
            }
            Err(failure) => {
                self.failures += 1;
                let retry_in = match failure.retry {
                    RetryHint::Later { not_before } => {
                        self.retry
                            .next_attempt(self.failures, not_before, head.age())
                    }
                    RetryHint::Never => None,
                };
                if let Some(delay) = retry_in {
                    info!(
                        "[IMCHANNEL] [{}] messageId {} conversation {} attempt {} failed: {}; retrying in {} ms",
                        self.sink.name(),
                        head.reference,
                        self.key,
                        self.failures,
                        failure.reason,
                        delay.as_millis()
                    );
                    ctx.run_later(delay, |act, ctx| {
                        act.busy = false;
                        act.pump(ctx);
                    });
                } else {
                    warn!(
                        "[IMCHANNEL] [{}] messageId {} conversation {} failed for good after {} attempts: {}; moved to the dead letters",
                        self.sink.name(),
                        head.reference,
                        self.key,
                        self.failures,
                        failure.reason
                    );
                    let parking = self.store.dead_letter(head.clone(), failure.reason);
                    self.move_on(parking, ctx);
                }
            }
        }
    }

    /// Drops the head, records its fate in the store in the background (detached from the actor,
    /// so that retiring the actor cannot cut it short), and starts the next.
    fn move_on(
        &mut self,
        bookkeeping: BoxFuture<'static, Result<(), StoreError>>,
        ctx: &mut Context<Self>,
    ) {
        let reference = self
            .queue
            .pop_front()
            .map(|head| head.reference)
            .unwrap_or_default();
        self.busy = false;
        self.failures = 0;
        self.load.remove(1);
        let sink = self.sink.name();
        actix::spawn(async move {
            if let Err(error) = bookkeeping.await {
                warn!(
                    "[IMCHANNEL] [{sink}] messageId {reference} is settled but the store did not record it ({error}): it may be passed on again after a restart"
                );
            }
        });
        self.pump(ctx);
    }
}

impl Actor for Conversation {
    type Context = Context<Self>;
}

/// New work for the end of the queue, in order.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Enqueue(pub Vec<Envelope>);

impl Handler<Enqueue> for Conversation {
    type Result = ();

    fn handle(&mut self, msg: Enqueue, ctx: &mut Self::Context) {
        self.queue.extend(msg.0);
        self.pump(ctx);
    }
}

/// Stop: the registry saw the conversation idle and forgot it.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Retire;

impl Handler<Retire> for Conversation {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
