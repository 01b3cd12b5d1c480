//! When to try again after a failed issuance: 10 s doubling to a cap of
//! 32 h, cert-manager's (its own start is 1 h). A failed issuance is one the
//! CA refused, or one whose transient failures ran out (`acme::retry`).

use std::time::Duration;

/// Backoff bounds, configurable on the controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// First delay after a permanent failure.
    pub min: Duration,
    /// Longest delay after repeated permanent failures.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min: Duration::from_secs(10),
            max: Duration::from_secs(32 * 3600),
        }
    }
}

impl Backoff {
    fn exponential(base: Duration, attempts: u32, cap: Duration) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        base.saturating_mul(factor).min(cap)
    }

    /// Delay before the next attempt after `attempts` consecutive permanent failures (≥ 1).
    pub fn after_failure(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        retry_after.unwrap_or_else(|| Self::exponential(self.min, attempts, self.max))
    }
}

/// Whether the Certificate's spec changed since a failure recorded at
/// `failed_generation` (then the backoff no longer applies).
pub fn spec_changed_since(failed_generation: Option<i64>, generation: Option<i64>) -> bool {
    matches!((failed_generation, generation), (Some(f), Some(g)) if g > f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_generation_resets_the_backoff() {
        assert!(spec_changed_since(Some(1), Some(2)));
        assert!(!spec_changed_since(Some(2), Some(2)));
        assert!(!spec_changed_since(None, Some(2)), "unknown: keep waiting");
    }

    #[test]
    fn capped_exponential_and_retry_after_wins() {
        let b = Backoff::default();
        let secs = |d: Duration| d.as_secs_f64();
        assert_eq!(secs(b.after_failure(1, None)), 10.0);
        assert_eq!(secs(b.after_failure(2, None)), 20.0);
        assert_eq!(secs(b.after_failure(8, None)), 1280.0);
        assert_eq!(secs(b.after_failure(15, None)), 115_200.0, "32 h");
        assert_eq!(
            secs(b.after_failure(u32::MAX, None)),
            115_200.0,
            "capped at max"
        );
        assert_eq!(
            b.after_failure(9, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
    }
}
