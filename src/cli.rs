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
    /// Run the controllers (Issuers, Certificates, CertificateRequests, Orders, Challenges).
    Controller,
    /// Serve HTTP-01 tokens (shared, sidecar or per-challenge Pod).
    Solver,
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

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Yaml,
    Json,
}
