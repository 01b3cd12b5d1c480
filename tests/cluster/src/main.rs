//! `certwright-testcluster`: the local cluster in one command, for people,
//! kubectl and the quickstart. It starts the API emulator, the pod runner,
//! Service endpoints and proxies, the ingress router and pebble, applies
//! certwright's CRDs, writes a kubeconfig, prints how to use it, and runs
//! until Ctrl-C (or SIGTERM), then stops everything it started.

use std::path::PathBuf;
use std::process::ExitCode;

use certwright_testcluster::cluster::{ClusterOptions, LocalCluster};
use certwright_testcluster::pebble::{Pebble, PebbleOptions};

const USAGE: &str =
    "usage: certwright-testcluster [--certwright PATH] [--kubeconfig PATH] [--state-dir DIR] [--with-controller]
  --certwright PATH   the certwright binary Pods run (default: next to this binary)
  --with-controller   also deploy `certwright controller` in the cluster, as the chart would
  --kubeconfig PATH   where to write the kubeconfig (default: <state-dir>/kubeconfig)
  --state-dir DIR     where to write the kubeconfig and pebble's roots (default: a temp dir)";

struct Args {
    certwright: PathBuf,
    with_controller: bool,
    kubeconfig: Option<PathBuf>,
    state_dir: PathBuf,
}

fn parse() -> Result<Args, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut args = Args {
        certwright: me.with_file_name("certwright"),
        with_controller: false,
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
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

async fn start(args: &Args) -> Result<(LocalCluster, Pebble, PathBuf, PathBuf), String> {
    if !args.certwright.is_file() {
        return Err(format!(
            "no certwright binary at {} (build it with `cargo build`, or pass --certwright)",
            args.certwright.display()
        ));
    }
    std::fs::create_dir_all(&args.state_dir)
        .map_err(|e| format!("creating {}: {e}", args.state_dir.display()))?;
    let cluster = LocalCluster::start(ClusterOptions::new(&args.certwright)).await?;
    let router = cluster.router_addr();
    let pebble = Pebble::start(PebbleOptions {
        http_port: router.port(),
        dns_ipv4: router.ip().to_string(),
        ..PebbleOptions::default()
    })
    .await?;
    certwright_testcluster::deploy::install_crds(&cluster, &args.certwright)?;
    let kubeconfig = args
        .kubeconfig
        .clone()
        .unwrap_or_else(|| args.state_dir.join("kubeconfig"));
    cluster
        .api()
        .write_kubeconfig(&kubeconfig)
        .map_err(|e| format!("writing {}: {e}", kubeconfig.display()))?;
    let roots = args.state_dir.join("pebble-roots.pem");
    std::fs::write(&roots, pebble.issuing_root_pem().await?).map_err(|e| e.to_string())?;
    std::fs::write(args.state_dir.join("pebble-tls-ca.pem"), &pebble.tls_ca_pem)
        .map_err(|e| e.to_string())?;
    std::fs::write(args.state_dir.join("acme-directory"), &pebble.directory_url)
        .map_err(|e| e.to_string())?;
    if args.with_controller {
        let flags = [
            "--http01-self-check-address".to_string(),
            cluster.router_addr().to_string(),
            "--acme-poll-interval-ms".to_string(),
            "200".to_string(),
        ];
        certwright_testcluster::deploy::controller(&cluster.client(), &flags).await?;
    }
    Ok((cluster, pebble, kubeconfig, roots))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("certwright-testcluster: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (cluster, pebble, kubeconfig, roots) = match start(&args).await {
        Ok(parts) => parts,
        Err(e) => {
            eprintln!("certwright-testcluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("certwright local cluster is up.");
    println!("  API server       {}", cluster.api().url());
    println!("  kubeconfig       {}", kubeconfig.display());
    println!(
        "  ingress router   {} (class {:?}; every name resolves here for pebble)",
        cluster.router_addr(),
        cluster.ingress_class()
    );
    println!("  ACME directory   {}", pebble.directory_url);
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
    drop(cluster);
    let _ = std::fs::remove_dir_all(&args.state_dir);
    println!("stopped.");
    ExitCode::SUCCESS
}
