//! What the CAs' limits hold back and what was spent of their budgets
//! (`acme::limits`, `acme::budgets`), kept in the API so that a restarted
//! controller, or a new leader, neither asks a CA that refused it again
//! nor spends a budget twice: one ConfigMap, [`CONFIG_MAP`], in the
//! cluster resource namespace, its `state.json` the holds still in force
//! and the spends still inside their windows.
//!
//! Read once when a term as leader starts, before any order is placed
//! (merged with what is spent meanwhile if the API answers late), then
//! written at most once a second, and only after a change.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};

use super::budgets::KeptSpends;
use super::limits::KeptHold;

/// The ConfigMap's name.
pub const CONFIG_MAP: &str = "certwright-acme-limits";
/// Its one key.
pub const KEY: &str = "state.json";
/// Most budgets kept (the fullest): well under a ConfigMap's 1 MiB.
const MOST_BUDGETS: usize = 5_000;
/// Most holds kept.
const MOST_HOLDS: usize = 2_000;
/// Longest a term's first read may hold the controllers back.
const FIRST_READ: Duration = Duration::from_secs(10);
/// How often a change is saved, at most.
const EVERY: Duration = Duration::from_secs(1);
/// Longest wait between tries when the API fails.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What the ConfigMap holds.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    #[serde(default)]
    pub holds: Vec<KeptHold>,
    #[serde(default)]
    pub spends: Vec<KeptSpends>,
}

impl State {
    /// The state at `now` of `ctx`'s holds and ledger.
    pub fn of(ctx: &Kept<'_>, now: Timestamp) -> State {
        let mut holds = ctx.holds.export(now);
        holds.truncate(MOST_HOLDS);
        State {
            holds,
            spends: ctx.ledger.export(now, MOST_BUDGETS),
        }
    }

    /// Reads the ConfigMap's text; a wrong one is said and read as empty
    /// (what it held is lost, not the controller).
    pub fn parse(text: &str) -> State {
        serde_json::from_str(text).unwrap_or_else(|e| {
            tracing::warn!(configmap = CONFIG_MAP, error = %e, "the kept ACME limits state is unreadable: starting from none");
            State::default()
        })
    }
}

/// What is kept and where: the holds and ledger of a term, and the client
/// and namespace of their ConfigMap.
pub struct Kept<'a> {
    pub client: &'a kube::Client,
    pub namespace: &'a str,
    pub holds: &'a crate::acme::limits::Holds,
    pub ledger: &'a crate::acme::budgets::Ledger,
}

fn api(ctx: &Kept<'_>) -> Api<ConfigMap> {
    Api::namespaced(ctx.client.clone(), ctx.namespace)
}

/// Reads the kept state into `ctx`: whether the ConfigMap exists.
async fn load(ctx: &Kept<'_>) -> Result<bool, kube::Error> {
    let Some(cm) = api(ctx).get_opt(CONFIG_MAP).await? else {
        return Ok(false);
    };
    let state = cm
        .data
        .and_then(|mut d| d.remove(KEY))
        .map(|t| State::parse(&t))
        .unwrap_or_default();
    tracing::info!(
        holds = state.holds.len(),
        budgets = state.spends.len(),
        "read the kept ACME limits state"
    );
    ctx.holds.import(state.holds);
    ctx.ledger.import(state.spends);
    Ok(true)
}

/// Writes `ctx`'s state: creates the ConfigMap when `exists` is false.
async fn save(ctx: &Kept<'_>, exists: bool) -> Result<(), kube::Error> {
    let text = serde_json::to_string(&State::of(ctx, Timestamp::now())).unwrap_or_default();
    let api = api(ctx);
    if !exists {
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(CONFIG_MAP.into()),
                labels: Some([("app.kubernetes.io/name".into(), "certwright".into())].into()),
                ..Default::default()
            },
            data: Some([(KEY.to_string(), text.clone())].into()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &cm).await {
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            other => return other.map(|_| ()),
        }
    }
    let patch = serde_json::json!({"data": {KEY: text}});
    api.patch(CONFIG_MAP, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
}

/// Reads the kept state before the controllers start, for a while at most;
/// whether it was read.
pub async fn first_read(ctx: &Kept<'_>) -> Option<bool> {
    match tokio::time::timeout(FIRST_READ, load(ctx)).await {
        Ok(Ok(exists)) => Some(exists),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "reading the kept ACME limits state failed: trying again while reconciling");
            None
        }
        Err(_) => {
            tracing::warn!(
                "reading the kept ACME limits state timed out: trying again while reconciling"
            );
            None
        }
    }
}

/// Keeps `ctx`'s state in the API for the rest of the term: `exists` is
/// what [`first_read`] found (None: read it first). Never returns.
pub async fn keep(ctx: &Kept<'_>, mut exists: Option<bool>) {
    let mut saved = 0u64;
    let mut failures = 0u32;
    loop {
        let wait = if failures == 0 {
            EVERY
        } else {
            EVERY.saturating_mul(1 << failures.min(6)).min(MAX_BACKOFF)
        };
        tokio::time::sleep(wait).await;
        let Some(found) = exists else {
            match load(ctx).await {
                Ok(found) => {
                    exists = Some(found);
                    failures = 0;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, ?wait, "reading the kept ACME limits state failed");
                }
            }
            continue;
        };
        let changes = ctx.holds.changes() + ctx.ledger.changes();
        if changes == saved {
            continue;
        }
        match save(ctx, found).await {
            Ok(()) => {
                saved = changes;
                exists = Some(true);
                failures = 0;
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(configmap = CONFIG_MAP, error = %e, "saving the ACME limits state failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::budgets::{self, Budgets, Ledger, Renewal};
    use crate::acme::limits::{Hold, Holds};

    fn at(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    #[test]
    fn holds_and_spends_survive_a_round_trip_through_the_text() {
        let t0 = at("2026-12-06T10:00:00Z");
        let holds = Holds::default();
        let hold = Hold {
            until: at("2026-12-06T11:00:00Z"),
            reason: "The CA's rate limit holds every new order".into(),
            paused: false,
            issuer: ("Issuer".into(), "ca".into()),
        };
        holds.hold("https://ca.test/acct/1", &[], hold.clone());
        holds.hold(
            "https://ca.test/acct/1",
            &["Gone.test".into()],
            Hold {
                until: at("2026-12-06T09:00:00Z"),
                ..hold.clone()
            },
        );
        let ledger = Ledger::default();
        let b = Budgets::of("x", Some("newOrders=2/1h,exactSet=5/168h")).expect("ok");
        let names = vec!["a.test".to_string()];
        let spends = budgets::order_spends(&b, "https://ca.test/acct/1", &names, Renewal::No);
        ledger.spend(&spends[0], t0);
        ledger.spend(&spends[0], t0);
        ledger.spend(&spends[1], at("2026-12-01T10:00:00Z"));
        let state = State {
            holds: holds.export(t0),
            spends: ledger.export(t0, 10),
        };
        assert_eq!(state.holds.len(), 1, "the expired hold is not kept");
        assert_eq!(state.spends[0].key, spends[0].key, "the fullest first");
        let text = serde_json::to_string(&state).expect("json");
        let back = State::parse(&text);
        assert_eq!(back, state);

        // A new term: what was kept holds and counts on.
        let (holds2, ledger2) = (Holds::default(), Ledger::default());
        holds2.import(back.holds);
        ledger2.import(back.spends);
        let kept = holds2
            .check("https://ca.test/acct/1", &names, t0)
            .expect("held");
        assert_eq!(kept, hold);
        let full = ledger2
            .check(&spends, at("2026-12-06T10:20:00Z"))
            .expect("spent");
        assert_eq!(full.next, at("2026-12-06T11:00:00Z"));
        assert_eq!(ledger2.remaining(&spends[1], t0), 4);
        // Two spends in one second are two; what was spent before a late
        // read adds to what was kept.
        assert_eq!(ledger2.remaining(&spends[0], t0), 0);
        let ledger3 = Ledger::default();
        ledger3.spend(&spends[1], t0);
        ledger3.import(ledger.export(t0, 10));
        assert_eq!(ledger3.remaining(&spends[1], t0), 3);
        assert_eq!(ledger.export(t0, 1).len(), 1, "at most as many as asked");
    }

    #[test]
    fn an_unreadable_state_is_read_as_none() {
        assert_eq!(State::parse("{not json"), State::default());
        assert_eq!(State::parse("{}"), State::default());
    }
}
