//! certwright's API: the types round-trip every fixture, and on the real
//! control plane (kube-apiserver, kube-controller-manager and etcd, built
//! from their published modules):
//! the CRDs are accepted and their CEL rules compiled, the rules reject
//! what they should with the API server's own messages, cert-manager-shaped
//! manifests are stored with nothing pruned, the real kubectl works with no
//! special flags, RBAC answers, and the real garbage collector follows our
//! ownerReferences. One control plane serves the whole binary.

#[path = "../common/mod.rs"]
mod common;

mod fixtures;
mod gc;
mod kubectl;
mod schema;
