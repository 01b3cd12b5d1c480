//! Issuance end to end: certwright runs as a Pod of the local cluster,
//! pebble validates every token through the ingress router, and the
//! resulting Secret is checked like a user would check it.

use certwright::api::{CertificateRequest, Challenge, Order};
use certwright::pki::cert::parse_chain;
use certwright::pki::keys::PrivateKey;
use k8s_openapi::api::core::v1::{Event, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams};
use serde_json::json;

use crate::common;

use common::env::Env;
use common::secret_data;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_name_certificate_is_issued_and_everything_temporary_is_cleaned_up() {
    let env = Env::start(|_| {}, &[]).await;
    env.namespace("apps").await;
    env.certificate(
        "apps",
        "web",
        json!({"secretName": "web-tls", "dnsNames": ["web.example.test", "www.example.test"]}),
    )
    .await;
    let cert = env.certificate_ready("apps", "web", 1).await;
    let status = cert.status.clone().expect("status");
    assert_eq!(status.revision, Some(1));
    assert!(status.not_after.is_some() && status.renewal_time.is_some());

    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "apps");
    let secret = secrets.get("web-tls").await.expect("secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let chain = String::from_utf8(secret_data(&secret, "tls.crt")).expect("utf8");
    let root = env.pebble.issuing_root_pem().to_string();
    common::verify_chain(&chain, &root, &["web.example.test", "www.example.test"]);
    let leaf = parse_chain(chain.as_bytes()).expect("leaf");
    let mut names = leaf.dns_names.clone();
    names.sort();
    assert_eq!(names, ["web.example.test", "www.example.test"]);
    let key = PrivateKey::from_pem(&secret_data(&secret, "tls.key")).expect("key");
    assert_eq!(key.public_key_info().expect("spki"), leaf.public_key_info);
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations["cert-manager.io/certificate-name"], "web");
    assert_eq!(annotations["cert-manager.io/issuer-kind"], "ClusterIssuer");
    assert_eq!(
        annotations["cert-manager.io/alt-names"],
        "web.example.test,www.example.test"
    );

    let requests: Api<CertificateRequest> = Api::namespaced(env.client.clone(), "apps");
    let cr = requests.get("web-1").await.expect("request web-1");
    let cr_conditions = cr.status.and_then(|s| s.conditions).unwrap_or_default();
    for (type_, reason) in [("Approved", "cert-manager.io"), ("Ready", "Issued")] {
        assert!(
            cr_conditions
                .iter()
                .any(|c| c.type_ == type_ && c.reason.as_deref() == Some(reason)),
            "{type_}/{reason} in {cr_conditions:?}"
        );
    }
    let orders: Api<Order> = Api::namespaced(env.client.clone(), "apps");
    let listed = orders.list(&ListParams::default()).await.expect("orders");
    let evs = Api::<Event>::namespaced(env.client.clone(), "apps")
        .list(&ListParams::default())
        .await
        .expect("events");
    let evs: Vec<_> = evs
        .items
        .iter()
        .map(|e| {
            (
                e.involved_object.name.clone(),
                e.reason.clone(),
                e.message.clone(),
            )
        })
        .collect();
    let names: Vec<_> = listed
        .items
        .iter()
        .map(|o| {
            (
                o.metadata.name.clone(),
                o.metadata.owner_references.clone(),
                o.status.clone().and_then(|s| s.state),
            )
        })
        .collect();
    assert_eq!(
        listed.items.len(),
        1,
        "one Order for one request: {names:?} {evs:#?}"
    );
    let order_status = listed.items[0].status.clone().expect("order status");
    assert_eq!(
        order_status.state,
        Some(certwright::api::order::AcmeState::Valid)
    );
    assert_eq!(order_status.authorizations.map(|a| a.len()), Some(2));

    // Everything temporary goes away.
    env.wait("temporary resources removed", 30, || {
        let client = env.client.clone();
        async move {
            let temp = Api::<Secret>::namespaced(client.clone(), "apps")
                .list(&ListParams::default().labels("cert-manager.io/next-private-key=true"))
                .await
                .ok()?;
            let challenges = Api::<Challenge>::namespaced(client.clone(), "apps")
                .list(&ListParams::default())
                .await
                .ok()?;
            let ingresses = Api::<Ingress>::namespaced(client.clone(), "apps")
                .list(&ListParams::default())
                .await
                .ok()?;
            let solver = Api::<Service>::namespaced(client.clone(), "apps")
                .get_opt("certwright-solver")
                .await
                .ok()?;
            let left = [
                ("temporary Secrets", temp.items.len()),
                ("Challenges", challenges.items.len()),
                ("Ingresses", ingresses.items.len()),
                ("solver Services", usize::from(solver.is_some())),
            ];
            if left.iter().any(|(_, n)| *n > 0) {
                eprintln!("still there: {left:?}");
                return None;
            }
            Some(())
        }
    })
    .await;

    // The events users look for, in order.
    let events: Api<Event> = Api::namespaced(env.client.clone(), "apps");
    let listed = events
        .list(
            &ListParams::default()
                .fields("involvedObject.name=web,involvedObject.kind=Certificate"),
        )
        .await
        .expect("events");
    let seen: Vec<(String, String)> = listed
        .items
        .iter()
        .map(|e| {
            (
                e.reason.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default(),
            )
        })
        .collect();
    let expected = [
        ("Issuing", "Issuing certificate as Secret does not exist"),
        (
            "Generated",
            "Stored new private key in temporary Secret resource",
        ),
        (
            "Requested",
            "Created new CertificateRequest resource \"web-1\"",
        ),
        ("Issuing", "The certificate has been successfully issued"),
    ];
    for (reason, message) in expected {
        assert!(
            seen.iter()
                .any(|(r, m)| r == reason && m.starts_with(message)),
            "event {reason}: {message} in {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_algorithm_and_encoding_the_ca_takes_issues_and_parses() {
    // JSON logs, scanned at the end for key material.
    let env = Env::start(|_| {}, &["--log-format", "json"]).await;
    let mut secrets_pem: Vec<String> = Vec::new();
    env.namespace("keys").await;
    let combos: [(&str, &str, Option<i64>, &str, &str); 11] = [
        (
            "rsa-2048-pkcs1",
            "RSA",
            Some(2048),
            "PKCS1",
            "RSA PRIVATE KEY",
        ),
        ("rsa-2048-pkcs8", "RSA", Some(2048), "PKCS8", "PRIVATE KEY"),
        (
            "rsa-3072-pkcs1",
            "RSA",
            Some(3072),
            "PKCS1",
            "RSA PRIVATE KEY",
        ),
        ("rsa-3072-pkcs8", "RSA", Some(3072), "PKCS8", "PRIVATE KEY"),
        (
            "rsa-4096-pkcs1",
            "RSA",
            Some(4096),
            "PKCS1",
            "RSA PRIVATE KEY",
        ),
        ("rsa-4096-pkcs8", "RSA", Some(4096), "PKCS8", "PRIVATE KEY"),
        ("rsa-8192-pkcs8", "RSA", Some(8192), "PKCS8", "PRIVATE KEY"),
        ("ec-256-sec1", "ECDSA", Some(256), "PKCS1", "EC PRIVATE KEY"),
        ("ec-256-pkcs8", "ECDSA", Some(256), "PKCS8", "PRIVATE KEY"),
        ("ec-384-sec1", "ECDSA", Some(384), "PKCS1", "EC PRIVATE KEY"),
        ("ec-384-pkcs8", "ECDSA", Some(384), "PKCS8", "PRIVATE KEY"),
    ];
    for (name, algorithm, size, encoding, _) in &combos {
        let mut key = json!({"algorithm": algorithm, "encoding": encoding});
        if let Some(size) = size {
            key["size"] = json!(size);
        }
        env.certificate(
            "keys",
            name,
            json!({"secretName": format!("{name}-tls"), "dnsNames": [format!("{name}.example.test")], "privateKey": key}),
        )
        .await;
    }
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "keys");
    let root = env.pebble.issuing_root_pem().to_string();
    for (name, algorithm, size, _, pem_label) in &combos {
        env.certificate_ready("keys", name, 1).await;
        let secret = secrets.get(&format!("{name}-tls")).await.expect("secret");
        let key_pem = String::from_utf8(secret_data(&secret, "tls.key")).expect("utf8");
        assert!(
            key_pem.starts_with(&format!("-----BEGIN {pem_label}-----")),
            "{name}: {}",
            key_pem.lines().next().unwrap_or("")
        );
        secrets_pem.push(key_pem.clone());
        let key = PrivateKey::from_pem(key_pem.as_bytes()).expect("key parses");
        let expected = match (*algorithm, size) {
            ("RSA", Some(bits)) => format!("Rsa({bits})"),
            _ => format!("Ecdsa({})", size.unwrap_or_default()),
        };
        assert_eq!(format!("{:?}", key.kind), expected, "{name}");
        let chain = String::from_utf8(secret_data(&secret, "tls.crt")).expect("utf8");
        let leaf = parse_chain(chain.as_bytes()).expect("leaf");
        assert_eq!(
            key.public_key_info().expect("spki"),
            leaf.public_key_info,
            "{name}: the certificate is for the key"
        );
        common::verify_chain(&chain, &root, &[&format!("{name}.example.test")]);
    }
    // A literal subject reaches the CSR as written: order, multi-valued
    // RDNs and escapes kept (OpenSSL verifies the signature over it), and
    // its CN is the name ordered.
    env.certificate(
        "keys",
        "literal",
        json!({"secretName": "literal-tls",
               "literalSubject": "CN=literal.example.test,OU=Edge+OU=Web,O=Example\\, Inc.,C=GB",
               "privateKey": {"algorithm": "ECDSA"}}),
    )
    .await;
    env.certificate_ready("keys", "literal", 1).await;
    let requests: Api<CertificateRequest> = Api::namespaced(env.client.clone(), "keys");
    let request = requests.get("literal-1").await.expect("the request");
    let csr_file =
        std::env::temp_dir().join(format!("certwright-literal-{}.csr", std::process::id()));
    std::fs::write(&csr_file, &request.spec.request.0).expect("write the CSR");
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-noout", "-verify", "-subject", "-nameopt", "RFC2253", "-in",
        ])
        .arg(&csr_file)
        .output()
        .expect("openssl runs");
    let _ = std::fs::remove_file(&csr_file);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("verify OK"), "{text}");
    assert!(
        text.contains("subject=CN=literal.example.test,OU=Edge+OU=Web,O=Example\\, Inc.,C=GB"),
        "{text}"
    );
    let secret = secrets.get("literal-tls").await.expect("secret");
    let chain = String::from_utf8(secret_data(&secret, "tls.crt")).expect("utf8");
    common::verify_chain(&chain, &root, &["literal.example.test"]);

    // Ed25519 keys and CSRs are made (OpenSSL reads them in pki_openssl),
    // but pebble 2.10 refuses them as Let's Encrypt does: the CA's reason
    // is on the Certificate, and the attempts back off.
    env.certificate(
        "keys",
        "ed25519",
        json!({"secretName": "ed25519-tls", "dnsNames": ["ed25519.example.test"],
               "privateKey": {"algorithm": "Ed25519", "encoding": "PKCS8"}}),
    )
    .await;
    let message = env.issuing_failure("keys", "ed25519").await;
    assert!(
        message.contains("badCSR") && message.contains("Ed25519 is not supported"),
        "{message}"
    );

    // Never a secret in a log line: no private key (of a certificate or
    // the ACME account), PEM armour or bearer token, in any line of the
    // whole run; and every line is one JSON object.
    let account = Api::<Secret>::namespaced(env.client.clone(), "certwright")
        .get("pebble-account")
        .await
        .expect("the account key Secret");
    secrets_pem.push(String::from_utf8(secret_data(&account, "tls.key")).expect("utf8"));
    let logs = env.logs().await;
    let lines: Vec<&str> = logs.lines().filter(|l| !l.starts_with("--- ")).collect();
    assert!(
        lines.len() > 50,
        "a whole run's logs: {} lines",
        lines.len()
    );
    for line in &lines {
        let parsed: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            parsed["timestamp"].is_string() && parsed["level"].is_string(),
            "{line}"
        );
    }
    for marker in ["PRIVATE KEY", "-----BEGIN", "Bearer ", "eyJhbGci"] {
        assert!(!logs.contains(marker), "{marker:?} in the logs");
    }
    for pem in &secrets_pem {
        for chunk in pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 32)
        {
            assert!(!logs.contains(&chunk[..32]), "key material in the logs");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_certificates_for_one_name_take_turns() {
    let env = Env::start(|_| {}, &[]).await;
    // Keep the first Challenge busy: the CA is unwell until the second
    // Challenge for the name has been seen waiting for it.
    env.proxy.fail_next(
        "POST",
        "/chalZ/",
        1000,
        503,
        "urn:ietf:params:acme:error:serverInternal",
        "try again",
    );
    let reasons = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = reasons.clone();
    let other_account = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let other_seen = other_account.clone();
    let api: Api<Challenge> = Api::all(env.client.clone());
    let watch = tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut events =
            kube::runtime::watcher(api, kube::runtime::watcher::Config::default()).boxed();
        while let Some(Ok(event)) = events.next().await {
            if let kube::runtime::watcher::Event::Apply(ch) = event
                && let Some(reason) = ch.status.clone().and_then(|s| s.reason)
            {
                if ch.metadata.namespace.as_deref() == Some("team-c") {
                    other_seen.lock().expect("lock").push(reason);
                } else {
                    seen.lock().expect("lock").push(reason);
                }
            }
        }
    });
    for ns in ["team-a", "team-b"] {
        env.namespace(ns).await;
        env.certificate(
            ns,
            "shared-name",
            json!({"secretName": "tls", "dnsNames": ["same.example.test"]}),
        )
        .await;
    }
    // Another account (an Issuer of its own) for the same name does not wait.
    env.namespace("team-c").await;
    env.issuer_with("team-c", "own", json!({})).await;
    env.certificate(
        "team-c",
        "shared-name",
        json!({"secretName": "tls", "dnsNames": ["same.example.test"],
               "issuerRef": {"name": "own", "kind": "Issuer"}}),
    )
    .await;
    // The waiting one is told where the blocker is.
    let waited = |r: &String| {
        r.starts_with("Waiting: Challenge team-")
            && r.contains("/shared-name-")
            && r.contains("same name and ACME account")
    };
    let check = reasons.clone();
    // Both at once: one Challenge retrying the CA's 503 while the other waits for it.
    env.wait(
        "one Challenge to retry the CA while the other waits",
        60,
        || {
            let seen = check.lock().expect("lock");
            let found =
                seen.iter().any(waited) && seen.iter().any(|r| r.contains("ServerInternal"));
            async move { found.then_some(()) }
        },
    )
    .await;
    env.proxy.clear_faults();
    env.certificate_ready("team-a", "shared-name", 1).await;
    env.certificate_ready("team-b", "shared-name", 1).await;
    env.certificate_ready("team-c", "shared-name", 1).await;
    watch.abort();
    let other = other_account.lock().expect("lock").clone();
    assert!(
        !other.is_empty() && !other.iter().any(|r| r.starts_with("Waiting: Challenge")),
        "another account's Challenge for the name went at once: {other:?}"
    );
    let reasons = reasons.lock().expect("lock").clone();
    assert!(
        reasons.iter().any(|r| r.contains("ServerInternal")),
        "the first was busy retrying while the other waited: {reasons:?}"
    );
}

/// pebble rewrites what it issues as real CAs do: the CN becomes the first
/// SAN, email and URI SANs are dropped. A Certificate whose spec says
/// otherwise is issued once, not again and again; a common name outside
/// dnsNames is issued too (it goes into the CSR's SANs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_the_ca_rewrote_is_issued_once() {
    let env = Env::start(|_| {}, &[]).await;
    // The profile that promotes the first name to the common name.
    env.cluster_issuer_with("classic", json!({"profile": "classic"}))
        .await;
    env.namespace("rewritten").await;
    env.certificate(
        "rewritten",
        "second-cn",
        json!({"secretName": "second-cn-tls", "commonName": "b.rewritten.test",
               "dnsNames": ["a.rewritten.test", "b.rewritten.test"],
               "issuerRef": {"name": "classic", "kind": "ClusterIssuer"}}),
    )
    .await;
    env.certificate(
        "rewritten",
        "extra-sans",
        json!({"secretName": "extra-sans-tls", "dnsNames": ["c.rewritten.test"],
               "emailAddresses": ["ops@rewritten.test"], "uris": ["spiffe://rewritten.test/c"]}),
    )
    .await;
    // A common name outside dnsNames is ordered, so it must be a SAN of the CSR too.
    env.certificate(
        "rewritten",
        "cn-apart",
        json!({"secretName": "cn-apart-tls", "commonName": "e.rewritten.test",
               "dnsNames": ["d.rewritten.test"]}),
    )
    .await;
    for name in ["second-cn", "extra-sans", "cn-apart"] {
        env.certificate_ready("rewritten", name, 1).await;
    }
    let secret = Api::<Secret>::namespaced(env.client.clone(), "rewritten")
        .get("second-cn-tls")
        .await
        .expect("secret");
    let leaf = parse_chain(&secret_data(&secret, "tls.crt")).expect("leaf");
    assert_eq!(
        leaf.common_name.as_deref(),
        Some("a.rewritten.test"),
        "pebble moved the CN (else this test proves nothing)"
    );
    // Re-issuing loops took well under a second a round before.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let requests = Api::<CertificateRequest>::namespaced(env.client.clone(), "rewritten")
        .list(&ListParams::default())
        .await
        .expect("requests");
    let mut names: Vec<String> = requests
        .items
        .iter()
        .filter_map(|r| r.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["cn-apart-1", "extra-sans-1", "second-cn-1"],
        "one issuance each, and its request kept"
    );
    let certs: Api<certwright::api::Certificate> = Api::namespaced(env.client.clone(), "rewritten");
    for name in ["second-cn", "extra-sans", "cn-apart"] {
        let status = certs.get(name).await.expect("cert").status.expect("status");
        assert_eq!(status.revision, Some(1), "{name}");
    }

    // A field the CA drops is compared with the request, not the leaf: an
    // edit re-issues once, and the new leaf (again without it) is final.
    certs
        .patch(
            "extra-sans",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"spec": {"emailAddresses": ["security@rewritten.test"]}}),
            ),
        )
        .await
        .expect("patch");
    env.certificate_ready("rewritten", "extra-sans", 2).await;
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let status = certs
        .get("extra-sans")
        .await
        .expect("cert")
        .status
        .expect("status");
    assert_eq!(status.revision, Some(2), "re-issued once for the edit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_and_certificate_options_reach_the_ca_and_the_schedule() {
    let env = Env::start(|o| o.alternate_roots = 1, &[]).await;
    env.namespace("chains").await;
    let alternate = env.pebble.alternate_root_pems()[0].clone();
    let alternate_cn = parse_chain(alternate.as_bytes())
        .expect("the alternate root parses")
        .common_name
        .expect("it has a common name");
    // preferredChain names the alternate root; enableDurationFeature sends
    // the Certificate's duration as the order's notAfter.
    // waitInsteadOfSelfCheck on its solver: a wait instead of the checks.
    env.cluster_issuer_with(
        "alternate",
        json!({"preferredChain": alternate_cn, "enableDurationFeature": true,
               "solvers": [{"http01": {"ingress": {"ingressClassName": env.cluster.ingress_class()}},
                            "waitInsteadOfSelfCheck": "3s"}]}),
    )
    .await;
    // A preferred chain the CA does not offer keeps the default one.
    env.cluster_issuer_with("unknown-chain", json!({"preferredChain": "No Such Root"}))
        .await;
    env.certificate(
        "chains",
        "alternate",
        json!({"secretName": "alternate-tls", "dnsNames": ["alternate.example.test"],
               "duration": "2h", "issuerRef": {"name": "alternate", "kind": "ClusterIssuer"}}),
    )
    .await;
    env.certificate(
        "chains",
        "default",
        json!({"secretName": "default-tls", "dnsNames": ["default.example.test"],
               "duration": "2h", "issuerRef": {"name": "unknown-chain", "kind": "ClusterIssuer"}}),
    )
    .await;
    // spec.renewal: Disabled has no renewal time; windows move it into a
    // window (09:17 in Tokyo is 00:17 UTC, open one minute); an unknown
    // time zone is said in the Ready condition.
    for (name, renewal) in [
        ("disabled", json!({"policy": "Disabled"})),
        (
            "windowed",
            json!({"windows": [{"cron": "17 9 * * *", "timezone": "Asia/Tokyo", "windowDuration": "1m"}]}),
        ),
        (
            "bad-zone",
            json!({"windows": [{"cron": "17 9 * * *", "timezone": "Mars/Olympus", "windowDuration": "1m"}]}),
        ),
    ] {
        env.certificate(
            "chains",
            name,
            json!({"secretName": format!("{name}-tls"), "dnsNames": [format!("{name}.example.test")],
                   "renewal": renewal}),
        )
        .await;
    }
    // An IP identifier (RFC 8738): pebble fetches the token at the address
    // (the ingress router's), through a solver Ingress rule without a host.
    let ip = env.cluster.ingress_node_addr().ip().to_string();
    env.certificate(
        "chains",
        "ip",
        json!({"secretName": "ip-tls", "ipAddresses": [ip]}),
    )
    .await;
    let reason = common::dns::challenge_reason(&env, "chains", "waitInsteadOfSelfCheck").await;
    assert!(
        reason.starts_with("Waiting 3s after presenting"),
        "{reason}"
    );
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "chains");
    env.certificate_ready("chains", "alternate", 1).await;
    let chain = String::from_utf8(secret_data(
        &secrets.get("alternate-tls").await.expect("secret"),
        "tls.crt",
    ))
    .expect("utf8");
    common::verify_chain(&chain, &alternate, &["alternate.example.test"]);
    let leaf = parse_chain(chain.as_bytes()).expect("leaf");
    let lifetime = leaf.not_after - leaf.not_before;
    assert!(
        (2 * 3600 - 300..=2 * 3600 + 300).contains(&lifetime),
        "notAfter asked for 2h from now: the leaf lives {lifetime} s"
    );

    env.certificate_ready("chains", "default", 1).await;
    let chain = String::from_utf8(secret_data(
        &secrets.get("default-tls").await.expect("secret"),
        "tls.crt",
    ))
    .expect("utf8");
    common::verify_chain(
        &chain,
        env.pebble.issuing_root_pem(),
        &["default.example.test"],
    );
    let leaf = parse_chain(chain.as_bytes()).expect("leaf");
    assert!(
        leaf.not_after - leaf.not_before > 86_400,
        "without enableDurationFeature the CA's own lifetime stands"
    );

    env.certificate_ready("chains", "ip", 1).await;
    let chain = String::from_utf8(secret_data(
        &secrets.get("ip-tls").await.expect("secret"),
        "tls.crt",
    ))
    .expect("utf8");
    let leaf = parse_chain(chain.as_bytes()).expect("leaf");
    assert_eq!(
        leaf.ip_addresses,
        [ip],
        "the address is the certificate's name"
    );
    let certificates: Api<certwright::api::Certificate> =
        Api::namespaced(env.client.clone(), "chains");
    for name in ["disabled", "windowed", "bad-zone"] {
        env.certificate_ready("chains", name, 1).await;
    }
    let status = |c: &certwright::api::Certificate| c.status.clone().unwrap_or_default();
    let disabled = status(&certificates.get("disabled").await.expect("get"));
    assert!(
        disabled.renewal_time.is_none() && disabled.not_after.is_some(),
        "{disabled:?}"
    );
    let windowed = status(&certificates.get("windowed").await.expect("get"));
    let at = windowed.renewal_time.expect("a renewal time").0.to_string();
    assert!(
        at.contains("T00:17:") || at.ends_with("T00:18:00Z"),
        "inside the Tokyo window: {at}"
    );
    let bad = status(&certificates.get("bad-zone").await.expect("get"));
    let ready = bad
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert!(
        ready.message.as_deref().is_some_and(
            |m| m.contains("spec.renewal.windows[0]: timezone \"Mars/Olympus\" is not known")
        ),
        "{ready:?}"
    );
    assert!(
        bad.renewal_time.is_some(),
        "the time without windows stands"
    );
}
