//! A complete ACME order against the launched pebble through certwright's
//! TCP_NODELAY client: account, order for two names, HTTP-01 tokens served
//! on the port pebble validates, finalize with our own CSR, and the issued
//! chain verified against pebble's root for both names. (The token server
//! here is a plain listener; the local cluster will route it through an
//! Ingress, a Service and a Pod.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use certwright_testcluster::pebble::{Pebble, PebbleOptions, free_port};
use instant_acme::{
    AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};
use rcgen::PublicKeyData;

mod common;

type Tokens = Arc<Mutex<HashMap<String, String>>>;

async fn serve_token(
    State(tokens): State<Tokens>,
    Path(token): Path<String>,
) -> Result<String, StatusCode> {
    tokens
        .lock()
        .expect("tokens")
        .get(&token)
        .cloned()
        .ok_or(StatusCode::NOT_FOUND)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_order_against_pebble_chains_to_its_root() {
    certwright::install_crypto_provider();
    // Bound first, so none of the ports pebble picks can be this one.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("token port");
    let http_port = listener.local_addr().expect("addr").port();
    let pebble = Pebble::start(PebbleOptions {
        http_port,
        ..PebbleOptions::default()
    })
    .await
    .expect("pebble starts");

    let tokens: Tokens = Arc::default();
    let app = axum::Router::new()
        .route(
            "/.well-known/acme-challenge/{token}",
            axum::routing::get(serve_token),
        )
        .with_state(tokens.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let account = common::pebble_account(&pebble).await;

    let names = ["a.example.test", "b.example.test"];
    let identifiers: Vec<Identifier> = names
        .iter()
        .map(|n| Identifier::Dns(n.to_string()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .expect("order");
    let mut authorizations = order.authorizations();
    let mut proven = 0;
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.expect("authorization");
        assert_eq!(
            authz.status,
            AuthorizationStatus::Pending,
            "fresh pebble reuses nothing"
        );
        let mut challenge = authz
            .challenge(ChallengeType::Http01)
            .expect("pebble offers http-01");
        tokens.lock().expect("tokens").insert(
            challenge.token.clone(),
            challenge.key_authorization().as_str().to_string(),
        );
        challenge.set_ready().await.expect("challenge accepted");
        proven += 1;
    }
    assert_eq!(proven, 2);
    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(50))
        .timeout(Duration::from_secs(30));
    let status = order
        .poll_ready(&retries)
        .await
        .unwrap_or_else(|e| panic!("order ready: {e}\n{}", pebble.log()));
    assert_eq!(status, OrderStatus::Ready);

    let (key, csr) = common::csr_for(&names);
    order.finalize_csr(&csr).await.expect("finalize");
    let chain_pem = order.poll_certificate(&retries).await.expect("certificate");
    let root_pem = pebble.issuing_root_pem().to_string();
    let chain = common::verify_chain(&chain_pem, &root_pem, &names);
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).expect("leaf parses");
    assert_eq!(
        leaf.public_key().raw,
        key.subject_public_key_info().as_slice(),
        "issued for our key"
    );
}

/// With `HTTPS_PROXY` set, the ACME client reaches the CA through an HTTP
/// CONNECT tunnel (here the rules are given directly, as the environment
/// is shared by every test in the process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_is_reached_through_an_https_proxy() {
    certwright::install_crypto_provider();
    let pebble = Pebble::start(PebbleOptions {
        http_port: free_port().expect("port"),
        ..PebbleOptions::default()
    })
    .await
    .expect("pebble");
    let proxy = certwright_testcluster::connect_proxy::ConnectProxy::start()
        .await
        .expect("proxy");
    let rules = hyper_util::client::proxy::matcher::Matcher::builder()
        .https(proxy.url.clone())
        .build();
    let trust = certwright::acme::tls::Trust::Bundle(pebble.tls_ca_pem.clone().into_bytes());
    let http = certwright::acme::http::client_via(&trust, Some(Arc::new(rules))).expect("client");
    let (account, _) = instant_acme::Account::builder_with_http(http)
        .create(
            &instant_acme::NewAccount {
                contact: &[],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            pebble.directory_url.clone(),
            None,
        )
        .await
        .expect("account through the proxy");
    assert!(account.id().starts_with("https://127.0.0.1:"));
    let pebble_addr = pebble
        .directory_url
        .trim_start_matches("https://")
        .trim_end_matches("/dir")
        .to_string();
    let tunnels = proxy.tunnels();
    assert!(
        !tunnels.is_empty() && tunnels.iter().all(|t| *t == pebble_addr),
        "tunnels {tunnels:?} to {pebble_addr}"
    );
}
