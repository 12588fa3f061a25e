//! Spaces requests to a rate: a tenant's cap on sends (or media downloads) per second. Shared by
//! every instance where the store is Redis; per process otherwise, or while Redis does not answer.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use log::debug;

use crate::store::SharedPace;

/// Hands out slots at most `rps` per second, evenly spaced.
pub struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
    shared: Option<(Arc<dyn SharedPace>, String)>,
}

impl Pacer {
    /// A pacer for `rps` requests per second (at least 1), shared under `key` where `shared`
    /// is given.
    pub fn new(rps: u32, shared: Option<(Arc<dyn SharedPace>, String)>) -> Self {
        Self {
            interval: Duration::from_secs(1) / rps.max(1),
            next: Mutex::new(Instant::now()),
            shared,
        }
    }

    /// Waits for the next slot.
    pub async fn wait(&self) {
        let wait = match &self.shared {
            Some((pace, key)) => match pace.reserve(key, self.interval).await {
                Ok(wait) => wait,
                Err(error) => {
                    debug!("[IMCHANNEL] [pace] {key}: {error}; pacing this process alone");
                    self.reserve()
                }
            },
            None => self.reserve(),
        };
        if !wait.is_zero() {
            actix_web::rt::time::sleep(wait).await;
        }
    }

    /// Takes the next slot of this process; how long to wait for it.
    fn reserve(&self) -> Duration {
        let now = Instant::now();
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = (*next).max(now);
        *next = slot + self.interval;
        slot - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slots taken one after another are at least 1/rps apart, however the thread is scheduled.
    #[test]
    fn slots_are_spaced_by_the_rate() {
        let pacer = Pacer::new(10, None);
        let slots: Vec<Instant> = (0..4).map(|_| Instant::now() + pacer.reserve()).collect();
        for pair in slots.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_millis(99),
                "slots {gap:?} apart at 10/s"
            );
        }
    }
}
