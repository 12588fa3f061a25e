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
    ConversationKey, DeliveryFailure, Envelope, Lane, Notice, RetryHint, Sink, Sinks, Store,
    StoreError,
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

/// One lane of a conversation: its ordered queue and the state of its head.
struct LaneState {
    queue: VecDeque<Envelope>,
    /// The head is with the sink, or waiting for its retry.
    busy: bool,
    /// Failed attempts at the head so far.
    failures: u32,
    sink: Rc<dyn Sink>,
}

/// The actor of one conversation: an inbound and an outbound lane, each passed on in order.
pub(crate) struct Conversation {
    key: ConversationKey,
    lanes: [LaneState; 2],
    load: Rc<Load>,
    store: Arc<dyn Store>,
    retry: RetryPolicy,
}

impl Conversation {
    pub(crate) fn new(
        key: ConversationKey,
        load: Rc<Load>,
        sinks: &Sinks,
        store: Arc<dyn Store>,
        retry: RetryPolicy,
    ) -> Self {
        let lane = |lane: Lane| LaneState {
            queue: VecDeque::new(),
            busy: false,
            failures: 0,
            sink: sinks.of(lane).clone(),
        };
        Self {
            key,
            lanes: Lane::ALL.map(lane),
            load,
            store,
            retry,
        }
    }

    fn lane(&mut self, lane: Lane) -> &mut LaneState {
        &mut self.lanes[lane.index()]
    }

    /// Hands the head of `lane` to its sink, unless it is already there or must wait for work
    /// of the other lane it depends on.
    fn pump(&mut self, lane: Lane, ctx: &mut Context<Self>) {
        let state = &self.lanes[lane.index()];
        let Some(head) = state.queue.front().filter(|_| !state.busy) else {
            return;
        };
        let other = &self.lanes[lane.other().index()];
        if let Some(after) = &head.after {
            if other
                .queue
                .iter()
                .any(|envelope| &envelope.reference == after)
            {
                return;
            }
        }
        let delivery = state.sink.deliver(head);
        self.lane(lane).busy = true;
        ctx.spawn(
            delivery
                .into_actor(self)
                .map(move |outcome, act, ctx| act.settle(lane, outcome, ctx)),
        );
    }

    /// Acts on the sink's answer for the head of `lane`.
    fn settle(
        &mut self,
        lane: Lane,
        outcome: Result<(), DeliveryFailure>,
        ctx: &mut Context<Self>,
    ) {
        let state = &mut self.lanes[lane.index()];
        let Some(head) = state.queue.front() else {
            state.busy = false;
            return;
        };
        let failure = match outcome {
            Ok(()) => {
                let completion = self.store.complete(head.receipt.clone());
                self.move_on(lane, completion, ctx);
                return;
            }
            Err(failure) => failure,
        };
        state.failures += 1;
        let retry_in = match failure.retry {
            RetryHint::Later { not_before } => {
                self.retry
                    .next_attempt(state.failures, not_before, head.age())
            }
            RetryHint::Never => None,
        };
        if let Some(delay) = retry_in {
            info!(
                "[IMCHANNEL] [{}] messageId {} conversation {} attempt {} failed: {}; retrying in {} ms",
                state.sink.name(),
                head.reference,
                self.key,
                state.failures,
                failure.reason,
                delay.as_millis()
            );
            ctx.run_later(delay, move |act, ctx| {
                act.lane(lane).busy = false;
                act.pump(lane, ctx);
            });
            return;
        }
        let head = head.clone();
        let sink = state.sink.name();
        let Some(notice) = failure.notice else {
            warn!(
                "[IMCHANNEL] [{sink}] messageId {} conversation {} failed for good after {} attempts: {}; moved to the dead letters",
                head.reference, self.key, state.failures, failure.reason
            );
            let parking = self.store.dead_letter(head, failure.reason);
            self.move_on(lane, parking, ctx);
            return;
        };
        warn!(
            "[IMCHANNEL] [{sink}] messageId {} conversation {} failed for good after {} attempts: {}; the failure is passed on {}",
            head.reference, self.key, state.failures, failure.reason, lane.other().code()
        );
        let notice = Notice {
            conversation: self.key.clone(),
            lane: lane.other(),
            reference: head.reference.clone(),
            payload: notice,
        };
        // The notice counts as pending from now, so the actor is not retired before it queues.
        self.load.add(1);
        let replacing = self.store.replace(head.receipt.clone(), notice);
        ctx.spawn(replacing.into_actor(self).map(move |replaced, act, ctx| match replaced {
            Ok(notice) => {
                let lane = notice.lane;
                act.lane(lane).queue.push_back(notice);
                act.pump(lane, ctx);
            }
            Err(error) => {
                warn!(
                    "[IMCHANNEL] [{sink}] messageId {} the store did not take the notice of its failure ({error}): it stays unfinished and is tried again after a restart",
                    head.reference
                );
                act.load.remove(1);
            }
        }));
        self.move_on(lane, Box::pin(futures::future::ready(Ok(()))), ctx);
    }

    /// Drops the head of `lane`, records its fate in the store in the background (detached from
    /// the actor, so that retiring the actor cannot cut it short), and starts what may go next in
    /// both lanes (the other lane may have waited for this head).
    fn move_on(
        &mut self,
        lane: Lane,
        bookkeeping: BoxFuture<'static, Result<(), StoreError>>,
        ctx: &mut Context<Self>,
    ) {
        let state = self.lane(lane);
        let reference = state
            .queue
            .pop_front()
            .map(|head| head.reference)
            .unwrap_or_default();
        state.busy = false;
        state.failures = 0;
        let sink = state.sink.name();
        self.load.remove(1);
        actix::spawn(async move {
            if let Err(error) = bookkeeping.await {
                warn!(
                    "[IMCHANNEL] [{sink}] messageId {reference} is settled but the store did not record it ({error}): it may be passed on again after a restart"
                );
            }
        });
        self.pump(lane, ctx);
        self.pump(lane.other(), ctx);
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
        for envelope in msg.0 {
            self.lane(envelope.lane).queue.push_back(envelope);
        }
        for lane in Lane::ALL {
            self.pump(lane, ctx);
        }
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
