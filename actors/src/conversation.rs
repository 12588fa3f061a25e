//! One chat: two ordered lanes (inbound to the host, outbound to the customer), each with its own
//! sink. The actor passes one envelope at a time per lane and moves on only when the head was
//! taken or failed for good. A retry waits on a timer, not in a handler, so the mailbox stays
//! open (new work queues up behind the head meanwhile).

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
    Candidate, ConversationKey, DeliveryFailure, Envelope, Lane, Receipt, RetryHint, Sink, Sinks,
    Store, StoreError,
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

/// Where the head of a lane is.
enum Head {
    /// Not taken up: the next pump hands it to the sink.
    Idle,
    /// With the sink right now.
    WithSink,
    /// Waiting for its next attempt, on this timer.
    AwaitingRetry(SpawnHandle),
    /// Failed for good, being replaced by its notice in the store.
    Replacing,
}

/// One lane of a conversation: its ordered queue and the state of its head.
struct LaneState {
    queue: VecDeque<Envelope>,
    head: Head,
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
            head: Head::Idle,
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

    /// Hands the head of `lane` to its sink, unless it is already there. A head that waits for
    /// work of the other lane (a report on a send) takes that work as acknowledged, unless it is
    /// with its sink right now: then the head waits for that attempt to end.
    fn pump(&mut self, lane: Lane, ctx: &mut Context<Self>) {
        let state = &self.lanes[lane.index()];
        let Some(head) = state
            .queue
            .front()
            .filter(|_| matches!(state.head, Head::Idle))
        else {
            return;
        };
        if let Some(after) = head.after.clone() {
            let other = &self.lanes[lane.other().index()];
            if let Some(position) = other
                .queue
                .iter()
                .position(|envelope| envelope.reference == after)
            {
                if position == 0 && matches!(other.head, Head::WithSink | Head::Replacing) {
                    return;
                }
                self.acknowledge(lane.other(), position, ctx);
            }
        }
        let state = &self.lanes[lane.index()];
        let Some(head) = state.queue.front() else {
            return;
        };
        let delivery = state.sink.deliver(head);
        self.lane(lane).head = Head::WithSink;
        ctx.spawn(
            delivery
                .into_actor(self)
                .map(move |outcome, act, ctx| act.settle(lane, outcome, ctx)),
        );
    }

    /// Settles the work at `position` of `lane` as taken: work in the other lane (a report on it)
    /// proves its receiver has it, whatever its own attempts said.
    fn acknowledge(&mut self, lane: Lane, position: usize, ctx: &mut Context<Self>) {
        let state = self.lane(lane);
        if position == 0 {
            if let Head::AwaitingRetry(timer) = std::mem::replace(&mut state.head, Head::Idle) {
                ctx.cancel_future(timer);
            }
            state.failures = 0;
        }
        let Some(settled) = state.queue.remove(position) else {
            return;
        };
        let sink = state.sink.name();
        info!(
            "[IMCHANNEL] [{sink}] messageId {} conversation {} acknowledged by a report on it",
            settled.reference, self.key
        );
        self.load.remove(1);
        record(
            sink,
            settled.reference,
            self.store.complete(settled.receipt),
        );
        self.pump(lane, ctx);
    }

    /// Acts on the sink's answer for the head of `lane`.
    fn settle(
        &mut self,
        lane: Lane,
        outcome: Result<(), DeliveryFailure>,
        ctx: &mut Context<Self>,
    ) {
        let state = &self.lanes[lane.index()];
        let Some(head) = state.queue.front() else {
            self.lane(lane).head = Head::Idle;
            return;
        };
        let reported = self.lanes[lane.other().index()]
            .queue
            .front()
            .is_some_and(|waiting| waiting.after.as_ref() == Some(&head.reference));
        let failure = match outcome {
            Ok(()) => None,
            // A report on it is waiting: the receiver has it, whatever this attempt said.
            Err(_) if reported => None,
            Err(failure) => Some(failure),
        };
        let Some(failure) = failure else {
            let completion = self.store.complete(head.receipt.clone());
            self.move_on(lane, completion, ctx);
            return;
        };
        // Only failures pay for a copy of the head.
        let head = head.clone();
        let state = self.lane(lane);
        state.failures += 1;
        let (failures, sink) = (state.failures, state.sink.name());
        let retry_in = match failure.retry {
            RetryHint::Later { not_before } => {
                self.retry.next_attempt(failures, not_before, head.age())
            }
            RetryHint::Never => None,
        };
        if let Some(delay) = retry_in {
            info!(
                "[IMCHANNEL] [{sink}] messageId {} conversation {} attempt {failures} failed: {}; retrying in {} ms",
                head.reference,
                self.key,
                failure.reason,
                delay.as_millis()
            );
            let timer = ctx.run_later(delay, move |act, ctx| {
                act.lane(lane).head = Head::Idle;
                act.pump(lane, ctx);
            });
            self.lane(lane).head = Head::AwaitingRetry(timer);
            return;
        }
        let Some(notice) = failure.notice else {
            warn!(
                "[IMCHANNEL] [{sink}] messageId {} conversation {} failed for good after {failures} attempts: {}; moved to the dead letters",
                head.reference, self.key, failure.reason
            );
            let parking = self.store.dead_letter(head, failure.reason);
            self.move_on(lane, parking, ctx);
            return;
        };
        warn!(
            "[IMCHANNEL] [{sink}] messageId {} conversation {} failed for good after {failures} attempts: {}; a notice of it goes the other way",
            head.reference,
            self.key,
            failure.reason,
        );
        let notice = Candidate {
            dedup_key: notice.dedup_key,
            rank: notice.rank,
            conversation: self.key.clone(),
            lane: lane.other(),
            after: None,
            reference: head.reference,
            payload: notice.payload,
        };
        self.lane(lane).head = Head::Replacing;
        self.give_notice(lane, head.receipt, notice, 1, ctx);
    }

    /// Replaces the head of `lane`, which failed for good, by `notice` in the store, and moves on
    /// once the store took it; the head stays (and keeps the conversation alive) until then.
    fn give_notice(
        &mut self,
        lane: Lane,
        failed: Receipt,
        notice: Candidate,
        attempt: u32,
        ctx: &mut Context<Self>,
    ) {
        let replacing = self.store.replace(failed.clone(), notice.clone());
        ctx.spawn(replacing.into_actor(self).map(move |replaced, act, ctx| match replaced {
            Ok(envelope) => {
                if let Some(envelope) = envelope {
                    act.load.add(1);
                    act.lane(envelope.lane).queue.push_back(envelope);
                }
                act.move_on(lane, Box::pin(futures::future::ready(Ok(()))), ctx);
            }
            Err(error) => {
                let delay = act.retry.delay(attempt, None);
                warn!(
                    "[IMCHANNEL] [{}] messageId {} the store did not take the notice of its failure ({error}); trying again in {} ms",
                    act.lanes[lane.index()].sink.name(),
                    notice.reference,
                    delay.as_millis()
                );
                ctx.run_later(delay, move |act, ctx| act.give_notice(lane, failed, notice, attempt + 1, ctx));
            }
        }));
    }

    /// Drops the head of `lane`, records its fate in the store in the background, and starts
    /// what may go next in both lanes (the other lane may have waited for this head).
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
        state.head = Head::Idle;
        state.failures = 0;
        let sink = state.sink.name();
        self.load.remove(1);
        record(sink, reference, bookkeeping);
        self.pump(lane, ctx);
        self.pump(lane.other(), ctx);
    }
}

/// Runs the store's record of a settled envelope detached from the actor, so that retiring the
/// actor cannot cut it short; a failure is logged.
fn record(
    sink: &'static str,
    reference: String,
    bookkeeping: BoxFuture<'static, Result<(), StoreError>>,
) {
    actix::spawn(async move {
        if let Err(error) = bookkeeping.await {
            warn!(
                "[IMCHANNEL] [{sink}] messageId {reference} is settled but the store did not record it ({error}): it may be passed on again after a restart"
            );
        }
    });
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
