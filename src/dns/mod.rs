//! DNS, spoken directly: the wire format and one exchange (`wire`), TSIG
//! (`tsig`), RFC 2136 updates (`update`), and the lookups the DNS-01
//! path and the HTTP-01 self-check make (`lookup`).

pub mod lookup;
pub mod tsig;
pub mod update;
pub mod wire;

/// Where DNS-01 looks names up (cert-manager's
/// `--dns01-recursive-nameservers(-only)`).
#[derive(Clone, Debug)]
pub struct Dns01Settings {
    /// Nameservers for the lookups (zone, CNAMEs, the authoritative
    /// servers' addresses); the system's (`/etc/resolv.conf`) when empty.
    pub recursive_nameservers: Vec<std::net::SocketAddr>,
    /// Check the value only through those, not on each authoritative one.
    pub recursive_only: bool,
    /// Cloudflare's API (a flag, for tests; cert-manager's is fixed).
    pub cloudflare_api_url: String,
}

/// Cloudflare's API v4.
pub const CLOUDFLARE_API: &str = "https://api.cloudflare.com/client/v4";

impl Default for Dns01Settings {
    fn default() -> Self {
        Self {
            recursive_nameservers: Vec::new(),
            recursive_only: false,
            cloudflare_api_url: CLOUDFLARE_API.into(),
        }
    }
}

/// The TXT value that proves a DNS-01 key authorization (RFC 8555 §8.4):
/// base64url, unpadded, of its SHA-256.
pub fn txt_value(key_authorization: &str) -> String {
    use base64::Engine;
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key_authorization.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_txt_value_is_the_unpadded_base64url_sha256() {
        // echo -n abc | openssl dgst -sha256 -binary | basenc --base64url
        assert_eq!(
            super::txt_value("abc"),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
    }
}
