//! ACME Renewal Information (RFC 9773): when the CA offers `renewalInfo`,
//! a certificate is renewed at a point of the window the CA suggests
//! (chosen once per certificate, uniformly, as the RFC advises), the
//! window is asked again as the CA's Retry-After says (capped by
//! `--ari-poll-max-seconds`), and the new order names the certificate it
//! `replaces`. Without ARI, or when the CA answers with an error, the
//! `renewBefore` / two-thirds rule applies.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::acme::session::Sources;
use crate::api::Certificate;

/// Annotation on a CertificateRequest (copied to its Order) naming, by
/// its RFC 9773 identifier, the certificate the new one replaces.
pub const REPLACES: &str = "acme.certwright.io/replaces";
/// On a renewal's request and Order: it is asked once the CA's suggested
/// window has begun (Let's Encrypt exempts such renewals from its limits).
pub const IN_WINDOW: &str = "acme.certwright.io/renewal-in-window";
/// On the Secret: the ACME account that ordered the certificate it holds
/// (only that account may name it in `replaces`).
pub const ACCOUNT: &str = "acme.certwright.io/account";

/// What the CA suggests for one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suggestion {
    /// The window, Unix seconds.
    pub start: i64,
    pub end: i64,
    /// The point chosen in it.
    pub renew_at: i64,
    pub explanation: Option<String>,
}

/// A point of `[start, end]`, the same each time for one certificate
/// (`seed`: its identifier), spread evenly over certificates.
pub fn pick(start: i64, end: i64, seed: &str) -> i64 {
    if end <= start {
        return start;
    }
    let span = (end - start) as u64 + 1;
    // FNV-1a, 64 bits.
    let hash = seed.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    start + (hash % span) as i64
}

/// When a certificate with `spec_time` (from renewBefore or the two-thirds
/// rule) renews given the CA's suggestion: the CA's point, unless the user
/// asked for earlier renewal in the spec.
pub fn renew_at(cert: &Certificate, spec_time: i64, suggestion: Option<&Suggestion>) -> i64 {
    let user_set = cert.spec.renew_before.is_some() || cert.spec.renew_before_percentage.is_some();
    match suggestion {
        Some(s) if user_set => s.renew_at.min(spec_time),
        Some(s) => s.renew_at,
        None => spec_time,
    }
}

#[derive(Clone, Debug)]
struct Entry {
    suggestion: Option<Suggestion>,
    ask_again: Instant,
}

/// The last answer per certificate identifier.
#[derive(Default)]
pub struct Cache(Mutex<HashMap<String, Entry>>);

impl Cache {
    fn get(&self, id: &str) -> Option<Entry> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id).cloned()
    }

    /// Stores an answer; answers due to be asked again are dropped, so the
    /// map holds no more than the certificates currently in Secrets.
    fn put(&self, id: &str, entry: Entry) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, e| e.ask_again > now);
        map.insert(id.to_string(), entry);
    }
}

/// The CA's suggestion for the certificate `id` (RFC 9773 identifier) that
/// `cert` holds, asked at most as often as the CA says; None when its
/// issuer is not an ACME issuer with ARI, or the CA answered with an
/// error. Also says when to ask again.
pub async fn suggestion(
    acme: Sources<'_>,
    cache: &Cache,
    poll_max: Duration,
    cert: &Certificate,
    id: &str,
) -> (Option<Suggestion>, Duration) {
    let now = Instant::now();
    if let Some(entry) = cache.get(id)
        && entry.ask_again > now
    {
        return (entry.suggestion, entry.ask_again - now);
    }
    let ns = cert.metadata.namespace.clone().unwrap_or_default();
    let (suggestion, wait) = match ask(acme, &ns, cert, id).await {
        Ok((s, retry_after)) => (Some(s), retry_after.min(poll_max)),
        Err(why) => {
            tracing::debug!(certificate = %format!("{ns}/{}", cert.metadata.name.clone().unwrap_or_default()), %why, "no renewal information");
            (None, poll_max)
        }
    };
    let wait = wait.max(Duration::from_secs(1));
    cache.put(
        id,
        Entry {
            suggestion: suggestion.clone(),
            ask_again: now + wait,
        },
    );
    (suggestion, wait)
}

async fn ask(
    acme: Sources<'_>,
    ns: &str,
    cert: &Certificate,
    id: &str,
) -> Result<(Suggestion, Duration), String> {
    let (aki, serial) = id
        .split_once('.')
        .ok_or_else(|| format!("{id:?} is not a certificate identifier"))?;
    let identifier = instant_acme::CertificateIdentifier {
        authority_key_identifier: aki.to_string().into(),
        serial: serial.to_string().into(),
    };
    let session = crate::acme::session::session(acme, ns, &cert.spec.issuer_ref)
        .await
        .map_err(|e| e.to_string())?;
    let (info, retry_after) = session
        .account
        .renewal_info(&identifier)
        .await
        .map_err(|e| e.to_string())?;
    let start = info.suggested_window.start.unix_timestamp();
    let end = info.suggested_window.end.unix_timestamp();
    Ok((
        Suggestion {
            start,
            end,
            renew_at: pick(start, end, id),
            explanation: info.explanation_url,
        },
        retry_after,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CertificateSpec;

    #[test]
    fn the_point_is_in_the_window_and_stable_per_certificate() {
        let (start, end) = (1_000, 2_000);
        let a = pick(start, end, "aki.serial-a");
        assert!((start..=end).contains(&a));
        assert_eq!(a, pick(start, end, "aki.serial-a"), "stable");
        let spread: std::collections::BTreeSet<i64> = (0..50)
            .map(|i| pick(start, end, &format!("aki.serial-{i}")))
            .collect();
        assert!(spread.len() > 40, "spread over the window: {spread:?}");
        assert_eq!(pick(5, 5, "x"), 5);
        assert_eq!(
            pick(9, 5, "x"),
            9,
            "a window ending before it starts: its start"
        );
    }

    #[test]
    fn the_cas_point_wins_unless_the_user_asked_for_earlier() {
        let s = Suggestion {
            start: 100,
            end: 200,
            renew_at: 150,
            explanation: None,
        };
        let plain = Certificate::new("c", CertificateSpec::default());
        assert_eq!(renew_at(&plain, 120, Some(&s)), 150, "ARI replaces 2/3");
        assert_eq!(renew_at(&plain, 120, None), 120, "no ARI: 2/3");
        let mut early = plain.clone();
        early.spec.renew_before = Some("720h".into());
        assert_eq!(
            renew_at(&early, 120, Some(&s)),
            120,
            "the user's earlier time"
        );
        assert_eq!(
            renew_at(&early, 180, Some(&s)),
            150,
            "the CA's earlier time"
        );
    }
}
