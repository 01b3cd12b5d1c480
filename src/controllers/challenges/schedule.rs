//! Which Challenges may be worked on now: one per ACME account and DNS name
//! at a time (the CA holds one authorization per account and name, so two
//! Challenges of one account for one name would answer each other's
//! validation; other accounts, in other namespaces or issuers, go
//! side by side), and at most `max` at once across the controller.
//! Claims expire, so a Challenge removed without its finalizer cannot
//! block its name for ever. A Challenge told to wait is noted, and woken
//! when what it waits for is released (a polled retry stays the fallback).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long an unrefreshed claim holds.
pub const CLAIM_TTL: Duration = Duration::from_secs(600);

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Go,
    /// Another Challenge (namespace/name) holds the account's DNS name.
    NameBusy(String),
    /// `max` Challenges are in flight already.
    Full(usize),
}

#[derive(Debug)]
struct Claim {
    uid: String,
    /// namespace/name, for messages.
    name: String,
    at: Instant,
    /// Its final state is written and it is cleaning up: it still holds
    /// its DNS name, but no longer needs the namespace's solver resources.
    finishing: bool,
}

/// A Challenge told to wait.
#[derive(Debug)]
struct Waiter {
    uid: String,
    /// namespace/name, to wake it by.
    name: String,
    /// The account and DNS name it waits for; None when it waits for any
    /// free place.
    key: Option<String>,
    at: Instant,
}

#[derive(Debug, Default)]
pub struct InFlight {
    /// Account and DNS name (lower case) → the Challenge holding them.
    by_name: HashMap<String, Claim>,
    /// Challenges waiting, oldest first.
    waiting: Vec<Waiter>,
}

impl InFlight {
    /// Claims `dns_name` of `account` for Challenge `uid` (`name`, as
    /// namespace/name, for messages), or says why not.
    pub fn claim(
        &mut self,
        account: &str,
        dns_name: &str,
        uid: &str,
        name: &str,
        max: usize,
        now: Instant,
    ) -> Decision {
        self.by_name
            .retain(|_, claim| now.duration_since(claim.at) < CLAIM_TTL);
        self.waiting
            .retain(|w| now.duration_since(w.at) < CLAIM_TTL);
        let key = format!(
            "{account}|{}",
            dns_name.trim_end_matches('.').to_ascii_lowercase()
        );
        let held = self.by_name.len();
        let decision = match self.by_name.get_mut(&key) {
            Some(claim) if claim.uid == uid => {
                claim.at = now;
                Decision::Go
            }
            Some(claim) => Decision::NameBusy(claim.name.clone()),
            None if held >= max.max(1) => Decision::Full(held),
            None => {
                let claim = Claim {
                    uid: uid.to_string(),
                    name: name.to_string(),
                    at: now,
                    finishing: false,
                };
                self.by_name.insert(key.clone(), claim);
                Decision::Go
            }
        };
        if decision == Decision::Go {
            self.waiting.retain(|w| w.uid != uid);
            return decision;
        }
        let key = matches!(decision, Decision::NameBusy(_)).then_some(key);
        // A Challenge told to wait again keeps its place in the line.
        match self.waiting.iter_mut().find(|w| w.uid == uid) {
            Some(w) => {
                w.key = key;
                w.at = now;
            }
            None => self.waiting.push(Waiter {
                uid: uid.to_string(),
                name: name.to_string(),
                key,
                at: now,
            }),
        }
        decision
    }

    /// Whether a Challenge other than `uid` in `namespace` holds a claim
    /// and still needs the namespace's solver resources.
    pub fn others_in(&self, namespace: &str, uid: &str) -> bool {
        self.by_name.values().any(|claim| {
            claim.uid != uid
                && !claim.finishing
                && claim
                    .name
                    .split_once('/')
                    .is_some_and(|(ns, _)| ns == namespace)
        })
    }

    /// Marks `uid` as finishing: of two Challenges cleaning up together,
    /// the later to look must not count the other as needing the
    /// namespace's solver Service, or neither removes it.
    pub fn finishing(&mut self, uid: &str) {
        for claim in self.by_name.values_mut().filter(|c| c.uid == uid) {
            claim.finishing = true;
        }
    }

    /// Releases whatever `uid` holds (and its place among the waiting);
    /// returns the waiting Challenges (namespace/name) to wake: those
    /// waiting for a name it held, and the oldest waiting for a place.
    pub fn release(&mut self, uid: &str) -> Vec<String> {
        let mut freed = Vec::new();
        self.by_name.retain(|key, claim| {
            let keep = claim.uid != uid;
            if !keep {
                freed.push(key.clone());
            }
            keep
        });
        self.waiting.retain(|w| w.uid != uid);
        let mut places = freed.len();
        let mut wake = Vec::new();
        self.waiting.retain(|w| {
            let woken = match &w.key {
                Some(key) => freed.contains(key),
                None if places > 0 => {
                    places -= 1;
                    true
                }
                None => false,
            };
            if woken {
                wake.push(w.name.clone());
            }
            !woken
        });
        wake
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_challenge_per_name_and_a_cap_overall() {
        let now = Instant::now();
        let mut f = InFlight::default();
        assert_eq!(
            f.claim("acct", "a.example", "u1", "c1", 2, now),
            Decision::Go
        );
        assert_eq!(
            f.claim("acct", "A.example.", "u1", "c1", 2, now),
            Decision::Go,
            "same holder again"
        );
        assert_eq!(
            f.claim("acct", "a.example", "u2", "c2", 2, now),
            Decision::NameBusy("c1".into())
        );
        assert_eq!(
            f.claim("acct", "b.example", "u3", "c3", 2, now),
            Decision::Go
        );
        assert_eq!(
            f.claim("acct", "c.example", "u4", "c4", 2, now),
            Decision::Full(2)
        );
        assert_eq!(
            f.release("u1"),
            vec!["c2".to_string(), "c4".to_string()],
            "the one waiting for its name, and the oldest waiting for a place"
        );
        assert_eq!(
            f.claim("acct", "a.example", "u2", "c2", 2, now),
            Decision::Go
        );
        assert!(f.release("u3").is_empty(), "nobody waits any more");
    }

    #[test]
    fn a_freed_place_wakes_one_waiter_at_a_time_oldest_first() {
        let now = Instant::now();
        let mut f = InFlight::default();
        f.claim("acct", "a.example", "u1", "c1", 1, now);
        assert_eq!(
            f.claim("acct", "b.example", "u2", "c2", 1, now),
            Decision::Full(1)
        );
        assert_eq!(
            f.claim("acct", "c.example", "u3", "c3", 1, now),
            Decision::Full(1)
        );
        // Told to wait again: the same place in the line, not a second one.
        assert_eq!(
            f.claim("acct", "b.example", "u2", "c2", 1, now),
            Decision::Full(1)
        );
        assert_eq!(f.release("u1"), vec!["c2".to_string()]);
        assert_eq!(
            f.claim("acct", "b.example", "u2", "c2", 1, now),
            Decision::Go
        );
        assert_eq!(f.release("u2"), vec!["c3".to_string()]);
        assert!(
            f.release("u3").is_empty(),
            "c3 was woken, and is no longer waiting"
        );
    }

    #[test]
    fn other_accounts_take_the_same_name_side_by_side() {
        let now = Instant::now();
        let mut f = InFlight::default();
        assert_eq!(
            f.claim("ca|apps/key", "a.example", "u1", "apps/c1", 10, now),
            Decision::Go
        );
        assert_eq!(
            f.claim("ca|web/key", "a.example", "u2", "web/c2", 10, now),
            Decision::Go
        );
        assert_eq!(
            f.claim("ca|apps/key", "a.example", "u3", "apps/c3", 10, now),
            Decision::NameBusy("apps/c1".into()),
            "the same account waits, told where the blocker is"
        );
    }

    #[test]
    fn claims_are_seen_by_namespace() {
        let now = Instant::now();
        let mut f = InFlight::default();
        f.claim("acct", "a.example", "u1", "apps/c1", 10, now);
        assert!(f.others_in("apps", "u2"));
        assert!(!f.others_in("apps", "u1"), "not itself");
        assert!(!f.others_in("web", "u2"));
    }

    #[test]
    fn two_finishing_together_do_not_count_each_other() {
        let now = Instant::now();
        let mut f = InFlight::default();
        f.claim("acct", "a.example", "u1", "apps/c1", 10, now);
        f.claim("acct", "b.example", "u2", "apps/c2", 10, now);
        f.finishing("u1");
        f.finishing("u2");
        assert!(!f.others_in("apps", "u1"));
        assert!(!f.others_in("apps", "u2"));
        assert_eq!(
            f.claim("acct", "a.example", "u3", "apps/c3", 10, now),
            Decision::NameBusy("apps/c1".into()),
            "a finishing Challenge still holds its name"
        );
    }

    #[test]
    fn stale_claims_expire() {
        let then = Instant::now();
        let mut f = InFlight::default();
        assert_eq!(
            f.claim("acct", "a.example", "u1", "c1", 1, then),
            Decision::Go
        );
        let later = then + CLAIM_TTL + Duration::from_secs(1);
        assert_eq!(
            f.claim("acct", "a.example", "u2", "c2", 1, later),
            Decision::Go
        );
    }
}
