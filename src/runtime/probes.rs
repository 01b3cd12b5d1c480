//! The operator's endpoints: `/metrics` (port 9402, Prometheus text
//! format) and the probes on port 9403: `/livez` fails when this replica
//! leads but could not renew its Lease for longer than the renew deadline
//! plus a grace (as cert-manager's `/livez/leaderElection`), or when the
//! wall clock jumped against the monotonic one (renewal times would be
//! computed from a wrong "now": a restart starts clean); `/readyz` holds
//! once every watch this replica runs has listed (the tokens it serves,
//! and the controllers' caches while it leads), and fails again while the
//! token watch has been failing for longer than a grace: a replica that
//! may serve stale tokens leaves its Services' endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hyper::StatusCode;

use crate::runtime::leader::Elector;
use crate::solver::server::{self, Handler, Limits};
use crate::solver::shared::TokenWatch;

/// A leader that has not renewed for its renew deadline plus this is stuck.
const LEADER_GRACE: Duration = Duration::from_secs(20);
/// A wall-clock jump beyond this against the monotonic clock fails `/livez`.
pub const MAX_CLOCK_JUMP: Duration = Duration::from_secs(60);

/// What the probes report, shared with whoever knows.
pub struct Health {
    /// The shared solver's token watch.
    pub tokens: TokenWatch,
    /// How long the token watch may fail before the replica is not ready.
    token_watch_grace: Duration,
    /// The leader's controller caches have listed (false while not leading).
    pub caches_synced: AtomicBool,
    /// Whether this replica leads (always, without leader election).
    elector: Option<Arc<Elector>>,
    started_wall: SystemTime,
    started: Instant,
}

impl Health {
    pub fn new(elector: Option<Arc<Elector>>, token_watch_grace: Duration) -> Self {
        Self {
            tokens: TokenWatch::default(),
            token_watch_grace,
            caches_synced: AtomicBool::new(false),
            elector,
            started_wall: SystemTime::now(),
            started: Instant::now(),
        }
    }

    fn leading(&self) -> bool {
        self.elector.as_ref().is_none_or(|e| e.is_leading())
    }

    /// Ok, or why this process should be restarted.
    pub fn livez(&self) -> Result<(), String> {
        if let Some(e) = &self.elector {
            let deadline = e.settings().renew_deadline + LEADER_GRACE;
            if let Some(since) = e.since_renewed().filter(|s| *s > deadline) {
                return Err(format!(
                    "leader election: the lease was last renewed {} s ago (deadline {} s)",
                    since.as_secs(),
                    deadline.as_secs()
                ));
            }
        }
        clock_jump(
            self.started_wall,
            self.started,
            SystemTime::now(),
            Instant::now(),
        )
    }

    /// Ok, or what has not synced yet.
    pub fn readyz(&self) -> Result<(), String> {
        if !self.tokens.listed() {
            return Err("the HTTP-01 token watch has not listed yet".into());
        }
        if let Some(failing) = self
            .tokens
            .failing_for()
            .filter(|f| *f > self.token_watch_grace)
        {
            return Err(format!(
                "the HTTP-01 token watch has been failing for {} s (grace {} s): the tokens served may be stale",
                failing.as_secs(),
                self.token_watch_grace.as_secs()
            ));
        }
        if self.leading() && !self.caches_synced.load(Ordering::Relaxed) {
            return Err("leading, and the controllers' caches have not listed yet".into());
        }
        Ok(())
    }
}

/// Err when the wall clock moved more than [`MAX_CLOCK_JUMP`] away from
/// the monotonic clock since the start.
pub fn clock_jump(
    wall_start: SystemTime,
    mono_start: Instant,
    wall_now: SystemTime,
    mono_now: Instant,
) -> Result<(), String> {
    let mono = mono_now.duration_since(mono_start).as_secs_f64();
    let wall = match wall_now.duration_since(wall_start) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    let jump = wall - mono;
    if jump.abs() > MAX_CLOCK_JUMP.as_secs_f64() {
        return Err(format!(
            "the system clock jumped {jump:+.0} s since the start: restart to recompute renewal times"
        ));
    }
    Ok(())
}

fn probe(result: Result<(), String>) -> hyper::Response<http_body_util::Full<hyper::body::Bytes>> {
    match result {
        Ok(()) => server::text(StatusCode::OK, "text/plain", "ok\n".into()),
        Err(why) => server::text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", why + "\n"),
    }
}

/// Serves `/metrics` on `metrics` and the probes on `probes` until dropped.
pub async fn serve(
    metrics: SocketAddr,
    probes: SocketAddr,
    health: Arc<Health>,
) -> std::io::Result<()> {
    let metrics_handler: Handler = Arc::new(|request| match request.uri().path() {
        "/metrics" => server::text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            crate::metrics::render(),
        ),
        _ => server::text(StatusCode::NOT_FOUND, "text/plain", String::new()),
    });
    let probes_handler: Handler = Arc::new(move |request| match request.uri().path() {
        "/livez" | "/healthz" => probe(health.livez()),
        "/readyz" => probe(health.readyz()),
        _ => server::text(StatusCode::NOT_FOUND, "text/plain", String::new()),
    });
    let limits = Limits {
        max_connections: 64,
        ..Limits::default()
    };
    tracing::info!(%metrics, %probes, "serving /metrics and /livez, /readyz");
    tokio::try_join!(
        server::serve_handler(metrics, metrics_handler, limits, std::future::pending()),
        server::serve_handler(probes, probes_handler, limits, std::future::pending()),
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_that_jumps_fails_liveness_and_one_that_ticks_does_not() {
        let (wall, mono) = (SystemTime::now(), Instant::now());
        let later = Duration::from_secs(600);
        assert!(clock_jump(wall, mono, wall + later, mono + later).is_ok());
        assert!(
            clock_jump(
                wall,
                mono,
                wall + later + Duration::from_secs(30),
                mono + later
            )
            .is_ok()
        );
        let ahead = clock_jump(
            wall,
            mono,
            wall + later + Duration::from_secs(3600),
            mono + later,
        );
        assert!(ahead.is_err_and(|e| e.contains("+3600 s")));
        let behind = clock_jump(wall, mono, wall, mono + later);
        assert!(behind.is_err_and(|e| e.contains("-600 s")));
    }

    #[test]
    fn readiness_waits_for_the_tokens_and_the_leaders_caches() {
        let health = Health::new(None, Duration::from_secs(30));
        assert!(health.readyz().is_err_and(|e| e.contains("token")));
        health.tokens.up();
        assert!(health.readyz().is_err_and(|e| e.contains("caches")));
        health.caches_synced.store(true, Ordering::Relaxed);
        assert!(health.readyz().is_ok());
        assert!(health.livez().is_ok());
    }

    #[test]
    fn readiness_fails_while_the_token_watch_fails_past_its_grace() {
        let health = Health::new(None, Duration::ZERO);
        health.tokens.up();
        health.caches_synced.store(true, Ordering::Relaxed);
        health.tokens.failed();
        std::thread::sleep(Duration::from_millis(2));
        assert!(health.readyz().is_err_and(|e| e.contains("failing for")));
        health.tokens.up();
        assert!(health.readyz().is_ok());
        let patient = Health::new(None, Duration::from_secs(30));
        patient.tokens.up();
        patient.caches_synced.store(true, Ordering::Relaxed);
        patient.tokens.failed();
        assert!(patient.readyz().is_ok(), "within its grace");
    }
}
