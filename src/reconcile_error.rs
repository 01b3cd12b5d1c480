//! The error the Order and Challenge controllers return from a reconcile:
//! a Kubernetes API call failed. What the CA says is not an error here: it
//! is handled inside the reconcile and recorded in status.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading or writing {0}: {1}")]
    Api(String, #[source] kube::Error),
    /// Writing the status of the kind named (Order, Challenge).
    #[error("writing the {0}'s status: {1}")]
    WriteStatus(&'static str, #[source] kube::Error),
    /// Removing a presented DNS-01 record failed (retried).
    #[error("removing the DNS-01 record: {0}")]
    Cleanup(String),
}

impl Error {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Api(..) => "Api",
            Self::WriteStatus(..) => "WriteStatus",
            Self::Cleanup(..) => "Cleanup",
        }
    }
}
