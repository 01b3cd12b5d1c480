//! When a failed issuance's backoff still holds (its bounds are
//! [`crate::runtime::settings::Backoff`]: 10 s doubling to a cap of
//! 32 h, cert-manager's (its own start is 1 h). A failed issuance is one the
//! CA refused, or one whose transient failures ran out (`acme::retry`).

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
}
