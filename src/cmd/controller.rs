//! `certwright controller`: the process around the controllers. It serves
//! the probes, metrics and the shared solver's tokens all along, campaigns
//! for the Lease, and runs the controllers during each term as leader.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::cli::ControllerArgs;
use crate::runtime::context::Context;
use crate::runtime::probes;
use crate::runtime::settings::Settings;
use crate::solver::server::Tokens;

/// How long a shutdown waits for the reconciles under way.
const GRACEFUL_STOP: Duration = Duration::from_secs(10);

/// Keeps serving tokens the CA was asked to validate, `until` at most
/// (counted from the shutdown signal): with one replica, one restarted just after it asked the CA would
/// otherwise leave nobody to answer the CA, and the order would fail.
/// Another replica (or this one's successor) finishes those Challenges;
/// their tokens leave the table then.
async fn drain(
    serving: &mut std::pin::Pin<&mut impl std::future::Future<Output = std::io::Result<()>>>,
    tokens: &Tokens,
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
fn lease_settings(args: &ControllerArgs) -> anyhow::Result<crate::runtime::leader::Settings> {
    let identity = match &args.leader_election_identity {
        Some(id) if !id.is_empty() => id.clone(),
        _ => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .map(|h| format!("{h}-{}", std::process::id()))
            .context("no --leader-election-identity, POD_NAME or hostname to name this replica")?,
    };
    let settings = crate::runtime::leader::Settings {
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
    settings: &Settings,
    mut leading: tokio::sync::watch::Receiver<bool>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    health: Arc<probes::Health>,
) {
    loop {
        if leading.wait_for(|l| *l).await.is_err() || *stopping.borrow() {
            return;
        }
        tracing::info!("leading: reconciling");
        let ctx = Arc::new(Context::with_settings(client.clone(), settings.clone()));
        let caches = async {
            let caches = ctx.caches().await;
            crate::metrics::set_caches(Some(caches));
            health.caches_synced.store(true, Ordering::Relaxed);
            std::future::pending::<()>().await;
        };
        let running = crate::controllers::run(ctx.clone());
        tokio::pin!(running);
        tokio::select! {
            () = &mut running => {
                tracing::error!("the controllers stopped");
                return;
            }
            () = caches => {}
            () = crate::runtime::leader::lost(&mut leading) => {
                tracing::warn!("not leading any more: stopped reconciling");
            }
            _ = stopping.wait_for(|s| *s) => {
                tracing::info!("stopping: no new reconciles; finishing those under way");
                ctx.stop();
                tokio::select! {
                    () = &mut running => {}
                    () = crate::runtime::leader::lost(&mut leading) => {}
                }
                return;
            }
        }
        crate::metrics::set_caches(None);
        health.caches_synced.store(false, Ordering::Relaxed);
    }
}

pub fn run(args: ControllerArgs) -> anyhow::Result<()> {
    super::init_logging(&args.logging);
    let settings = Settings::try_from(&args).map_err(anyhow::Error::msg)?;
    crate::acme::ceiling::set_default(args.acme_requests_per_second);
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
            .with_layer(&crate::metrics::api::CountRequests)
            .build();
        let ip: std::net::IpAddr = args.solver_listen_address.parse().with_context(|| {
            format!(
                "--solver-listen-address {:?} is not an IP address",
                args.solver_listen_address
            )
        })?;
        let solver_addr = std::net::SocketAddr::new(ip, args.solver_port);
        let elector = if args.leader_elect {
            Some(Arc::new(crate::runtime::leader::Elector::new(
                client.clone(),
                lease_settings(&args)?,
            )))
        } else {
            None
        };
        let health = Arc::new(probes::Health::new(
            elector.clone(),
            Duration::from_secs(args.token_watch_grace_seconds),
        ));
        let leading = match &elector {
            Some(e) => e.subscribe(),
            None => {
                crate::metrics::set_leader(true);
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
        let tokens: Tokens = Default::default();
        let serving = crate::solver::shared::serve(
            client.clone(),
            solver_addr,
            &health.tokens,
            tokens.clone(),
        );
        tokio::pin!(serving);
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let reconciling = reconcile_while_leading(
            client.clone(),
            &settings,
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
            () = super::shutdown_signal() => {
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
