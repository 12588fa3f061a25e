//! Waiting for something to become true, with a deadline instead of a fixed sleep.

use std::time::{Duration, Instant};

/// The default patience of a test.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Polls `probe` every few milliseconds until it yields a value; panics naming `what` after
/// `deadline`.
pub async fn eventually<T>(
    what: &str,
    deadline: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let until = Instant::now() + deadline;
    let mut tick = actix_web::rt::time::interval(Duration::from_millis(10));
    loop {
        tick.tick().await;
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
    }
}

/// Checks that `probe` stays true for `period` (for "nothing more arrives" assertions, after the
/// event that would have caused it has provably been processed).
pub async fn stays(what: &str, period: Duration, mut probe: impl FnMut() -> bool) {
    let until = Instant::now() + period;
    let mut tick = actix_web::rt::time::interval(Duration::from_millis(10));
    while Instant::now() < until {
        tick.tick().await;
        assert!(probe(), "expected {what} to hold for {period:?}");
    }
}
