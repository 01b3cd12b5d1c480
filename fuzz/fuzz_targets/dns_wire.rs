//! A DNS server's answer: any message parses or is refused, every record
//! of a parsed one can be read, and its TSIG checked against a key.
#![no_main]

use certwright::dns::tsig::{self, Algorithm, Key};
use certwright::dns::wire::{Message, Section};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::parse(data) else {
        return;
    };
    let _ = (message.rcode(), message.truncated(), message.authoritative());
    for (_, record) in &message.records {
        let _ = message.name_in(record);
        let _ = Message::txt(record);
        let _ = message.addresses(Section::Answer, &record.name);
    }
    for algorithm in [Algorithm::HmacMd5, Algorithm::HmacSha256] {
        let key = Key {
            name: "certwright.".into(),
            algorithm,
            secret: b"a key of the test".to_vec(),
        };
        let _ = tsig::verify(&message, &key, &[0; 32]);
    }
});
