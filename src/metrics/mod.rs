//! What `/metrics` (port 9402) serves: cert-manager's series under their
//! names, so existing dashboards and alerts keep working, and certwright's
//! own (`certwright_…`, bounded labels only: never an error string or a
//! domain). Counters and histograms live in one process-wide registry;
//! the Certificate, Challenge and issuer gauges are computed at scrape
//! time from the leader's watch caches (see [`series`]).

pub mod api;
pub mod series;

use std::sync::{LazyLock, RwLock};
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder, exponential_buckets,
};

use crate::api::{Certificate, Challenge, ClusterIssuer, Issuer};

/// The caches the scrape-time series are computed from (the leader's).
#[derive(Clone)]
pub struct Caches {
    pub certificates: Store<Certificate>,
    pub challenges: Store<Challenge>,
    pub issuers: Store<Issuer>,
    pub cluster_issuers: Store<ClusterIssuer>,
}

struct Metrics {
    registry: Registry,
    acme_requests: IntCounterVec,
    acme_duration: HistogramVec,
    sync_calls: IntCounterVec,
    sync_errors: IntCounterVec,
    clock: prometheus::Gauge,
    stages: HistogramVec,
    time_to_ready: Histogram,
    self_checks: IntCounterVec,
    acme_problems: IntCounterVec,
    solver_requests: IntCounterVec,
    api_requests: IntCounterVec,
    leader: IntGauge,
    resident: IntGauge,
    retry_delays: HistogramVec,
    panics: IntCounterVec,
    ceiling_waits: Histogram,
    paused: prometheus::IntGaugeVec,
    budget_remaining: prometheus::IntGaugeVec,
    budget_limit: prometheus::IntGaugeVec,
    limit_holds: prometheus::GaugeVec,
    caches: RwLock<Option<Caches>>,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    registry.register(Box::new(c.clone())).expect("unique name");
    c
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid histogram");
    registry.register(Box::new(h.clone())).expect("unique name");
    h
}

/// A histogram without labels, on [`slow_buckets`].
fn single_histogram(registry: &Registry, name: &str, help: &str) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(slow_buckets()))
        .expect("valid histogram");
    registry.register(Box::new(h.clone())).expect("unique name");
    h
}

fn int_gauges(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::IntGaugeVec {
    let g = prometheus::IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
    registry.register(Box::new(g.clone())).expect("unique name");
    g
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid gauge");
    registry.register(Box::new(g.clone())).expect("unique name");
    g
}

/// 10 ms to ~3 h: an issuance takes seconds, one waiting on a CA outage hours.
fn slow_buckets() -> Vec<f64> {
    exponential_buckets(0.01, 2.5, 14).expect("valid buckets")
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new();
    let clock = prometheus::Gauge::new(
        "certmanager_clock_time_seconds_gauge",
        "The clock time given in seconds (from 1970/01/01 UTC).",
    )
    .expect("valid gauge");
    r.register(Box::new(clock.clone())).expect("unique name");
    Metrics {
        acme_requests: counter(
            &r,
            "certmanager_http_acme_client_request_count",
            "The number of requests made by the ACME client.",
            &["scheme", "host", "action", "method", "status"],
        ),
        acme_duration: histogram(
            &r,
            "certmanager_http_acme_client_request_duration_seconds",
            "The HTTP request latencies in seconds for the ACME client.",
            &["scheme", "host", "action", "method", "status"],
            exponential_buckets(0.005, 2.0, 14).expect("valid buckets"),
        ),
        sync_calls: counter(
            &r,
            "certmanager_controller_sync_call_count",
            "The number of sync() calls made by a controller.",
            &["controller"],
        ),
        sync_errors: counter(
            &r,
            "certmanager_controller_sync_error_count",
            "The number of errors encountered during controller sync().",
            &["controller"],
        ),
        clock,
        stages: histogram(
            &r,
            "certwright_stage_duration_seconds",
            "Time to reach each stage of an issuance, from the stage's start (see docs/operations.md).",
            &["stage"],
            slow_buckets(),
        ),
        time_to_ready: single_histogram(
            &r,
            "certwright_certificate_time_to_ready_seconds",
            "Time from a Certificate starting to issue to its Secret being written.",
        ),
        self_checks: counter(
            &r,
            "certwright_self_check_total",
            "HTTP-01 self-check results, by result (passed or the cause of the failure).",
            &["result"],
        ),
        acme_problems: counter(
            &r,
            "certwright_acme_problems_total",
            "Problem documents from the CA, by ACME error type.",
            &["type"],
        ),
        solver_requests: counter(
            &r,
            "certwright_solver_requests_total",
            "Requests to this process's HTTP-01 solver, by result.",
            &["result"],
        ),
        api_requests: counter(
            &r,
            "certwright_kube_api_requests_total",
            "Requests to the Kubernetes API server, by verb and status code.",
            &["verb", "code"],
        ),
        leader: gauge(
            &r,
            "certwright_leader",
            "1 while this replica holds the leader Lease and reconciles.",
        ),
        resident: gauge(
            &r,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        ),
        retry_delays: histogram(
            &r,
            "certwright_acme_retry_delay_seconds",
            "Delays the CA retry policy scheduled after a failed ACME call, by step and kind (transient, lost, config).",
            &["step", "kind"],
            slow_buckets(),
        ),
        panics: counter(
            &r,
            "certwright_reconcile_panics_total",
            "Reconciles that panicked (each became that object's error; the process kept running), by controller.",
            &["controller"],
        ),
        ceiling_waits: single_histogram(
            &r,
            "certwright_acme_ceiling_wait_seconds",
            "How long requests to a CA waited for the per-CA request ceiling (only those that waited).",
        ),
        paused: int_gauges(
            &r,
            "certwright_acme_paused_identifiers",
            "Identifiers a CA has paused for the ACME account of an issuer (only its portal lifts a pause; the Order's reason has the link).",
            &["issuer_kind", "issuer"],
        ),
        budget_remaining: int_gauges(
            &r,
            "certwright_acme_budget_remaining",
            "What is left of a CA's published limit, as certwright counts its own requests (the tightest of its keys last checked).",
            &["issuer_kind", "issuer", "limit"],
        ),
        budget_limit: int_gauges(
            &r,
            "certwright_acme_budget_limit",
            "The size of a CA's published limit that certwright keeps as a budget.",
            &["issuer_kind", "issuer", "limit"],
        ),
        limit_holds: {
            let g = prometheus::GaugeVec::new(
                Opts::new(
                    "certwright_acme_rate_limit_hold_seconds",
                    "How long the last new order held back by a CA's limit waits for its slot.",
                ),
                &["issuer_kind", "issuer", "limit"],
            )
            .expect("valid gauge");
            r.register(Box::new(g.clone())).expect("unique name");
            g
        },
        registry: r,
        caches: RwLock::new(None),
    }
});

/// Which ACME call a URL path is, as a bounded label: the resource names
/// of Let's Encrypt (boulder) and pebble; anything else is `other`.
pub fn acme_action(method: &str, path: &str) -> &'static str {
    let p = path.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| p.contains(w));
    if has(&["renewal-info", "renewalinfo"]) {
        "renewal_info"
    } else if has(&["nonce"]) {
        "new_nonce"
    } else if has(&["new-acct", "sign-me-up"]) {
        "new_account"
    } else if has(&["new-order", "order-plz"]) {
        "new_order"
    } else if has(&["finalize"]) {
        "finalize"
    } else if has(&["authz"]) {
        "authorization"
    } else if has(&["chal"]) {
        "challenge"
    } else if has(&["cert"]) && !has(&["revoke"]) {
        "certificate"
    } else if has(&["order"]) {
        "order"
    } else if has(&["revoke"]) {
        "revoke"
    } else if has(&["key-change", "rollover"]) {
        "key_change"
    } else if has(&["acct", "account"]) {
        "account"
    } else if method == "GET" && has(&["dir"]) {
        "directory"
    } else {
        "other"
    }
}

/// One request of the ACME client to `url` and how it ended (status 0:
/// no answer).
pub fn acme_request(url: &hyper::Uri, method: &str, status: u16, took: Duration) {
    let scheme = url.scheme_str().unwrap_or("");
    let host = url.authority().map(|a| a.as_str()).unwrap_or("");
    let action = acme_action(method, url.path());
    let status = status.to_string();
    let labels = [scheme, host, action, method, status.as_str()];
    METRICS.acme_requests.with_label_values(&labels).inc();
    METRICS
        .acme_duration
        .with_label_values(&labels)
        .observe(took.as_secs_f64());
}

/// The CA's problem types (RFC 8555 6.7 and later); others count as `other`.
const PROBLEMS: [&str; 26] = [
    "accountDoesNotExist",
    "alreadyReplaced",
    "alreadyRevoked",
    "badCSR",
    "badNonce",
    "badPublicKey",
    "badRevocationReason",
    "badSignatureAlgorithm",
    "caa",
    "compound",
    "connection",
    "dns",
    "externalAccountRequired",
    "incorrectResponse",
    "invalidContact",
    "invalidProfile",
    "malformed",
    "orderNotReady",
    "rateLimited",
    "rejectedIdentifier",
    "serverInternal",
    "tls",
    "unauthorized",
    "unsupportedContact",
    "unsupportedIdentifier",
    "userActionRequired",
];

/// A problem document of type `problem_type` from the CA.
pub fn acme_problem(problem_type: &str) {
    let short = problem_type
        .strip_prefix("urn:ietf:params:acme:error:")
        .unwrap_or(problem_type);
    let label = PROBLEMS
        .iter()
        .find(|p| **p == short)
        .copied()
        .unwrap_or("other");
    METRICS.acme_problems.with_label_values(&[label]).inc();
}

/// The ACME steps the retry policy names, as bounded labels.
pub const RETRY_STEPS: [&str; 9] = [
    "issuer",
    "account",
    "newOrder",
    "order",
    "authorizations",
    "finalize",
    "certificate",
    "validate",
    "replace",
];

/// The retry policy scheduled the next try of `step` in `wait`.
pub fn acme_retry_delay(step: &str, kind: &'static str, wait: Duration) {
    let step = RETRY_STEPS
        .iter()
        .find(|s| **s == step)
        .copied()
        .unwrap_or("other");
    METRICS
        .retry_delays
        .with_label_values(&[step, kind])
        .observe(wait.as_secs_f64());
}

/// What is left of a budget of an issuer, and its size.
pub fn set_budget(kind: &str, issuer: &str, limit: &str, left: u32, size: u32) {
    let labels = [kind, issuer, limit];
    METRICS
        .budget_remaining
        .with_label_values(&labels)
        .set(i64::from(left));
    METRICS
        .budget_limit
        .with_label_values(&labels)
        .set(i64::from(size));
}

/// A new order of an issuer waits `wait` for a slot of `limit`.
pub fn set_limit_hold(kind: &str, issuer: &str, limit: &str, wait: Duration) {
    METRICS
        .limit_holds
        .with_label_values(&[kind, issuer, limit])
        .set(wait.as_secs_f64());
}

/// How many identifiers are paused now, by issuer (kind, name, count).
pub fn set_paused_identifiers<'a>(by_issuer: impl Iterator<Item = (&'a str, &'a str, usize)>) {
    METRICS.paused.reset();
    for (kind, name, n) in by_issuer {
        METRICS
            .paused
            .with_label_values(&[kind, name])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// A request to a CA waited `wait` for the per-CA ceiling.
pub fn acme_ceiling_wait(wait: Duration) {
    METRICS.ceiling_waits.observe(wait.as_secs_f64());
}

/// A reconcile of `controller` panicked.
pub fn reconcile_panicked(controller: &'static str) {
    METRICS.panics.with_label_values(&[controller]).inc();
}

/// One reconcile of `controller` begins.
pub fn sync(controller: &'static str) {
    METRICS.sync_calls.with_label_values(&[controller]).inc();
}

/// One reconcile of `controller` failed.
pub fn sync_error(controller: &'static str) {
    METRICS.sync_errors.with_label_values(&[controller]).inc();
}

/// The stages of [`stage`], in issuance order.
pub const STAGES: [&str; 6] = [
    "key_generated",
    "order_placed",
    "challenge_presented",
    "self_check_passed",
    "ca_valid",
    "issued",
];

/// Reaching `stage` (one of [`STAGES`]) `took` after the stage started.
pub fn stage(stage: &'static str, took: Duration) {
    debug_assert!(STAGES.contains(&stage));
    METRICS
        .stages
        .with_label_values(&[stage])
        .observe(took.as_secs_f64());
}

/// Reaching `stage` now, timed from the creation of the object `meta`.
pub fn stage_since(
    name: &'static str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) {
    if let Some(created) = &meta.creation_timestamp {
        stage(name, since(&created.0));
    }
}

/// Runs `work` and observes how long it took as `stage`.
pub fn timed<T>(name: &'static str, work: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let out = work();
    stage(name, started.elapsed());
    out
}

/// The time since `since` (an object's timestamp), zero if in the future.
pub fn since(since: &k8s_openapi::jiff::Timestamp) -> Duration {
    let now = k8s_openapi::jiff::Timestamp::now();
    Duration::try_from(now.duration_since(*since)).unwrap_or_default()
}

/// A Certificate's Secret written, `took` after it started issuing.
pub fn ready_after(took: Duration) {
    METRICS.time_to_ready.observe(took.as_secs_f64());
}

/// One self-check result: `passed` or the cause of the failure.
pub fn self_check(result: &'static str) {
    METRICS.self_checks.with_label_values(&[result]).inc();
}

/// One request to this process's solver, by result.
pub fn solver_request(result: &'static str) {
    METRICS.solver_requests.with_label_values(&[result]).inc();
}

/// One request to the API server.
pub fn api_request(verb: &'static str, code: u16) {
    METRICS
        .api_requests
        .with_label_values(&[verb, &code.to_string()])
        .inc();
}

/// Whether this replica leads.
pub fn set_leader(leading: bool) {
    METRICS.leader.set(i64::from(leading));
}

/// The caches to compute the scrape-time series from (None: not leading).
pub fn set_caches(caches: Option<Caches>) {
    *METRICS.caches.write().unwrap_or_else(|e| e.into_inner()) = caches;
}

/// VmRSS from /proc/self/status (in kB there, whatever the page size).
fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Everything in Prometheus' text format.
pub fn render() -> String {
    METRICS
        .clock
        .set(k8s_openapi::jiff::Timestamp::now().as_millisecond() as f64 / 1000.0);
    if let Some(bytes) = resident_bytes() {
        METRICS.resident.set(bytes);
    }
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&METRICS.registry.gather(), &mut out) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    let mut text = String::from_utf8(out).unwrap_or_default();
    let caches = METRICS
        .caches
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Some(c) = caches {
        let mut samples = Vec::new();
        for cert in c.certificates.state() {
            samples.extend(series::certificate(&cert));
        }
        for ch in c.challenges.state() {
            samples.extend(series::challenge(&ch));
        }
        for i in c.issuers.state() {
            let conditions = i.status.as_ref().and_then(|s| s.conditions.as_ref());
            samples.extend(series::issuer(i.name_any(), i.namespace(), conditions));
        }
        for i in c.cluster_issuers.state() {
            let conditions = i.status.as_ref().and_then(|s| s.conditions.as_ref());
            samples.extend(series::issuer(i.name_any(), None, conditions));
        }
        text.push_str(&series::render(&samples));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acme_actions_are_named_for_boulder_and_pebble_paths() {
        for (method, path, want) in [
            ("GET", "/directory", "directory"),
            ("GET", "/dir", "directory"),
            ("HEAD", "/acme/new-nonce", "new_nonce"),
            ("HEAD", "/nonce-plz", "new_nonce"),
            ("POST", "/acme/new-acct", "new_account"),
            ("POST", "/sign-me-up", "new_account"),
            ("POST", "/acme/new-order", "new_order"),
            ("POST", "/order-plz", "new_order"),
            ("POST", "/acme/authz/123/456", "authorization"),
            ("POST", "/authZ/abc", "authorization"),
            ("POST", "/acme/chall/1/2/x", "challenge"),
            ("POST", "/chalZ/abc", "challenge"),
            ("POST", "/acme/finalize/1/2", "finalize"),
            ("POST", "/finalize-order/abc", "finalize"),
            ("POST", "/acme/order/1/2", "order"),
            ("POST", "/my-order/abc", "order"),
            ("POST", "/acme/cert/abc", "certificate"),
            ("POST", "/certZ/abc", "certificate"),
            (
                "GET",
                "/draft-ietf-acme-ari-03/renewalInfo/x.y",
                "renewal_info",
            ),
            ("GET", "/acme/renewal-info/x.y", "renewal_info"),
            ("POST", "/acme/revoke-cert", "revoke"),
            ("POST", "/acme/acct/12", "account"),
            ("POST", "/my-account/12", "account"),
            ("POST", "/acme/key-change", "key_change"),
            ("GET", "/favicon.ico", "other"),
        ] {
            assert_eq!(acme_action(method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn the_registry_renders_cert_managers_names_and_ours() {
        acme_request(
            &"https://ca.test:14000/order-plz".parse().expect("uri"),
            "POST",
            201,
            Duration::from_millis(12),
        );
        acme_problem("urn:ietf:params:acme:error:rateLimited");
        acme_problem("urn:example:made-up");
        sync("orders");
        sync_error("orders");
        stage("issued", Duration::from_secs(3));
        let text = render();
        assert!(text.contains(
            r#"certmanager_http_acme_client_request_count{action="new_order",host="ca.test:14000",method="POST",scheme="https",status="201"}"#
        ), "{text}");
        assert!(text.contains("certmanager_http_acme_client_request_duration_seconds_bucket{"));
        assert!(text.contains(r#"certwright_acme_problems_total{type="rateLimited"}"#));
        assert!(text.contains(r#"certwright_acme_problems_total{type="other"}"#));
        assert!(text.contains(r#"certmanager_controller_sync_error_count{controller="orders"}"#));
        assert!(text.contains(r#"certwright_stage_duration_seconds_count{stage="issued"}"#));
        assert!(text.contains("certmanager_clock_time_seconds_gauge "));
    }
}
