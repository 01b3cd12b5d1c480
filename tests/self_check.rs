//! The CA-view self-check over real sockets on loopback: a DNS server of
//! the test's own (A records for some names, NXDOMAIN for the rest) and an
//! HTTP server that answers by Host as a misconfigured site would. Each
//! failure must come back as the sentence a user reads on the Challenge.
//! And in a network namespace of the test's own, with public and private
//! addresses: a redirect into the cluster's networks is refused unless the
//! first request went there, and nothing is sent to the refused address.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use certwright::solver::check::{Probe, reachable};

const TOKEN: &str = "tok_EN-1";
const KEY: &str = "tok_EN-1.thumbprint";

/// Answers A queries for `names` with 127.0.0.1, NXDOMAIN for any other
/// name, and no records for AAAA.
async fn dns_server(names: &'static [&'static str]) -> SocketAddr {
    let records = names.iter().map(|n| (*n, Ipv4Addr::LOCALHOST)).collect();
    dns_answering((Ipv4Addr::LOCALHOST, 0).into(), records).await
}

/// Answers A queries on `bind` from `records`, NXDOMAIN for any other
/// name, and no records for AAAA.
async fn dns_answering(bind: SocketAddr, records: Vec<(&'static str, Ipv4Addr)>) -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind(bind).await.expect("bind dns");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let query = &buf[..n];
            // The name: labels from offset 12 to the zero byte.
            let mut at = 12;
            let mut labels = Vec::new();
            while at < n && query[at] != 0 {
                let len = query[at] as usize;
                labels.push(String::from_utf8_lossy(&query[at + 1..at + 1 + len]).to_string());
                at += 1 + len;
            }
            let qtype = u16::from_be_bytes([query[at + 1], query[at + 2]]);
            let question_end = at + 5;
            let name = labels.join(".");
            let found = records.iter().find(|(n, _)| *n == name).map(|(_, ip)| *ip);
            let known = found.is_some();
            let mut answer = query[..question_end].to_vec();
            answer[2] = 0x81;
            answer[3] = if known { 0x80 } else { 0x83 };
            answer[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
            if let (Some(ip), 1) = (found, qtype) {
                answer[7] = 1;
                answer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                answer.extend_from_slice(&ip.octets());
            }
            let _ = socket.send_to(&answer, peer).await;
        }
    });
    addr
}

/// The Host header's name, without its port.
fn host_of(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .split(':')
        .next()
        .unwrap_or("")
        .to_string()
}

/// A web server answering by Host: the right key, a wrong body, 404, a
/// redirect to another port, a loop, a redirect to a bare IP, a good
/// redirect; and a listener that never answers.
async fn web_server() -> (u16, u16) {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind web");
    let port = listener.local_addr().expect("addr").port();
    let handler = move |headers: HeaderMap, uri: Uri| async move {
        let host = host_of(&headers);
        let path = uri.path().to_string();
        let redirect = |to: String| -> Response {
            (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
        };
        match host.as_str() {
            "ok.test" if path.ends_with(TOKEN) => {
                (StatusCode::OK, format!("{KEY}\n")).into_response()
            }
            "wrong.test" => (StatusCode::OK, "<html>welcome to nginx</html>").into_response(),
            "port.test" => redirect(format!("http://ok.test:8080{path}")),
            "loop.test" => redirect(format!("http://loop2.test:{port}{path}")),
            "loop2.test" => redirect(format!("http://loop.test:{port}{path}")),
            "ip.test" => redirect(format!("http://127.0.0.1:{port}{path}")),
            "moved.test" => redirect(format!("http://ok.test:{port}{path}")),
            "broken.test" => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    };
    let app = axum::Router::new().fallback(handler);
    tokio::spawn(async move { axum::serve(listener, app).await });
    // Accepts and never answers.
    let silent = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind silent");
    let silent_port = silent.local_addr().expect("addr").port();
    std::mem::forget(silent);
    (port, silent_port)
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test]
async fn every_failure_reads_as_its_cause() {
    certwright::install_crypto_provider();
    const NAMES: &[&str] = &[
        "ok.test",
        "wrong.test",
        "missing.test",
        "port.test",
        "loop.test",
        "loop2.test",
        "ip.test",
        "moved.test",
        "broken.test",
    ];
    let dns = dns_server(NAMES).await;
    let (port, silent) = web_server().await;
    let probe = Probe {
        nameservers: vec![dns],
        http_port: port,
        timeout: Duration::from_millis(500),
        ..Probe::default()
    };
    let check =
        |name: &'static str, probe: Probe| async move { reachable(&probe, name, TOKEN, KEY).await };

    assert_eq!(check("ok.test", probe.clone()).await, Ok(()));
    assert_eq!(
        check("moved.test", probe.clone()).await,
        Ok(()),
        "a redirect within the rules is followed"
    );

    let mut cases: HashMap<&str, (Probe, &str)> = HashMap::new();
    cases.insert(
        "nope.test",
        (
            probe.clone(),
            "no such name: nope.test does not exist (NXDOMAIN)",
        ),
    );
    cases.insert(
        "missing.test",
        (
            probe.clone(),
            "wrong status code 404, expected 200: not routed",
        ),
    );
    cases.insert(
        "broken.test",
        (probe.clone(), "wrong status code 500, expected 200"),
    );
    cases.insert(
        "wrong.test",
        (
            probe.clone(),
            "the body \"<html>welcome to nginx</\"… is not the key authorization",
        ),
    );
    cases.insert("port.test", (probe.clone(), "redirect to \"http://ok.test:8080/.well-known/acme-challenge/tok_EN-1\" refused: validators follow redirects only to ports"));
    cases.insert("loop.test", (probe.clone(), "redirect loop"));
    cases.insert(
        "ip.test",
        (
            probe.clone(),
            "refused: validators do not follow redirects to a bare IP address",
        ),
    );
    // What kind of failure each is: the metric label a failure is counted by.
    let kinds = HashMap::from([
        ("nope.test", "dns"),
        ("missing.test", "not_routed"),
        ("broken.test", "wrong_status"),
        ("wrong.test", "wrong_answer"),
        ("port.test", "redirect"),
        ("loop.test", "redirect"),
        ("ip.test", "redirect"),
    ]);
    for (name, (probe, expected)) in cases {
        let failure = check(name, probe).await.expect_err(name);
        assert_eq!(failure.label(), kinds[name], "{name}: {failure}");
        let got = failure.to_string();
        assert!(
            got.contains(expected),
            "{name}: {got:?} does not say {expected:?}"
        );
        assert!(
            got.starts_with(&format!(
                "GET http://{name}/.well-known/acme-challenge/{TOKEN}"
            )),
            "{got}"
        );
    }

    let refused = Probe {
        http_port: closed_port(),
        ..probe.clone()
    };
    let failure = check("ok.test", refused).await.expect_err("refused");
    assert_eq!(failure.label(), "unreachable", "{failure}");
    let got = failure.to_string();
    assert!(
        got.contains("via 127.0.0.1:") && got.ends_with("connection refused"),
        "{got}"
    );

    let hung = Probe {
        http_port: silent,
        ..probe.clone()
    };
    let got = check("ok.test", hung)
        .await
        .expect_err("timeout")
        .to_string();
    assert!(got.ends_with("no answer within the timeout"), "{got}");

    // Without hairpin NAT: the request goes to the configured address with
    // the Host header, and the name is not resolved at all.
    let via = Probe {
        nameservers: Vec::new(),
        via: Some(format!("127.0.0.1:{port}")),
        ..probe.clone()
    };
    assert_eq!(check("ok.test", via).await, Ok(()));
}

/// In a network namespace of our own: a public first hop (198.51.100.10)
/// whose redirect leads to a private address or to the metadata address
/// is refused, with no request sent there; a private first hop still
/// follows a redirect to another private address, not to link-local.
#[test]
fn a_redirect_into_the_clusters_networks_is_refused() {
    use certwright_testcluster::netns::Netns;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = std::env::temp_dir().join(format!("certwright-self-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("log dir");
    let ns = Netns::new("self-check", &dir).expect("a network namespace (needs root)");
    for addr in [
        "198.51.100.10/32",
        "10.0.0.7/32",
        "10.0.0.8/32",
        "169.254.169.254/32",
    ] {
        ns.ip(&["addr", "add", addr, "dev", "lo"]).expect("address");
    }
    let inside = Arc::new(AtomicUsize::new(0));
    let counted = inside.clone();
    let results = std::thread::spawn(move || {
        ns.join_current_thread().expect("join the namespace");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            certwright::install_crypto_provider();
            let public = Ipv4Addr::new(198, 51, 100, 10);
            let dns = dns_answering(
                (public, 53).into(),
                vec![
                    ("public.test", public),
                    ("meta.test", public),
                    ("private-first.test", Ipv4Addr::new(10, 0, 0, 8)),
                    ("private-meta.test", Ipv4Addr::new(10, 0, 0, 8)),
                    ("inside.test", Ipv4Addr::new(10, 0, 0, 7)),
                    ("metadata.test", Ipv4Addr::new(169, 254, 169, 254)),
                ],
            )
            .await;
            // One server on every address, answering by Host: the first
            // hops redirect, the targets answer the key (so only a refusal
            // can stop the check) and count what reached them.
            let handler = move |headers: HeaderMap, uri: Uri| {
                let counted = counted.clone();
                async move {
                    let host = host_of(&headers);
                    let to = |name: &str| -> Response {
                        (
                            StatusCode::FOUND,
                            [(header::LOCATION, format!("http://{name}{}", uri.path()))],
                        )
                            .into_response()
                    };
                    match host.as_str() {
                        "public.test" | "private-first.test" => to("inside.test"),
                        "meta.test" | "private-meta.test" => to("metadata.test"),
                        _ => {
                            counted.fetch_add(1, Ordering::SeqCst);
                            (StatusCode::OK, KEY).into_response()
                        }
                    }
                }
            };
            let listener = tokio::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 80))
                .await
                .expect("bind web");
            tokio::spawn(async move {
                axum::serve(listener, axum::Router::new().fallback(handler)).await
            });
            let probe = Probe {
                nameservers: vec![dns],
                timeout: Duration::from_secs(2),
                ..Probe::default()
            };
            let mut out = Vec::new();
            for name in [
                "public.test",
                "meta.test",
                "private-first.test",
                "private-meta.test",
            ] {
                out.push((name, reachable(&probe, name, TOKEN, KEY).await));
            }
            out
        })
    })
    .join()
    .expect("the check ran");
    let got = |name: &str| {
        results
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| r.clone())
            .expect(name)
    };
    let refused = got("public.test").expect_err("refused").to_string();
    assert!(
        refused.contains("redirect to http://inside.test:80/.well-known/acme-challenge/tok_EN-1 refused: it resolves to 10.0.0.7, a private address"),
        "{refused}"
    );
    for name in ["meta.test", "private-meta.test"] {
        let why = got(name).expect_err(name).to_string();
        assert!(
            why.contains("169.254.169.254, a link-local address"),
            "{name}: {why}"
        );
    }
    assert_eq!(
        got("private-first.test"),
        Ok(()),
        "a private first hop follows private redirects"
    );
    assert_eq!(
        inside.load(Ordering::SeqCst),
        1,
        "only the allowed redirect reached a target"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
