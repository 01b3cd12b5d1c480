//! Deterministic names: a CertificateRequest is `<certificate>-<revision>`,
//! its Order `<request>-<hash of the order spec>`, each Challenge
//! `<order>-<hash of its authorization and token>`, so a restarted
//! controller finds the objects it created instead of making new ones.
//! Names are kept within Kubernetes' 253 characters.

/// 32-bit FNV-1a, as cert-manager uses for these suffixes.
pub fn fnv32a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

fn join(base: &str, suffix: &str) -> String {
    let max = 253 - suffix.len() - 1;
    let mut cut = base.len().min(max);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{suffix}", base[..cut].trim_end_matches(['-', '.']))
}

pub fn certificate_request(certificate: &str, revision: i64) -> String {
    join(certificate, &revision.to_string())
}

pub fn order(request: &str, spec: &serde_json::Value) -> String {
    join(request, &fnv32a(spec.to_string().as_bytes()).to_string())
}

pub fn challenge(order: &str, authorization_url: &str, token: &str) -> String {
    join(
        order,
        &fnv32a(format!("{authorization_url}|{token}").as_bytes()).to_string(),
    )
}

/// `namespace/name` of an object (just `name` for a cluster-scoped one),
/// for logs.
pub fn object_name<K: kube::Resource>(object: &K) -> String {
    let meta = object.meta();
    match &meta.namespace {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or_default()),
        None => meta.name.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_distinct_and_short_enough() {
        assert_eq!(fnv32a(b""), 0x811c_9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c_292c);
        assert_eq!(certificate_request("web", 3), "web-3");
        let spec = serde_json::json!({"dnsNames": ["a.example.com"]});
        assert_eq!(order("web-3", &spec), order("web-3", &spec));
        assert_ne!(
            order("web-3", &spec),
            order("web-3", &serde_json::json!({"dnsNames": ["b.example.com"]}))
        );
        assert_ne!(
            challenge("o", "https://ca/authz/1", "t1"),
            challenge("o", "https://ca/authz/1", "t2")
        );
        let long = "x".repeat(300);
        let name = certificate_request(&long, 12);
        assert!(name.len() <= 253 && name.ends_with("-12"), "{}", name.len());
    }
}
