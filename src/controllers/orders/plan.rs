//! The Order controller's state table: from the Order, its status as the
//! pass has it so far and what the pass has learnt, the one step to run
//! next. Pure: every choice is unit-tested below; the steps (`steps.rs`)
//! do the I/O and add what they learn to [`Seen`].

use std::time::Duration;

use super::decide::is_final;
use crate::api::Order;
use crate::api::order::{AcmeState, OrderStatus};

/// What a pass has learnt so far, besides the Order itself.
#[derive(Debug, Default)]
pub struct Seen {
    /// The cached Order may predate our last write of it.
    pub behind: bool,
    /// The Order was read from the API server in this pass.
    pub fresh: bool,
    /// What is left of the wait of a run of failures.
    pub retry_left: Option<Duration>,
    /// The issuer's ACME account is loaded.
    pub session: bool,
    /// The Order's Challenges, as the cache has them.
    pub challenges: Challenges,
    /// The order's status at the CA, once asked (or placed).
    pub acme: Option<instant_acme::OrderStatus>,
    /// The order was finalized in this pass.
    pub finalized: bool,
}

/// What a pass reads of the Order's Challenges.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Challenges {
    /// How many it has (not being deleted).
    pub count: usize,
    /// How many the CA decided (valid or invalid).
    pub finished: usize,
    pub any_invalid: bool,
    /// The first Errored one: its name and reason.
    pub errored: Option<(String, String)>,
}

/// The next thing to do.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Read the Order from the API server: the cache may predate our last
    /// write, or an ACME order is about to be placed.
    ReadFresh,
    /// Done (or deleted) with Challenges left: delete them.
    DeleteChallenges,
    /// Done, or deleted: nothing to do.
    Rest,
    /// A run of failures waits this long still.
    WaitForRetry(Duration),
    /// Load the issuer's ACME account.
    LoadSession,
    /// A Challenge gave up on a CA that kept failing: the Order fails.
    Fail(String),
    /// The CA lost a Challenge's authorization: place a fresh order.
    Replace(String),
    /// Create the Challenges still missing.
    CreateChallenges,
    /// The Challenges are at work: they say when something changes.
    AwaitChallenges,
    /// Place the ACME order.
    Place,
    /// Ask the CA where the order stands.
    FetchOrder,
    /// Record the order's authorizations.
    RecordAuthorizations,
    /// The CA marked the order invalid.
    MarkInvalid,
    /// Finalize with the request's CSR.
    Finalize,
    /// Fetch the certificate (polling while the CA processes).
    FetchCertificate,
}

/// The prefix of a Challenge's reason when it gave up on the CA.
pub use crate::acme::retry::GAVE_UP;

/// The next step for `order`, whose status the pass has made `status`,
/// after it learnt `seen`.
pub fn next_step(order: &Order, status: &OrderStatus, seen: &Seen) -> Step {
    if !seen.fresh && (seen.behind || status.url.is_none()) {
        return Step::ReadFresh;
    }
    let done = is_final(status);
    if done || order.metadata.deletion_timestamp.is_some() {
        return if done && seen.challenges.count > 0 {
            Step::DeleteChallenges
        } else {
            Step::Rest
        };
    }
    if let Some(left) = seen.retry_left {
        return Step::WaitForRetry(left);
    }
    if !seen.session {
        return Step::LoadSession;
    }
    if let Some((name, why)) = &seen.challenges.errored {
        let why_here = format!("Challenge {name}: {why}");
        // A Challenge that gave up on a CA that kept failing: the order is
        // not lost, the CA is unwell; the Certificate's backoff waits.
        return if why.starts_with(GAVE_UP) {
            Step::Fail(why_here)
        } else {
            Step::Replace(why_here)
        };
    }
    // While Challenges are at work they say everything worth knowing: the
    // CA is asked again only when one of them has finished.
    if seen.acme.is_none()
        && status.url.is_some()
        && status.state == Some(AcmeState::Pending)
        && let Some(authorizations) = &status.authorizations
    {
        let pending = authorizations
            .iter()
            .filter(|a| a.initial_state == Some(AcmeState::Pending))
            .count();
        let c = &seen.challenges;
        if c.count < pending {
            return create_challenges(seen);
        }
        if c.finished < pending && !c.any_invalid {
            return Step::AwaitChallenges;
        }
    }
    let Some(acme) = seen.acme else {
        return if status.url.is_none() {
            Step::Place
        } else {
            Step::FetchOrder
        };
    };
    if status.authorizations.is_none() {
        return Step::RecordAuthorizations;
    }
    match acme {
        instant_acme::OrderStatus::Pending => create_challenges(seen),
        instant_acme::OrderStatus::Invalid => Step::MarkInvalid,
        instant_acme::OrderStatus::Ready if !seen.finalized => Step::Finalize,
        instant_acme::OrderStatus::Ready
        | instant_acme::OrderStatus::Processing
        | instant_acme::OrderStatus::Valid => Step::FetchCertificate,
    }
}

/// Challenges are made from the Order as the API server has it: each
/// carries the order's URL, and a cache behind another manager's write
/// (a lost order's URL replaced) would hand them the old one.
fn create_challenges(seen: &Seen) -> Step {
    if seen.fresh {
        Step::CreateChallenges
    } else {
        Step::ReadFresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::order::AcmeAuthorization;
    use instant_acme::OrderStatus as Ca;
    use serde_json::json;

    fn order() -> Order {
        serde_json::from_value(json!({
            "apiVersion": "acme.cert-manager.io/v1", "kind": "Order",
            "metadata": {"name": "o", "namespace": "ns", "uid": "u"},
            "spec": {"request": "", "issuerRef": {"name": "le"}, "dnsNames": ["a.example", "b.example"]}}))
        .expect("order")
    }

    fn deleted() -> Order {
        let mut o = order();
        o.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        o
    }

    fn authz(state: AcmeState) -> AcmeAuthorization {
        AcmeAuthorization {
            url: "a".into(),
            initial_state: Some(state),
            ..Default::default()
        }
    }

    /// Placed at the CA, two authorizations pending.
    fn placed() -> OrderStatus {
        OrderStatus {
            url: Some("https://ca/order/1".into()),
            state: Some(AcmeState::Pending),
            authorizations: Some(vec![authz(AcmeState::Pending), authz(AcmeState::Pending)]),
            ..Default::default()
        }
    }

    /// Fresh, no retry waiting, the account loaded.
    fn ready() -> Seen {
        Seen {
            fresh: true,
            session: true,
            ..Default::default()
        }
    }

    fn challenges(count: usize, finished: usize, any_invalid: bool) -> Challenges {
        Challenges {
            count,
            finished,
            any_invalid,
            errored: None,
        }
    }

    #[test]
    fn a_cache_behind_our_write_or_an_order_to_place_is_read_fresh_first() {
        let behind = Seen {
            behind: true,
            ..Default::default()
        };
        assert_eq!(next_step(&order(), &placed(), &behind,), Step::ReadFresh);
        assert_eq!(
            next_step(&order(), &OrderStatus::default(), &Seen::default()),
            Step::ReadFresh,
            "about to place"
        );
        let cached = Seen {
            session: true,
            challenges: challenges(2, 0, false),
            ..Default::default()
        };
        assert_eq!(
            next_step(&order(), &placed(), &cached),
            Step::AwaitChallenges,
            "a cache that saw our write is trusted"
        );
        let missing = Seen {
            session: true,
            ..Default::default()
        };
        assert_eq!(
            next_step(&order(), &placed(), &missing),
            Step::ReadFresh,
            "Challenges are made from the Order as the API server has it"
        );
        let fresh = Seen {
            fresh: true,
            ..missing
        };
        assert_eq!(
            next_step(&order(), &placed(), &fresh),
            Step::CreateChallenges
        );
    }

    #[test]
    fn a_done_order_deletes_what_challenges_are_left_then_rests() {
        for state in [AcmeState::Valid, AcmeState::Invalid, AcmeState::Errored] {
            let done = OrderStatus {
                state: Some(state),
                certificate: Some(k8s_openapi::ByteString(b"chain".to_vec())),
                ..placed()
            };
            let left = Seen {
                challenges: challenges(1, 1, false),
                ..ready()
            };
            assert_eq!(
                next_step(&order(), &done, &left),
                Step::DeleteChallenges,
                "{state:?}"
            );
            assert_eq!(next_step(&order(), &done, &ready()), Step::Rest);
        }
        let left = Seen {
            challenges: challenges(2, 0, false),
            ..ready()
        };
        assert_eq!(
            next_step(&deleted(), &placed(), &left),
            Step::Rest,
            "a deleted Order's Challenges go with it (owner references)"
        );
    }

    #[test]
    fn a_run_of_failures_waits_before_the_account_is_loaded() {
        let waiting = Seen {
            retry_left: Some(Duration::from_secs(9)),
            session: false,
            ..ready()
        };
        assert_eq!(
            next_step(&order(), &placed(), &waiting),
            Step::WaitForRetry(Duration::from_secs(9))
        );
        let no_account = Seen {
            session: false,
            ..ready()
        };
        assert_eq!(
            next_step(&order(), &placed(), &no_account),
            Step::LoadSession
        );
    }

    #[test]
    fn an_errored_challenge_replaces_the_order_unless_it_gave_up_on_the_ca() {
        let lost = Seen {
            challenges: Challenges {
                errored: Some(("c1".into(), "The CA lost the authorization: 404".into())),
                ..challenges(2, 0, false)
            },
            ..ready()
        };
        assert_eq!(
            next_step(&order(), &placed(), &lost),
            Step::Replace("Challenge c1: The CA lost the authorization: 404".into())
        );
        let gave_up = Seen {
            challenges: Challenges {
                errored: Some(("c1".into(), format!("{GAVE_UP} after 8 failures"))),
                ..challenges(2, 0, false)
            },
            ..ready()
        };
        let Step::Fail(why) = next_step(&order(), &placed(), &gave_up) else {
            panic!("fails")
        };
        assert!(why.starts_with("Challenge c1: "), "{why}");
    }

    #[test]
    fn challenges_at_work_are_awaited_without_asking_the_ca() {
        let at_work = Seen {
            challenges: challenges(2, 1, false),
            ..ready()
        };
        assert_eq!(
            next_step(&order(), &placed(), &at_work),
            Step::AwaitChallenges
        );
        let missing = Seen {
            challenges: challenges(1, 0, false),
            ..ready()
        };
        assert_eq!(
            next_step(&order(), &placed(), &missing),
            Step::CreateChallenges
        );
        let all_done = Seen {
            challenges: challenges(2, 2, false),
            ..ready()
        };
        assert_eq!(next_step(&order(), &placed(), &all_done), Step::FetchOrder);
        let one_invalid = Seen {
            challenges: challenges(2, 1, true),
            ..ready()
        };
        assert_eq!(
            next_step(&order(), &placed(), &one_invalid),
            Step::FetchOrder
        );
        let only_one_pending = OrderStatus {
            authorizations: Some(vec![authz(AcmeState::Pending), authz(AcmeState::Valid)]),
            ..placed()
        };
        let one_done = Seen {
            challenges: challenges(1, 1, false),
            ..ready()
        };
        assert_eq!(
            next_step(&order(), &only_one_pending, &one_done),
            Step::FetchOrder,
            "an authorization valid from the start needs no Challenge"
        );
    }

    #[test]
    fn an_order_not_placed_is_placed_and_one_placed_is_asked_for() {
        assert_eq!(
            next_step(&order(), &OrderStatus::default(), &ready()),
            Step::Place
        );
        let unrecorded = OrderStatus {
            url: Some("u".into()),
            state: Some(AcmeState::Pending),
            ..Default::default()
        };
        assert_eq!(next_step(&order(), &unrecorded, &ready()), Step::FetchOrder);
        let asked = Seen {
            acme: Some(Ca::Pending),
            ..ready()
        };
        assert_eq!(
            next_step(&order(), &unrecorded, &asked),
            Step::RecordAuthorizations
        );
    }

    #[test]
    fn the_cas_answer_decides_the_rest() {
        let with = |acme, finalized| Seen {
            acme: Some(acme),
            finalized,
            challenges: challenges(2, 2, false),
            ..ready()
        };
        let s = placed();
        assert_eq!(
            next_step(&order(), &s, &with(Ca::Pending, false)),
            Step::CreateChallenges
        );
        assert_eq!(
            next_step(&order(), &s, &with(Ca::Invalid, false)),
            Step::MarkInvalid
        );
        assert_eq!(
            next_step(&order(), &s, &with(Ca::Ready, false)),
            Step::Finalize
        );
        assert_eq!(
            next_step(&order(), &s, &with(Ca::Ready, true)),
            Step::FetchCertificate,
            "finalized once a pass"
        );
        assert_eq!(
            next_step(&order(), &s, &with(Ca::Processing, false)),
            Step::FetchCertificate
        );
        assert_eq!(
            next_step(&order(), &s, &with(Ca::Valid, false)),
            Step::FetchCertificate
        );
    }
}
