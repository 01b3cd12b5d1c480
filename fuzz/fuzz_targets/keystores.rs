//! The keystore encoders: any key bytes, chain and password encode in
//! every PKCS#12 profile and as JKS, or fail cleanly.
#![no_main]

use certwright::api::certificate::Pkcs12Profile;
use certwright::pki::keystore::{self, Contents, jks};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // key, password, then the certificates, split at 0xff bytes.
    let mut parts = data.split(|b| *b == 0xff);
    let key_pkcs8 = parts.next().unwrap_or_default().to_vec();
    let password = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let certs: Vec<Vec<u8>> = parts.map(<[u8]>::to_vec).collect();
    let (chain, cas) = certs.split_at(certs.len().min(2));
    let contents = Contents {
        key_pkcs8,
        chain: chain.to_vec(),
        cas: cas.to_vec(),
    };
    for profile in [
        None,
        Some(Pkcs12Profile::LegacyDes),
        Some(Pkcs12Profile::Modern2023),
        Some(Pkcs12Profile::Modern2026),
    ] {
        let _ = keystore::pkcs12_keystore(profile, &password, &contents);
        let _ = keystore::pkcs12_truststore(profile, &password, &contents.cas);
    }
    let _ = jks::keystore(&password, "certificate", &contents);
    let _ = jks::truststore(&password, &contents.cas);
});
