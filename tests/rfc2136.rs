//! RFC 2136 updates against a real BIND 9 on loopback: every TSIG
//! algorithm cert-manager offers, over UDP and TCP, two values on one name
//! (an apex and its wildcard), deleting exactly one, and the refusals a
//! user meets (a wrong secret, an unknown key, a zone that takes no
//! updates, a name outside the zone), each in words that say what to fix.

use std::net::{IpAddr, Ipv4Addr};

use certwright::dns::lookup;
use certwright::dns::tsig::{Algorithm, Key};
use certwright::dns::update::Updater;
use certwright_testcluster::bind::{Bind, BindOptions, TsigKey, Zone};

const SECRET: &str = "c2VjcmV0LWZvci10aGUtdGVzdHMtb2YtY2VydHdyaWdodA==";

fn secret() -> Vec<u8> {
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, SECRET).expect("base64")
}

/// BIND with `example.test` (updatable with every key) and
/// `locked.test` (no updates).
async fn bind() -> Bind {
    let algorithms = ["hmac-md5", "hmac-sha1", "hmac-sha256", "hmac-sha512"];
    let keys: Vec<TsigKey> = algorithms
        .iter()
        .map(|a| TsigKey {
            name: format!("{a}-key"),
            algorithm: a.to_string(),
            secret: SECRET.into(),
        })
        .collect();
    Bind::start(BindOptions {
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: None,
        netns: None,
        zones: vec![
            Zone {
                name: "example.test".into(),
                records: vec!["www IN A 10.96.0.80".into()],
                update_keys: keys.iter().map(|k| k.name.clone()).collect(),
            },
            Zone {
                name: "locked.test".into(),
                ..Default::default()
            },
        ],
        keys,
    })
    .await
    .expect("named starts")
}

fn updater(bind: &Bind, name: &str, algorithm: Algorithm, tcp: bool) -> Updater {
    Updater {
        server: bind.addr,
        key: Some(Key {
            name: name.into(),
            algorithm,
            secret: secret(),
        }),
        tcp,
    }
}

async fn values(bind: &Bind, name: &str) -> Vec<String> {
    let mut v = lookup::txt(bind.addr, name, false)
        .await
        .expect("TXT lookup")
        .values;
    v.sort();
    v
}

#[tokio::test]
async fn every_algorithm_adds_two_values_on_one_name_and_deletes_exactly_one() {
    certwright::install_crypto_provider();
    let bind = bind().await;
    let fqdn = "_acme-challenge.www.example.test";
    assert_eq!(
        lookup::find_zone(bind.addr, fqdn).await.expect("zone"),
        "example.test"
    );
    let cases = [
        ("hmac-md5-key", Algorithm::HmacMd5, false),
        ("hmac-sha1-key", Algorithm::HmacSha1, true),
        ("hmac-sha256-key", Algorithm::HmacSha256, false),
        ("hmac-sha512-key", Algorithm::HmacSha512, true),
    ];
    for (name, algorithm, tcp) in cases {
        let up = updater(&bind, name, algorithm, tcp);
        let (apex, wildcard) = (format!("apex-{name}"), format!("wildcard-{name}"));
        up.add_txt("example.test", fqdn, &apex)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", bind.log()));
        // Presenting twice is no change.
        up.add_txt("example.test", fqdn, &apex)
            .await
            .expect("again");
        up.add_txt("example.test", fqdn, &wildcard)
            .await
            .expect("second value");
        assert_eq!(
            values(&bind, fqdn).await,
            [apex.clone(), wildcard.clone()],
            "{name}"
        );
        up.delete_txt("example.test", fqdn, &apex)
            .await
            .expect("delete one");
        assert_eq!(
            values(&bind, fqdn).await,
            vec![wildcard.clone()],
            "{name}: the other value stays"
        );
        up.delete_txt("example.test", fqdn, &wildcard)
            .await
            .expect("delete the other");
        // Deleting what is not there is no change.
        up.delete_txt("example.test", fqdn, &wildcard)
            .await
            .expect("delete again");
        assert!(values(&bind, fqdn).await.is_empty(), "{name}: nothing left");
    }
}

#[tokio::test]
async fn refusals_name_their_cause() {
    certwright::install_crypto_provider();
    let bind = bind().await;
    let fqdn = "_acme-challenge.example.test";
    let wrong = Updater {
        key: Some(Key {
            secret: b"not the secret".to_vec(),
            ..updater(&bind, "hmac-sha256-key", Algorithm::HmacSha256, false)
                .key
                .unwrap()
        }),
        ..updater(&bind, "hmac-sha256-key", Algorithm::HmacSha256, false)
    };
    let why = wrong.add_txt("example.test", fqdn, "v").await.unwrap_err();
    assert!(
        why.contains("BADSIG") && why.contains("hmac-sha256-key"),
        "{why}"
    );
    let unknown = updater(&bind, "nobody-key", Algorithm::HmacSha256, false);
    let why = unknown
        .add_txt("example.test", fqdn, "v")
        .await
        .unwrap_err();
    assert!(
        why.contains("BADKEY") && why.contains("nobody-key"),
        "{why}"
    );
    // The right key under another algorithm is another key to BIND.
    let mismatched = updater(&bind, "hmac-md5-key", Algorithm::HmacSha512, false);
    let why = mismatched
        .add_txt("example.test", fqdn, "v")
        .await
        .unwrap_err();
    assert!(why.contains("BADKEY"), "{why}");
    let locked = updater(&bind, "hmac-md5-key", Algorithm::HmacMd5, false);
    let why = locked
        .add_txt("locked.test", "_acme-challenge.locked.test", "v")
        .await
        .unwrap_err();
    assert!(
        why.contains("refused the update of zone locked.test") && why.contains("allow-update"),
        "{why}"
    );
    let unsigned = Updater {
        key: None,
        ..locked.clone()
    };
    let why = unsigned
        .add_txt("example.test", fqdn, "v")
        .await
        .unwrap_err();
    assert!(why.contains("without a TSIG key"), "{why}");
    let outside = locked
        .add_txt("example.test", "_acme-challenge.other.test", "v")
        .await
        .unwrap_err();
    assert!(outside.contains("not in zone example.test"), "{outside}");
    assert!(values(&bind, fqdn).await.is_empty(), "nothing was written");
}
