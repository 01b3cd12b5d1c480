//! The ingress-shim's decisions, against cert-manager's behaviour (its
//! `pkg/controller/certificate-shim` translation and sync rules).

use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::annotations::{Decision, decide};
use super::plan::{Step, plan};
use crate::api::Certificate;
use crate::runtime::settings::IngressShim;

fn ingress(annotations: Value, tls: Value) -> Ingress {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "apps", "uid": "ing-uid",
            "labels": {"app": "web", "applyset.kubernetes.io/part-of": "set"},
            "annotations": annotations},
        "spec": {"tls": tls}}))
    .expect("ingress")
}

fn one_host(annotations: Value) -> Ingress {
    ingress(
        annotations,
        json!([{"hosts": ["web.example.com"], "secretName": "web-tls"}]),
    )
}

fn wanted(decision: Decision) -> Vec<Certificate> {
    match decision {
        Decision::Certificates { wanted, .. } => wanted,
        other => panic!("expected Certificates, got {other:?}"),
    }
}

fn bad(decision: Decision) -> String {
    match decision {
        Decision::BadConfig(why) => why,
        other => panic!("expected BadConfig, got {other:?}"),
    }
}

fn only(decision: Decision) -> Value {
    let mut certs = wanted(decision);
    assert_eq!(certs.len(), 1);
    serde_json::to_value(certs.remove(0)).expect("json")
}

#[test]
fn tls_acme_is_the_default_auto_annotation() {
    assert_eq!(
        IngressShim::default().auto_annotations,
        [super::annotations::TLS_ACME]
    );
}

#[test]
fn the_issuer_comes_from_the_annotations_or_the_default_as_cert_managers_does() {
    let settings = IngressShim::default();
    let cases = [
        (
            json!({"cert-manager.io/cluster-issuer": "le"}),
            json!({"name": "le", "kind": "ClusterIssuer", "group": "cert-manager.io"}),
        ),
        (
            json!({"cert-manager.io/issuer": "local"}),
            json!({"name": "local", "kind": "Issuer", "group": "cert-manager.io"}),
        ),
        (
            json!({"cert-manager.io/issuer": "vault", "cert-manager.io/issuer-kind": "VaultIssuer", "cert-manager.io/issuer-group": "example.io"}),
            json!({"name": "vault", "kind": "VaultIssuer", "group": "example.io"}),
        ),
    ];
    for (annotations, issuer) in cases {
        let cert = only(decide(&one_host(annotations.clone()), &settings));
        assert_eq!(cert["spec"]["issuerRef"], issuer, "{annotations}");
    }
    let defaulted = IngressShim {
        default_issuer_name: Some("default".into()),
        default_issuer_kind: "ClusterIssuer".into(),
        ..IngressShim::default()
    };
    let cert = only(decide(
        &one_host(json!({"kubernetes.io/tls-acme": "true"})),
        &defaulted,
    ));
    assert_eq!(
        cert["spec"]["issuerRef"],
        json!({"name": "default", "kind": "ClusterIssuer", "group": "cert-manager.io"})
    );
    // Without a default issuer the Ingress is told how to fix it.
    let why = bad(decide(
        &one_host(json!({"kubernetes.io/tls-acme": "true"})),
        &settings,
    ));
    assert!(why.contains("--default-issuer-name"), "{why}");
    for (annotations, needle) in [
        (
            json!({"cert-manager.io/issuer": "a", "cert-manager.io/cluster-issuer": "b"}),
            "both \"cert-manager.io/issuer\" and \"cert-manager.io/cluster-issuer\"",
        ),
        (
            json!({"cert-manager.io/cluster-issuer": "b", "cert-manager.io/issuer-kind": "X"}),
            "issuer-kind",
        ),
        (
            json!({"cert-manager.io/cluster-issuer": "b", "cert-manager.io/issuer-group": "x.io"}),
            "issuer-group",
        ),
        (json!({"cert-manager.io/issuer": ""}), "empty"),
    ] {
        let why = bad(decide(&one_host(annotations.clone()), &settings));
        assert!(why.contains(needle), "{annotations}: {why}");
    }
    // Not asked for (or asked with a false value): left alone.
    for annotations in [
        json!({}),
        json!({"kubernetes.io/tls-acme": "false"}),
        json!({"other": "x"}),
    ] {
        assert!(matches!(
            decide(&one_host(annotations), &defaulted),
            Decision::Ignore
        ));
    }
    let custom = IngressShim {
        auto_annotations: vec!["example.com/tls".into()],
        ..defaulted.clone()
    };
    assert!(matches!(
        decide(&one_host(json!({"example.com/tls": "True"})), &custom),
        Decision::Certificates { .. }
    ));
}

/// Ingress annotations, a JSON pointer into the Certificate, the value there.
type Case = (Vec<(&'static str, &'static str)>, &'static str, Value);

#[test]
fn each_annotation_changes_the_certificate_as_cert_managers_would() {
    let settings = IngressShim::default();
    let issuer = ("cert-manager.io/cluster-issuer", "le");
    // (annotations, JSON pointer into the Certificate, expected value)
    let cases: Vec<Case> = vec![
        (
            vec![],
            "/spec/usages",
            json!(["digital signature", "key encipherment"]),
        ),
        (vec![], "/spec/dnsNames", json!(["web.example.com"])),
        (vec![], "/spec/secretName", json!("web-tls")),
        (
            vec![("cert-manager.io/common-name", "web.example.com")],
            "/spec/commonName",
            json!("web.example.com"),
        ),
        (
            vec![("cert-manager.io/duration", "2160h")],
            "/spec/duration",
            json!("2160h0m0s"),
        ),
        (
            vec![("cert-manager.io/duration", "90m")],
            "/spec/duration",
            json!("1h30m0s"),
        ),
        (
            vec![("cert-manager.io/renew-before", "360h")],
            "/spec/renewBefore",
            json!("360h0m0s"),
        ),
        (
            vec![("cert-manager.io/renew-before", "5m")],
            "/spec/renewBefore",
            json!("5m0s"),
        ),
        (
            vec![("cert-manager.io/renew-before-percentage", "25")],
            "/spec/renewBeforePercentage",
            json!(25),
        ),
        (
            vec![(
                "cert-manager.io/usages",
                "digital signature, key encipherment,server auth",
            )],
            "/spec/usages",
            json!(["digital signature", "key encipherment", "server auth"]),
        ),
        (
            vec![("cert-manager.io/private-key-algorithm", "ECDSA")],
            "/spec/privateKey",
            json!({"algorithm": "ECDSA"}),
        ),
        (
            vec![
                ("cert-manager.io/private-key-algorithm", "ECDSA"),
                ("cert-manager.io/private-key-size", "384"),
            ],
            "/spec/privateKey",
            json!({"algorithm": "ECDSA", "size": 384}),
        ),
        (
            vec![("cert-manager.io/private-key-size", "4096")],
            "/spec/privateKey",
            json!({"size": 4096}),
        ),
        (
            vec![
                ("cert-manager.io/private-key-algorithm", "Ed25519"),
                ("cert-manager.io/private-key-size", "1"),
            ],
            "/spec/privateKey",
            json!({"algorithm": "Ed25519", "size": 1}),
        ),
        (
            vec![("cert-manager.io/private-key-encoding", "PKCS8")],
            "/spec/privateKey",
            json!({"encoding": "PKCS8"}),
        ),
        (
            vec![("cert-manager.io/private-key-rotation-policy", "Always")],
            "/spec/privateKey",
            json!({"rotationPolicy": "Always"}),
        ),
        (
            vec![("cert-manager.io/revision-history-limit", "7")],
            "/spec/revisionHistoryLimit",
            json!(7),
        ),
        (
            vec![("acme.cert-manager.io/http01-edit-in-place", "true")],
            "/metadata/annotations",
            json!({"acme.cert-manager.io/http01-override-ingress-name": "web"}),
        ),
        (
            vec![("acme.cert-manager.io/http01-ingress-class", "nginx")],
            "/metadata/annotations",
            json!({"acme.cert-manager.io/http01-override-ingress-class": "nginx"}),
        ),
        (
            vec![(
                "acme.cert-manager.io/http01-ingress-ingressclassname",
                "traefik",
            )],
            "/metadata/annotations",
            json!({"acme.cert-manager.io/http01-override-ingress-ingressclassname": "traefik"}),
        ),
        // Only "true" edits in place; an empty class is no override.
        (
            vec![("acme.cert-manager.io/http01-edit-in-place", "yes")],
            "/metadata/annotations",
            Value::Null,
        ),
        (
            vec![("acme.cert-manager.io/http01-ingress-class", "")],
            "/metadata/annotations",
            Value::Null,
        ),
        // Labels are copied, less kubectl's applyset label.
        (vec![], "/metadata/labels", json!({"app": "web"})),
        (
            vec![],
            "/metadata/ownerReferences",
            json!([{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "web", "uid": "ing-uid", "controller": true, "blockOwnerDeletion": true}]),
        ),
    ];
    for (pairs, pointer, expected) in cases {
        let mut annotations = json!({issuer.0: issuer.1});
        for (k, v) in &pairs {
            annotations[*k] = json!(v);
        }
        let cert = only(decide(&one_host(annotations), &settings));
        let got = cert.pointer(pointer).cloned().unwrap_or(Value::Null);
        assert_eq!(got, expected, "{pairs:?} at {pointer}");
    }
}

#[test]
fn a_bad_annotation_value_names_the_annotation_and_makes_no_certificate() {
    let settings = IngressShim::default();
    let cases = [
        ("cert-manager.io/duration", "30m"),
        ("cert-manager.io/duration", "a while"),
        ("cert-manager.io/renew-before", "1m"),
        ("cert-manager.io/renew-before-percentage", "a quarter"),
        ("cert-manager.io/usages", "digital signature,bogus"),
        ("cert-manager.io/private-key-algorithm", "DSA"),
        ("cert-manager.io/private-key-size", "1024"),
        ("cert-manager.io/private-key-size", "big"),
        ("cert-manager.io/private-key-encoding", "PKCS7"),
        ("cert-manager.io/private-key-rotation-policy", "Sometimes"),
        ("cert-manager.io/revision-history-limit", "0"),
        (
            "cert-manager.io/common-name",
            "a-name-that-is-far-too-long-for-a-common-name-of-sixty-four-bytes.example.com",
        ),
    ];
    for (key, value) in cases {
        let why = bad(decide(
            &one_host(json!({"cert-manager.io/cluster-issuer": "le", key: value})),
            &settings,
        ));
        assert!(why.contains(key), "{key}={value}: {why}");
    }
    let ecdsa = json!({"cert-manager.io/cluster-issuer": "le",
        "cert-manager.io/private-key-algorithm": "ECDSA", "cert-manager.io/private-key-size": "2048"});
    assert!(bad(decide(&one_host(ecdsa), &settings)).contains("ECDSA"));
}

#[test]
fn each_tls_entry_is_one_certificate_named_after_its_secret() {
    let settings = IngressShim::default();
    let annotations = json!({"cert-manager.io/cluster-issuer": "le"});
    let two = ingress(
        annotations.clone(),
        json!([{"hosts": ["a.example.com", "a.example.com", "10.0.0.7"], "secretName": "a-tls"},
               {"hosts": ["b.example.com"], "secretName": "b-tls"},
               {"secretName": "empty-tls"}]),
    );
    let Decision::Certificates { wanted, skipped } = decide(&two, &settings) else {
        panic!("certificates")
    };
    let names: Vec<String> = wanted.iter().map(|c| c.name_any()).collect();
    assert_eq!(names, ["a-tls", "b-tls"]);
    assert_eq!(
        wanted[0].spec.dns_names.as_deref(),
        Some(&["a.example.com".to_string()][..])
    );
    assert_eq!(
        wanted[0].spec.ip_addresses.as_deref(),
        Some(&["10.0.0.7".to_string()][..])
    );
    assert_eq!(wanted[0].namespace().as_deref(), Some("apps"));
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].contains("spec.tls[2].hosts"), "{skipped:?}");
    let duplicate = ingress(
        annotations,
        json!([{"hosts": ["a.example.com"], "secretName": "same"}, {"hosts": ["b.example.com"], "secretName": "same"}]),
    );
    let why = bad(decide(&duplicate, &settings));
    assert!(
        why.contains("spec.tls[0].secretName") && why.contains("spec.tls[1].secretName"),
        "{why}"
    );
    let deleting: Ingress = {
        let mut i = one_host(json!({"cert-manager.io/cluster-issuer": "le"}));
        i.metadata.finalizers = Some(vec!["foregroundDeletion".into()]);
        i
    };
    assert!(matches!(decide(&deleting, &settings), Decision::Ignore));
}

fn existing(cert: &Certificate, rv: &str, extra_annotations: Value) -> Certificate {
    let mut e = cert.clone();
    e.metadata.resource_version = Some(rv.into());
    e.metadata.uid = Some(format!("{}-uid", cert.name_any()));
    let mut annotations = serde_json::to_value(e.annotations()).expect("json");
    for (k, v) in extra_annotations.as_object().into_iter().flatten() {
        annotations[k] = v.clone();
    }
    e.metadata.annotations = serde_json::from_value(annotations).ok();
    e
}

#[test]
fn the_plan_creates_updates_and_deletes_only_what_the_ingress_controls() {
    let settings = IngressShim::default();
    let annotated = json!({"cert-manager.io/cluster-issuer": "le", "acme.cert-manager.io/http01-ingress-class": "nginx"});
    let first = wanted(decide(&one_host(annotated.clone()), &settings));
    let names = vec!["web-tls".to_string()];
    // Nothing there yet: created.
    let steps = plan("ing-uid", first.clone(), &names, &[]);
    assert!(matches!(&steps[..], [Step::Create(c)] if c.name_any() == "web-tls"));
    // There and the same: nothing to do.
    let current = existing(&first[0], "7", json!({"team": "a"}));
    assert!(
        plan(
            "ing-uid",
            first.clone(),
            &names,
            std::slice::from_ref(&current)
        )
        .is_empty()
    );
    // A host changed and the class override dropped: updated in place,
    // resourceVersion and foreign annotations kept, the override removed.
    let changed = ingress(
        json!({"cert-manager.io/cluster-issuer": "le"}),
        json!([{"hosts": ["www.example.com"], "secretName": "web-tls"}]),
    );
    let steps = plan(
        "ing-uid",
        wanted(decide(&changed, &settings)),
        &names,
        std::slice::from_ref(&current),
    );
    let [Step::Update(updated)] = &steps[..] else {
        panic!("{steps:?}")
    };
    assert_eq!(
        updated.spec.dns_names.as_deref(),
        Some(&["www.example.com".to_string()][..])
    );
    assert_eq!(updated.metadata.resource_version.as_deref(), Some("7"));
    assert_eq!(
        serde_json::to_value(updated.annotations()).unwrap(),
        json!({"team": "a"})
    );
    // The TLS entry gone: its Certificate is deleted.
    let steps = plan("ing-uid", vec![], &[], std::slice::from_ref(&current));
    assert!(matches!(&steps[..], [Step::Delete(n)] if n == "web-tls"));
    // A Certificate of that name another owner controls: left alone, and
    // never deleted.
    let mut foreign = current.clone();
    foreign.metadata.owner_references = None;
    let steps = plan("ing-uid", first, &names, std::slice::from_ref(&foreign));
    assert!(matches!(&steps[..], [Step::NotOwned(n)] if n == "web-tls"));
    assert!(plan("ing-uid", vec![], &[], &[foreign]).is_empty());
}
