//! What the same spec cannot change: a request the CA refuses for its key
//! is tried once until the spec changes, and a request made for an older
//! spec is never written to the Secret, even once the CA has issued it.

use certwright::api::{Certificate, CertificateRequest};
use certwright_testcluster::cluster::api_proxy::ApiFault;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::common::env::Env;
use crate::common::secret_data;

async fn failed_attempts(api: &Api<Certificate>, name: &str) -> Option<i64> {
    api.get(name).await.ok()?.status?.failed_issuance_attempts
}

/// pebble, as Let's Encrypt, signs no Ed25519 key: the CA's words are said
/// once, the Certificate waits for a new spec instead of backing off and
/// asking again, and a new key algorithm is issued at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_ca_refuses_is_tried_once_until_the_spec_changes() {
    let env = Env::start(|_| {}, &[]).await;
    env.namespace("keys").await;
    env.certificate(
        "keys",
        "edwards",
        json!({"secretName": "edwards-tls", "dnsNames": ["edwards.example.test"],
               "privateKey": {"algorithm": "Ed25519"}}),
    )
    .await;
    let message = env.issuing_failure("keys", "edwards").await;
    assert!(
        message.contains("badCSR")
            && message.contains("Ed25519")
            && message.contains("not retried until the Certificate's spec changes")
            && !message.contains("will be retried"),
        "{message}"
    );
    let api: Api<Certificate> = Api::namespaced(env.client.clone(), "keys");
    let ready = env
        .wait("Ready to say why", 30, || {
            let api = api.clone();
            async move {
                let cert = api.get("edwards").await.ok()?;
                let ready = cert
                    .status?
                    .conditions?
                    .into_iter()
                    .find(|c| c.type_ == "Ready")?;
                ready.message.filter(|m| m.contains("Ed25519"))
            }
        })
        .await;
    assert!(ready.contains("spec changes"), "{ready}");
    // The backoff here starts at 2 s: within 10 s a retried request would
    // have been finalized three more times.
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    assert_eq!(failed_attempts(&api, "edwards").await, Some(1));
    assert_eq!(
        env.proxy.count("POST", "/finalize-order/"),
        1,
        "the CA saw the refused request once"
    );
    assert_eq!(env.proxy.count("POST", "/order-plz"), 1, "one order");
    api.patch(
        "edwards",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"privateKey": {"algorithm": "ECDSA", "size": 256}}})),
    )
    .await
    .expect("a key the CA signs");
    let cert = env.certificate_ready("keys", "edwards", 1).await;
    assert_eq!(cert.status.and_then(|s| s.failed_issuance_attempts), None);
}

/// The CA issues a request, and before it is written the spec gains a name
/// (here the Secret's writes fail meanwhile, and so do the request
/// manager's deletes of the old request): the old certificate is never
/// written, no failure is counted, and the first certificate in the Secret
/// carries the new name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_issued_for_an_older_spec_is_not_written() {
    const SECRET: &str = "/namespaces/late/secrets/web-tls";
    const DELETE: &str = "/namespaces/late/certificaterequests/";
    let env = Env::start(|_| {}, &[]).await;
    let faults = env.cluster.api_faults();
    for (method, path) in [("PATCH", SECRET), ("DELETE", DELETE)] {
        faults.add(ApiFault {
            method: Some(method.into()),
            path_contains: path.into(),
            user_agent_contains: None,
            remaining: usize::MAX,
            status: 500,
            retry_after: None,
        });
    }
    env.namespace("late").await;
    env.certificate(
        "late",
        "web",
        json!({"secretName": "web-tls", "dnsNames": ["late.example.test"]}),
    )
    .await;
    let requests: Api<CertificateRequest> = Api::namespaced(env.client.clone(), "late");
    env.wait("the CA to issue the first request", 60, || {
        let requests = requests.clone();
        async move {
            let cr = requests.get("web-1").await.ok()?;
            cr.status?.certificate.map(|_| ())
        }
    })
    .await;
    let api: Api<Certificate> = Api::namespaced(env.client.clone(), "late");
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"dnsNames": ["late.example.test", "later.example.test"]}})),
    )
    .await
    .expect("a name more");
    // The controller sees the new spec while it cannot write the Secret
    // (its request manager tries to delete the old request); then the
    // Secret may be written, and the old request still stands, for two
    // more passes.
    let tried = faults.answered(DELETE);
    env.wait("the controller to see the new spec", 30, || async {
        (faults.answered(DELETE) > tried).then_some(())
    })
    .await;
    assert!(
        faults.remove(SECRET) > 0,
        "the old certificate was on its way to the Secret"
    );
    let tried = faults.answered(DELETE);
    env.wait("two passes more", 60, || async {
        (faults.answered(DELETE) > tried + 1).then_some(())
    })
    .await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(env.client.clone(), "late");
    assert!(
        secrets.get_opt("web-tls").await.expect("get").is_none(),
        "the certificate of the older spec is not written"
    );
    assert_eq!(failed_attempts(&api, "web").await, None, "nor a failure");
    assert!(faults.remove(DELETE) > 0);
    let cert = env.certificate_ready("late", "web", 1).await;
    let status = cert.status.expect("status");
    assert_eq!(status.failed_issuance_attempts, None);
    assert_eq!(status.revision, Some(1), "one certificate written");
    let secret = secrets.get("web-tls").await.expect("the Secret");
    let leaf = certwright::pki::cert::parse_chain(&secret_data(&secret, "tls.crt")).expect("leaf");
    assert!(
        leaf.dns_names.iter().any(|n| n == "later.example.test"),
        "{:?}",
        leaf.dns_names
    );
}
