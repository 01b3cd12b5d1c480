//! The command line: one binary, one subcommand per role.

use clap::{Parser, Subcommand, ValueEnum};

/// ACME HTTP-01 certificates for Kubernetes, through cert-manager's API.
#[derive(Parser, Debug)]
#[command(name = "certwright", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controllers. Today: Issuers and ClusterIssuers (ACME accounts);
    /// Certificates, CertificateRequests, Orders and Challenges join them.
    Controller(ControllerArgs),
    /// Serve HTTP-01 tokens. Today: one token, as a per-challenge solver Pod
    /// runs it; the shared and sidecar modes (`--watch`) come with the controller.
    Solver(SolverArgs),
    /// Print the CustomResourceDefinitions certwright serves.
    Crds {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Yaml)]
        output: Format,
    },
    /// Print a Certificate's whole resource tree with conditions, events and last errors.
    Status,
    /// Trigger an immediate re-issuance of a Certificate.
    Renew,
    /// Check an Issuer, a Certificate or a domain's reachability without issuing.
    Check,
    /// Print version information.
    Version {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Text)]
        output: Format,
    },
}

#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Namespace of ClusterIssuers' Secrets (account keys); certwright's own by default.
    #[arg(long, env = "POD_NAMESPACE", default_value = "certwright")]
    pub cluster_resource_namespace: String,
}

#[derive(clap::Args, Debug)]
pub struct SolverArgs {
    /// Address to listen on; the Pod IP from the downward API when set.
    #[arg(long, env = "POD_IP", default_value = "0.0.0.0")]
    pub listen_address: String,
    /// Port to listen on.
    #[arg(long, default_value_t = 8089)]
    pub listen_port: u16,
    /// The challenge token.
    #[arg(long)]
    pub token: String,
    /// The key authorization to answer with.
    #[arg(long)]
    pub key: String,
    /// The domain the challenge is for (matched against the Host header).
    #[arg(long)]
    pub domain: String,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Yaml,
    Json,
}
