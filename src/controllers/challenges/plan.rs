//! The Challenge controller's state table: from the Challenge, its status
//! as the pass has it so far and what the pass has learnt, the one step to
//! run next. Pure: every choice is unit-tested below; the steps
//! (`steps.rs`) do the I/O and add what they learn to [`Seen`].

use std::time::Duration;

use super::present::Presenter;
use super::schedule::Decision;
use super::self_check::Verdict;
use crate::api::Challenge;
use crate::api::challenge::ChallengeStatus;
use crate::api::order::AcmeState;

/// cert-manager's finalizer, so Challenges it left are finished by us too.
pub const FINALIZER: &str = "acme.cert-manager.io/finalizer";

/// What a pass has learnt so far, besides the Challenge itself.
#[derive(Debug, Default)]
pub struct Seen {
    /// What is left of the wait of a run of failed requests to the CA.
    pub retry_left: Option<Duration>,
    /// The scheduler's answer, once asked.
    pub place: Option<Decision>,
    /// How the token is presented (Err: why that cannot be known), once read.
    pub presenter: Option<Result<Presenter, String>>,
    /// The self-checks' verdict, once they ran (or were waited out).
    pub verdict: Option<Verdict>,
}

/// The next thing to do.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Being deleted with our finalizer: remove what was presented, then
    /// the finalizer.
    CleanUpDeleted,
    /// Being deleted without our finalizer, or final and cleaned up:
    /// forget it.
    Forget,
    /// A final state with something still presented or processing:
    /// record it, clean up, release its place.
    Finish,
    /// Adopt it: our finalizer, and the HTTP-01 mode fixed.
    AddFinalizer,
    /// Its solver names no challenge type: say so and wait for a change.
    Unsolvable,
    /// A run of failed requests to the CA waits this long still.
    WaitForRetry(Duration),
    /// Ask the scheduler for a place.
    Claim,
    /// No place yet: say why and look again shortly.
    WaitForPlace(String),
    /// Read how the token is to be presented.
    ReadPresenter,
    /// It cannot be presented as configured: say why.
    CannotPresent(String),
    /// Present the token.
    Present,
    /// Wait out `waitInsteadOfSelfCheck` (from when it was first presented).
    WaitInsteadOfSelfCheck(Duration),
    /// Check the token is reachable, in-cluster and as the CA will fetch it.
    SelfCheck,
    /// A self-check failed: say why and check again after a backoff.
    SelfCheckFailed,
    /// The checks passed, but not yet the number of times in a row asked.
    CheckAgain,
    /// Ask the CA to validate (unless it has been asked) and poll its
    /// authorization.
    Accept,
}

/// Whether `state` is one a Challenge ends in.
pub fn is_final(state: Option<AcmeState>) -> bool {
    matches!(
        state,
        Some(AcmeState::Valid | AcmeState::Invalid | AcmeState::Errored | AcmeState::Expired)
    )
}

/// The reason of the Warning event a self-check failure that lasts gets
/// (the CA is not asked until the token is reachable).
pub const SELF_CHECK_FAILED: &str = "SelfCheckFailed";

/// The reason of a solver with no challenge type.
pub const UNSOLVABLE: &str = "The Challenge's solver has neither http01 nor dns01";

/// The next step for `ch`, whose status the pass has made `status`, after
/// it learnt `seen`; `passes` self-checks in a row are asked for.
pub fn next_step(ch: &Challenge, status: &ChallengeStatus, seen: &Seen, passes: u32) -> Step {
    let has_finalizer = ch
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER);
    if ch.metadata.deletion_timestamp.is_some() {
        return if has_finalizer {
            Step::CleanUpDeleted
        } else {
            Step::Forget
        };
    }
    if is_final(status.state) {
        return if status.presented == Some(true) || status.processing == Some(true) {
            Step::Finish
        } else {
            Step::Forget
        };
    }
    if !has_finalizer {
        return Step::AddFinalizer;
    }
    if ch.spec.solver.http01.is_none() && ch.spec.solver.dns01.is_none() {
        return Step::Unsolvable;
    }
    if let Some(left) = seen.retry_left {
        return Step::WaitForRetry(left);
    }
    match &seen.place {
        None => return Step::Claim,
        Some(Decision::Go) => {}
        Some(Decision::NameBusy(other)) => {
            return Step::WaitForPlace(format!(
                "Waiting: Challenge {other} for the same name and ACME account is in progress"
            ));
        }
        Some(Decision::Full(n)) => {
            return Step::WaitForPlace(format!(
                "Waiting: {n} Challenges are in progress, the most allowed (--max-concurrent-challenges)"
            ));
        }
    }
    match &seen.presenter {
        None => return Step::ReadPresenter,
        Some(Err(why)) => return Step::CannotPresent(why.clone()),
        Some(Ok(_)) => {}
    }
    if status.presented != Some(true) {
        return Step::Present;
    }
    match &seen.verdict {
        None => match ch.spec.solver.wait_instead_of_self_check.as_deref() {
            None => Step::SelfCheck,
            Some(text) => match crate::time::parse_go_duration(text) {
                Ok(seconds) if seconds >= 0 => {
                    Step::WaitInsteadOfSelfCheck(Duration::from_secs(seconds as u64))
                }
                _ => Step::CannotPresent(
                    "the solver's waitInsteadOfSelfCheck is not a non-negative duration (e.g. 30s)"
                        .into(),
                ),
            },
        },
        Some(Verdict::Failed { .. }) => Step::SelfCheckFailed,
        Some(Verdict::Passed(n)) if *n < passes => Step::CheckAgain,
        Some(Verdict::Passed(_)) => Step::Accept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::Mode;
    use serde_json::json;

    fn challenge(finalized: bool, solver: serde_json::Value) -> Challenge {
        let finalizers = if finalized { vec![FINALIZER] } else { vec![] };
        serde_json::from_value(json!({
            "apiVersion": "acme.cert-manager.io/v1", "kind": "Challenge",
            "metadata": {"name": "c", "namespace": "ns", "finalizers": finalizers},
            "spec": {"url": "u", "authorizationURL": "a", "dnsName": "example.com", "type": "HTTP-01",
                "token": "t", "key": "k", "solver": solver,
                "issuerRef": {"name": "le"}}}))
        .expect("challenge")
    }

    fn http01() -> Challenge {
        challenge(true, json!({"http01": {"ingress": {}}}))
    }

    fn deleted(mut ch: Challenge) -> Challenge {
        ch.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        ch
    }

    fn status(state: Option<AcmeState>, presented: Option<bool>) -> ChallengeStatus {
        ChallengeStatus {
            state,
            presented,
            ..Default::default()
        }
    }

    /// What a pass has learnt once it has a place and a presenter.
    fn placed() -> Seen {
        Seen {
            place: Some(Decision::Go),
            presenter: Some(Ok(Presenter::Http01(Mode::Shared))),
            ..Default::default()
        }
    }

    #[test]
    fn a_deleted_challenge_cleans_up_only_while_it_holds_our_finalizer() {
        let none = Seen::default();
        let fresh = status(None, None);
        assert_eq!(
            next_step(&deleted(http01()), &fresh, &none, 1),
            Step::CleanUpDeleted
        );
        let theirs = deleted(challenge(false, json!({"http01": {"ingress": {}}})));
        assert_eq!(next_step(&theirs, &fresh, &none, 1), Step::Forget);
        let done = status(Some(AcmeState::Valid), Some(false));
        assert_eq!(
            next_step(&deleted(http01()), &done, &none, 1),
            Step::CleanUpDeleted,
            "deletion first"
        );
    }

    #[test]
    fn a_final_state_finishes_once_then_rests() {
        let none = Seen::default();
        for state in [
            AcmeState::Valid,
            AcmeState::Invalid,
            AcmeState::Errored,
            AcmeState::Expired,
        ] {
            let presented = status(Some(state), Some(true));
            assert_eq!(
                next_step(&http01(), &presented, &none, 1),
                Step::Finish,
                "{state:?}"
            );
            let processing = ChallengeStatus {
                processing: Some(true),
                ..status(Some(state), Some(false))
            };
            assert_eq!(next_step(&http01(), &processing, &none, 1), Step::Finish);
            let done = status(Some(state), Some(false));
            assert_eq!(next_step(&http01(), &done, &none, 1), Step::Forget);
        }
        let unfinalized = challenge(false, json!({"http01": {"ingress": {}}}));
        let done = status(Some(AcmeState::Valid), Some(false));
        assert_eq!(
            next_step(&unfinalized, &done, &none, 1),
            Step::Forget,
            "no adoption when done"
        );
    }

    #[test]
    fn a_new_challenge_is_adopted_before_anything_else() {
        let unfinalized = challenge(false, json!({}));
        assert_eq!(
            next_step(&unfinalized, &status(None, None), &placed(), 1),
            Step::AddFinalizer
        );
    }

    #[test]
    fn a_solver_without_a_type_is_said_and_left() {
        let ch = challenge(true, json!({}));
        assert_eq!(
            next_step(&ch, &status(None, None), &Seen::default(), 1),
            Step::Unsolvable
        );
    }

    #[test]
    fn a_run_of_ca_failures_waits_before_the_scheduler_is_asked() {
        let seen = Seen {
            retry_left: Some(Duration::from_secs(7)),
            ..Default::default()
        };
        assert_eq!(
            next_step(
                &http01(),
                &status(Some(AcmeState::Pending), Some(true)),
                &seen,
                1
            ),
            Step::WaitForRetry(Duration::from_secs(7))
        );
    }

    #[test]
    fn the_scheduler_gives_a_place_or_says_why_not() {
        let fresh = status(None, None);
        assert_eq!(
            next_step(&http01(), &fresh, &Seen::default(), 1),
            Step::Claim
        );
        let busy = Seen {
            place: Some(Decision::NameBusy("ns/other".into())),
            ..Default::default()
        };
        let Step::WaitForPlace(why) = next_step(&http01(), &fresh, &busy, 1) else {
            panic!("waits")
        };
        assert!(
            why.contains("ns/other") && why.contains("same name"),
            "{why}"
        );
        let full = Seen {
            place: Some(Decision::Full(60)),
            ..Default::default()
        };
        let Step::WaitForPlace(why) = next_step(&http01(), &fresh, &full, 1) else {
            panic!("waits")
        };
        assert!(
            why.contains("60") && why.contains("--max-concurrent-challenges"),
            "{why}"
        );
    }

    #[test]
    fn the_presenter_is_read_then_the_token_presented_once() {
        let fresh = status(None, None);
        let go = Seen {
            place: Some(Decision::Go),
            ..Default::default()
        };
        assert_eq!(next_step(&http01(), &fresh, &go, 1), Step::ReadPresenter);
        let unreadable = Seen {
            presenter: Some(Err("bad annotation".into())),
            ..go
        };
        assert_eq!(
            next_step(&http01(), &fresh, &unreadable, 1),
            Step::CannotPresent("bad annotation".into())
        );
        assert_eq!(next_step(&http01(), &fresh, &placed(), 1), Step::Present);
        let presented = status(Some(AcmeState::Pending), Some(true));
        assert_eq!(
            next_step(&http01(), &presented, &placed(), 1),
            Step::SelfCheck
        );
    }

    #[test]
    fn wait_instead_of_self_check_replaces_the_checks_when_it_is_a_duration() {
        let presented = status(Some(AcmeState::Pending), Some(true));
        let waits = challenge(
            true,
            json!({"http01": {"ingress": {}}, "waitInsteadOfSelfCheck": "30s"}),
        );
        assert_eq!(
            next_step(&waits, &presented, &placed(), 1),
            Step::WaitInsteadOfSelfCheck(Duration::from_secs(30))
        );
        let zero = challenge(
            true,
            json!({"http01": {"ingress": {}}, "waitInsteadOfSelfCheck": "0s"}),
        );
        assert_eq!(
            next_step(&zero, &presented, &placed(), 1),
            Step::WaitInsteadOfSelfCheck(Duration::ZERO)
        );
        for bad in ["-5s", "soon"] {
            let ch = challenge(
                true,
                json!({"http01": {"ingress": {}}, "waitInsteadOfSelfCheck": bad}),
            );
            let Step::CannotPresent(why) = next_step(&ch, &presented, &placed(), 1) else {
                panic!("{bad} refused")
            };
            assert!(why.contains("waitInsteadOfSelfCheck"), "{why}");
        }
    }

    #[test]
    fn the_verdict_decides_between_backoff_another_check_and_the_ca() {
        let presented = status(Some(AcmeState::Pending), Some(true));
        let with = |verdict| Seen {
            verdict: Some(verdict),
            ..placed()
        };
        let failed = with(Verdict::Failed(
            crate::solver::check::SelfCheckFailure::NotRouted("404".into()),
        ));
        assert_eq!(
            next_step(&http01(), &presented, &failed, 1),
            Step::SelfCheckFailed
        );
        assert_eq!(
            next_step(&http01(), &presented, &with(Verdict::Passed(1)), 2),
            Step::CheckAgain
        );
        assert_eq!(
            next_step(&http01(), &presented, &with(Verdict::Passed(2)), 2),
            Step::Accept
        );
        assert_eq!(
            next_step(&http01(), &presented, &with(Verdict::Passed(1)), 1),
            Step::Accept
        );
    }

    #[test]
    fn an_outcome_that_ends_the_challenge_leads_to_finish() {
        // Accept records a final state in the pass's status: the next step
        // is to finish, whatever else the pass learnt.
        let seen = Seen {
            verdict: Some(Verdict::Passed(1)),
            ..placed()
        };
        for state in [AcmeState::Valid, AcmeState::Invalid, AcmeState::Errored] {
            let ended = status(Some(state), Some(true));
            assert_eq!(next_step(&http01(), &ended, &seen, 1), Step::Finish);
        }
    }
}
