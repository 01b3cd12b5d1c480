//! DNS-01 solver configuration, as cert-manager's. certwright writes the
//! records with the providers `Dns01Solver::supported` names; the others
//! deserialize, validate and round-trip, and are reported as unsupported.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::meta::SecretKeySelector;

/// DNS-01 solver: exactly one provider publishes the `_acme-challenge` TXT record.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "((has(self.akamai) ? 1 : 0) + (has(self.cloudDNS) ? 1 : 0) + (has(self.cloudflare) ? 1 : 0) + (has(self.route53) ? 1 : 0) + (has(self.azureDNS) ? 1 : 0) + (has(self.digitalocean) ? 1 : 0) + (has(self.acmeDNS) ? 1 : 0) + (has(self.rfc2136) ? 1 : 0) + (has(self.webhook) ? 1 : 0)) == 1",
     "message": "exactly one DNS-01 provider must be set"}
]))]
pub struct Dns01Solver {
    /// Whether to follow CNAMEs from `_acme-challenge.<name>` to the zone to
    /// update: `None` (the default) or `Follow`.
    pub cname_strategy: Option<CnameStrategy>,
    /// Akamai Edge DNS.
    pub akamai: Option<AkamaiProvider>,
    /// Google Cloud DNS.
    #[serde(rename = "cloudDNS")]
    pub cloud_dns: Option<CloudDnsProvider>,
    /// Cloudflare.
    pub cloudflare: Option<CloudflareProvider>,
    /// AWS Route 53.
    pub route53: Option<Route53Provider>,
    /// Azure DNS.
    #[serde(rename = "azureDNS")]
    pub azure_dns: Option<AzureDnsProvider>,
    /// DigitalOcean Domains.
    pub digitalocean: Option<DigitalOceanProvider>,
    /// An acme-dns server.
    #[serde(rename = "acmeDNS")]
    pub acme_dns: Option<AcmeDnsProvider>,
    /// RFC 2136 dynamic updates to an authoritative server.
    pub rfc2136: Option<Rfc2136Provider>,
    /// An external webhook solver (cert-manager's webhook API).
    pub webhook: Option<WebhookProvider>,
}

/// The providers certwright writes records with, as messages name them.
pub const SUPPORTED_PROVIDERS: &str = "rfc2136, cloudflare and webhook";

impl Dns01Solver {
    /// Whether certwright can write records with this solver's provider.
    pub fn supported(&self) -> bool {
        self.rfc2136.is_some() || self.cloudflare.is_some() || self.webhook.is_some()
    }
}

/// CNAME handling of a DNS-01 solver.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CnameStrategy {
    None,
    Follow,
}

/// Akamai Edge DNS credentials.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AkamaiProvider {
    /// Host of the Akamai API client.
    pub service_consumer_domain: String,
    /// Secret entry with the client token.
    pub client_token_secret_ref: SecretKeySelector,
    /// Secret entry with the client secret.
    pub client_secret_secret_ref: SecretKeySelector,
    /// Secret entry with the access token.
    pub access_token_secret_ref: SecretKeySelector,
}

/// Google Cloud DNS settings.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudDnsProvider {
    /// Secret entry with a service account key; ambient credentials when unset.
    pub service_account_secret_ref: Option<SecretKeySelector>,
    /// Google Cloud project of the zone.
    pub project: String,
    /// Managed zone to write to; found automatically when unset.
    pub hosted_zone_name: Option<String>,
}

/// Cloudflare credentials: an API token (preferred) or a global API key with its email.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudflareProvider {
    /// Account email, needed only with `apiKeySecretRef`.
    pub email: Option<String>,
    /// Secret entry with a global API key.
    pub api_key_secret_ref: Option<SecretKeySelector>,
    /// Secret entry with a scoped API token.
    pub api_token_secret_ref: Option<SecretKeySelector>,
}

/// AWS Route 53 settings.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Route53Provider {
    /// Authenticate with a bound ServiceAccount token (AssumeRoleWithWebIdentity).
    pub auth: Option<Route53Auth>,
    /// Access key ID given inline; excludes `accessKeyIDSecretRef`.
    #[serde(rename = "accessKeyID")]
    pub access_key_id: Option<String>,
    /// Secret entry with the access key ID; excludes `accessKeyID`.
    #[serde(rename = "accessKeyIDSecretRef")]
    pub access_key_id_secret_ref: Option<SecretKeySelector>,
    /// Secret entry with the secret access key.
    pub secret_access_key_secret_ref: Option<SecretKeySelector>,
    /// ARN of a role to assume with the credentials above or ambient ones.
    pub role: Option<String>,
    /// Hosted zone to write to, skipping the zone lookup.
    #[serde(rename = "hostedZoneID")]
    pub hosted_zone_id: Option<String>,
    /// AWS region used to pick the credential scope and partition.
    pub region: Option<String>,
}

/// Route 53 authentication through Kubernetes.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Route53Auth {
    /// Use a token of a ServiceAccount.
    pub kubernetes: Route53KubernetesAuth,
}

/// A ServiceAccount whose bound token is exchanged for AWS credentials.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Route53KubernetesAuth {
    /// The ServiceAccount to request a token for.
    pub service_account_ref: ServiceAccountRef,
}

/// A ServiceAccount to request a short-lived token for.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountRef {
    /// Name of the ServiceAccount.
    pub name: String,
    /// Extra audiences of the token.
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub audiences: Option<Vec<String>>,
}

/// Azure DNS settings: a service principal (clientID, clientSecretSecretRef,
/// tenantID) or a managed identity.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureDnsProvider {
    /// Client ID of the service principal.
    #[serde(rename = "clientID")]
    pub client_id: Option<String>,
    /// Secret entry with the service principal's password.
    pub client_secret_secret_ref: Option<SecretKeySelector>,
    /// Azure subscription of the zone.
    #[serde(rename = "subscriptionID")]
    pub subscription_id: String,
    /// Tenant of the service principal.
    #[serde(rename = "tenantID")]
    pub tenant_id: Option<String>,
    /// Resource group of the zone.
    pub resource_group_name: String,
    /// Name of the zone.
    pub hosted_zone_name: Option<String>,
    /// Azure cloud; `AzurePublicCloud` when unset.
    pub environment: Option<AzureEnvironment>,
    /// Workload identity or managed service identity; excludes the service principal fields.
    pub managed_identity: Option<AzureManagedIdentity>,
    /// Public (the default) or private DNS zone.
    pub zone_type: Option<AzureZoneType>,
}

/// An Azure cloud.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AzureEnvironment {
    AzurePublicCloud,
    AzureChinaCloud,
    AzureGermanCloud,
    AzureUSGovernmentCloud,
}

/// Kind of Azure DNS zone.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AzureZoneType {
    AzurePublicZone,
    AzurePrivateZone,
}

/// An Azure managed identity.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureManagedIdentity {
    /// Client ID of the identity; excludes `resourceID`.
    #[serde(rename = "clientID")]
    pub client_id: Option<String>,
    /// Resource ID of the identity; excludes `clientID`.
    #[serde(rename = "resourceID")]
    pub resource_id: Option<String>,
    /// Tenant of the identity.
    #[serde(rename = "tenantID")]
    pub tenant_id: Option<String>,
}

/// DigitalOcean credentials.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DigitalOceanProvider {
    /// Secret entry with an API token.
    pub token_secret_ref: SecretKeySelector,
}

/// An acme-dns server and account.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcmeDnsProvider {
    /// URL of the acme-dns server.
    pub host: String,
    /// Secret entry with the acme-dns account JSON.
    pub account_secret_ref: SecretKeySelector,
}

/// RFC 2136 dynamic DNS update settings.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rfc2136Provider {
    /// Authoritative server as `host[:port]`; IPv6 hosts in brackets.
    pub nameserver: String,
    /// Secret entry with the TSIG key; required with `tsigKeyName`.
    pub tsig_secret_secret_ref: Option<SecretKeySelector>,
    /// TSIG key name; required with `tsigSecretSecretRef`.
    pub tsig_key_name: Option<String>,
    /// TSIG algorithm: `HMACMD5` (the default), `HMACSHA1`, `HMACSHA256` or `HMACSHA512`.
    pub tsig_algorithm: Option<String>,
    /// Transport of the updates: `UDP` (the default) or `TCP`.
    pub protocol: Option<Rfc2136Protocol>,
}

/// Transport of RFC 2136 updates.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Rfc2136Protocol {
    TCP,
    UDP,
}

/// An external DNS-01 webhook solver.
#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookProvider {
    /// API group the webhook serves ChallengePayloads under.
    pub group_name: String,
    /// Name of the solver inside the webhook.
    pub solver_name: String,
    /// Solver-specific configuration, passed to the webhook as is. Reference
    /// Secrets here rather than embedding credentials.
    // schemars cannot see through schema_with that the field is optional.
    #[serde(default)]
    #[schemars(schema_with = "super::meta::any_json_schema")]
    pub config: Option<serde_json::Value>,
}
