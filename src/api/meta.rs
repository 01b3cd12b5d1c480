//! Small types shared by several kinds: references, condition status and the
//! key usages that Certificates and CertificateRequests both carry.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Schema for a base64-encoded byte field (`format: byte`), used with
/// `#[schemars(schema_with = "...")]` on `k8s_openapi::ByteString` fields.
pub fn bytes_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "format": "byte" })
}

/// Schema for a free-form JSON value kept as is by the API server.
pub fn any_json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// A DNS-1123 subdomain, as Kubernetes object names (a Secret's) must be.
pub const DNS1123_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A Go duration (`time.ParseDuration`), unsigned: `90m`, `2160h`, `1h30m`, `1.5h`.
pub const GO_DURATION: &str = r"^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$";

/// Schema for the name of a Secret in the object's namespace.
pub fn secret_name_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "maxLength": 253, "pattern": DNS1123_SUBDOMAIN })
}

/// Schema for an optional Go duration.
pub fn go_duration_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "maxLength": 32, "pattern": GO_DURATION })
}

/// Schema for a list of names that go into a certificate as IA5Strings:
/// printable ASCII only (an international domain name in its `xn--` form).
pub fn ascii_names_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array", "maxItems": 100, "x-kubernetes-list-type": "atomic",
        "items": {"type": "string", "maxLength": 253, "x-kubernetes-validations": [
            {"rule": "self.matches('^[!-~]+$')",
             "message": "must be printable ASCII without spaces; write an international domain name in its xn-- form"}]}
    })
}

/// Schema for a list of DNS names: printable ASCII, and none a CA refuses
/// for its form alone (said here, before anything is ordered).
pub fn dns_names_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array", "maxItems": 100, "x-kubernetes-list-type": "atomic",
        "items": {"type": "string", "maxLength": 253, "x-kubernetes-validations": [
            {"rule": "self.matches('^[!-~]+$')",
             "message": "must be printable ASCII without spaces; write an international domain name in its xn-- form"},
            {"rule": "!self.endsWith('.')",
             "message": "must not end with a dot: write example.com, not example.com. (certificates name hosts without the root's dot)"},
            {"rule": "!self.matches('^[0-9]+([.][0-9]+){3}$') && !self.contains(':')",
             "message": "is an IP address, not a DNS name: put it in ipAddresses"},
            {"rule": "!self.substring(1).contains('*') && (!self.startsWith('*') || self.startsWith('*.'))",
             "message": "a wildcard may only be the whole leftmost label, once (*.example.com); *.*.example.com and a*.example.com are never valid"}]}
    })
}

/// Schema for a list of IP addresses (v4 or v6).
pub fn ip_addresses_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array", "maxItems": 100, "x-kubernetes-list-type": "atomic",
        "items": {"type": "string", "maxLength": 45, "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
    })
}

/// A reference to the Issuer or ClusterIssuer that signs a request.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerReference {
    /// Name of the Issuer or ClusterIssuer.
    pub name: String,
    /// Kind of the issuer: `Issuer` (the default) or `ClusterIssuer`.
    pub kind: Option<String>,
    /// API group of the issuer; empty or `cert-manager.io` for the issuers certwright serves.
    pub group: Option<String>,
}

/// Points at one entry of a Secret in the namespace the referring object
/// resolves Secrets in.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    /// Name of the Secret.
    pub name: String,
    /// Key inside the Secret's `data`; where it may be left out, the field
    /// that uses the selector says which key is used instead.
    pub key: Option<String>,
}

/// Names an object in the same namespace.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// Name of the referenced object.
    pub name: String,
}

/// Status of a condition.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// A condition on a Certificate or an Issuer.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type of the condition, e.g. `Ready` or `Issuing`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether the condition holds: `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// When the status last changed.
    pub last_transition_time: Option<Time>,
    /// One-word, machine-readable cause of the last transition.
    pub reason: Option<String>,
    /// Human-readable detail of the last transition.
    pub message: Option<String>,
    /// The `metadata.generation` this condition was computed from; older than
    /// the object's generation means the condition is stale.
    pub observed_generation: Option<i64>,
}

/// A key usage or extended key usage (RFC 5280 4.2.1.3 and 4.2.1.12).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum KeyUsage {
    #[serde(rename = "signing")]
    Signing,
    #[serde(rename = "digital signature")]
    DigitalSignature,
    #[serde(rename = "content commitment")]
    ContentCommitment,
    #[serde(rename = "key encipherment")]
    KeyEncipherment,
    #[serde(rename = "key agreement")]
    KeyAgreement,
    #[serde(rename = "data encipherment")]
    DataEncipherment,
    #[serde(rename = "cert sign")]
    CertSign,
    #[serde(rename = "crl sign")]
    CrlSign,
    #[serde(rename = "encipher only")]
    EncipherOnly,
    #[serde(rename = "decipher only")]
    DecipherOnly,
    #[serde(rename = "any")]
    Any,
    #[serde(rename = "server auth")]
    ServerAuth,
    #[serde(rename = "client auth")]
    ClientAuth,
    #[serde(rename = "code signing")]
    CodeSigning,
    #[serde(rename = "email protection")]
    EmailProtection,
    #[serde(rename = "s/mime")]
    SMime,
    #[serde(rename = "ipsec end system")]
    IpsecEndSystem,
    #[serde(rename = "ipsec tunnel")]
    IpsecTunnel,
    #[serde(rename = "ipsec user")]
    IpsecUser,
    #[serde(rename = "timestamping")]
    Timestamping,
    #[serde(rename = "ocsp signing")]
    OcspSigning,
    #[serde(rename = "microsoft sgc")]
    MicrosoftSgc,
    #[serde(rename = "netscape sgc")]
    NetscapeSgc,
}
