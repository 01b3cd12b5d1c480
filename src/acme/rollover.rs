//! Keeping accounts whose key is RSA (cert-manager generates RSA-2048
//! account keys): instant-acme signs only ES256, so the two requests that
//! need the RSA key are signed here (RS256, RFC 7518 §3.3): finding the
//! account (`onlyReturnExisting`, RFC 8555 §7.3.1) and rolling it over to
//! a P-256 key (§7.3.5 key change: the outer JWS by the old key, the inner
//! by the new one). The account URL, and with it CAA `accounturi`
//! bindings, rate-limit overrides and external account bindings, stay.

use serde_json::json;

use super::direct::{Ca, Signer};

const ACCOUNT_DOES_NOT_EXIST: &str = "urn:ietf:params:acme:error:accountDoesNotExist";

impl Ca {
    /// The URL of the account of `key`, if the CA has one (onlyReturnExisting).
    pub async fn find_account(&self, key: &Signer) -> Result<Option<String>, String> {
        let url = &self.new_account;
        let answer = self
            .post(url, |nonce| {
                key.jws(
                    json!({"jwk": key.jwk(), "nonce": nonce, "url": url}),
                    &json!({"onlyReturnExisting": true}),
                )
            })
            .await?;
        match answer.status {
            200 | 201 => answer
                .location
                .map(Some)
                .ok_or_else(|| "the CA named no account URL (Location)".to_string()),
            _ if answer.problem_type() == ACCOUNT_DOES_NOT_EXIST => Ok(None),
            _ => Err(answer.problem("looking up the account")),
        }
    }

    /// Registers a new account for `key` (terms agreed). Returns its URL.
    pub async fn register(&self, key: &Signer, contact: &[String]) -> Result<String, String> {
        let url = &self.new_account;
        let answer = self
            .post(url, |nonce| {
                key.jws(
                    json!({"jwk": key.jwk(), "nonce": nonce, "url": url}),
                    &json!({"termsOfServiceAgreed": true, "contact": contact}),
                )
            })
            .await?;
        match answer.status {
            200 | 201 => answer
                .location
                .ok_or_else(|| "the CA named no account URL (Location)".to_string()),
            _ => Err(answer.problem("registering the account")),
        }
    }

    /// Rolls the account at `account` over from `old` to `new` (RFC 8555 §7.3.5).
    pub async fn change_key(
        &self,
        account: &str,
        old: &Signer,
        new: &Signer,
    ) -> Result<(), String> {
        let url = &self.key_change;
        let inner = new.jws(
            json!({"jwk": new.jwk(), "url": url}),
            &json!({"account": account, "oldKey": old.jwk()}),
        )?;
        let answer = self
            .post(url, |nonce| {
                old.jws(json!({"kid": account, "nonce": nonce, "url": url}), &inner)
            })
            .await?;
        match answer.status {
            200 => Ok(()),
            _ => Err(answer.problem("changing the account key")),
        }
    }
}
