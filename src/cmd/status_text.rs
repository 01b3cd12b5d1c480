//! `certwright status certificate` as text: the Certificate and what hangs
//! off it (Issuer, Secret, CertificateRequest, Order, Challenges), each
//! with its conditions and events, ending with the last error in plain
//! words and what to do about it. Pure: the tree is read by `status`.

use crate::controllers::challenges::SELF_CHECK_FAILED;
use std::fmt::Write;

use k8s_openapi::api::core::v1::{Event, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde_json::Value;

use super::age;
use super::details::{self, Details};
use crate::api::{Certificate, CertificateRequest, Challenge, Order};
use crate::pki::keys::{KeyKind, PrivateKey};

/// A Certificate and everything `status` shows about it.
pub struct Tree {
    pub certificate: Certificate,
    pub events: Vec<EventLine>,
    pub issuer: IssuerView,
    /// None: the Secret does not exist.
    pub secret: Option<SecretView>,
    pub request: Option<(CertificateRequest, Vec<EventLine>)>,
    pub order: Option<(Order, Vec<EventLine>)>,
    pub challenges: Vec<ChallengeView>,
}

pub struct EventLine {
    pub type_: String,
    pub reason: String,
    pub message: String,
    pub count: i32,
    pub last: Option<Timestamp>,
}

impl EventLine {
    pub fn of(event: &Event) -> Self {
        let last = event
            .event_time
            .as_ref()
            .map(|t| t.0)
            .or(event.last_timestamp.as_ref().map(|t| t.0))
            .or(event
                .series
                .as_ref()
                .and_then(|s| s.last_observed_time.as_ref())
                .map(|t| t.0))
            .or(event.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let count = event
            .series
            .as_ref()
            .and_then(|s| s.count)
            .or(event.count)
            .unwrap_or(1);
        Self {
            type_: event.type_.clone().unwrap_or_default(),
            reason: event.reason.clone().unwrap_or_default(),
            message: event.message.clone().unwrap_or_default(),
            count,
            last,
        }
    }
}

pub struct IssuerView {
    pub kind: String,
    pub name: String,
    /// None: the issuer does not exist.
    pub status: Option<Value>,
}

pub struct SecretView {
    pub name: String,
    pub details: Result<Details, String>,
    pub key: Option<String>,
}

impl SecretView {
    pub fn of(secret: &Secret) -> Self {
        let data = |k: &str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(k))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        };
        let details = match data("tls.crt") {
            Some(pem) if !pem.is_empty() => details::of_chain(&pem),
            _ => Err("no tls.crt".into()),
        };
        let key = data("tls.key")
            .and_then(|pem| PrivateKey::from_pem(pem.as_bytes()).ok())
            .map(|k| match k.kind {
                KeyKind::Rsa(n) => format!("RSA {n}"),
                KeyKind::Ecdsa(n) => format!("ECDSA P-{n}"),
                KeyKind::Ed25519 => "Ed25519".into(),
            });
        Self {
            name: secret.name_any(),
            details,
            key,
        }
    }
}

pub struct ChallengeView {
    pub challenge: Challenge,
    pub events: Vec<EventLine>,
    /// The solver's own objects (`Pod/name`, `Service/name`, `Ingress/name`).
    pub resources: Vec<String>,
}

struct Cond {
    type_: String,
    status: String,
    reason: String,
    message: String,
    since: Option<Timestamp>,
}

/// The conditions of an object's `status`, as JSON.
fn conditions(status: &Value) -> Vec<Cond> {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| Cond {
            type_: text(&c["type"]),
            status: text(&c["status"]),
            reason: text(&c["reason"]),
            message: text(&c["message"]),
            since: c["lastTransitionTime"]
                .as_str()
                .and_then(|t| t.parse().ok()),
        })
        .collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn status_of<T: serde::Serialize>(status: &Option<T>) -> Value {
    serde_json::to_value(status).unwrap_or(Value::Null)
}

fn condition<'a>(conds: &'a [Cond], type_: &str) -> Option<&'a Cond> {
    conds.iter().find(|c| c.type_ == type_)
}

fn write_conditions(out: &mut String, indent: &str, conds: &[Cond], now: Timestamp) {
    if conds.is_empty() {
        let _ = writeln!(out, "{indent}Conditions: none yet");
        return;
    }
    let _ = writeln!(out, "{indent}Conditions:");
    for c in conds {
        let since = c
            .since
            .map(|t| format!(" ({})", age(now, t)))
            .unwrap_or_default();
        let _ = write!(out, "{indent}  {}: {}{since}", c.type_, c.status);
        if !c.reason.is_empty() {
            let _ = write!(out, ", {}", c.reason);
        }
        if !c.message.is_empty() {
            let _ = write!(out, ": {}", c.message);
        }
        out.push('\n');
    }
}

fn write_events(out: &mut String, indent: &str, events: &[EventLine], now: Timestamp) {
    if events.is_empty() {
        let _ = writeln!(out, "{indent}Events: none");
        return;
    }
    let _ = writeln!(out, "{indent}Events:");
    for e in events {
        let when = e.last.map(|t| age(now, t)).unwrap_or_else(|| "?".into());
        let times = if e.count > 1 {
            format!(" (x{})", e.count)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{indent}  {when:>4}  {:<7} {}{times}: {}",
            e.type_, e.reason, e.message
        );
    }
}

fn time(t: Option<Timestamp>) -> String {
    t.map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

/// The whole tree as text, ages counted from `now`.
pub fn render(tree: &Tree, now: Timestamp) -> String {
    let mut out = String::new();
    let cert = &tree.certificate;
    let spec = &cert.spec;
    let status = status_of(&cert.status);
    let _ = writeln!(
        out,
        "Certificate {}/{}",
        cert.namespace().unwrap_or_default(),
        cert.name_any()
    );
    let names: Vec<String> = spec
        .common_name
        .iter()
        .cloned()
        .chain(spec.dns_names.iter().flatten().cloned())
        .chain(spec.ip_addresses.iter().flatten().cloned())
        .collect();
    let _ = writeln!(out, "  Names: {}", list(&names));
    let _ = writeln!(out, "  Secret: {}", spec.secret_name);
    let _ = writeln!(
        out,
        "  Revision: {}",
        status["revision"]
            .as_i64()
            .map_or("-".into(), |r| r.to_string())
    );
    let _ = writeln!(
        out,
        "  Not after: {}",
        time(status["notAfter"].as_str().and_then(|t| t.parse().ok()))
    );
    let _ = writeln!(
        out,
        "  Renewal time: {}",
        time(status["renewalTime"].as_str().and_then(|t| t.parse().ok()))
    );
    if let Some(failed) = status["lastFailureTime"].as_str() {
        let attempts = status["failedIssuanceAttempts"].as_i64().unwrap_or(0);
        let _ = writeln!(
            out,
            "  Last failure: {failed} ({attempts} failed attempts in a row)"
        );
    }
    let cert_conds = conditions(&status);
    write_conditions(&mut out, "  ", &cert_conds, now);
    write_events(&mut out, "  ", &tree.events, now);

    let issuer = &tree.issuer;
    let _ = writeln!(out, "\n{} {}", issuer.kind, issuer.name);
    let issuer_conds = issuer.status.as_ref().map(conditions);
    match &issuer_conds {
        None => {
            let _ = writeln!(out, "  not found");
        }
        Some(conds) => write_conditions(&mut out, "  ", conds, now),
    }

    let _ = writeln!(out, "\nSecret {}", spec.secret_name);
    match &tree.secret {
        None => {
            let _ = writeln!(out, "  not found");
        }
        Some(s) => match &s.details {
            Err(e) => {
                let _ = writeln!(out, "  no certificate: {e}");
            }
            Ok(d) => {
                let _ = writeln!(out, "  Issuer: {}", d.issuer);
                let _ = writeln!(
                    out,
                    "  Subject: {}",
                    if d.subject.is_empty() {
                        "-"
                    } else {
                        &d.subject
                    }
                );
                let names: Vec<String> = d
                    .dns_names
                    .iter()
                    .chain(&d.ip_addresses)
                    .chain(&d.uris)
                    .chain(&d.email_addresses)
                    .cloned()
                    .collect();
                let _ = writeln!(out, "  Names: {}", list(&names));
                let _ = writeln!(out, "  Key: {}", s.key.as_deref().unwrap_or("-"));
                let _ = writeln!(out, "  Serial: {}", d.serial);
                let _ = writeln!(out, "  Not before: {}", time(Some(d.not_before)));
                let _ = writeln!(out, "  Not after: {}", time(Some(d.not_after)));
            }
        },
    }

    match &tree.request {
        None => {
            let _ = writeln!(out, "\nCertificateRequest: none");
        }
        Some((cr, events)) => {
            let _ = writeln!(out, "\nCertificateRequest {}", cr.name_any());
            write_conditions(&mut out, "  ", &conditions(&status_of(&cr.status)), now);
            write_events(&mut out, "  ", events, now);
        }
    }
    match &tree.order {
        None => {
            if tree.request.is_some() {
                let _ = writeln!(out, "\nOrder: none");
            }
        }
        Some((order, events)) => {
            let s = status_of(&order.status);
            let _ = writeln!(out, "\nOrder {}", order.name_any());
            let _ = writeln!(
                out,
                "  State: {}",
                if text(&s["state"]).is_empty() {
                    "-".into()
                } else {
                    text(&s["state"])
                }
            );
            if !text(&s["reason"]).is_empty() {
                let _ = writeln!(out, "  Reason: {}", text(&s["reason"]));
            }
            let auths = s["authorizations"].as_array().cloned().unwrap_or_default();
            if !auths.is_empty() {
                let _ = writeln!(out, "  Authorizations:");
                for a in &auths {
                    let wildcard = if a["wildcard"].as_bool() == Some(true) {
                        " (wildcard)"
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        out,
                        "    {}{wildcard}: {}",
                        text(&a["identifier"]),
                        text(&a["initialState"])
                    );
                }
            }
            write_events(&mut out, "  ", events, now);
        }
    }
    for view in &tree.challenges {
        let ch = &view.challenge;
        let s = status_of(&ch.status);
        let type_ = serde_json::to_value(ch.spec.type_)
            .map(|v| text(&v))
            .unwrap_or_default();
        let _ = writeln!(out, "\nChallenge {}", ch.name_any());
        let _ = writeln!(
            out,
            "  {type_} for {}, token {}",
            ch.spec.dns_name, ch.spec.token
        );
        let _ = writeln!(
            out,
            "  State: {}, presented: {}, processing: {}",
            if text(&s["state"]).is_empty() {
                "-".into()
            } else {
                text(&s["state"])
            },
            s["presented"].as_bool().unwrap_or(false),
            s["processing"].as_bool().unwrap_or(false)
        );
        if !text(&s["reason"]).is_empty() {
            let _ = writeln!(out, "  Reason: {}", text(&s["reason"]));
        }
        if !view.resources.is_empty() {
            let _ = writeln!(out, "  Solver: {}", view.resources.join(", "));
        }
        write_events(&mut out, "  ", &view.events, now);
    }
    let (what, todo) = diagnosis(tree, &cert_conds, issuer_conds.as_deref(), now);
    let _ = writeln!(out, "\n{what}");
    if let Some(todo) = todo {
        let _ = writeln!(out, "What to do: {todo}");
    }
    out
}

/// The last error in plain words, deepest first, and what to do about it.
fn diagnosis(
    tree: &Tree,
    cert: &[Cond],
    issuer: Option<&[Cond]>,
    now: Timestamp,
) -> (String, Option<String>) {
    let c = &tree.certificate;
    let (ns, name) = (c.namespace().unwrap_or_default(), c.name_any());
    let ready = condition(cert, "Ready").is_some_and(|r| r.status == "True");
    let issuing = condition(cert, "Issuing").filter(|i| i.status == "True");
    let renew =
        format!("`certwright renew {name} -n {ns}` tries again now instead of after the backoff");
    if ready && issuing.is_none() {
        let until = tree
            .secret
            .as_ref()
            .and_then(|s| s.details.as_ref().ok())
            .map(|d| {
                format!(
                    ", valid until {} ({})",
                    time(Some(d.not_after)),
                    age(now, d.not_after)
                )
            })
            .unwrap_or_default();
        // Ready while the certificate is valid, as cert-manager's, but a
        // renewal that keeps failing is not OK: it would expire silently.
        let failed = c.status.as_ref().and_then(|s| s.last_failure_time.as_ref());
        let why =
            condition(cert, "Issuing").filter(|i| i.status == "False" && !i.message.is_empty());
        if let (Some(at), Some(why)) = (failed, why) {
            return (
                format!(
                    "Renewal failing: the certificate is Ready{until}, but its last issuance failed at {}: {}",
                    time(Some(at.0)),
                    why.message
                ),
                Some(renew),
            );
        }
        return (format!("OK: the certificate is Ready{until}."), None);
    }
    let issuer_ref = format!("{} {}", tree.issuer.kind, tree.issuer.name);
    match issuer {
        None => {
            return (
                format!("Last error: {issuer_ref} does not exist."),
                Some(format!(
                    "create it, or point spec.issuerRef of Certificate {ns}/{name} at an existing issuer"
                )),
            );
        }
        Some(conds) if condition(conds, "Ready").is_none_or(|r| r.status != "True") => {
            let why = condition(conds, "Ready")
                .map(|r| format!("{}: {}", r.reason, r.message))
                .unwrap_or_else(|| "no Ready condition yet".into());
            return (
                format!("Last error: {issuer_ref} is not ready ({why})."),
                Some(format!(
                    "fix the issuer; `kubectl describe {} {}` shows more",
                    tree.issuer.kind.to_lowercase(),
                    tree.issuer.name
                )),
            );
        }
        _ => {}
    }
    for view in &tree.challenges {
        let s = status_of(&view.challenge.status);
        let reason = text(&s["reason"]);
        let state = text(&s["state"]);
        if !reason.is_empty() && state != "valid" {
            let todo = if state == "invalid" || state == "errored" {
                format!("the CA refused this name; fix what the reason says, then {renew}")
            } else if view.events.iter().any(|e| e.reason == SELF_CHECK_FAILED) {
                "the CA is not asked until the token is reachable as the CA will fetch it; fix what the reason says (routing, DNS, firewall): certwright retries on its own".to_string()
            } else {
                format!(
                    "`kubectl describe challenge -n {ns} {}` shows more",
                    view.challenge.name_any()
                )
            };
            return (
                format!(
                    "Last error: Challenge {} for {}: {reason}",
                    view.challenge.name_any(),
                    view.challenge.spec.dns_name
                ),
                Some(todo),
            );
        }
    }
    if let Some((order, _)) = &tree.order {
        let s = status_of(&order.status);
        let state = text(&s["state"]);
        if matches!(state.as_str(), "invalid" | "errored" | "expired") {
            return (
                format!(
                    "Last error: Order {} is {state}: {}",
                    order.name_any(),
                    text(&s["reason"])
                ),
                Some(renew),
            );
        }
    }
    if let Some((cr, _)) = &tree.request {
        let conds = conditions(&status_of(&cr.status));
        if let Some(r) = condition(&conds, "Ready")
            .filter(|r| r.status == "False" && matches!(r.reason.as_str(), "Failed" | "Denied"))
        {
            return (
                format!(
                    "Last error: CertificateRequest {} {}: {}",
                    cr.name_any(),
                    r.reason.to_lowercase(),
                    r.message
                ),
                Some(renew),
            );
        }
        if let Some(a) = condition(&conds, "Approved").filter(|a| a.status != "True") {
            return (
                format!(
                    "Waiting: CertificateRequest {} is not approved ({})",
                    cr.name_any(),
                    a.message
                ),
                None,
            );
        }
    }
    if let Some(i) = condition(cert, "Issuing") {
        if i.status == "False" && !i.message.is_empty() {
            return (format!("Last error: {}", i.message), Some(renew));
        }
        if i.status == "True" {
            return (format!("In progress: {} ({}).", i.message, i.reason), None);
        }
    }
    match condition(cert, "Ready") {
        Some(r) => (format!("Not ready: {}", r.message), None),
        None => ("Not ready: the controller has not looked at this Certificate yet (is certwright running?).".into(), None),
    }
}
