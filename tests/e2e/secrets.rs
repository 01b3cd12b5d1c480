//! The Secret a Certificate writes: what others add to it survives, it is
//! re-issued when deleted and goes with its Certificate when asked, and
//! certwright never takes over a Secret that holds something else.

use certwright::api::{Certificate, CertificateRequest};
use certwright::pki::cert::parse_chain;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::common;

use common::env::Env;
use common::{read_keystore, secret_data};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_secret_is_reissued_and_labels_added_by_others_survive() {
    let env = Env::start(|_| {}, &[]).await;
    env.namespace("apps").await;
    env.certificate(
        "apps",
        "site",
        json!({"secretName": "site-tls", "dnsNames": ["site.example.test"],
               "secretTemplate": {"labels": {"team": "web"}}}),
    )
    .await;
    env.certificate_ready("apps", "site", 1).await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "apps");
    // Someone else labels and annotates the Secret and adds a data key.
    secrets
        .patch(
            "site-tls",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {"backup": "daily"},
                "annotations": {"reflector.example/allowed": "true"}},
                "data": {"extra.txt": "aGVsbG8="}})),
        )
        .await
        .expect("label");
    // A spec change re-issues into the same Secret.
    let certs: Api<certwright::api::Certificate> = Api::namespaced(env.client.clone(), "apps");
    certs
        .patch(
            "site",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"spec": {"dnsNames": ["site.example.test", "www.site.example.test"]}}),
            ),
        )
        .await
        .expect("spec change");
    env.certificate_ready("apps", "site", 2).await;
    let secret = secrets.get("site-tls").await.expect("secret");
    let labels = secret.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("backup").map(String::as_str), Some("daily"));
    assert_eq!(labels.get("team").map(String::as_str), Some("web"));
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("reflector.example/allowed")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(secret_data(&secret, "extra.txt"), b"hello");
    let leaf = parse_chain(&secret_data(&secret, "tls.crt")).expect("leaf");
    assert_eq!(leaf.dns_names.len(), 2, "the new names");

    // Deleted: issued again.
    secrets
        .delete("site-tls", &Default::default())
        .await
        .expect("delete");
    env.certificate_ready("apps", "site", 3).await;
    let again = secrets.get("site-tls").await.expect("secret again");
    assert!(!secret_data(&again, "tls.crt").is_empty());
    // revisionHistoryLimit (default 1) keeps only the newest request.
    let requests: Api<CertificateRequest> = Api::namespaced(env.client.clone(), "apps");
    env.wait("old requests pruned", 30, || {
        let requests = requests.clone();
        async move {
            let names: Vec<String> = requests
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter_map(|r| r.metadata.name)
                .collect();
            (names == ["site-3"]).then_some(())
        }
    })
    .await;
    // What others added is not drift: the Secret was never written again
    // without an issuance.
    let events = env
        .events(
            "apps",
            "involvedObject.kind=Certificate,involvedObject.name=site",
        )
        .await;
    assert!(
        !events.iter().any(|(r, _)| r == "SecretUpdated"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_of_another_certificate_is_never_taken_over() {
    let env = Env::start(|_| {}, &[]).await;
    env.namespace("apps").await;
    env.certificate(
        "apps",
        "first",
        json!({"secretName": "shared-tls", "dnsNames": ["first.example.test"]}),
    )
    .await;
    env.certificate_ready("apps", "first", 1).await;
    env.certificate(
        "apps",
        "second",
        json!({"secretName": "shared-tls", "dnsNames": ["second.example.test"]}),
    )
    .await;
    let certs: Api<certwright::api::Certificate> = Api::namespaced(env.client.clone(), "apps");
    let message = env.issuing_failure("apps", "second").await;
    assert!(
        message.contains("belongs to Certificate \"first\""),
        "{message}"
    );
    let secret = Api::<Secret>::namespaced(env.client.clone(), "apps")
        .get("shared-tls")
        .await
        .expect("secret");
    let leaf = parse_chain(&secret_data(&secret, "tls.crt")).expect("leaf");
    assert_eq!(leaf.dns_names, ["first.example.test"], "untouched");
    // Decided before anything was ordered: the refusal cost no certificate.
    let requests = Api::<CertificateRequest>::namespaced(env.client.clone(), "apps")
        .list(&ListParams::default())
        .await
        .expect("requests");
    let names: Vec<String> = requests
        .items
        .iter()
        .filter_map(|r| r.metadata.name.clone())
        .collect();
    assert_eq!(names, ["first-1"], "no request for the second");

    // Once its Certificate is gone (renamed, say), the Secret is free to adopt.
    certs
        .delete("first", &kube::api::DeleteParams::default())
        .await
        .expect("delete first");
    env.certificate_ready("apps", "second", 1).await;
    let secret = Api::<Secret>::namespaced(env.client.clone(), "apps")
        .get("shared-tls")
        .await
        .expect("secret");
    let leaf = parse_chain(&secret_data(&secret, "tls.crt")).expect("leaf");
    assert_eq!(leaf.dns_names, ["second.example.test"], "adopted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_owner_references_the_secret_goes_with_its_certificate() {
    let env = Env::start(|_| {}, &["--enable-certificate-owner-ref"]).await;
    env.namespace("apps").await;
    env.certificate(
        "apps",
        "owned",
        json!({"secretName": "owned-tls", "dnsNames": ["owned.example.test"]}),
    )
    .await;
    let cert = env.certificate_ready("apps", "owned", 1).await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "apps");
    let secret = secrets.get("owned-tls").await.expect("secret");
    let owners = secret.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1);
    assert_eq!(Some(owners[0].uid.clone()), cert.metadata.uid);
    Api::<certwright::api::Certificate>::namespaced(env.client.clone(), "apps")
        .delete("owned", &Default::default())
        .await
        .expect("delete");
    env.wait("the Secret and the request to go", 30, || {
        let secrets = secrets.clone();
        let requests: Api<CertificateRequest> = Api::namespaced(env.client.clone(), "apps");
        async move {
            let secret = secrets.get_opt("owned-tls").await.ok()?;
            let left = requests
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .len();
            (secret.is_none() && left == 0).then_some(())
        }
    })
    .await;
}

/// A Secret of `type_` with `data`, made by someone else.
async fn foreign_secret(env: &Env, ns: &str, name: &str, type_: &str, data: &[(&str, &[u8])]) {
    let data: std::collections::BTreeMap<String, ByteString> = data
        .iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
        .collect();
    let secret = json!({"metadata": {"name": name, "namespace": ns}, "type": type_, "data": data});
    Api::<Secret>::namespaced(env.client.clone(), ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(secret).expect("secret"),
        )
        .await
        .expect("create secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_holding_something_else_are_refused_before_ordering_and_kept() {
    let env = Env::start(|_| {}, &[]).await;
    let ns = "held";
    env.namespace(ns).await;
    // Made as a self-signed pair, so the Secrets look like TLS Secrets.
    let pair = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["old.held.test".to_string()])
        .expect("params")
        .self_signed(&pair)
        .expect("cert");
    let (crt, key) = (leaf.pem(), pair.serialize_pem());
    foreign_secret(&env, ns, "opaque", "Opaque", &[("password", b"hunter2")]).await;
    foreign_secret(
        &env,
        ns,
        "extra",
        "kubernetes.io/tls",
        &[
            ("tls.crt", crt.as_bytes()),
            ("tls.key", key.as_bytes()),
            ("password", b"hunter2"),
        ],
    )
    .await;
    foreign_secret(
        &env,
        ns,
        "account",
        "kubernetes.io/tls",
        &[("tls.crt", crt.as_bytes()), ("tls.key", key.as_bytes())],
    )
    .await;
    let issuer = json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
        "metadata": {"name": "own", "namespace": ns},
        "spec": {"acme": {"server": "https://127.0.0.1:1/dir", "privateKeySecretRef": {"name": "account"},
                          "solvers": [{"http01": {"ingress": {}}}]}}});
    Api::<certwright::api::Issuer>::namespaced(env.client.clone(), ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(issuer).expect("issuer"),
        )
        .await
        .expect("issuer");
    for (cert, secret) in [
        ("c-opaque", "opaque"),
        ("c-extra", "extra"),
        ("c-account", "account"),
    ] {
        env.certificate(
            ns,
            cert,
            json!({"secretName": secret, "dnsNames": [format!("{cert}.held.test")]}),
        )
        .await;
    }
    let opaque = env.issuing_failure(ns, "c-opaque").await;
    assert!(
        opaque.contains("is of type \"Opaque\", not kubernetes.io/tls"),
        "{opaque}"
    );
    let extra = env.issuing_failure(ns, "c-extra").await;
    assert!(
        extra.contains("holds data certwright does not write (password)")
            && extra.contains(
                "kubectl annotate secret -n held extra cert-manager.io/certificate-name=c-extra"
            ),
        "{extra}"
    );
    let account = env.issuing_failure(ns, "c-account").await;
    assert!(
        account.contains("is the ACME account key of Issuer \"own\""),
        "{account}"
    );
    // Nothing was ordered, and nothing was touched.
    let requests = Api::<CertificateRequest>::namespaced(env.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("requests");
    assert!(requests.items.is_empty(), "no request for a refused Secret");
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), ns);
    for name in ["extra", "account"] {
        let s = secrets.get(name).await.expect("secret");
        assert_eq!(
            secret_data(&s, "tls.crt"),
            crt.as_bytes(),
            "{name} untouched"
        );
        assert_eq!(
            secret_data(&s, "tls.key"),
            key.as_bytes(),
            "{name} untouched"
        );
    }

    // Handed over, the Secret is written, and what it held survives.
    secrets
        .patch(
            "extra",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"cert-manager.io/certificate-name": "c-extra"}}})),
        )
        .await
        .expect("hand over");
    // A spec edit ends the backoff at once.
    let certs: Api<Certificate> = Api::namespaced(env.client.clone(), ns);
    for name in ["c-extra", "c-opaque"] {
        certs
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"dnsNames": [format!("{name}.held.test"), format!("www.{name}.held.test")]}})),
            )
            .await
            .expect("edit");
    }
    env.certificate_ready(ns, "c-extra", 1).await;
    let s = secrets.get("extra").await.expect("secret");
    assert_eq!(secret_data(&s, "password"), b"hunter2", "kept");
    let leaf = parse_chain(&secret_data(&s, "tls.crt")).expect("leaf");
    assert!(leaf.dns_names.contains(&"c-extra.held.test".to_string()));
    // Deleted, the Opaque Secret's name is free.
    secrets
        .delete("opaque", &Default::default())
        .await
        .expect("delete");
    env.certificate_ready(ns, "c-opaque", 1).await;
    let account = env.issuing_failure(ns, "c-account").await;
    assert!(account.contains("account key"), "still refused: {account}");
}

/// The public key of a PEM or PKCS#8 DER key.
fn public_key(pem_or_der: &[u8]) -> Vec<u8> {
    let text = if pem_or_der.starts_with(b"-----") {
        pem_or_der.to_vec()
    } else {
        pem::encode(&pem::Pem::new("PRIVATE KEY", pem_or_der.to_vec())).into_bytes()
    };
    certwright::pki::keys::PrivateKey::from_pem(&text)
        .expect("key")
        .public_key_info()
        .expect("spki")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keystores_and_output_formats_follow_the_spec_and_replace_what_cert_manager_left() {
    let env = Env::start(|_| {}, &[]).await;
    let ns = "stores";
    env.namespace(ns).await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), ns);
    // The Secret as cert-manager left it before the migration: its field
    // manager wrote the keystores of an older certificate, and key.der.
    let pair = rcgen::KeyPair::generate().expect("key");
    let old = rcgen::CertificateParams::new(vec!["old.stores.test".to_string()])
        .expect("params")
        .self_signed(&pair)
        .expect("cert");
    let b64 = |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b);
    let left = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "web-tls", "namespace": ns,
                     "annotations": {"cert-manager.io/certificate-name": "web"}},
        "data": {"tls.crt": b64(old.pem().as_bytes()), "tls.key": b64(pair.serialize_pem().as_bytes()),
                 "keystore.p12": b64(b"cert-manager's"), "keystore.jks": b64(b"cert-manager's"),
                 "key.der": b64(b"cert-manager's"), "team.txt": b64(b"kept")}});
    secrets
        .patch(
            "web-tls",
            &PatchParams::apply("cert-manager-certificates-issuing"),
            &Patch::Apply(left),
        )
        .await
        .expect("cert-manager's Secret");
    // Its password Secret is not there yet.
    env.certificate(
        ns,
        "web",
        json!({"secretName": "web-tls", "dnsNames": ["web.stores.test"],
               "additionalOutputFormats": [{"type": "CombinedPEM"}],
               "keystores": {"pkcs12": {"create": true, "profile": "Modern2023",
                   "passwordSecretRef": {"name": "store-password", "key": "password"}}}}),
    )
    .await;
    let reason = env
        .wait(
            "a Warning that the password Secret is missing",
            60,
            || async {
                env.events(
                    ns,
                    "involvedObject.kind=Certificate,involvedObject.name=web",
                )
                .await
                .into_iter()
                .find(|(r, _)| r == "KeystorePasswordSecretNotFound")
            },
        )
        .await;
    assert!(
        reason.1.contains("stores/store-password does not exist"),
        "{}",
        reason.1
    );
    foreign_secret(
        &env,
        ns,
        "store-password",
        "Opaque",
        &[("password", b"p12-Pass")],
    )
    .await;
    env.certificate_ready(ns, "web", 1).await;

    let secret = secrets.get("web-tls").await.expect("secret");
    let (crt, key) = (
        secret_data(&secret, "tls.crt"),
        secret_data(&secret, "tls.key"),
    );
    let leaf =
        certwright::pki::keystore::certificates(&String::from_utf8_lossy(&crt)).expect("pem");
    let (p12_key, p12_chain) =
        read_keystore("p12", &secret_data(&secret, "keystore.p12"), "p12-Pass");
    assert_eq!(
        p12_chain[0], leaf[0],
        "keystore.p12 holds the new certificate"
    );
    assert_eq!(public_key(&p12_key), public_key(&key), "and its key");
    let mut combined = key.clone();
    combined.push(b'\n');
    combined.extend(&crt);
    assert_eq!(secret_data(&secret, "tls-combined.pem"), combined);
    let data = secret.data.clone().unwrap_or_default();
    assert!(
        !data.contains_key("keystore.jks") && !data.contains_key("key.der"),
        "cert-manager's outputs the spec does not ask for are gone: {:?}",
        data.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        secret_data(&secret, "team.txt"),
        b"kept",
        "a key of someone else's stays"
    );

    // The spec changes its outputs: the Secret follows without issuing.
    Api::<Certificate>::namespaced(env.client.clone(), ns)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"additionalOutputFormats": [{"type": "DER"}],
                "keystores": {"jks": {"create": true, "alias": "web", "password": "jks-Pass"}}}}),
            ),
        )
        .await
        .expect("spec change");
    let secret = env
        .wait(
            "keystore.jks and key.der, and no tls-combined.pem",
            30,
            || async {
                let s = secrets.get("web-tls").await.ok()?;
                let d = s.data.clone().unwrap_or_default();
                (d.contains_key("keystore.jks")
                    && d.contains_key("key.der")
                    && !d.contains_key("tls-combined.pem"))
                .then_some(s)
            },
        )
        .await;
    assert_eq!(secret_data(&secret, "tls.crt"), crt, "the same certificate");
    assert_eq!(
        secret_data(&secret, "key.der"),
        pem::parse(&key).expect("pem").contents(),
        "key.der is tls.key's DER"
    );
    let (jks_key, jks_chain) =
        read_keystore("jks", &secret_data(&secret, "keystore.jks"), "jks-Pass");
    assert_eq!(
        (jks_chain, public_key(&jks_key)),
        (leaf.clone(), public_key(&key))
    );
    let cert: Certificate = Api::namespaced(env.client.clone(), ns)
        .get("web")
        .await
        .expect("cert");
    assert_eq!(
        cert.status.and_then(|s| s.revision),
        Some(1),
        "not issued again"
    );
    let requests: Api<CertificateRequest> = Api::namespaced(env.client.clone(), ns);
    assert_eq!(
        requests
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        1
    );
    let events = env
        .events(
            ns,
            "involvedObject.kind=Certificate,involvedObject.name=web",
        )
        .await;
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "SecretUpdated" && m.contains("written again without issuing")),
        "{events:?}"
    );

    // Metadata drift is corrected without issuing too: a secretTemplate
    // label added, then removed; one of our annotations deleted by hand.
    let certs: Api<Certificate> = Api::namespaced(env.client.clone(), ns);
    let template = |labels: serde_json::Value| {
        let certs = certs.clone();
        async move {
            certs
                .patch(
                    "web",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"secretTemplate": labels}})),
                )
                .await
                .expect("template")
        }
    };
    template(json!({"labels": {"tier": "front"}})).await;
    secrets
        .patch(
            "web-tls",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"cert-manager.io/alt-names": null}}}),
            ),
        )
        .await
        .expect("remove an annotation");
    env.wait("the template label and our annotation back", 30, || async {
        let s = secrets.get("web-tls").await.ok()?;
        let label = s.labels().get("tier").cloned();
        let alt = s.annotations().get("cert-manager.io/alt-names").cloned();
        (label.as_deref() == Some("front") && alt.as_deref() == Some("web.stores.test"))
            .then_some(())
    })
    .await;
    template(serde_json::Value::Null).await;
    env.wait(
        "the label the template no longer has removed",
        30,
        || async {
            let s = secrets.get("web-tls").await.ok()?;
            (!s.labels().contains_key("tier")).then_some(())
        },
    )
    .await;
    let cert = certs.get("web").await.expect("cert");
    assert_eq!(
        cert.status.and_then(|s| s.revision),
        Some(1),
        "still not issued again"
    );
    assert_eq!(
        secret_data(&secrets.get("web-tls").await.expect("secret"), "tls.crt"),
        crt
    );
}
