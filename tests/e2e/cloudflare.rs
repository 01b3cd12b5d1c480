//! DNS-01 through Cloudflare's API, as the user's notes configure it
//! (`dns01.cloudflare.apiTokenSecretRef`), against the fake in
//! `tests/common/dns/cloudflare.rs` whose records pebble really looks up
//! (in the test BIND): a wildcard and its apex, key + email auth, a value
//! another writer made meanwhile (81058), pages of other values on the
//! name, and the refusals (a token without the zone, a bad token) as
//! clear reasons without a hot loop; nothing left in the zone. A record
//! the provider refuses to remove is said in an event and tried once.

use crate::common;

use std::time::Duration;

use common::dns::cloudflare::FakeCloudflare;
use common::dns::{
    SECRET, certificate_by_issuer, challenge_reason, dns_server, dns01_issuer, start, txt_values,
};
use common::env::Env;
use serde_json::json;

async fn fake() -> FakeCloudflare {
    let cluster = common::local_cluster().await;
    let secret =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, SECRET).expect("b64");
    cluster
        .in_node(async move {
            FakeCloudflare::start(&["dns.test", "delegated.test"], dns_server(), secret).await
        })
        .await
}

/// An Issuer `name` in `ns` with a Cloudflare solver authenticated by
/// `auth` (`apiTokenSecretRef` or `apiKeySecretRef` + `email`), whose
/// Secret `<name>-cf` holds `credential` under `value`.
async fn cloudflare_issuer(
    env: &Env,
    ns: &str,
    name: &str,
    credential: &str,
    auth: serde_json::Value,
) {
    let secret = format!("{name}-cf");
    let provider = json!({"cloudflare": auth});
    dns01_issuer(env, ns, name, (&secret, "value", credential), provider).await;
}

fn token_auth(name: &str) -> serde_json::Value {
    json!({"apiTokenSecretRef": {"name": format!("{name}-cf"), "key": "value"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_cloudflare_issuer_issues_a_wildcard_and_its_apex() {
    let cf = fake().await;
    cf.add_token("user-token", &["dns.test"]);
    cf.add_key("ops@example.test", "global-key");
    let (env, _named) = start(&["--cloudflare-api-url", &cf.url]).await;
    let ns = "cf";
    env.namespace(ns).await;
    cloudflare_issuer(&env, ns, "cf", "user-token", token_auth("cf")).await;
    // Other values on the name, more than one page of them.
    for i in 0..60 {
        cf.seed(
            "dns.test",
            "_acme-challenge.dns.test",
            &format!("someone-else-{i}"),
        );
    }
    // The first create meets a record a concurrent writer made: success.
    cf.race_next_create();
    env.certificate(
        ns,
        "wild",
        json!({"secretName": "wild-tls", "dnsNames": ["dns.test", "*.dns.test"],
               "issuerRef": {"name": "cf", "kind": "Issuer"}}),
    )
    .await;
    env.certificate_ready(ns, "wild", 1).await;
    assert!(
        !cf.race_pending(),
        "a create met the concurrent writer's record"
    );
    let events = env.events(ns, "involvedObject.kind=Challenge").await;
    assert!(
        !events.iter().any(|(r, _)| r == "PresentError"),
        "81058 is success: {events:?}"
    );
    env.wait("our values to leave the zone", 30, || async {
        let ours: Vec<_> = cf
            .records("_acme-challenge.dns.test")
            .into_iter()
            .filter(|r| !r.content.starts_with("someone-else-"))
            .collect();
        ours.is_empty().then_some(())
    })
    .await;
    assert_eq!(
        cf.records("_acme-challenge.dns.test").len(),
        60,
        "the others' values stay"
    );
    assert!(
        txt_values(&env, "_acme-challenge.dns.test")
            .await
            .is_empty(),
        "and none in DNS"
    );

    // Global key and email.
    let key_auth = json!({"email": "ops@example.test",
        "apiKeySecretRef": {"name": "keyed-cf", "key": "value"}});
    cloudflare_issuer(&env, ns, "keyed", "global-key", key_auth).await;
    certificate_by_issuer(&env, ns, "keyed", &["keyed.dns.test"]).await;
    env.certificate_ready(ns, "keyed", 1).await;
    assert!(cf.records("_acme-challenge.keyed.dns.test").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_the_zone_and_a_bad_token_are_clear_reasons_without_a_hot_loop() {
    let cf = fake().await;
    cf.add_token("other-zone-token", &["delegated.test"]);
    let (env, _named) = start(&["--cloudflare-api-url", &cf.url]).await;
    let ns = "cf-bad";
    env.namespace(ns).await;
    cloudflare_issuer(&env, ns, "scoped", "other-zone-token", token_auth("scoped")).await;
    certificate_by_issuer(&env, ns, "scoped", &["scoped.dns.test"]).await;
    let why = challenge_reason(
        &env,
        ns,
        "Cloudflare has no zone for _acme-challenge.scoped.dns.test",
    )
    .await;
    assert!(why.contains("Zone:Read"), "{why}");

    cloudflare_issuer(&env, ns, "bad", "not-a-token", token_auth("bad")).await;
    certificate_by_issuer(&env, ns, "bad", &["bad.dns.test"]).await;
    let why = challenge_reason(&env, ns, "10000 Authentication error").await;
    assert!(
        why.starts_with("Cannot present the DNS-01 challenge"),
        "{why}"
    );
    // Both retried slowly: a handful of requests in five seconds.
    let before = cf.request_count();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = cf.request_count() - before;
    assert!(during <= 12, "{during} requests in 5 s");
}

/// A record the provider will not remove once the Challenge is done: one
/// DELETE per record, a CleanUpError event, and the name free at once for
/// the next Certificate (no retry holding its claim).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_provider_will_not_remove_is_said_and_tried_once() {
    let cf = fake().await;
    cf.add_token("user-token", &["dns.test"]);
    let (env, _named) = start(&["--cloudflare-api-url", &cf.url]).await;
    let ns = "cf-left";
    env.namespace(ns).await;
    cloudflare_issuer(&env, ns, "cf", "user-token", token_auth("cf")).await;
    cf.refuse_deletes(true);
    certificate_by_issuer(&env, ns, "cf", &["left.dns.test"]).await;
    env.certificate_ready(ns, "cf", 1).await;
    let events = env
        .wait("the CleanUpError event", 60, || async {
            let events = env.events(ns, "involvedObject.kind=Challenge").await;
            events
                .iter()
                .any(|(r, m)| r == "CleanUpError" && m.contains("left behind"))
                .then_some(events)
        })
        .await;
    // The same name again, from another Certificate: not held back.
    env.certificate(
        ns,
        "again",
        json!({"secretName": "again-tls", "dnsNames": ["left.dns.test"],
               "issuerRef": {"name": "cf", "kind": "Issuer"}}),
    )
    .await;
    env.certificate_ready(ns, "again", 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        cf.count("DELETE"),
        2,
        "one DELETE per record (two Certificates), no retries: {events:?}"
    );
}
