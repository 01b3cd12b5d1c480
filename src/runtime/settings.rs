//! What the controllers are told: [`Settings`], read from the command line
//! once ([`Settings::try_from`]) and shared read-only through the context.

use std::time::Duration;

use crate::acme::retry::Policy;
use crate::cli::ControllerArgs;
use crate::dns::Dns01Settings;
use crate::solver::settings::SolverSettings;

/// Certificate reconciles at once when `--concurrent-reconciles` sets no
/// limit (see [`Settings::certificate_controller_config`]).
pub const CERTIFICATE_RECONCILES: u16 = 16;

/// Every setting a controller reads.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where ClusterIssuers' Secrets (account keys) live.
    pub cluster_resource_namespace: String,
    /// Retry bounds for failed issuances.
    pub backoff: Backoff,
    /// The CA retry policy (every ACME call).
    pub retry: Policy,
    /// How often an order or authorization still in progress is polled
    /// when the CA gives no Retry-After.
    pub poll_interval: Duration,
    pub solver: SolverSettings,
    /// Longest wait before asking a CA's renewal information again.
    pub ari_poll_max: Duration,
    /// Most Challenges worked on at once.
    pub max_challenges: usize,
    /// Most reconciles at once per controller (0: no limit).
    pub concurrency: u16,
    /// Whether the final Secret is owned by its Certificate.
    pub certificate_owner_ref: bool,
    /// DNS-01's nameservers for lookups and checks.
    pub dns01: Dns01Settings,
    /// The ingress-shim's default issuer and annotations.
    pub ingress_shim: IngressShim,
    /// Which of the optional controllers run (`--controllers`).
    pub controllers: Controllers,
}

impl Settings {
    /// The defaults, with ClusterIssuers' Secrets in `cluster_resource_namespace`.
    pub fn new(cluster_resource_namespace: impl Into<String>) -> Self {
        Self {
            cluster_resource_namespace: cluster_resource_namespace.into(),
            backoff: Backoff::default(),
            retry: Policy::default(),
            poll_interval: Duration::from_secs(1),
            solver: SolverSettings::default(),
            ari_poll_max: Duration::from_secs(6 * 3600),
            max_challenges: 60,
            concurrency: 0,
            certificate_owner_ref: false,
            dns01: Dns01Settings::default(),
            ingress_shim: IngressShim::default(),
            controllers: Controllers::default(),
        }
    }

    /// How every controller runs (its concurrency).
    pub fn controller_config(&self) -> kube::runtime::controller::Config {
        kube::runtime::controller::Config::default().concurrency(self.concurrency)
    }

    /// How the Certificate controller runs: as [`Self::controller_config`],
    /// but with no limit set it takes [`CERTIFICATE_RECONCILES`] at once.
    /// At start every Certificate is reconciled, each reading its Secret and
    /// asking the CA for renewal information; all at once, a thousand Ready
    /// Certificates held 190 MiB that the process kept after the burst
    /// (`cargo bench --bench memory`), against 38 MiB with 16 at a time.
    pub fn certificate_controller_config(&self) -> kube::runtime::controller::Config {
        let limit = match self.concurrency {
            0 => CERTIFICATE_RECONCILES,
            n => n,
        };
        kube::runtime::controller::Config::default().concurrency(limit)
    }
}

impl TryFrom<&ControllerArgs> for Settings {
    type Error = String;

    /// The settings the flags give, each clamped to what works (a zero
    /// wait or count would make a controller spin).
    fn try_from(args: &ControllerArgs) -> Result<Self, String> {
        let min = args.backoff_min_seconds.max(1);
        Ok(Self {
            cluster_resource_namespace: args
                .cluster_resource_namespace
                .clone()
                .unwrap_or_else(|| args.namespace.clone()),
            backoff: Backoff {
                min: Duration::from_secs(min),
                max: Duration::from_secs(args.backoff_max_seconds.max(min)),
            },
            retry: Policy {
                transient_max: Duration::from_secs(args.transient_backoff_max_seconds.max(1)),
                limit: args.acme_max_transient_failures.max(1),
                window: Duration::from_secs(args.acme_transient_window_seconds.max(1)),
                ..Policy::default()
            },
            poll_interval: Duration::from_millis(args.acme_poll_interval_ms.max(10)),
            solver: SolverSettings {
                namespace: args.namespace.clone(),
                service: args.solver_service.clone(),
                port: args.solver_port,
                default_mode: args.http01_solver_mode,
                image: args.acme_http01_solver_image.clone(),
                pod_resources: crate::solver::pod::PodResources {
                    request_cpu: args.acme_http01_solver_resource_request_cpu.clone(),
                    request_memory: args.acme_http01_solver_resource_request_memory.clone(),
                    limit_cpu: args.acme_http01_solver_resource_limit_cpu.clone(),
                    limit_memory: args.acme_http01_solver_resource_limit_memory.clone(),
                },
                path_type: args.http01_ingress_path_type,
                probe: crate::solver::check::Probe {
                    nameservers: args.acme_http01_solver_nameservers.clone(),
                    services: args.service_cluster_ip_range.clone(),
                    http_port: args.http01_self_check_port,
                    via: args.http01_self_check_address.clone(),
                    ..Default::default()
                },
                passes: args.http01_self_check_passes.max(1),
            },
            ari_poll_max: Duration::from_secs(args.ari_poll_max_seconds.max(1)),
            max_challenges: args.max_concurrent_challenges.max(1),
            concurrency: args.concurrent_reconciles,
            certificate_owner_ref: args.enable_certificate_owner_ref,
            dns01: Dns01Settings {
                recursive_nameservers: args.dns01_recursive_nameservers.clone(),
                recursive_only: args.dns01_recursive_nameservers_only,
                cloudflare_api_url: args.cloudflare_api_url.clone(),
            },
            ingress_shim: IngressShim {
                default_issuer_name: args.default_issuer_name.clone().filter(|n| !n.is_empty()),
                default_issuer_kind: args.default_issuer_kind.clone(),
                default_issuer_group: args.default_issuer_group.clone(),
                auto_annotations: args.auto_certificate_annotations.clone(),
                extra_annotations: args.extra_certificate_annotations.clone(),
            },
            controllers: Controllers::parse(&args.controllers)?,
        })
    }
}

/// Backoff bounds, configurable on the controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// First delay after a permanent failure.
    pub min: Duration,
    /// Longest delay after repeated permanent failures.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min: Duration::from_secs(10),
            max: Duration::from_secs(32 * 3600),
        }
    }
}

impl Backoff {
    fn exponential(base: Duration, attempts: u32, cap: Duration) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        base.saturating_mul(factor).min(cap)
    }

    /// Delay before the next attempt after `attempts` consecutive permanent failures (≥ 1).
    pub fn after_failure(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        retry_after.unwrap_or_else(|| Self::exponential(self.min, attempts, self.max))
    }
}

/// The ingress-shim's settings (cert-manager's flags of the same names).
#[derive(Clone, Debug)]
pub struct IngressShim {
    /// `--default-issuer-name`: the issuer of Ingresses that only say
    /// `kubernetes.io/tls-acme: "true"`.
    pub default_issuer_name: Option<String>,
    pub default_issuer_kind: String,
    pub default_issuer_group: String,
    /// `--auto-certificate-annotations`: annotations that, set to true,
    /// ask for a Certificate from the default issuer.
    pub auto_annotations: Vec<String>,
    /// `--extra-certificate-annotations`: Ingress annotations copied to its
    /// Certificates.
    pub extra_annotations: Vec<String>,
}

impl Default for IngressShim {
    fn default() -> Self {
        Self {
            default_issuer_name: None,
            default_issuer_kind: "Issuer".into(),
            default_issuer_group: "cert-manager.io".into(),
            auto_annotations: vec!["kubernetes.io/tls-acme".into()],
            extra_annotations: Vec::new(),
        }
    }
}

/// The controllers `--controllers` may turn off, in cert-manager's names;
/// the rest are one pipeline and always run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Controllers {
    /// `certificaterequests-approver`: approve every ACME request (off
    /// when an approver such as approver-policy decides).
    pub approver: bool,
    /// `ingress-shim`: Certificates for annotated Ingresses.
    pub ingress_shim: bool,
}

impl Default for Controllers {
    fn default() -> Self {
        Self {
            approver: true,
            ingress_shim: true,
        }
    }
}

/// cert-manager's controller names for what certwright always runs.
const PIPELINE: [&str; 12] = [
    "issuers",
    "clusterissuers",
    "certificates-trigger",
    "certificates-issuing",
    "certificates-key-manager",
    "certificates-request-manager",
    "certificates-readiness",
    "certificates-revision-manager",
    "certificaterequests-issuer-acme",
    "orders",
    "challenges",
    "acme",
];

impl Controllers {
    /// Reads cert-manager's `--controllers` list: `*` for the defaults,
    /// `name` to enable, `-name` to disable.
    pub fn parse(list: &[String]) -> Result<Self, String> {
        let mut out = Self {
            approver: false,
            ingress_shim: false,
        };
        for item in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let (on, name) = match item.strip_prefix('-') {
                Some(name) => (false, name),
                None => (true, item),
            };
            match name {
                "*" if on => out = Self::default(),
                "certificaterequests-approver" => out.approver = on,
                "ingress-shim" => out.ingress_shim = on,
                n if PIPELINE.contains(&n) && on => {}
                n if PIPELINE.contains(&n) => {
                    return Err(format!(
                        "--controllers: {n} cannot be turned off in certwright (only certificaterequests-approver and ingress-shim can)"
                    ));
                }
                n => {
                    return Err(format!(
                        "--controllers: unknown controller {n:?} (certwright knows *, certificaterequests-approver, ingress-shim and {})",
                        PIPELINE.join(", ")
                    ));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn settings(flags: &[&str]) -> Result<Settings, String> {
        let line = ["certwright", "controller"].iter().chain(flags);
        let cli = crate::cli::Cli::try_parse_from(line).map_err(|e| e.to_string())?;
        let crate::cli::Command::Controller(args) = cli.command else {
            unreachable!("the controller command")
        };
        Settings::try_from(&*args)
    }

    #[test]
    fn flags_become_settings() {
        let s = settings(&[
            "--namespace=cw",
            "--backoff-min-seconds=5",
            "--backoff-max-seconds=60",
            "--max-concurrent-challenges=7",
            "--concurrent-reconciles=3",
            "--acme-poll-interval-ms=250",
            "--default-issuer-name=le",
            "--controllers=*,-ingress-shim",
        ])
        .expect("settings");
        assert_eq!(
            s.cluster_resource_namespace, "cw",
            "its own namespace by default"
        );
        assert_eq!(s.solver.namespace, "cw");
        assert_eq!(
            s.backoff,
            Backoff {
                min: Duration::from_secs(5),
                max: Duration::from_secs(60)
            }
        );
        assert_eq!(s.max_challenges, 7);
        assert_eq!(s.concurrency, 3);
        assert_eq!(s.poll_interval, Duration::from_millis(250));
        assert_eq!(s.ingress_shim.default_issuer_name.as_deref(), Some("le"));
        assert_eq!(
            s.controllers,
            Controllers {
                approver: true,
                ingress_shim: false
            }
        );
        let s =
            settings(&["--namespace=cw", "--cluster-resource-namespace=crn"]).expect("settings");
        assert_eq!(s.cluster_resource_namespace, "crn");
    }

    #[test]
    fn zero_waits_and_counts_are_clamped_so_nothing_spins() {
        let s = settings(&[
            "--backoff-min-seconds=0",
            "--backoff-max-seconds=0",
            "--acme-poll-interval-ms=0",
            "--max-concurrent-challenges=0",
            "--http01-self-check-passes=0",
            "--ari-poll-max-seconds=0",
            "--acme-max-transient-failures=0",
            "--default-issuer-name=",
        ])
        .expect("settings");
        assert_eq!(s.backoff.min, Duration::from_secs(1));
        assert_eq!(s.backoff.max, Duration::from_secs(1), "never under min");
        assert_eq!(s.poll_interval, Duration::from_millis(10));
        assert_eq!(s.max_challenges, 1);
        assert_eq!(s.solver.passes, 1);
        assert_eq!(s.ari_poll_max, Duration::from_secs(1));
        assert_eq!(s.retry.limit, 1);
        assert_eq!(s.ingress_shim.default_issuer_name, None, "empty is unset");
    }

    #[test]
    fn a_bad_controllers_list_is_refused_with_why() {
        let err = settings(&["--controllers=*,-orders"]).expect_err("refused");
        assert!(err.contains("cannot be turned off"), "{err}");
    }

    #[test]
    fn capped_exponential_and_retry_after_wins() {
        let b = Backoff::default();
        let secs = |d: Duration| d.as_secs_f64();
        assert_eq!(secs(b.after_failure(1, None)), 10.0);
        assert_eq!(secs(b.after_failure(2, None)), 20.0);
        assert_eq!(secs(b.after_failure(8, None)), 1280.0);
        assert_eq!(secs(b.after_failure(15, None)), 115_200.0, "32 h");
        assert_eq!(
            secs(b.after_failure(u32::MAX, None)),
            115_200.0,
            "capped at max"
        );
        assert_eq!(
            b.after_failure(9, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
    }

    fn parse(list: &[&str]) -> Result<Controllers, String> {
        Controllers::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn controllers_read_as_cert_manager_writes_them() {
        assert_eq!(parse(&["*"]), Ok(Controllers::default()));
        assert_eq!(
            parse(&["*", "-certificaterequests-approver"]),
            Ok(Controllers {
                approver: false,
                ingress_shim: true
            })
        );
        assert_eq!(
            parse(&["issuers", "orders", "challenges"]),
            Ok(Controllers {
                approver: false,
                ingress_shim: false
            })
        );
        assert!(
            parse(&["*", "-orders"])
                .unwrap_err()
                .contains("cannot be turned off")
        );
        assert!(
            parse(&["*", "gateway-shim"])
                .unwrap_err()
                .contains("unknown controller")
        );
    }
}
