//! `certwright check api` against the real API server: it fails, naming
//! the kinds and how to install them, until the CRDs are established, and
//! `--wait` keeps trying.

mod common;

use std::process::Command;

fn check(kubeconfig: &std::path::Path, wait: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_certwright"))
        .args(["check", "api", "--wait", wait])
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("run certwright check api");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_api_fails_plainly_until_the_crds_are_served() {
    let plane = certwright_testcluster::control_plane::shared().expect("the control plane starts");
    // This binary's control plane has no CRDs until the test installs them.
    let (ok, said) = check(plane.kubeconfig(), "3s");
    assert!(!ok, "{said}");
    assert!(
        said.contains("does not serve certificates.cert-manager.io")
            && said.contains("challenges.acme.cert-manager.io")
            && said.contains("certwright crds"),
        "{said}"
    );
    assert!(said.contains("not yet:"), "--wait retried: {said}");
    common::control_plane_with_crds().await;
    let (ok, said) = check(plane.kubeconfig(), "10s");
    assert!(ok, "{said}");
    assert!(
        said.contains("serves cert-manager.io/v1 and acme.cert-manager.io/v1"),
        "{said}"
    );
}
