//! Test support for certwright, never shipped in the controller binary.
//!
//! - [`schema`]: validates custom resources against a CRD's openAPIV3Schema
//!   the way a real API server does (pruning, types, required, enum, formats,
//!   bounds, list types, CEL rules), so tests and the API emulator can answer
//!   422 Invalid with Kubernetes-shaped field errors.
//! - [`apiserver`]: a Kubernetes API server emulator on loopback for the real
//!   `kube` client and `kubectl`.

pub mod acme_proxy;
pub mod apiserver;
pub mod cluster;
pub mod connect_proxy;
pub mod control_plane;
pub mod deploy;
pub mod netns;
pub mod pebble;
pub mod process;
pub mod schema;
