//! The ACME issuer configuration (`spec.acme` of an Issuer or ClusterIssuer)
//! and the challenge solver it selects per DNS name; Challenges embed the
//! chosen solver.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::dns01::Dns01Solver;
use super::http01::Http01Solver;
use super::meta::SecretKeySelector;

/// An account at an RFC 8555 (ACME) certificate authority, and how to prove
/// control of the names it is asked to certify.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.caBundle) || !has(self.skipTLSVerify) || !self.skipTLSVerify",
     "message": "caBundle and skipTLSVerify are mutually exclusive"},
    {"rule": "self.privateKeySecretRef.name != ''",
     "message": "privateKeySecretRef.name must name the Secret that holds (or will hold) the ACME account key"}
]))]
pub struct AcmeIssuer {
    /// Contact email registered with the account. Optional but recommended:
    /// the CA uses it for expiry and account notices. May change after registration.
    pub email: Option<String>,
    /// URL of the CA's ACME directory, e.g.
    /// `https://acme-staging-v02.api.letsencrypt.org/directory`. Only RFC 8555 servers are supported.
    pub server: String,
    /// When the CA offers alternate chains, pick the first whose top-most
    /// certificate was issued by this common name. Best effort.
    #[schemars(length(max = 64))]
    pub preferred_chain: Option<String>,
    /// Base64-encoded PEM bundle of CAs trusted for the ACME server's TLS
    /// certificate, instead of the system roots. Excludes `skipTLSVerify`.
    // schemars cannot see through schema_with that the field is optional.
    #[serde(default)]
    #[schemars(schema_with = "super::meta::bytes_schema")]
    pub ca_bundle: Option<ByteString>,
    /// INSECURE: do not verify the ACME server's TLS certificate. For test CAs
    /// only. Excludes `caBundle`. Defaults to false.
    #[serde(rename = "skipTLSVerify")]
    pub skip_tls_verify: Option<bool>,
    /// Credentials binding the new account to an existing account at the CA (EAB).
    pub external_account_binding: Option<ExternalAccountBinding>,
    /// Secret holding the account's private key; generated on first use unless
    /// `disableAccountKeyGeneration` is set. `key` defaults to `tls.key`.
    pub private_key_secret_ref: SecretKeySelector,
    /// Solvers for the CA's challenges; the most specific selector matching a
    /// DNS name wins. At most 100, which bounds the cost of the solvers' CEL
    /// rules as the API server requires.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"), length(max = 100))]
    pub solvers: Option<Vec<AcmeChallengeSolver>>,
    /// If true, never generate an account key: the key must already be in
    /// `privateKeySecretRef`. Defaults to false.
    pub disable_account_key_generation: Option<bool>,
    /// Ask the CA for a notAfter matching the Certificate's `duration`. Many
    /// CAs, Let's Encrypt among them, reject this. Defaults to false.
    pub enable_duration_feature: Option<bool>,
    /// Certificate profile to request, from those the CA lists in its directory.
    pub profile: Option<String>,
}

/// External account binding: associates the ACME account with an account the
/// CA already knows.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAccountBinding {
    /// Key identifier given by the CA.
    #[serde(rename = "keyID")]
    pub key_id: String,
    /// Secret entry holding the HMAC key given by the CA, unpadded base64url.
    pub key_secret_ref: SecretKeySelector,
    /// Deprecated and ignored: the MAC algorithm is always HS256.
    pub key_algorithm: Option<HmacKeyAlgorithm>,
}

/// MAC algorithm of an external account binding.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum HmacKeyAlgorithm {
    HS256,
    HS384,
    HS512,
}

/// One way of solving challenges, optionally limited to some names.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.http01) != has(self.dns01)",
     "message": "exactly one of http01 or dns01 must be set"}
]))]
pub struct AcmeChallengeSolver {
    /// Which Certificates and DNS names this solver is for. Without a
    /// selector the solver is the fallback for every name.
    pub selector: Option<CertificateDnsNameSelector>,
    /// Solve HTTP-01 challenges by serving the token over plain HTTP on port
    /// 80 of the name. Cannot prove wildcard names.
    pub http01: Option<Http01Solver>,
    /// Solve DNS-01 challenges with a TXT record `_acme-challenge.<name>`
    /// (RFC 2136, Cloudflare or a webhook solver; other providers are
    /// reported as unsupported). The only way to prove wildcard names.
    pub dns01: Option<Dns01Solver>,
    /// Skip the self-check and wait this long (a Go duration, e.g. `30s`)
    /// after presenting before asking the CA to validate; `0s` asks at
    /// once. For split-horizon DNS or hairpin NAT, where the check cannot
    /// succeed from inside the cluster though the CA's validation would.
    #[serde(default)]
    #[schemars(schema_with = "super::meta::go_duration_schema")]
    pub wait_instead_of_self_check: Option<String>,
}

/// Selects Certificates by label and names by exact name or by zone.
/// Precedence: a `dnsNames` match over a `dnsZones` match (the longest zone
/// wins), then more matching labels, then the earlier solver.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateDnsNameSelector {
    /// Labels the Certificate must carry.
    pub match_labels: Option<BTreeMap<String, String>>,
    /// Exact DNS names this solver is for.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub dns_names: Option<Vec<String>>,
    /// DNS zones this solver is for; a name matches a zone it is equal to or under.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub dns_zones: Option<Vec<String>>,
}

/// What the issuers controller learned about the ACME account.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcmeIssuerStatus {
    /// The account URL at the CA.
    pub uri: Option<String>,
    /// The email last registered with the account, to notice changes.
    pub last_registered_email: Option<String>,
    /// Hash of the account key last registered, to notice a replaced key.
    pub last_private_key_hash: Option<String>,
}
