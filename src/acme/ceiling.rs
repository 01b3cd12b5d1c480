//! A ceiling on the requests sent to each ACME server: a token bucket per
//! server (host and port), shared by every Issuer, Order and Challenge that
//! talks to it. Per-step backoff alone cannot bound a hundred Challenges
//! failing at once; this does. The rate is `--acme-requests-per-second`
//! (50: Let's Encrypt allows 250 a second per IP address on `/acme/*`,
//! 20 on new-nonce, which the client rarely calls), or an Issuer's `certwright.io/acme-requests-per-second` for its
//! server (a private CA's own limit); the burst is twice the rate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The annotation that sets an Issuer's server's rate (requests a second).
pub const ANNOTATION: &str = "certwright.io/acme-requests-per-second";

/// The default rate, in thousandths of a request a second.
static DEFAULT_MILLI: AtomicU64 = AtomicU64::new(50_000);

/// Longest a request waits for its turn: past it, it goes (a ceiling must
/// not stall a controller for good).
const MAX_QUEUE: Duration = Duration::from_secs(60);

/// A token bucket.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    /// Tokens a second.
    pub rate: f64,
    pub burst: f64,
    /// Tokens now; below zero, requests are queued.
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(rate: f64, now: Instant) -> Self {
        let rate = rate.max(0.01);
        Self {
            rate,
            burst: (rate * 2.0).max(1.0),
            tokens: (rate * 2.0).max(1.0),
            last: now,
        }
    }

    /// Takes a token at `now`: how long the request waits for it.
    pub fn take(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((-self.tokens / self.rate).min(MAX_QUEUE.as_secs_f64()))
    }

    fn set_rate(&mut self, rate: f64) {
        let rate = rate.max(0.01);
        if (rate - self.rate).abs() > f64::EPSILON {
            self.rate = rate;
            self.burst = (rate * 2.0).max(1.0);
            self.tokens = self.tokens.min(self.burst);
        }
    }
}

static BUCKETS: LazyLock<Mutex<HashMap<String, Bucket>>> = LazyLock::new(Default::default);
/// Rates set by Issuer annotations, by server.
static RATES: LazyLock<Mutex<HashMap<String, f64>>> = LazyLock::new(Default::default);

/// Sets the default rate (`--acme-requests-per-second`).
pub fn set_default(rate: f64) {
    DEFAULT_MILLI.store((rate.max(0.01) * 1000.0) as u64, Ordering::Relaxed);
}

fn default_rate() -> f64 {
    DEFAULT_MILLI.load(Ordering::Relaxed) as f64 / 1000.0
}

/// The server (host and port) of a URL, the bucket's key.
pub fn server_of(url: &str) -> String {
    url.parse::<hyper::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.as_str().to_ascii_lowercase()))
        .unwrap_or_default()
}

/// An Issuer's annotation for its server: a positive number of requests
/// a second; anything else leaves the default (and says why).
pub fn from_annotation(server_url: &str, value: Option<&str>) -> Result<(), String> {
    let server = server_of(server_url);
    let mut rates = RATES.lock().unwrap_or_else(|e| e.into_inner());
    let Some(value) = value else {
        rates.remove(&server);
        return Ok(());
    };
    match value.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => {
            rates.insert(server, rate);
            Ok(())
        }
        _ => {
            rates.remove(&server);
            Err(format!(
                "{ANNOTATION}: {value:?} is not a positive number of requests a second"
            ))
        }
    }
}

/// Waits for a turn to send a request to the server of `url`.
pub async fn turn(url: &str) {
    let server = server_of(url);
    let rate = RATES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&server)
        .copied()
        .unwrap_or_else(default_rate);
    let wait = {
        let now = Instant::now();
        let mut buckets = BUCKETS.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 1024 {
            buckets.clear();
        }
        let bucket = buckets
            .entry(server)
            .or_insert_with(|| Bucket::new(rate, now));
        bucket.set_rate(rate);
        bucket.take(now)
    };
    if !wait.is_zero() {
        crate::metrics::acme_ceiling_wait(wait);
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(2.0, t0);
        let waits: Vec<f64> = (0..7).map(|_| b.take(t0).as_secs_f64()).collect();
        assert_eq!(
            waits,
            [0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 1.5],
            "a burst of 4, then 2 a second"
        );
        // A second later two more tokens have come: the queue is shorter.
        let later = b.take(t0 + Duration::from_secs(1));
        assert_eq!(later.as_secs_f64(), 1.0);
        // A long quiet fills the bucket to the burst, no more.
        let quiet = t0 + Duration::from_secs(3600);
        let waits: Vec<f64> = (0..5).map(|_| b.take(quiet).as_secs_f64()).collect();
        assert_eq!(waits, [0.0, 0.0, 0.0, 0.0, 0.5]);
    }

    #[test]
    fn a_queue_never_waits_past_a_minute() {
        let t0 = Instant::now();
        let mut b = Bucket::new(0.01, t0);
        for _ in 0..10 {
            b.take(t0);
        }
        assert_eq!(b.take(t0), MAX_QUEUE);
    }

    #[test]
    fn annotations_are_read_or_refused_in_words() {
        assert_eq!(
            server_of("https://CA.example:14000/dir"),
            "ca.example:14000"
        );
        assert!(from_annotation("https://ca.example/dir", Some("5")).is_ok());
        let err = from_annotation("https://ca.example/dir", Some("fast")).unwrap_err();
        assert!(err.contains("not a positive number"), "{err}");
        assert!(from_annotation("https://ca.example/dir", Some("-1")).is_err());
        assert!(from_annotation("https://ca.example/dir", None).is_ok());
    }
}
