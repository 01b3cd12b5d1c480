//! Requests to the CA that instant-acme does not make, signed here
//! (RFC 8555 §6.2, flattened JWS): with an RSA account key (instant-acme
//! signs only ES256), a new order with `notAfter` (an issuer's
//! `enableDurationFeature`), and POST-as-GET for a certificate's alternate
//! chains (`preferredChain`).

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

    /// A flattened JWS with an empty payload (POST-as-GET, RFC 8555 §6.3).
    pub fn jws_empty(&self, mut protected: Value) -> Result<Value, String> {
        protected["alg"] = json!(self.alg());
        let protected = b64(protected.to_string().as_bytes());
        let signature = self.sign(format!("{protected}.").as_bytes())?;
        Ok(json!({"protected": protected, "payload": "", "signature": b64(&signature)}))
    }
}

/// The CA's answer to one request.
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub nonce: Option<String>,
    /// The targets of `Link` headers with `rel="alternate"`.
    pub alternates: Vec<String>,
    /// The body as JSON (Null when empty or not JSON).
    pub body: Value,
    pub bytes: Bytes,
}

impl Answer {
    pub fn problem_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }

    /// The CA's problem document in words.
    pub fn problem(&self, what: &str) -> String {
        format!(
            "{what}: the CA answered {} {}: {}",
            self.status,
            self.problem_type(),
            self.body["detail"].as_str().unwrap_or("")
        )
    }

    /// The answer as instant-acme's error, so an Order reads it as it reads
    /// instant-acme's own (a problem document, or the words of `what`).
    pub fn error(&self, what: &str) -> instant_acme::Error {
        match serde_json::from_value::<instant_acme::Problem>(self.body.clone()) {
            Ok(mut p) if p.r#type.is_some() => {
                p.status = p.status.or(Some(self.status));
                instant_acme::Error::Api(p)
            }
            _ => instant_acme::Error::Other(self.problem(what).into()),
        }
    }
}

/// An ACME server reached with the issuer's HTTP client.
pub struct Ca {
    http: Box<dyn HttpClient>,
    new_nonce: String,
    pub(super) new_account: String,
    pub(super) new_order: String,
    pub(super) key_change: String,
}

const BAD_NONCE: &str = "urn:ietf:params:acme:error:badNonce";

impl Ca {
    /// Reads the directory at `url`.
    pub async fn new(http: Box<dyn HttpClient>, url: &str) -> Result<Self, String> {
        let answer = send(&*http, "GET", url, None).await?;
        if answer.body.is_null() {
            return Err(format!(
                "GET {url}: the answer is not JSON ({} {})",
                answer.status,
                String::from_utf8_lossy(&answer.bytes[..answer.bytes.len().min(80)])
            ));
        }
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
            new_order: field("newOrder")?,
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
    pub(super) async fn post(
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

    /// A request of the account at `account` signed by `key`: `payload`,
    /// or POST-as-GET when it is None.
    pub async fn signed(
        &self,
        key: &Signer,
        account: &str,
        url: &str,
        payload: Option<&Value>,
    ) -> Result<Answer, String> {
        self.post(url, |nonce| {
            let protected = json!({"kid": account, "nonce": nonce, "url": url});
            match payload {
                Some(p) => key.jws(protected, p),
                None => key.jws_empty(protected),
            }
        })
        .await
    }

    /// Places an order (the payload of RFC 8555 §7.4); its URL.
    pub async fn new_order(
        &self,
        key: &Signer,
        account: &str,
        payload: &Value,
    ) -> Result<String, instant_acme::Error> {
        let url = self.new_order.clone();
        let answer = self
            .signed(key, account, &url, Some(payload))
            .await
            .map_err(|e| instant_acme::Error::Other(e.into()))?;
        match (answer.status, answer.location.clone()) {
            (201, Some(location)) => Ok(location),
            _ => Err(answer.error("creating the ACME order")),
        }
    }

    /// The PEM chain at `url` and the URLs of its alternates.
    pub async fn chain(
        &self,
        key: &Signer,
        account: &str,
        url: &str,
    ) -> Result<(String, Vec<String>), instant_acme::Error> {
        let answer = self
            .signed(key, account, url, None)
            .await
            .map_err(|e| instant_acme::Error::Other(e.into()))?;
        if answer.status != 200 {
            return Err(answer.error("fetching the certificate"));
        }
        let pem = String::from_utf8(answer.bytes.to_vec())
            .map_err(|_| instant_acme::Error::Str("the certificate is not UTF-8"))?;
        Ok((pem, answer.alternates))
    }
}

/// The targets of `rel="alternate"` Link headers (RFC 8288).
fn alternates(headers: &hyper::HeaderMap) -> Vec<String> {
    headers
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            params
                .split(';')
                .any(|p| {
                    let p = p.trim().replace(' ', "");
                    p == "rel=\"alternate\"" || p == "rel=alternate"
                })
                .then(|| target.to_string())
        })
        .collect()
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
    let alternates = alternates(&response.parts.headers);
    let bytes = response
        .body
        .into_bytes()
        .await
        .map_err(|e| format!("{method} {url}: reading the answer: {e}"))?;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Answer {
        status: response.parts.status.as_u16(),
        location,
        nonce,
        alternates,
        body,
        bytes,
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
