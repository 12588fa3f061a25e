//! The Redis store. The hot path (accept, complete) goes over one multiplexed, self-reconnecting
//! connection, so the commands of concurrent requests share round trips instead of each taking a
//! pooled connection (DESIGN.md §9); the rest (recovery scans, dead letters, readiness) uses a
//! deadpool-redis pool.
//!
//! Keys, under `store.key_prefix`: `:dedup:<key>` (marks, with TTL), `:rank:<subject>` (highest
//! status rank), `:journal` (a stream of accepted, not yet completed work, in acceptance order),
//! `:deadletters` (a list of JSON records).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_redis::{Pool, PoolConfig, Runtime, Timeouts};
use futures::future::{BoxFuture, FutureExt};
use imchannel_actors::ports::{
    Candidate, ConversationKey, Envelope, Receipt, Store, StoreError, Verdict,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::StreamRangeReply;
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
}

/// The names of imchannel's keys.
#[derive(Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn dedup(&self, key: &str) -> String {
        format!("{}:dedup:{key}", self.prefix)
    }

    fn rank(&self, subject: &str) -> String {
        format!("{}:rank:{subject}", self.prefix)
    }

    fn journal(&self) -> String {
        format!("{}:journal", self.prefix)
    }

    fn dead_letters(&self) -> String {
        format!("{}:deadletters", self.prefix)
    }
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

impl RedisStore {
    /// Connects to `settings.redis_url`; fails if Redis does not answer.
    pub async fn connect(settings: &StoreSettings) -> Result<Self, StoreError> {
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
        Ok(Self {
            hot,
            pool,
            keys: Keys {
                prefix: settings.key_prefix.clone(),
            },
            dedup_ttl_secs: settings.dedup_ttl_secs,
            accept: Script::new(include_str!("accept.lua")),
        })
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
        let mut hot = self.hot.clone();
        let script = self.accept.clone();
        let keys = self.keys.clone();
        let ttl = self.dedup_ttl_secs;
        async move {
            let mut invocation = script.prepare_invoke();
            invocation.key(keys.journal()).arg(ttl);
            for candidate in &batch {
                let (rank_key, rank) = candidate.rank.as_ref().map_or((String::new(), 0), |rank| {
                    (keys.rank(&rank.subject), rank.value)
                });
                invocation
                    .arg(keys.dedup(&candidate.dedup_key))
                    .arg(rank_key)
                    .arg(rank)
                    .arg(candidate.conversation.encode())
                    .arg(&candidate.reference)
                    .arg(candidate.payload.as_ref());
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
                        receipt: Receipt(entry),
                        conversation: candidate.conversation,
                        reference: candidate.reference,
                        payload: candidate.payload,
                    }),
                })
                .collect())
        }
        .boxed()
    }

    fn complete(&self, receipt: Receipt) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut hot = self.hot.clone();
        let journal = self.keys.journal();
        async move {
            let _: usize = hot.xdel(journal, &[receipt.0]).await.map_err(unavailable)?;
            Ok(())
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
        async move {
            let mut connection = pool.get().await.map_err(unavailable)?;
            redis::pipe()
                .atomic()
                .lpush(keys.dead_letters(), dead_letter_json(&envelope, &reason))
                .ignore()
                .ltrim(keys.dead_letters(), 0, MAX_DEAD_LETTERS as isize - 1)
                .ignore()
                .xdel(keys.journal(), &[envelope.receipt.0.as_str()])
                .ignore()
                .query_async::<()>(&mut connection)
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
            let mut envelopes = Vec::new();
            let mut start = "-".to_owned();
            loop {
                let page: StreamRangeReply = connection
                    .xrange_count(&journal, &start, "+", RECOVERY_PAGE)
                    .await
                    .map_err(unavailable)?;
                let full = page.ids.len() == RECOVERY_PAGE;
                for entry in page.ids {
                    start = format!("({}", entry.id);
                    envelopes.push(journal_envelope(entry)?);
                }
                if !full {
                    return Ok(envelopes);
                }
            }
        }
        .boxed()
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

/// An envelope from its journal entry.
fn journal_envelope(entry: redis::streams::StreamId) -> Result<Envelope, StoreError> {
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
    Ok(Envelope {
        accepted_at: accepted_at(&entry.id),
        receipt: Receipt(entry.id.clone()),
        conversation,
        reference,
        payload,
    })
}
