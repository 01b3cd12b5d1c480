//! Time as cert-manager's API spells it: Go durations (`time.ParseDuration`)
//! and the RFC 3339 and RFC 1123 forms of status fields and messages.

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
    // Go refuses what an int64 of nanoseconds cannot hold (about 2562047h).
    if !nanos.is_finite() || nanos > i64::MAX as f64 {
        return Err(format!(
            "invalid duration {text:?}: longer than Go's longest, 2562047h"
        ));
    }
    let secs = (nanos / 1e9) as i64;
    Ok(if negative { -secs } else { secs })
}

/// RFC 3339 (UTC, seconds) of Unix seconds.
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

    /// Found by fuzz/fuzz_targets/durations.rs: refused as Go refuses it,
    /// not a number of seconds later arithmetic overflows on.
    #[test]
    fn a_duration_longer_than_go_allows_is_refused() {
        for text in ["216099999999921609999999999h", "2562048h", "1e400h"] {
            assert!(parse_go_duration(text).is_err(), "{text}");
        }
        assert_eq!(parse_go_duration("2562047h"), Ok(2562047 * 3600));
    }

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
    fn time_formats() {
        assert_eq!(rfc3339(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(rfc1123(1_767_225_600), "Thu, 01 Jan 2026 00:00:00 UTC");
    }
}
