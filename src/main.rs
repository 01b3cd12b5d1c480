use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

use certwright::api;
use certwright::cli::{Cli, Command, ControllerArgs, Format, LogArgs, LogFormat, SolverArgs};
use certwright::runtime::probes;
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
        Command::Check(args) => certwright::cmd::run::check(args),
        Command::Status(args) => certwright::cmd::run::status(args),
        Command::Renew(args) => certwright::cmd::run::renew(args),
        Command::Inspect(args) => certwright::cmd::run::inspect(args),
    }
}

/// Logs to stdout: text (colours on a terminal) or JSON lines; RUST_LOG
/// decides the levels when set, else `-v`.
fn init_logging(args: &LogArgs) {
    let default = match args.verbose {
        0 => "info",
        1 => "info,certwright=debug",
        _ => "info,certwright=trace",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
    }
}

/// The controllers' shared state for one term as leader.
fn context(
    client: &kube::Client,
    args: &ControllerArgs,
    controllers: certwright::runtime::context::Controllers,
) -> certwright::runtime::context::Context {
    let mut ctx = certwright::runtime::context::Context::new(
        client.clone(),
        args.cluster_resource_namespace
            .clone()
            .unwrap_or_else(|| args.namespace.clone()),
    );
    ctx.backoff = certwright::controllers::certificates::backoff::Backoff {
        min: Duration::from_secs(args.backoff_min_seconds.max(1)),
        max: Duration::from_secs(
            args.backoff_max_seconds
                .max(args.backoff_min_seconds)
                .max(1),
        ),
    };
    certwright::acme::ceiling::set_default(args.acme_requests_per_second);
    ctx.retry = certwright::acme::retry::Policy {
        transient_max: Duration::from_secs(args.transient_backoff_max_seconds.max(1)),
        limit: args.acme_max_transient_failures.max(1),
        window: Duration::from_secs(args.acme_transient_window_seconds.max(1)),
        ..Default::default()
    };
    ctx.poll_interval = Duration::from_millis(args.acme_poll_interval_ms.max(10));
    ctx.ari_poll_max = Duration::from_secs(args.ari_poll_max_seconds.max(1));
    ctx.solver = certwright::runtime::context::SolverSettings {
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
            services: args.service_cluster_ip_range.clone(),
            http_port: args.http01_self_check_port,
            via: args.http01_self_check_address.clone(),
            ..Default::default()
        },
        passes: args.http01_self_check_passes.max(1),
    };
    ctx.certificate_owner_ref = args.enable_certificate_owner_ref;
    ctx.dns01 = certwright::dns::Dns01Settings {
        recursive_nameservers: args.dns01_recursive_nameservers.clone(),
        recursive_only: args.dns01_recursive_nameservers_only,
        cloudflare_api_url: args.cloudflare_api_url.clone(),
    };
    ctx.ingress_shim = certwright::controllers::ingress_shim::Settings {
        default_issuer_name: args.default_issuer_name.clone().filter(|n| !n.is_empty()),
        default_issuer_kind: args.default_issuer_kind.clone(),
        default_issuer_group: args.default_issuer_group.clone(),
        auto_annotations: args.auto_certificate_annotations.clone(),
        extra_annotations: args.extra_certificate_annotations.clone(),
    };
    ctx.controllers = controllers;
    ctx.max_challenges = args.max_concurrent_challenges.max(1);
    ctx.concurrency = args.concurrent_reconciles;
    ctx
}

/// How long a shutdown waits for the reconciles under way.
const GRACEFUL_STOP: Duration = Duration::from_secs(10);

/// Keeps serving tokens the CA was asked to validate, `until` at most
/// (counted from the shutdown signal): with one replica, one restarted just after it asked the CA would
/// otherwise leave nobody to answer the CA, and the order would fail.
/// Another replica (or this one's successor) finishes those Challenges;
/// their tokens leave the table then.
async fn drain(
    serving: &mut std::pin::Pin<&mut impl std::future::Future<Output = std::io::Result<()>>>,
    tokens: &certwright::solver::server::Tokens,
    until: tokio::time::Instant,
) {
    let pending = || {
        tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|p| p.accepted)
            .count()
    };
    let now = tokio::time::Instant::now();
    if now >= until || pending() == 0 {
        return;
    }
    tracing::info!(
        tokens = pending(),
        most_seconds = (until - now).as_secs(),
        "serving the tokens the CA was asked to validate until their Challenges finish"
    );
    let drained = async {
        while pending() > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        _ = serving => {}
        () = drained => {}
    }
    tracing::info!(left = pending(), "stopped serving tokens");
}

/// `certwright/<version>`, with the replica's name (its Pod) when known.
fn user_agent(identity: Option<&str>) -> String {
    let version = concat!("certwright/", env!("CARGO_PKG_VERSION"));
    match identity.map(str::trim).filter(|i| !i.is_empty()) {
        Some(id) => format!("{version} ({id})"),
        None => version.to_string(),
    }
}

/// The Lease settings from the flags, or why they are unusable.
fn lease_settings(args: &ControllerArgs) -> anyhow::Result<certwright::runtime::leader::Settings> {
    let identity = match &args.leader_election_identity {
        Some(id) if !id.is_empty() => id.clone(),
        _ => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .map(|h| format!("{h}-{}", std::process::id()))
            .context("no --leader-election-identity, POD_NAME or hostname to name this replica")?,
    };
    let settings = certwright::runtime::leader::Settings {
        namespace: args
            .leader_election_namespace
            .clone()
            .unwrap_or_else(|| args.namespace.clone()),
        name: args.leader_election_lease_name.clone(),
        identity,
        lease_duration: args.leader_election_lease_duration,
        renew_deadline: args.leader_election_renew_deadline,
        retry_period: args.leader_election_retry_period,
    };
    if !(settings.retry_period < settings.renew_deadline
        && settings.renew_deadline < settings.lease_duration)
    {
        bail!(
            "leader election needs --leader-election-retry-period ({:?}) < --leader-election-renew-deadline ({:?}) < --leader-election-lease-duration ({:?})",
            settings.retry_period,
            settings.renew_deadline,
            settings.lease_duration
        );
    }
    Ok(settings)
}

/// Reconciles during every term as leader: a fresh context each term, so
/// nothing cached while another replica led is trusted; losing the Lease
/// drops every reconcile at once. On `stopping` (a shutdown) no reconcile
/// starts any more and those under way finish, so an ACME order placed is
/// written down rather than placed again by the next leader.
async fn reconcile_while_leading(
    client: kube::Client,
    args: &ControllerArgs,
    controllers: certwright::runtime::context::Controllers,
    mut leading: tokio::sync::watch::Receiver<bool>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    health: Arc<probes::Health>,
) {
    loop {
        if leading.wait_for(|l| *l).await.is_err() || *stopping.borrow() {
            return;
        }
        tracing::info!("leading: reconciling");
        let ctx = Arc::new(context(&client, args, controllers));
        let caches = async {
            let caches = ctx.caches().await;
            certwright::metrics::set_caches(Some(caches));
            health.caches_synced.store(true, Ordering::Relaxed);
            std::future::pending::<()>().await;
        };
        let running = certwright::controllers::run(ctx.clone());
        tokio::pin!(running);
        tokio::select! {
            () = &mut running => {
                tracing::error!("the controllers stopped");
                return;
            }
            () = caches => {}
            () = certwright::runtime::leader::lost(&mut leading) => {
                tracing::warn!("not leading any more: stopped reconciling");
            }
            _ = stopping.wait_for(|s| *s) => {
                tracing::info!("stopping: no new reconciles; finishing those under way");
                ctx.stop();
                tokio::select! {
                    () = &mut running => {}
                    () = certwright::runtime::leader::lost(&mut leading) => {}
                }
                return;
            }
        }
        certwright::metrics::set_caches(None);
        health.caches_synced.store(false, Ordering::Relaxed);
    }
}

fn run_controller(args: ControllerArgs) -> anyhow::Result<()> {
    init_logging(&args.logging);
    let controllers = certwright::runtime::context::Controllers::parse(&args.controllers)
        .map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let mut config = kube::Config::infer()
            .await
            .context("finding the Kubernetes API (in-cluster or KUBECONFIG)")?;
        // The replica in the User-Agent: replicas share a ServiceAccount,
        // and the API server's audit log tells them apart by it.
        let agent = user_agent(args.leader_election_identity.as_deref());
        config.headers.push((
            hyper::header::USER_AGENT,
            hyper::header::HeaderValue::from_str(&agent).unwrap_or_else(|_| {
                hyper::header::HeaderValue::from_static(concat!(
                    "certwright/",
                    env!("CARGO_PKG_VERSION")
                ))
            }),
        ));
        let client = kube::client::ClientBuilder::try_from(config)
            .context("building the Kubernetes API client")?
            .with_layer(&certwright::metrics::api::CountRequests)
            .build();
        let ip: std::net::IpAddr = args.solver_listen_address.parse().with_context(|| {
            format!(
                "--solver-listen-address {:?} is not an IP address",
                args.solver_listen_address
            )
        })?;
        let solver_addr = std::net::SocketAddr::new(ip, args.solver_port);
        let elector = if args.leader_elect {
            Some(Arc::new(certwright::runtime::leader::Elector::new(
                client.clone(),
                lease_settings(&args)?,
            )))
        } else {
            None
        };
        let health = Arc::new(probes::Health::new(elector.clone()));
        let leading = match &elector {
            Some(e) => e.subscribe(),
            None => {
                certwright::metrics::set_leader(true);
                tokio::sync::watch::channel(true).1
            }
        };
        let campaign = async {
            match &elector {
                Some(e) => e.run().await,
                None => std::future::pending().await,
            }
        };
        tracing::info!(namespace = %args.namespace, solver = %solver_addr,
            leader_election = args.leader_elect, "certwright controller starting");
        let tokens: certwright::solver::server::Tokens = Default::default();
        let serving = certwright::solver::shared::serve(
            client.clone(),
            solver_addr,
            &health.tokens_synced,
            tokens.clone(),
        );
        tokio::pin!(serving);
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let reconciling = reconcile_while_leading(
            client.clone(),
            &args,
            controllers,
            leading,
            stopping,
            health.clone(),
        );
        tokio::pin!(reconciling, campaign);
        let mut stopping = false;
        let result = tokio::select! {
            () = &mut reconciling => Ok(()),
            () = &mut campaign => Ok(()),
            served = &mut serving => {
                served.with_context(|| format!("serving HTTP-01 tokens on {solver_addr}"))
            }
            served = probes::serve(args.metrics_listen_address, args.health_listen_address, health.clone()) => {
                served.with_context(|| format!(
                    "serving metrics on {} and probes on {}",
                    args.metrics_listen_address, args.health_listen_address
                ))
            }
            () = shutdown_signal() => {
                stopping = true;
                Ok(())
            }
        };
        let stopped_at = tokio::time::Instant::now();
        if stopping {
            // The reconciles under way finish, for a while at most (still
            // leading meanwhile); then they are dropped.
            stop.send_replace(true);
            tokio::select! {
                () = &mut reconciling => {}
                () = &mut campaign => {}
                () = tokio::time::sleep(GRACEFUL_STOP) => {
                    tracing::warn!(after = ?GRACEFUL_STOP, "reconciles still under way at shutdown: dropped");
                }
            }
        }
        // Reconciling has stopped (its future is dropped): hand over.
        if let Some(e) = &elector {
            e.release().await;
        }
        if stopping {
            let until = stopped_at + Duration::from_secs(args.shutdown_drain_seconds);
            drain(&mut serving, &tokens, until).await;
        }
        result
    })
}

fn run_solver(args: SolverArgs) -> anyhow::Result<()> {
    init_logging(&args.logging);
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
        accepted: false,
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
