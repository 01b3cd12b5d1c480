//! Renewal, end to end: pebble issues 15-second certificates, so the
//! renewal time (two thirds into the lifetime by default) comes during the
//! test. The controller requeues for exactly that time; the certificate is
//! renewed into a new revision, with a new key under rotationPolicy Always
//! and the same key under Never.

use certwright::api::Certificate;
use certwright::pki::cert::parse_chain;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ListParams};
use serde_json::json;

mod common;

use common::env::Env;

fn key_of(secret: &Secret) -> Vec<u8> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get("tls.key"))
        .map(|b| b.0.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_renew_at_the_computed_time_with_the_rotation_policy() {
    let env = Env::start(|o| o.certificate_validity_seconds = Some(15), &[]).await;
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
    let mut first = Vec::new();
    for name in ["rotating", "keeping"] {
        let cert = env.certificate_ready("apps", name, 1).await;
        let status = cert.status.expect("status");
        let (nb, na, rt) = (
            status.not_before.expect("notBefore").0.as_second(),
            status.not_after.expect("notAfter").0.as_second(),
            status.renewal_time.expect("renewalTime").0.as_second(),
        );
        assert!(
            (rt - (na - (na - nb) / 3)).abs() <= 1,
            "{name}: renewal at two thirds of the lifetime ({nb}..{na}: {rt})"
        );
        let secret = secrets.get(&format!("{name}-tls")).await.expect("secret");
        first.push((name, rt, key_of(&secret)));
    }
    for (name, renewal_time, key) in first {
        let renewed: Certificate = env.certificate_ready("apps", name, 2).await;
        let secret = secrets.get(&format!("{name}-tls")).await.expect("secret");
        let leaf = parse_chain(
            &secret
                .data
                .as_ref()
                .and_then(|d| d.get("tls.crt"))
                .map(|b| b.0.clone())
                .unwrap_or_default(),
        )
        .expect("leaf");
        assert!(
            leaf.not_before >= renewal_time - 1,
            "{name}: renewed at its renewal time, not before ({} < {renewal_time})",
            leaf.not_before
        );
        assert_eq!(renewed.status.and_then(|s| s.revision), Some(2));
        if name == "keeping" {
            assert_eq!(key_of(&secret), key, "rotationPolicy Never keeps the key");
        } else {
            assert_ne!(key_of(&secret), key, "rotationPolicy Always rotates it");
        }
    }
    let events = Api::<Event>::namespaced(env.client.clone(), "apps")
        .list(&ListParams::default().fields("involvedObject.name=keeping"))
        .await
        .expect("events");
    assert!(
        events.items.iter().any(|e| {
            e.reason.as_deref() == Some("Issuing")
                && e.message.as_deref().is_some_and(|m| {
                    m.starts_with("Renewing certificate as renewal was scheduled at")
                })
        }),
        "the trigger said why"
    );
}
