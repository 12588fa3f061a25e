//! Rates shared by every instance on one Redis: the tenants' caps on sends and media downloads
//! per second hold for the whole deployment, not per process.

use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use imchannel_actors::ports::StoreError;
use redis::aio::ConnectionManager;
use redis::Script;

/// Hands out slots of named rates shared across instances.
pub trait SharedPace: Send + Sync + 'static {
    /// Takes the next slot of rate `key` (slots `interval` apart); how long to wait for it.
    fn reserve(
        &self,
        key: &str,
        interval: Duration,
    ) -> BoxFuture<'static, Result<Duration, StoreError>>;
}

/// Shared rates in Redis (`<prefix>:pace:<key>`), one script call per slot.
pub struct RedisPace {
    hot: ConnectionManager,
    prefix: String,
    script: Script,
}

impl RedisPace {
    /// Rates over the store's multiplexed connection.
    pub fn new(hot: ConnectionManager, prefix: &str) -> Self {
        Self {
            hot,
            prefix: prefix.to_owned(),
            script: Script::new(include_str!("pace.lua")),
        }
    }
}

impl SharedPace for RedisPace {
    fn reserve(
        &self,
        key: &str,
        interval: Duration,
    ) -> BoxFuture<'static, Result<Duration, StoreError>> {
        let mut hot = self.hot.clone();
        let script = self.script.clone();
        let key = format!("{}:pace:{key}", self.prefix);
        async move {
            let wait: u64 = script
                .key(&key)
                .arg(interval.as_millis().max(1) as u64)
                .invoke_async(&mut hot)
                .await
                .map_err(|error| StoreError::Unavailable(error.to_string()))?;
            Ok(Duration::from_millis(wait))
        }
        .boxed()
    }
}
