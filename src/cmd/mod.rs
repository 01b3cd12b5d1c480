//! The user's commands, cmctl's verbs: `status`, `renew`, `inspect` and
//! `check domain`. They talk to the API server with any kubeconfig (also
//! as the kubectl plugin `kubectl-certwright`) and fail with one line a
//! user can act on.

pub mod controller;
pub mod details;
pub mod domain;
pub mod inspect;
pub mod renew;
pub mod run;
pub mod solver;
pub mod status;
pub mod status_text;

use std::path::PathBuf;

use anyhow::anyhow;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Where the API server is: the kubeconfig (`--kubeconfig`, else
/// `KUBECONFIG`, else `~/.kube/config`, else in-cluster) and its context.
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

/// A client, and the namespace to use when none is given (the context's).
pub async fn client(target: &Target) -> anyhow::Result<(kube::Client, String)> {
    let config = if target.kubeconfig.is_none() && target.context.is_none() {
        kube::Config::infer().await.map_err(|e| {
            anyhow!(
                "no cluster to talk to: {e} (set KUBECONFIG, pass --kubeconfig, or run in a Pod)"
            )
        })?
    } else {
        let kubeconfig = match &target.kubeconfig {
            Some(path) => Kubeconfig::read_from(path)
                .map_err(|e| anyhow!("reading the kubeconfig {}: {e}", path.display()))?,
            None => Kubeconfig::read().map_err(|e| anyhow!("reading the kubeconfig: {e}"))?,
        };
        let options = KubeConfigOptions {
            context: target.context.clone(),
            ..Default::default()
        };
        kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| anyhow!("using the kubeconfig: {e}"))?
    };
    let namespace = config.default_namespace.clone();
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)
        .map_err(|e| anyhow!("connecting to the API server at {url}: {e}"))?;
    Ok((client, namespace))
}

/// One line for a failed API call about `what` ("Certificate default/web").
pub fn explain(error: kube::Error, what: &str) -> anyhow::Error {
    match error {
        kube::Error::Api(s) if s.code == 404 => anyhow!("{what} not found"),
        kube::Error::Api(s) if s.code == 403 => {
            anyhow!("not allowed to read or change {what}: {}", s.message)
        }
        kube::Error::Api(s) if s.code == 401 => anyhow!(
            "the API server refused the kubeconfig's credentials ({}): log in again",
            s.message
        ),
        kube::Error::Api(s) => anyhow!("{what}: the API server answered {}: {}", s.code, s.message),
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(&other);
            while let Some(s) = source {
                let more = s.to_string();
                if !text.contains(&more) {
                    text = format!("{text}: {more}");
                }
                source = s.source();
            }
            anyhow!(
                "cannot reach the API server ({text}): is the cluster running, and the kubeconfig's server right?"
            )
        }
    }
}

/// How long ago (or, negative, until) `t`, as kubectl shows ages: `42s`,
/// `5m`, `3h`, `12d`.
pub fn age(now: Timestamp, t: Timestamp) -> String {
    let d: SignedDuration = now.duration_since(t);
    let secs = d.as_secs();
    let (sign, secs) = if secs < 0 { ("in ", -secs) } else { ("", secs) };
    let text = match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    };
    format!("{sign}{text}")
}

/// Logs to stdout: text (colours on a terminal) or JSON lines; RUST_LOG
/// decides the levels when set, else `-v`.
pub fn init_logging(args: &crate::cli::LogArgs) {
    let default = match args.verbose {
        0 => "info",
        1 => "info,certwright=debug",
        _ => "info,certwright=trace",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        crate::cli::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        crate::cli::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
    }
}

/// Completes on SIGTERM (what the kubelet sends) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_kubectl_shows_them() {
        let now: Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(age(now, at("2026-12-01T11:59:18Z")), "42s");
        assert_eq!(age(now, at("2026-12-01T11:55:00Z")), "5m");
        assert_eq!(age(now, at("2026-12-01T09:00:00Z")), "3h");
        assert_eq!(age(now, at("2026-11-19T12:00:00Z")), "12d");
        assert_eq!(age(now, at("2026-12-31T12:00:00Z")), "in 30d");
    }
}
