//! Just enough DER to move private keys between PKCS#8 and the PKCS#1 (RSA)
//! and SEC1 (EC) encodings cert-manager writes, and to build keystores:
//! read and write one TLV, and the few constructions they are made of.

pub const SEQUENCE: u8 = 0x30;
pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const NULL: u8 = 0x05;
pub const OID: u8 = 0x06;
pub const BMP_STRING: u8 = 0x1e;
pub const SET: u8 = 0x31;
/// `[0]` and `[1]` constructed context tags (ECPrivateKey parameters, publicKey).
pub const CONTEXT_0: u8 = 0xa0;
pub const CONTEXT_1: u8 = 0xa1;

/// One TLV: its tag, its content and the whole encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub raw: &'a [u8],
}

/// Reads the TLV at the start of `input`; returns it and what follows.
pub fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = input.get(2..2 + n)?;
        (
            bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize),
            2 + n,
        )
    };
    let end = header.checked_add(len)?;
    let raw = input.get(..end)?;
    Some((
        Tlv {
            tag,
            content: &raw[header..],
            raw,
        },
        &input[end..],
    ))
}

/// All TLVs of a constructed value's content.
pub fn children(content: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        let (tlv, next) = read(rest)?;
        out.push(tlv);
        rest = next;
    }
    Some(out)
}

/// Encodes one TLV.
pub fn write(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A SEQUENCE of already encoded values.
pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
    write(SEQUENCE, &parts.concat())
}

/// A SET of already encoded values (in the order given: every set built
/// here has one member).
pub fn set(parts: &[&[u8]]) -> Vec<u8> {
    write(SET, &parts.concat())
}

/// `[n] EXPLICIT` around an encoded value.
pub fn explicit(n: u8, inner: &[u8]) -> Vec<u8> {
    write(CONTEXT_0 + n, inner)
}

/// A non-negative INTEGER.
pub fn integer(value: u64) -> Vec<u8> {
    let mut bytes: Vec<u8> = value
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    if bytes.first().is_none_or(|b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    write(INTEGER, &bytes)
}

/// An OBJECT IDENTIFIER from its arcs.
pub fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut content = Vec::new();
    let first = arcs.first().copied().unwrap_or(0) * 40 + arcs.get(1).copied().unwrap_or(0);
    for arc in std::iter::once(first).chain(arcs.iter().skip(2).copied()) {
        let mut chunk = vec![(arc & 0x7f) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            chunk.push(0x80 | (rest & 0x7f) as u8);
            rest >>= 7;
        }
        content.extend(chunk.into_iter().rev());
    }
    write(OID, &content)
}

/// An AlgorithmIdentifier: the algorithm and its encoded parameters
/// (NULL when it takes none).
pub fn algorithm(arcs: &[u64], parameters: Option<&[u8]>) -> Vec<u8> {
    seq(&[&oid(arcs), parameters.unwrap_or(&[NULL, 0])])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_lengths_round_trip() {
        for len in [0usize, 5, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; len];
            let encoded = write(OCTET_STRING, &content);
            let (tlv, rest) = read(&encoded).expect("reads back");
            assert_eq!(
                (tlv.tag, tlv.content.len(), rest.len()),
                (OCTET_STRING, len, 0)
            );
        }
        assert_eq!(read(&[0x30, 0x05, 1]), None, "truncated");
        assert_eq!(read(&[0x30, 0x80]), None, "indefinite length is not DER");
    }

    #[test]
    fn oids_and_integers_encode_as_der() {
        // rsaEncryption and Oracle's trusted key usage (a long arc).
        assert_eq!(
            oid(&[1, 2, 840, 113549, 1, 1, 1]),
            [6, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 1]
        );
        assert_eq!(
            oid(&[2, 16, 840, 1, 113894, 746875, 1, 1]),
            [
                6, 12, 0x60, 0x86, 0x48, 1, 0x86, 0xf9, 0x66, 0xad, 0xca, 0x7b, 1, 1
            ]
        );
        assert_eq!(integer(0), [2, 1, 0]);
        assert_eq!(integer(3), [2, 1, 3]);
        assert_eq!(integer(2048), [2, 2, 8, 0]);
        assert_eq!(
            integer(128),
            [2, 2, 0, 0x80],
            "a leading zero keeps it positive"
        );
    }
}
