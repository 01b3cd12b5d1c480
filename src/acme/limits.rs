//! What a CA's refusals hold back, per ACME account: a `rateLimited`
//! refusal of newOrder holds that account's new orders (or only the
//! identifiers the refusal names) until the time the CA names; Let's
//! Encrypt's "paused" refusal holds its identifiers until someone visits
//! the unpause link, which waiting does not replace: certwright asks again
//! once a day, or at once after `certwright renew` or a change of the spec.
//!
//! The holds live in memory and in the API (`acme::kept`), so a restarted
//! controller, or a new leader, keeps them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::retry::{MAX_WAIT, after};

/// The path of Let's Encrypt's self-service unpause portal.
const UNPAUSE: &str = "/sfe/v1/unpause?jwt=";

/// How long a paused identifier is left alone before asking again.
pub const PAUSED_RECHECK: Duration = Duration::from_secs(24 * 3600);

/// A "paused" refusal: the portal link and the identifiers it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paused {
    pub url: String,
    pub identifiers: Vec<String>,
}

/// The paused refusal in a problem's detail, whatever its type: found by
/// the portal's URL.
pub fn paused(detail: &str) -> Option<Paused> {
    let at = detail.find(UNPAUSE)?;
    let start = detail[..at]
        .rfind(|c: char| c.is_whitespace() || c == '"' || c == '(')
        .map_or(0, |i| i + 1);
    let end = detail[at..]
        .find(|c: char| c.is_whitespace() || c == '"' || c == ')')
        .map_or(detail.len(), |i| at + i);
    let url = detail[start..end].trim_end_matches(['.', ',']).to_string();
    // "… prevented from requesting certificates for a.example, b.example
    // and c.example, and possibly others. Please visit: …"
    let identifiers = detail
        .split_once("certificates for ")
        .map(|(_, rest)| {
            let rest = rest.split(". ").next().unwrap_or(rest);
            rest.split([',', ' '])
                .map(|w| w.trim_end_matches('.'))
                .filter(|w| w.contains('.') || w.contains(':'))
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default();
    Some(Paused { url, identifiers })
}

/// `text` with the unpause link's token cut off (for logs and metrics).
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(UNPAUSE) {
        let cut = at + UNPAUSE.len();
        out.push_str(&rest[..cut]);
        out.push('…');
        let end = rest[cut..]
            .find(|c: char| c.is_whitespace() || c == '"' || c == ')')
            .map_or(rest.len(), |i| cut + i);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A "retry after <time>" in a refusal's words (Let's Encrypt writes
/// `retry after 2026-12-06 20:00:00 UTC`), if it names a time.
pub fn retry_after_in_text(detail: &str) -> Option<Timestamp> {
    let lower = detail.to_ascii_lowercase();
    let at = lower.find("retry after ")? + "retry after ".len();
    let words: Vec<&str> = detail[at..].split_whitespace().take(3).collect();
    let candidates = [
        words
            .first()
            .map(|w| w.trim_end_matches([',', '.', ':']).to_string()),
        (words.len() >= 2)
            .then(|| format!("{}T{}Z", words[0], words[1].trim_end_matches([',', '.']))),
    ];
    candidates
        .into_iter()
        .flatten()
        .find_map(|c| c.parse::<Timestamp>().ok())
}

/// Why and until when new orders are held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub until: Timestamp,
    /// In words, for the Order's reason (the full link, for a pause).
    pub reason: String,
    /// A pause (only its portal lifts it), not a rate limit.
    pub paused: bool,
    /// The issuer (kind, name) whose order was refused, for metrics.
    pub issuer: (String, String),
}

/// The holds of every account, by account and identifier (`*`: every new
/// order of the account).
#[derive(Default)]
pub struct Holds {
    map: Mutex<HashMap<(String, String), Hold>>,
    /// Bumped by every change, for `acme::kept` to save.
    changes: AtomicU64,
}

/// One hold as `acme::kept` stores it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptHold {
    pub account: String,
    /// An identifier, or `*` for every new order of the account.
    pub identifier: String,
    /// Unix seconds.
    pub until: i64,
    pub reason: String,
    #[serde(default)]
    pub paused: bool,
    pub issuer_kind: String,
    pub issuer: String,
}

const ALL: &str = "*";

/// `certwright_acme_paused_identifiers`, by issuer, kept with the holds.
fn gauge(map: &HashMap<(String, String), Hold>) {
    let mut by_issuer: HashMap<&(String, String), usize> = HashMap::new();
    for h in map.values().filter(|h| h.paused) {
        *by_issuer.entry(&h.issuer).or_default() += 1;
    }
    crate::metrics::set_paused_identifiers(
        by_issuer
            .into_iter()
            .map(|((kind, name), n)| (kind.as_str(), name.as_str(), n)),
    );
}

impl Holds {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Hold>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds `identifiers` of `account` (all its new orders when empty).
    pub fn hold(&self, account: &str, identifiers: &[String], hold: Hold) {
        let mut map = self.map();
        if map.len() > 10_000 {
            map.clear();
        }
        let keys: Vec<String> = if identifiers.is_empty() {
            vec![ALL.into()]
        } else {
            identifiers.iter().map(|i| i.to_ascii_lowercase()).collect()
        };
        for key in keys {
            map.insert((account.to_string(), key), hold.clone());
        }
        gauge(&map);
        self.changes.fetch_add(1, Ordering::Relaxed);
    }

    /// How many changes were made so far.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// The holds still in force at `now`, to be kept.
    pub fn export(&self, now: Timestamp) -> Vec<KeptHold> {
        let mut out: Vec<KeptHold> = self
            .map()
            .iter()
            .filter(|(_, h)| h.until > now)
            .map(|((account, identifier), h)| KeptHold {
                account: account.clone(),
                identifier: identifier.clone(),
                until: h.until.as_second(),
                reason: h.reason.clone(),
                paused: h.paused,
                issuer_kind: h.issuer.0.clone(),
                issuer: h.issuer.1.clone(),
            })
            .collect();
        out.sort_by(|a, b| (&a.account, &a.identifier).cmp(&(&b.account, &b.identifier)));
        out
    }

    /// Takes kept holds back (one already held here stays as it is).
    pub fn import(&self, kept: Vec<KeptHold>) {
        let mut map = self.map();
        for k in kept {
            let Ok(until) = Timestamp::from_second(k.until) else {
                continue;
            };
            map.entry((k.account, k.identifier.to_ascii_lowercase()))
                .or_insert(Hold {
                    until,
                    reason: k.reason,
                    paused: k.paused,
                    issuer: (k.issuer_kind, k.issuer),
                });
        }
        gauge(&map);
    }

    /// The hold that keeps a new order of `account` for `identifiers`
    /// back at `now` (the one lasting longest), if any.
    pub fn check(&self, account: &str, identifiers: &[String], now: Timestamp) -> Option<Hold> {
        let mut map = self.map();
        map.retain(|_, h| h.until > now);
        gauge(&map);
        std::iter::once(ALL.to_string())
            .chain(identifiers.iter().map(|i| i.to_ascii_lowercase()))
            .filter_map(|key| map.get(&(account.to_string(), key)).cloned())
            .max_by_key(|h| h.until)
    }

    /// Lifts the pauses of `identifiers` on every account (a renewal asked
    /// for by hand, or a changed spec: the user may have visited the portal).
    pub fn release(&self, identifiers: &[String]) {
        let names: Vec<String> = identifiers.iter().map(|i| i.to_ascii_lowercase()).collect();
        let mut map = self.map();
        let before = map.len();
        map.retain(|(_, key), h| !(h.paused && names.contains(key)));
        gauge(&map);
        if map.len() != before {
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many identifiers are paused now, in all.
    pub fn paused_count(&self) -> usize {
        self.map().values().filter(|h| h.paused).count()
    }
}

/// The hold a refusal of a new order of `issuer` (kind, name) for
/// `identifiers` asks for, at `now` (`retry_after` is the CA's header): a
/// pause, or a rate limit (on the identifiers the refusal names, or the
/// whole account); None for other refusals.
pub fn hold_for(
    issuer: (String, String),
    problem_type: &str,
    detail: &str,
    identifiers: &[String],
    retry_after: Option<Duration>,
    now: Timestamp,
) -> Option<(Vec<String>, Hold)> {
    if let Some(p) = paused(detail) {
        let held = if p.identifiers.is_empty() {
            identifiers.to_vec()
        } else {
            p.identifiers.clone()
        };
        let until = after(now, PAUSED_RECHECK);
        let reason = format!(
            "The CA has paused this ACME account for {}: waiting does not lift it; visit {} to unpause it, then run `certwright renew` (or certwright asks again at {})",
            held.join(", "),
            p.url,
            until.strftime("%Y-%m-%dT%H:%M:%SZ"),
        );
        return Some((
            held,
            Hold {
                until,
                reason,
                paused: true,
                issuer,
            },
        ));
    }
    if !problem_type.ends_with(":rateLimited") {
        return None;
    }
    let named_until = retry_after_in_text(detail).filter(|t| *t > now);
    let wait = retry_after
        .or_else(|| named_until.map(|t| super::retry::until(t, now)))
        .unwrap_or(Duration::from_secs(60))
        .min(MAX_WAIT);
    let until = after(now, wait);
    let lower = detail.to_ascii_lowercase();
    let named: Vec<String> = identifiers
        .iter()
        .filter(|i| lower.contains(&i.to_ascii_lowercase()))
        .cloned()
        .collect();
    let scope = if named.is_empty() {
        "every new order of this ACME account".to_string()
    } else {
        format!("new orders for {}", named.join(", "))
    };
    let reason = format!(
        "The CA's rate limit holds {scope} until {}: {detail}",
        until.strftime("%Y-%m-%dT%H:%M:%SZ")
    );
    Some((
        named,
        Hold {
            until,
            reason,
            paused: false,
            issuer,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LE_PAUSED: &str = "Your account is temporarily prevented from requesting certificates for www.example.org, example.org and example.net, and possibly others. Please visit: https://portal.letsencrypt.org/sfe/v1/unpause?jwt=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl";

    fn le() -> (String, String) {
        ("ClusterIssuer".into(), "le".into())
    }

    fn now() -> Timestamp {
        "2026-12-06T20:00:00Z".parse().expect("time")
    }

    #[test]
    fn the_pause_is_found_by_its_link_with_its_identifiers() {
        let p = paused(LE_PAUSED).expect("paused");
        assert_eq!(
            p.url,
            "https://portal.letsencrypt.org/sfe/v1/unpause?jwt=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl"
        );
        assert_eq!(
            p.identifiers,
            ["www.example.org", "example.org", "example.net"]
        );
        assert_eq!(paused("too many new orders recently"), None);
    }

    #[test]
    fn logs_get_the_link_without_its_token() {
        let cut = redact(&format!("refused: {LE_PAUSED} (429)"));
        assert!(cut.ends_with("/sfe/v1/unpause?jwt=… (429)"), "{cut}");
        assert!(!cut.contains("eyJ"), "{cut}");
        assert_eq!(redact("nothing to cut"), "nothing to cut");
    }

    #[test]
    fn a_retry_time_in_words_is_read() {
        let want: Timestamp = "2026-12-06T21:30:00Z".parse().expect("time");
        for text in [
            "too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, retry after 2026-12-06 21:30:00 UTC: see https://letsencrypt.org/docs/rate-limits/",
            "too many new orders, retry after 2026-12-06T21:30:00Z.",
        ] {
            assert_eq!(retry_after_in_text(text), Some(want), "{text}");
        }
        assert_eq!(retry_after_in_text("retry after a while"), None);
    }

    #[test]
    fn a_pause_holds_its_identifiers_for_a_day_whatever_the_type() {
        let ids = vec!["example.org".to_string()];
        let (held, hold) = hold_for(
            le(),
            "urn:ietf:params:acme:error:unauthorized",
            LE_PAUSED,
            &ids,
            None,
            now(),
        )
        .expect("held");
        assert_eq!(held, ["www.example.org", "example.org", "example.net"]);
        assert!(hold.paused);
        assert_eq!(hold.until, "2026-12-07T20:00:00Z".parse().expect("time"));
        assert!(
            hold.reason
                .contains("visit https://portal.letsencrypt.org/sfe/v1/unpause?jwt=eyJ")
        );
        let holds = Holds::default();
        holds.hold("acct", &held, hold);
        assert!(holds.check("acct", &ids, now()).is_some_and(|h| h.paused));
        assert!(
            holds.check("other", &ids, now()).is_none(),
            "one account's pause"
        );
        assert!(holds.check("acct", &["b.test".into()], now()).is_none());
        assert_eq!(holds.paused_count(), 3);
        holds.release(&ids);
        assert!(holds.check("acct", &ids, now()).is_none(), "renew lifts it");
    }

    #[test]
    fn a_rate_limit_holds_the_account_or_the_names_it_names_until_the_cas_time() {
        let ids = vec!["a.test".to_string(), "b.test".to_string()];
        let rl = "urn:ietf:params:acme:error:rateLimited";
        let (held, hold) = hold_for(
            le(),
            rl,
            "too many new orders recently",
            &ids,
            Some(Duration::from_secs(3600)),
            now(),
        )
        .expect("held");
        assert!(held.is_empty(), "the whole account");
        assert_eq!(hold.until, "2026-12-06T21:00:00Z".parse().expect("time"));
        assert!(
            hold.reason
                .contains("every new order of this ACME account until 2026-12-06T21:00:00Z")
        );
        let holds = Holds::default();
        holds.hold("acct", &held, hold);
        assert!(holds.check("acct", &["z.test".into()], now()).is_some());
        assert!(
            holds
                .check("acct", &ids, "2026-12-06T21:00:01Z".parse().expect("t"))
                .is_none(),
            "over when the CA said"
        );
        let detail =
            "too many certificates already issued for b.test, retry after 2026-12-06 22:00:00 UTC";
        let (held, hold) = hold_for(le(), rl, detail, &ids, None, now()).expect("held");
        assert_eq!(held, ["b.test"]);
        assert_eq!(hold.until, "2026-12-06T22:00:00Z".parse().expect("time"));
        assert_eq!(
            hold_for(
                le(),
                "urn:ietf:params:acme:error:malformed",
                "x",
                &ids,
                None,
                now()
            ),
            None
        );
    }
}
