//! The command line: one binary, one subcommand per role.

use clap::{Parser, Subcommand, ValueEnum};

use crate::solver::Mode;
use crate::solver::ingress::PathType;

/// ACME HTTP-01 certificates for Kubernetes, through cert-manager's API.
#[derive(Parser, Debug)]
#[command(name = "certwright", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controllers (Issuers, Certificates, CertificateRequests,
    /// Orders, Challenges) and the shared HTTP-01 solver.
    Controller(Box<ControllerArgs>),
    /// Serve one HTTP-01 token, as a per-challenge solver Pod does, or
    /// (--watch) every sidecar-mode token beside an ingress controller.
    Solver(SolverArgs),
    /// Print the CustomResourceDefinitions certwright serves.
    Crds {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Yaml)]
        output: Format,
    },
    /// Print a Certificate's whole resource tree with conditions, events
    /// and the last error, with what to do about it.
    Status(StatusArgs),
    /// Trigger an immediate re-issuance of Certificates (Issuing=True,
    /// reason ManuallyTriggered), whatever backoff a failure set.
    Renew(RenewArgs),
    /// Print what a Secret's certificate holds.
    Inspect(InspectArgs),
    /// Checks without issuing: that the API serves certwright's kinds, or
    /// that a name's HTTP-01 tokens can be fetched as the CA will.
    Check(CheckArgs),
    /// Print version information.
    Version {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Text)]
        output: Format,
    },
}

#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// certwright's own namespace, where its solver Service lives.
    #[arg(long, env = "POD_NAMESPACE", default_value = "certwright")]
    pub namespace: String,
    /// Namespace of ClusterIssuers' Secrets (account keys); certwright's own by default.
    #[arg(long)]
    pub cluster_resource_namespace: Option<String>,
    /// Address the shared HTTP-01 solver listens on; the Pod IP from the downward API when set.
    #[arg(long, env = "POD_IP", default_value = "0.0.0.0")]
    pub solver_listen_address: String,
    /// Port of the shared HTTP-01 solver.
    #[arg(long, default_value_t = 8089)]
    pub solver_port: u16,
    /// certwright's solver Service (selecting its Pods); the per-namespace
    /// mirror Services get the same name.
    #[arg(long, default_value = "certwright-solver")]
    pub solver_service: String,
    /// Send the HTTP-01 self-check to this host:port (with the challenge's
    /// Host header) instead of the domain's own address: for clusters
    /// whose nodes cannot reach their own load balancer (no hairpin NAT).
    /// An Issuer's `certwright.io/http01-self-check-address` annotation
    /// overrides it.
    #[arg(long)]
    pub http01_self_check_address: Option<String>,
    /// Nameservers (host:port, comma separated) the HTTP-01 self-check
    /// resolves names with, instead of the system resolver (cert-manager's
    /// flag of the same name).
    #[arg(long, value_delimiter = ',')]
    pub acme_http01_solver_nameservers: Vec<std::net::SocketAddr>,
    /// The cluster's Service ranges (CIDR, comma separated), which the
    /// HTTP-01 self-check never fetches after a redirect, like loopback,
    /// link-local and private addresses (unless the first request went
    /// there).
    #[arg(long, value_delimiter = ',')]
    pub service_cluster_ip_range: Vec<crate::solver::check::internal::Cidr>,
    /// The port the self-check fetches `http://` URLs on (80, as the CA;
    /// for tests).
    #[arg(long, default_value_t = 80)]
    pub http01_self_check_port: u16,
    /// Consecutive passes of the self-checks required before the CA is asked.
    #[arg(long, default_value_t = 2)]
    pub http01_self_check_passes: u32,
    /// How HTTP-01 tokens are presented for Issuers without the
    /// `certwright.io/http01-solver-mode` annotation.
    #[arg(long, value_enum, default_value_t = Mode::Shared)]
    pub http01_solver_mode: Mode,
    /// The image of solver Pods (pod mode).
    #[arg(long, default_value = concat!("ghcr.io/certwright/certwright:", env!("CARGO_PKG_VERSION")))]
    pub acme_http01_solver_image: String,
    /// CPU request of solver Pods.
    #[arg(long, default_value = "10m")]
    pub acme_http01_solver_resource_request_cpu: String,
    /// Memory request of solver Pods.
    #[arg(long, default_value = "64Mi")]
    pub acme_http01_solver_resource_request_memory: String,
    /// CPU limit of solver Pods.
    #[arg(long, default_value = "100m")]
    pub acme_http01_solver_resource_limit_cpu: String,
    /// Memory limit of solver Pods.
    #[arg(long, default_value = "64Mi")]
    pub acme_http01_solver_resource_limit_memory: String,
    /// pathType of the solver's Ingress rule: Exact matches only the token
    /// path; some ingress controllers need ImplementationSpecific.
    #[arg(long, value_enum, default_value_t = PathType::Exact)]
    pub http01_ingress_path_type: PathType,
    /// Shortest wait after a failed issuance (seconds).
    #[arg(long, default_value_t = 10)]
    pub backoff_min_seconds: u64,
    /// Longest wait after repeated failed issuances (seconds; cert-manager's 32 h).
    #[arg(long, default_value_t = 115_200)]
    pub backoff_max_seconds: u64,
    /// Longest wait after transient ACME errors (network, 5xx, badNonce),
    /// which start at 1 s and double (seconds).
    #[arg(long, default_value_t = 300)]
    pub transient_backoff_max_seconds: u64,
    /// Transient ACME errors of one step in a row after which the Order
    /// fails (and the Certificate's failure backoff takes over).
    #[arg(long, default_value_t = 8)]
    pub acme_max_transient_failures: u32,
    /// Most requests a second to each ACME server (a token bucket with a
    /// burst of twice as many); an Issuer's annotation
    /// `certwright.io/acme-requests-per-second` sets its server's.
    #[arg(long, default_value_t = 50.0)]
    pub acme_requests_per_second: f64,
    /// Time since the first of a run of transient ACME errors after which
    /// the next failure fails the Order (seconds).
    #[arg(long, default_value_t = 900)]
    pub acme_transient_window_seconds: u64,
    /// Longest interval between polls of an order or authorization the CA
    /// is still working on, when it sends no Retry-After (milliseconds).
    #[arg(long, default_value_t = 1000)]
    pub acme_poll_interval_ms: u64,
    /// Longest wait before asking the CA's renewal information (ARI) again,
    /// whatever its Retry-After says (seconds).
    #[arg(long, default_value_t = 21600)]
    pub ari_poll_max_seconds: u64,
    /// Most Challenges presented and validated at once (one per DNS name
    /// at a time regardless); cert-manager's default is 60 too.
    #[arg(long, default_value_t = 60)]
    pub max_concurrent_challenges: usize,
    /// Most reconciles running at once in each controller; 0 for no limit
    /// but 16 for Certificates (Order and Challenge reconciles wait on the
    /// CA, so a low limit queues whole batches behind a few slow orders; a
    /// thousand Certificate reconciles at once at start cost memory that
    /// stays taken).
    #[arg(long, default_value_t = 0)]
    pub concurrent_reconciles: u16,
    /// Make each Certificate the owner of its Secret, so deleting the
    /// Certificate deletes the Secret (cert-manager's flag of the same name).
    #[arg(long)]
    pub enable_certificate_owner_ref: bool,
    /// Nameservers (host:port, comma separated) for DNS-01's lookups: the
    /// zone of a name, CNAMEs, the addresses of its authoritative
    /// nameservers (cert-manager's flag); /etc/resolv.conf's when unset.
    #[arg(long, value_delimiter = ',')]
    pub dns01_recursive_nameservers: Vec<std::net::SocketAddr>,
    /// Check a DNS-01 record only on those nameservers, not on each
    /// authoritative nameserver of its zone.
    #[arg(long)]
    pub dns01_recursive_nameservers_only: bool,
    /// Cloudflare's API base URL (for tests; Issuers cannot change it).
    #[arg(long, default_value = crate::dns::CLOUDFLARE_API)]
    pub cloudflare_api_url: String,
    /// The issuer of Ingresses that ask for a certificate with only
    /// `kubernetes.io/tls-acme: "true"` (the ingress-shim; cert-manager's
    /// flag of the same name). Without it such Ingresses get a Warning event.
    #[arg(long)]
    pub default_issuer_name: Option<String>,
    /// Kind of the default issuer: `Issuer` (in the Ingress's namespace) or `ClusterIssuer`.
    #[arg(long, default_value = "Issuer")]
    pub default_issuer_kind: String,
    /// API group of the default issuer.
    #[arg(long, default_value = "cert-manager.io")]
    pub default_issuer_group: String,
    /// Ingress annotations that, set to "true", ask for a Certificate from
    /// the default issuer (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "kubernetes.io/tls-acme")]
    pub auto_certificate_annotations: Vec<String>,
    /// Ingress annotations copied onto the Certificates the ingress-shim
    /// makes (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub extra_certificate_annotations: Vec<String>,
    /// Controllers to run, as cert-manager's flag (comma separated): `*`
    /// for all, `-name` to turn one off. Only `certificaterequests-approver`
    /// (for clusters where approver-policy or another approver decides)
    /// and `ingress-shim` can be turned off.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
    /// Where `/metrics` is served (Prometheus text format).
    #[arg(long, default_value = "0.0.0.0:9402")]
    pub metrics_listen_address: std::net::SocketAddr,
    /// Where the probes `/livez` and `/readyz` are served.
    #[arg(long, default_value = "0.0.0.0:9403")]
    pub health_listen_address: std::net::SocketAddr,
    /// `/readyz` fails once the HTTP-01 token watch has been failing for
    /// this many seconds: the replica leaves its Services' endpoints
    /// rather than serve tokens that may be stale, and comes back when a
    /// fresh list succeeds.
    #[arg(long, default_value_t = 30)]
    pub token_watch_grace_seconds: u64,
    /// On shutdown, keep serving the tokens the CA was asked to validate
    /// until their Challenges finish, for this many seconds at most (keep
    /// it under the Pod's terminationGracePeriodSeconds; 0: not at all).
    #[arg(long, default_value_t = 20)]
    pub shutdown_drain_seconds: u64,
    /// Elect a leader among the replicas on a Lease: only the leader
    /// reconciles; every replica serves tokens, metrics and probes.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the leader Lease; certwright's own by default.
    #[arg(long)]
    pub leader_election_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, default_value = "certwright-controller")]
    pub leader_election_lease_name: String,
    /// How long a leader that stopped renewing keeps the Lease (cert-manager's
    /// default). Replicas trust the duration the Lease record states, kept
    /// within 5 s to 1 h, as client-go does.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub leader_election_lease_duration: std::time::Duration,
    /// How long the leader tries to renew before it stops reconciling. Every
    /// try is cut off by what is left of it, so a renewal hung on a
    /// half-open connection cannot keep a stale leader acting after another
    /// could take over. Keep it above twice the API server's latency.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub leader_election_renew_deadline: std::time::Duration,
    /// How often replicas try to acquire or renew the Lease (a Go duration:
    /// `90s`, `1m30s`, `500ms`, as the other two).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_election_retry_period: std::time::Duration,
    /// This replica's identity in the Lease; the Pod name by default.
    #[arg(long, env = "POD_NAME")]
    pub leader_election_identity: Option<String>,
    #[command(flatten)]
    pub logging: LogArgs,
}

/// How logs are written.
#[derive(clap::Args, Debug, Clone)]
pub struct LogArgs {
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More detail: -v for debug, -vv for trace of certwright's own
    /// modules (RUST_LOG, when set, decides instead).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A duration as Go writes them (`90s`, `1m30s`, `1h`, `500ms`) or plain seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(seconds));
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let number: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a duration such as 90s, 1m30s or 500ms"))?;
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => {
                return Err(format!(
                    "{text:?} is not a duration such as 90s, 1m30s or 500ms"
                ));
            }
        };
        total += number * scale;
        rest = tail;
    }
    // A number too large for a Duration is refused, not a panic (found by
    // fuzz/fuzz_targets/durations.rs).
    std::time::Duration::try_from_secs_f64(total)
        .map_err(|_| format!("{text:?} is longer than any wait makes sense"))
}

/// Which cluster the user's commands talk to.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// The kubeconfig to use (else KUBECONFIG, ~/.kube/config, or the Pod's
    /// ServiceAccount).
    #[arg(long, global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use (else its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(subcommand)]
    pub what: StatusCommand,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Subcommand, Debug)]
pub enum StatusCommand {
    /// A Certificate and its Issuer, Secret, CertificateRequest, Order and
    /// Challenges.
    #[command(visible_alias = "cert")]
    Certificate {
        name: String,
        /// The Certificate's namespace (else the context's).
        #[arg(short, long)]
        namespace: Option<String>,
    },
}

#[derive(clap::Args, Debug)]
pub struct RenewArgs {
    /// Certificates to renew, in the namespace.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub names: Vec<String>,
    /// Every Certificate in the namespace (with -A, in every namespace).
    #[arg(long)]
    pub all: bool,
    /// The namespace (else the context's).
    #[arg(short, long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// With --all: every namespace.
    #[arg(short = 'A', long, requires = "all")]
    pub all_namespaces: bool,
    /// With --all: only Certificates matching this label selector.
    #[arg(short = 'l', long, requires = "all")]
    pub selector: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    #[command(subcommand)]
    pub what: InspectCommand,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Subcommand, Debug)]
pub enum InspectCommand {
    /// The certificate in a Secret's tls.crt: names, validity, issuer, key,
    /// serial, fingerprint, chain; whether tls.key matches it.
    Secret {
        name: String,
        /// The Secret's namespace (else the context's).
        #[arg(short, long)]
        namespace: Option<String>,
    },
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[command(subcommand)]
    pub what: CheckCommand,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Subcommand, Debug)]
pub enum CheckCommand {
    /// Whether the API server serves cert-manager.io/v1 and
    /// acme.cert-manager.io/v1 (the CRDs are installed and established):
    /// the chart's post-install check.
    Api {
        /// Keep trying this long before failing (a Go duration).
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        wait: std::time::Duration,
    },
    /// Whether a name's HTTP-01 tokens can be fetched as the CA will fetch
    /// them (resolved, port 80 answering, redirects the CA follows), without
    /// issuing anything; with an issuer, which of its solvers proves it.
    Domain {
        name: String,
        /// The Issuer whose solvers to look at (in --namespace).
        #[arg(long, conflicts_with = "cluster_issuer")]
        issuer: Option<String>,
        /// The ClusterIssuer whose solvers to look at.
        #[arg(long)]
        cluster_issuer: Option<String>,
        /// The Issuer's namespace (else the context's).
        #[arg(short, long)]
        namespace: Option<String>,
        /// Resolve with these nameservers (host:port, comma separated), as
        /// the controller's --acme-http01-solver-nameservers.
        #[arg(long, value_delimiter = ',')]
        nameservers: Vec<std::net::SocketAddr>,
        /// Send the first request here (host:port) with the name as Host,
        /// as the controller's --http01-self-check-address.
        #[arg(long)]
        address: Option<String>,
        /// The port of http:// URLs (80, as the CA; for tests).
        #[arg(long, default_value_t = 80, hide = true)]
        http_port: u16,
    },
}

#[derive(clap::Args, Debug)]
pub struct SolverArgs {
    /// Address to listen on; the Pod IP from the downward API when set.
    #[arg(long, env = "POD_IP", default_value = "0.0.0.0")]
    pub listen_address: String,
    /// Port to listen on.
    #[arg(long, default_value_t = 8089)]
    pub listen_port: u16,
    /// The challenge token (base64url: it may start with `-`).
    #[arg(
        long,
        allow_hyphen_values = true,
        required_unless_present = "watch",
        conflicts_with = "watch"
    )]
    pub token: Option<String>,
    /// The key authorization to answer with.
    #[arg(
        long,
        allow_hyphen_values = true,
        required_unless_present = "watch",
        conflicts_with = "watch"
    )]
    pub key: Option<String>,
    /// The domain the challenge is for (matched against the Host header).
    #[arg(long, required_unless_present = "watch", conflicts_with = "watch")]
    pub domain: Option<String>,
    /// Sidecar mode: serve every live Challenge of the issuers in sidecar
    /// mode, read from the API (any kubeconfig, or the Pod's ServiceAccount).
    #[arg(long)]
    pub watch: bool,
    /// With --watch: the controller's --http01-solver-mode (the mode of
    /// issuers without the annotation).
    #[arg(long, value_enum, default_value_t = Mode::Shared, requires = "watch")]
    pub http01_solver_mode: Mode,
    #[command(flatten)]
    pub logging: LogArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Yaml,
    Json,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn solver_takes_tokens_that_start_with_a_hyphen() {
        let cli = Cli::try_parse_from([
            "certwright",
            "solver",
            "--token",
            "-mX_9",
            "--key",
            "-mX_9.thumb",
            "--domain",
            "a.example",
        ])
        .expect("a base64url token may start with '-'");
        let Command::Solver(args) = cli.command else {
            panic!("not the solver command");
        };
        assert_eq!(
            (args.token.as_deref(), args.key.as_deref()),
            (Some("-mX_9"), Some("-mX_9.thumb"))
        );
    }

    #[test]
    fn durations_as_go_writes_them() {
        use std::time::Duration;
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert!(parse_duration("soon").is_err_and(|e| e.contains("90s")));
        // Found by fuzz/fuzz_targets/durations.rs: a panic before.
        assert!(parse_duration("216099999999921609999999999h").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn leader_election_is_on_unless_turned_off() {
        let on = Cli::try_parse_from(["certwright", "controller"]).expect("defaults");
        let Command::Controller(args) = on.command else {
            panic!("controller")
        };
        assert!(args.leader_elect);
        let off = Cli::try_parse_from([
            "certwright",
            "controller",
            "--leader-elect=false",
            "-vv",
            "--log-format",
            "json",
        ])
        .expect("flags");
        let Command::Controller(args) = off.command else {
            panic!("controller")
        };
        assert!(!args.leader_elect);
        assert_eq!(
            (args.logging.verbose, args.logging.log_format),
            (2, LogFormat::Json)
        );
    }

    #[test]
    fn solver_needs_a_token_or_watch_but_not_both() {
        assert!(Cli::try_parse_from(["certwright", "solver"]).is_err());
        let watch =
            Cli::try_parse_from(["certwright", "solver", "--watch"]).expect("--watch alone");
        assert!(matches!(watch.command, Command::Solver(a) if a.watch));
        assert!(
            Cli::try_parse_from(["certwright", "solver", "--watch", "--token", "t"]).is_err(),
            "--watch serves from the API, not a given token"
        );
    }
}
