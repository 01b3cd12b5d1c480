//! What a CA answers, as certwright's client reads it: any body with any
//! status becomes a problem document or is passed on, and any problem is
//! classified and put in words.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data.split_first() {
        Some((s, rest)) => (200 + u16::from(*s) * 2, rest),
        None => (500, data),
    };
    let (_, document) = certwright::acme::http::problem_document(status, &body.to_vec().into());
    if status >= 400 {
        // What the client hands on for an error status is a problem document.
        let problem: instant_acme::Problem =
            serde_json::from_slice(&document).expect("a problem document");
        let _ = certwright::acme::errors::classify_problem(&problem);
        let _ = certwright::acme::errors::plain(&instant_acme::Error::Api(problem));
    }
    let _ = serde_json::from_slice::<instant_acme::OrderState>(body);
    let _ = serde_json::from_slice::<instant_acme::AuthorizationState>(body);
    let _ = serde_json::from_slice::<instant_acme::Problem>(body)
        .map(|p| certwright::acme::errors::classify_problem(&p));
});
