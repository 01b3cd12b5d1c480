use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

use certwright::api;
use certwright::cli::{Cli, Command, ControllerArgs, Format, SolverArgs};
use certwright::solver::server::{self, Presented, Tokens};

fn main() -> ExitCode {
    let cli = Cli::parse();
    certwright::install_crypto_provider();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("certwright: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Crds { output } => print_crds(output),
        Command::Version { output } => print_version(output),
        Command::Solver(args) => run_solver(args),
        Command::Controller(args) => run_controller(*args),
        Command::Status | Command::Renew | Command::Check => {
            bail!(
                "this subcommand is not available in certwright {} yet",
                env!("CARGO_PKG_VERSION")
            )
        }
    }
}

fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .init();
}

fn run_controller(args: ControllerArgs) -> anyhow::Result<()> {
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let mut config = kube::Config::infer()
            .await
            .context("finding the Kubernetes API (in-cluster or KUBECONFIG)")?;
        config.headers.push((
            hyper::header::USER_AGENT,
            hyper::header::HeaderValue::from_static(concat!(
                "certwright/",
                env!("CARGO_PKG_VERSION")
            )),
        ));
        let client = kube::Client::try_from(config)
            .context("building the Kubernetes API client")?;
        let ip: std::net::IpAddr = args.solver_listen_address.parse().with_context(|| {
            format!(
                "--solver-listen-address {:?} is not an IP address",
                args.solver_listen_address
            )
        })?;
        let solver_addr = std::net::SocketAddr::new(ip, args.solver_port);
        let mut ctx = certwright::context::Context::new(
            client.clone(),
            args.cluster_resource_namespace
                .clone()
                .unwrap_or_else(|| args.namespace.clone()),
        );
        ctx.backoff = certwright::certificates::backoff::Backoff {
            min: Duration::from_secs(args.backoff_min_seconds.max(1)),
            max: Duration::from_secs(args.backoff_max_seconds.max(args.backoff_min_seconds).max(1)),
            transient_max: Duration::from_secs(args.transient_backoff_max_seconds.max(1)),
        };
        ctx.poll_interval = Duration::from_millis(args.acme_poll_interval_ms.max(10));
        ctx.ari_poll_max = Duration::from_secs(args.ari_poll_max_seconds.max(1));
        ctx.solver = certwright::context::SolverSettings {
            namespace: args.namespace.clone(),
            service: args.solver_service.clone(),
            port: args.solver_port,
            default_mode: args.http01_solver_mode,
            image: args.acme_http01_solver_image.clone(),
            pod_resources: certwright::solver::pod::PodResources {
                request_cpu: args.acme_http01_solver_resource_request_cpu.clone(),
                request_memory: args.acme_http01_solver_resource_request_memory.clone(),
                limit_cpu: args.acme_http01_solver_resource_limit_cpu.clone(),
                limit_memory: args.acme_http01_solver_resource_limit_memory.clone(),
            },
            path_type: args.http01_ingress_path_type,
            probe: certwright::solver::check::Probe {
                nameservers: args.acme_http01_solver_nameservers.clone(),
                http_port: args.http01_self_check_port,
                via: args.http01_self_check_address.clone(),
                ..Default::default()
            },
            passes: args.http01_self_check_passes.max(1),
        };
        ctx.certificate_owner_ref = args.enable_certificate_owner_ref;
        ctx.max_challenges = args.max_concurrent_challenges.max(1);
        ctx.concurrency = args.concurrent_reconciles;
        let ctx = std::sync::Arc::new(ctx);
        tracing::info!(namespace = %args.namespace, solver = %solver_addr, "certwright controller starting");
        tokio::select! {
            () = certwright::run_controllers(ctx.clone()) => Ok(()),
            served = certwright::solver::shared::serve(client, solver_addr) => {
                served.with_context(|| format!("serving HTTP-01 tokens on {solver_addr}"))
            }
            () = shutdown_signal() => Ok(()),
        }
    })
}

fn run_solver(args: SolverArgs) -> anyhow::Result<()> {
    init_logging();
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
            certwright::solver::sidecar::serve(
                client,
                addr,
                args.http01_solver_mode,
                server::Limits::default(),
                shutdown_signal(),
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
    };
    let tokens: Tokens = std::sync::Arc::new(std::sync::RwLock::new([(token, presented)].into()));
    runtime.block_on(async {
        server::serve_until(addr, tokens, server::Limits::default(), shutdown_signal())
            .await
            .with_context(|| format!("serving on {addr}"))
    })
}

/// Completes on SIGTERM (what the kubelet sends) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

fn print_crds(output: Format) -> anyhow::Result<()> {
    let text = match output {
        Format::Yaml | Format::Text => api::crds_yaml().context("rendering CRDs as YAML")?,
        Format::Json => {
            let list =
                serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": api::crds() });
            serde_json::to_string_pretty(&list).context("rendering CRDs as JSON")? + "\n"
        }
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing to stdout")
}

fn print_version(output: Format) -> anyhow::Result<()> {
    let info = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "apiGroups": ["cert-manager.io/v1", "acme.cert-manager.io/v1"],
        "kubernetesApi": "v1.33",
    });
    let text = match output {
        Format::Text => format!(
            "certwright {} (serves cert-manager.io/v1, acme.cert-manager.io/v1; Kubernetes API v1.33)\n",
            env!("CARGO_PKG_VERSION")
        ),
        Format::Yaml => serde_yaml_ng::to_string(&info)?,
        Format::Json => serde_json::to_string_pretty(&info)? + "\n",
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing to stdout")
}
