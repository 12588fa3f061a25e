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

    /// The pause before the next attempt at work of `age` that failed `failed` times, or `None`
    /// when it has had all its retries: it reached `max_age`, or the receiver asked for a pause
    /// that ends past it. The last pause is shortened to end at `max_age`, never below
    /// `not_before`.
    pub fn next_attempt(
        &self,
        failed: u32,
        not_before: Option<Duration>,
        age: Duration,
    ) -> Option<Duration> {
        let remaining = self
            .max_age
            .checked_sub(age)
            .filter(|left| !left.is_zero())?;
        if not_before.is_some_and(|asked| asked > remaining) {
            return None;
        }
        Some(self.delay(failed, not_before).min(remaining))
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

    /// Retries stop at `max_age`; the last pause ends there.
    #[test]
    fn retries_end_at_max_age() {
        let policy = policy();
        assert!(policy
            .next_attempt(1, None, Duration::from_secs(60))
            .is_none());
        assert!(policy
            .next_attempt(1, None, Duration::from_secs(61))
            .is_none());
        let last = policy.next_attempt(20, None, Duration::from_millis(59_900));
        assert!(
            last.is_some_and(|pause| pause <= Duration::from_millis(100)),
            "{last:?}"
        );
    }

    /// A `Retry-After` that ends past `max_age` ends the retries at once instead of being cut.
    #[test]
    fn a_retry_after_past_max_age_gives_up() {
        let policy = policy();
        let asked = Some(Duration::from_secs(30));
        assert!(policy
            .next_attempt(1, asked, Duration::from_secs(40))
            .is_none());
        assert_eq!(
            policy.next_attempt(1, asked, Duration::from_secs(20)),
            Some(Duration::from_secs(30))
        );
    }
}
