//! What one pass over a Certificate reads, read once and shared by every
//! role: the Secret it writes, the temporary key Secret of the issuance
//! under way, the CertificateRequests of the current and next revisions,
//! and the CA's renewal suggestion. API reads are fresh (not from a
//! cache), so a role never acts on a state older than its own last write;
//! only the temporary key, written once, comes from the cache when there.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use super::policies::SecretView;
use super::renewal::ari::Suggestion;
use super::state::Ctx;
use super::status::{Error, issuing};
use crate::api::{Certificate, CertificateRequest};
use crate::naming;
use crate::pki::cert::parse_chain;

pub struct Snapshot {
    /// The Secret `spec.secretName` names.
    pub secret: Option<Secret>,
    /// The temporary key Secret `status.nextPrivateKeySecretName` names,
    /// read only while an issuance is under way.
    pub next_key: Option<Secret>,
    /// The CertificateRequest of revision + 1, read only while an
    /// issuance is under way.
    pub request: Option<CertificateRequest>,
    /// The CertificateRequest of the current revision, read only when no
    /// issuance is under way: the trigger compares the spec with it (a CA
    /// may rewrite what the leaf says).
    pub current_request: Option<CertificateRequest>,
    /// The CA's renewal suggestion for the certificate in the Secret, when
    /// its issuer offers renewal information (asked when no issuance is
    /// under way or its request is yet to be made, and no more often than
    /// the CA says).
    pub suggestion: Option<Suggestion>,
    /// When that suggestion is due to be asked again.
    pub ask_ca_again: Option<Duration>,
}

impl Snapshot {
    pub async fn read(cert: &Certificate, ctx: &Ctx) -> Result<Self, Error> {
        let ns = cert.namespace().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
        let requests: Api<CertificateRequest> = Api::namespaced(ctx.client.clone(), &ns);
        let under_way = issuing(cert) && cert.metadata.deletion_timestamp.is_none();
        let status = cert.status.as_ref();
        let next_key_name = status
            .and_then(|s| s.next_private_key_secret_name.clone())
            .filter(|_| under_way);
        let revision = status.and_then(|s| s.revision).unwrap_or(0) + 1;
        let request_name =
            under_way.then(|| naming::certificate_request(&cert.name_any(), revision));
        let current_name = status
            .and_then(|s| s.revision)
            .filter(|_| !under_way)
            .map(|r| naming::certificate_request(&cert.name_any(), r));
        // The temporary key is read from the cache when it is there.
        let cached_key = next_key_name
            .as_deref()
            .and_then(|name| ctx.state.cached_key(&ns, name));
        let next_key_name = next_key_name.filter(|_| cached_key.is_none());
        let (secret, next_key, request, current_request) = tokio::try_join!(
            get_opt(&secrets, Some(&cert.spec.secret_name), &ns),
            get_opt(&secrets, next_key_name.as_deref(), &ns),
            get_opt(&requests, request_name.as_deref(), &ns),
            get_opt(&requests, current_name.as_deref(), &ns),
        )?;
        // Asked when no issuance is under way (is it time to renew?), and
        // as one's request is made (is it made inside the CA's window?).
        let ari_id = secret
            .as_ref()
            .filter(|_| !under_way || request.is_none())
            .and_then(|s| s.data.as_ref()?.get("tls.crt").map(|c| c.0.clone()))
            .and_then(|pem| parse_chain(&pem).ok()?.ari_id);
        let (suggestion, ask_ca_again) = match ari_id {
            Some(id) => {
                let (suggestion, again) = super::renewal::ari::suggestion(
                    ctx.acme(),
                    &ctx.state.renewal_info,
                    ctx.settings.ari_poll_max,
                    cert,
                    &id,
                )
                .await;
                (suggestion, Some(again))
            }
            None => (None, None),
        };
        Ok(Self {
            secret,
            next_key: cached_key.or(next_key),
            request,
            current_request,
            suggestion,
            ask_ca_again,
        })
    }

    /// The written Secret as the pure decisions see it.
    pub fn secret_view(&self) -> Option<SecretView> {
        self.secret.as_ref().map(view)
    }

    /// The PEM of the temporary key Secret, when it has one.
    pub fn next_key_pem(&self) -> Option<&[u8]> {
        key_pem(self.next_key.as_ref()?)
    }

    /// The PEM of the key in the written Secret, when it has one.
    pub fn current_key_pem(&self) -> Option<&[u8]> {
        key_pem(self.secret.as_ref()?)
    }
}

pub(crate) fn key_pem(secret: &Secret) -> Option<&[u8]> {
    secret
        .data
        .as_ref()?
        .get("tls.key")
        .map(|b| b.0.as_slice())
        .filter(|b| !b.is_empty())
}

/// Reads `name` when there is one to read.
async fn get_opt<K>(api: &Api<K>, name: Option<&str>, ns: &str) -> Result<Option<K>, Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match name {
        Some(name) => api
            .get_opt(name)
            .await
            .map_err(|e| Error::GetSecret(format!("{ns}/{name}"), e)),
        None => Ok(None),
    }
}

fn view(secret: &Secret) -> SecretView {
    SecretView {
        annotations: secret.annotations().clone(),
        data: secret
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect(),
    }
}
