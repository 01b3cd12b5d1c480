//! certwright: an ACME HTTP-01 certificate controller for Kubernetes that
//! serves cert-manager's API.

pub mod api;
pub mod cli;
