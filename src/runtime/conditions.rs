//! Conditions as cert-manager writes them: one per type, `lastTransitionTime`
//! moving only when the status flips, `observedGeneration` recorded.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::certificate_request::CertificateRequestCondition;
use crate::api::meta::{Condition, ConditionStatus};

/// The parts of a condition the bookkeeping needs.
trait Typed: Clone {
    fn type_(&self) -> &str;
    fn status(&self) -> ConditionStatus;
    fn transition(&self) -> Option<Time>;
}

impl Typed for Condition {
    fn type_(&self) -> &str {
        &self.type_
    }
    fn status(&self) -> ConditionStatus {
        self.status
    }
    fn transition(&self) -> Option<Time> {
        self.last_transition_time.clone()
    }
}

impl Typed for CertificateRequestCondition {
    fn type_(&self) -> &str {
        &self.type_
    }
    fn status(&self) -> ConditionStatus {
        self.status
    }
    fn transition(&self) -> Option<Time> {
        self.last_transition_time.clone()
    }
}

/// The transition time of `type_` set to `status`: kept unless the status flips.
fn transition_time<C: Typed>(
    conditions: &[C],
    type_: &str,
    status: ConditionStatus,
    now: Timestamp,
) -> Option<Time> {
    match conditions.iter().find(|c| c.type_() == type_) {
        Some(p) if p.status() == status => p.transition().or(Some(Time(now))),
        _ => Some(Time(now)),
    }
}

/// `conditions` with `updated` replacing the one of its type, sorted by type.
fn upsert<C: Typed>(conditions: &[C], updated: C) -> Vec<C> {
    let mut out: Vec<C> = conditions
        .iter()
        .filter(|c| c.type_() != updated.type_())
        .cloned()
        .collect();
    out.push(updated);
    out.sort_by(|a, b| a.type_().cmp(b.type_()));
    out
}

/// A CertificateRequest's `conditions` with `type_` set (they carry no observedGeneration).
pub fn set_request(
    conditions: &[CertificateRequestCondition],
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
) -> Vec<CertificateRequestCondition> {
    let updated = CertificateRequestCondition {
        type_: type_.to_string(),
        status,
        last_transition_time: transition_time(conditions, type_, status, Timestamp::now()),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
    };
    upsert(conditions, updated)
}

/// `conditions` with `type_` set to the given status, reason and message.
pub fn set(
    conditions: &[Condition],
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let updated = Condition {
        type_: type_.to_string(),
        status,
        last_transition_time: transition_time(conditions, type_, status, now),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        observed_generation: generation,
    };
    upsert(conditions, updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_a_status_flip() {
        let t1 = Timestamp::from_second(1_000).expect("t1");
        let t2 = Timestamp::from_second(2_000).expect("t2");
        let first = set(
            &[],
            "Ready",
            ConditionStatus::False,
            "Pending",
            "waiting",
            Some(1),
            t1,
        );
        let same = set(
            &first,
            "Ready",
            ConditionStatus::False,
            "StillPending",
            "still waiting",
            Some(2),
            t2,
        );
        assert_eq!(same[0].last_transition_time, Some(Time(t1)));
        assert_eq!(same[0].reason.as_deref(), Some("StillPending"));
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = set(
            &same,
            "Ready",
            ConditionStatus::True,
            "Ready",
            "ok",
            Some(2),
            t2,
        );
        assert_eq!(flipped[0].last_transition_time, Some(Time(t2)));
        let two = set(
            &flipped,
            "Issuing",
            ConditionStatus::True,
            "DoesNotExist",
            "m",
            Some(2),
            t2,
        );
        assert_eq!(
            two.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            ["Issuing", "Ready"]
        );
    }
}
