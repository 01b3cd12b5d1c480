//! The token server's decision for any method, Host and path: a token is
//! answered only for its own name, never a panic.
#![no_main]

use std::collections::HashMap;

use certwright::solver::server::{Presented, decide};
use hyper::Method;
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let (method, host, path) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let tokens = HashMap::from([(
        TOKEN.to_string(),
        Presented {
            domain: "www.example.test".into(),
            key_authorization: format!("{TOKEN}.thumbprint"),
            accepted: true,
        },
    )]);
    let (status, body) = decide(&tokens, &method, host, path);
    if !body.is_empty() && path != "/healthz" {
        assert_eq!(status, 200);
        assert_eq!(path, format!("/.well-known/acme-challenge/{TOKEN}"));
        // Surrounding whitespace is no part of a Host (HTTP strips it).
        let host = host.trim();
        let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
        assert!(
            name.trim_end_matches('.').eq_ignore_ascii_case("www.example.test"),
            "answered for {host:?}"
        );
    }
});
