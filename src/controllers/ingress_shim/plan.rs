//! What to change so that an Ingress's Certificates are the ones it asks
//! for, decided without I/O.

use kube::ResourceExt;

use super::annotations::MANAGED_ANNOTATIONS;
use crate::api::Certificate;

/// One change to the cluster.
#[derive(Debug)]
pub enum Step {
    /// A Certificate the Ingress asks for and nobody has made.
    Create(Certificate),
    /// An existing Certificate of the Ingress, changed to fit (its
    /// resourceVersion kept, so a concurrent change is not overwritten).
    Update(Certificate),
    /// A Certificate of the Ingress whose Secret no TLS entry names any more.
    Delete(String),
    /// A Certificate of the wanted name that the Ingress does not control.
    NotOwned(String),
}

fn controlled_by(cert: &Certificate, uid: &str) -> bool {
    cert.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// `existing` changed to what `wanted` asks: spec and labels replaced, the
/// shim's override annotations set or removed, other annotations kept.
fn fit(existing: &Certificate, wanted: &Certificate) -> Certificate {
    let mut out = existing.clone();
    out.spec = wanted.spec.clone();
    let labels = wanted.labels().clone();
    out.metadata.labels = (!labels.is_empty()).then_some(labels);
    let mut annotations = existing.annotations().clone();
    annotations.retain(|k, _| !MANAGED_ANNOTATIONS.contains(&k.as_str()));
    annotations.extend(wanted.annotations().clone());
    out.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    out
}

fn same(a: &Certificate, b: &Certificate) -> bool {
    a.spec == b.spec && a.labels() == b.labels() && a.annotations() == b.annotations()
}

/// The steps for the Ingress of `uid`: `wanted` (from its annotations),
/// `secret_names` (every TLS entry's, valid or not) and the Certificates
/// `existing` in its namespace.
pub fn plan(
    uid: &str,
    wanted: Vec<Certificate>,
    secret_names: &[String],
    existing: &[Certificate],
) -> Vec<Step> {
    let mut steps = Vec::new();
    for cert in wanted {
        let name = cert.name_any();
        match existing.iter().find(|e| e.name_any() == name) {
            None => steps.push(Step::Create(cert)),
            Some(e) if !controlled_by(e, uid) => steps.push(Step::NotOwned(name)),
            Some(e) => {
                let fitted = fit(e, &cert);
                if !same(&fitted, e) {
                    steps.push(Step::Update(fitted));
                }
            }
        }
    }
    for e in existing.iter().filter(|e| controlled_by(e, uid)) {
        if !secret_names.contains(&e.spec.secret_name) {
            steps.push(Step::Delete(e.name_any()));
        }
    }
    steps
}
