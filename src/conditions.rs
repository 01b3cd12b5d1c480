//! Conditions as cert-manager writes them: one per type, `lastTransitionTime`
//! moving only when the status flips, `observedGeneration` recorded.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::meta::{Condition, ConditionStatus};

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
    let previous = conditions.iter().find(|c| c.type_ == type_);
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone().or(Some(Time(now))),
        _ => Some(Time(now)),
    };
    let updated = Condition {
        type_: type_.to_string(),
        status,
        last_transition_time,
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        observed_generation: generation,
    };
    let mut out: Vec<Condition> = conditions
        .iter()
        .filter(|c| c.type_ != type_)
        .cloned()
        .collect();
    out.push(updated);
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
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
