//! An account key left by cert-manager (RSA) keeps its account: a P-256
//! key is generated and written to the Secret first (under
//! [`PENDING_KEY`], so a crash cannot lose it), the account is rolled over
//! to it at the CA (RFC 8555 key change), and then the Secret holds the
//! P-256 key under the issuer's data key, the RSA key under
//! [`PREVIOUS_KEY`] and the account URL under [`PREVIOUS_URL`] (the way
//! back to an RSA-only client is a key change to that key).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use super::Error;
use super::key_secret::apply_secret_data;
use crate::acme::account::{self, AccountError};
use crate::acme::tls::Trust;
use crate::pki::keys::PrivateKey;

/// Where the RSA key stays once its account is rolled over.
pub const PREVIOUS_KEY: &str = "certwright-previous-account.key";
/// The account URL the RSA key was registered under.
pub const PREVIOUS_URL: &str = "certwright-previous-account.url";
/// The P-256 key while the key change is under way.
pub const PENDING_KEY: &str = "certwright-pending-account.key";
/// The field manager of those keys (apart from the account key's own).
const MANAGER: &str = "certwright-account-rollover";

/// The RSA account key in its Secret.
pub(super) struct Rsa<'a> {
    pub secrets: &'a Api<Secret>,
    pub name: &'a str,
    pub data_key: &'a str,
    pub data: &'a BTreeMap<String, ByteString>,
    pub pem: &'a [u8],
    /// `namespace/name`, for messages.
    pub id: &'a str,
}

impl Rsa<'_> {
    /// Rolls the account over to a P-256 key and rewrites the Secret.
    /// Returns the new key (PEM and PKCS#8) and the kept account's URL
    /// (None when the CA had no account for the RSA key: the new key then
    /// registers as any new key does).
    pub(super) async fn keep_account(
        &self,
        server: &str,
        trust: &Trust,
    ) -> Result<Result<(Vec<u8>, Vec<u8>, Option<String>), AccountError>, Error> {
        let bad = |why: String| AccountError::BadKey {
            secret: self.id.to_string(),
            why,
        };
        let rsa = match PrivateKey::from_pem(self.pem) {
            Ok(k) => k,
            Err(e) => return Ok(Err(bad(e.to_string()))),
        };
        // A P-256 key left by an interrupted rollover is reused.
        let left = self.data.get(PENDING_KEY).and_then(|b| {
            let pkcs8 = account::parse_key(&b.0, self.id).ok()?;
            Some((String::from_utf8_lossy(&b.0).into_owned(), pkcs8))
        });
        let (pending, new_pkcs8) = match left {
            Some(found) => found,
            None => {
                let generated = account::generate_key()
                    .and_then(|pem| account::parse_key(pem.as_bytes(), self.id).map(|k| (pem, k)));
                let (pem, pkcs8) = match generated {
                    Ok(g) => g,
                    Err(e) => return Ok(Err(e)),
                };
                let data = BTreeMap::from([(PENDING_KEY.to_string(), pem.clone())]);
                apply_secret_data(self.secrets, self.name, MANAGER, data).await?;
                (pem, pkcs8)
            }
        };
        let uri =
            match account::roll_over(server, trust, rsa.pkcs8_der(), &new_pkcs8, self.id).await {
                Ok(uri) => uri,
                Err(e) => return Ok(Err(e)),
            };
        let mut data = BTreeMap::from([
            (self.data_key.to_string(), pending.clone()),
            (
                PREVIOUS_KEY.to_string(),
                String::from_utf8_lossy(self.pem).into_owned(),
            ),
        ]);
        if let Some(uri) = &uri {
            data.insert(PREVIOUS_URL.to_string(), uri.clone());
        }
        // The pending key is left out, so this apply removes it.
        apply_secret_data(self.secrets, self.name, MANAGER, data).await?;
        Ok(Ok((pending.into_bytes(), new_pkcs8, uri)))
    }
}
