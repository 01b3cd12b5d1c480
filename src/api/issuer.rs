//! `Issuer` and `ClusterIssuer` (cert-manager.io/v1): who signs certificates.
//! certwright acts on ACME issuers; the other issuer types are modelled so
//! that such objects stay valid and can be reported as unsupported.

use k8s_openapi::ByteString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::acme::{AcmeIssuer, AcmeIssuerStatus};
use super::dns01::ServiceAccountRef;
use super::meta::{Condition, LocalObjectReference, SecretKeySelector};

/// An authority that signs certificates for Certificates in its own namespace.
#[serde_with::skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "cert-manager.io",
    version = "v1",
    kind = "Issuer",
    namespaced,
    status = "IssuerStatus",
    shortname = "iss",
    category = "cert-manager",
    doc = "An Issuer signs certificates for Certificates and CertificateRequests in its own namespace.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type == \"Ready\")].status"
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
pub struct IssuerSpec {
    /// The issuer type and its settings.
    #[serde(flatten)]
    pub config: IssuerConfig,
}

/// An authority that signs certificates for Certificates in any namespace.
/// Its Secrets live in the controller's cluster resource namespace.
#[serde_with::skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "cert-manager.io",
    version = "v1",
    kind = "ClusterIssuer",
    status = "IssuerStatus",
    shortname = "ciss",
    category = "cert-manager",
    doc = "A ClusterIssuer signs certificates for Certificates and CertificateRequests in any namespace.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type == \"Ready\")].status"
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
pub struct ClusterIssuerSpec {
    /// The issuer type and its settings.
    #[serde(flatten)]
    pub config: IssuerConfig,
}

/// The settings shared by Issuers and ClusterIssuers: exactly one issuer type.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "((has(self.acme) ? 1 : 0) + (has(self.ca) ? 1 : 0) + (has(self.vault) ? 1 : 0) + (has(self.selfSigned) ? 1 : 0) + (has(self.venafi) ? 1 : 0)) == 1",
     "message": "exactly one of acme, ca, vault, selfSigned or venafi must be set"}
]))]
pub struct IssuerConfig {
    /// Obtain certificates from an RFC 8555 (ACME) CA.
    pub acme: Option<AcmeIssuer>,
    /// Sign with a CA key pair kept in a Secret (not supported by certwright).
    pub ca: Option<CaIssuer>,
    /// Sign through a HashiCorp Vault PKI backend (not supported by certwright).
    pub vault: Option<VaultIssuer>,
    /// Self-sign with the request's own key (not supported by certwright).
    pub self_signed: Option<SelfSignedIssuer>,
    /// Sign through Venafi / CyberArk Certificate Manager (not supported by certwright).
    pub venafi: Option<VenafiIssuer>,
}

/// Observed state of an Issuer or ClusterIssuer.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerStatus {
    /// Conditions of the issuer; `Ready` says whether it can sign.
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Option<Vec<Condition>>,
    /// ACME account details, for ACME issuers.
    pub acme: Option<AcmeIssuerStatus>,
}

/// A CA whose key pair is kept in a Secret.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaIssuer {
    /// Secret (`kubernetes.io/tls`) holding the CA certificate and key.
    pub secret_name: String,
    /// CRL distribution point URLs to put in issued certificates.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub crl_distribution_points: Option<Vec<String>>,
    /// OCSP responder URLs to put in issued certificates.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub ocsp_servers: Option<Vec<String>>,
    /// Issuing-certificate URLs (authority information access) to put in issued certificates.
    #[serde(rename = "issuingCertificateURLs")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub issuing_certificate_urls: Option<Vec<String>>,
}

/// Self-signing with the request's own key.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelfSignedIssuer {
    /// CRL distribution point URLs to put in issued certificates.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub crl_distribution_points: Option<Vec<String>>,
}

/// A HashiCorp Vault PKI backend.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.caBundle) && has(self.caBundleSecretRef))",
     "message": "caBundle and caBundleSecretRef are mutually exclusive"}
]))]
pub struct VaultIssuer {
    /// How to log in to Vault.
    pub auth: VaultAuth,
    /// Address of the Vault server, e.g. `https://vault.example.com:8200`.
    pub server: String,
    /// Host name to verify Vault's TLS certificate against.
    pub server_name: Option<String>,
    /// Path of the PKI backend's sign endpoint, e.g. `pki/sign/my-role`.
    pub path: String,
    /// Vault Enterprise namespace.
    pub namespace: Option<String>,
    /// Base64-encoded PEM bundle of CAs trusted for Vault's TLS certificate.
    // schemars cannot see through schema_with that the field is optional.
    #[serde(default)]
    #[schemars(schema_with = "super::meta::bytes_schema")]
    pub ca_bundle: Option<ByteString>,
    /// Secret entry with a PEM CA bundle; `key` defaults to `ca.crt`.
    pub ca_bundle_secret_ref: Option<SecretKeySelector>,
    /// Secret entry with a PEM client certificate for mutual TLS.
    pub client_cert_secret_ref: Option<SecretKeySelector>,
    /// Secret entry with the PEM client key for mutual TLS.
    pub client_key_secret_ref: Option<SecretKeySelector>,
}

/// One way of logging in to Vault.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "((has(self.tokenSecretRef) ? 1 : 0) + (has(self.appRole) ? 1 : 0) + (has(self.clientCertificate) ? 1 : 0) + (has(self.kubernetes) ? 1 : 0)) == 1",
     "message": "exactly one of tokenSecretRef, appRole, clientCertificate or kubernetes must be set"}
]))]
pub struct VaultAuth {
    /// Secret entry with a Vault token.
    pub token_secret_ref: Option<SecretKeySelector>,
    /// AppRole login.
    pub app_role: Option<VaultAppRole>,
    /// TLS client certificate login.
    pub client_certificate: Option<VaultClientCertificateAuth>,
    /// Kubernetes ServiceAccount token login.
    pub kubernetes: Option<VaultKubernetesAuth>,
}

/// Vault AppRole login.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultAppRole {
    /// Mount path of the AppRole backend, e.g. `approle`.
    pub path: String,
    /// Role ID.
    pub role_id: String,
    /// Secret entry with the secret ID; `key` is required.
    pub secret_ref: SecretKeySelector,
}

/// Vault TLS certificate login.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultClientCertificateAuth {
    /// Mount path of the cert backend; `/v1/auth/cert` when unset.
    pub mount_path: Option<String>,
    /// Certificate role to log in as; any matching role when unset.
    pub name: Option<String>,
    /// `kubernetes.io/tls` Secret with the client certificate and key.
    pub secret_name: Option<String>,
}

/// Vault Kubernetes login.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultKubernetesAuth {
    /// Mount path of the Kubernetes backend; `/v1/auth/kubernetes` when unset.
    pub mount_path: Option<String>,
    /// Secret entry with a ServiceAccount token.
    pub secret_ref: Option<SecretKeySelector>,
    /// ServiceAccount to request a bound token for, instead of a stored token.
    pub service_account_ref: Option<ServiceAccountRef>,
    /// Vault role to log in as.
    pub role: String,
}

/// A Venafi / CyberArk Certificate Manager policy zone.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.tpp) != has(self.cloud)", "message": "exactly one of tpp or cloud must be set"}
]))]
pub struct VenafiIssuer {
    /// Policy zone every request is made in.
    pub zone: String,
    /// Self-hosted (TPP) connection.
    pub tpp: Option<VenafiTpp>,
    /// SaaS connection.
    pub cloud: Option<VenafiCloud>,
}

/// Connection to a self-hosted Venafi TPP.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VenafiTpp {
    /// Base URL of the vedsdk endpoint, e.g. `https://tpp.example.com/vedsdk`.
    pub url: String,
    /// Secret with `access-token`, or `username` and `password`.
    pub credentials_ref: LocalObjectReference,
    /// Base64-encoded PEM bundle of CAs trusted for the server's TLS certificate.
    // schemars cannot see through schema_with that the field is optional.
    #[serde(default)]
    #[schemars(schema_with = "super::meta::bytes_schema")]
    pub ca_bundle: Option<ByteString>,
    /// Secret entry with a CA bundle; excludes `caBundle`.
    pub ca_bundle_secret_ref: Option<SecretKeySelector>,
}

/// Connection to the Venafi SaaS.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VenafiCloud {
    /// Base URL of the service; `https://api.venafi.cloud/` when unset.
    pub url: Option<String>,
    /// Secret entry with the API token.
    pub api_token_secret_ref: SecretKeySelector,
}
