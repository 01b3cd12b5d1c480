//! The Issuer controller's state table: from the issuer's spec and what
//! the pass has learnt, the one step to run next. Pure: every choice is
//! unit-tested below; the steps (`steps.rs`) do the I/O and add what they
//! learn to [`Seen`].

use std::time::Duration;

use super::decide::{self, Verdict};
use crate::api::IssuerConfig;

/// The account key as the pass has found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// The Secret, or its entry, is missing or empty.
    Absent,
    /// A PEM key.
    Pem(Vec<u8>),
    /// A P-256 key, parsed (PKCS#8), ready to register with.
    Usable { pem: Vec<u8>, pkcs8: Vec<u8> },
    /// An RSA key (cert-manager's): its account is rolled over to P-256.
    Rsa(Vec<u8>),
}

/// What a pass has learnt so far, besides the issuer itself.
#[derive(Debug, Default)]
pub struct Seen {
    /// The account key, once read.
    pub key: Option<Key>,
    /// What is left of the wait of a run of failed registrations (the
    /// inputs unchanged), once the key was read.
    pub retry_left: Option<Duration>,
}

/// The next thing to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Not an issuer certwright serves: say why and wait for a change.
    Unsupported {
        reason: &'static str,
        message: String,
    },
    /// Read the account key Secret.
    ReadKey,
    /// A run of failed registrations waits this long still.
    WaitForRetry(Duration),
    /// No key, and generating one is disabled: say so.
    MissingKey,
    /// No key, and an external account binding: register a new bound
    /// account, its key generated with it.
    RegisterBound,
    /// No key: generate one and store it.
    GenerateKey,
    /// A key read: parse it.
    ParseKey,
    /// An RSA key: roll its account over to a new P-256 key.
    RollOver,
    /// Register (or find) the account, and record it.
    Register,
}

/// The next step for an issuer of `config`, after the pass learnt `seen`.
pub fn next_step(config: &IssuerConfig, seen: &Seen) -> Step {
    let acme = match (decide::assess(config), config.acme.as_ref()) {
        (Verdict::Acme, Some(acme)) => acme,
        (Verdict::Unsupported { reason, message }, _) => {
            return Step::Unsupported { reason, message };
        }
        (Verdict::Acme, None) => {
            return Step::Unsupported {
                reason: "UnsupportedIssuerType",
                message: "no spec.acme".into(),
            };
        }
    };
    let Some(key) = &seen.key else {
        return Step::ReadKey;
    };
    if let Some(left) = seen.retry_left {
        return Step::WaitForRetry(left);
    }
    match key {
        Key::Absent if acme.disable_account_key_generation == Some(true) => Step::MissingKey,
        Key::Absent if acme.external_account_binding.is_some() => Step::RegisterBound,
        Key::Absent => Step::GenerateKey,
        Key::Pem(_) => Step::ParseKey,
        Key::Rsa(_) => Step::RollOver,
        Key::Usable { .. } => Step::Register,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ClusterIssuer;
    use serde_json::json;

    fn config(acme: serde_json::Value) -> IssuerConfig {
        let issuer: ClusterIssuer = serde_json::from_value(json!({
            "apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
            "metadata": {"name": "le"}, "spec": acme}))
        .expect("issuer");
        issuer.spec.config
    }

    fn acme(extra: serde_json::Value) -> IssuerConfig {
        let mut spec = json!({"acme": {"server": "https://ca/dir",
            "privateKeySecretRef": {"name": "account"},
            "solvers": [{"http01": {"ingress": {}}}]}});
        if let (Some(acme), Some(extra)) = (spec["acme"].as_object_mut(), extra.as_object()) {
            acme.extend(extra.clone());
        }
        config(spec)
    }

    fn with(key: Key) -> Seen {
        Seen {
            key: Some(key),
            ..Seen::default()
        }
    }

    #[test]
    fn an_issuer_certwright_does_not_serve_is_said_so_before_any_read() {
        let ca = config(json!({"ca": {"secretName": "ca"}}));
        assert!(matches!(
            next_step(&ca, &Seen::default()),
            Step::Unsupported {
                reason: "UnsupportedIssuerType",
                ..
            }
        ));
        let no_solvers = config(json!({"acme": {"server": "https://ca/dir",
            "privateKeySecretRef": {"name": "account"}}}));
        assert!(matches!(
            next_step(&no_solvers, &with(Key::Absent)),
            Step::Unsupported {
                reason: "NoSolvers",
                ..
            }
        ));
    }

    #[test]
    fn the_key_is_read_first_and_a_run_of_failures_waits() {
        let config = acme(json!({}));
        assert_eq!(next_step(&config, &Seen::default()), Step::ReadKey);
        let waiting = Seen {
            key: Some(Key::Pem(b"k".to_vec())),
            retry_left: Some(Duration::from_secs(7)),
        };
        assert_eq!(
            next_step(&config, &waiting),
            Step::WaitForRetry(Duration::from_secs(7))
        );
    }

    #[test]
    fn a_missing_key_is_generated_bound_or_said_missing() {
        assert_eq!(
            next_step(&acme(json!({})), &with(Key::Absent)),
            Step::GenerateKey
        );
        assert_eq!(
            next_step(
                &acme(json!({"disableAccountKeyGeneration": true})),
                &with(Key::Absent)
            ),
            Step::MissingKey
        );
        let eab = acme(json!({"externalAccountBinding": {"keyID": "kid",
            "keySecretRef": {"name": "eab", "key": "secret"}}}));
        assert_eq!(next_step(&eab, &with(Key::Absent)), Step::RegisterBound);
        assert_eq!(
            next_step(
                &acme(json!({"disableAccountKeyGeneration": true})),
                &with(Key::Pem(b"k".to_vec()))
            ),
            Step::ParseKey,
            "a key that is there is used"
        );
    }

    #[test]
    fn a_key_is_parsed_rolled_over_from_rsa_then_registered() {
        let config = acme(json!({}));
        assert_eq!(
            next_step(&config, &with(Key::Pem(b"k".to_vec()))),
            Step::ParseKey
        );
        assert_eq!(
            next_step(&config, &with(Key::Rsa(b"k".to_vec()))),
            Step::RollOver
        );
        let usable = Key::Usable {
            pem: b"k".to_vec(),
            pkcs8: b"d".to_vec(),
        };
        assert_eq!(next_step(&config, &with(usable)), Step::Register);
    }
}
