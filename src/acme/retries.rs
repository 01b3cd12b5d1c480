//! The runs of failures of the objects a controller retries, by uid, on
//! the policy of [`super::retry`]: kept in memory, and read back from an
//! object's status reason after a restart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::retry::{Kind, Next, Policy, Run, jitter, until};

/// What to do after one more transient failure (see [`Retries::transient`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Write `reason` (it holds the run) once, and try again in `wait`.
    Retry { reason: String, wait: Duration },
    /// The run is over: fail with `reason` (it starts with [`super::retry::GAVE_UP`]).
    GiveUp { reason: String },
}

/// The runs of the objects a controller retries, by uid: one for the
/// step that failed last, one for lost orders. Memory first; a run not
/// in memory (after a restart) is read from the object's status reason.
#[derive(Default)]
pub struct Retries {
    runs: Mutex<HashMap<String, Run>>,
    /// What each run was retried from (see [`Retries::same_inputs`]).
    inputs: Mutex<HashMap<String, String>>,
}

fn lost_key(uid: &str) -> String {
    format!("{uid}/lost")
}

/// The step name of lost-order runs.
pub const REPLACE: &str = "replace";

impl Retries {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Run>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The run of `uid` (not lost orders), from memory or `reason`.
    pub fn run(&self, uid: &str, reason: Option<&str>) -> Option<Run> {
        let mut map = self.map();
        if let Some(run) = map.get(uid) {
            return Some(run.clone());
        }
        let run = reason.and_then(Run::parse)?;
        if run.step == REPLACE {
            map.entry(lost_key(uid)).or_insert(run);
            return None;
        }
        map.insert(uid.to_string(), run.clone());
        Some(run)
    }

    /// How long `uid` still has to wait before its next try, if at all.
    pub fn wait_left(&self, uid: &str, reason: Option<&str>, now: Timestamp) -> Option<Duration> {
        let run = self.run(uid, reason);
        let lost = self.map().get(&lost_key(uid)).cloned();
        let left = [run, lost]
            .into_iter()
            .flatten()
            .map(|r| until(r.next, now))
            .max()?;
        (!left.is_zero()).then_some(left)
    }

    /// Records a failure of `step` of `uid` (whose status reason is
    /// `reason`) and says what comes next.
    #[allow(clippy::too_many_arguments)]
    pub fn failed(
        &self,
        policy: &Policy,
        uid: &str,
        reason: Option<&str>,
        step: &str,
        kind: Kind,
        retry_after: Option<Duration>,
        now: Timestamp,
    ) -> Next {
        let key = if kind == Kind::Lost {
            // Parsed into the lost slot if the reason holds a lost run.
            let _ = self.run(uid, reason);
            lost_key(uid)
        } else {
            uid.to_string()
        };
        let previous = match kind {
            Kind::Lost => self.map().get(&key).cloned(),
            _ => self.run(uid, reason),
        }
        // A deferral is no failure.
        .filter(|r| r.failures > 0);
        let next = policy.after_failure(previous.as_ref(), step, kind, retry_after, now, jitter());
        let mut map = self.map();
        match &next {
            Next::Retry(run) => {
                map.insert(key, run.clone());
            }
            Next::GiveUp(_) => {
                map.remove(&key);
            }
        }
        if kind == Kind::Lost {
            // A fresh order starts a fresh conversation.
            map.remove(uid);
        }
        next
    }

    /// One more transient failure of `step` of `object` (`previous` is its
    /// status reason), where `what` says what failed: the next try, logged
    /// and counted, or the end.
    pub fn transient<K: kube::Resource>(
        &self,
        policy: &Policy,
        object: &K,
        previous: Option<&str>,
        step: &str,
        what: &str,
        retry_after: Option<Duration>,
    ) -> Attempt {
        let uid = object.meta().uid.as_deref().unwrap_or_default();
        let object = crate::naming::object_name(object);
        let now = Timestamp::now();
        let kind = Kind::Transient;
        match self.failed(policy, uid, previous, step, kind, retry_after, now) {
            Next::Retry(run) => {
                let wait = until(run.next, now);
                crate::metrics::acme_retry_delay(step, "transient", wait);
                tracing::info!(%object, step, attempt = run.failures, wait_ms = wait.as_millis() as u64, %what, "transient failure; retrying");
                Attempt::Retry {
                    reason: format!("{what}; {}", run.describe()),
                    wait,
                }
            }
            Next::GiveUp(run) => Attempt::GiveUp {
                reason: format!("{}: {what}", run.gave_up(now)),
            },
        }
    }

    /// Holds `uid` until `next` without a failure (the CA asked to wait, or
    /// a poll comes later): a wake before then does nothing. In memory only.
    pub fn defer(&self, uid: &str, step: &str, next: Timestamp) {
        let mut map = self.map();
        if map.get(uid).is_some_and(|r| r.failures > 0) {
            return;
        }
        map.insert(
            uid.to_string(),
            Run {
                step: step.to_string(),
                failures: 0,
                since: next,
                next,
                limit: 0,
            },
        );
    }

    /// `step` of `uid` succeeded: its run, if the last failure was of this step, ends.
    pub fn succeeded(&self, uid: &str, step: &str) {
        let mut map = self.map();
        if map.get(uid).is_some_and(|r| r.step == step) {
            map.remove(uid);
        }
    }

    /// Forgets everything of `uid` (it reached a final state or is gone).
    pub fn forget(&self, uid: &str) {
        let mut map = self.map();
        map.remove(uid);
        map.remove(&lost_key(uid));
        self.inputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
    }

    /// Notes what `uid`'s run was retried from (a spec generation, a
    /// Secret's version); true when it is what the run saw, or unknown
    /// (a run read back from status after a restart). A change of inputs
    /// ends the run: a fixed configuration is tried at once.
    pub fn same_inputs(&self, uid: &str, inputs: &str) -> bool {
        let mut seen = self.inputs.lock().unwrap_or_else(|e| e.into_inner());
        let same = seen.get(uid).is_none_or(|s| s == inputs);
        seen.insert(uid.to_string(), inputs.to_string());
        if !same {
            drop(seen);
            self.map().remove(uid);
        }
        same
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    #[test]
    fn runs_survive_a_restart_through_the_reason_and_end_with_their_step() {
        let p = Policy::default();
        let now = at("2026-12-06T10:00:00Z");
        let before = Retries::default();
        let Next::Retry(run) = before.failed(&p, "o", None, "finalize", Kind::Transient, None, now)
        else {
            panic!("retries")
        };
        let reason = format!("finalizing: ServerError: x; {}", run.describe());
        // A new controller knows only the reason.
        let after = Retries::default();
        let left = after.wait_left("o", Some(&reason), now).expect("waits");
        assert!(left > Duration::from_millis(700), "{left:?}");
        let Next::Retry(second) = after.failed(
            &p,
            "o",
            Some(&reason),
            "finalize",
            Kind::Transient,
            None,
            run.next,
        ) else {
            panic!("retries")
        };
        assert_eq!(second.failures, 2, "the count carried over");
        after.succeeded("o", "order");
        assert!(
            after.run("o", None).is_some(),
            "another step's success ends nothing"
        );
        after.succeeded("o", "finalize");
        assert!(after.run("o", None).is_none());
    }

    #[test]
    fn a_lost_order_is_counted_apart_and_ends_the_transient_run() {
        let p = Policy::default();
        let now = at("2026-12-06T10:00:00Z");
        let r = Retries::default();
        for _ in 0..5 {
            r.failed(&p, "o", None, "order", Kind::Transient, None, now);
        }
        let Next::Retry(lost) = r.failed(&p, "o", None, REPLACE, Kind::Lost, None, now) else {
            panic!("replaced")
        };
        assert_eq!(
            (lost.failures, lost.next),
            (1, now),
            "at once, whatever came before"
        );
        assert!(r.run("o", None).is_none(), "the old order's run is over");
        assert_eq!(r.wait_left("o", None, now), None);
        for _ in 0..3 {
            r.failed(&p, "o", None, REPLACE, Kind::Lost, None, now);
        }
        assert!(matches!(
            r.failed(&p, "o", None, REPLACE, Kind::Lost, None, now),
            Next::GiveUp(run) if run.failures == 5
        ));
    }
}
