//! Keeping accounts whose key is RSA (cert-manager generates RSA-2048
//! account keys): instant-acme signs only ES256, so the two requests that
//! need the RSA key are signed here (RS256, RFC 7518 §3.3): finding the
//! account (`onlyReturnExisting`, RFC 8555 §7.3.1) and rolling it over to
//! a P-256 key (§7.3.5 key change: the outer JWS by the old key, the inner
//! by the new one). The account URL, and with it CAA `accounturi`
//! bindings, rate-limit overrides and external account bindings, stay.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::body::Bytes;
use instant_acme::{BodyWrapper, HttpClient};
use serde_json::{Value, json};

/// A key that signs JWS: the RSA account key or a P-256 one.
pub enum Signer {
    Rsa(RsaKeyPair),
    P256(EcdsaKeyPair),
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Signer {
    /// From PKCS#8 DER (RSA or EC P-256).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, String> {
        if let Ok(rsa) = RsaKeyPair::from_pkcs8(der) {
            return Ok(Self::Rsa(rsa));
        }
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map(Self::P256)
            .map_err(|e| format!("neither an RSA nor an EC P-256 key: {e}"))
    }

    fn alg(&self) -> &'static str {
        match self {
            Self::Rsa(_) => "RS256",
            Self::P256(_) => "ES256",
        }
    }

    /// The public key as a JWK (RFC 7517).
    pub fn jwk(&self) -> Value {
        match self {
            Self::Rsa(k) => {
                let public = k.public_key();
                json!({"e": b64(public.exponent().big_endian_without_leading_zero()),
                       "kty": "RSA",
                       "n": b64(public.modulus().big_endian_without_leading_zero())})
            }
            Self::P256(k) => {
                // The uncompressed point: 0x04, x, y.
                let point = k.public_key().as_ref();
                json!({"crv": "P-256", "kty": "EC",
                       "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let rng = SystemRandom::new();
        match self {
            Self::Rsa(k) => {
                let mut signature = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .map_err(|e| format!("RS256 signing failed: {e}"))?;
                Ok(signature)
            }
            Self::P256(k) => k
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|e| format!("ES256 signing failed: {e}")),
        }
    }

    /// A flattened JWS (RFC 7515 §7.2.2) of `payload` with `protected`
    /// (the algorithm is added).
    pub fn jws(&self, mut protected: Value, payload: &Value) -> Result<Value, String> {
        protected["alg"] = json!(self.alg());
        let protected = b64(protected.to_string().as_bytes());
        let payload = b64(payload.to_string().as_bytes());
        let signature = self.sign(format!("{protected}.{payload}").as_bytes())?;
        Ok(json!({"protected": protected, "payload": payload, "signature": b64(&signature)}))
    }
}

/// The CA's answer to one request.
struct Answer {
    status: u16,
    location: Option<String>,
    nonce: Option<String>,
    body: Value,
}

impl Answer {
    fn problem_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }

    /// The CA's problem document in words.
    fn problem(&self, what: &str) -> String {
        format!(
            "{what}: the CA answered {} {}: {}",
            self.status,
            self.problem_type(),
            self.body["detail"].as_str().unwrap_or("")
        )
    }
}

/// An ACME server reached with the issuer's HTTP client.
pub struct Ca {
    http: Box<dyn HttpClient>,
    new_nonce: String,
    new_account: String,
    key_change: String,
}

const ACCOUNT_DOES_NOT_EXIST: &str = "urn:ietf:params:acme:error:accountDoesNotExist";
const BAD_NONCE: &str = "urn:ietf:params:acme:error:badNonce";

impl Ca {
    /// Reads the directory at `url`.
    pub async fn new(http: Box<dyn HttpClient>, url: &str) -> Result<Self, String> {
        let answer = send(&*http, "GET", url, None).await?;
        let field = |name: &str| {
            answer.body[name]
                .as_str()
                .map(String::from)
                .ok_or_else(|| match answer.status {
                    200 => format!("the ACME directory at {url} has no {name}"),
                    _ => answer.problem(&format!("reading the ACME directory at {url}")),
                })
        };
        Ok(Self {
            new_nonce: field("newNonce")?,
            new_account: field("newAccount")?,
            key_change: field("keyChange")?,
            http,
        })
    }

    async fn nonce(&self) -> Result<String, String> {
        send(&*self.http, "HEAD", &self.new_nonce, None)
            .await?
            .nonce
            .ok_or_else(|| "the CA's newNonce gave no Replay-Nonce".to_string())
    }

    /// POSTs a JWS built by `build` from a fresh nonce (once more after a
    /// badNonce, as RFC 8555 §6.5 allows).
    async fn post(
        &self,
        url: &str,
        build: impl Fn(&str) -> Result<Value, String>,
    ) -> Result<Answer, String> {
        let mut nonce = self.nonce().await?;
        for _ in 0..2 {
            let body = build(&nonce)?.to_string().into_bytes();
            let answer = send(&*self.http, "POST", url, Some(body)).await?;
            match (answer.problem_type(), &answer.nonce) {
                (BAD_NONCE, Some(fresh)) => nonce = fresh.clone(),
                _ => return Ok(answer),
            }
        }
        Err(format!("the CA refused two fresh nonces at {url}"))
    }

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

async fn send(
    http: &dyn HttpClient,
    method: &str,
    url: &str,
    body: Option<Vec<u8>>,
) -> Result<Answer, String> {
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(url)
        // RFC 8555 §6.1: every request names its client.
        .header(
            "user-agent",
            concat!("certwright/", env!("CARGO_PKG_VERSION")),
        );
    if body.is_some() {
        request = request.header("content-type", "application/jose+json");
    }
    let request = request
        .body(BodyWrapper::<Bytes>::from(body.unwrap_or_default()))
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let mut response = http
        .request(request)
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let header = |name: &str| {
        response
            .parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let (location, nonce) = (header("location"), header("replay-nonce"));
    let bytes = response
        .body
        .into_bytes()
        .await
        .map_err(|e| format!("{method} {url}: reading the answer: {e}"))?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).map_err(|_| {
            format!(
                "{method} {url}: the answer is not JSON ({} {})",
                response.parts.status,
                String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
            )
        })?
    };
    Ok(Answer {
        status: response.parts.status.as_u16(),
        location,
        nonce,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
    };

    fn verify(signer: &Signer, jws: &Value) {
        let message = format!(
            "{}.{}",
            jws["protected"].as_str().unwrap(),
            jws["payload"].as_str().unwrap()
        );
        let signature = URL_SAFE_NO_PAD
            .decode(jws["signature"].as_str().unwrap())
            .unwrap();
        match signer {
            Signer::Rsa(k) => {
                UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, k.public_key().as_ref())
                    .verify(message.as_bytes(), &signature)
                    .expect("RS256 verifies")
            }
            Signer::P256(k) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, k.public_key().as_ref())
                    .verify(message.as_bytes(), &signature)
                    .expect("ES256 verifies")
            }
        }
    }

    #[test]
    fn both_kinds_sign_verifiable_jws_with_their_jwk() {
        let rsa = crate::pki::keys::PrivateKey::generate(crate::pki::keys::KeyKind::Rsa(2048))
            .expect("rsa");
        let rsa = Signer::from_pkcs8(rsa.pkcs8_der()).expect("rsa signer");
        let (_, ec) = instant_acme::Key::generate_pkcs8().expect("ec");
        let ec = Signer::from_pkcs8(ec.secret_pkcs8_der()).expect("ec signer");
        for (signer, alg, kty) in [(&rsa, "RS256", "RSA"), (&ec, "ES256", "EC")] {
            let jws = signer
                .jws(json!({"nonce": "n", "url": "u"}), &json!({"a": 1}))
                .expect("jws");
            verify(signer, &jws);
            let protected: Value = serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(jws["protected"].as_str().unwrap())
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(protected["alg"], alg);
            assert_eq!(signer.jwk()["kty"], kty);
        }
        assert_eq!(rsa.jwk()["e"], "AQAB", "65537");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(rsa.jwk()["n"].as_str().unwrap())
                .unwrap()
                .len(),
            256
        );
        assert_eq!(ec.jwk()["crv"], "P-256");
    }
}
