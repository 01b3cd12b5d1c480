//! The ACME account of an Issuer: its key (kept in the Issuer's
//! `privateKeySecretRef` Secret as PKCS#8 PEM under `tls.key`) and its
//! registration at the CA.

use instant_acme::{Account, Key};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::http::{Trust, client};
use crate::pki::keys::{KeyKind, PrivateKey};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(
        "the ACME account key in Secret {0} is an RSA key (cert-manager generates those); certwright supports ECDSA P-256 account keys only: delete the Secret to register a new account, or put an EC P-256 key in it"
    )]
    RsaKey(String),
    #[error("the ACME account key in Secret {secret} is not usable: {why}")]
    BadKey { secret: String, why: String },
    #[error("cannot build the HTTP client for the ACME server: {0}")]
    Client(String),
    #[error("the ACME server refused the account: {0}")]
    Acme(#[source] instant_acme::Error),
}

impl AccountError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::RsaKey(_) | Self::BadKey { .. } => "InvalidAccountKey",
            Self::Client(_) => "InvalidTLSConfig",
            Self::Acme(_) => "ErrRegisterACMEAccount",
        }
    }
}

/// A new account key: PEM for the Secret.
pub fn generate_key() -> Result<String, AccountError> {
    let (_, der) = Key::generate_pkcs8().map_err(AccountError::Acme)?;
    Ok(pem::encode_config(
        &pem::Pem::new("PRIVATE KEY", der.secret_pkcs8_der().to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    ))
}

/// The PKCS#8 DER of an account key read from a Secret (`secret` names it in errors).
pub fn parse_key(pem: &[u8], secret: &str) -> Result<Vec<u8>, AccountError> {
    let key = PrivateKey::from_pem(pem).map_err(|e| AccountError::BadKey {
        secret: secret.to_string(),
        why: e.to_string(),
    })?;
    match key.kind {
        KeyKind::Ecdsa(256) => Ok(key.pkcs8_der().to_vec()),
        KeyKind::Rsa(_) => Err(AccountError::RsaKey(secret.to_string())),
        other => Err(AccountError::BadKey {
            secret: secret.to_string(),
            why: format!("{other:?} keys are not supported; use ECDSA P-256"),
        }),
    }
}

/// The account for `key`: the known one when `known_uri` is set, else the
/// CA's existing account for the key, else a new registration. The contact
/// email is (re)set when given. Returns the account and its URL.
pub async fn register(
    server: &str,
    trust: &Trust,
    pkcs8: &[u8],
    known_uri: Option<&str>,
    email: Option<&str>,
    update_contact: bool,
) -> Result<(Account, String), AccountError> {
    let http = || client(trust).map_err(|e| AccountError::Client(e.to_string()));
    let set_contact = async |account: &Account| -> Result<(), AccountError> {
        if update_contact && let Some(email) = email.filter(|e| !e.is_empty()) {
            let contact = format!("mailto:{email}");
            account
                .update_contacts(&[contact.as_str()])
                .await
                .map_err(AccountError::Acme)?;
        }
        Ok(())
    };
    if let Some(uri) = known_uri {
        let account = Account::builder_with_http(http()?)
            .from_parts(
                uri.to_string(),
                PrivatePkcs8KeyDer::from(pkcs8.to_vec()),
                server.to_string(),
            )
            .await
            .map_err(AccountError::Acme)?;
        set_contact(&account).await?;
        return Ok((account, uri.to_string()));
    }
    let key = || -> Result<(Key, PrivateKeyDer<'static>), AccountError> {
        let der = PrivatePkcs8KeyDer::from(pkcs8.to_vec());
        let key = Key::from_pkcs8_der(der.clone_key()).map_err(AccountError::Acme)?;
        Ok((key, PrivateKeyDer::Pkcs8(der)))
    };
    let existing = Account::builder_with_http(http()?)
        .from_key(key()?, server.to_string())
        .await;
    let (account, _) = match existing {
        Ok(found) => found,
        Err(instant_acme::Error::Api(problem))
            if problem.r#type.as_deref()
                == Some("urn:ietf:params:acme:error:accountDoesNotExist") =>
        {
            Account::builder_with_http(http()?)
                .create_from_key(key()?, server.to_string())
                .await
                .map_err(AccountError::Acme)?
        }
        Err(e) => return Err(AccountError::Acme(e)),
    };
    set_contact(&account).await?;
    let uri = account.id().to_string();
    Ok((account, uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_rsa_keys_are_refused_plainly() {
        crate::install_crypto_provider();
        let pem = generate_key().expect("key");
        assert!(parse_key(pem.as_bytes(), "ns/acct").is_ok());
        let rsa = PrivateKey::generate(KeyKind::Rsa(2048))
            .expect("rsa")
            .to_pem(crate::api::certificate::PrivateKeyEncoding::Pkcs1)
            .expect("pem");
        let err = parse_key(rsa.as_bytes(), "ns/acct").expect_err("rsa refused");
        assert_eq!(err.reason(), "InvalidAccountKey");
        assert!(err.to_string().contains("ns/acct is an RSA key"), "{err}");
        assert!(matches!(
            parse_key(b"nope", "ns/acct"),
            Err(AccountError::BadKey { .. })
        ));
    }
}
