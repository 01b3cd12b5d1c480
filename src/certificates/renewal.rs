//! Durations as Certificates spell them (Go's `time.ParseDuration`) and the
//! renewal time of an issued certificate.

use k8s_openapi::jiff::Timestamp;

/// Parses a Go duration (`2160h`, `1h30m`, `90s`, `1.5h`) into whole seconds.
pub fn parse_go_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("invalid duration {text:?} (expected e.g. 2160h, 1h30m, 90s)");
    let s = text.trim();
    if s.is_empty() {
        return Err(invalid());
    }
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let value: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(invalid()),
        };
        nanos += value * scale;
        rest = &rest[unit_len..];
    }
    let secs = (nanos / 1e9) as i64;
    Ok(if negative { -secs } else { secs })
}

/// When to renew a certificate valid from `not_before` to `not_after`
/// (Unix seconds): `renewBefore` ahead of expiry if shorter than the
/// lifetime, else `renewBeforePercentage` of the lifetime, else a third.
pub fn renewal_time(
    not_before: i64,
    not_after: i64,
    renew_before: Option<i64>,
    percentage: Option<i32>,
) -> i64 {
    let lifetime = (not_after - not_before).max(0);
    let before = match (renew_before, percentage) {
        (Some(rb), _) if rb > 0 && rb < lifetime => rb,
        (_, Some(p)) if (1..100).contains(&p) => lifetime * i64::from(p) / 100,
        _ => lifetime / 3,
    };
    not_after - before
}

/// When a certificate is renewed, and what kept `spec.renewal` from being
/// followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduled {
    /// Unix seconds; None with policy `Disabled`.
    pub at: Option<i64>,
    /// Why the windows could not be applied (the time without them stands).
    pub problem: Option<String>,
}

/// When `cert` renews a certificate valid from `not_before` to
/// `not_after`: its renewBefore (or the CA's suggestion, see
/// `ari::renew_at`), then `spec.renewal`'s policy and windows.
pub fn scheduled(
    cert: &crate::api::Certificate,
    not_before: i64,
    not_after: i64,
    suggestion: Option<&super::ari::Suggestion>,
) -> Scheduled {
    use crate::api::certificate::CertificateRenewalPolicy as Policy;
    let desired = super::ari::renew_at(cert, renewal_of(cert, not_before, not_after), suggestion);
    let renewal = cert.spec.renewal.as_ref();
    if renewal.and_then(|r| r.policy) == Some(Policy::Disabled) {
        return Scheduled {
            at: None,
            problem: None,
        };
    }
    let windows = renewal
        .and_then(|r| r.windows.as_deref())
        .unwrap_or_default();
    if windows.is_empty() {
        return Scheduled {
            at: Some(desired),
            problem: None,
        };
    }
    match super::windows::apply(windows, desired, not_before, not_after) {
        Ok(at) => Scheduled {
            at: Some(at),
            problem: None,
        },
        Err(problem) => Scheduled {
            at: Some(desired),
            problem: Some(problem),
        },
    }
}

/// When `cert` renews a certificate valid from `not_before` to
/// `not_after` (Unix seconds), from its renewBefore or
/// renewBeforePercentage.
pub fn renewal_of(cert: &crate::api::Certificate, not_before: i64, not_after: i64) -> i64 {
    let before = cert
        .spec
        .renew_before
        .as_deref()
        .and_then(|d| parse_go_duration(d).ok());
    renewal_time(
        not_before,
        not_after,
        before,
        cert.spec.renew_before_percentage,
    )
}

pub fn rfc3339(secs: i64) -> String {
    Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// RFC 1123 of Unix seconds, as cert-manager prints expiry (`Mon, 02 Jan 2006 15:04:05 UTC`).
pub fn rfc1123(secs: i64) -> String {
    Timestamp::from_second(secs)
        .map(|t| t.strftime("%a, %d %b %Y %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        for (text, secs) in [
            ("2160h", 2160 * 3600),
            ("1h30m", 5400),
            ("90s", 90),
            ("1.5h", 5400),
            ("15m", 900),
            ("0", 0),
            ("-1h", -3600),
            ("1500ms", 1),
        ] {
            assert_eq!(parse_go_duration(text), Ok(secs), "{text}");
        }
        for bad in ["", "1", "h", "1d", "1h30", "abc"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn renewal_rules() {
        let (nb, na) = (0, 90 * 86_400);
        assert_eq!(
            renewal_time(nb, na, None, None),
            60 * 86_400,
            "a third before expiry by default"
        );
        assert_eq!(renewal_time(nb, na, Some(15 * 86_400), None), 75 * 86_400);
        assert_eq!(
            renewal_time(nb, na, Some(100 * 86_400), None),
            60 * 86_400,
            "renewBefore longer than the lifetime falls back"
        );
        assert_eq!(renewal_time(nb, na, None, Some(25)), 67 * 86_400 + 43_200);
        assert_eq!(renewal_time(0, 3600, None, None), 2400);
    }

    #[test]
    fn time_formats() {
        assert_eq!(rfc3339(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(rfc1123(1_767_225_600), "Thu, 01 Jan 2026 00:00:00 UTC");
    }

    #[test]
    fn the_renewal_policy_and_windows_shape_the_schedule() {
        use crate::api::certificate::{
            CertificateRenewal, CertificateRenewalPolicy, CertificateRenewalWindow,
        };
        let mut cert = crate::api::Certificate::new("c", Default::default());
        // 2026-01-01 for 90 days: two thirds is 2026-03-02T00:00Z, a Monday.
        let (nb, na) = (1_767_225_600, 1_767_225_600 + 90 * 86_400);
        let plain = scheduled(&cert, nb, na, None);
        assert_eq!(
            plain,
            Scheduled {
                at: Some(nb + 60 * 86_400),
                problem: None
            }
        );
        cert.spec.renewal = Some(CertificateRenewal {
            policy: Some(CertificateRenewalPolicy::Disabled),
            windows: None,
        });
        assert_eq!(scheduled(&cert, nb, na, None).at, None, "never renewed");
        cert.spec.renewal = Some(CertificateRenewal {
            policy: None,
            windows: Some(vec![CertificateRenewalWindow {
                timezone: None,
                window_duration: "2h".into(),
                cron: "0 10 * * *".into(),
            }]),
        });
        assert_eq!(
            scheduled(&cert, nb, na, None).at,
            Some(nb + 60 * 86_400 + 10 * 3600),
            "moved to 10:00 that day"
        );
        cert.spec
            .renewal
            .as_mut()
            .unwrap()
            .windows
            .as_mut()
            .unwrap()[0]
            .cron = "bad".into();
        let broken = scheduled(&cert, nb, na, None);
        assert_eq!(broken.at, plain.at, "the time without windows stands");
        assert!(
            broken
                .problem
                .expect("said")
                .contains("spec.renewal.windows[0]: cron")
        );
    }
}
