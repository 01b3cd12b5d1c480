//! What every controller shares.

/// Shared by every reconcile.
#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    /// Where ClusterIssuers' Secrets (account keys) live.
    pub cluster_resource_namespace: String,
}
