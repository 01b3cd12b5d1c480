//! What another manager, or a stopped controller, left behind: a done
//! Order's Challenges without our label (as cert-manager makes them), and
//! an Order whose status another field manager wrote (as cert-manager's
//! Update does) when the CA has lost that order.

use certwright::api::{Challenge, Order};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::common::env::Env;

/// A done Order deletes every Challenge it owns, also one without our label
/// (as cert-manager makes them, when certwright takes an Order over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_done_order_deletes_the_challenges_it_owns_labelled_or_not() {
    let env = Env::start(|_| {}, &[]).await;
    env.ca_refuses_validation();
    env.namespace("owned").await;
    env.certificate(
        "owned",
        "web",
        json!({"secretName": "web-tls", "dnsNames": ["owned.example.test"]}),
    )
    .await;
    let challenges: Api<Challenge> = Api::namespaced(env.client.clone(), "owned");
    let name = kube::ResourceExt::name_any(&env.challenge_refused_once("owned").await);
    // As cert-manager's: owned by the Order, without certwright's label.
    challenges
        .patch(
            &name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels":
                {(certwright::controllers::orders::challenges::ORDER_UID_LABEL): null}}})),
        )
        .await
        .expect("drop the label");
    env.proxy.clear_faults();
    env.certificate_ready("owned", "web", 1).await;
    env.wait("the Challenge deleted with its Order done", 60, || async {
        challenges
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
}

/// An Order taken over mid-flight: its `status.url` written by another
/// field manager, naming an order the CA does not know. The lost order is
/// replaced, and the URL cleared although certwright's apply does not own
/// it, so the fresh order is placed and issued (not the lost one asked
/// again until the run gives up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_order_another_manager_wrote_is_replaced() {
    let env = Env::start(|_| {}, &[]).await;
    env.ca_refuses_validation();
    env.namespace("taken").await;
    env.certificate(
        "taken",
        "web",
        json!({"secretName": "web-tls", "dnsNames": ["taken.example.test"]}),
    )
    .await;
    let orders: Api<Order> = Api::namespaced(env.client.clone(), "taken");
    let (name, url) = env
        .wait("the Order placed", 60, || async {
            let o = orders
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .pop()?;
            let url = o.status.as_ref()?.url.clone()?;
            Some((kube::ResourceExt::name_any(&o), url))
        })
        .await;
    // Its Challenge made (with the URL it had), so that the one made after
    // the Update below carries the lost URL.
    let challenges: Api<Challenge> = Api::namespaced(env.client.clone(), "taken");
    env.wait("the Order's Challenge", 60, || async {
        let listed = challenges.list(&ListParams::default()).await.ok()?;
        (!listed.items.is_empty()).then_some(())
    })
    .await;
    // cert-manager's Update, naming an order the CA never had.
    let lost = format!("{}nonexistent", url.trim_end_matches(|c| c != '/'));
    let other = PatchParams {
        field_manager: Some("cert-manager-orders".into()),
        ..Default::default()
    };
    orders
        .patch_status(
            &name,
            &other,
            &Patch::Merge(json!({"status": {"url": lost}})),
        )
        .await
        .expect("another manager's url");
    // Its Challenges gone too: the Order makes them again from the order
    // as it stands now, and they ask the CA for the lost order.
    for ch in challenges
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
    {
        let _ = challenges
            .delete(&kube::ResourceExt::name_any(&ch), &Default::default())
            .await;
    }
    // The controller has seen it (not issued from its cache's older view).
    env.wait("the lost order asked", 60, || async {
        env.proxy
            .seen()
            .iter()
            .any(|s| s.path.ends_with("/nonexistent"))
            .then_some(())
    })
    .await;
    env.proxy.clear_faults();
    env.certificate_ready("taken", "web", 1).await;
    let now = orders.get(&name).await.expect("order");
    let url_now = now.status.and_then(|s| s.url).unwrap_or_default();
    assert!(url_now != lost, "the lost URL was cleared: {url_now}");
    let asked_lost = env
        .proxy
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("/nonexistent"))
        .count();
    assert!(
        (1..=2).contains(&asked_lost),
        "the lost order was asked {asked_lost} times, then replaced"
    );
}

/// A Certificate taken over after its issuance: `nextPrivateKeySecretName`
/// written by another field manager (cert-manager's Update) while nothing
/// is issuing. The key manager clears it although its apply does not own
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_key_name_another_manager_wrote_is_cleared() {
    let env = Env::start(|_| {}, &[]).await;
    env.namespace("handed").await;
    env.certificate(
        "handed",
        "web",
        json!({"secretName": "web-tls", "dnsNames": ["handed.example.test"]}),
    )
    .await;
    env.certificate_ready("handed", "web", 1).await;
    let certs: Api<certwright::api::Certificate> = Api::namespaced(env.client.clone(), "handed");
    let other = PatchParams {
        field_manager: Some("cert-manager-certificates-key-manager".into()),
        ..Default::default()
    };
    certs
        .patch_status(
            "web",
            &other,
            &Patch::Merge(json!({"status": {"nextPrivateKeySecretName": "web-left-behind"}})),
        )
        .await
        .expect("another manager's next key name");
    env.wait("the next key name cleared", 30, || async {
        let status = certs.get("web").await.ok()?.status?;
        status.next_private_key_secret_name.is_none().then_some(())
    })
    .await;
    let managers = certs.get("web").await.expect("get").metadata.managed_fields;
    assert!(
        managers.iter().flatten().all(|m| m
            .fields_v1
            .as_ref()
            .is_none_or(|f| !f.0.to_string().contains("nextPrivateKeySecretName"))),
        "no manager owns the field any more"
    );
}
