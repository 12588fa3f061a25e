//! Spaces requests to a rate: a tenant's cap on sends per second to Infobip.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Hands out send slots at most `rps` per second, evenly spaced, shared by every arbiter.
pub struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    /// A pacer for `rps` requests per second (at least 1).
    pub fn new(rps: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / rps.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Takes the next slot; returns how long to wait for it.
    pub fn reserve(&self) -> Duration {
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
        let pacer = Pacer::new(10);
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
