//! The DNS-01 tests' DNS: BIND 9 on the node (the zones `dns.test` and
//! `delegated.test`, updatable with the TSIG key `certwright`), which
//! pebble resolves through, a faithful fake of Cloudflare's API whose
//! records land in that BIND, and a cert-manager webhook solver writing
//! into it.

use std::net::SocketAddr;

use certwright::dns::lookup;
use certwright_testcluster::bind::{Bind, BindOptions, TsigKey, Zone};
use certwright_testcluster::cluster::NODE_IP;

use super::env::Env;

pub const SECRET: &str = "ZG5zLTAxLXRlc3RzLW9mLWNlcnR3cmlnaHQtd2l0aC1iaW5k";

/// BIND on the node, port 53 (where the zone's NS record points), with
/// zone `dns.test` updatable with the key `certwright`.
pub async fn bind(env: &Env) -> Bind {
    let options = BindOptions {
        address: NODE_IP.into(),
        port: Some(53),
        netns: Some(env.cluster.node().clone()),
        keys: vec![TsigKey {
            name: "certwright".into(),
            algorithm: "hmac-sha256".into(),
            secret: SECRET.into(),
        }],
        zones: vec![
            Zone {
                name: "dns.test".into(),
                // alias.dns.test delegates its challenges to another zone.
                records: vec!["_acme-challenge.alias IN CNAME alias.delegated.test.".into()],
                update_keys: vec!["certwright".into()],
            },
            Zone {
                name: "delegated.test".into(),
                records: Vec::new(),
                update_keys: vec!["certwright".into()],
            },
        ],
    };
    env.cluster
        .in_node(Bind::start(options))
        .await
        .expect("named starts on the node")
}

pub fn dns_server() -> SocketAddr {
    SocketAddr::new(NODE_IP.into(), 53)
}

/// The controller looking names up in BIND, pebble resolving through it,
/// and BIND running.
pub async fn start(extra: &[&str]) -> (Env, Bind) {
    let dns = dns_server().to_string();
    let mut flags = vec!["--dns01-recursive-nameservers", &dns];
    flags.extend_from_slice(extra);
    let env = Env::start(|o| o.dns_server = Some(dns_server().to_string()), &flags).await;
    let named = bind(&env).await;
    (env, named)
}

/// An Issuer `name` in `ns` whose one solver is `dns01`, and the Secret
/// it names: (name, key, value).
pub async fn dns01_issuer(
    env: &Env,
    ns: &str,
    name: &str,
    (secret, key, value): (&str, &str, &str),
    dns01: serde_json::Value,
) {
    let object = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": secret, "namespace": ns}, "stringData": {key: value}});
    certwright_testcluster::deploy::apply(&env.client, object)
        .await
        .expect("the solver's Secret");
    env.issuer_with(ns, name, serde_json::json!({"solvers": [{"dns01": dns01}]}))
        .await;
}

/// A Certificate `name` for `names` into the Secret `<name>-tls`, issued
/// by the Issuer `name` of its namespace.
pub async fn certificate_by_issuer(env: &Env, ns: &str, name: &str, names: &[&str]) {
    let spec = serde_json::json!({"secretName": format!("{name}-tls"), "dnsNames": names,
        "issuerRef": {"name": name, "kind": "Issuer"}});
    env.certificate(ns, name, spec).await;
}

/// The reason of a Challenge in `ns` once one contains `needle`.
pub async fn challenge_reason(env: &Env, ns: &str, needle: &str) -> String {
    use certwright::api::Challenge;
    use kube::api::{Api, ListParams};
    let challenges: Api<Challenge> = Api::namespaced(env.client.clone(), ns);
    env.wait(
        &format!("a Challenge reason saying {needle:?}"),
        60,
        || async {
            challenges
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find_map(|c| c.status?.reason.filter(|r| r.contains(needle)))
        },
    )
    .await
}

pub async fn txt_values(env: &Env, name: &str) -> Vec<String> {
    let name = name.to_string();
    env.cluster
        .in_node(async move { lookup::txt(dns_server(), &name, false).await })
        .await
        .expect("TXT lookup")
        .values
}

pub mod cloudflare;
pub mod webhook;
