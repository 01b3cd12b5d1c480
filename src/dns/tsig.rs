//! TSIG (RFC 8945): a shared-secret HMAC over a DNS message, as BIND and
//! cert-manager's RFC 2136 provider use it. HMAC-MD5 (cert-manager's
//! default), HMAC-SHA1, HMAC-SHA256 and HMAC-SHA512.

use super::wire::{self, CLASS_ANY, TYPE_TSIG};

/// A TSIG algorithm, by cert-manager's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    HmacMd5,
    HmacSha1,
    HmacSha256,
    HmacSha512,
}

impl Algorithm {
    /// cert-manager's `tsigAlgorithm` values (case-insensitive); empty is HMACMD5.
    pub fn from_name(name: &str) -> Result<Self, String> {
        match name.to_ascii_uppercase().as_str() {
            "" | "HMACMD5" => Ok(Self::HmacMd5),
            "HMACSHA1" => Ok(Self::HmacSha1),
            "HMACSHA256" => Ok(Self::HmacSha256),
            "HMACSHA512" => Ok(Self::HmacSha512),
            _ => Err(format!(
                "unknown tsigAlgorithm {name:?}: use HMACMD5, HMACSHA1, HMACSHA256 or HMACSHA512"
            )),
        }
    }

    /// The algorithm's name in the TSIG record.
    fn wire_name(self) -> &'static str {
        match self {
            Self::HmacMd5 => "hmac-md5.sig-alg.reg.int",
            Self::HmacSha1 => "hmac-sha1",
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha512 => "hmac-sha512",
        }
    }

    fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        use aws_lc_rs::hmac;
        let algorithm = match self {
            Self::HmacMd5 => return hmac_md5(key, data),
            Self::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::HmacSha256 => hmac::HMAC_SHA256,
            Self::HmacSha512 => hmac::HMAC_SHA512,
        };
        hmac::sign(&hmac::Key::new(algorithm, key), data)
            .as_ref()
            .to_vec()
    }
}

/// HMAC (RFC 2104) over MD5, which aws-lc-rs does not offer.
fn hmac_md5(key: &[u8], data: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..16].copy_from_slice(&md5::compute(key).0);
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let mut inner = md5::Context::new();
    inner.consume(pad(0x36));
    inner.consume(data);
    let mut outer = md5::Context::new();
    outer.consume(pad(0x5c));
    outer.consume(inner.finalize().0);
    outer.finalize().0.to_vec()
}

/// A TSIG key: its name, algorithm and secret.
#[derive(Clone)]
pub struct Key {
    pub name: String,
    pub algorithm: Algorithm,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Allowed clock difference, as BIND and miekg/dns default it.
const FUDGE: u16 = 300;

/// The TSIG variables after the key name (RFC 8945 §4.3.3).
fn variables(key: &Key, time: u64, error: u16, other: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = wire::encode_name(&key.name)?;
    out.extend_from_slice(&CLASS_ANY.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend(wire::encode_name(key.algorithm.wire_name())?);
    out.extend_from_slice(&time.to_be_bytes()[2..]);
    out.extend_from_slice(&FUDGE.to_be_bytes());
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&(other.len() as u16).to_be_bytes());
    out.extend_from_slice(other);
    Ok(out)
}

/// `message` signed with `key` at `time` (Unix seconds): the TSIG record
/// appended and counted. Returns the signed message and its MAC (to check
/// the answer's).
pub fn sign(message: &[u8], key: &Key, time: u64) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut digest = message.to_vec();
    digest.extend(variables(key, time, 0, &[])?);
    let mac = key.algorithm.mac(&key.secret, &digest);
    let mut rdata = wire::encode_name(key.algorithm.wire_name())?;
    rdata.extend_from_slice(&time.to_be_bytes()[2..]);
    rdata.extend_from_slice(&FUDGE.to_be_bytes());
    rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    rdata.extend_from_slice(&mac);
    rdata.extend_from_slice(&message[0..2]);
    rdata.extend_from_slice(&[0, 0, 0, 0]);
    let mut signed = message.to_vec();
    let arcount = wire::u16_at(message, 10)? + 1;
    signed[10..12].copy_from_slice(&arcount.to_be_bytes());
    signed.extend(wire::record(&key.name, TYPE_TSIG, CLASS_ANY, 0, &rdata)?);
    Ok((signed, mac))
}

/// The TSIG error of an answer (RFC 8945 §5.3), if it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsigError {
    BadSig,
    BadKey,
    BadTime,
    Other(u16),
}

impl std::fmt::Display for TsigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadSig => write!(
                f,
                "BADSIG: the signature does not verify (a wrong secret or algorithm)"
            ),
            Self::BadKey => write!(
                f,
                "BADKEY: the server does not know this key name and algorithm"
            ),
            Self::BadTime => write!(f, "BADTIME: the clocks differ by more than {FUDGE} s"),
            Self::Other(n) => write!(f, "TSIG error {n}"),
        }
    }
}

/// Checks the TSIG of `answer` to a request signed with `request_mac`:
/// Ok(()) when it verifies, Err(Some(error)) when the server reports a
/// TSIG error, Err(None) when the answer is unsigned or its MAC is wrong.
pub fn verify(
    answer: &wire::Message,
    key: &Key,
    request_mac: &[u8],
) -> Result<(), Option<TsigError>> {
    // TSIG is the last record of the additional section, or the answer is
    // not signed (fuzz/fuzz_targets/dns_wire.rs found one elsewhere).
    let Some((_, tsig)) = answer
        .records
        .last()
        .filter(|(s, r)| r.rtype == TYPE_TSIG && *s == wire::Section::Additional)
    else {
        return Err(None);
    };
    let raw = &answer.raw;
    let data = &tsig.data;
    let (_, after_alg) = wire::read_name(raw, tsig.data_at).map_err(|_| None)?;
    let at = after_alg - tsig.data_at;
    let field = |offset: usize, len: usize| data.get(at + offset..at + offset + len).ok_or(None);
    let time_bytes = field(0, 6)?;
    let mac_len = u16::from_be_bytes(field(8, 2)?.try_into().map_err(|_| None)?) as usize;
    let mac = field(10, mac_len)?;
    let rest = at + 10 + mac_len;
    let error = u16::from_be_bytes(field(10 + mac_len + 2, 2)?.try_into().map_err(|_| None)?);
    let other_len = wire::u16_at(data, rest + 4).map_err(|_| None)? as usize;
    let other = data.get(rest + 6..rest + 6 + other_len).ok_or(None)?;
    match error {
        0 => {}
        16 => return Err(Some(TsigError::BadSig)),
        17 => return Err(Some(TsigError::BadKey)),
        18 => return Err(Some(TsigError::BadTime)),
        n => return Err(Some(TsigError::Other(n))),
    }
    // The answer as it was before the TSIG record: counted one less, and
    // its original id.
    let tsig_start = {
        let mut at = answer.additional_at;
        let additional = answer
            .records
            .iter()
            .filter(|(s, _)| *s == wire::Section::Additional)
            .count();
        for _ in 1..additional {
            let (_, next) = wire::read_name(raw, at).map_err(|_| None)?;
            at = next + 10 + wire::u16_at(raw, next + 8).map_err(|_| None)? as usize;
        }
        at
    };
    let mut unsigned = raw.get(..tsig_start).ok_or(None)?.to_vec();
    let arcount = wire::u16_at(raw, 10)
        .map_err(|_| None)?
        .checked_sub(1)
        .ok_or(None)?;
    unsigned[10..12].copy_from_slice(&arcount.to_be_bytes());
    unsigned[0..2].copy_from_slice(field(10 + mac_len, 2)?);
    let mut time = [0u8; 8];
    time[2..].copy_from_slice(time_bytes);
    let mut digest = (request_mac.len() as u16).to_be_bytes().to_vec();
    digest.extend_from_slice(request_mac);
    digest.extend(unsigned);
    digest.extend(variables(key, u64::from_be_bytes(time), error, other).map_err(|_| None)?);
    let expected = key.algorithm.mac(&key.secret, &digest);
    if expected.as_slice() == mac {
        Ok(())
    } else {
        Err(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_md5_matches_rfc_2202() {
        // RFC 2202 test cases 1 and 2.
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(&hmac_md5(&[0x0b; 16], b"Hi There")),
            "9294727a3638bb1c13f48ef8158bfc9d"
        );
        assert_eq!(
            hex(&hmac_md5(b"Jefe", b"what do ya want for nothing?")),
            "750c783e6ab0b503eaa86e310a5db738"
        );
        // A key longer than the block is hashed first (test case 6).
        assert_eq!(
            hex(&hmac_md5(
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd"
        );
    }

    #[test]
    fn algorithm_names_are_cert_managers() {
        assert_eq!(Algorithm::from_name("").unwrap(), Algorithm::HmacMd5);
        assert_eq!(
            Algorithm::from_name("hmacsha256").unwrap(),
            Algorithm::HmacSha256
        );
        assert!(
            Algorithm::from_name("HMACSHA384")
                .unwrap_err()
                .contains("HMACSHA512")
        );
    }

    #[test]
    fn a_signed_message_counts_its_tsig_and_verifies_as_an_answer_would() {
        let key = Key {
            name: "k".into(),
            algorithm: Algorithm::HmacSha256,
            secret: b"secret".to_vec(),
        };
        let query = wire::query(42, "example", wire::TYPE_SOA, false).unwrap();
        let (signed, mac) = sign(&query, &key, 1_700_000_000).unwrap();
        assert_eq!(wire::u16_at(&signed, 10).unwrap(), 1);
        let parsed = wire::Message::parse(&signed).unwrap();
        assert_eq!(parsed.records.last().unwrap().1.rtype, TYPE_TSIG);
        // An "answer" signed over the request MAC verifies; another key does not.
        let mut answer = query.clone();
        answer[2] |= 0x80;
        let mut digest = (mac.len() as u16).to_be_bytes().to_vec();
        digest.extend_from_slice(&mac);
        let (answer_signed, _) = {
            // sign() signs without a request MAC; sign the answer by hand.
            let mut data = digest.clone();
            data.extend_from_slice(&answer);
            data.extend(variables(&key, 1_700_000_001, 0, &[]).unwrap());
            let answer_mac = key.algorithm.mac(&key.secret, &data);
            let mut rdata = wire::encode_name(key.algorithm.wire_name()).unwrap();
            rdata.extend_from_slice(&1_700_000_001u64.to_be_bytes()[2..]);
            rdata.extend_from_slice(&FUDGE.to_be_bytes());
            rdata.extend_from_slice(&(answer_mac.len() as u16).to_be_bytes());
            rdata.extend_from_slice(&answer_mac);
            rdata.extend_from_slice(&[0, 42, 0, 0, 0, 0]);
            let mut out = answer.clone();
            out[10..12].copy_from_slice(&1u16.to_be_bytes());
            out.extend(wire::record("k", TYPE_TSIG, CLASS_ANY, 0, &rdata).unwrap());
            (out, answer_mac)
        };
        let parsed = wire::Message::parse(&answer_signed).unwrap();
        assert_eq!(verify(&parsed, &key, &mac), Ok(()));
        let other = Key {
            secret: b"other".to_vec(),
            ..key.clone()
        };
        assert_eq!(verify(&parsed, &other, &mac), Err(None));
        assert_eq!(
            verify(&wire::Message::parse(&answer).unwrap(), &key, &mac),
            Err(None)
        );
        // The same TSIG record counted in the answer section, none in the
        // additional one: unsigned, not an overflow (found by
        // fuzz/fuzz_targets/dns_wire.rs).
        let mut misplaced = answer_signed.clone();
        misplaced[6..8].copy_from_slice(&1u16.to_be_bytes());
        misplaced[10..12].copy_from_slice(&0u16.to_be_bytes());
        let parsed = wire::Message::parse(&misplaced).unwrap();
        assert_eq!(parsed.records.last().unwrap().1.rtype, TYPE_TSIG);
        assert_eq!(verify(&parsed, &key, &mac), Err(None));
    }
}
