//! `Certificate` (cert-manager.io/v1): the user's wish for a certificate kept
//! fresh in a Secret.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::meta::{Condition, IssuerReference, KeyUsage, SecretKeySelector};

/// The Issuing condition's reason when a user asks for a re-issuance
/// (`certwright renew`, cmctl's `renew`): the request manager then makes a
/// new request even for an unchanged spec.
pub const MANUALLY_TRIGGERED: &str = "ManuallyTriggered";

/// A certificate to keep issued, valid and renewed in the Secret `spec.secretName`.
#[serde_with::skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "cert-manager.io",
    version = "v1",
    kind = "Certificate",
    namespaced,
    status = "CertificateStatus",
    shortname = "cert",
    shortname = "certs",
    category = "cert-manager",
    doc = "A Certificate asks for an X.509 certificate and its private key to be kept valid in the Secret named by spec.secretName, renewed before it expires.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type == \"Ready\")].status"
    ),
    printcolumn(name = "Secret", type_ = "string", json_path = ".spec.secretName"),
    printcolumn(
        name = "Issuer",
        type_ = "string",
        json_path = ".spec.issuerRef.name",
        priority = 1
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type == \"Ready\")].message",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Time since the object was created."
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.literalSubject) || (!has(self.commonName) && !has(self.subject))",
     "message": "literalSubject cannot be set together with commonName or subject"},
    {"rule": "!(has(self.renewBefore) && has(self.renewBeforePercentage))",
     "message": "renewBefore and renewBeforePercentage are mutually exclusive"},
    {"rule": "has(self.commonName) || has(self.literalSubject) || (has(self.dnsNames) && size(self.dnsNames) > 0) || (has(self.uris) && size(self.uris) > 0) || (has(self.emailAddresses) && size(self.emailAddresses) > 0) || (has(self.ipAddresses) && size(self.ipAddresses) > 0) || (has(self.otherNames) && size(self.otherNames) > 0)",
     "message": "at least one of commonName, literalSubject, dnsNames, uris, emailAddresses, ipAddresses or otherNames must be set"},
    {"rule": "!has(self.duration) || !self.duration.matches('^(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$') || duration(self.duration) >= duration('1h')",
     "message": "duration must be at least 1h"},
    {"rule": "!has(self.renewBefore) || !self.renewBefore.matches('^(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$') || duration(self.renewBefore) >= duration('5m')",
     "message": "renewBefore must be at least 5m"},
    {"rule": "!has(self.duration) || !has(self.renewBefore) || !self.duration.matches('^(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$') || !self.renewBefore.matches('^(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$') || duration(self.renewBefore) < duration(self.duration)",
     "message": "renewBefore must be shorter than duration"}
]))]
pub struct CertificateSpec {
    /// Name of the Secret (type `kubernetes.io/tls`, in this namespace) that
    /// receives the private key and the signed certificate chain.
    #[schemars(schema_with = "super::meta::secret_name_schema")]
    pub secret_name: String,
    /// Labels and annotations to keep on the Secret, next to the
    /// `cert-manager.io/*` annotations (which they cannot override).
    pub secret_template: Option<SecretTemplate>,
    /// Subject common name. Ignored by TLS clients when any subject
    /// alternative name is set; at most 64 characters.
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.matches('^[!-~]+$')",
         "message": "must be printable ASCII without spaces; write an international domain name in its xn-- form"}
    ]))]
    pub common_name: Option<String>,
    /// DNS subject alternative names (ASCII; `xn--` for international
    /// names; no trailing dot, no IP address, a wildcard only as `*.`).
    #[serde(default)]
    #[schemars(schema_with = "super::meta::dns_names_schema")]
    pub dns_names: Option<Vec<String>>,
    /// IP address subject alternative names.
    #[serde(default)]
    #[schemars(schema_with = "super::meta::ip_addresses_schema")]
    pub ip_addresses: Option<Vec<String>>,
    /// URI subject alternative names.
    #[serde(default)]
    #[schemars(schema_with = "super::meta::ascii_names_schema")]
    pub uris: Option<Vec<String>>,
    /// Email subject alternative names.
    #[serde(default)]
    #[schemars(schema_with = "super::meta::ascii_names_schema")]
    pub email_addresses: Option<Vec<String>>,
    /// otherName subject alternative names with UTF-8 string values, e.g. a
    /// UPN (OID 1.3.6.1.4.1.311.20.2.3). The OID is not checked.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub other_names: Option<Vec<OtherName>>,
    /// The whole subject as an RFC 4514 string, attribute order kept, e.g.
    /// `CN=foo,DC=corp,DC=example,DC=com`. Excludes `commonName` and `subject`.
    pub literal_subject: Option<String>,
    /// Subject attributes other than the common name. Excludes `literalSubject`.
    pub subject: Option<X509Subject>,
    /// Requested lifetime as a Go duration (e.g. `2160h`); the CA may ignore
    /// it. 90 days when unset; at least 1 hour.
    #[serde(default)]
    #[schemars(schema_with = "super::meta::go_duration_schema")]
    pub duration: Option<String>,
    /// How long before expiry to renew, as a Go duration (e.g. `360h`). One
    /// third of the issued lifetime when unset; at least 5 minutes. Excludes
    /// `renewBeforePercentage`.
    #[serde(default)]
    #[schemars(schema_with = "super::meta::go_duration_schema")]
    pub renew_before: Option<String>,
    /// Like `renewBefore`, as a percentage (1 to 99) of the issued lifetime.
    #[schemars(range(min = 1, max = 99))]
    pub renew_before_percentage: Option<i32>,
    /// How the certificate is renewed (cert-manager v1.21): policy
    /// `Disabled` never renews; `RenewBefore` (the default) renews as
    /// `renewBefore` says, moved into the first of `windows` that is open.
    pub renewal: Option<CertificateRenewal>,
    /// The Issuer or ClusterIssuer that signs this certificate. An Issuer must
    /// be in the Certificate's namespace.
    pub issuer_ref: IssuerReference,
    /// Algorithm, size, encoding and rotation of the private key.
    pub private_key: Option<CertificatePrivateKey>,
    /// Key usages and extended key usages; `digital signature` and `key
    /// encipherment` when unset.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub usages: Option<Vec<KeyUsage>>,
    /// Whether the usages are also encoded in the CSR. Defaults to true;
    /// turn off only for issuers that reject those extensions.
    pub encode_usages_in_request: Option<bool>,
    /// How many CertificateRequests of this Certificate to keep, oldest pruned
    /// first. At least 1; 1 when unset.
    #[schemars(range(min = 1))]
    pub revision_history_limit: Option<i32>,
    /// Ask for a CA certificate (adds the `cert sign` usage). ACME CAs refuse.
    #[serde(rename = "isCA")]
    pub is_ca: Option<bool>,
    /// Extra keystores (JKS, PKCS#12) to write into the Secret.
    pub keystores: Option<CertificateKeystores>,
    /// Extra encodings of the key and chain to write into the Secret.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub additional_output_formats: Option<Vec<AdditionalOutputFormat>>,
    /// X.509 name constraints, for CA certificates only (alpha in cert-manager).
    pub name_constraints: Option<NameConstraints>,
    /// Signature algorithm to request; must fit the key algorithm.
    pub signature_algorithm: Option<SignatureAlgorithm>,
}

/// `spec.renewal`.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRenewal {
    /// `RenewBefore` or `Disabled`.
    pub policy: Option<CertificateRenewalPolicy>,
    /// When renewal may happen; the renewal time moves to the next window
    /// that opens unless one is open then.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub windows: Option<Vec<CertificateRenewalWindow>>,
}

/// Whether and how a certificate is renewed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CertificateRenewalPolicy {
    RenewBefore,
    Disabled,
}

/// A renewal window: opens at each start of `cron` in `timezone`, for
/// `windowDuration`.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRenewalWindow {
    /// An IANA time zone, e.g. `America/Denver`; UTC when unset.
    #[schemars(length(min = 1))]
    pub timezone: Option<String>,
    /// How long the window stays open, as a Go duration (`4h`, `90m`).
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(s|m|h))+$"))]
    pub window_duration: String,
    /// A five-field cron schedule (minute hour day-of-month month
    /// day-of-week), e.g. `0 9 * * MON-FRI`, or `@daily` and the like.
    #[schemars(length(min = 1))]
    pub cron: String,
}

/// Labels and annotations copied to the Certificate's Secret.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTemplate {
    /// Annotations to set on the Secret.
    pub annotations: Option<BTreeMap<String, String>>,
    /// Labels to set on the Secret.
    pub labels: Option<BTreeMap<String, String>>,
}

/// An otherName subject alternative name.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OtherName {
    /// Object identifier in dotted form, e.g. `1.2.840.113556.1.4.221`.
    pub oid: Option<String>,
    /// The UTF-8 string value.
    #[serde(rename = "utf8Value")]
    pub utf8_value: Option<String>,
}

/// Subject attributes of the certificate.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct X509Subject {
    /// Organizations (O).
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub organizations: Option<Vec<String>>,
    /// Countries (C).
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub countries: Option<Vec<String>>,
    /// Organizational units (OU).
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub organizational_units: Option<Vec<String>>,
    /// Localities, i.e. cities (L).
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub localities: Option<Vec<String>>,
    /// States or provinces (ST).
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub provinces: Option<Vec<String>>,
    /// Street addresses.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub street_addresses: Option<Vec<String>>,
    /// Postal codes.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub postal_codes: Option<Vec<String>>,
    /// Subject serial number attribute.
    pub serial_number: Option<String>,
}

/// Private key settings.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.size) || !has(self.algorithm) || self.algorithm != 'ECDSA' || self.size in [256, 384, 521]",
     "message": "ECDSA key size must be 256, 384 or 521"},
    {"rule": "!has(self.size) || (has(self.algorithm) && self.algorithm != 'RSA') || (self.size >= 2048 && self.size <= 8192)",
     "message": "RSA key size must be between 2048 and 8192"}
]))]
pub struct CertificatePrivateKey {
    /// `Always` (the default) generates a new key on every issuance; `Never`
    /// reuses the key already in the Secret.
    pub rotation_policy: Option<RotationPolicy>,
    /// Encoding of `tls.key`: `PKCS1` (the default; SEC1 for ECDSA) or `PKCS8`.
    pub encoding: Option<PrivateKeyEncoding>,
    /// `RSA` (the default), `ECDSA` or `Ed25519`.
    pub algorithm: Option<PrivateKeyAlgorithm>,
    /// Key size in bits: RSA 2048 (default) to 8192; ECDSA 256 (default), 384
    /// or 521; ignored for Ed25519.
    pub size: Option<i64>,
}

/// When a new private key is generated.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RotationPolicy {
    Never,
    Always,
}

/// Encoding of the private key in `tls.key`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PrivateKeyEncoding {
    #[serde(rename = "PKCS1")]
    Pkcs1,
    #[serde(rename = "PKCS8")]
    Pkcs8,
}

/// Private key algorithm.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PrivateKeyAlgorithm {
    #[serde(rename = "RSA")]
    Rsa,
    #[serde(rename = "ECDSA")]
    Ecdsa,
    Ed25519,
}

/// Signature algorithm of the certificate.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SignatureAlgorithm {
    #[serde(rename = "SHA256WithRSA")]
    Sha256WithRsa,
    #[serde(rename = "SHA384WithRSA")]
    Sha384WithRsa,
    #[serde(rename = "SHA512WithRSA")]
    Sha512WithRsa,
    #[serde(rename = "ECDSAWithSHA256")]
    EcdsaWithSha256,
    #[serde(rename = "ECDSAWithSHA384")]
    EcdsaWithSha384,
    #[serde(rename = "ECDSAWithSHA512")]
    EcdsaWithSha512,
    PureEd25519,
}

/// Keystores written next to the PEM files.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateKeystores {
    /// A Java keystore `keystore.jks` (and `truststore.jks` when the CA is known).
    pub jks: Option<JksKeystore>,
    /// A PKCS#12 file `keystore.p12` (and `truststore.p12` when the CA is known).
    pub pkcs12: Option<Pkcs12Keystore>,
}

/// JKS keystore settings.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.password) && has(self.passwordSecretRef))",
     "message": "password and passwordSecretRef are mutually exclusive"}
]))]
pub struct JksKeystore {
    /// Whether to write the keystore.
    pub create: bool,
    /// Alias of the key entry; `certificate` when unset.
    pub alias: Option<String>,
    /// Secret entry with the keystore password; excludes `password`.
    pub password_secret_ref: Option<SecretKeySelector>,
    /// The keystore password given inline; excludes `passwordSecretRef`.
    pub password: Option<String>,
}

/// PKCS#12 keystore settings.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.password) && has(self.passwordSecretRef))",
     "message": "password and passwordSecretRef are mutually exclusive"}
]))]
pub struct Pkcs12Keystore {
    /// Whether to write the keystore.
    pub create: bool,
    /// Secret entry with the keystore password; excludes `password`.
    pub password_secret_ref: Option<SecretKeySelector>,
    /// The keystore password given inline; excludes `passwordSecretRef`.
    pub password: Option<String>,
    /// Encryption profile: `LegacyRC2` (the default), `LegacyDES`,
    /// `Modern2023` or `Modern2026` (PBMAC1: OpenSSL 3.4, Java 26 and later).
    pub profile: Option<Pkcs12Profile>,
}

/// PKCS#12 encryption profile.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Pkcs12Profile {
    #[serde(rename = "LegacyRC2")]
    LegacyRc2,
    #[serde(rename = "LegacyDES")]
    LegacyDes,
    Modern2023,
    Modern2026,
}

/// An extra output format.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdditionalOutputFormat {
    /// `DER` (the key as `key.der`) or `CombinedPEM` (key and chain as `tls-combined.pem`).
    #[serde(rename = "type")]
    pub type_: OutputFormatType,
}

/// Kind of extra output.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum OutputFormatType {
    #[serde(rename = "DER")]
    Der,
    #[serde(rename = "CombinedPEM")]
    CombinedPem,
}

/// X.509 name constraints.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NameConstraints {
    /// Mark the extension critical.
    pub critical: Option<bool>,
    /// Names that issued certificates must fall within.
    pub permitted: Option<NameConstraintItem>,
    /// Names that issued certificates must not use, whatever `permitted` says.
    pub excluded: Option<NameConstraintItem>,
}

/// One side of the name constraints.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NameConstraintItem {
    /// DNS domains.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub dns_domains: Option<Vec<String>>,
    /// IP ranges in CIDR notation.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub ip_ranges: Option<Vec<String>>,
    /// Email addresses or domains.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub email_addresses: Option<Vec<String>>,
    /// URI domains.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub uri_domains: Option<Vec<String>>,
}

/// Observed state of a Certificate.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// Conditions: `Ready` (the Secret holds a valid certificate matching the
    /// spec) and `Issuing` (an issuance is under way).
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Option<Vec<Condition>>,
    /// When the last issuance failed; unset after a success.
    pub last_failure_time: Option<Time>,
    /// Start of validity of the certificate in the Secret.
    pub not_before: Option<Time>,
    /// End of validity of the certificate in the Secret.
    pub not_after: Option<Time>,
    /// When the next renewal starts; unset when none is scheduled.
    pub renewal_time: Option<Time>,
    /// Revision of the certificate in the Secret; the next CertificateRequest
    /// carries this plus one in `cert-manager.io/certificate-revision`.
    pub revision: Option<i64>,
    /// Secret holding the private key for the issuance under way.
    pub next_private_key_secret_name: Option<String>,
    /// Consecutive failed issuances; drives the retry backoff. Unset after a success.
    pub failed_issuance_attempts: Option<i64>,
}
