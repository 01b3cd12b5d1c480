//! `certwright-testcluster`: the local cluster in one command, for people,
//! kubectl and the quickstart. It starts the real control plane in a node
//! network namespace, the process kubelet, the Service proxy, Traefik (the
//! ingress controller) and pebble, applies certwright's CRDs, writes a
//! kubeconfig (the API server through a forwarder on 127.0.0.1), prints how
//! to use it, and runs until Ctrl-C (or SIGTERM), then stops everything it
//! started.

use std::path::PathBuf;
use std::process::ExitCode;

use certwright_testcluster::cluster::{ClusterOptions, LocalCluster};
use certwright_testcluster::pebble::Pebble;

const USAGE: &str =
    "usage: certwright-testcluster [--certwright PATH] [--kubeconfig PATH] [--state-dir DIR] [--with-controller]
  --certwright PATH   the certwright binary Pods run (default: next to this binary)
  --with-controller   also deploy `certwright controller` in the cluster, as the chart would
  --real-node         also start the real node (containerd, kubelet, kube-proxy, kube-scheduler)
  --kubeconfig PATH   where to write the kubeconfig (default: <state-dir>/kubeconfig)
  --state-dir DIR     where to write the kubeconfig and pebble's roots (default: a temp dir)";

struct Args {
    certwright: PathBuf,
    with_controller: bool,
    real_node: bool,
    kubeconfig: Option<PathBuf>,
    state_dir: PathBuf,
}

fn parse() -> Result<Args, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut args = Args {
        certwright: me.with_file_name("certwright"),
        with_controller: false,
        real_node: false,
        kubeconfig: None,
        state_dir: std::env::temp_dir()
            .join(format!("certwright-testcluster-{}", std::process::id())),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--certwright" => args.certwright = PathBuf::from(value("--certwright")?),
            "--kubeconfig" => args.kubeconfig = Some(PathBuf::from(value("--kubeconfig")?)),
            "--state-dir" => args.state_dir = PathBuf::from(value("--state-dir")?),
            "--with-controller" => args.with_controller = true,
            "--real-node" => args.real_node = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

async fn start(cluster: &LocalCluster, args: &Args) -> Result<(Pebble, PathBuf, PathBuf), String> {
    let pebble = cluster
        .in_node(Pebble::start(cluster.pebble_options()))
        .await?;
    let client = cluster.client();
    certwright_testcluster::deploy::install_crds(&client, &args.certwright).await?;
    let kubeconfig = args
        .kubeconfig
        .clone()
        .unwrap_or_else(|| args.state_dir.join("kubeconfig"));
    cluster
        .write_kubeconfig(&kubeconfig)
        .map_err(|e| format!("writing {}: {e}", kubeconfig.display()))?;
    let roots = args.state_dir.join("pebble-roots.pem");
    std::fs::write(&roots, pebble.issuing_root_pem()).map_err(|e| e.to_string())?;
    std::fs::write(args.state_dir.join("pebble-tls-ca.pem"), &pebble.tls_ca_pem)
        .map_err(|e| e.to_string())?;
    std::fs::write(args.state_dir.join("acme-directory"), &pebble.directory_url)
        .map_err(|e| e.to_string())?;
    if args.real_node {
        let node = cluster.real_node(&image_binary(&args.certwright)).await?;
        eprintln!(
            "the real node runs; its daemons log in {}",
            node.dir().display()
        );
    }
    if args.with_controller {
        let flags = [
            "--http01-self-check-address".to_string(),
            cluster.ingress_node_addr().to_string(),
            "--acme-poll-interval-ms".to_string(),
            "200".to_string(),
        ];
        certwright_testcluster::deploy::controller(&client, &flags).await?;
    }
    Ok((pebble, kubeconfig, roots))
}

/// The static binary `scripts/build-image-binary` builds beside `certwright`
/// (`<target>/x86_64-unknown-linux-gnu/image-test/certwright`), if there is
/// one; else `certwright` itself.
fn image_binary(certwright: &std::path::Path) -> PathBuf {
    let target = certwright.parent().and_then(|p| p.parent());
    target
        .map(|t| t.join("x86_64-unknown-linux-gnu/image-test/certwright"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| certwright.to_path_buf())
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("certwright-testcluster: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !args.certwright.is_file() {
        eprintln!(
            "certwright-testcluster: no certwright binary at {} (build it with `cargo build`, or pass --certwright)",
            args.certwright.display()
        );
        return ExitCode::FAILURE;
    }
    if let Err(e) = std::fs::create_dir_all(&args.state_dir) {
        eprintln!(
            "certwright-testcluster: creating {}: {e}",
            args.state_dir.display()
        );
        return ExitCode::FAILURE;
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cluster = match LocalCluster::start(ClusterOptions::new(&args.certwright)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("certwright-testcluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("certwright-testcluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(&cluster, &args));
    drop(cluster);
    let _ = std::fs::remove_dir_all(&args.state_dir);
    code
}

async fn run(cluster: &LocalCluster, args: &Args) -> ExitCode {
    let (pebble, kubeconfig, roots) = match start(cluster, args).await {
        Ok(parts) => parts,
        Err(e) => {
            eprintln!("certwright-testcluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("certwright local cluster is up.");
    println!(
        "  API server       {} (kube-apiserver {})",
        cluster.api_url(),
        certwright_testcluster::tools::kubernetes_version()
    );
    println!("  kubeconfig       {}", kubeconfig.display());
    println!(
        "  ingress          Traefik {} at {} in the cluster, {} from here (class {:?}; every name resolves to it for pebble)",
        certwright_testcluster::tools::traefik_version(),
        cluster.ingress_node_addr(),
        cluster.ingress_addr(),
        cluster.ingress_class()
    );
    println!(
        "  ACME directory   {} (in the cluster)",
        pebble.directory_url
    );
    println!(
        "  pebble TLS CA    {}",
        args.state_dir.join("pebble-tls-ca.pem").display()
    );
    println!("  issuing root     {}", roots.display());
    if args.with_controller {
        println!(
            "  controller       Deployment certwright/certwright (Pod logs in {})",
            cluster.log_dir().display()
        );
    }
    println!("try:  KUBECONFIG={} kubectl get ns", kubeconfig.display());
    println!("Ctrl-C stops everything.");
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("certwright-testcluster: cannot watch SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    drop(pebble);
    println!("stopped.");
    ExitCode::SUCCESS
}
