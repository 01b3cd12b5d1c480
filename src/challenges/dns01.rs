//! DNS-01: the TXT value at `_acme-challenge.<name>` written with the
//! solver's provider (RFC 2136 today), checked on every authoritative
//! nameserver of its zone (or only on the recursive nameservers given)
//! before the CA is asked, and removed again, only our value.

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use super::self_check::Verdict;
use crate::api::Challenge;
use crate::api::dns01::CnameStrategy;
use crate::context::Context;
use crate::dns::lookup;
use crate::dns::tsig::{Algorithm, Key};
use crate::dns::update::{self, Updater};

/// The nameservers lookups go to.
fn recursive(ctx: &Context) -> Vec<SocketAddr> {
    if !ctx.dns01.recursive_nameservers.is_empty() {
        return ctx.dns01.recursive_nameservers.clone();
    }
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Where the value goes: the provider, the zone and the name.
struct Target {
    updater: Updater,
    zone: String,
    fqdn: String,
}

/// The Secret entry `key` of `name`, in the issuer's namespace for Secrets.
async fn secret_entry(
    ctx: &Context,
    ch: &Challenge,
    name: &str,
    key: &str,
) -> Result<Result<String, String>, kube::Error> {
    let ns = match ch.spec.issuer_ref.kind.as_deref() {
        Some("ClusterIssuer") => ctx.cluster_resource_namespace.clone(),
        _ => ch.namespace().unwrap_or_default(),
    };
    let Some(secret) = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .get_opt(name)
        .await?
    else {
        return Ok(Err(format!(
            "the Secret {ns}/{name} named by tsigSecretSecretRef does not exist"
        )));
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).trim().to_string());
    Ok(value.filter(|v| !v.is_empty()).ok_or_else(|| {
        format!("the Secret {ns}/{name} has no entry {key:?} (tsigSecretSecretRef.key)")
    }))
}

async fn target(ctx: &Context, ch: &Challenge) -> Result<Result<Target, String>, kube::Error> {
    let Some(dns) = ch.spec.solver.dns01.as_ref() else {
        return Ok(Err("the Challenge has no dns01 solver".into()));
    };
    let Some(rfc) = dns.rfc2136.as_ref() else {
        return Ok(Err(
            "certwright supports only the rfc2136 DNS-01 provider today".into(),
        ));
    };
    let server = match update::nameserver(&rfc.nameserver).await {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    let key = match (&rfc.tsig_key_name, &rfc.tsig_secret_secret_ref) {
        (None, None) => None,
        (Some(name), Some(secret_ref)) if !name.is_empty() => {
            let algorithm = match Algorithm::from_name(rfc.tsig_algorithm.as_deref().unwrap_or(""))
            {
                Ok(a) => a,
                Err(why) => return Ok(Err(why)),
            };
            let text = match secret_entry(
                ctx,
                ch,
                &secret_ref.name,
                secret_ref.key.as_deref().unwrap_or(""),
            )
            .await?
            {
                Ok(t) => t,
                Err(why) => return Ok(Err(why)),
            };
            let secret =
                match base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &text) {
                    Ok(s) => s,
                    Err(e) => {
                        return Ok(Err(format!(
                            "the TSIG secret in {:?} is not base64 (as BIND writes it): {e}",
                            secret_ref.name
                        )));
                    }
                };
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
    let updater = Updater { server, key, tcp };
    // Lookups go to the recursive nameservers, or to the updated server
    // (authoritative for the zone) when none are known.
    let resolvers = match recursive(ctx) {
        r if r.is_empty() => vec![server],
        r => r,
    };
    let mut fqdn = format!("_acme-challenge.{}", ch.spec.dns_name.trim_end_matches('.'));
    if dns.cname_strategy == Some(CnameStrategy::Follow) {
        match lookup::txt(resolvers[0], &fqdn, true).await {
            Ok(found) => fqdn = found.name,
            Err(why) => return Ok(Err(format!("following the CNAMEs of {fqdn}: {why}"))),
        }
    }
    let zone = match lookup::find_zone(resolvers[0], &fqdn).await {
        Ok(z) => z,
        Err(why) => return Ok(Err(format!("finding the zone of {fqdn}: {why}"))),
    };
    Ok(Ok(Target {
        updater,
        zone,
        fqdn,
    }))
}

/// Adds our TXT value. Ok(Err) says why it cannot be.
pub async fn present(ctx: &Context, ch: &Challenge) -> Result<Result<(), String>, kube::Error> {
    let target = match target(ctx, ch).await? {
        Ok(t) => t,
        Err(why) => return Ok(Err(why)),
    };
    Ok(target
        .updater
        .add_txt(&target.zone, &target.fqdn, &ch.spec.key)
        .await)
}

/// Removes our TXT value (and only it). Ok(Err) says why it could not be.
pub async fn cleanup(ctx: &Context, ch: &Challenge) -> Result<Result<(), String>, kube::Error> {
    let target = match target(ctx, ch).await? {
        Ok(t) => t,
        Err(why) => return Ok(Err(why)),
    };
    Ok(target
        .updater
        .delete_txt(&target.zone, &target.fqdn, &ch.spec.key)
        .await)
}

/// Whether every nameserver that counts has our value: each
/// authoritative nameserver of the zone (CNAMEs followed), or with
/// `--dns01-recursive-nameservers-only` each recursive one.
pub async fn check(ctx: &Context, ch: &Challenge) -> Verdict {
    let fqdn = format!("_acme-challenge.{}", ch.spec.dns_name.trim_end_matches('.'));
    match check_name(ctx, &fqdn, &ch.spec.key).await {
        Ok(()) => Verdict::Passed(ctx.solver.passes),
        Err(reason) => Verdict::Failed {
            reason,
            missing: false,
        },
    }
}

async fn check_name(ctx: &Context, fqdn: &str, value: &str) -> Result<(), String> {
    let resolvers = recursive(ctx);
    if resolvers.is_empty() {
        return Err("no nameserver to check with: set --dns01-recursive-nameservers".into());
    }
    if ctx.dns01.recursive_only {
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
