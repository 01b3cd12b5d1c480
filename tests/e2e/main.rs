//! The end-to-end suites on the local cluster: one binary, so the cluster
//! boots once per run. Each module is a suite; tests that deploy a
//! controller, or change what the whole cluster sees (the chart, the
//! image's namespace), take turns (`common::env`), and each turn first
//! removes what the last one made.
//!
//! Run one suite with `cargo test --test e2e issuance::`. The suites that
//! need no cluster, the bare control plane's (`tests/control_plane/`), and
//! those that bring a cluster of their own (`cert_manager`, `chaos`,
//! `quickstart`, `check_api`) are binaries of their own.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod cloudflare;
mod dns01;
mod dns01_webhook;
mod failures;
mod helm_release;
mod image;
mod ingress_shim;
mod issuance;
mod leader;
mod local_cluster;
mod metrics;
mod rbac;
mod real_node;
mod renewal;
mod secrets;
mod solver_modes;
