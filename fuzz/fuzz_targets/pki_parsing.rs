//! What the controller reads back from Secrets and requests: `tls.crt`,
//! `ca.crt`, `tls.key`, account keys, EAB keys, CSRs and raw DER. Any bytes
//! are parsed or refused, never a crash.
#![no_main]

use certwright::pki;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pki::cert::parse_chain(data);
    let _ = pki::cert::ip_san(data);
    if let Ok(key) = pki::keys::PrivateKey::from_pem(data) {
        let _ = key.public_key_info();
        let _ = key.key_pair();
    }
    let _ = certwright::acme::account::parse_key(data, "ns/account");
    let _ = certwright::acme::account::decode_eab_key(data, "ns/eab");
    if let Ok(csr) = pki::csr::parse(data) {
        let _ = pki::csr::differences(&csr, &csr);
    }
    let mut rest = data;
    while let Some((tlv, after)) = pki::der::read(rest) {
        let _ = pki::der::children(tlv.content);
        if after.len() >= rest.len() {
            panic!("read made no progress");
        }
        rest = after;
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pki::keystore::certificates(text);
    }
});
