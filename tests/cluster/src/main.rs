//! `certwright-testcluster`: the local cluster for people and kubectl. Today
//! it runs the API emulator; the pod runner, ingress router and pebble join
//! it as they land.
//!
//! Usage: certwright-testcluster [--kubeconfig PATH]

use std::path::PathBuf;
use std::process::ExitCode;

use certwright_testcluster::apiserver::{ApiServer, Options};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut kubeconfig = std::env::temp_dir().join(format!(
        "certwright-testcluster-{}.kubeconfig",
        std::process::id()
    ));
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--kubeconfig" => match args.next() {
                Some(p) => kubeconfig = PathBuf::from(p),
                None => return usage("--kubeconfig needs a path"),
            },
            "-h" | "--help" => {
                println!("usage: certwright-testcluster [--kubeconfig PATH]");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    let server = match ApiServer::start(Options::default()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("certwright-testcluster: cannot start the API server: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = server.write_kubeconfig(&kubeconfig) {
        eprintln!(
            "certwright-testcluster: cannot write {}: {e}",
            kubeconfig.display()
        );
        return ExitCode::FAILURE;
    }
    println!("API server:  {}", server.url());
    println!("kubeconfig:  {}", kubeconfig.display());
    println!(
        "try:         KUBECONFIG={} kubectl get ns",
        kubeconfig.display()
    );
    println!("Ctrl-C stops it.");
    let _ = tokio::signal::ctrl_c().await;
    let _ = std::fs::remove_file(&kubeconfig);
    ExitCode::SUCCESS
}

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "certwright-testcluster: {problem}\nusage: certwright-testcluster [--kubeconfig PATH]"
    );
    ExitCode::from(2)
}
