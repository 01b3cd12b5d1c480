//! The cluster both benches measure on: the shared local cluster with
//! cert-manager's CRDs, not certwright's (both controllers run on them, as
//! after a migration), driven from inside its node namespace.

use std::future::Future;

use certwright_testcluster::cluster::{ClusterOptions, LocalCluster};

/// The image whose Pods run `BENCH_BASELINE_BINARY`.
const BASELINE_IMAGE: &str = "certwright/certwright:baseline";

/// Runs `work` on that cluster, inside its node namespace (where the
/// clients, pebble and any token server of the bench live), to its end.
pub fn run_in_node<F, W>(work: W) -> F::Output
where
    W: FnOnce(&'static LocalCluster) -> F,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut options = ClusterOptions::new(env!("CARGO_BIN_EXE_certwright"));
    options.certwright_crds = false;
    // BENCH_BASELINE_BINARY: Pods of the image tagged `baseline` run that
    // binary (an earlier build), for a before and after in one run.
    if let Some(binary) = std::env::var_os("BENCH_BASELINE_BINARY") {
        options
            .images
            .insert(0, (BASELINE_IMAGE.to_string(), binary.into()));
    }
    let cluster = LocalCluster::shared_with(options);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(cluster.in_node(work(cluster)))
}
