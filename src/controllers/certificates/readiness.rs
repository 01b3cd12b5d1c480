//! The readiness controller: condition Ready from the Secret as it is now
//! (the trigger's policy checks, except that a renewal being due still
//! leaves a valid certificate Ready), and status notBefore, notAfter and
//! renewalTime from the certificate in the Secret.

use std::time::Duration;

use super::Again;
use super::renewal::ari::Suggestion;
use super::snapshot::Snapshot;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use serde_json::json;

use super::policies::{SecretView, evaluate};
use super::renewal::scheduled;
use super::state::Ctx;
use super::status::{Error, apply_status};
use crate::api::Certificate;
use crate::api::meta::ConditionStatus;
use crate::pki::cert::parse_chain;
use crate::runtime::conditions;
use crate::time::rfc3339;

pub const READINESS: &str = "certwright-certificates-readiness";

/// What readiness writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub reason: String,
    pub message: String,
    /// (notBefore, notAfter, renewalTime), Unix seconds; no renewal time
    /// when renewal is disabled.
    pub times: Option<(i64, i64, Option<i64>)>,
}

/// A CA's pause of the names (the last issuance's failure) is said on
/// Ready too, link and all: only a visit to that link lifts it. So is a
/// request the CA refused for what the spec makes: only a new spec helps.
fn with_pause(cert: &Certificate, message: String) -> String {
    let failed = cert
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Issuing"))
        .filter(|c| c.reason.as_deref() == Some("Failed"))
        .and_then(|c| c.message.as_deref());
    match failed {
        Some(m)
            if crate::acme::limits::paused(m).is_some()
                || crate::acme::errors::waits_for_spec_change(m) =>
        {
            format!("{message}; {m}")
        }
        _ => message,
    }
}

/// What the spec asks for that no ACME CA puts in a certificate (ACME CAs
/// issue TLS server certificates): said on Ready, as the certificate is
/// issued without it.
pub fn not_issued(spec: &crate::api::CertificateSpec) -> Option<String> {
    use crate::api::meta::KeyUsage;
    let mut asked: Vec<String> = Vec::new();
    if spec.is_ca == Some(true) {
        asked.push("isCA".into());
    }
    for usage in spec.usages.iter().flatten() {
        if !matches!(
            usage,
            KeyUsage::DigitalSignature | KeyUsage::KeyEncipherment | KeyUsage::ServerAuth
        ) {
            let name = serde_json::to_value(usage)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            asked.push(format!("the usage {name:?}"));
        }
    }
    (!asked.is_empty()).then(|| {
        format!(
            "the ACME CA does not issue {}, so the certificate has none of it (ACME CAs issue TLS server certificates only): remove it from the spec, or use another issuer",
            asked.join(", ")
        )
    })
}

/// Readiness of `cert` given its Secret and the CA's renewal suggestion at `now`.
pub fn assess(
    cert: &Certificate,
    secret: Option<&SecretView>,
    suggestion: Option<&Suggestion>,
    now: i64,
) -> Readiness {
    let mut problem = None;
    let times = secret
        .and_then(|s| s.data.get("tls.crt"))
        .and_then(|c| parse_chain(c).ok())
        .map(|leaf| {
            let s = scheduled(cert, leaf.not_before, leaf.not_after, suggestion);
            problem = s.problem;
            (leaf.not_before, leaf.not_after, s.at)
        });
    match evaluate(cert, secret, None, suggestion, now) {
        Some(t) if t.reason != "Renewing" => Readiness {
            ready: false,
            reason: t.reason.to_string(),
            message: with_pause(cert, t.message),
            times,
        },
        _ => Readiness {
            ready: true,
            reason: "Ready".into(),
            message: {
                let mut message = match problem {
                    // Where the user looks: the windows could not be followed.
                    Some(p) => format!(
                        "Certificate is up to date and has not expired; {p}, so it renews at the time without windows"
                    ),
                    None => "Certificate is up to date and has not expired".into(),
                };
                if let Some(note) = not_issued(&cert.spec) {
                    message = format!("{message}; but {note}");
                }
                message
            },
            times,
        },
    }
}

pub(crate) async fn reconcile(
    cert: &Certificate,
    seen: &Snapshot,
    ctx: &Ctx,
) -> Result<Again, Error> {
    if cert.meta().deletion_timestamp.is_some() {
        return Ok(None);
    }
    let now = Timestamp::now();
    let r = assess(
        cert,
        seen.secret_view().as_ref(),
        seen.suggestion.as_ref(),
        now.as_second(),
    );
    let existing = cert
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let status = if r.ready {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    let ready: Vec<_> = conditions::set(
        &existing,
        "Ready",
        status,
        &r.reason,
        &r.message,
        cert.meta().generation,
        now,
    )
    .into_iter()
    .filter(|c| c.type_ == "Ready")
    .collect();
    let mut wanted = json!({"conditions": ready});
    if let Some((before, after, renew)) = r.times {
        wanted["notBefore"] = json!(rfc3339(before));
        wanted["notAfter"] = json!(rfc3339(after));
        if let Some(renew) = renew {
            wanted["renewalTime"] = json!(rfc3339(renew));
        }
    }
    let current = cert.status.as_ref();
    let unchanged = existing.iter().find(|c| c.type_ == "Ready") == ready.first()
        && current
            .and_then(|s| s.not_after.as_ref())
            .map(|t| t.0.as_second())
            == r.times.map(|t| t.1)
        && current
            .and_then(|s| s.renewal_time.as_ref())
            .map(|t| t.0.as_second())
            == r.times.and_then(|t| t.2);
    if !unchanged {
        apply_status(ctx, cert, READINESS, wanted).await?;
        // Said once more as a Warning event when it turns Ready so.
        if let (true, Some(note)) = (r.ready, not_issued(&cert.spec)) {
            let was = existing
                .iter()
                .find(|c| c.type_ == "Ready")
                .and_then(|c| c.message.as_deref());
            if was != Some(r.message.as_str()) {
                super::status::publish(
                    ctx,
                    READINESS,
                    cert,
                    kube::runtime::events::EventType::Warning,
                    "NotIssued",
                    format!("The certificate was issued, but {note}"),
                );
            }
        }
    }
    // Look again when the certificate expires (Ready turns False then).
    Ok(match r.times {
        Some((_, after, _)) if after > now.as_second() => {
            Some(Duration::from_secs((after - now.as_second()) as u64 + 1))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CertificateSpec;
    use crate::api::meta::KeyUsage;

    #[test]
    fn what_acme_cas_do_not_issue_is_named() {
        let plain = CertificateSpec {
            usages: Some(vec![KeyUsage::DigitalSignature, KeyUsage::ServerAuth]),
            ..Default::default()
        };
        assert_eq!(not_issued(&plain), None);
        let asked = CertificateSpec {
            is_ca: Some(true),
            usages: Some(vec![KeyUsage::ClientAuth, KeyUsage::CodeSigning]),
            ..Default::default()
        };
        let note = not_issued(&asked).expect("named");
        assert!(
            note.contains(
                "does not issue isCA, the usage \"client auth\", the usage \"code signing\""
            ),
            "{note}"
        );
    }
}
