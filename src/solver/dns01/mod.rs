//! DNS-01: the TXT value at `_acme-challenge.<name>` written with the
//! solver's provider (RFC 2136, Cloudflare's API in `cloudflare`, or a
//! cert-manager webhook solver in `webhook`), checked on every authoritative
//! nameserver of its zone (or only on the recursive nameservers given)
//! before the CA is asked, and removed again, only our value.

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use crate::api::Challenge;
use crate::api::dns01::{CloudflareProvider, CnameStrategy, Rfc2136Provider, WebhookProvider};
use crate::api::meta::SecretKeySelector;
use crate::dns::Dns01Settings;
use crate::dns::lookup;
use crate::dns::tsig::{Algorithm, Key};
use crate::dns::update::{self, Updater};
use crate::solver::check::SelfCheckFailure;

/// What DNS-01 presents and checks with.
pub struct Dns01<'a> {
    pub client: &'a kube::Client,
    pub settings: &'a Dns01Settings,
    /// Where a ClusterIssuer's Secrets are.
    pub cluster_resource_namespace: &'a str,
}

mod cloudflare;
mod webhook;

/// The nameservers lookups go to.
fn recursive(ctx: &Dns01<'_>) -> Vec<SocketAddr> {
    if !ctx.settings.recursive_nameservers.is_empty() {
        return ctx.settings.recursive_nameservers.clone();
    }
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Who writes the records.
enum Provider {
    /// RFC 2136 updates of the zone found by lookup.
    Rfc2136 {
        updater: Updater,
        zone: String,
    },
    Cloudflare(cloudflare::Cloudflare),
    Webhook(webhook::Webhook),
}

/// Where the value goes: the provider and the name.
struct Target {
    provider: Provider,
    fqdn: String,
}

/// The issuer's namespace for Secrets: the Challenge's, or the cluster
/// resource namespace for a ClusterIssuer.
fn resource_namespace(ctx: &Dns01<'_>, ch: &Challenge) -> String {
    match ch.spec.issuer_ref.kind.as_deref() {
        Some("ClusterIssuer") => ctx.cluster_resource_namespace.to_string(),
        _ => ch.namespace().unwrap_or_default(),
    }
}

/// The Secret entry `key` of `name` (named by the solver's `field`), in
/// the issuer's namespace for Secrets.
async fn secret_entry(
    ctx: &Dns01<'_>,
    ch: &Challenge,
    field: &str,
    selector: &SecretKeySelector,
) -> Result<Result<String, String>, kube::Error> {
    let ns = resource_namespace(ctx, ch);
    let name = &selector.name;
    let key = selector.key.as_deref().unwrap_or("");
    let Some(secret) = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .get_opt(name)
        .await?
    else {
        return Ok(Err(format!(
            "the Secret {ns}/{name} named by {field} does not exist"
        )));
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).trim().to_string());
    Ok(value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("the Secret {ns}/{name} has no entry {key:?} ({field}.key)")))
}

/// Returns the error of an `Ok(Err(..))` early.
macro_rules! or_say {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(why) => return Ok(Err(why)),
        }
    };
}

async fn rfc2136(
    ctx: &Dns01<'_>,
    ch: &Challenge,
    rfc: &Rfc2136Provider,
    fqdn: &str,
) -> Result<Result<Provider, String>, kube::Error> {
    let server = or_say!(update::nameserver(&rfc.nameserver).await);
    let key = match (&rfc.tsig_key_name, &rfc.tsig_secret_secret_ref) {
        (None, None) => None,
        (Some(name), Some(secret_ref)) if !name.is_empty() => {
            let algorithm = or_say!(Algorithm::from_name(
                rfc.tsig_algorithm.as_deref().unwrap_or("")
            ));
            let text = or_say!(secret_entry(ctx, ch, "tsigSecretSecretRef", secret_ref).await?);
            let secret = or_say!(
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &text).map_err(
                    |e| format!(
                        "the TSIG secret in {:?} is not base64 (as BIND writes it): {e}",
                        secret_ref.name
                    )
                )
            );
            Some(Key {
                name: name.clone(),
                algorithm,
                secret,
            })
        }
        _ => {
            return Ok(Err(
                "rfc2136: tsigKeyName and tsigSecretSecretRef go together".into(),
            ));
        }
    };
    let tcp = matches!(rfc.protocol, Some(crate::api::dns01::Rfc2136Protocol::TCP));
    // The zone from the recursive nameservers, or from the updated server
    // (authoritative for it) when none are known.
    let resolver = recursive(ctx).first().copied().unwrap_or(server);
    let zone = or_say!(
        lookup::find_zone(resolver, fqdn)
            .await
            .map_err(|why| format!("finding the zone of {fqdn}: {why}"))
    );
    Ok(Ok(Provider::Rfc2136 {
        updater: Updater { server, key, tcp },
        zone,
    }))
}

async fn cloudflare(
    ctx: &Dns01<'_>,
    ch: &Challenge,
    cf: &CloudflareProvider,
) -> Result<Result<Provider, String>, kube::Error> {
    let auth = match (&cf.api_token_secret_ref, &cf.api_key_secret_ref) {
        (Some(token), None) => cloudflare::Auth::Token(or_say!(
            secret_entry(ctx, ch, "apiTokenSecretRef", token).await?
        )),
        (None, Some(key)) => {
            let Some(email) = cf.email.clone().filter(|e| !e.is_empty()) else {
                return Ok(Err("cloudflare: apiKeySecretRef needs email".into()));
            };
            let key = or_say!(secret_entry(ctx, ch, "apiKeySecretRef", key).await?);
            cloudflare::Auth::Key { email, key }
        }
        _ => {
            return Ok(Err(
                "cloudflare: set exactly one of apiTokenSecretRef and apiKeySecretRef".into(),
            ));
        }
    };
    let http = or_say!(cloudflare::client());
    Ok(Ok(Provider::Cloudflare(cloudflare::Cloudflare {
        base: ctx.settings.cloudflare_api_url.clone(),
        auth,
        http,
    })))
}

/// A webhook solver is told the zone too, found on the recursive
/// nameservers as cert-manager finds it.
async fn webhook(
    ctx: &Dns01<'_>,
    ch: &Challenge,
    hook: &WebhookProvider,
    fqdn: &str,
) -> Result<Provider, String> {
    if hook.group_name.is_empty() || hook.solver_name.is_empty() {
        return Err("webhook: groupName and solverName are required".into());
    }
    let Some(resolver) = recursive(ctx).first().copied() else {
        return Err(
            "the webhook solver needs the zone of the name: set --dns01-recursive-nameservers"
                .into(),
        );
    };
    let zone = lookup::find_zone(resolver, fqdn)
        .await
        .map_err(|why| format!("finding the zone of {fqdn}: {why}"))?;
    Ok(Provider::Webhook(webhook::Webhook {
        provider: hook.clone(),
        resource_namespace: resource_namespace(ctx, ch),
        dns_name: ch.spec.dns_name.clone(),
        fqdn: fqdn.to_string(),
        zone,
    }))
}

async fn target(ctx: &Dns01<'_>, ch: &Challenge) -> Result<Result<Target, String>, kube::Error> {
    let Some(dns) = ch.spec.solver.dns01.as_ref() else {
        return Ok(Err("the Challenge has no dns01 solver".into()));
    };
    let mut fqdn = format!("_acme-challenge.{}", ch.spec.dns_name.trim_end_matches('.'));
    if dns.cname_strategy == Some(CnameStrategy::Follow) {
        let Some(resolver) = recursive(ctx).first().copied() else {
            return Ok(Err(
                "cnameStrategy Follow needs a nameserver: set --dns01-recursive-nameservers".into(),
            ));
        };
        fqdn = or_say!(
            lookup::txt(resolver, &fqdn, true)
                .await
                .map(|found| found.name)
                .map_err(|why| format!("following the CNAMEs of {fqdn}: {why}"))
        );
    }
    let provider = if let Some(rfc) = &dns.rfc2136 {
        or_say!(rfc2136(ctx, ch, rfc, &fqdn).await?)
    } else if let Some(cf) = &dns.cloudflare {
        or_say!(cloudflare(ctx, ch, cf).await?)
    } else if let Some(hook) = &dns.webhook {
        or_say!(webhook(ctx, ch, hook, &fqdn).await)
    } else {
        return Ok(Err(format!(
            "certwright supports the {} DNS-01 providers only today",
            crate::api::dns01::SUPPORTED_PROVIDERS
        )));
    };
    Ok(Ok(Target { provider, fqdn }))
}

/// Adds our TXT value. Ok(Err) says why it cannot be.
pub async fn present(ctx: &Dns01<'_>, ch: &Challenge) -> Result<Result<(), String>, kube::Error> {
    let target = or_say!(target(ctx, ch).await?);
    let value = &ch.spec.key;
    Ok(match &target.provider {
        Provider::Rfc2136 { updater, zone } => updater.add_txt(zone, &target.fqdn, value).await,
        Provider::Cloudflare(cf) => cf.present(&target.fqdn, value).await,
        Provider::Webhook(hook) => hook.call(ctx.client, webhook::Action::Present, value).await,
    })
}

/// Removes our TXT value (and only it). Ok(Err) says why it could not be.
pub async fn cleanup(ctx: &Dns01<'_>, ch: &Challenge) -> Result<Result<(), String>, kube::Error> {
    let target = or_say!(target(ctx, ch).await?);
    let value = &ch.spec.key;
    Ok(match &target.provider {
        Provider::Rfc2136 { updater, zone } => updater.delete_txt(zone, &target.fqdn, value).await,
        Provider::Cloudflare(cf) => cf.clean_up(&target.fqdn, value).await,
        Provider::Webhook(hook) => hook.call(ctx.client, webhook::Action::CleanUp, value).await,
    })
}

/// Whether every nameserver that counts has our value: each
/// authoritative nameserver of the zone (CNAMEs followed), or with
/// `--dns01-recursive-nameservers-only` each recursive one.
pub async fn check(ctx: &Dns01<'_>, ch: &Challenge) -> Result<(), SelfCheckFailure> {
    let fqdn = format!("_acme-challenge.{}", ch.spec.dns_name.trim_end_matches('.'));
    check_name(ctx, &fqdn, &ch.spec.key)
        .await
        .map_err(SelfCheckFailure::NotPropagated)
}

async fn check_name(ctx: &Dns01<'_>, fqdn: &str, value: &str) -> Result<(), String> {
    let resolvers = recursive(ctx);
    if resolvers.is_empty() {
        return Err("no nameserver to check with: set --dns01-recursive-nameservers".into());
    }
    if ctx.settings.recursive_only {
        for server in &resolvers {
            let found = lookup::txt(*server, fqdn, true).await?;
            if !found.values.iter().any(|v| v == value) {
                return Err(format!(
                    "the recursive nameserver {server} does not have the TXT value at {fqdn} yet"
                ));
            }
        }
        return Ok(());
    }
    let mut name = fqdn.to_string();
    for _ in 0..8 {
        let zone = lookup::find_zone(resolvers[0], &name).await?;
        let servers = authoritative(resolvers[0], &zone).await?;
        let mut next = None;
        for (ns, addr) in &servers {
            let found = lookup::txt(*addr, &name, false)
                .await
                .map_err(|e| format!("asking {ns} ({addr}): {e}"))?;
            if found.name != name && found.values.is_empty() {
                // A CNAME out of this zone: check where it leads.
                next = Some(found.name);
                break;
            }
            if !found.values.iter().any(|v| v == value) {
                return Err(format!(
                    "the authoritative nameserver {ns} ({addr}) of zone {zone} does not have the TXT value at {} yet",
                    found.name
                ));
            }
        }
        match next {
            Some(target) => name = target,
            None => return Ok(()),
        }
    }
    Err(format!(
        "the CNAMEs from {fqdn} lead through too many zones"
    ))
}

/// The nameservers of `zone` (its NS records) and their addresses.
async fn authoritative(
    resolver: SocketAddr,
    zone: &str,
) -> Result<Vec<(String, SocketAddr)>, String> {
    use crate::dns::wire::{Section, TYPE_NS};
    let answer = lookup::ask(resolver, zone, TYPE_NS, true).await?;
    let mut out = Vec::new();
    for ns in answer.of(Section::Answer, TYPE_NS) {
        let host = answer.name_in(ns)?;
        let glue = answer.addresses(Section::Additional, &host);
        let addresses = if glue.is_empty() {
            lookup::resolve(&[resolver], &host)
                .await
                .map_err(|e| format!("resolving the nameserver {host} of zone {zone}: {e:?}"))?
        } else {
            glue
        };
        out.extend(
            addresses
                .into_iter()
                .map(|ip| (host.clone(), SocketAddr::new(ip, 53))),
        );
    }
    if out.is_empty() {
        return Err(format!(
            "{resolver} names no nameserver (NS) for zone {zone}"
        ));
    }
    Ok(out)
}
