//! The one-command local cluster (`certwright-testcluster`): it starts,
//! `kubectl get ns` works against it, certwright's CRDs are served, and on
//! Ctrl-C it stops everything, pebble and the control plane included.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn one_command_cluster_starts_serves_kubectl_and_stops_cleanly() {
    let certwright = Path::new(env!("CARGO_BIN_EXE_certwright"));
    let launcher = certwright.with_file_name("certwright-testcluster");
    assert!(
        launcher.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` (scripts/test does)",
        launcher.display()
    );
    let state = std::env::temp_dir().join(format!("certwright-quickstart-{}", std::process::id()));
    let mut child = Command::new(&launcher)
        .arg("--certwright")
        .arg(certwright)
        .arg("--state-dir")
        .arg(&state)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("launcher starts");
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut banner = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !banner
        .iter()
        .any(|l: &String| l.contains("Ctrl-C stops everything"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => banner.push(line),
            Err(_) => {
                let _ = child.kill();
                let err = child
                    .stderr
                    .take()
                    .map(|e| std::io::read_to_string(e).unwrap_or_default())
                    .unwrap_or_default();
                panic!("the cluster did not come up: {banner:?}\n{err}");
            }
        }
    }
    assert!(
        banner
            .iter()
            .any(|l| l.contains("ACME directory") && l.contains("https://10.244.0.1:")),
        "{banner:?}"
    );
    let kubeconfig = state.join("kubeconfig");
    let out = Command::new("kubectl")
        .args(["get", "ns,crd"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("kubectl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("namespace/default") && text.contains("certificates.cert-manager.io"),
        "{text}"
    );
    assert!(state.join("pebble-roots.pem").is_file());

    let pebble_marker = format!("certwright-pebble-{pid}-");
    let running = |marker: &str| {
        let out = Command::new("pgrep")
            .args(["-f", marker])
            .output()
            .expect("pgrep");
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let control_plane_marker = format!("certwright-control-plane/{pid}-");
    assert!(
        running(&pebble_marker) >= 1,
        "pebble runs under the launcher"
    );
    assert_eq!(
        running(&control_plane_marker),
        3,
        "etcd, kube-apiserver and kube-controller-manager run under the launcher"
    );
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the launcher did not stop on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert_eq!(running(&pebble_marker), 0, "pebble was left behind");
    assert_eq!(
        running(&control_plane_marker),
        0,
        "the control plane was left behind"
    );
    assert!(!state.exists(), "state dir removed");
}

/// The README's run command, with the binaries this test run built: the
/// example Certificate goes Ready and the script shows the resources,
/// the events and the issued certificate.
#[test]
fn the_quickstart_issues_the_example_certificate() {
    let certwright = Path::new(env!("CARGO_BIN_EXE_certwright"));
    let bin_dir = certwright.parent().expect("bin dir");
    let state = std::env::temp_dir().join(format!("certwright-run-{}", std::process::id()));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(root.join("scripts/quickstart"))
        .env("CERTWRIGHT_BIN_DIR", bin_dir)
        .env("STATE_DIR", &state)
        .output()
        .expect("scripts/quickstart runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for expected in [
        "certificate.cert-manager.io/hello condition met",
        "The certificate has been successfully issued",
        "DNS:hello.example.test, DNS:www.hello.example.test",
        "issuer=CN = Pebble Intermediate CA",
        "order.acme.cert-manager.io/hello-1-",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
    let _ = std::fs::remove_dir_all(&state);
}
