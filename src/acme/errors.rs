//! What an ACME failure means for the Order: retry soon (network, 5xx,
//! badNonce, rateLimited, timeouts), replace the Order with a fresh one (the
//! CA lost it: 404 "No such authorization" / "No order for ID", an expired
//! or invalid order), or fail the CertificateRequest with the CA's detail
//! (rejectedIdentifier, unauthorized, caa, a profile the CA does not offer).

use instant_acme::{Error, Problem};

/// How to react to an ACME failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Try the same step again after a short backoff (or the CA's Retry-After).
    Transient {
        reason: &'static str,
        detail: String,
    },
    /// The CA no longer has the order or an authorization: start a new Order.
    ReplaceOrder { detail: String },
    /// The issuer's configuration is wrong (not an ACME directory, a TLS
    /// certificate not trusted, an account key that cannot sign): retried
    /// on the long configuration backoff, or at once when it changes.
    Config {
        reason: &'static str,
        detail: String,
    },
    /// Fail the request; further attempts back off.
    Permanent {
        reason: &'static str,
        detail: String,
    },
}

const PREFIX: &str = "urn:ietf:params:acme:error:";

/// Said of a request the CA refused for what the spec made of it (an
/// Ed25519 key where the CA takes only RSA and ECDSA): the same spec would
/// be refused again, so the Certificate waits for its spec to change.
pub const UNTIL_SPEC_CHANGES: &str = "the same spec would be refused again, so it is not retried until the Certificate's spec changes";

/// Whether a `Permanent` reason at finalization refuses the request itself
/// (its key or signature), rather than this one attempt.
pub fn refuses_what_the_spec_makes(reason: &str) -> bool {
    matches!(reason, "BadCSR" | "BadPublicKey" | "BadSignatureAlgorithm")
}

/// Whether a failure message says it waits for a spec change.
pub fn waits_for_spec_change(message: &str) -> bool {
    message.contains(UNTIL_SPEC_CHANGES)
}

fn describe(p: &Problem) -> String {
    let mut s = match (&p.status, &p.r#type) {
        (Some(code), Some(t)) => format!("{code} {t}"),
        (None, Some(t)) => t.clone(),
        (Some(code), None) => code.to_string(),
        (None, None) => "ACME error".into(),
    };
    if let Some(detail) = &p.detail {
        s.push_str(": ");
        s.push_str(detail);
    }
    for sub in &p.subproblems {
        if let Some(detail) = &sub.detail {
            s.push_str("; ");
            s.push_str(detail);
        }
    }
    s
}

/// Classifies a problem document from the CA.
pub fn classify_problem(p: &Problem) -> Verdict {
    let detail = describe(p);
    let kind = p
        .r#type
        .as_deref()
        .and_then(|t| t.strip_prefix(PREFIX))
        .unwrap_or("");
    let text = p.detail.as_deref().unwrap_or("").to_ascii_lowercase();
    let lost = p.status == Some(404)
        || text.contains("no such authorization")
        || text.contains("no order for id")
        || text.contains("no such order")
        || text.contains("order expired");
    match kind {
        "badNonce" => Verdict::Transient {
            reason: "BadNonce",
            detail,
        },
        "rateLimited" => Verdict::Transient {
            reason: "RateLimited",
            detail,
        },
        "serverInternal" => Verdict::Transient {
            reason: "ServerInternal",
            detail,
        },
        _ if lost => Verdict::ReplaceOrder { detail },
        "orderNotReady" => Verdict::Transient {
            reason: "OrderNotReady",
            detail,
        },
        "rejectedIdentifier" => Verdict::Permanent {
            reason: "RejectedIdentifier",
            detail,
        },
        "unsupportedIdentifier" => Verdict::Permanent {
            reason: "UnsupportedIdentifier",
            detail,
        },
        "caa" => Verdict::Permanent {
            reason: "CAA",
            detail,
        },
        "unauthorized" => Verdict::Permanent {
            reason: "Unauthorized",
            detail,
        },
        "invalidProfile" => Verdict::Permanent {
            reason: "InvalidProfile",
            detail,
        },
        "badCSR" => Verdict::Permanent {
            reason: "BadCSR",
            detail,
        },
        "badPublicKey" => Verdict::Permanent {
            reason: "BadPublicKey",
            detail,
        },
        "badSignatureAlgorithm" => Verdict::Permanent {
            reason: "BadSignatureAlgorithm",
            detail,
        },
        "accountDoesNotExist" | "unauthorizedAccount" => Verdict::Permanent {
            reason: "AccountProblem",
            detail,
        },
        _ if p.status.is_some_and(|s| s >= 500) => Verdict::Transient {
            reason: "ServerError",
            detail,
        },
        "malformed" => Verdict::Permanent {
            reason: "Malformed",
            detail,
        },
        _ => Verdict::Permanent {
            reason: "ACMEError",
            detail,
        },
    }
}

/// An error of instant-acme in words a user can act on: which of a
/// refused connection, an unreachable host, a name that does not resolve,
/// a TLS certificate that is not trusted (and why) or an answer that is not
/// JSON it was, rather than "client error (Connect)".
pub fn plain(e: &Error) -> String {
    match e {
        Error::Api(p) => describe(p),
        Error::Json(j) => format!(
            "the server's answer is not ACME JSON ({j}): is the issuer's server the CA's directory URL (for Let's Encrypt, https://acme-v02.api.letsencrypt.org/directory)?"
        ),
        Error::Hyper(_) | Error::Http(_) | Error::Other(_) => {
            transport(e).unwrap_or_else(|| e.to_string())
        }
        other => other.to_string(),
    }
}

/// What went wrong on the way to the server, from the error's sources.
fn transport(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(tls) = tls_in(e) {
        return Some(tls_words(tls));
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut texts = Vec::new();
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            let said = match (io.kind(), io.raw_os_error()) {
                (std::io::ErrorKind::ConnectionRefused, _) => Some(
                    "the connection was refused: nothing listens at the server's address and port",
                ),
                (_, Some(113)) | (std::io::ErrorKind::HostUnreachable, _) => {
                    Some("there is no route to the server's host (a firewall, or a wrong address)")
                }
                (_, Some(101)) | (std::io::ErrorKind::NetworkUnreachable, _) => {
                    Some("the server's network is unreachable from here")
                }
                (std::io::ErrorKind::TimedOut, _) => {
                    Some("the connection timed out (a firewall dropping it, or a wrong address)")
                }
                _ => None,
            };
            if let Some(said) = said {
                return Some(said.to_string());
            }
        }
        let text = err.to_string();
        if text.contains("failed to lookup address") || text.contains("dns error") {
            let why = texts
                .iter()
                .chain(std::iter::once(&text))
                .rev()
                .find(|t| t.contains("lookup") || t.contains("not known"))
                .cloned()
                .unwrap_or(text.clone());
            return Some(format!(
                "the server's name does not resolve ({why}): check the issuer's server URL and the cluster's DNS"
            ));
        }
        texts.push(text);
        source = err.source();
    }
    None
}

fn tls_words(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let why = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "it was not issued by a CA certwright trusts: set the issuer's caBundle to the CA that issued it (or, for a test CA only, skipTLSVerify)".to_string(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "it is not valid for the server's name: check the host in the issuer's server URL".to_string()
            }
            C::Expired | C::ExpiredContext { .. } => "it has expired".to_string(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "it is not valid yet (is this machine's clock right?)".to_string()
            }
            C::Revoked => "it has been revoked".to_string(),
            other => format!("{other:?}"),
        },
        other => return format!("the TLS handshake with the server failed: {other}"),
    };
    format!("the server's TLS certificate is not trusted: {why}")
}

/// The TLS error somewhere in the error's sources, if a handshake failed.
fn tls_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            // io::Errors wrap one another (hyper-rustls: Other around
            // InvalidData around the rustls error); their source() skips
            // a level, so unwrap them by hand.
            let mut inner = io.get_ref();
            while let Some(i) = inner {
                if let Some(tls) = i.downcast_ref::<rustls::Error>() {
                    return Some(tls);
                }
                inner = i
                    .downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref());
            }
        }
        source = err.source();
    }
    None
}

/// Classifies any error of instant-acme.
pub fn classify(e: &Error) -> Verdict {
    match e {
        Error::Api(p) => classify_problem(p),
        Error::Hyper(_) | Error::Http(_) | Error::Other(_) if tls_in(e).is_some() => {
            Verdict::Config {
                reason: "TLS",
                detail: plain(e),
            }
        }
        Error::Hyper(_) | Error::Http(_) | Error::Other(_) => Verdict::Transient {
            reason: "Network",
            detail: plain(e),
        },
        Error::Timeout(_) => Verdict::Transient {
            reason: "Timeout",
            detail: e.to_string(),
        },
        Error::Json(_) => Verdict::Config {
            reason: "NotACME",
            detail: plain(e),
        },
        Error::Crypto | Error::KeyRejected => Verdict::Config {
            reason: "AccountKey",
            detail: format!("the ACME account key cannot sign: {e}"),
        },
        other => Verdict::Permanent {
            reason: "ACMEClientError",
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What creating an account at `url` fails with, in words.
    async fn account_at(url: String, trust: crate::acme::tls::Trust) -> String {
        crate::install_crypto_provider();
        let http = crate::acme::http::client(&trust).expect("client");
        let new = instant_acme::NewAccount {
            contact: &[],
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let err = instant_acme::Account::builder_with_http(http)
            .create(&new, url, None)
            .await
            .err()
            .expect("it fails");
        plain(&err)
    }

    /// A loopback listener answering every connection with `serve`.
    async fn server<F, Fut>(serve: F) -> std::net::SocketAddr
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                serve(socket).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn transport_failures_say_which_they_were() {
        use crate::acme::tls::Trust;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Nothing listens there.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        let said = account_at(format!("https://{closed}/dir"), Trust::System).await;
        assert!(said.contains("the connection was refused"), "{said}");
        // A web page, not a directory.
        let html = server(|mut s| async move {
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf).await;
            let body = "<html><body>Welcome</body></html>";
            let _ = s
                .write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes())
                .await;
        })
        .await;
        let said = account_at(format!("http://{html}/"), Trust::System).await;
        assert!(
            said.contains("not ACME JSON") && said.contains("directory URL"),
            "{said}"
        );
        // TLS with a certificate no trusted CA issued.
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("tls");
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let tls = server(move |s| {
            let acceptor = acceptor.clone();
            async move {
                let _ = acceptor.accept(s).await;
            }
        })
        .await;
        let said = account_at(format!("https://{tls}/dir"), Trust::System).await;
        assert!(
            said.contains(
                "TLS certificate is not trusted: it was not issued by a CA certwright trusts"
            ) && said.contains("caBundle"),
            "{said}"
        );
        let said = account_at(
            format!("https://localhost:{}/dir", tls.port()),
            Trust::Bundle(cert.pem().into_bytes()),
        )
        .await;
        assert!(said.contains("not valid for the server's name"), "{said}");
    }

    fn problem(status: u16, kind: &str, detail: &str) -> Problem {
        serde_json::from_value(serde_json::json!({"type": format!("{PREFIX}{kind}"), "status": status, "detail": detail})).expect("problem")
    }

    #[test]
    fn the_seeds_404_replaces_the_order_quickly() {
        let seed = problem(404, "malformed", "No such authorization");
        assert_eq!(
            classify_problem(&seed),
            Verdict::ReplaceOrder {
                detail: "404 urn:ietf:params:acme:error:malformed: No such authorization".into()
            }
        );
        assert!(matches!(
            classify_problem(&problem(404, "malformed", "No order for ID 12")),
            Verdict::ReplaceOrder { .. }
        ));
    }

    #[test]
    fn transient_and_permanent_problems() {
        for (status, kind, want) in [
            (400, "badNonce", "BadNonce"),
            (429, "rateLimited", "RateLimited"),
            (500, "serverInternal", "ServerInternal"),
            (503, "somethingNew", "ServerError"),
        ] {
            assert!(
                matches!(classify_problem(&problem(status, kind, "x")), Verdict::Transient { reason, .. } if reason == want),
                "{kind}"
            );
        }
        for (kind, want) in [
            ("rejectedIdentifier", "RejectedIdentifier"),
            ("caa", "CAA"),
            ("unauthorized", "Unauthorized"),
            ("invalidProfile", "InvalidProfile"),
            ("malformed", "Malformed"),
            ("badCSR", "BadCSR"),
            ("badPublicKey", "BadPublicKey"),
            ("badSignatureAlgorithm", "BadSignatureAlgorithm"),
        ] {
            assert!(
                matches!(classify_problem(&problem(400, kind, "x")), Verdict::Permanent { reason, .. } if reason == want),
                "{kind}"
            );
        }
        // Of those, only a refusal of the request itself waits for a new spec.
        for (reason, waits) in [
            ("BadCSR", true),
            ("BadPublicKey", true),
            ("BadSignatureAlgorithm", true),
            ("RejectedIdentifier", false),
            ("CAA", false),
        ] {
            assert_eq!(refuses_what_the_spec_makes(reason), waits, "{reason}");
        }
        let blocked = problem(
            400,
            "rejectedIdentifier",
            "Error creating new order :: policy forbids issuing for name",
        );
        assert!(
            matches!(classify_problem(&blocked), Verdict::Permanent { detail, .. } if detail.contains("policy forbids"))
        );
    }
}
