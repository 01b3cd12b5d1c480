//! `certwright solver`: a token server on its own, for one token (pod mode)
//! or every sidecar-mode Challenge's (`--watch`).

use anyhow::{Context, bail};

use crate::cli::SolverArgs;
use crate::solver::server::{self, Presented, Tokens};

pub fn run(args: SolverArgs) -> anyhow::Result<()> {
    super::init_logging(&args.logging);
    let ip: std::net::IpAddr = args.listen_address.parse().with_context(|| {
        format!(
            "--listen-address {:?} is not an IP address",
            args.listen_address
        )
    })?;
    let addr = std::net::SocketAddr::new(ip, args.listen_port);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    if args.watch {
        return runtime.block_on(async {
            let client = kube::Client::try_default()
                .await
                .context("finding the Kubernetes API (in-cluster or KUBECONFIG)")?;
            tracing::info!(%addr, "serving the tokens of sidecar-mode Challenges");
            crate::solver::sidecar::serve(
                client,
                addr,
                args.http01_solver_mode,
                server::Limits::default(),
                super::shutdown_signal(),
            )
            .await
            .with_context(|| format!("serving on {addr}"))
        });
    }
    let (Some(token), Some(key), Some(domain)) = (args.token, args.key, args.domain) else {
        bail!("--token, --key and --domain are required without --watch");
    };
    let presented = Presented {
        domain: domain.trim_end_matches('.').to_ascii_lowercase(),
        key_authorization: key,
        accepted: false,
    };
    let tokens: Tokens = std::sync::Arc::new(std::sync::RwLock::new([(token, presented)].into()));
    runtime.block_on(async {
        server::serve_until(
            addr,
            tokens,
            server::Limits::default(),
            super::shutdown_signal(),
        )
        .await
        .with_context(|| format!("serving on {addr}"))
    })
}
