//! The one CA retry policy, for every ACME call of every controller
//! (account, newOrder, order, authorizations, accept and poll, finalize,
//! download, renewal information).
//!
//! - **Transient** failures (5xx, network, badNonce, rateLimited): 1 s,
//!   doubling, with jitter, to a cap (`--transient-backoff-max-seconds`,
//!   300 s). Counted per step; only that step's success ends the run.
//!   After [`Policy::limit`] failures in a row, or [`Policy::window`]
//!   since the first, the caller gives up (the Order fails, and the
//!   Certificate's failure backoff takes over).
//! - **Lost** orders (the seed's 404 "No such authorization"): the first
//!   replacement at once, then 1 s doubling to 30 s, at most
//!   [`Policy::lost_limit`] in a row.
//! - **Configuration** errors (an HTML directory, a key that cannot sign,
//!   a TLS certificate not trusted, a refused account): 1 min doubling to
//!   1 h, never given up; a change of the spec or of the Secret retries at
//!   once (the caller keys the run by what it read).
//!
//! A CA's Retry-After is always honoured, clamped to [`MAX_WAIT`]: the
//! next try is never sooner than it says.
//!
//! The run (step, failures, first failure, next try) is written into the
//! object's status reason in words (see [`Run::describe`]); a restarted
//! controller, or a new leader, reads it back from there ([`Run::parse`]),
//! so the count and the next try survive both.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The longest wait any server may ask for (Retry-After, a poll interval):
/// a day. Anything longer, or unreadable, is cut to this.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// How a failure is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Transient,
    Lost,
    Config,
}

/// Every reason of a given-up run starts so (the Order tells it apart
/// from a lost authorization, which is replaced instead).
pub const GAVE_UP: &str = "Gave up";

/// The bounds of the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// First delay after a transient failure.
    pub transient_first: Duration,
    /// Longest delay after transient failures.
    pub transient_max: Duration,
    /// Transient failures of one step in a row before giving up.
    pub limit: u32,
    /// Time since the run's first failure after which a failure gives up.
    pub window: Duration,
    /// Orders lost in a row before giving up.
    pub lost_limit: u32,
    /// Longest delay before placing a replacement order.
    pub lost_max: Duration,
    /// First and longest delay after a configuration error.
    pub config_first: Duration,
    pub config_max: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            transient_first: Duration::from_secs(1),
            transient_max: Duration::from_secs(300),
            limit: 8,
            window: Duration::from_secs(15 * 60),
            lost_limit: 5,
            lost_max: Duration::from_secs(30),
            config_first: Duration::from_secs(60),
            config_max: Duration::from_secs(3600),
        }
    }
}

/// A run of failures in a row of one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// The step, one word (`newOrder`, `finalize`, `validate`, …).
    pub step: String,
    pub failures: u32,
    /// The first failure of the run.
    pub since: Timestamp,
    /// The earliest time of the next try.
    pub next: Timestamp,
    /// The most failures in a row allowed (0: no limit).
    pub limit: u32,
}

/// What to do after a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Try again at `run.next`.
    Retry(Run),
    /// The run is over: fail with its words.
    GiveUp(Run),
}

/// `t` plus `d` (at most [`MAX_WAIT`]), saturating.
pub fn after(t: Timestamp, d: Duration) -> Timestamp {
    let d = SignedDuration::try_from(d.min(MAX_WAIT)).unwrap_or(SignedDuration::ZERO);
    t.saturating_add(d).unwrap_or(Timestamp::MAX)
}

/// How long from `now` until `t` (zero when past).
pub fn until(t: Timestamp, now: Timestamp) -> Duration {
    let d = t.duration_since(now);
    Duration::try_from(d)
        .unwrap_or(Duration::ZERO)
        .min(MAX_WAIT)
}

fn ceil_second(t: Timestamp) -> Timestamp {
    if t.subsec_nanosecond() > 0 {
        Timestamp::from_second(t.as_second().saturating_add(1)).unwrap_or(t)
    } else {
        t
    }
}

/// A fraction in [0, 1) from the system's random source, for jitter.
pub fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    match aws_lc_rs::rand::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

impl Policy {
    /// The delay after the `failures`-th failure in a row of `kind`
    /// (≥ 1), with `jitter` in [0, 1) spreading it by ±20 % (never past
    /// the cap).
    pub fn delay(&self, kind: Kind, failures: u32, jitter: f64) -> Duration {
        let doubled = |first: Duration, n: u32, cap: Duration| {
            first
                .saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(30)))
                .min(cap)
        };
        let base = match kind {
            Kind::Transient => doubled(self.transient_first, failures, self.transient_max),
            Kind::Config => doubled(self.config_first, failures, self.config_max),
            // The first replacement at once.
            Kind::Lost if failures <= 1 => return Duration::ZERO,
            Kind::Lost => doubled(Duration::from_secs(1), failures - 1, self.lost_max),
        };
        let cap = match kind {
            Kind::Transient => self.transient_max,
            Kind::Config => self.config_max,
            Kind::Lost => self.lost_max,
        };
        base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0)).min(cap)
    }

    /// The next step after a failure of `step` at `now`, following the
    /// run `previous` (the object's run, of this step or another: only a
    /// success of the failing step ends a run). `retry_after` is the CA's.
    pub fn after_failure(
        &self,
        previous: Option<&Run>,
        step: &str,
        kind: Kind,
        retry_after: Option<Duration>,
        now: Timestamp,
        jitter: f64,
    ) -> Next {
        let (failures, since) = match previous {
            Some(p) => (p.failures.saturating_add(1), p.since),
            None => (1, now),
        };
        let wait = self
            .delay(kind, failures, jitter)
            .max(retry_after.unwrap_or_default().min(MAX_WAIT));
        let limit = match kind {
            // A limit of 0: retried for ever (an Issuer has nothing to fail).
            Kind::Transient => self.limit,
            Kind::Lost => self.lost_limit,
            Kind::Config => 0,
        };
        let run = Run {
            step: step.to_string(),
            failures,
            since,
            next: after(now, wait),
            limit,
        };
        let too_long = limit > 0
            && kind == Kind::Transient
            && now.duration_since(since)
                >= SignedDuration::try_from(self.window).unwrap_or(SignedDuration::MAX);
        if (limit > 0 && failures >= limit) || too_long {
            return Next::GiveUp(run);
        }
        Next::Retry(run)
    }
}

impl Run {
    /// The run in words, for the status reason; [`Run::parse`] reads it
    /// back: "failure 3 of 8 in a row of finalize since
    /// 2026-12-06T19:39:50Z; next try at 2026-12-06T19:40:10Z".
    pub fn describe(&self) -> String {
        let of = if self.limit > 0 {
            format!(" of {}", self.limit)
        } else {
            String::new()
        };
        format!(
            "failure {}{of} in a row of {} since {}; next try at {}",
            self.failures,
            self.step,
            self.since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            // Whole seconds, rounded up: read back, it is never too early.
            ceil_second(self.next).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    }

    /// The run a reason written with [`Run::describe`] holds.
    pub fn parse(reason: &str) -> Option<Run> {
        let at = reason.rfind("failure ")?;
        let words: Vec<&str> = reason[at..]
            .split_whitespace()
            .map(|w| w.trim_end_matches([';', ')', ']', ',']))
            .collect();
        let failures: u32 = words.get(1)?.parse().ok()?;
        let (limit, rest) = match words.get(2) {
            Some(&"of") => (words.get(3)?.parse().ok()?, &words[4..]),
            _ => (0, &words[2..]),
        };
        // "in a row of STEP since T; next try at T"
        match rest {
            [
                "in",
                "a",
                "row",
                "of",
                step,
                "since",
                since,
                "next",
                "try",
                "at",
                next,
                ..,
            ] => Some(Run {
                step: step.to_string(),
                failures,
                since: since.parse().ok()?,
                next: next.parse().ok()?,
                limit,
            }),
            _ => None,
        }
    }

    /// Words for giving up: "Gave up STEP after 8 failures in a row over 4m15s".
    pub fn gave_up(&self, now: Timestamp) -> String {
        let secs = until(now, self.since).as_secs();
        format!(
            "{GAVE_UP} {} after {} failures in a row over {}m{:02}s",
            self.step,
            self.failures,
            secs / 60,
            secs % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    #[test]
    fn transient_failures_double_from_a_second_to_the_cap_with_jitter() {
        let p = Policy::default();
        let secs = |n, j| p.delay(Kind::Transient, n, j).as_secs_f64();
        assert_eq!(secs(1, 0.5), 1.0);
        assert_eq!(secs(2, 0.5), 2.0);
        assert_eq!(secs(4, 0.5), 8.0);
        assert_eq!(secs(1, 0.0), 0.8, "jitter spreads it down");
        assert!(secs(1, 0.999) < 1.2, "and up");
        assert_eq!(secs(9, 0.5), 256.0);
        assert_eq!(secs(10, 0.99), 300.0, "never past the cap");
        assert_eq!(secs(u32::MAX, 0.5), 300.0, "no overflow");
    }

    #[test]
    fn lost_orders_are_replaced_at_once_then_after_a_second_doubling_to_half_a_minute() {
        let p = Policy::default();
        let secs = |n| p.delay(Kind::Lost, n, 0.5).as_secs_f64();
        assert_eq!(
            [secs(1), secs(2), secs(3), secs(4), secs(10)],
            [0.0, 1.0, 2.0, 4.0, 30.0]
        );
    }

    #[test]
    fn configuration_errors_wait_a_minute_doubling_to_an_hour() {
        let p = Policy::default();
        let secs = |n| p.delay(Kind::Config, n, 0.5).as_secs();
        assert_eq!([secs(1), secs(2), secs(7), secs(50)], [60, 120, 3600, 3600]);
    }

    #[test]
    fn a_run_gives_up_after_eight_failures_or_fifteen_minutes() {
        let p = Policy::default();
        let mut now = at("2026-12-06T10:00:00Z");
        let mut run = None;
        let mut waits = Vec::new();
        let given_up = loop {
            match p.after_failure(run.as_ref(), "newOrder", Kind::Transient, None, now, 0.5) {
                Next::Retry(r) => {
                    waits.push(until(r.next, now).as_secs());
                    now = r.next;
                    run = Some(r);
                }
                Next::GiveUp(r) => break r,
            }
        };
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(given_up.failures, 8);
        assert_eq!(
            given_up.gave_up(now),
            "Gave up newOrder after 8 failures in a row over 2m07s"
        );
        // A CA asking for ten minutes each time: the window ends it first.
        let mut now = at("2026-12-06T10:00:00Z");
        let mut run = None;
        let mut tries = 0;
        loop {
            tries += 1;
            let ten = Some(Duration::from_secs(600));
            match p.after_failure(run.as_ref(), "finalize", Kind::Transient, ten, now, 0.5) {
                Next::Retry(r) => {
                    assert_eq!(
                        until(r.next, now),
                        Duration::from_secs(600),
                        "Retry-After honoured"
                    );
                    now = r.next;
                    run = Some(r);
                }
                Next::GiveUp(_) => break,
            }
        }
        assert_eq!(tries, 3, "at 0, 10 and 20 minutes");
    }

    #[test]
    fn retry_after_is_honoured_and_clamped() {
        let p = Policy::default();
        let now = at("2026-12-06T10:00:00Z");
        let huge = Some(Duration::from_secs(u64::MAX));
        let Next::Retry(run) = p.after_failure(None, "validate", Kind::Transient, huge, now, 0.5)
        else {
            panic!("first failure retries")
        };
        assert_eq!(until(run.next, now), MAX_WAIT);
        let short = Some(Duration::from_millis(10));
        let Next::Retry(run) = p.after_failure(None, "validate", Kind::Transient, short, now, 0.5)
        else {
            panic!("first failure retries")
        };
        assert_eq!(
            until(run.next, now),
            Duration::from_secs(1),
            "no sooner than the backoff"
        );
    }

    #[test]
    fn a_run_reads_back_from_its_words() {
        let run = Run {
            step: "finalize".into(),
            failures: 3,
            since: at("2026-12-06T19:39:50Z"),
            next: at("2026-12-06T19:40:10Z"),
            limit: 8,
        };
        let reason = format!(
            "finalizing the order: ServerError: 500 failure of the backend; {}",
            run.describe()
        );
        assert_eq!(
            reason,
            "finalizing the order: ServerError: 500 failure of the backend; failure 3 of 8 in a row of finalize since 2026-12-06T19:39:50Z; next try at 2026-12-06T19:40:10Z"
        );
        assert_eq!(Run::parse(&reason), Some(run.clone()));
        let unlimited = Run { limit: 0, ..run };
        assert_eq!(Run::parse(&unlimited.describe()), Some(unlimited));
        assert_eq!(
            Run::parse("Waiting for HTTP-01 challenge propagation"),
            None
        );
        assert_eq!(Run::parse("failure 3 of x"), None);
        assert_eq!(Run::parse("failure"), None);
    }
}
