//! Renewal windows (`spec.renewal.windows`, cert-manager v1.21): a cron
//! schedule in a time zone opens a window of `windowDuration`. A renewal
//! time inside a window stays; one outside moves to the next window that
//! opens, as cert-manager's `applyRenewBeforeWithWindows` decides.
//!
//! The schedule is the five-field cron robfig/cron parses (minute, hour,
//! day of month, month, day of week; `*`, `?`, lists, ranges, steps,
//! month and weekday names) and its `@hourly` … `@yearly` descriptors.

use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::civil::DateTime;
use k8s_openapi::jiff::tz::TimeZone;

use crate::api::certificate::CertificateRenewalWindow;
use crate::time::parse_go_duration;

/// A parsed schedule: which values of each field match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Day of month or weekday was `*`: both must match (else either may).
    any_day_starred: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut starred = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("bad step in {part:?}"))?,
            ),
            None => (part, 1),
        };
        let value = |v: &str| -> Result<u32, String> {
            let upper = v.to_ascii_uppercase();
            if let Some(i) = names.iter().position(|n| *n == upper) {
                return Ok(i as u32 + min);
            }
            v.parse::<u32>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| format!("{v:?} is not in {min}-{max}"))
        };
        let (low, high) = if range == "*" || range == "?" {
            starred = step == 1;
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let a = value(range)?;
            // robfig: "a/n" runs from a to the maximum.
            (a, if part.contains('/') { max } else { a })
        };
        if low > high {
            return Err(format!("{range:?} is an empty range"));
        }
        for v in (low..=high).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok((bits, starred))
}

impl Cron {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            t if t.starts_with('@') => return Err(format!("{t:?} is not a supported descriptor")),
            t => t,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = parts[..] else {
            return Err(format!(
                "{text:?} needs five fields: minute hour day-of-month month day-of-week"
            ));
        };
        let bad = |name: &str, e: String| format!("{text:?}: {name}: {e}");
        let (minutes, _) = field(minute, 0, 59, &[]).map_err(|e| bad("minute", e))?;
        let (hours, _) = field(hour, 0, 23, &[]).map_err(|e| bad("hour", e))?;
        let (days, day_star) = field(day, 1, 31, &[]).map_err(|e| bad("day of month", e))?;
        let (months, _) = field(month, 1, 12, &MONTHS).map_err(|e| bad("month", e))?;
        let (weekdays, weekday_star) =
            field(weekday, 0, 6, &WEEKDAYS).map_err(|e| bad("day of week", e))?;
        Ok(Self {
            minutes,
            hours,
            days,
            months,
            weekdays,
            any_day_starred: day_star || weekday_star,
        })
    }

    fn day_matches(&self, t: DateTime) -> bool {
        let dom = self.days & (1 << t.day()) != 0;
        let dow = self.weekdays & (1 << t.weekday().to_sunday_zero_offset()) != 0;
        if self.any_day_starred {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first start at or after `from` (Unix seconds) in `tz`, searching
    /// up to five years ahead.
    pub fn next(&self, from: i64, tz: &TimeZone) -> Option<i64> {
        // Up to a whole minute: cron starts are at second 0.
        let start = Timestamp::from_second(from + (60 - from.rem_euclid(60)) % 60).ok()?;
        let mut t = tz.to_datetime(start);
        let limit = t.year() + 5;
        while t.year() <= limit {
            if self.months & (1 << t.month()) == 0 {
                let first = t
                    .first_of_month()
                    .checked_add(k8s_openapi::jiff::Span::new().months(1))
                    .ok()?;
                t = first.start_of_day();
                continue;
            }
            if !self.day_matches(t) {
                t = t.tomorrow().ok()?.start_of_day();
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(k8s_openapi::jiff::Span::new().hours(1))
                    .ok()?;
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t = t
                    .checked_add(k8s_openapi::jiff::Span::new().minutes(1))
                    .ok()?;
                continue;
            }
            let at = tz.to_ambiguous_timestamp(t).compatible().ok()?.as_second();
            if at >= from {
                return Some(at);
            }
            // A civil time a DST change moved before `from`: the next minute.
            t = t
                .checked_add(k8s_openapi::jiff::Span::new().minutes(1))
                .ok()?;
        }
        None
    }
}

/// The renewal time `desired` (Unix seconds) of a certificate valid from
/// `not_before` to `not_after`, moved into the windows: `desired` when a
/// window is open then, else the earliest window opening after it (up to
/// `not_after` plus that window's duration). Err says which window is
/// unusable, or that none opens in time.
pub fn apply(
    windows: &[CertificateRenewalWindow],
    desired: i64,
    not_before: i64,
    not_after: i64,
) -> Result<i64, String> {
    let mut next_open: Option<i64> = None;
    for (i, w) in windows.iter().enumerate() {
        let at = |e: String| format!("spec.renewal.windows[{i}]: {e}");
        let tz = match w.timezone.as_deref().filter(|z| !z.is_empty()) {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name)
                .map_err(|e| at(format!("timezone {name:?} is not known: {e}")))?,
        };
        let cron = Cron::parse(&w.cron).map_err(|e| at(format!("cron {e}")))?;
        let duration = match parse_go_duration(&w.window_duration) {
            Ok(d) if d > 0 => d,
            Err(e) => return Err(at(format!("windowDuration: {e}"))),
            Ok(_) => return Err(at("windowDuration must be a positive duration".into())),
        };
        let search_min = not_before - duration;
        let search_max = not_after + duration;
        // Open at `desired`: a start in [desired - duration, desired].
        if desired >= search_min
            && cron
                .next((desired - duration).max(search_min), &tz)
                .is_some_and(|s| s <= desired.min(search_max))
        {
            return Ok(desired);
        }
        if let Some(s) = cron
            .next(desired.max(search_min), &tz)
            .filter(|s| *s <= search_max)
        {
            next_open = Some(next_open.map_or(s, |n| n.min(s)));
        }
    }
    next_open.ok_or_else(|| {
        format!(
            "no renewal window opens between {} and {}",
            crate::time::rfc3339(desired),
            crate::time::rfc3339(not_after)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> i64 {
        text.parse::<Timestamp>().expect("timestamp").as_second()
    }

    fn window(cron: &str, tz: Option<&str>, duration: &str) -> CertificateRenewalWindow {
        CertificateRenewalWindow {
            cron: cron.into(),
            timezone: tz.map(String::from),
            window_duration: duration.into(),
        }
    }

    #[test]
    fn schedules_parse_as_robfig_cron_parses_them() {
        let c = Cron::parse("*/15 9-17 * * MON-FRI").expect("parses");
        assert_eq!(c.minutes, 1 | 1 << 15 | 1 << 30 | 1 << 45);
        assert_eq!(c.weekdays, 0b0111110);
        assert!(c.any_day_starred);
        assert_eq!(Cron::parse("@daily"), Cron::parse("0 0 * * *"));
        assert_eq!(
            Cron::parse("5/20 * * * *").expect("a/n").minutes,
            1 << 5 | 1 << 25 | 1 << 45
        );
        for (bad, says) in [
            ("* * * *", "five fields"),
            ("61 * * * *", "minute"),
            ("* * * FOO *", "month"),
            ("* * * * */0", "step"),
            ("@every 1h", "descriptor"),
            ("5-1 * * * *", "empty range"),
        ] {
            let e = Cron::parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_next_start_honours_days_and_time_zones() {
        // Tuesdays and Thursdays at 02:30 in UTC.
        let c = Cron::parse("30 2 * * TUE,THU").expect("parses");
        // 2026-12-03 is a Thursday.
        assert_eq!(
            c.next(ts("2026-12-03T00:00:00Z"), &TimeZone::UTC),
            Some(ts("2026-12-03T02:30:00Z"))
        );
        assert_eq!(
            c.next(ts("2026-12-03T02:30:00Z"), &TimeZone::UTC),
            Some(ts("2026-12-03T02:30:00Z"))
        );
        assert_eq!(
            c.next(ts("2026-12-03T02:30:01Z"), &TimeZone::UTC),
            Some(ts("2026-12-08T02:30:00Z"))
        );
        // Both day fields restricted: either matches (the 1st, or a Sunday).
        let c = Cron::parse("0 12 1 * SUN").expect("parses");
        assert_eq!(
            c.next(ts("2026-12-02T00:00:00Z"), &TimeZone::UTC),
            Some(ts("2026-12-06T12:00:00Z"))
        );
        // 09:00 in New York is 14:00 UTC in winter, 13:00 in summer.
        let ny = TimeZone::get("America/New_York").expect("the zone database is there");
        let c = Cron::parse("0 9 * * *").expect("parses");
        assert_eq!(
            c.next(ts("2026-12-03T00:00:00Z"), &ny),
            Some(ts("2026-12-03T14:00:00Z"))
        );
        assert_eq!(
            c.next(ts("2026-07-01T00:00:00Z"), &ny),
            Some(ts("2026-07-01T13:00:00Z"))
        );
        // February 30th never comes.
        assert_eq!(
            Cron::parse("0 0 30 2 *")
                .expect("parses")
                .next(0, &TimeZone::UTC),
            None
        );
    }

    #[test]
    fn a_renewal_time_moves_into_the_next_window_or_stays_in_an_open_one() {
        let (nb, na) = (ts("2026-12-01T00:00:00Z"), ts("2027-03-01T00:00:00Z"));
        let desired = ts("2027-01-30T10:00:00Z"); // a Saturday
        // Weekdays 09:00–17:00: open on a Saturday? No: Monday 09:00.
        let weekdays = window("0 9 * * MON-FRI", None, "8h");
        assert_eq!(
            apply(std::slice::from_ref(&weekdays), desired, nb, na),
            Ok(ts("2027-02-01T09:00:00Z"))
        );
        // Saturdays from 08:00 for 4h: open at 10:00, so it stays.
        let saturday = window("0 8 * * SAT", None, "4h");
        assert_eq!(
            apply(&[weekdays.clone(), saturday], desired, nb, na),
            Ok(desired)
        );
        // The earliest opening of several windows wins.
        let sunday = window("0 1 * * SUN", None, "1h");
        assert_eq!(
            apply(&[weekdays, sunday], desired, nb, na),
            Ok(ts("2027-01-31T01:00:00Z"))
        );
        // A window in Tokyo: 09:00 JST is 00:00 UTC.
        let tokyo = window("0 9 * * *", Some("Asia/Tokyo"), "30m");
        assert_eq!(
            apply(&[tokyo], desired, nb, na),
            Ok(ts("2027-01-31T00:00:00Z"))
        );
        // Nothing opens before expiry; bad input names the window.
        let never = window("0 0 29 2 *", None, "1h");
        assert!(
            apply(&[never], desired, nb, na)
                .expect_err("none")
                .contains("no renewal window opens")
        );
        let bad = window("0 9 * * *", Some("Mars/Olympus"), "1h");
        assert!(
            apply(&[bad], desired, nb, na)
                .expect_err("tz")
                .contains("windows[0]: timezone")
        );
        let bad = window("0 9 * * *", None, "0s");
        assert!(
            apply(&[bad], desired, nb, na)
                .expect_err("duration")
                .contains("positive")
        );
    }
}
