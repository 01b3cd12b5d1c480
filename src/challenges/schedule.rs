//! Which Challenges may be worked on now: one per DNS name at a time (two
//! Challenges for one name would present two tokens and confuse the CA's
//! view of the Ingress), and at most `max` at once across the controller.
//! Claims expire, so a Challenge removed without its finalizer cannot
//! block its name for ever.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long an unrefreshed claim holds.
pub const CLAIM_TTL: Duration = Duration::from_secs(600);

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Go,
    /// Another Challenge (named) holds the DNS name.
    NameBusy(String),
    /// `max` Challenges are in flight already.
    Full(usize),
}

#[derive(Debug, Default)]
pub struct InFlight {
    /// DNS name (lower case) → (Challenge uid, its name, claimed at).
    by_name: HashMap<String, (String, String, Instant)>,
}

impl InFlight {
    /// Claims `dns_name` for Challenge `uid` (`name`, as namespace/name,
    /// for messages), or says why not.
    pub fn claim(
        &mut self,
        dns_name: &str,
        uid: &str,
        name: &str,
        max: usize,
        now: Instant,
    ) -> Decision {
        self.by_name
            .retain(|_, (_, _, at)| now.duration_since(*at) < CLAIM_TTL);
        let key = dns_name.trim_end_matches('.').to_ascii_lowercase();
        match self.by_name.get(&key) {
            Some((holder, _, _)) if holder == uid => {
                self.by_name
                    .insert(key, (uid.to_string(), name.to_string(), now));
                return Decision::Go;
            }
            Some((_, holder_name, _)) => return Decision::NameBusy(holder_name.clone()),
            None => {}
        }
        if self.by_name.len() >= max.max(1) {
            return Decision::Full(self.by_name.len());
        }
        self.by_name
            .insert(key, (uid.to_string(), name.to_string(), now));
        Decision::Go
    }

    /// Whether a Challenge other than `uid` in `namespace` holds a claim.
    pub fn others_in(&self, namespace: &str, uid: &str) -> bool {
        self.by_name.values().any(|(holder, name, _)| {
            holder != uid && name.split_once('/').is_some_and(|(ns, _)| ns == namespace)
        })
    }

    /// Releases whatever `uid` holds.
    pub fn release(&mut self, uid: &str) {
        self.by_name.retain(|_, (holder, _, _)| holder != uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_challenge_per_name_and_a_cap_overall() {
        let now = Instant::now();
        let mut f = InFlight::default();
        assert_eq!(f.claim("a.example", "u1", "c1", 2, now), Decision::Go);
        assert_eq!(
            f.claim("A.example.", "u1", "c1", 2, now),
            Decision::Go,
            "same holder again"
        );
        assert_eq!(
            f.claim("a.example", "u2", "c2", 2, now),
            Decision::NameBusy("c1".into())
        );
        assert_eq!(f.claim("b.example", "u3", "c3", 2, now), Decision::Go);
        assert_eq!(f.claim("c.example", "u4", "c4", 2, now), Decision::Full(2));
        f.release("u1");
        assert_eq!(f.claim("a.example", "u2", "c2", 2, now), Decision::Go);
    }

    #[test]
    fn claims_are_seen_by_namespace() {
        let now = Instant::now();
        let mut f = InFlight::default();
        f.claim("a.example", "u1", "apps/c1", 10, now);
        assert!(f.others_in("apps", "u2"));
        assert!(!f.others_in("apps", "u1"), "not itself");
        assert!(!f.others_in("web", "u2"));
    }

    #[test]
    fn stale_claims_expire() {
        let then = Instant::now();
        let mut f = InFlight::default();
        assert_eq!(f.claim("a.example", "u1", "c1", 1, then), Decision::Go);
        let later = then + CLAIM_TTL + Duration::from_secs(1);
        assert_eq!(f.claim("a.example", "u2", "c2", 1, later), Decision::Go);
    }
}
