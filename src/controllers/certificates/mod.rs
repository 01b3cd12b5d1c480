//! The Certificate controllers, one file per role as cert-manager's:
//! trigger (on the pure checks of `policies`), key manager, request
//! manager, issuing, post-issuance (keeps the Secret's outputs as the spec
//! asks), readiness; what they share is in `status`, `snapshot` and
//! `secret::guard`. Decisions are pure functions over plain data.

pub mod issuing;
pub mod key_manager;
pub mod names;
pub mod policies;
pub mod post_issuance;
pub mod readiness;
pub mod renewal;
pub mod request_manager;
pub mod secret;
pub mod snapshot;
pub mod state;
pub mod status;
pub mod trigger;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher::{self, watcher};

use crate::api::{Certificate, CertificateRequest};
use crate::runtime::context::Context;
use state::{Ctx, State};

/// When a role wants to look at the Certificate again: `None` means on
/// its next change.
pub type Again = Option<Duration>;

/// One pass over a Certificate: every role, on the same snapshot. Each
/// writes at most its own step; the write brings the next pass. All roles
/// run even if one fails, and the first error is reported.
async fn reconcile(cert: Arc<Certificate>, ctx: Arc<Ctx>) -> Result<Action, status::Error> {
    crate::metrics::sync("certificates");
    // A Certificate cached from before our own last status write would
    // have the roles redo that step: read it fresh then.
    let uid = cert.uid().unwrap_or_default();
    let cert = if ctx.behind(&uid, cert.resource_version().as_deref()) {
        let ns = cert.namespace().unwrap_or_default();
        let api: Api<Certificate> = Api::namespaced(ctx.client.clone(), &ns);
        let fresh = api
            .get_opt(&cert.name_any())
            .await
            .map_err(|e| status::Error::Get(format!("Certificate {ns}/{}", cert.name_any()), e))?;
        ctx.wrote(&uid, None);
        match fresh {
            Some(fresh) => Arc::new(fresh),
            None => return Ok(Action::await_change()),
        }
    } else {
        cert
    };
    if cert.metadata.deletion_timestamp.is_some() {
        ctx.wrote(&uid, None);
    }
    // The roles read the same snapshot and write different steps, so they
    // run side by side.
    let seen = snapshot::Snapshot::read(&cert, &ctx).await?;
    let (trigger, keys, request, issue, outputs, ready) = futures_util::join!(
        trigger::reconcile(&cert, &seen, &ctx),
        key_manager::reconcile(&cert, &seen, &ctx),
        request_manager::reconcile(&cert, &seen, &ctx),
        issuing::reconcile(&cert, &seen, &ctx),
        post_issuance::reconcile(&cert, &seen, &ctx),
        readiness::reconcile(&cert, &seen, &ctx),
    );
    let results = [trigger, keys, request, issue, outputs, ready];
    let mut soonest: Again = None;
    for result in results {
        if let Some(wait) = result? {
            soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
        }
    }
    Ok(soonest.map_or_else(Action::await_change, Action::requeue))
}

fn error_policy(cert: Arc<Certificate>, error: &status::Error, ctx: Arc<Ctx>) -> Action {
    crate::metrics::sync_error("certificates");
    let wait = ctx.reconcile_failed(&cert.uid().unwrap_or_default());
    tracing::warn!(error = %error, kind = error.kind(), retry_in = ?wait, "certificate reconcile failed");
    Action::requeue(wait)
}

/// What the roles read of a CertificateRequest besides its owners and
/// deletion: its annotations and spec, its Ready condition's state and
/// reason, and what it issued. Its other status writes (approval, a pending request's
/// messages) wake no Certificate.
fn request_fingerprint(cr: &CertificateRequest) -> serde_json::Value {
    let status = cr.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| (&c.status, &c.reason));
    serde_json::json!([
        cr.metadata.annotations,
        cr.spec,
        ready,
        status.map(|s| (&s.certificate, &s.ca, &s.failure_time)),
    ])
}

/// Runs the Certificate controllers (one watch of Certificates, their
/// requests, their temporary key Secrets and the Secrets they write)
/// until the streams end.
pub async fn run(shared: Arc<Context>) {
    let ctx = &shared;
    let (store, certificates) = crate::runtime::watch::trimmed_into(
        &ctx.stores.certificates,
        Api::<Certificate>::all(ctx.client.clone()),
        watcher::Config::default(),
        crate::runtime::watch::Wake::OnEveryChange,
    );
    let controller = Controller::for_stream(certificates, store);
    let (next_keys, next_key_events) = crate::runtime::watch::cached(
        Api::<Secret>::all(ctx.client.clone()),
        watcher::Config::default().labels(&format!("{}=true", key_manager::NEXT_KEY_LABEL)),
    );
    let ctx = Arc::new(Ctx {
        shared,
        state: State {
            next_keys,
            renewal_info: Default::default(),
        },
    });
    controller
        // Only what the roles read of a request wakes its Certificate.
        .owns_stream(crate::runtime::watch::changes(
            watcher(
                Api::<CertificateRequest>::all(ctx.client.clone()),
                watcher::Config::default(),
            )
            .default_backoff(),
            request_fingerprint,
        ))
        // Every Secret, metadata only (the mapping needs an annotation; the
        // Secrets a pass writes are read fresh): no Secret's data is sent
        // to the controller or kept by it.
        .watches_stream(
            watcher(
                Api::<kube::core::PartialObjectMeta<Secret>>::all(ctx.client.clone()),
                watcher::Config::default(),
            )
            .default_backoff()
            .touched_objects(),
            secret::guard::certificate_of,
        )
        // The temporary key Secrets, cached for the key manager (they live
        // only while an issuance is under way).
        .owns_stream(next_key_events.touched_objects())
        .with_config(ctx.settings.certificate_controller_config())
        .graceful_shutdown_on(ctx.stopped())
        .run(
            |cert, ctx| {
                let who = (
                    cert.uid().unwrap_or_default(),
                    crate::naming::object_name(&*cert),
                );
                let tracker = ctx.clone();
                async move {
                    tracker
                        .tracked("certificates", who, reconcile(cert, ctx))
                        .await
                }
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_request_wakes_its_certificate_when_its_outcome_changes_not_its_progress() {
        let print = |conditions: serde_json::Value, certificate: Option<&str>| {
            let cr: CertificateRequest = serde_json::from_value(json!({
                "apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
                "metadata": {"name": "web-1"}, "spec": {"issuerRef": {"name": "le"}, "request": ""},
                "status": {"conditions": conditions, "certificate": certificate}}))
            .expect("request");
            request_fingerprint(&cr)
        };
        let pending = |message: &str| json!([{"type": "Ready", "status": "False", "reason": "Pending", "message": message}]);
        let first = print(pending("Waiting on order: pending"), None);
        assert_eq!(first, print(pending("Waiting on order: ready"), None));
        let approved = json!([{"type": "Approved", "status": "True", "reason": "cert-manager.io"},
            {"type": "Ready", "status": "False", "reason": "Pending", "message": "m"}]);
        assert_eq!(first, print(approved, None), "approval");
        let issued = json!([{"type": "Ready", "status": "True", "reason": "Issued"}]);
        assert_ne!(first, print(issued.clone(), None));
        assert_ne!(print(issued.clone(), None), print(issued, Some("Y2VydA==")));
        let failed = json!([{"type": "Ready", "status": "False", "reason": "Failed"}]);
        assert_ne!(first, print(failed, None));
    }
}
