//! The self-check before the CA is asked: fetch
//! `http://<domain>/.well-known/acme-challenge/<token>` as the CA would
//! and compare the body with the key authorization. The request goes to
//! the domain's address on port 80, or to a configured address (the
//! ingress controller's in-cluster Service, for clusters without hairpin
//! NAT) with the domain as Host.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: usize = 64 * 1024;

/// Splits a raw HTTP/1.x response into status and body (chunked bodies
/// decoded).
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the response has no complete header")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("the response has no status line")?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunked body")?;
        let size_text = String::from_utf8_lossy(&rest[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Ok((status, out));
        }
        if rest.len() < size {
            return Err("truncated chunked body".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

async fn fetch(target: &str, domain: &str, path: &str) -> Result<(u16, Vec<u8>), String> {
    let mut stream = tokio::net::TcpStream::connect(target)
        .await
        .map_err(|e| format!("connecting to {target}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {domain}\r\nUser-Agent: certwright-self-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending to {target}: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading from {target}: {e}"))?;
        if n == 0 || raw.len() + n > LIMIT {
            raw.extend_from_slice(&buf[..n.min(LIMIT.saturating_sub(raw.len()))]);
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    parse_response(&raw)
}

/// Ok when `http://domain/.well-known/acme-challenge/token` answers
/// exactly `key`; otherwise what went wrong, for the Challenge's reason.
pub async fn reachable(
    domain: &str,
    token: &str,
    key: &str,
    via: Option<&str>,
) -> Result<(), String> {
    let path = format!("/.well-known/acme-challenge/{token}");
    let target = via
        .map(String::from)
        .unwrap_or_else(|| format!("{domain}:80"));
    let url = format!("http://{domain}{path}");
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(5), fetch(&target, domain, &path))
            .await
            .map_err(|_| format!("GET {url} via {target}: no answer within 5s"))?
            .map_err(|e| format!("GET {url}: {e}"))?;
    if status == 404 {
        // Our solver answers 404 for a token it does not hold, an ingress
        // controller for a host or path no Ingress routes.
        return Err(format!(
            "GET {url} via {target}: wrong status code 404, expected 200: the token is not routed to certwright's solver; check that an ingress controller serves the solver's Ingress class and that the solver Ingress for {domain} exists"
        ));
    }
    if status != 200 {
        return Err(format!(
            "GET {url} via {target}: wrong status code {status}, expected 200"
        ));
    }
    let text = String::from_utf8_lossy(&body);
    if text.trim_end() != key {
        let shown: String = text.chars().take(80).collect();
        return Err(format!(
            "GET {url} via {target}: the body {shown:?} is not the key authorization"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_plain_and_chunked() {
        let plain =
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nabc.d";
        assert_eq!(parse_response(plain), Ok((200, b"abc.d".to_vec())));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\n.d\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Ok((200, b"abc.d".to_vec())));
        assert_eq!(
            parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n"),
            Ok((404, vec![]))
        );
        assert!(parse_response(b"HTTP/1.1 200").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }

    #[tokio::test]
    async fn reachable_compares_the_served_body_with_the_key() {
        let tokens: super::super::server::Tokens = Default::default();
        tokens.write().expect("lock").insert(
            "tok".into(),
            super::super::server::Presented {
                domain: "app.example.test".into(),
                key_authorization: "tok.thumb".into(),
            },
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        tokio::spawn(super::super::server::serve(addr, tokens));
        let via = addr.to_string();
        let mut ok = Err(String::new());
        for _ in 0..50 {
            ok = reachable("app.example.test", "tok", "tok.thumb", Some(&via)).await;
            if ok.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(ok, Ok(()));
        let wrong = reachable("app.example.test", "tok", "tok.other", Some(&via)).await;
        assert!(
            wrong
                .expect_err("wrong key")
                .contains("not the key authorization")
        );
        let missing = reachable("other.example.test", "tok", "tok.thumb", Some(&via)).await;
        let missing = missing.expect_err("404");
        assert!(
            missing.contains("wrong status code 404") && missing.contains("not routed"),
            "{missing}"
        );
    }
}
