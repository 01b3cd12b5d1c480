//! What an ACME failure means for the Order: retry soon (network, 5xx,
//! badNonce, rateLimited, timeouts), replace the Order with a fresh one (the
//! CA lost it: 404 "No such authorization" / "No order for ID", an expired
//! or invalid order), or fail the CertificateRequest with the CA's detail
//! (rejectedIdentifier, unauthorized, caa, a profile the CA does not offer).

use instant_acme::{Error, Problem};

/// How to react to an ACME failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Try the same step again after a short backoff (or the CA's Retry-After).
    Transient {
        reason: &'static str,
        detail: String,
    },
    /// The CA no longer has the order or an authorization: start a new Order.
    ReplaceOrder { detail: String },
    /// Fail the request; further attempts back off.
    Permanent {
        reason: &'static str,
        detail: String,
    },
}

const PREFIX: &str = "urn:ietf:params:acme:error:";

fn describe(p: &Problem) -> String {
    let mut s = match (&p.status, &p.r#type) {
        (Some(code), Some(t)) => format!("{code} {t}"),
        (None, Some(t)) => t.clone(),
        (Some(code), None) => code.to_string(),
        (None, None) => "ACME error".into(),
    };
    if let Some(detail) = &p.detail {
        s.push_str(": ");
        s.push_str(detail);
    }
    for sub in &p.subproblems {
        if let Some(detail) = &sub.detail {
            s.push_str("; ");
            s.push_str(detail);
        }
    }
    s
}

/// Classifies a problem document from the CA.
pub fn classify_problem(p: &Problem) -> Verdict {
    let detail = describe(p);
    let kind = p
        .r#type
        .as_deref()
        .and_then(|t| t.strip_prefix(PREFIX))
        .unwrap_or("");
    let text = p.detail.as_deref().unwrap_or("").to_ascii_lowercase();
    let lost = p.status == Some(404)
        || text.contains("no such authorization")
        || text.contains("no order for id")
        || text.contains("no such order")
        || text.contains("order expired");
    match kind {
        "badNonce" => Verdict::Transient {
            reason: "BadNonce",
            detail,
        },
        "rateLimited" => Verdict::Transient {
            reason: "RateLimited",
            detail,
        },
        "serverInternal" => Verdict::Transient {
            reason: "ServerInternal",
            detail,
        },
        _ if lost => Verdict::ReplaceOrder { detail },
        "orderNotReady" => Verdict::Transient {
            reason: "OrderNotReady",
            detail,
        },
        "rejectedIdentifier" => Verdict::Permanent {
            reason: "RejectedIdentifier",
            detail,
        },
        "unsupportedIdentifier" => Verdict::Permanent {
            reason: "UnsupportedIdentifier",
            detail,
        },
        "caa" => Verdict::Permanent {
            reason: "CAA",
            detail,
        },
        "unauthorized" => Verdict::Permanent {
            reason: "Unauthorized",
            detail,
        },
        "invalidProfile" => Verdict::Permanent {
            reason: "InvalidProfile",
            detail,
        },
        "badCSR" => Verdict::Permanent {
            reason: "BadCSR",
            detail,
        },
        "accountDoesNotExist" | "unauthorizedAccount" => Verdict::Permanent {
            reason: "AccountProblem",
            detail,
        },
        _ if p.status.is_some_and(|s| s >= 500) => Verdict::Transient {
            reason: "ServerError",
            detail,
        },
        "malformed" => Verdict::Permanent {
            reason: "Malformed",
            detail,
        },
        _ => Verdict::Permanent {
            reason: "ACMEError",
            detail,
        },
    }
}

/// Classifies any error of instant-acme.
pub fn classify(e: &Error) -> Verdict {
    match e {
        Error::Api(p) => classify_problem(p),
        Error::Hyper(_) | Error::Http(_) | Error::Other(_) => Verdict::Transient {
            reason: "Network",
            detail: e.to_string(),
        },
        Error::Timeout(_) => Verdict::Transient {
            reason: "Timeout",
            detail: e.to_string(),
        },
        other => Verdict::Permanent {
            reason: "ACMEClientError",
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(status: u16, kind: &str, detail: &str) -> Problem {
        serde_json::from_value(serde_json::json!({"type": format!("{PREFIX}{kind}"), "status": status, "detail": detail})).expect("problem")
    }

    #[test]
    fn the_seeds_404_replaces_the_order_quickly() {
        let seed = problem(404, "malformed", "No such authorization");
        assert_eq!(
            classify_problem(&seed),
            Verdict::ReplaceOrder {
                detail: "404 urn:ietf:params:acme:error:malformed: No such authorization".into()
            }
        );
        assert!(matches!(
            classify_problem(&problem(404, "malformed", "No order for ID 12")),
            Verdict::ReplaceOrder { .. }
        ));
    }

    #[test]
    fn transient_and_permanent_problems() {
        for (status, kind, want) in [
            (400, "badNonce", "BadNonce"),
            (429, "rateLimited", "RateLimited"),
            (500, "serverInternal", "ServerInternal"),
            (503, "somethingNew", "ServerError"),
        ] {
            assert!(
                matches!(classify_problem(&problem(status, kind, "x")), Verdict::Transient { reason, .. } if reason == want),
                "{kind}"
            );
        }
        for (kind, want) in [
            ("rejectedIdentifier", "RejectedIdentifier"),
            ("caa", "CAA"),
            ("unauthorized", "Unauthorized"),
            ("invalidProfile", "InvalidProfile"),
            ("malformed", "Malformed"),
        ] {
            assert!(
                matches!(classify_problem(&problem(400, kind, "x")), Verdict::Permanent { reason, .. } if reason == want),
                "{kind}"
            );
        }
        let blocked = problem(
            400,
            "rejectedIdentifier",
            "Error creating new order :: policy forbids issuing for name",
        );
        assert!(
            matches!(classify_problem(&blocked), Verdict::Permanent { detail, .. } if detail.contains("policy forbids"))
        );
    }
}
