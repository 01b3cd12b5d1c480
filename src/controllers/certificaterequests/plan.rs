//! The CertificateRequest controller's state table: from the request, its
//! conditions as the pass has them so far and what the pass has learnt,
//! the one step to run next. Pure: every choice is unit-tested below; the
//! steps (`steps.rs`) do the I/O and add what they learn to [`Seen`].

use crate::api::CertificateRequest;
use crate::api::certificate_request::CertificateRequestCondition;
use crate::api::meta::ConditionStatus;
use crate::api::order::AcmeState;

/// What a pass has learnt so far, besides the request itself.
#[derive(Debug, Default)]
pub struct Seen {
    /// The request's issuer, once read: an ACME one (true) or another kind
    /// (false), or why it cannot be read.
    pub issuer: Option<Result<bool, String>>,
    /// The Order answering the request, once looked for.
    pub order: Option<Found>,
}

/// What was found where the request's Order should be.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// The CSR cannot be read: no Order can answer it.
    BadCsr(String),
    /// No Order yet.
    Missing,
    /// The request's own Order (`namespace/name`) and where it stands.
    Ours {
        name: String,
        state: Option<AcmeState>,
        certificate: bool,
        reason: Option<String>,
    },
    /// An Order of that name left by an earlier request of the same name.
    LeftByEarlier,
    /// An Order of that name controlled by something else.
    Foreign(String),
}

/// The next thing to do.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Issued, failed or denied: nothing left to do.
    Rest,
    /// Read the request's issuer.
    ReadIssuer,
    /// Not an ACME issuer: another controller's request.
    NotOurs,
    /// The issuer cannot be read yet: say why, look again shortly.
    IssuerNotReady(String),
    /// Denied by an approver: it fails.
    Deny,
    /// Another approver decides: say so once and wait.
    WaitForApproval,
    /// Approve it (cert-manager's approver).
    Approve,
    /// Look for the request's Order.
    FindOrder,
    /// The request fails, with this message.
    Fail(String),
    /// Create the Order.
    CreateOrder,
    /// Remove the earlier request's Order, so this one gets a fresh one.
    DeleteEarlierOrder,
    /// Say that the Order's name is taken, and look again later.
    NameTaken(String),
    /// The Order holds the certificate: copy it back.
    Issued,
    /// The Order is at work: say where it stands.
    Waiting(String),
}

fn find<'a>(
    conditions: &'a [CertificateRequestCondition],
    type_: &str,
) -> Option<&'a CertificateRequestCondition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The next step for `cr`, whose conditions the pass has made
/// `conditions`, after it learnt `seen`; `approver` says whether
/// certwright approves requests itself.
pub fn next_step(
    cr: &CertificateRequest,
    conditions: &[CertificateRequestCondition],
    seen: &Seen,
    approver: bool,
) -> Step {
    let on_record = cr
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    if find(on_record, "Ready").is_some_and(|c| {
        c.status == ConditionStatus::True
            || c.reason.as_deref() == Some("Failed")
            || c.reason.as_deref() == Some("Denied")
    }) {
        return Step::Rest;
    }
    match &seen.issuer {
        None => return Step::ReadIssuer,
        Some(Ok(false)) => return Step::NotOurs,
        Some(Err(why)) => return Step::IssuerNotReady(why.clone()),
        Some(Ok(true)) => {}
    }
    if find(conditions, "Denied").is_some_and(|c| c.status == ConditionStatus::True) {
        return Step::Deny;
    }
    if find(conditions, "Approved").is_none() {
        return if approver {
            Step::Approve
        } else {
            Step::WaitForApproval
        };
    }
    let Some(found) = &seen.order else {
        return Step::FindOrder;
    };
    match found {
        Found::BadCsr(why) => Step::Fail(format!("Failed to decode CSR in spec.request: {why}")),
        Found::Missing => Step::CreateOrder,
        Found::LeftByEarlier => Step::DeleteEarlierOrder,
        Found::Foreign(name) => Step::NameTaken(format!(
            "Order {name} exists but is not controlled by this CertificateRequest; certwright will neither use nor delete it: delete it to let the request proceed"
        )),
        Found::Ours {
            name,
            state,
            certificate,
            reason,
        } => match state {
            Some(AcmeState::Valid) if *certificate => Step::Issued,
            Some(s @ (AcmeState::Invalid | AcmeState::Errored | AcmeState::Expired)) => {
                Step::Fail(format!(
                    "Failed to wait for order resource {:?} to become ready: order is in {:?} state: {}",
                    name.rsplit('/').next().unwrap_or(name),
                    state_word(*s),
                    reason.as_deref().unwrap_or_default()
                ))
            }
            _ => Step::Waiting(format!(
                "Waiting on certificate issuance from order {name}: {:?}",
                state.map(state_word).unwrap_or_default()
            )),
        },
    }
}

/// An ACME state as the API spells it (`valid`, `pending`, ...).
fn state_word(state: AcmeState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(conditions: serde_json::Value) -> CertificateRequest {
        serde_json::from_value(
            json!({"apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
            "metadata": {"name": "web-1", "namespace": "apps"},
            "spec": {"issuerRef": {"name": "le"}, "request": ""},
            "status": {"conditions": conditions}}),
        )
        .expect("request")
    }

    fn conditions(cr: &CertificateRequest) -> Vec<CertificateRequestCondition> {
        cr.status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
    }

    fn approved() -> CertificateRequest {
        request(json!([{"type": "Approved", "status": "True", "reason": "cert-manager.io"}]))
    }

    fn acme(order: Option<Found>) -> Seen {
        Seen {
            issuer: Some(Ok(true)),
            order,
        }
    }

    fn ours(state: Option<AcmeState>, certificate: bool) -> Option<Found> {
        Some(Found::Ours {
            name: "apps/web-1-123".into(),
            state,
            certificate,
            reason: Some("the CA said no".into()),
        })
    }

    fn step(cr: &CertificateRequest, seen: &Seen) -> Step {
        next_step(cr, &conditions(cr), seen, true)
    }

    #[test]
    fn an_issued_failed_or_denied_request_rests() {
        for (status, reason) in [("True", "Issued"), ("False", "Failed"), ("False", "Denied")] {
            let cr = request(json!([{"type": "Ready", "status": status, "reason": reason}]));
            assert_eq!(step(&cr, &Seen::default()), Step::Rest, "{reason}");
        }
        let pending = request(json!([{"type": "Ready", "status": "False", "reason": "Pending"}]));
        assert_eq!(step(&pending, &Seen::default()), Step::ReadIssuer);
    }

    #[test]
    fn only_acme_issuers_requests_are_ours() {
        let cr = approved();
        assert_eq!(step(&cr, &Seen::default()), Step::ReadIssuer);
        let other = Seen {
            issuer: Some(Ok(false)),
            order: None,
        };
        assert_eq!(step(&cr, &other), Step::NotOurs);
        let missing = Seen {
            issuer: Some(Err("Referenced \"Issuer\" not found: le".into())),
            order: None,
        };
        assert_eq!(
            step(&cr, &missing),
            Step::IssuerNotReady("Referenced \"Issuer\" not found: le".into())
        );
    }

    #[test]
    fn approval_comes_first_from_us_or_another_approver() {
        let new = request(json!([]));
        assert_eq!(step(&new, &acme(None)), Step::Approve);
        assert_eq!(
            next_step(&new, &conditions(&new), &acme(None), false),
            Step::WaitForApproval
        );
        let denied = request(json!([{"type": "Denied", "status": "True", "reason": "policy"}]));
        assert_eq!(step(&denied, &acme(None)), Step::Deny);
        assert_eq!(step(&approved(), &acme(None)), Step::FindOrder);
    }

    #[test]
    fn what_is_found_under_the_orders_name_decides() {
        let cr = approved();
        assert_eq!(step(&cr, &acme(Some(Found::Missing))), Step::CreateOrder);
        assert_eq!(
            step(&cr, &acme(Some(Found::LeftByEarlier))),
            Step::DeleteEarlierOrder
        );
        let Step::NameTaken(why) = step(&cr, &acme(Some(Found::Foreign("apps/x".into())))) else {
            panic!("taken")
        };
        assert!(
            why.contains("apps/x") && why.contains("not controlled"),
            "{why}"
        );
        let Step::Fail(why) = step(&cr, &acme(Some(Found::BadCsr("not PEM".into())))) else {
            panic!("fails")
        };
        assert_eq!(why, "Failed to decode CSR in spec.request: not PEM");
    }

    #[test]
    fn the_orders_state_decides_the_outcome() {
        let cr = approved();
        assert_eq!(
            step(&cr, &acme(ours(Some(AcmeState::Valid), true))),
            Step::Issued
        );
        let Step::Waiting(why) = step(&cr, &acme(ours(Some(AcmeState::Valid), false))) else {
            panic!("valid without its chain waits")
        };
        assert_eq!(
            why,
            "Waiting on certificate issuance from order apps/web-1-123: \"valid\""
        );
        let Step::Waiting(why) = step(&cr, &acme(ours(None, false))) else {
            panic!("waits")
        };
        assert!(why.ends_with(": \"\""), "{why}");
        for state in [AcmeState::Invalid, AcmeState::Errored, AcmeState::Expired] {
            let Step::Fail(why) = step(&cr, &acme(ours(Some(state), false))) else {
                panic!("{state:?} fails")
            };
            assert!(
                why.starts_with(
                    "Failed to wait for order resource \"web-1-123\" to become ready: order is in"
                ) && why.ends_with(": the CA said no"),
                "{why}"
            );
        }
    }
}
