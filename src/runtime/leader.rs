//! Leader election on a coordination.k8s.io Lease, as client-go does it:
//! every write is a compare-and-swap on the Lease's resourceVersion, a
//! holder is presumed gone once its record has not changed for the lease
//! duration as measured by *our* monotonic clock (never by comparing
//! clocks across machines), the leader renews every retry period and
//! steps down when it could not renew within the renew deadline (each try
//! is cut off by what is left of that deadline, so a renewal hung on a
//! half-open connection cannot keep a stale leader acting), and a clean
//! shutdown releases the Lease so a successor need not wait. Another
//! holder's term is the one its record states (`leaseDurationSeconds`,
//! clamped: it is outside input).
//!
//! The decisions are pure ([`decide`]); [`Elector`] does the I/O.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// Where the Lease is and how long its terms are.
#[derive(Clone, Debug)]
pub struct Settings {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (its Pod name).
    pub identity: String,
    /// How long a holder that stopped renewing keeps the Lease.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it steps down.
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew.
    pub retry_period: Duration,
}

/// The shortest and longest term a Lease record may state.
pub const MIN_LEASE: Duration = Duration::from_secs(5);
pub const MAX_LEASE: Duration = Duration::from_secs(3600);

/// The term a holder's record states (`leaseDurationSeconds`), within
/// [`MIN_LEASE`]..=[`MAX_LEASE`]; `ours` when it states none.
pub fn stated_term(seconds: Option<i32>, ours: Duration) -> Duration {
    match seconds {
        Some(s) if s > 0 => Duration::from_secs(s as u64).clamp(MIN_LEASE, MAX_LEASE),
        _ => ours,
    }
}

/// How long the next try on the Lease may take: while leading, what is
/// left of the renew deadline since the last renewal (None: it has passed,
/// step down); otherwise a whole renew deadline.
pub fn try_budget(
    leading: bool,
    since_renewed: Option<Duration>,
    renew_deadline: Duration,
) -> Option<Duration> {
    match (leading, since_renewed) {
        (true, Some(since)) => renew_deadline
            .checked_sub(since)
            .filter(|left| !left.is_zero()),
        (true, None) => None,
        (false, _) => Some(renew_deadline),
    }
}

/// What we last saw of the Lease, and when (our clock).
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub holder: Option<String>,
    /// The record's renewTime as written (a change of it is a sign of life).
    pub renew_time: Option<String>,
    pub at: Instant,
}

/// What to do with the Lease as it stands now.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Ours already, or free (no holder, or its holder stopped renewing): take it.
    Take,
    /// Someone else holds it and is alive.
    Wait,
}

/// Whether we may write ourselves into a Lease that has `holder` and
/// `renew_time` now, given what we saw before (`seen`).
pub fn decide(
    identity: &str,
    holder: Option<&str>,
    renew_time: Option<&str>,
    seen: Option<&Observed>,
    now: Instant,
    lease_duration: Duration,
) -> Decision {
    match holder {
        None | Some("") => return Decision::Take,
        Some(h) if h == identity => return Decision::Take,
        Some(_) => {}
    }
    let unchanged_since =
        seen.filter(|s| s.holder.as_deref() == holder && s.renew_time.as_deref() == renew_time);
    match unchanged_since {
        Some(s) if now.duration_since(s.at) >= lease_duration => Decision::Take,
        _ => Decision::Wait,
    }
}

/// Completes when `leading` turns false. A channel whose sender is gone
/// (no election: this process always leads) never completes, rather than
/// at once, which would restart the controllers in a loop.
pub async fn lost(leading: &mut watch::Receiver<bool>) {
    if leading.wait_for(|l| !*l).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// How one attempt on the Lease went.
enum Attempt {
    /// We hold it (acquired or renewed).
    Held,
    /// Another replica holds it and is alive.
    Other,
    /// Someone wrote it between our read and our write: read again.
    Conflict,
    /// The API did not answer in time.
    TimedOut,
}

/// Runs the election and tells who leads.
pub struct Elector {
    client: kube::Client,
    settings: Settings,
    leading: watch::Sender<bool>,
    /// When we last renewed (or acquired) the Lease, while leading.
    renewed: Mutex<Option<Instant>>,
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl Elector {
    pub fn new(client: kube::Client, settings: Settings) -> Self {
        Self {
            client,
            settings,
            leading: watch::channel(false).0,
            renewed: Mutex::new(None),
        }
    }

    /// Whether we lead now.
    pub fn is_leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// Whether we lead, now and as it changes.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// How long since the last successful renewal, while leading (for
    /// `/livez`: a leader that cannot renew is stuck).
    pub fn since_renewed(&self) -> Option<Duration> {
        self.renewed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|t| t.elapsed())
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn api(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.settings.namespace)
    }

    fn set_leading(&self, leading: bool) {
        *self.renewed.lock().unwrap_or_else(|e| e.into_inner()) = leading.then(Instant::now);
        self.leading
            .send_if_modified(|l| std::mem::replace(l, leading) != leading);
        crate::metrics::set_leader(leading);
    }

    /// One attempt to acquire or renew.
    async fn try_hold(&self, seen: &mut Option<Observed>) -> Result<Attempt, kube::Error> {
        let s = &self.settings;
        let api = self.api();
        let lease_seconds = i32::try_from(s.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
        let Some(mut lease) = api.get_opt(&s.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(s.name.clone()),
                    namespace: Some(s.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(s.identity.clone()),
                    lease_duration_seconds: Some(lease_seconds),
                    acquire_time: Some(now_micro()),
                    renew_time: Some(now_micro()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    tracing::info!(lease = %s.name, identity = %s.identity, "acquired the leader lease");
                    Ok(Attempt::Held)
                }
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Conflict),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let renew_time = spec.renew_time.as_ref().map(|t| t.0.to_string());
        let now = Instant::now();
        let decision = decide(
            &s.identity,
            holder.as_deref(),
            renew_time.as_deref(),
            seen.as_ref(),
            now,
            stated_term(spec.lease_duration_seconds, s.lease_duration),
        );
        let changed = seen
            .as_ref()
            .is_none_or(|o| o.holder != holder || o.renew_time != renew_time);
        if changed {
            *seen = Some(Observed {
                holder: holder.clone(),
                renew_time,
                at: now,
            });
        }
        if decision == Decision::Wait {
            return Ok(Attempt::Other);
        }
        let ours = holder.as_deref() == Some(s.identity.as_str());
        let mut spec = spec;
        if !ours {
            spec.holder_identity = Some(s.identity.clone());
            spec.acquire_time = Some(now_micro());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(lease_seconds);
        spec.renew_time = Some(now_micro());
        lease.spec = Some(spec);
        // replace carries the resourceVersion we read: a concurrent
        // writer makes this a 409, never a second leader.
        match api.replace(&s.name, &PostParams::default(), &lease).await {
            Ok(_) => {
                if !ours {
                    tracing::info!(lease = %s.name, identity = %s.identity, "acquired the leader lease");
                }
                Ok(Attempt::Held)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        }
    }

    /// Campaigns and renews until dropped.
    pub async fn run(&self) {
        let s = self.settings.clone();
        let mut seen: Option<Observed> = None;
        let mut last_renewed: Option<Instant> = None;
        loop {
            let leading = self.is_leading();
            let budget = try_budget(
                leading,
                last_renewed.map(|t: Instant| t.elapsed()),
                s.renew_deadline,
            );
            let attempt = match budget {
                Some(budget) => tokio::time::timeout(budget, self.try_hold(&mut seen))
                    .await
                    .unwrap_or(Ok(Attempt::TimedOut)),
                None => Ok(Attempt::TimedOut),
            };
            match attempt {
                Ok(Attempt::Held) => {
                    last_renewed = Some(Instant::now());
                    if leading {
                        *self.renewed.lock().unwrap_or_else(|e| e.into_inner()) = last_renewed;
                    } else {
                        self.set_leading(true);
                    }
                }
                Ok(Attempt::Other) if leading => {
                    tracing::warn!(lease = %s.name, "another replica holds the leader lease now: stopped reconciling");
                    self.set_leading(false);
                }
                Ok(Attempt::Other) => {}
                Ok(Attempt::Conflict | Attempt::TimedOut) | Err(_) => {
                    match &attempt {
                        Err(e) => {
                            tracing::warn!(lease = %s.name, error = %e, "reading or writing the leader lease failed")
                        }
                        Ok(Attempt::TimedOut) => {
                            tracing::warn!(lease = %s.name, "the API did not answer the leader lease in time")
                        }
                        _ => {}
                    }
                    let expired = last_renewed.is_none_or(|t| t.elapsed() >= s.renew_deadline);
                    if leading && expired {
                        tracing::error!(lease = %s.name, deadline = ?s.renew_deadline,
                            "could not renew the leader lease within the renew deadline: stopped reconciling");
                        self.set_leading(false);
                    }
                }
            }
            tokio::time::sleep(s.retry_period).await;
        }
    }

    /// Gives the Lease up (on a clean shutdown, after reconciling stopped)
    /// so another replica takes over at once.
    pub async fn release(&self) {
        if !self.is_leading() {
            return;
        }
        self.set_leading(false);
        let s = &self.settings;
        let api = self.api();
        let Ok(Some(mut lease)) = api.get_opt(&s.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(s.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now_micro());
        match api.replace(&s.name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!(lease = %s.name, "released the leader lease"),
            Err(e) => {
                tracing::warn!(lease = %s.name, error = %e, "releasing the leader lease failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn without_an_election_leadership_is_never_lost() {
        let (tx, mut rx) = watch::channel(true);
        drop(tx);
        let waited = tokio::time::timeout(Duration::from_millis(50), lost(&mut rx)).await;
        assert!(waited.is_err(), "a closed channel is not a lost Lease");
        let (tx, mut rx) = watch::channel(true);
        tx.send_replace(false);
        tokio::time::timeout(Duration::from_secs(1), lost(&mut rx))
            .await
            .expect("losing the Lease is seen");
    }

    #[test]
    fn a_records_term_is_trusted_within_bounds() {
        let ours = Duration::from_secs(60);
        assert_eq!(stated_term(Some(15), ours), Duration::from_secs(15));
        assert_eq!(stated_term(None, ours), ours);
        assert_eq!(stated_term(Some(0), ours), ours);
        assert_eq!(stated_term(Some(-3), ours), ours);
        assert_eq!(stated_term(Some(1), ours), MIN_LEASE);
        assert_eq!(stated_term(Some(i32::MAX), ours), MAX_LEASE);
    }

    #[test]
    fn a_leaders_try_gets_only_what_is_left_of_its_renew_deadline() {
        let deadline = Duration::from_secs(40);
        let s = Duration::from_secs;
        assert_eq!(try_budget(true, Some(s(10)), deadline), Some(s(30)));
        assert_eq!(try_budget(true, Some(s(40)), deadline), None, "step down");
        assert_eq!(try_budget(true, Some(s(400)), deadline), None);
        assert_eq!(try_budget(true, None, deadline), None);
        assert_eq!(try_budget(false, None, deadline), Some(deadline));
    }

    #[test]
    fn a_free_or_own_lease_is_taken() {
        let now = Instant::now();
        assert_eq!(decide("me", None, None, None, now, D), Decision::Take);
        assert_eq!(decide("me", Some(""), None, None, now, D), Decision::Take);
        assert_eq!(
            decide("me", Some("me"), Some("t1"), None, now, D),
            Decision::Take
        );
    }

    #[test]
    fn another_holder_is_waited_for_until_its_record_stood_still_a_lease_duration() {
        let start = Instant::now();
        let seen = Observed {
            holder: Some("other".into()),
            renew_time: Some("t1".into()),
            at: start,
        };
        // First sight: wait, whatever its timestamps say (clocks differ).
        assert_eq!(
            decide("me", Some("other"), Some("t1"), None, start, D),
            Decision::Wait
        );
        let later = start + Duration::from_secs(59);
        assert_eq!(
            decide("me", Some("other"), Some("t1"), Some(&seen), later, D),
            Decision::Wait
        );
        let expired = start + D;
        assert_eq!(
            decide("me", Some("other"), Some("t1"), Some(&seen), expired, D),
            Decision::Take
        );
        // A renewal we have not seen yet restarts the wait.
        assert_eq!(
            decide("me", Some("other"), Some("t2"), Some(&seen), expired, D),
            Decision::Wait
        );
        assert_eq!(
            decide("me", Some("third"), Some("t1"), Some(&seen), expired, D),
            Decision::Wait
        );
    }
}
