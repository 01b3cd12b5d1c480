use std::io::Write;
use std::process::ExitCode;

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
        Command::Controller(args) => run_controller(args),
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
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

fn run_controller(args: ControllerArgs) -> anyhow::Result<()> {
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("connecting to the Kubernetes API (in-cluster or KUBECONFIG)")?;
        let ctx = std::sync::Arc::new(certwright::context::Context {
            client,
            cluster_resource_namespace: args.cluster_resource_namespace,
        });
        tracing::info!("certwright controller starting");
        tokio::select! {
            _ = certwright::issuers::run(ctx) => Ok(()),
            _ = tokio::signal::ctrl_c() => Ok(()),
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
    let presented = Presented {
        domain: args.domain.trim_end_matches('.').to_ascii_lowercase(),
        key_authorization: args.key,
    };
    let tokens: Tokens =
        std::sync::Arc::new(std::sync::RwLock::new([(args.token, presented)].into()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        tokio::select! {
            served = server::serve(addr, tokens) => served.with_context(|| format!("serving on {addr}")),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
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
