//! The Redis store. The hot path (accept, complete) goes over one multiplexed, self-reconnecting
//! connection, so the commands of concurrent requests share round trips instead of each taking a
//! pooled connection (DESIGN.md §9); the rest (recovery, leases, dead letters, readiness) uses a
//! deadpool-redis pool.
//!
//! Keys, under `store.key_prefix`: `:dedup:<key>` (marks, with TTL), `:rank:<subject>` (highest
//! status rank), `:journal:<instance>` (a stream per instance of its accepted, not yet settled
//! work, in acceptance order), `:lease:<instance>` and `:instances` (who is alive),
//! `:adopted:<adopter>:<orphan>:<n>` (a dead instance's journal, taken over), `:conv:<tenant>:<id>`
//! (the conversation of a send, for the reports on it), `:deadletters` (a list of JSON records).
//!
//! Each instance owns its journal while its lease lives. A process that restarts under the same
//! identity resumes its journal at once; the journal of an instance that died and did not come
//! back is adopted, whole and by exactly one instance, once its lease ran out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_redis::{Connection, Pool, PoolConfig, Runtime, Timeouts};
use futures::future::{BoxFuture, FutureExt};
use imchannel_actors::ports::{
    recall_key, Candidate, ConversationKey, Envelope, Lane, Receipt, Store, StoreError, Verdict,
};
use log::{info, warn};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamId, StreamRangeReply};
use redis::{AsyncCommands, Script};

use super::{dead_letter_json, MAX_DEAD_LETTERS};
use crate::config::StoreSettings;

/// How long a Redis command may take before the store counts as unavailable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How many journal entries one recovery read fetches.
const RECOVERY_PAGE: usize = 1000;
/// Connections of the pool (for the commands off the hot path).
const POOL_SIZE: usize = 8;

/// The store of a gateway with Redis.
pub struct RedisStore {
    hot: ConnectionManager,
    pool: Pool,
    keys: Keys,
    dedup_ttl_secs: u64,
    accept: Script,
    settle: Script,
    tender: Tender,
}

/// The names of imchannel's keys, for one instance.
#[derive(Clone)]
struct Keys {
    prefix: String,
    instance: String,
}

impl Keys {
    fn dedup(&self, key: &str) -> String {
        format!("{}:dedup:{key}", self.prefix)
    }

    fn rank(&self, subject: &str) -> String {
        format!("{}:rank:{subject}", self.prefix)
    }

    /// Where the conversation of outbound work is remembered.
    fn memo(&self, recall_key: &str) -> String {
        format!("{}:conv:{recall_key}", self.prefix)
    }

    /// This instance's journal.
    fn journal(&self) -> String {
        self.journal_of(&self.instance)
    }

    fn journal_of(&self, instance: &str) -> String {
        format!("{}:journal:{instance}", self.prefix)
    }

    fn lease_of(&self, instance: &str) -> String {
        format!("{}:lease:{instance}", self.prefix)
    }

    fn instances(&self) -> String {
        format!("{}:instances", self.prefix)
    }

    /// A fresh name for `orphan`'s journal once this instance adopted it.
    fn adopted(&self, orphan: &str) -> String {
        format!(
            "{}:adopted:{}:{orphan}:{}",
            self.prefix,
            self.instance,
            uuid::Uuid::new_v4()
        )
    }

    fn dead_letters(&self) -> String {
        format!("{}:deadletters", self.prefix)
    }
}

/// The receipt of entry `entry` of `journal`.
fn receipt(journal: &str, entry: &str) -> Receipt {
    Receipt(format!("{journal} {entry}"))
}

/// The journal and entry id a receipt names.
fn journal_entry(receipt: &Receipt) -> Result<(&str, &str), StoreError> {
    receipt
        .0
        .rsplit_once(' ')
        .ok_or_else(|| StoreError::Corrupt(format!("not a journal receipt: {}", receipt.0)))
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

impl RedisStore {
    /// Connects to `settings.redis_url` as `instance` (an identity unique among the live
    /// processes sharing this Redis) and takes its lease; fails if Redis does not answer.
    pub async fn connect(settings: &StoreSettings, instance: &str) -> Result<Self, StoreError> {
        let url = settings.redis_url.expose();
        let client =
            redis::Client::open(url).map_err(|e| unavailable(format!("store.redis_url: {e}")))?;
        let hot = client
            .get_connection_manager_with_config(
                ConnectionManagerConfig::new()
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_number_of_retries(1),
            )
            .await
            .map_err(unavailable)?;
        let mut pool_config = deadpool_redis::Config::from_url(url);
        pool_config.pool = Some(PoolConfig {
            max_size: POOL_SIZE,
            timeouts: Timeouts {
                wait: Some(CONNECT_TIMEOUT),
                create: Some(CONNECT_TIMEOUT),
                recycle: Some(CONNECT_TIMEOUT),
            },
            ..PoolConfig::default()
        });
        let pool = pool_config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(unavailable)?;
        let keys = Keys {
            prefix: settings.key_prefix.clone(),
            instance: instance.to_owned(),
        };
        let tender = Tender {
            pool: pool.clone(),
            keys: keys.clone(),
            lease: Duration::from_secs(settings.instance_lease_secs),
            adopt: Script::new(include_str!("adopt.lua")),
        };
        let mut connection = pool.get().await.map_err(unavailable)?;
        tender.renew_lease(&mut connection).await?;
        Ok(Self {
            hot,
            pool,
            keys,
            dedup_ttl_secs: settings.dedup_ttl_secs,
            accept: Script::new(include_str!("accept.lua")),
            settle: Script::new(include_str!("settle.lua")),
            tender,
        })
    }
}

impl RedisStore {
    /// The multiplexed connection, for other users of this Redis (media).
    pub fn connection(&self) -> ConnectionManager {
        self.hot.clone()
    }

    /// Runs accept.lua for `batch`, settling `settled` in the same atomic step.
    fn accepting(
        &self,
        batch: Vec<Candidate>,
        settled: Option<Receipt>,
    ) -> impl std::future::Future<Output = Result<Vec<Verdict>, StoreError>> + Send + 'static {
        let mut hot = self.hot.clone();
        let script = self.accept.clone();
        let keys = self.keys.clone();
        let ttl = self.dedup_ttl_secs;
        async move {
            let journal = keys.journal();
            let (settled_journal, settled_entry) = match &settled {
                Some(receipt) => journal_entry(receipt)?,
                None => (journal.as_str(), ""),
            };
            let mut invocation = script.prepare_invoke();
            invocation
                .key(&journal)
                .key(settled_journal)
                .arg(ttl)
                .arg(settled_entry);
            for candidate in &batch {
                let (rank_key, rank) = candidate.rank.as_ref().map_or((String::new(), 0), |rank| {
                    (keys.rank(&rank.subject), rank.value)
                });
                let memo = match candidate.lane {
                    Lane::Outbound => keys.memo(&recall_key(
                        &candidate.conversation.tenant,
                        &candidate.reference,
                    )),
                    Lane::Inbound => String::new(),
                };
                invocation
                    .arg(keys.dedup(&candidate.dedup_key))
                    .arg(rank_key)
                    .arg(rank)
                    .arg(candidate.conversation.encode())
                    .arg(&candidate.reference)
                    .arg(candidate.payload.as_ref())
                    .arg(candidate.lane.code())
                    .arg(candidate.after.as_deref().unwrap_or_default())
                    .arg(memo);
            }
            let entries: Vec<String> = invocation
                .invoke_async(&mut hot)
                .await
                .map_err(unavailable)?;
            if entries.len() != batch.len() {
                return Err(StoreError::Corrupt(format!(
                    "accept returned {} verdicts for {} candidates",
                    entries.len(),
                    batch.len()
                )));
            }
            Ok(batch
                .into_iter()
                .zip(entries)
                .map(|(candidate, entry)| match entry.as_str() {
                    "" => Verdict::Duplicate,
                    "-" => Verdict::Superseded,
                    _ => Verdict::Accepted(Envelope {
                        accepted_at: accepted_at(&entry),
                        receipt: receipt(&journal, &entry),
                        conversation: candidate.conversation,
                        lane: candidate.lane,
                        after: candidate.after,
                        reference: candidate.reference,
                        payload: candidate.payload,
                    }),
                })
                .collect())
        }
    }
}

/// Every entry of `journal`, in order, as envelopes.
async fn read_journal(
    connection: &mut Connection,
    journal: &str,
) -> Result<Vec<Envelope>, StoreError> {
    let mut envelopes = Vec::new();
    let mut start = "-".to_owned();
    loop {
        let page: StreamRangeReply = connection
            .xrange_count(journal, &start, "+", RECOVERY_PAGE)
            .await
            .map_err(unavailable)?;
        let full = page.ids.len() == RECOVERY_PAGE;
        for entry in page.ids {
            start = format!("({}", entry.id);
            envelopes.push(journal_envelope(journal, entry)?);
        }
        if !full {
            return Ok(envelopes);
        }
    }
}

/// When a journal entry was written: its id is `<milliseconds>-<sequence>`.
fn accepted_at(entry_id: &str) -> SystemTime {
    let millis = entry_id
        .split_once('-')
        .and_then(|(millis, _)| millis.parse().ok())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_millis(millis)
}

impl Store for RedisStore {
    fn accept(
        &self,
        batch: Vec<Candidate>,
    ) -> BoxFuture<'static, Result<Vec<Verdict>, StoreError>> {
        self.accepting(batch, None).boxed()
    }

    fn complete(&self, receipt: Receipt) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut hot = self.hot.clone();
        let settle = self.settle.clone();
        async move {
            let (journal, entry) = journal_entry(&receipt)?;
            settle
                .key(journal)
                .arg(entry)
                .invoke_async::<()>(&mut hot)
                .await
                .map_err(unavailable)
        }
        .boxed()
    }

    fn replace(
        &self,
        failed: Receipt,
        notice: Candidate,
    ) -> BoxFuture<'static, Result<Option<Envelope>, StoreError>> {
        let accepting = self.accepting(vec![notice], Some(failed));
        async move {
            Ok(match accepting.await?.pop() {
                Some(Verdict::Accepted(envelope)) => Some(envelope),
                _ => None,
            })
        }
        .boxed()
    }

    fn recall(
        &self,
        keys: Vec<String>,
    ) -> BoxFuture<'static, Result<Vec<Option<ConversationKey>>, StoreError>> {
        let mut hot = self.hot.clone();
        let memos: Vec<String> = keys.iter().map(|key| self.keys.memo(key)).collect();
        async move {
            let remembered: Vec<Option<String>> = redis::cmd("MGET")
                .arg(&memos)
                .query_async(&mut hot)
                .await
                .map_err(unavailable)?;
            Ok(remembered
                .into_iter()
                .map(|encoded| encoded.and_then(|encoded| ConversationKey::decode(&encoded)))
                .collect())
        }
        .boxed()
    }

    fn dead_letter(
        &self,
        envelope: Envelope,
        reason: String,
    ) -> BoxFuture<'static, Result<(), StoreError>> {
        let pool = self.pool.clone();
        let keys = self.keys.clone();
        let settle = self.settle.clone();
        async move {
            let (journal, entry) = journal_entry(&envelope.receipt)?;
            let mut connection = pool.get().await.map_err(unavailable)?;
            redis::pipe()
                .atomic()
                .lpush(keys.dead_letters(), dead_letter_json(&envelope, &reason))
                .ignore()
                .ltrim(keys.dead_letters(), 0, MAX_DEAD_LETTERS as isize - 1)
                .ignore()
                .xdel(journal, &[entry])
                .ignore()
                .query_async::<()>(&mut connection)
                .await
                .map_err(unavailable)?;
            // Dead-lettered and out of the journal in one step; now drop the journal if empty.
            settle
                .key(journal)
                .arg(entry)
                .invoke_async::<()>(&mut connection)
                .await
                .map_err(unavailable)
        }
        .boxed()
    }

    fn unfinished(&self) -> BoxFuture<'static, Result<Vec<Envelope>, StoreError>> {
        let pool = self.pool.clone();
        let journal = self.keys.journal();
        async move {
            let mut connection = pool.get().await.map_err(unavailable)?;
            read_journal(&mut connection, &journal).await
        }
        .boxed()
    }

    fn renew_and_adopt(&self) -> BoxFuture<'static, Result<Vec<Envelope>, StoreError>> {
        let tender = self.tender.clone();
        async move { tender.renew_and_adopt().await }.boxed()
    }

    fn ping(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        let pool = self.pool.clone();
        async move {
            let mut connection = pool.get().await.map_err(unavailable)?;
            redis::cmd("PING")
                .query_async::<()>(&mut connection)
                .await
                .map_err(unavailable)
        }
        .boxed()
    }
}

/// Keeps this instance's lease and adopts the journals of dead instances; owned and cloneable,
/// so that it can run detached.
#[derive(Clone)]
struct Tender {
    pool: Pool,
    keys: Keys,
    lease: Duration,
    adopt: Script,
}

impl Tender {
    /// Extends this instance's lease (and its membership of the instances); `false` when the
    /// lease had run out, so that others may have adopted this instance's journal meanwhile.
    async fn renew_lease(&self, connection: &mut Connection) -> Result<bool, StoreError> {
        let (previous,): (Option<String>,) = redis::pipe()
            .cmd("SET")
            .arg(self.keys.lease_of(&self.keys.instance))
            .arg(&self.keys.instance)
            .arg("PX")
            .arg(self.lease.as_millis() as u64)
            .arg("GET")
            .sadd(self.keys.instances(), &self.keys.instance)
            .ignore()
            .query_async(connection)
            .await
            .map_err(unavailable)?;
        Ok(previous.is_some())
    }

    async fn renew_and_adopt(&self) -> Result<Vec<Envelope>, StoreError> {
        let mut connection = self.pool.get().await.map_err(unavailable)?;
        if !self.renew_lease(&mut connection).await? {
            warn!(
                "[IMCHANNEL] [lease] the lease of instance {} had run out: another instance may have taken over its unfinished work, which may then be passed on twice",
                self.keys.instance
            );
        }
        let instances: Vec<String> = connection
            .smembers(self.keys.instances())
            .await
            .map_err(unavailable)?;
        let mut adopted = Vec::new();
        for orphan in instances.iter().filter(|id| **id != self.keys.instance) {
            let name = self.keys.adopted(orphan);
            let took: i64 = self
                .adopt
                .key(self.keys.instances())
                .key(self.keys.lease_of(orphan))
                .key(self.keys.journal_of(orphan))
                .key(&name)
                .arg(orphan)
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            if took == 1 {
                let envelopes = read_journal(&mut connection, &name).await?;
                info!(
                    "[IMCHANNEL] [adopt] instance {orphan} stopped: taking over its {} unfinished events",
                    envelopes.len()
                );
                adopted.extend(envelopes);
            }
        }
        Ok(adopted)
    }
}

/// An envelope from entry `entry` of `journal`.
fn journal_envelope(journal: &str, entry: StreamId) -> Result<Envelope, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("journal entry {}: {what}", entry.id));
    let field = |name: &str| -> Result<Vec<u8>, StoreError> {
        entry
            .get::<Vec<u8>>(name)
            .ok_or_else(|| corrupt(&format!("no field {name}")))
    };
    let conversation = String::from_utf8(field("c")?)
        .ok()
        .and_then(|encoded| ConversationKey::decode(&encoded))
        .ok_or_else(|| corrupt("unreadable conversation"))?;
    let reference = String::from_utf8_lossy(&field("r")?).into_owned();
    let payload = field("p")?.into();
    // Entries written before lanes existed carry neither `l` nor `a`: they are inbound.
    let lane = match entry.get::<String>("l") {
        None => Lane::Inbound,
        Some(code) => Lane::from_code(&code).ok_or_else(|| corrupt("unreadable lane"))?,
    };
    let after = entry.get::<String>("a").unwrap_or_default();
    Ok(Envelope {
        accepted_at: accepted_at(&entry.id),
        receipt: receipt(journal, &entry.id),
        conversation,
        lane,
        after: (!after.is_empty()).then_some(after),
        reference,
        payload,
    })
}
