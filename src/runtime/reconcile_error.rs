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
    #[error(transparent)]
    Panicked(#[from] Panicked),
}

impl Error {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Api(..) => "Api",
            Self::WriteStatus(..) => "WriteStatus",
            Self::Cleanup(..) => "Cleanup",
            Self::Panicked(_) => "Panicked",
        }
    }
}

/// A reconcile that panicked: a bug, or input nothing checked. It is that
/// object's error (retried on the controller's error backoff), never the
/// process's exit, which would take every other object and tenant down
/// with it, and again after each restart.
#[derive(Debug, thiserror::Error)]
#[error("the reconcile panicked (a bug; please report it): {0}")]
pub struct Panicked(pub String);

/// Runs one reconcile of `controller`, turning a panic into its error:
/// logged with the object, counted in `certwright_reconcile_panics_total`.
pub async fn guard<T, E: From<Panicked>>(
    controller: &'static str,
    object: String,
    reconcile: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(reconcile).catch_unwind().await {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            tracing::error!(controller, %object, panic = %message, "reconcile panicked; the controller carries on");
            crate::metrics::reconcile_panicked(controller);
            Err(E::from(Panicked(message)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_the_objects_error() {
        let result: Result<(), Error> = guard("orders", "ns/o".into(), async {
            let huge = std::time::Duration::MAX;
            let _ = std::time::Instant::now() + huge;
            Ok(())
        })
        .await;
        match result {
            Err(Error::Panicked(Panicked(message))) => {
                assert!(message.contains("overflow"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let fine: Result<u8, Error> = guard("orders", "ns/o".into(), async { Ok(7) }).await;
        assert_eq!(fine.ok(), Some(7));
    }
}
