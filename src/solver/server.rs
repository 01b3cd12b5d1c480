//! The HTTP-01 token server: answers `GET /.well-known/acme-challenge/<token>`
//! with the key authorization, `text/plain`, uncacheable, when the token and
//! the Host (port stripped, case-insensitive) match a presented challenge;
//! 404 otherwise. The decision is a pure function over a token table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

const PREFIX: &str = "/.well-known/acme-challenge/";

/// A presented challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presented {
    /// The name being proven (lower case, no trailing dot).
    pub domain: String,
    /// The key authorization to answer with.
    pub key_authorization: String,
}

/// Tokens being presented, shared with whoever fills it.
pub type Tokens = Arc<RwLock<HashMap<String, Presented>>>;

fn is_base64url(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if host.starts_with('[') {
        host.split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default()
    } else {
        host.rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(host)
            .to_string()
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The key authorization to serve for `path` requested for `host`, if any.
pub fn answer<'a>(
    tokens: &'a HashMap<String, Presented>,
    host: &str,
    path: &str,
) -> Option<&'a str> {
    let token = path.strip_prefix(PREFIX)?;
    if !is_base64url(token) {
        return None;
    }
    let presented = tokens.get(token)?;
    (host_name(host) == presented.domain).then_some(presented.key_authorization.as_str())
}

async fn respond(State(tokens): State<Tokens>, uri: Uri, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(uri.host())
        .unwrap_or("");
    let table = tokens.read().unwrap_or_else(|e| e.into_inner());
    match answer(&table, host, uri.path()) {
        Some(key) => {
            tracing::info!(host, path = uri.path(), "served key authorization");
            let mut response = key.to_string().into_response();
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, no-store"),
            );
            response
        }
        None => {
            tracing::debug!(
                host,
                path = uri.path(),
                "no challenge presented for this request"
            );
            StatusCode::NOT_FOUND.into_response()
        }
    }
}

/// Serves `tokens` on `addr` until the future is dropped.
pub async fn serve(addr: SocketAddr, tokens: Tokens) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "HTTP-01 solver listening");
    let app = axum::Router::new().fallback(respond).with_state(tokens);
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> HashMap<String, Presented> {
        HashMap::from([(
            "tok_EN-1".to_string(),
            Presented {
                domain: "example.com".into(),
                key_authorization: "tok_EN-1.thumb".into(),
            },
        )])
    }

    #[test]
    fn answers_only_the_right_token_for_the_right_host() {
        let t = table();
        let path = "/.well-known/acme-challenge/tok_EN-1";
        assert_eq!(answer(&t, "example.com", path), Some("tok_EN-1.thumb"));
        assert_eq!(
            answer(&t, "Example.COM:80", path),
            Some("tok_EN-1.thumb"),
            "port stripped, case folded"
        );
        assert_eq!(
            answer(&t, "example.com.", path),
            Some("tok_EN-1.thumb"),
            "trailing dot"
        );
        assert_eq!(answer(&t, "other.com", path), None, "wrong host");
        assert_eq!(
            answer(&t, "example.com", "/.well-known/acme-challenge/unknown"),
            None,
            "unknown token"
        );
        assert_eq!(
            answer(&t, "example.com", "/.well-known/acme-challenge/tok%20x"),
            None,
            "not base64url"
        );
        assert_eq!(
            answer(&t, "example.com", "/.well-known/acme-challenge/"),
            None,
            "empty token"
        );
        assert_eq!(answer(&t, "example.com", "/tok_EN-1"), None, "wrong prefix");
        assert_eq!(answer(&t, "[::1]:80", path), None, "IPv6 host");
    }
}
