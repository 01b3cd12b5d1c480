//! Test support for certwright, never shipped in the controller binary.
//!
//! - [`control_plane`]: the real etcd, kube-apiserver and
//!   kube-controller-manager, built by `scripts/install-tools`.
//! - [`cluster`]: the local cluster around it (node and Pod network
//!   namespaces, process kubelet, Service proxy, ingress router, API fault
//!   proxy, audit log).
//! - [`pebble`], [`acme_proxy`], [`connect_proxy`]: the ACME side.
//! - [`bind`]: BIND 9, the authoritative DNS server of the DNS-01 tests.
//! - [`node`]: a real node beside it (containerd, kubelet, kube-proxy,
//!   kube-scheduler), running images built by buildah.
//! - [`deploy`]: certwright installed as the chart installs it.
//! - [`cert_manager`]: cert-manager itself, from its chart and module.
//! - [`process`], [`netns`]: children that die with the run, namespaces
//!   held by a process.
//! - [`tools`]: the pinned, cached Go-built binaries.

pub mod acme_proxy;
pub mod bind;
pub mod cert_manager;
pub mod cluster;
pub mod connect_proxy;
pub mod control_plane;
pub mod deploy;
pub mod netns;
pub mod node;
pub mod pebble;
pub mod process;
pub mod tools;
