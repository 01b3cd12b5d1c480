//! `certwright status certificate NAME`: reads the tree `status_text`
//! renders: the Certificate, its events, its issuer, its Secret, the
//! CertificateRequest of the running (or last) issuance, that request's
//! Order and the Order's Challenges with their solver resources.

use k8s_openapi::api::core::v1::{Event, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};

use super::explain;
use super::status_text::{ChallengeView, EventLine, IssuerView, SecretView, Tree};
use crate::api::{Certificate, CertificateRequest, Challenge, ClusterIssuer, Issuer, Order};
use crate::naming;

pub async fn fetch(client: &kube::Client, ns: &str, name: &str) -> anyhow::Result<Tree> {
    let at = |kind: &str, n: &str| format!("{kind} {ns}/{n}");
    let certificate = Api::<Certificate>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .map_err(|e| explain(e, &at("Certificate", name)))?;
    let events = events_of(client, ns, &certificate).await;
    let issuer_ref = &certificate.spec.issuer_ref;
    let kind = issuer_ref.kind.clone().unwrap_or_else(|| "Issuer".into());
    let status = if kind == "ClusterIssuer" {
        Api::<ClusterIssuer>::all(client.clone())
            .get_opt(&issuer_ref.name)
            .await
            .map_err(|e| explain(e, &format!("ClusterIssuer {}", issuer_ref.name)))?
            .map(|i| serde_json::to_value(&i.status).unwrap_or_default())
    } else {
        Api::<Issuer>::namespaced(client.clone(), ns)
            .get_opt(&issuer_ref.name)
            .await
            .map_err(|e| explain(e, &at("Issuer", &issuer_ref.name)))?
            .map(|i| serde_json::to_value(&i.status).unwrap_or_default())
    };
    let issuer = IssuerView {
        kind,
        name: issuer_ref.name.clone(),
        status,
    };
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(&certificate.spec.secret_name)
        .await
        .map_err(|e| explain(e, &at("Secret", &certificate.spec.secret_name)))?
        .map(|s| SecretView::of(&s));
    let cert_status = certificate.status.clone().unwrap_or_default();
    let revision = cert_status.revision.unwrap_or(0);
    let issuing = crate::controllers::certificates::status::issuing(&certificate);
    let wanted = if issuing { revision + 1 } else { revision };
    let request = if wanted > 0 {
        let cr_name = naming::certificate_request(name, wanted);
        Api::<CertificateRequest>::namespaced(client.clone(), ns)
            .get_opt(&cr_name)
            .await
            .map_err(|e| explain(e, &at("CertificateRequest", &cr_name)))?
    } else {
        None
    };
    let order = match &request {
        Some(cr) => newest_owned(
            Api::<Order>::namespaced(client.clone(), ns)
                .list(&ListParams::default())
                .await
                .map_err(|e| explain(e, &format!("the Orders in {ns}")))?
                .items,
            cr.meta().uid.as_deref(),
        ),
        None => None,
    };
    let mut challenges = Vec::new();
    if let Some(order) = &order {
        let all = Api::<Challenge>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map_err(|e| explain(e, &format!("the Challenges in {ns}")))?
            .items;
        for challenge in all
            .into_iter()
            .filter(|c| owned_by(c, order.meta().uid.as_deref()))
        {
            let events = events_of(client, ns, &challenge).await;
            let resources = solver_resources(client, ns, &challenge).await;
            challenges.push(ChallengeView {
                challenge,
                events,
                resources,
            });
        }
    }
    let request = match request {
        Some(cr) => {
            let e = events_of(client, ns, &cr).await;
            Some((cr, e))
        }
        None => None,
    };
    let order = match order {
        Some(o) => {
            let e = events_of(client, ns, &o).await;
            Some((o, e))
        }
        None => None,
    };
    Ok(Tree {
        certificate,
        events,
        issuer,
        secret,
        request,
        order,
        challenges,
    })
}

fn owned_by<K: Resource>(object: &K, uid: Option<&str>) -> bool {
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|o| Some(o.uid.as_str()) == uid)
}

fn newest_owned<K: Resource>(items: Vec<K>, uid: Option<&str>) -> Option<K> {
    items
        .into_iter()
        .filter(|o| owned_by(o, uid))
        .max_by_key(|o| o.meta().creation_timestamp.as_ref().map(|t| t.0))
}

/// The object's events, oldest first (none when they cannot be read).
async fn events_of<K: Resource>(client: &kube::Client, ns: &str, object: &K) -> Vec<EventLine> {
    let Some(uid) = object.meta().uid.as_deref() else {
        return Vec::new();
    };
    let listed = Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default().fields(&format!("involvedObject.uid={uid}")))
        .await;
    let mut lines: Vec<EventLine> = listed
        .map(|l| l.items.iter().map(EventLine::of).collect())
        .unwrap_or_default();
    lines.sort_by_key(|e| e.last);
    lines
}

/// The Pods, Services and Ingresses labelled for the Challenge's token.
async fn solver_resources(client: &kube::Client, ns: &str, ch: &Challenge) -> Vec<String> {
    let selector: Vec<String> = crate::solver::ingress::labels(ch)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let params = ListParams::default().labels(&selector.join(","));
    let mut out = Vec::new();
    if let Ok(l) = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&params)
        .await
    {
        out.extend(l.items.iter().map(|p| format!("Pod/{}", p.name_any())));
    }
    if let Ok(l) = Api::<Service>::namespaced(client.clone(), ns)
        .list(&params)
        .await
    {
        out.extend(l.items.iter().map(|s| format!("Service/{}", s.name_any())));
    }
    if let Ok(l) = Api::<Ingress>::namespaced(client.clone(), ns)
        .list(&params)
        .await
    {
        out.extend(l.items.iter().map(|i| format!("Ingress/{}", i.name_any())));
    }
    out
}
