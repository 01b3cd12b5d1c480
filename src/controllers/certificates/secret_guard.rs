//! Which Secret a Certificate may write, decided before anything is
//! ordered, and the Certificate a Secret belongs to.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::ObjectRef;

use super::secret::Refusal;
use super::state::Ctx;
use crate::api::{Certificate, ClusterIssuer, Issuer};

use super::status::Error;

/// Why `secret` must not be written for `cert`, as the message for its
/// condition, or None. Decided before anything is ordered: refusing after
/// a full ACME order cost a certificate per attempt.
///
/// - It belongs to another, existing Certificate (a Secret whose
///   Certificate is gone is free to adopt: a renamed Certificate keeps its
///   secretName).
/// - It is not of type kubernetes.io/tls (the type cannot change).
/// - It holds data certwright does not write, and was not handed over
///   with the `cert-manager.io/certificate-name` annotation.
/// - It is the ACME account key of an Issuer: never, whatever it says.
pub(crate) async fn refused(
    ctx: &Ctx,
    cert: &Certificate,
    secret: &Secret,
) -> Result<Option<String>, Error> {
    let ns = cert.namespace().unwrap_or_default();
    let name = &cert.spec.secret_name;
    let at = format!("Secret {ns}/{name}");
    if let Some(other) = super::secret::owned_by_other(secret.annotations(), &cert.name_any()) {
        let api: Api<Certificate> = Api::namespaced(ctx.client.clone(), &ns);
        let exists = api
            .get_opt(&other)
            .await
            .map_err(|e| Error::Get(format!("Certificate {ns}/{other}"), e))?
            .is_some();
        if exists {
            return Ok(Some(format!(
                "{at} belongs to Certificate {other:?}; certwright will not overwrite it: give this Certificate another secretName"
            )));
        }
    }
    let keys = secret.data.iter().flatten().map(|(k, _)| k);
    match super::secret::refusal(
        secret.type_.as_deref(),
        secret.annotations(),
        keys,
        &cert.name_any(),
    ) {
        Some(Refusal::WrongType(type_)) => {
            return Ok(Some(format!(
                "{at} is of type {type_:?}, not kubernetes.io/tls, and a Secret's type cannot change; certwright will not replace it: delete it, or give this Certificate another secretName"
            )));
        }
        Some(Refusal::ForeignData(keys)) => {
            return Ok(Some(format!(
                "{at} holds data certwright does not write ({}); certwright will not overwrite it: give this Certificate another secretName, or hand the Secret over with `kubectl annotate secret -n {ns} {name} cert-manager.io/certificate-name={}`",
                keys.join(", "),
                cert.name_any()
            )));
        }
        None => {}
    }
    if secret
        .annotations()
        .contains_key(super::secret::CERTIFICATE_NAME)
    {
        // Written for a Certificate: not an account key.
        return Ok(None);
    }
    if let Some(issuer) = account_key_of(ctx, &ns, name).await? {
        return Ok(Some(format!(
            "{at} is the ACME account key of {issuer}; certwright will never overwrite it: give this Certificate another secretName"
        )));
    }
    Ok(None)
}

/// The Issuer (or ClusterIssuer) keeping its ACME account key in Secret
/// `ns/name`, if any.
async fn account_key_of(ctx: &Ctx, ns: &str, name: &str) -> Result<Option<String>, Error> {
    let uses = |acme: Option<&crate::api::AcmeIssuer>| {
        acme.is_some_and(|a| a.private_key_secret_ref.name == name)
    };
    let issuers = Api::<Issuer>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::Get(format!("Issuers in {ns}"), e))?;
    if let Some(i) = issuers
        .items
        .iter()
        .find(|i| uses(i.spec.config.acme.as_ref()))
    {
        return Ok(Some(format!("Issuer {:?}", i.name_any())));
    }
    if ns == ctx.settings.cluster_resource_namespace {
        let cluster = Api::<ClusterIssuer>::all(ctx.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::Get("ClusterIssuers".into(), e))?;
        if let Some(i) = cluster
            .items
            .iter()
            .find(|i| uses(i.spec.config.acme.as_ref()))
        {
            return Ok(Some(format!("ClusterIssuer {:?}", i.name_any())));
        }
    }
    Ok(None)
}

/// The Certificate a Secret belongs to, by its certificate-name
/// annotation (it is not owned by the Certificate unless owner references
/// are on).
pub(crate) fn certificate_of(
    secret: kube::core::PartialObjectMeta<Secret>,
) -> Option<ObjectRef<Certificate>> {
    let ns = secret.metadata.namespace.clone()?;
    let name = secret
        .metadata
        .annotations
        .as_ref()?
        .get("cert-manager.io/certificate-name")?
        .clone();
    Some(ObjectRef::new(&name).within(&ns))
}
