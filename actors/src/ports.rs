//! The ports the actors talk through, and the values that cross them.

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::future::{BoxFuture, LocalBoxFuture};

/// One chat: a tenant and the customer's number. Work of one conversation is passed on in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationKey {
    /// The tenant's configured name; holds no `/`.
    pub tenant: String,
    /// The customer's phone number.
    pub peer: String,
}

impl ConversationKey {
    /// A key from its two parts.
    pub fn new(tenant: impl Into<String>, peer: impl Into<String>) -> Self {
        Self {
            tenant: tenant.into(),
            peer: peer.into(),
        }
    }

    /// The key as one string, `tenant/peer`, the form stores keep.
    pub fn encode(&self) -> String {
        format!("{}/{}", self.tenant, self.peer)
    }

    /// The inverse of [`encode`](Self::encode); `None` for a string without a `/`.
    pub fn decode(encoded: &str) -> Option<Self> {
        let (tenant, peer) = encoded.split_once('/')?;
        Some(Self::new(tenant, peer))
    }

    /// Which of `shards` owns this conversation; stable for the life of the process.
    pub fn shard(&self, shards: usize) -> usize {
        let mut hasher = DefaultHasher::new();
        self.hash(&mut hasher);
        (hasher.finish() % shards.max(1) as u64) as usize
    }
}

impl fmt::Display for ConversationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.peer)
    }
}

/// Which way work flows in a conversation. Each lane keeps its own order and has its own sink,
/// so that one direction's outage does not hold the other up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lane {
    /// From the customer's side towards the host (CTLive): messages and reports.
    Inbound,
    /// From the host towards the customer (Infobip): sends.
    Outbound,
}

impl Lane {
    /// Both lanes, in index order.
    pub const ALL: [Lane; 2] = [Lane::Inbound, Lane::Outbound];

    /// The lane's position in per-lane arrays.
    pub fn index(self) -> usize {
        match self {
            Lane::Inbound => 0,
            Lane::Outbound => 1,
        }
    }

    /// The lane flowing the other way.
    pub fn other(self) -> Lane {
        match self {
            Lane::Inbound => Lane::Outbound,
            Lane::Outbound => Lane::Inbound,
        }
    }

    /// The short form stores keep.
    pub fn code(self) -> &'static str {
        match self {
            Lane::Inbound => "in",
            Lane::Outbound => "out",
        }
    }

    /// The inverse of [`code`](Self::code).
    pub fn from_code(code: &str) -> Option<Lane> {
        match code {
            "in" => Some(Lane::Inbound),
            "out" => Some(Lane::Outbound),
            _ => None,
        }
    }
}

/// Where a candidate stands in a progression (e.g. a message's status) that must never go
/// backwards: a candidate ranked below one already accepted for the same subject is superseded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rank {
    /// What the rank is about, e.g. one message.
    pub subject: String,
    /// Higher is later.
    pub value: u8,
}

/// One piece of work offered to the store, accepted at most once per `dedup_key`.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Identity for deduplication: a second candidate with the same key is a duplicate.
    pub dedup_key: String,
    /// Where the candidate stands in a progression that never goes backwards, if in one.
    pub rank: Option<Rank>,
    /// The conversation whose order it joins.
    pub conversation: ConversationKey,
    /// The lane of the conversation it joins.
    pub lane: Lane,
    /// The reference of work in the other lane that must settle first, if that work is still
    /// there (a report waits for the send it reports on).
    pub after: Option<String>,
    /// The id a person greps the logs for (a messageId).
    pub reference: String,
    /// The bytes the sink passes on.
    pub payload: Bytes,
}

/// What replaces an envelope that failed for good: a notice of the failure, passed on in the other
/// lane of its conversation (a failed send becomes a report to the host). It is deduplicated and
/// ranked like any candidate, so that the same report arriving from elsewhere is not passed twice.
#[derive(Clone, Debug)]
pub struct Notice {
    /// Identity for deduplication.
    pub dedup_key: String,
    /// Where it stands in its subject's progression.
    pub rank: Option<Rank>,
    /// The bytes the sink passes on.
    pub payload: Bytes,
}

/// The key under which the conversation of outbound work is remembered, so that work in the
/// other lane that names it (a report on a send) joins the same conversation.
pub fn recall_key(tenant: &str, reference: &str) -> String {
    format!("{tenant}:{reference}")
}

/// Where an accepted envelope sits in the store, so that it can be completed later.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Receipt(pub String);

/// Accepted work: durable in the store until completed or dead-lettered.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// The store's handle on it.
    pub receipt: Receipt,
    /// The conversation whose order it keeps.
    pub conversation: ConversationKey,
    /// The lane of the conversation it is in.
    pub lane: Lane,
    /// The reference of work in the other lane that must settle first, if still there.
    pub after: Option<String>,
    /// The id a person greps the logs for (a messageId).
    pub reference: String,
    /// The bytes the sink passes on.
    pub payload: Bytes,
    /// When the store accepted it; retries stop at an age limit.
    pub accepted_at: SystemTime,
}

impl Envelope {
    /// How long ago it was accepted.
    pub fn age(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.accepted_at)
            .unwrap_or_default()
    }
}

/// What the store made of one candidate.
#[derive(Debug)]
pub enum Verdict {
    /// New: durable now, to be passed on.
    Accepted(Envelope),
    /// Its `dedup_key` was accepted before.
    Duplicate,
    /// New, but ranked below what was already accepted for its subject: not passed on.
    Superseded,
}

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or did not answer in time; the caller may retry.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The store answered something this version cannot read.
    #[error("the store holds unreadable data: {0}")]
    Corrupt(String),
}

/// Deduplication and durability: what makes accepted work survive a crash.
pub trait Store: Send + Sync + 'static {
    /// Checks and marks every candidate in one atomic step and makes the new ones durable;
    /// one verdict per candidate, in order.
    fn accept(&self, batch: Vec<Candidate>)
        -> BoxFuture<'static, Result<Vec<Verdict>, StoreError>>;
    /// Forgets an envelope that was passed on.
    fn complete(&self, receipt: Receipt) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Replaces an envelope that failed for good by its notice, in one atomic step: the notice
    /// is checked and marked like a candidate of [`accept`](Self::accept) and made durable before
    /// the envelope is forgotten; `None` when the notice is a duplicate or superseded.
    fn replace(
        &self,
        failed: Receipt,
        notice: Candidate,
    ) -> BoxFuture<'static, Result<Option<Envelope>, StoreError>>;
    /// The remembered conversations of outbound work, by [`recall_key`]; `None` where unknown.
    /// [`accept`](Self::accept) remembers the conversation of every outbound candidate.
    fn recall(
        &self,
        keys: Vec<String>,
    ) -> BoxFuture<'static, Result<Vec<Option<ConversationKey>>, StoreError>>;
    /// Moves an envelope that failed for good to the dead letters, with the reason.
    fn dead_letter(
        &self,
        envelope: Envelope,
        reason: String,
    ) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Every envelope this instance (in an earlier life: same identity, before a crash or
    /// restart) accepted but neither completed nor dead-lettered, in acceptance order: what a
    /// restarted process resumes before it takes new work.
    fn unfinished(&self) -> BoxFuture<'static, Result<Vec<Envelope>, StoreError>>;
    /// Keeps this instance's claim on its own work alive, and takes over the unfinished work of
    /// instances whose claim ran out (they died): called periodically; returns the adopted
    /// envelopes, in acceptance order, for the caller to resume.
    fn renew_and_adopt(&self) -> BoxFuture<'static, Result<Vec<Envelope>, StoreError>>;
    /// Whether the store answers.
    fn ping(&self) -> BoxFuture<'static, Result<(), StoreError>>;
}

/// Whether a failed delivery is worth another try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryHint {
    /// Try again, not sooner than `not_before` where the receiver asked for a pause.
    Later {
        /// The receiver's `Retry-After`, if it gave one.
        not_before: Option<Duration>,
    },
    /// Trying again cannot help.
    Never,
}

/// Why a delivery failed, and whether to try again.
#[derive(Clone, Debug)]
pub struct DeliveryFailure {
    /// What went wrong, for the log and the dead letter.
    pub reason: String,
    /// Whether to try again.
    pub retry: RetryHint,
    /// What to pass on in the other lane should this failure be the last (no retry left), in
    /// place of a dead letter.
    pub notice: Option<Notice>,
}

impl DeliveryFailure {
    /// A failure worth another try.
    pub fn transient(reason: impl Into<String>, not_before: Option<Duration>) -> Self {
        Self {
            reason: reason.into(),
            retry: RetryHint::Later { not_before },
            notice: None,
        }
    }

    /// A failure that no retry can mend.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            retry: RetryHint::Never,
            notice: None,
        }
    }

    /// The same failure, with the notice to pass on should it be the last.
    pub fn with_notice(self, notice: Notice) -> Self {
        Self {
            notice: Some(notice),
            ..self
        }
    }
}

/// Passes an envelope on (to CTLive, to Infobip, to a host actor). Lives on one arbiter: the
/// future it returns need not be `Send`, so it can use `awc`.
pub trait Sink {
    /// The function name its log lines carry, e.g. `forwardMessage`.
    fn name(&self) -> &'static str;
    /// Passes one envelope on; resolves when the receiver took it or refused it.
    fn deliver(&self, envelope: &Envelope) -> LocalBoxFuture<'static, Result<(), DeliveryFailure>>;
}

/// The sink of each lane.
#[derive(Clone)]
pub struct Sinks {
    /// Where inbound work goes (CTLive, or a host actor).
    pub inbound: Rc<dyn Sink>,
    /// Where outbound work goes (Infobip).
    pub outbound: Rc<dyn Sink>,
}

impl Sinks {
    /// The sink of `lane`.
    pub fn of(&self, lane: Lane) -> &Rc<dyn Sink> {
        match lane {
            Lane::Inbound => &self.inbound,
            Lane::Outbound => &self.outbound,
        }
    }
}

/// Makes the [`Sinks`] on the arbiter that will use them (one per registry shard).
pub type SinkFactory = Arc<dyn Fn() -> Sinks + Send + Sync>;
