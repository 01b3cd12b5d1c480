//! The renewal time of an issued certificate.

pub mod ari;
pub mod backoff;
pub mod windows;

use crate::time::parse_go_duration;

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
    suggestion: Option<&ari::Suggestion>,
) -> Scheduled {
    use crate::api::certificate::CertificateRenewalPolicy as Policy;
    let desired = ari::renew_at(cert, renewal_of(cert, not_before, not_after), suggestion);
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
    match windows::apply(windows, desired, not_before, not_after) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
