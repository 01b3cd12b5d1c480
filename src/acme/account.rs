//! The ACME account of an Issuer: its key (kept in the Issuer's
//! `privateKeySecretRef` Secret as PKCS#8 PEM under `tls.key`) and its
//! registration at the CA.

use instant_acme::{Account, Key};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::direct::{Ca, Signer};
use super::http::client;
use super::tls::Trust;
use crate::pki::keys::{KeyKind, PrivateKey};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(
        "the ACME account key in Secret {0} is an RSA key (cert-manager generates those); the Issuer controller rolls the account over to a P-256 key, keeping it (see the Issuer's Ready condition)"
    )]
    RsaKey(String),
    #[error("keeping the account of the RSA key in Secret {secret}: {why}")]
    Rollover { secret: String, why: String },
    #[error("the ACME account key in Secret {secret} is not usable: {why}")]
    BadKey { secret: String, why: String },
    #[error("cannot build the HTTP client for the ACME server: {0}")]
    Client(String),
    #[error("{}", account_words(.0))]
    Acme(#[source] instant_acme::Error),
    #[error(
        "the ACME account key in Secret {0} is not registered at the CA, and certwright registers accounts with external account binding only for keys it generates: delete the Secret to register a new account"
    )]
    EabExistingKey(String),
    #[error("the external account binding key in Secret {secret} is not usable: {why}")]
    BadEabKey { secret: String, why: String },
}

/// A refusal by the CA, or why the CA could not be asked.
fn account_words(e: &instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(_) => {
            format!(
                "the ACME server refused the account: {}",
                super::errors::plain(e)
            )
        }
        _ => format!("cannot reach the ACME server: {}", super::errors::plain(e)),
    }
}

impl AccountError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::RsaKey(_) | Self::BadKey { .. } => "InvalidAccountKey",
            Self::EabExistingKey(_) => "EABExistingKey",
            Self::BadEabKey { .. } => "InvalidEABKey",
            Self::Client(_) => "InvalidTLSConfig",
            Self::Acme(_) | Self::Rollover { .. } => "ErrRegisterACMEAccount",
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

/// Rolls the account of an RSA key (PKCS#8) over to the P-256 key
/// `new_pkcs8`, keeping the account; Ok(None) when the CA has no account
/// for the RSA key. `secret` names the key's Secret in errors.
pub async fn roll_over(
    server: &str,
    trust: &Trust,
    rsa_pkcs8: &[u8],
    new_pkcs8: &[u8],
    secret: &str,
) -> Result<Option<String>, AccountError> {
    let fail = |why: String| AccountError::Rollover {
        secret: secret.to_string(),
        why,
    };
    let http = client(trust).map_err(|e| AccountError::Client(e.to_string()))?;
    let ca = Ca::new(http, server).await.map_err(fail)?;
    let old = Signer::from_pkcs8(rsa_pkcs8).map_err(fail)?;
    let new = Signer::from_pkcs8(new_pkcs8).map_err(fail)?;
    let Some(url) = ca.find_account(&old).await.map_err(fail)? else {
        return Ok(None);
    };
    ca.change_key(&url, &old, &new).await.map_err(fail)?;
    Ok(Some(url))
}

/// The HMAC key of an external account binding as the CA hands it out:
/// base64url, padded or not (standard base64 is accepted too).
pub fn decode_eab_key(text: &[u8], secret: &str) -> Result<Vec<u8>, AccountError> {
    use base64::Engine;
    let trimmed: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .collect();
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&trimmed));
    match decoded {
        Ok(key) if !key.is_empty() => Ok(key),
        Ok(_) => Err(AccountError::BadEabKey {
            secret: secret.into(),
            why: "it is empty".into(),
        }),
        Err(e) => Err(AccountError::BadEabKey {
            secret: secret.into(),
            why: format!("not base64url: {e}"),
        }),
    }
}

/// Registers a new account with external account binding under a fresh
/// P-256 key; returns the account URL and the key as PKCS#8 PEM.
pub async fn register_with_eab(
    server: &str,
    trust: &Trust,
    key_id: &str,
    hmac: &[u8],
    email: Option<&str>,
) -> Result<(String, String), AccountError> {
    let http = client(trust).map_err(|e| AccountError::Client(e.to_string()))?;
    let contact = email
        .filter(|e| !e.is_empty())
        .map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let eak = instant_acme::ExternalAccountKey::new(key_id.to_string(), hmac);
    let (account, credentials) = Account::builder_with_http(http)
        .create(
            &instant_acme::NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            server.to_string(),
            Some(&eak),
        )
        .await
        .map_err(AccountError::Acme)?;
    let pem = pem::encode_config(
        &pem::Pem::new(
            "PRIVATE KEY",
            credentials.private_key().secret_pkcs8_der().to_vec(),
        ),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    Ok((account.id().to_string(), pem))
}

/// What [`register`] needs to find or create an account: the known one
/// when `known_uri` is set, else the CA's existing account for the key,
/// else a new registration. The contact email is (re)set when asked.
pub struct Registration<'a> {
    pub server: &'a str,
    pub trust: &'a Trust,
    /// The account key, PKCS#8 DER.
    pub pkcs8: &'a [u8],
    /// The account URL recorded for this key, if any (then no lookup).
    pub known_uri: Option<&'a str>,
    pub email: Option<&'a str>,
    /// Whether to (re)set the contact email.
    pub update_contact: bool,
    /// Whether the issuer binds an external account (new accounts then
    /// need [`register_with_eab`]).
    pub eab: bool,
    /// The key's Secret, for messages.
    pub secret: &'a str,
}

pub async fn register(r: Registration<'_>) -> Result<(Account, String), AccountError> {
    let Registration {
        server,
        trust,
        pkcs8,
        known_uri,
        email,
        update_contact,
        eab,
        secret,
    } = r;
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
            if eab
                && problem.r#type.as_deref()
                    == Some("urn:ietf:params:acme:error:accountDoesNotExist") =>
        {
            return Err(AccountError::EabExistingKey(secret.to_string()));
        }
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
    fn generated_keys_parse_and_rsa_keys_are_told_apart() {
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
        assert!(err.to_string().contains("rolls the account over"), "{err}");
        assert!(matches!(
            parse_key(b"nope", "ns/acct"),
            Err(AccountError::BadKey { .. })
        ));
    }

    #[test]
    fn eab_keys_decode_from_base64url_with_or_without_padding() {
        assert_eq!(decode_eab_key(b"aGVsbG8", "s").expect("raw"), b"hello");
        assert_eq!(
            decode_eab_key(b"aGVsbG8=\n", "s").expect("padded"),
            b"hello"
        );
        assert_eq!(
            decode_eab_key(b"-_8", "s").expect("url alphabet"),
            vec![0xfb, 0xff]
        );
        assert!(matches!(
            decode_eab_key(b"", "s"),
            Err(AccountError::BadEabKey { .. })
        ));
        assert!(matches!(
            decode_eab_key(b"!!", "s"),
            Err(AccountError::BadEabKey { .. })
        ));
    }
}
