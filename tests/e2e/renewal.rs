//! Renewal, end to end against pebble's renewal information (ARI): the CA
//! moves a certificate's window to a few seconds from now, certwright picks
//! its renewal time in it (asking again every second here), and the
//! certificate is renewed into a new revision, with a new key under
//! rotationPolicy Always and the same key under Never, and the new order
//! names the certificate it replaces. A window the CA moves into the past
//! renews at once; a CA answering garbage leaves the two-thirds rule.

use certwright::api::Certificate;
use certwright::pki::cert::parse_chain;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::json;

use crate::common;

use common::env::Env;

fn key_of(secret: &Secret) -> Vec<u8> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get("tls.key"))
        .map(|b| b.0.clone())
        .unwrap_or_default()
}

async fn renewed_with_reason(env: &Env, name: &str, reason_start: &str) -> bool {
    renewed_with_reason_in(env, "apps", name, reason_start).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_renew_inside_the_cas_window_with_the_rotation_policy() {
    let env = Env::start(|_| {}, &["--ari-poll-max-seconds", "1"]).await;
    env.namespace("apps").await;
    for (name, policy) in [("rotating", "Always"), ("keeping", "Never")] {
        env.certificate(
            "apps",
            name,
            json!({"secretName": format!("{name}-tls"), "dnsNames": [format!("{name}.example.test")],
                   "privateKey": {"algorithm": "ECDSA", "rotationPolicy": policy}}),
        )
        .await;
    }
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "apps");
    let certs: Api<Certificate> = Api::namespaced(env.client.clone(), "apps");
    let mut first = Vec::new();
    for name in ["rotating", "keeping"] {
        env.certificate_ready("apps", name, 1).await;
        let secret = secrets.get(&format!("{name}-tls")).await.expect("secret");
        // The CA moves the window to a few seconds from now.
        let (start, end) = (common::unix_now() + 6, common::unix_now() + 9);
        env.cluster
            .in_node(
                env.pebble
                    .set_renewal_info(&common::leaf_pem(&secret), &common::ari_window(start, end)),
            )
            .await
            .expect("set the window");
        let rt = env
            .wait(
                &format!("{name}'s renewal time in the new window"),
                20,
                || {
                    let certs = certs.clone();
                    async move {
                        let status = certs.get(name).await.ok()?.status?;
                        let rt = status.renewal_time?.0.as_second();
                        (start..=end).contains(&rt).then_some(rt)
                    }
                },
            )
            .await;
        first.push((name, rt, key_of(&secret)));
    }
    for (name, renewal_time, key) in first {
        let renewed: Certificate = env.certificate_ready("apps", name, 2).await;
        let secret = secrets.get(&format!("{name}-tls")).await.expect("secret");
        let leaf = parse_chain(common::leaf_pem(&secret).as_bytes()).expect("leaf");
        assert!(
            leaf.not_before >= renewal_time - 1,
            "{name}: renewed at its renewal time, not before ({} < {renewal_time})",
            leaf.not_before
        );
        assert_eq!(renewed.status.and_then(|s| s.revision), Some(2));
        if name == "keeping" {
            assert_eq!(key_of(&secret), key, "rotationPolicy Never keeps the key");
            let events = env
                .events(
                    "apps",
                    "involvedObject.kind=Certificate,involvedObject.name=keeping",
                )
                .await;
            assert!(
                events.iter().any(|(r, m)| r == "Reused"
                    && m == "Reusing private key stored in existing Secret resource \"keeping-tls\""),
                "a Reused event, as cert-manager's: {events:?}"
            );
        } else {
            assert_ne!(key_of(&secret), key, "rotationPolicy Always rotates it");
        }
        assert!(
            renewed_with_reason(
                &env,
                name,
                "Renewing certificate as suggested by the CA's renewal information"
            )
            .await,
            "{name}: the trigger said why"
        );
    }
    assert!(
        env.pebble.log().contains("is a replacement of"),
        "the renewal orders name what they replace:\n{}",
        env.pebble.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_moved_into_the_past_renews_at_once_and_garbage_leaves_two_thirds() {
    let env = Env::start(|_| {}, &["--ari-poll-max-seconds", "1"]).await;
    env.namespace("apps").await;
    for name in ["moved", "garbled"] {
        env.certificate(
            "apps",
            name,
            json!({"secretName": format!("{name}-tls"), "dnsNames": [format!("{name}.example.test")]}),
        )
        .await;
    }
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "apps");
    let mut leaves = Vec::new();
    for name in ["moved", "garbled"] {
        let cert = env.certificate_ready("apps", name, 1).await;
        let status = cert.status.expect("status");
        let (nb, na, rt) = (
            status.not_before.expect("notBefore").0.as_second(),
            status.not_after.expect("notAfter").0.as_second(),
            status.renewal_time.expect("renewalTime").0.as_second(),
        );
        // pebble: a day either side of two thirds into the lifetime.
        let ideal = na + 1 - (na + 1 - nb) / 3;
        assert!(
            (ideal - 86_400..=ideal + 86_400).contains(&rt),
            "{name}: inside the CA's window ({ideal} ± 1 day: {rt})"
        );
        let secret = secrets.get(&format!("{name}-tls")).await.expect("secret");
        leaves.push((name, common::leaf_pem(&secret), nb, na));
    }
    // As Let's Encrypt does for a certificate it must replace.
    let now = common::unix_now();
    let past = common::ari_window(now - 7200, now - 3600);
    env.cluster
        .in_node(env.pebble.set_renewal_info(&leaves[0].1, &past))
        .await
        .expect("set the window");
    env.cluster
        .in_node(env.pebble.set_renewal_info(&leaves[1].1, "{not json"))
        .await
        .expect("set garbage");
    env.certificate_ready("apps", "moved", 2).await;
    assert!(
        renewed_with_reason(
            &env,
            "moved",
            "Renewing certificate as suggested by the CA's renewal information"
        )
        .await,
        "the trigger said why"
    );
    let (_, _, nb, na) = leaves[1];
    let two_thirds = na - (na - nb) / 3;
    let certs: Api<Certificate> = Api::namespaced(env.client.clone(), "apps");
    env.wait("garbled back on two thirds", 30, || {
        let certs = certs.clone();
        async move {
            let status = certs.get("garbled").await.ok()?.status?;
            let rt = status.renewal_time?.0.as_second();
            ((rt - two_thirds).abs() <= 1 && status.revision == Some(1)).then_some(())
        }
    })
    .await;
}

/// A renewal names in `replaces` only a certificate its own ACME account
/// ordered: after the issuerRef moved to an issuer with another account
/// (the Secret keeps naming the old issuer until the new one's certificate
/// is written), and after an issuer's account key was lost (a new account),
/// every renewal is placed at once, none refused by the CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_after_the_account_changed_never_name_another_accounts_certificate() {
    use certwright::controllers::certificates::renewal::ari::ACCOUNT;
    let env = Env::start(|_| {}, &[]).await;
    env.namespace("moves").await;
    env.cluster_issuer("other").await;
    env.certificate(
        "moves",
        "web",
        json!({"secretName": "web-tls", "dnsNames": ["web.moves.test"]}),
    )
    .await;
    env.certificate_ready("moves", "web", 1).await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "moves");
    let annotation = |s: &Secret, k: &str| s.annotations().get(k).cloned().unwrap_or_default();
    let first = secrets.get("web-tls").await.expect("secret");
    let issuers = Api::<certwright::api::ClusterIssuer>::all(env.client.clone());
    let account_of = |name: &'static str| {
        let issuers = issuers.clone();
        async move {
            issuers
                .get(name)
                .await
                .ok()?
                .status?
                .acme?
                .uri
                .filter(|u| !u.is_empty())
        }
    };
    assert_eq!(
        Some(annotation(&first, ACCOUNT)),
        account_of("pebble").await,
        "the account that ordered it is on the Secret"
    );

    // 1. Another issuer, another account.
    let certs: Api<Certificate> = Api::namespaced(env.client.clone(), "moves");
    certs
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"spec": {"issuerRef": {"name": "other", "kind": "ClusterIssuer"}}}),
            ),
        )
        .await
        .expect("move the issuerRef");
    env.certificate_ready("moves", "web", 2).await;
    let moved = secrets.get("web-tls").await.expect("secret");
    assert_eq!(annotation(&moved, "cert-manager.io/issuer-name"), "other");
    assert_eq!(Some(annotation(&moved, ACCOUNT)), account_of("other").await);
    assert!(
        renewed_with_reason_in(
            &env,
            "moves",
            "web",
            "Issuing certificate as Secret was previously issued by"
        )
        .await,
        "issued because the issuer changed"
    );

    // 2. The other issuer's account key lost: it registers a new account.
    let old_account = account_of("other").await.expect("an account");
    Api::<Secret>::namespaced(env.client.clone(), "certwright")
        .delete("other-account", &Default::default())
        .await
        .expect("lose the account key");
    env.wait("a new account for the issuer", 60, || async {
        account_of("other").await.filter(|a| *a != old_account)
    })
    .await;
    let renew = std::process::Command::new(env!("CARGO_BIN_EXE_certwright"))
        .args(["renew", "web", "-n", "moves"])
        .env("KUBECONFIG", env.cluster.kubeconfig())
        .output()
        .expect("certwright renew");
    assert!(
        renew.status.success(),
        "{}",
        String::from_utf8_lossy(&renew.stderr)
    );
    env.certificate_ready("moves", "web", 3).await;

    let refused: Vec<_> = env
        .proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == "POST" && s.path.starts_with("/order-plz") && s.status >= 400)
        .map(|s| (s.path, s.status))
        .collect();
    assert!(refused.is_empty(), "orders the CA refused: {refused:?}");
}

async fn renewed_with_reason_in(env: &Env, ns: &str, name: &str, reason_start: &str) -> bool {
    let events = Api::<Event>::namespaced(env.client.clone(), ns)
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .expect("events");
    events.items.iter().any(|e| {
        e.reason.as_deref() == Some("Issuing")
            && e.message
                .as_deref()
                .is_some_and(|m| m.starts_with(reason_start))
    })
}

/// `rotationPolicy: Never` with a key that no longer fits the spec: the
/// issuance fails, saying why, rather than quietly generating a new key;
/// nothing is ordered and the Secret keeps its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_key_that_no_longer_fits_the_spec_is_refused() {
    let env = Env::start(|_| {}, &[]).await;
    env.namespace("kept").await;
    env.certificate(
        "kept",
        "web",
        json!({"secretName": "web-tls", "dnsNames": ["web.kept.test"],
               "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Never"}}),
    )
    .await;
    env.certificate_ready("kept", "web", 1).await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "kept");
    let before = key_of(&secrets.get("web-tls").await.expect("secret"));
    let orders = env.proxy.count("POST", "/order-plz");
    Api::<Certificate>::namespaced(env.client.clone(), "kept")
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"privateKey":
                {"algorithm": "RSA", "size": 2048, "rotationPolicy": "Never"}}})),
        )
        .await
        .expect("ask for another key");
    let message = env.issuing_failure("kept", "web").await;
    assert!(
        message.contains("rotationPolicy is Never, but the private key in Secret \"web-tls\" is ECDSA P-256 and the spec asks for RSA 2048"),
        "{message}"
    );
    assert_eq!(
        env.proxy.count("POST", "/order-plz"),
        orders,
        "nothing ordered"
    );
    assert_eq!(
        key_of(&secrets.get("web-tls").await.expect("secret")),
        before,
        "the Secret keeps its key"
    );
}
