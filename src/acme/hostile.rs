//! A hostile or broken ACME server against the real client stack
//! (instant-acme over [`super::http`]): waits no clock can add, bodies too
//! large or cut short, problem documents without a type. Each must be an
//! error in words, or a clamped wait, never a panic or a hang.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use instant_acme::{Account, CertificateIdentifier, NewAccount};

use super::errors::{Verdict, classify, plain};
use super::http::{ResponseLog, recording_client};
use super::retry::MAX_WAIT;
use super::tls::Trust;

/// What the fake answers on its order and renewal-information routes.
#[derive(Clone)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Vec<u8>,
}

#[derive(Clone)]
struct Fake {
    base: String,
    answer: Arc<Mutex<Answer>>,
}

fn nonce() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("replay-nonce", HeaderValue::from_static("bm9uY2U"));
    headers
}

async fn directory(State(fake): State<Fake>) -> Response {
    let b = &fake.base;
    let body = serde_json::json!({
        "newNonce": format!("{b}/nonce"), "newAccount": format!("{b}/account"),
        "newOrder": format!("{b}/new-order"), "renewalInfo": format!("{b}/ari"),
    });
    (StatusCode::OK, body.to_string()).into_response()
}

async fn new_nonce() -> Response {
    (StatusCode::OK, nonce()).into_response()
}

async fn account(State(fake): State<Fake>) -> Response {
    let mut headers = nonce();
    let location = format!("{}/account/1", fake.base);
    headers.insert("location", HeaderValue::from_str(&location).expect("url"));
    let body = serde_json::json!({"status": "valid"}).to_string();
    (StatusCode::CREATED, headers, body).into_response()
}

async fn answered(State(fake): State<Fake>) -> Response {
    let answer = fake.answer.lock().expect("lock").clone();
    let mut headers = nonce();
    if let Some(value) = answer
        .retry_after
        .and_then(|v| HeaderValue::from_str(&v).ok())
    {
        headers.insert("retry-after", value);
    }
    let status = StatusCode::from_u16(answer.status).expect("status");
    (status, headers, answer.body).into_response()
}

/// A fake ACME server on loopback, an account at it, and the log of responses.
async fn fake(first: Answer) -> (Account, ResponseLog, Arc<Mutex<Answer>>, String) {
    crate::install_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let answer = Arc::new(Mutex::new(first));
    let state = Fake {
        base: base.clone(),
        answer: answer.clone(),
    };
    use axum::routing::{get, post};
    let app = axum::Router::new()
        .route("/dir", get(directory))
        .route("/nonce", get(new_nonce).head(new_nonce))
        .route("/account", post(account))
        .route("/order/1", post(answered))
        .route("/ari/{id}", get(answered))
        .with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (http, log) = recording_client(&Trust::Insecure).expect("client");
    let new = NewAccount {
        contact: &[],
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, _) = Account::builder_with_http(http)
        .create(&new, format!("{base}/dir"), None)
        .await
        .expect("account");
    (account, log, answer, base)
}

fn pending_order() -> Vec<u8> {
    serde_json::json!({"status": "pending", "identifiers": [{"type": "dns", "value": "a.test"}],
        "authorizations": [], "finalize": "http://127.0.0.1:9/finalize"})
    .to_string()
    .into_bytes()
}

fn renewal_info() -> Vec<u8> {
    serde_json::json!({"suggestedWindow": {"start": "2026-12-01T00:00:00Z", "end": "2026-12-02T00:00:00Z"}})
        .to_string()
        .into_bytes()
}

fn ari_id() -> CertificateIdentifier<'static> {
    CertificateIdentifier {
        authority_key_identifier: "aYhba4dGQEHhs3uEe6CuLN4ByNQ".into(),
        serial: "AIdlQyE8xR-p".into(),
    }
}

#[tokio::test]
async fn a_retry_after_no_clock_can_add_is_a_day_not_a_panic() {
    let ok = |retry_after: &str, body: Vec<u8>| Answer {
        status: 200,
        retry_after: Some(retry_after.into()),
        body,
    };
    let (account, log, answer, base) = fake(ok("18446744073709551615", pending_order())).await;
    let order_url = format!("{base}/order/1");
    // The order: recorded clamped.
    account.order(order_url.clone()).await.expect("order");
    assert_eq!(log.retry_after(&order_url), Some(MAX_WAIT));
    // Renewal information: instant-acme adds the header to the clock itself
    // (it panicked on this value); it sees the clamped day.
    *answer.lock().expect("lock") = ok("18446744073709551615", renewal_info());
    let (_, wait) = account.renewal_info(&ari_id()).await.expect("renewal info");
    assert!(
        wait <= MAX_WAIT && wait > MAX_WAIT - Duration::from_secs(60),
        "{wait:?}"
    );
    // Every other shape a hostile server sends.
    let ari_url = format!("{base}/ari/{}", ari_id());
    for (value, want) in [
        ("99999999999999999999999999", Some(MAX_WAIT)),
        ("Thu, 31 Dec 2099 23:59:59 GMT", Some(MAX_WAIT)),
        // Past the end of time as jiff knows it: not a date.
        ("Fri, 31 Dec 9999 23:59:59 GMT", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", Some(Duration::ZERO)),
        ("-5", None),
        ("soon", None),
        ("1e9", None),
    ] {
        *answer.lock().expect("lock") = ok(value, renewal_info());
        let result = account.renewal_info(&ari_id()).await;
        assert_eq!(log.retry_after(&ari_url), want, "{value}");
        match want {
            // instant-acme wants the header for renewal information.
            None => assert!(result.is_err(), "{value}"),
            Some(w) => assert!(result.expect(value).1 <= w, "{value}"),
        }
    }
}

#[tokio::test]
async fn a_body_too_large_is_an_error_not_memory_spent() {
    let mut huge = b"{\"status\": \"pending\", \"x\": \"".to_vec();
    huge.resize(20 * 1024 * 1024, b'a');
    let (account, _, answer, base) = fake(Answer {
        status: 200,
        retry_after: None,
        body: Vec::new(),
    })
    .await;
    answer.lock().expect("lock").body = huge;
    let err = account
        .order(format!("{base}/order/1"))
        .await
        .err()
        .expect("refused");
    let words = plain(&err);
    assert!(words.contains("is larger than 1024 KiB"), "{words}");
    assert!(
        matches!(classify(&err), Verdict::Transient { .. }),
        "retried on the policy, not a new kind"
    );
}

#[tokio::test]
async fn bodies_cut_short_or_not_json_are_errors_in_words() {
    let (account, _, answer, base) = fake(Answer {
        status: 200,
        retry_after: None,
        body: b"{\"status\": \"pend".to_vec(),
    })
    .await;
    let url = format!("{base}/order/1");
    let err = account.order(url.clone()).await.err().expect("cut short");
    assert!(
        matches!(
            classify(&err),
            Verdict::Config {
                reason: "NotACME",
                ..
            }
        ),
        "{err:?}"
    );
    // A proxy's HTML error page: classified by its status, in words.
    *answer.lock().expect("lock") = Answer {
        status: 502,
        retry_after: None,
        body: b"<html><body><h1>502 Bad Gateway</h1></body></html>".to_vec(),
    };
    let err = account.order(url).await.err().expect("502");
    match classify(&err) {
        Verdict::Transient { reason, detail } => {
            assert_eq!(reason, "ServerError");
            assert!(
                detail.contains("HTTP 502 with no ACME problem document")
                    && detail.contains("502 Bad Gateway"),
                "{detail}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_problem_without_a_type_is_classified_by_its_status() {
    let (account, _, answer, base) = fake(Answer {
        status: 500,
        retry_after: None,
        body: br#"{"detail": "boom"}"#.to_vec(),
    })
    .await;
    let url = format!("{base}/order/1");
    let err = account.order(url.clone()).await.err().expect("500");
    assert!(
        matches!(classify(&err), Verdict::Transient { ref detail, .. } if detail == "500: boom"),
        "{:?}",
        classify(&err)
    );
    *answer.lock().expect("lock") = Answer {
        status: 403,
        retry_after: None,
        body: br#"{"detail": "not yours"}"#.to_vec(),
    };
    let err = account.order(url).await.err().expect("403");
    assert!(
        matches!(classify(&err), Verdict::Permanent { ref detail, .. } if detail == "403: not yours"),
        "{:?}",
        classify(&err)
    );
}
