//! DNS-01 end to end: a wildcard and its apex issued by pebble, which
//! looks the TXT records up in a real BIND 9 that certwright updated with
//! RFC 2136 (TSIG-signed); nothing left in the zone afterwards; a wrong
//! TSIG secret a clear reason on the Challenge.

use crate::common;

use std::time::Duration;

use common::dns::{SECRET, dns_server, dns01_issuer, start, txt_values};
use common::env::Env;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::json;

/// An Issuer `name` in `ns` solving DNS-01 with RFC 2136 and the TSIG
/// secret `secret`, in a Secret of its own.
async fn rfc2136_issuer(env: &Env, ns: &str, name: &str, secret: &str) {
    rfc2136_issuer_with(env, ns, name, secret, json!({})).await;
}

/// Like [`rfc2136_issuer`], with `extra` merged into the dns01 solver.
async fn rfc2136_issuer_with(
    env: &Env,
    ns: &str,
    name: &str,
    secret: &str,
    extra: serde_json::Value,
) {
    let tsig = format!("{name}-tsig");
    let mut dns01 = json!({"rfc2136": {"nameserver": dns_server().to_string(),
        "tsigKeyName": "certwright", "tsigAlgorithm": "HMACSHA256",
        "tsigSecretSecretRef": {"name": tsig, "key": "secret"}}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        dns01[k] = v.clone();
    }
    dns01_issuer(env, ns, name, (&tsig, "secret", secret), dns01).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_and_its_apex_are_issued_through_rfc2136_and_nothing_is_left_in_dns() {
    let (env, named) = start(&[]).await;
    let ns = "dns";
    env.namespace(ns).await;
    rfc2136_issuer(&env, ns, "bind", SECRET).await;
    env.certificate(
        ns,
        "wild",
        json!({"secretName": "wild-tls", "dnsNames": ["dns.test", "*.dns.test"],
               "issuerRef": {"name": "bind", "kind": "Issuer"}}),
    )
    .await;
    env.certificate_ready(ns, "wild", 1).await;
    let secret = Api::<Secret>::namespaced(env.client.clone(), ns)
        .get("wild-tls")
        .await
        .expect("secret");
    // The wildcard covers any one label under the apex.
    common::verify_chain(
        &common::leaf_pem(&secret),
        env.pebble.issuing_root_pem(),
        &["dns.test", "www.dns.test"],
    );
    // Both TXT values went on one name and both came off again.
    env.wait("the TXT records to be removed", 30, || async {
        txt_values(&env, "_acme-challenge.dns.test")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    let log = named.log();
    assert!(
        log.matches("adding an RR at '_acme-challenge.dns.test' TXT")
            .count()
            >= 2,
        "two values added:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_tsig_secret_is_a_clear_reason_and_no_hot_loop() {
    let (env, named) = start(&[]).await;
    let ns = "dns-bad";
    env.namespace(ns).await;
    rfc2136_issuer(&env, ns, "wrong", "bm90LXRoZS1zZWNyZXQ=").await;
    env.certificate(
        ns,
        "bad",
        json!({"secretName": "bad-tls", "dnsNames": ["bad.dns.test"],
               "issuerRef": {"name": "wrong", "kind": "Issuer"}}),
    )
    .await;
    let reason = common::dns::challenge_reason(&env, ns, "BADSIG").await;
    assert!(
        reason.starts_with("Cannot present the DNS-01 challenge")
            && reason.contains("TSIG key \"certwright\""),
        "{reason}"
    );
    // Retried slowly, not in a loop: a few attempts in five seconds at most.
    let before = named.log().matches("BADSIG").count();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = named.log().matches("BADSIG").count();
    assert!(after - before <= 2, "{} attempts in 5 s", after - before);
    assert!(
        txt_values(&env, "_acme-challenge.bad.dns.test")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cname_followed_two_certificates_sharing_a_name_and_the_seeds_404() {
    let (env, named) = start(&[]).await;
    let ns = "dns-more";
    env.namespace(ns).await;
    rfc2136_issuer_with(
        &env,
        ns,
        "follow",
        SECRET,
        json!({"cnameStrategy": "Follow"}),
    )
    .await;
    let issuer = json!({"name": "follow", "kind": "Issuer"});

    // The record goes where _acme-challenge.alias.dns.test's CNAME points.
    env.certificate(
        ns,
        "alias",
        json!({"secretName": "alias-tls", "dnsNames": ["alias.dns.test"], "issuerRef": issuer}),
    )
    .await;
    env.certificate_ready(ns, "alias", 1).await;
    let log = named.log();
    assert!(
        log.contains(
            "updating zone 'delegated.test/IN': adding an RR at 'alias.delegated.test' TXT"
        ),
        "written at the CNAME's target:\n{log}"
    );

    // Two Certificates sharing a name: both issued, one after the other.
    for (name, names) in [
        ("one", json!(["shared.dns.test"])),
        ("two", json!(["shared.dns.test", "two.dns.test"])),
    ] {
        env.certificate(
            ns,
            name,
            json!({"secretName": format!("{name}-tls"), "dnsNames": names, "issuerRef": issuer}),
        )
        .await;
    }
    env.certificate_ready(ns, "one", 1).await;
    env.certificate_ready(ns, "two", 1).await;

    // The seed's 404 on a DNS-01 order: a fresh order, and issued.
    env.lose_next_authorization();
    env.certificate(
        ns,
        "lost",
        json!({"secretName": "lost-tls", "dnsNames": ["lost.dns.test"], "issuerRef": issuer}),
    )
    .await;
    env.certificate_ready(ns, "lost", 1).await;
    let seen = env.proxy.seen();
    assert!(
        seen.iter().any(|s| s.injected && s.status == 404),
        "the fault was hit"
    );
    let events = env.events(ns, "involvedObject.kind=Order").await;
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "OrderReplaced" && m.contains("No such authorization")),
        "{events:?}"
    );

    // Nothing left in either zone.
    for name in [
        "alias.delegated.test",
        "_acme-challenge.shared.dns.test",
        "_acme-challenge.two.dns.test",
        "_acme-challenge.lost.dns.test",
    ] {
        env.wait(&format!("{name} to be empty"), 30, || async {
            txt_values(&env, name).await.is_empty().then_some(())
        })
        .await;
    }
}
