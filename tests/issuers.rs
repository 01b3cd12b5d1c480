//! The Issuer/ClusterIssuer controller against the real API server and pebble:
//! an ACME ClusterIssuer gets an account (key generated into the cluster
//! resource namespace, Ready=True, status.acme.uri); issuers certwright
//! cannot serve, and RSA account keys left by cert-manager, get Ready=False
//! with a reason and message saying what to do.

use std::sync::Arc;
use std::time::Duration;

use certwright::api::{ClusterIssuer, Issuer};
use certwright_testcluster::pebble::{Pebble, PebbleOptions, free_port};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

mod common;

async fn ready(get: impl AsyncFn() -> Option<Value>) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = get().await
            && let Some(cond) = status["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        {
            return json!({"status": cond["status"], "reason": cond["reason"], "message": cond["message"], "acme": status["acme"]});
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Ready condition within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuers_register_accounts_or_say_why_not() {
    certwright::install_crypto_provider();
    let (_, client) = common::control_plane_with_crds().await;
    let _turn = common::turn().await;
    let ns = "issuers";
    common::namespace(&client, ns).await;
    common::namespace(&client, "certwright").await;
    let pebble = Pebble::start(PebbleOptions {
        http_port: free_port().expect("port"),
        ..PebbleOptions::default()
    })
    .await
    .expect("pebble");

    let ctx = Arc::new(certwright::context::Context::new(
        client.clone(),
        "certwright",
    ));
    let controller = tokio::spawn(certwright::issuers::run(ctx));

    let ca_bundle = base64_encode(pebble.tls_ca_pem.as_bytes());
    let cluster_issuers: Api<ClusterIssuer> = Api::all(client.clone());
    let ci = json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "pebble"},
        "spec": {"acme": {"server": pebble.directory_url, "email": "ops@example.test", "caBundle": ca_bundle,
            "privateKeySecretRef": {"name": "pebble-account"}, "solvers": [{"http01": {"ingress": {"ingressClassName": "nginx"}}}]}}});
    cluster_issuers
        .create(
            &PostParams::default(),
            &serde_json::from_value(ci).expect("ci"),
        )
        .await
        .expect("create");
    let got = ready(async || {
        serde_json::to_value(cluster_issuers.get("pebble").await.ok()?.status?).ok()
    })
    .await;
    assert_eq!(got["status"], "True", "{got}");
    assert_eq!(got["reason"], "ACMEAccountRegistered");
    assert!(
        got["acme"]["uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://127.0.0.1:")),
        "{got}"
    );
    assert_eq!(got["acme"]["lastRegisteredEmail"], "ops@example.test");
    let key = Api::<Secret>::namespaced(client.clone(), "certwright")
        .get("pebble-account")
        .await
        .expect("account key Secret");
    let pem = key.data.expect("data")["tls.key"].0.clone();
    assert!(String::from_utf8_lossy(&pem).starts_with("-----BEGIN PRIVATE KEY-----"));

    let issuers: Api<Issuer> = Api::namespaced(client.clone(), ns);
    let cases = [
        (
            "ca",
            json!({"ca": {"secretName": "ca-key-pair"}}),
            "UnsupportedIssuerType",
        ),
        (
            "dns-only",
            json!({"acme": {"server": pebble.directory_url, "privateKeySecretRef": {"name": "k"},
            "solvers": [{"dns01": {"route53": {"region": "eu-west-1"}}}]}}),
            "NoSupportedSolver",
        ),
        (
            "rsa-key",
            json!({"acme": {"server": pebble.directory_url, "caBundle": ca_bundle, "privateKeySecretRef": {"name": "rsa-account"},
            "solvers": [{"http01": {"ingress": {}}}]}}),
            "InvalidAccountKey",
        ),
    ];
    let rsa =
        certwright::pki::keys::PrivateKey::generate(certwright::pki::keys::KeyKind::Rsa(2048))
            .expect("rsa")
            .to_pem(certwright::api::certificate::PrivateKeyEncoding::Pkcs1)
            .expect("pem");
    let secret = json!({"metadata": {"name": "rsa-account"}, "stringData": {}, "data": {"tls.key": base64_encode(rsa.as_bytes())}});
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(secret).expect("secret"),
        )
        .await
        .expect("secret");
    for (name, spec, reason) in cases {
        let issuer = json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": name}, "spec": spec});
        issuers
            .create(
                &PostParams::default(),
                &serde_json::from_value(issuer).expect("issuer"),
            )
            .await
            .expect("create");
        let got =
            ready(async || serde_json::to_value(issuers.get(name).await.ok()?.status?).ok()).await;
        assert_eq!(
            (got["status"].as_str(), got["reason"].as_str()),
            (Some("False"), Some(reason)),
            "{name}: {got}"
        );
        assert!(
            got["message"].as_str().is_some_and(|m| m.len() > 20),
            "{name}: {got}"
        );
    }
    controller.abort();
}

/// Base64 as the API carries bytes (k8s-openapi's ByteString does the encoding).
fn base64_encode(bytes: &[u8]) -> Value {
    serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec())).expect("base64")
}

/// A CA that requires external account binding: the account is created
/// with the EAB key from its Secret under a key certwright generates; an
/// existing key that the CA does not know is reported plainly, as is a
/// missing EAB Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_account_binding_registers_new_accounts() {
    certwright::install_crypto_provider();
    let (_, client) = common::control_plane_with_crds().await;
    let _turn = common::turn().await;
    let ns = "issuers-eab";
    common::namespace(&client, ns).await;
    let pebble = Pebble::start(PebbleOptions {
        http_port: free_port().expect("port"),
        eab_keys: vec![(
            "kid-1".into(),
            "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W".into(),
        )],
        ..PebbleOptions::default()
    })
    .await
    .expect("pebble");

    let ctx = Arc::new(certwright::context::Context::new(
        client.clone(),
        "certwright",
    ));
    let controller = tokio::spawn(certwright::issuers::run(ctx));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let eab_secret = json!({"metadata": {"name": "eab"},
        "stringData": {}, "data": {"secret": base64_encode(b"zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W")}});
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(eab_secret).expect("secret"),
        )
        .await
        .expect("eab secret");
    let issuers: Api<Issuer> = Api::namespaced(client.clone(), ns);
    let spec = |key_secret: &str, eab_secret: &str| {
        json!({"acme": {"server": pebble.directory_url, "caBundle": base64_encode(pebble.tls_ca_pem.as_bytes()),
            "privateKeySecretRef": {"name": key_secret},
            "externalAccountBinding": {"keyID": "kid-1", "keySecretRef": {"name": eab_secret, "key": "secret"}},
            "solvers": [{"http01": {"ingress": {"ingressClassName": "nginx"}}}]}})
    };
    // A generated RSA-free key that the CA has never seen.
    let (_, stranger) = instant_acme::Key::generate_pkcs8().expect("key");
    let stranger_pem = pem::encode(&pem::Pem::new(
        "PRIVATE KEY",
        stranger.secret_pkcs8_der().to_vec(),
    ));
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "stranger"}, "data": {"tls.key": base64_encode(stranger_pem.as_bytes())}}))
                .expect("secret"),
        )
        .await
        .expect("stranger key");
    let cases = [
        (
            "bound",
            spec("bound-account", "eab"),
            "True",
            "ACMEAccountRegistered",
        ),
        (
            "existing-key",
            spec("stranger", "eab"),
            "False",
            "EABExistingKey",
        ),
        (
            "no-eab-secret",
            spec("other-account", "missing"),
            "False",
            "InvalidEABKey",
        ),
    ];
    for (name, spec, status, reason) in cases {
        issuers
            .create(
                &PostParams::default(),
                &serde_json::from_value(
                    json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
                    "metadata": {"name": name}, "spec": spec}),
                )
                .expect("issuer"),
            )
            .await
            .expect("create");
        let got =
            ready(async || serde_json::to_value(issuers.get(name).await.ok()?.status?).ok()).await;
        assert_eq!(
            (got["status"].as_str(), got["reason"].as_str()),
            (Some(status), Some(reason)),
            "{name}: {got}"
        );
    }
    let key = secrets
        .get("bound-account")
        .await
        .expect("account key written");
    let pem = key
        .data
        .and_then(|d| d.get("tls.key").cloned())
        .expect("tls.key");
    certwright::acme::account::parse_key(&pem.0, "default/bound-account").expect("a P-256 key");
    controller.abort();
}
