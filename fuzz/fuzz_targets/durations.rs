//! `Retry-After` from a CA, Go durations from a user's spec, and the CLI's
//! durations: any text parses or is refused, and a parsed wait is clamped.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for now in [0, 1_700_000_000, i64::MAX, i64::MIN] {
        if let Some(wait) = certwright::acme::http::parse_retry_after(text, now) {
            assert!(wait <= certwright::acme::retry::MAX_WAIT, "{text:?}: {wait:?}");
        }
    }
    let _ = certwright::time::parse_go_duration(text);
    let _ = certwright::cli::parse_duration(text);
});
