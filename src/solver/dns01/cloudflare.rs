//! Cloudflare's API v4 as cert-manager's provider uses it: an API token
//! (Bearer) or a global key with its email, the zone found by walking the
//! name up (`GET /zones?name=`), TXT records listed, created and deleted
//! under `/zones/{id}/dns_records`, TTL 60. Presenting a value already
//! there is success; Cloudflare's own codes and messages are what a user
//! reads when it refuses.

use hyper::body::Bytes;
use instant_acme::{BodyWrapper, HttpClient};
use serde_json::{Value, json};

/// cert-manager's TTL for the records.
const TTL: u32 = 60;

/// How requests are authenticated.
#[derive(Clone)]
pub enum Auth {
    Token(String),
    Key { email: String, key: String },
}

pub struct Cloudflare {
    pub base: String,
    pub auth: Auth,
    pub http: &'static dyn HttpClient,
}

/// One HTTP client for every Cloudflare call (the system trust store is
/// read once, not per Challenge).
pub fn client() -> Result<&'static dyn HttpClient, String> {
    static CLIENT: std::sync::OnceLock<Box<dyn HttpClient>> = std::sync::OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c.as_ref());
    }
    let made =
        crate::acme::http::client(&crate::acme::tls::Trust::System).map_err(|e| e.to_string())?;
    Ok(CLIENT.get_or_init(|| made).as_ref())
}

/// Cloudflare's errors as one sentence: `code message` for each.
fn errors(body: &Value) -> String {
    let list: Vec<String> = body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| format!("{} {}", e["code"], e["message"].as_str().unwrap_or("")))
        .collect();
    if list.is_empty() {
        "no error given".into()
    } else {
        list.join("; ")
    }
}

/// Whether Cloudflare refused with one of `codes`.
fn has_code(body: &Value, codes: &[i64]) -> bool {
    body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["code"].as_i64().is_some_and(|c| codes.contains(&c)))
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Cloudflare {
    /// One API call: the parsed body, success or not (Err only when
    /// Cloudflare could not be asked or did not answer JSON).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        request = match &self.auth {
            Auth::Token(token) => {
                request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
            }
            Auth::Key { email, key } => request
                .header("X-Auth-Email", email)
                .header("X-Auth-Key", key),
        };
        let payload = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let request = request
            .body(BodyWrapper::<Bytes>::from(payload))
            .map_err(|e| format!("building the request to {url}: {e}"))?;
        let mut response = self
            .http
            .request(request)
            .await
            .map_err(|e| format!("asking Cloudflare ({method} {url}): {e}"))?;
        let status = response.parts.status;
        let bytes = response
            .body
            .into_bytes()
            .await
            .map_err(|e| format!("reading Cloudflare's answer to {method} {url}: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|_| {
            format!("Cloudflare answered {method} {url} with HTTP {status} and no JSON")
        })
    }

    /// Every page of a listing's results.
    async fn list(&self, path: &str) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let body = self
                .call("GET", &format!("{path}{sep}page={page}&per_page=50"), None)
                .await?;
            if body["success"] != json!(true) {
                return Err(format!("Cloudflare refused GET {path}: {}", errors(&body)));
            }
            out.extend(body["result"].as_array().cloned().unwrap_or_default());
            let pages = body["result_info"]["total_pages"].as_u64().unwrap_or(1);
            if page >= pages {
                return Ok(out);
            }
            page += 1;
        }
    }

    /// The id and name of the zone `fqdn` is in: the longest of its
    /// suffixes Cloudflare has a zone for (that these credentials may read).
    async fn zone(&self, fqdn: &str) -> Result<(String, String), String> {
        let fqdn = fqdn.trim_end_matches('.');
        let mut candidate = fqdn;
        while let Some((_, parent)) = candidate.split_once('.') {
            let zones = self
                .list(&format!("/zones?name={}", encode(candidate)))
                .await?;
            if let Some(zone) = zones.iter().find(|z| z["name"].as_str() == Some(candidate)) {
                let id = zone["id"].as_str().unwrap_or_default().to_string();
                return Ok((id, candidate.to_string()));
            }
            candidate = parent;
        }
        Err(format!(
            "Cloudflare has no zone for {fqdn} that these credentials may read (an API token needs Zone:Read and DNS:Edit on the zone)"
        ))
    }

    async fn records(&self, zone: &str, fqdn: &str) -> Result<Vec<Value>, String> {
        self.list(&format!(
            "/zones/{zone}/dns_records?type=TXT&name={}",
            encode(fqdn)
        ))
        .await
    }

    /// Adds the TXT `value` at `fqdn` unless it is there already.
    pub async fn present(&self, fqdn: &str, value: &str) -> Result<(), String> {
        let fqdn = fqdn.trim_end_matches('.');
        let (zone, _) = self.zone(fqdn).await?;
        if self
            .records(&zone, fqdn)
            .await?
            .iter()
            .any(|r| r["content"].as_str() == Some(value))
        {
            return Ok(());
        }
        let record = json!({"type": "TXT", "name": fqdn, "content": value, "ttl": TTL});
        let body = self
            .call("POST", &format!("/zones/{zone}/dns_records"), Some(record))
            .await?;
        // 81057/81058: the record already exists (made meanwhile).
        if body["success"] == json!(true) || has_code(&body, &[81057, 81058]) {
            return Ok(());
        }
        Err(format!(
            "Cloudflare refused to create the TXT record {fqdn}: {}",
            errors(&body)
        ))
    }

    /// Deletes the TXT records at `fqdn` holding `value`, and only those.
    pub async fn clean_up(&self, fqdn: &str, value: &str) -> Result<(), String> {
        let fqdn = fqdn.trim_end_matches('.');
        let (zone, _) = self.zone(fqdn).await?;
        for record in self.records(&zone, fqdn).await? {
            if record["content"].as_str() != Some(value) {
                continue;
            }
            let id = record["id"].as_str().unwrap_or_default();
            let body = self
                .call("DELETE", &format!("/zones/{zone}/dns_records/{id}"), None)
                .await?;
            // 81044: gone already.
            if body["success"] != json!(true) && !has_code(&body, &[81044]) {
                return Err(format!(
                    "Cloudflare refused to delete the TXT record {fqdn}: {}",
                    errors(&body)
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_codes_and_messages() {
        let body = json!({"success": false, "errors": [{"code": 10000, "message": "Authentication error"}]});
        assert_eq!(errors(&body), "10000 Authentication error");
        assert!(has_code(&body, &[10000]));
        assert!(!has_code(&body, &[81058]));
        assert_eq!(encode("_acme-challenge.a b"), "_acme-challenge.a%20b");
    }
}
