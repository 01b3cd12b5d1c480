//! Let's Encrypt's published limits (letsencrypt.org/docs/rate-limits) as
//! budgets kept before asking: a request the CA would refuse is not sent,
//! and the Order says when the next slot comes. On by default for Let's
//! Encrypt's directories (staging has its own, higher numbers); an
//! Issuer's annotation `certwright.io/acme-budgets` sets them for any CA
//! (`newOrders=300/3h,failedAuthorizations=5/1h,exactSet=5/168h,registeredDomain=50/168h`,
//! any of them; `off` for none).
//!
//! Each budget counts what this controller spent, in memory and in the
//! API (`acme::kept`, so a restart or a new leader counts on): the
//! per-domain limit is shared with every other client of the domain, so a
//! client sees only its own share.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The annotation that sets an Issuer's budgets.
pub const ANNOTATION: &str = "certwright.io/acme-budgets";

/// One limit: `count` in any `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub count: u32,
    pub window: Duration,
}

/// The four budgets; `None`: not kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budgets {
    /// New orders per account.
    pub new_orders: Option<Limit>,
    /// Failed authorizations per identifier per account.
    pub failed_authorizations: Option<Limit>,
    /// Certificates per exact set of names.
    pub exact_set: Option<Limit>,
    /// Certificates per registered domain.
    pub registered_domain: Option<Limit>,
}

const HOUR: u64 = 3600;
const WEEK: u64 = 7 * 24 * HOUR;

fn limit(count: u32, secs: u64) -> Option<Limit> {
    Some(Limit {
        count,
        window: Duration::from_secs(secs),
    })
}

/// Let's Encrypt's production limits.
pub const PRODUCTION: &str = "acme-v02.api.letsencrypt.org";
/// Let's Encrypt's staging limits.
pub const STAGING: &str = "acme-staging-v02.api.letsencrypt.org";

impl Budgets {
    /// The budgets for `server` with the issuer's annotation `value`.
    pub fn of(server: &str, value: Option<&str>) -> Result<Budgets, String> {
        if let Some(value) = value {
            return parse(value);
        }
        let host = super::ceiling::server_of(server);
        let host = host.split(':').next().unwrap_or_default();
        Ok(match host {
            PRODUCTION => Budgets {
                new_orders: limit(300, 3 * HOUR),
                failed_authorizations: limit(5, HOUR),
                exact_set: limit(5, WEEK),
                registered_domain: limit(50, WEEK),
            },
            STAGING => Budgets {
                new_orders: limit(1500, 3 * HOUR),
                failed_authorizations: limit(200, HOUR),
                exact_set: limit(30_000, WEEK),
                registered_domain: limit(30_000, WEEK),
            },
            _ => Budgets::default(),
        })
    }
}

/// Reads `newOrders=300/3h,…` (or `off`).
fn parse(value: &str) -> Result<Budgets, String> {
    let mut out = Budgets::default();
    if value.trim() == "off" {
        return Ok(out);
    }
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let why = || {
            format!(
                "{ANNOTATION}: {item:?} is not NAME=COUNT/DURATION (newOrders, failedAuthorizations, exactSet or registeredDomain; e.g. newOrders=300/3h)"
            )
        };
        let (name, rest) = item.split_once('=').ok_or_else(why)?;
        let (count, window) = rest.split_once('/').ok_or_else(why)?;
        let count: u32 = count.trim().parse().map_err(|_| why())?;
        let secs = crate::time::parse_go_duration(window.trim()).map_err(|_| why())?;
        let l = (secs > 0).then(|| Limit {
            count,
            window: Duration::from_secs(secs as u64),
        });
        let l = l.ok_or_else(why)?;
        match name.trim() {
            "newOrders" => out.new_orders = Some(l),
            "failedAuthorizations" => out.failed_authorizations = Some(l),
            "exactSet" => out.exact_set = Some(l),
            "registeredDomain" => out.registered_domain = Some(l),
            _ => return Err(why()),
        }
    }
    Ok(out)
}

/// The registered domain a name counts against: the Public Suffix List's
/// (built in), an IPv4 address itself, an IPv6 address's /64.
pub fn registered_domain(name: &str) -> String {
    let name = name.trim_start_matches("*.").trim_end_matches('.');
    match name.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => return v4.to_string(),
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            return format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]);
        }
        Err(_) => {}
    }
    let lower = name.to_ascii_lowercase();
    psl::domain_str(&lower).unwrap_or(&lower).to_string()
}

/// One spend a new order would make, in words and as a ledger key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spend {
    pub limit: Limit,
    /// The limit's name, for metrics: `newOrders`, …
    pub name: &'static str,
    /// In words: "new orders of this ACME account".
    pub what: String,
    pub key: String,
}

/// How a new order renews, for the exemptions Let's Encrypt grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Not a renewal.
    No,
    /// It names the certificate it replaces: exempt from the new-order
    /// and per-domain limits.
    Replaces,
    /// It does so inside the CA's suggested window (ARI): exempt from all.
    InWindow,
}

/// What placing an order for `names` on `account` spends (and checks).
pub fn order_spends(b: &Budgets, account: &str, names: &[String], renewal: Renewal) -> Vec<Spend> {
    if renewal == Renewal::InWindow {
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Some(limit) = b.new_orders.filter(|_| renewal == Renewal::No) {
        out.push(Spend {
            limit,
            name: "newOrders",
            what: "new orders of this ACME account".into(),
            key: format!("newOrders|{account}"),
        });
    }
    out.extend(issue_spends(b, account, names, renewal));
    if let Some(limit) = b.failed_authorizations {
        for n in names {
            // Checked, not spent: a failed validation spends it.
            out.push(failed_spend(limit, account, n));
        }
    }
    out
}

fn failed_spend(limit: Limit, account: &str, name: &str) -> Spend {
    Spend {
        limit,
        name: "failedAuthorizations",
        what: format!("failed validations of {name} for this ACME account"),
        key: format!(
            "failedAuthorizations|{account}|{}",
            name.to_ascii_lowercase()
        ),
    }
}

/// What a failed validation of `name` spends.
pub fn failed_validation(b: &Budgets, account: &str, name: &str) -> Option<Spend> {
    b.failed_authorizations
        .map(|limit| failed_spend(limit, account, name))
}

/// What an issued certificate for `names` spends (counted per CA: the
/// account's server).
pub fn issue_spends(b: &Budgets, account: &str, names: &[String], renewal: Renewal) -> Vec<Spend> {
    let mut out = Vec::new();
    if renewal == Renewal::InWindow {
        return out;
    }
    let ca = super::ceiling::server_of(account);
    if let Some(limit) = b.exact_set {
        let mut set: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        set.sort();
        set.dedup();
        out.push(Spend {
            limit,
            name: "exactSet",
            what: format!("certificates for exactly {}", set.join(", ")),
            key: format!("exactSet|{ca}|{}", set.join(",")),
        });
    }
    if let Some(limit) = b.registered_domain.filter(|_| renewal == Renewal::No) {
        let mut domains: Vec<String> = names.iter().map(|n| registered_domain(n)).collect();
        domains.sort();
        domains.dedup();
        for d in domains {
            out.push(Spend {
                limit,
                name: "registeredDomain",
                what: format!("certificates for the registered domain {d}"),
                key: format!("registeredDomain|{ca}|{d}"),
            });
        }
    }
    out
}

/// What was spent of one budget: its limit, and the times, oldest first.
#[derive(Default)]
struct Spent {
    limit: Option<Limit>,
    times: VecDeque<Timestamp>,
}

/// What was spent, by key.
#[derive(Default)]
pub struct Ledger {
    spent: Mutex<HashMap<String, Spent>>,
    /// Bumped by every spend, for `acme::kept` to save.
    changes: AtomicU64,
}

/// One budget's spends as `acme::kept` stores them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptSpends {
    pub key: String,
    pub count: u32,
    pub window_seconds: u64,
    /// Unix seconds, oldest first.
    pub times: Vec<i64>,
}

/// A budget spent out: which, and when its next slot comes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exhausted {
    pub spend: Spend,
    pub next: Timestamp,
}

impl Exhausted {
    /// In words, for the Order's reason.
    pub fn describe(&self) -> String {
        let l = self.spend.limit;
        format!(
            "the CA's limit of {} {} per {} would be exceeded (kept by certwright before asking); the next slot is at {}",
            l.count,
            self.spend.what,
            words(l.window),
            self.next.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    }
}

/// A window in Go's words, as Let's Encrypt writes them: 3h, 168h, 90m.
fn words(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn since(now: Timestamp, window: Duration) -> Timestamp {
    let w = SignedDuration::try_from(window).unwrap_or(SignedDuration::MAX);
    now.saturating_sub(w).unwrap_or(Timestamp::MIN)
}

impl Ledger {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Spent>> {
        self.spent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What is left of `spend`'s budget at `now`.
    pub fn remaining(&self, spend: &Spend, now: Timestamp) -> u32 {
        let mut map = self.map();
        let Some(Spent { times, .. }) = map.get_mut(&spend.key) else {
            return spend.limit.count;
        };
        let from = since(now, spend.limit.window);
        while times.front().is_some_and(|t| *t <= from) {
            times.pop_front();
        }
        spend.limit.count.saturating_sub(times.len() as u32)
    }

    /// The first of `spends` that has nothing left at `now`, with its next slot.
    pub fn check(&self, spends: &[Spend], now: Timestamp) -> Option<Exhausted> {
        spends.iter().find_map(|s| {
            if self.remaining(s, now) > 0 {
                return None;
            }
            let map = self.map();
            let oldest = map.get(&s.key).and_then(|t| t.times.front().copied())?;
            let w = SignedDuration::try_from(s.limit.window).unwrap_or(SignedDuration::MAX);
            Some(Exhausted {
                spend: s.clone(),
                next: oldest.saturating_add(w).unwrap_or(Timestamp::MAX),
            })
        })
    }

    /// Spends one of `spend` at `now`.
    pub fn spend(&self, spend: &Spend, now: Timestamp) {
        let mut map = self.map();
        if map.len() > 100_000 {
            map.clear();
        }
        let spent = map.entry(spend.key.clone()).or_default();
        spent.limit = Some(spend.limit);
        spent.times.push_back(now);
        while spent.times.len() > spend.limit.count as usize + 1 {
            spent.times.pop_front();
        }
        self.changes.fetch_add(1, Ordering::Relaxed);
    }

    /// How many spends were made so far.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// What was spent within each budget's window at `now`, to be kept:
    /// at most `most` budgets, the fullest first.
    pub fn export(&self, now: Timestamp, most: usize) -> Vec<KeptSpends> {
        let map = self.map();
        let mut out: Vec<(u32, KeptSpends)> = map
            .iter()
            .filter_map(|(key, spent)| {
                let limit = spent.limit?;
                let from = since(now, limit.window);
                let times: Vec<i64> = spent
                    .times
                    .iter()
                    .filter(|t| **t > from)
                    .map(|t| t.as_second())
                    .collect();
                let left = limit.count.saturating_sub(times.len() as u32);
                (!times.is_empty()).then(|| {
                    let kept = KeptSpends {
                        key: key.clone(),
                        count: limit.count,
                        window_seconds: limit.window.as_secs(),
                        times,
                    };
                    (left, kept)
                })
            })
            .collect();
        out.sort_by(|a, b| (a.0, &a.1.key).cmp(&(b.0, &b.1.key)));
        out.truncate(most);
        out.into_iter().map(|(_, k)| k).collect()
    }

    /// Takes kept spends back, added to what was spent here meanwhile
    /// (those were never kept: the state is written only once read). Two
    /// spends in the same second are two spends.
    pub fn import(&self, kept: Vec<KeptSpends>) {
        let mut map = self.map();
        for k in kept {
            let limit = Limit {
                count: k.count,
                window: Duration::from_secs(k.window_seconds),
            };
            let spent = map.entry(k.key).or_default();
            spent.limit.get_or_insert(limit);
            let mut times: Vec<Timestamp> = spent.times.drain(..).collect();
            times.extend(
                k.times
                    .iter()
                    .filter_map(|s| Timestamp::from_second(*s).ok()),
            );
            times.sort();
            let keep = limit.count as usize + 1;
            spent.times = times.into_iter().rev().take(keep).rev().collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    #[test]
    fn lets_encrypts_numbers_by_directory_and_the_annotation_for_any_ca() {
        let prod = Budgets::of("https://acme-v02.api.letsencrypt.org/directory", None).expect("ok");
        assert_eq!(prod.new_orders, limit(300, 3 * HOUR));
        assert_eq!(prod.failed_authorizations, limit(5, HOUR));
        assert_eq!(prod.exact_set, limit(5, WEEK));
        assert_eq!(prod.registered_domain, limit(50, WEEK));
        let staging = Budgets::of(
            "https://acme-staging-v02.api.letsencrypt.org/directory",
            None,
        )
        .expect("ok");
        assert_eq!(staging.new_orders, limit(1500, 3 * HOUR));
        assert_eq!(
            Budgets::of("https://ca.internal/dir", None),
            Ok(Budgets::default())
        );
        let set = Budgets::of(
            "https://ca.internal/dir",
            Some("newOrders=2/1h, exactSet=1/168h"),
        )
        .expect("ok");
        assert_eq!(
            (set.new_orders, set.exact_set),
            (limit(2, HOUR), limit(1, WEEK))
        );
        assert_eq!(
            Budgets::of(
                "https://acme-v02.api.letsencrypt.org/directory",
                Some("off")
            ),
            Ok(Budgets::default())
        );
        let err = Budgets::of("x", Some("orders=3")).unwrap_err();
        assert!(err.contains("NAME=COUNT/DURATION"), "{err}");
    }

    #[test]
    fn registered_domains_from_the_public_suffix_list_and_addresses() {
        assert_eq!(registered_domain("www.example.co.uk"), "example.co.uk");
        assert_eq!(registered_domain("*.a.b.example.com"), "example.com");
        assert_eq!(registered_domain("WWW.Example.ORG."), "example.org");
        assert_eq!(registered_domain("192.0.2.7"), "192.0.2.7");
        assert_eq!(registered_domain("2001:db8:1:2:3::4"), "2001:db8:1:2::/64");
        assert_eq!(registered_domain("localhost"), "localhost");
    }

    #[test]
    fn a_spent_budget_waits_for_its_oldest_spend_to_leave_the_window() {
        let b = Budgets::of(
            "x",
            Some("newOrders=2/1h,exactSet=1/168h,registeredDomain=3/168h"),
        )
        .expect("ok");
        let ledger = Ledger::default();
        let names = vec!["a.example.com".to_string(), "b.example.com".to_string()];
        let spends = order_spends(&b, "acct", &names, Renewal::No);
        let t0 = at("2026-12-06T10:00:00Z");
        assert_eq!(ledger.check(&spends, t0), None);
        ledger.spend(&spends[0], t0);
        ledger.spend(&spends[0], at("2026-12-06T10:30:00Z"));
        let full = ledger
            .check(&spends, at("2026-12-06T10:40:00Z"))
            .expect("spent");
        assert_eq!(full.spend.name, "newOrders");
        assert_eq!(full.next, at("2026-12-06T11:00:00Z"));
        assert!(
            full.describe()
                .contains("limit of 2 new orders of this ACME account per 1h"),
            "{}",
            full.describe()
        );
        assert_eq!(
            ledger.check(&spends, at("2026-12-06T11:00:01Z")),
            None,
            "a slot is free again"
        );
        // A certificate issued spends its exact set and its domain.
        for s in issue_spends(&b, "acct", &names, Renewal::No) {
            ledger.spend(&s, t0);
        }
        let again = ledger
            .check(&spends, at("2026-12-06T12:00:00Z"))
            .expect("exact set");
        assert_eq!(again.spend.name, "exactSet");
        let other = vec!["c.example.com".to_string()];
        let spends = order_spends(&b, "acct", &other, Renewal::No);
        assert_eq!(ledger.check(&spends, at("2026-12-06T12:00:00Z")), None);
        assert_eq!(
            ledger.remaining(&spends[2], at("2026-12-06T12:00:00Z")),
            2,
            "example.com spent once"
        );
        // An ARI renewal in its window is exempt from all; one of the same
        // certificate outside it from the new-order and per-domain limits.
        assert!(order_spends(&b, "acct", &names, Renewal::InWindow).is_empty());
        let kept: Vec<&str> = order_spends(&b, "acct", &names, Renewal::Replaces)
            .iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(kept, ["exactSet"]);
    }

    #[test]
    fn failed_validations_are_checked_per_name_and_spent_by_a_failure() {
        let b = Budgets::of("x", Some("failedAuthorizations=2/1h")).expect("ok");
        let ledger = Ledger::default();
        let t0 = at("2026-12-06T10:00:00Z");
        let names = vec!["broken.test".to_string()];
        let failed = failed_validation(&b, "acct", "broken.test").expect("kept");
        ledger.spend(&failed, t0);
        ledger.spend(&failed, t0);
        let spends = order_spends(&b, "acct", &names, Renewal::No);
        let full = ledger.check(&spends, t0).expect("spent");
        assert!(
            full.describe()
                .contains("failed validations of broken.test"),
            "{}",
            full.describe()
        );
        assert!(
            ledger
                .check(&order_spends(&b, "other", &names, Renewal::No), t0)
                .is_none()
        );
    }
}
