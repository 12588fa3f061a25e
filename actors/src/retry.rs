//! Exponential backoff with jitter, capped, never sooner than the receiver asked.

use std::time::Duration;

/// How a conversation retries a failed delivery.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// The first pause.
    pub initial: Duration,
    /// No pause is longer, unless the receiver's `Retry-After` asks for more.
    pub max: Duration,
    /// Work older than this is not retried any more: it has failed for good.
    pub max_age: Duration,
}

impl RetryPolicy {
    /// The pause before attempt `failed + 1`, after `failed` failures: doubling from `initial`,
    /// capped at `max`, the upper half of it random (so that many conversations failing at once
    /// do not retry at once), and at least `not_before`.
    pub fn delay(&self, failed: u32, not_before: Option<Duration>) -> Duration {
        let doublings = failed.saturating_sub(1).min(30);
        let ceiling = self.initial.saturating_mul(1 << doublings).min(self.max);
        let half = ceiling / 2;
        let jittered = half + half.mul_f64(fastrand::f64());
        jittered.max(not_before.unwrap_or_default())
    }

    /// Whether work of this age has had all the retries it gets.
    pub fn gives_up(&self, age: Duration) -> bool {
        age >= self.max_age
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
            max_age: Duration::from_secs(60),
        }
    }

    /// Each pause lies in the upper half of a doubling ceiling, capped at `max`.
    #[test]
    fn delay_doubles_with_jitter_up_to_the_cap() {
        let policy = policy();
        for (failed, ceiling_ms) in [
            (1, 200),
            (2, 400),
            (3, 800),
            (6, 6400),
            (7, 10_000),
            (40, 10_000),
        ] {
            for _ in 0..50 {
                let delay = policy.delay(failed, None).as_millis();
                assert!(
                    (ceiling_ms / 2..=ceiling_ms).contains(&delay),
                    "after {failed} failures expected a pause in [{}, {ceiling_ms}] ms, got {delay}",
                    ceiling_ms / 2
                );
            }
        }
    }

    /// A `Retry-After` longer than the backoff wins, even past the cap.
    #[test]
    fn delay_honours_retry_after() {
        let asked = Duration::from_secs(30);
        assert_eq!(policy().delay(1, Some(asked)), asked);
    }

    /// Retries stop at `max_age`.
    #[test]
    fn gives_up_at_max_age() {
        assert!(!policy().gives_up(Duration::from_secs(59)));
        assert!(policy().gives_up(Duration::from_secs(60)));
    }
}
