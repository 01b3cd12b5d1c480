//! The Issuer/ClusterIssuer controller against the real API server and pebble:
//! an ACME ClusterIssuer gets an account (key generated into the cluster
//! resource namespace, Ready=True, status.acme.uri); issuers certwright
//! cannot serve get Ready=False with a reason and message saying what to
//! do; an RSA account key left by cert-manager keeps its account (rolled
//! over to P-256); a changed server registers again; a deleted account key
//! is replaced at once.

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

    let ctx = Arc::new(certwright::runtime::context::Context::new(
        client.clone(),
        "certwright",
    ));
    let controller = tokio::spawn(certwright::controllers::issuers::run(ctx));

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
    ];
    for (name, spec, reason) in cases {
        let got = created_ready(&issuers, name, spec).await;
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

    // A server that is no ACME directory (a web page, counted): tried once,
    // then on the configuration backoff (a minute); a spec change at once.
    let pages = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let web = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let pages = pages.clone();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                pages.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let body = "<html><body>Welcome</body></html>";
                let _ = s
                    .write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes())
                    .await;
            }
        });
        addr
    };
    let spec = |path: &str| {
        json!({"acme": {"server": format!("http://{web}/{path}"), "privateKeySecretRef": {"name": "web-key"},
            "solvers": [{"http01": {"ingress": {}}}]}})
    };
    let got = created_ready(&issuers, "web", spec("a")).await;
    let message = got["message"].as_str().unwrap_or_default().to_string();
    let first = certwright::acme::retry::Run::parse(&message).expect("the message names its run");
    assert_eq!(first.failures, 1, "{message}");
    assert!(message.contains("not ACME JSON"), "{message}");
    let wait = first.next.as_second() - first.since.as_second();
    assert!(
        (47..=73).contains(&wait),
        "a minute, ±20 %: {wait} s: {message}"
    );
    // Its own status write woke it: it asked nothing more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let asked = pages.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        asked, 1,
        "the page was asked {asked} times within the backoff"
    );
    let patched = json!({"spec": spec("b")});
    issuers
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(patched),
        )
        .await
        .expect("patch");
    common::eventually_within("the changed spec tried at once", 20, || async {
        (pages.load(std::sync::atomic::Ordering::SeqCst) > asked).then_some(())
    })
    .await;
    controller.abort();
}

/// Creates the Issuer `name` with `spec`; its Ready condition once it has one.
async fn created_ready(issuers: &Api<Issuer>, name: &str, spec: Value) -> Value {
    let issuer = json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": name}, "spec": spec});
    issuers
        .create(
            &PostParams::default(),
            &serde_json::from_value(issuer).expect("issuer"),
        )
        .await
        .expect("create");
    ready(async || serde_json::to_value(issuers.get(name).await.ok()?.status?).ok()).await
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

    let ctx = Arc::new(certwright::runtime::context::Context::new(
        client.clone(),
        "certwright",
    ));
    let controller = tokio::spawn(certwright::controllers::issuers::run(ctx));
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

/// cert-manager's account: an RSA-2048 key (PKCS#1 PEM, as cert-manager
/// writes it) registered at `pebble` with RS256. Returns the PEM and the
/// account URL.
async fn cert_manager_account(pebble: &Pebble) -> (String, String, certwright::acme::direct::Ca) {
    use certwright::acme::direct::{Ca, Signer};
    use certwright::acme::http::client;
    use certwright::acme::tls::Trust;
    use certwright::pki::keys::{KeyKind, PrivateKey};
    let rsa = PrivateKey::generate(KeyKind::Rsa(2048)).expect("rsa");
    let pem = rsa
        .to_pem(certwright::api::certificate::PrivateKeyEncoding::Pkcs1)
        .expect("pem");
    let http = client(&Trust::Bundle(pebble.tls_ca_pem.clone().into_bytes())).expect("client");
    let ca = Ca::new(http, &pebble.directory_url)
        .await
        .expect("directory");
    let signer = Signer::from_pkcs8(rsa.pkcs8_der()).expect("signer");
    let url = ca
        .register(&signer, &["mailto:ops@example.test".to_string()])
        .await
        .expect("RS256 registration");
    (pem, url, ca)
}

fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrated_accounts_are_kept_and_follow_their_server_and_key() {
    use certwright::acme::direct::Signer;
    use certwright::pki::keys::PrivateKey;
    certwright::install_crypto_provider();
    let (_, client) = common::control_plane_with_crds().await;
    let _turn = common::turn().await;
    let ns = "issuers-migrated";
    common::namespace(&client, ns).await;
    let start = || async {
        Pebble::start(PebbleOptions {
            http_port: free_port().expect("port"),
            ..PebbleOptions::default()
        })
        .await
        .expect("pebble")
    };
    let (pebble, other) = (start().await, start().await);
    let (rsa_pem, account, ca) = cert_manager_account(&pebble).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "cm-account"},
                "data": {"tls.key": base64_encode(rsa_pem.as_bytes())}}))
            .expect("secret"),
        )
        .await
        .expect("cert-manager's account key");

    let ctx = Arc::new(certwright::runtime::context::Context::new(
        client.clone(),
        "certwright",
    ));
    let controller = tokio::spawn(certwright::controllers::issuers::run(ctx));
    let issuers: Api<Issuer> = Api::namespaced(client.clone(), ns);
    let spec = |p: &Pebble| {
        json!({"acme": {"server": p.directory_url, "caBundle": base64_encode(p.tls_ca_pem.as_bytes()),
            "email": "ops@example.test", "privateKeySecretRef": {"name": "cm-account"},
            "solvers": [{"http01": {"ingress": {"ingressClassName": "nginx"}}}]}})
    };
    issuers
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
                "metadata": {"name": "migrated"}, "spec": spec(&pebble)}))
            .expect("issuer"),
        )
        .await
        .expect("create");
    let got = ready(async || {
        let status = issuers.get("migrated").await.ok()?.status?;
        status.acme.as_ref()?.uri.as_ref()?;
        serde_json::to_value(status).ok()
    })
    .await;
    assert_eq!(got["status"], "True", "{got}");
    // The same account, now under a P-256 key; the RSA key and the URL kept.
    assert_eq!(got["acme"]["uri"], account.as_str(), "{got}");
    let secret = secrets.get("cm-account").await.expect("secret");
    let p256 = secret_text(&secret, "tls.key").expect("tls.key");
    let p256 = certwright::acme::account::parse_key(p256.as_bytes(), "s").expect("P-256 now");
    assert_eq!(
        secret_text(&secret, "certwright-previous-account.key").as_deref(),
        Some(rsa_pem.as_str())
    );
    assert_eq!(
        secret_text(&secret, "certwright-previous-account.url").as_deref(),
        Some(account.as_str())
    );
    assert_eq!(secret_text(&secret, "certwright-pending-account.key"), None);
    // At the CA: the account answers to the new key only.
    let rsa = PrivateKey::from_pem(rsa_pem.as_bytes()).expect("rsa");
    let rsa = Signer::from_pkcs8(rsa.pkcs8_der()).expect("rsa signer");
    assert_eq!(ca.find_account(&rsa).await.expect("lookup"), None);
    let new = Signer::from_pkcs8(&p256).expect("p256 signer");
    assert_eq!(
        ca.find_account(&new).await.expect("lookup").as_deref(),
        Some(account.as_str())
    );
    let events: Vec<String> =
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns)
            .list(&Default::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("AccountKeyRolledOver"))
            .filter_map(|e| e.note)
            .collect();
    assert!(events.iter().any(|n| n.contains(&account)), "{events:?}");

    // Another server: registered there, not the old account kept.
    issuers
        .patch(
            "migrated",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": spec(&other)})),
        )
        .await
        .expect("server changed");
    let host = |url: &str| url.split('/').nth(2).unwrap_or("").to_string();
    let got = ready(async || {
        let status = issuers.get("migrated").await.ok()?.status?;
        let uri = status.acme.as_ref()?.uri.clone()?;
        (host(&uri) == host(&other.directory_url)).then_some(())?;
        serde_json::to_value(status).ok()
    })
    .await;
    assert_eq!(got["status"], "True", "{got}");

    // The account key deleted: a new key and account at once.
    secrets
        .delete("cm-account", &Default::default())
        .await
        .expect("deleted");
    let secret = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(s) = secrets.get("cm-account").await {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a new account key within 20 s");
    let key = secret_text(&secret, "tls.key").expect("tls.key");
    certwright::acme::account::parse_key(key.as_bytes(), "s").expect("a P-256 key");
    let got = ready(async || {
        let status = issuers.get("migrated").await.ok()?.status?;
        let uri = status.acme.as_ref()?.uri.clone()?;
        (host(&uri) == host(&other.directory_url) && got["acme"]["uri"] != uri.as_str())
            .then_some(())?;
        serde_json::to_value(status).ok()
    })
    .await;
    assert_eq!(got["status"], "True", "{got}");
    controller.abort();
}
