//! The subject of a CSR as DER, built as cert-manager (Go's crypto/x509)
//! builds it: from `spec.subject` and `spec.commonName`, every value of
//! every attribute kept, or from `spec.literalSubject`, an RFC 4514 string
//! whose order and multi-valued RDNs are kept.

use super::der;
use crate::api::CertificateSpec;

/// An attribute type and its value.
pub type Attribute = (Vec<u64>, String);
/// A relative distinguished name: one or more attributes.
pub type Rdn = Vec<Attribute>;

const C: [u64; 4] = [2, 5, 4, 6];
const ST: [u64; 4] = [2, 5, 4, 8];
const L: [u64; 4] = [2, 5, 4, 7];
const STREET: [u64; 4] = [2, 5, 4, 9];
const POSTAL_CODE: [u64; 4] = [2, 5, 4, 17];
const O: [u64; 4] = [2, 5, 4, 10];
const OU: [u64; 4] = [2, 5, 4, 11];
const CN: [u64; 4] = [2, 5, 4, 3];
const SERIAL_NUMBER: [u64; 4] = [2, 5, 4, 5];

/// The names cert-manager accepts in a literal subject (matched here
/// regardless of case); any other type must be a dotted OID.
const NAMES: [(&str, &[u64]); 10] = [
    ("C", &C),
    ("O", &O),
    ("OU", &OU),
    ("CN", &CN),
    ("SERIALNUMBER", &SERIAL_NUMBER),
    ("L", &L),
    ("ST", &ST),
    ("STREET", &STREET),
    ("DC", &[0, 9, 2342, 19_200_300, 100, 1, 25]),
    ("UID", &[0, 9, 2342, 19_200_300, 100, 1, 1]),
];

/// The RDNs of the spec's subject, in DER order (the first is the most
/// general: the reverse of an RFC 4514 string).
pub fn rdns(spec: &CertificateSpec) -> Result<Vec<Rdn>, String> {
    if let Some(literal) = spec.literal_subject.as_deref().filter(|s| !s.is_empty()) {
        return parse_literal(literal);
    }
    let subject = spec.subject.clone().unwrap_or_default();
    let cn: Option<Vec<String>> = spec.common_name.clone().map(|c| vec![c]);
    let serial: Option<Vec<String>> = subject.serial_number.clone().map(|s| vec![s]);
    // Go's pkix.Name.ToRDNSequence: this order, all values of a type in one RDN.
    let fields: [(&Option<Vec<String>>, &[u64]); 9] = [
        (&subject.countries, &C),
        (&subject.provinces, &ST),
        (&subject.localities, &L),
        (&subject.street_addresses, &STREET),
        (&subject.postal_codes, &POSTAL_CODE),
        (&subject.organizations, &O),
        (&subject.organizational_units, &OU),
        (&cn, &CN),
        (&serial, &SERIAL_NUMBER),
    ];
    Ok(fields
        .into_iter()
        .filter_map(|(values, oid)| {
            let values = values.as_ref().filter(|v| !v.is_empty())?;
            Some(values.iter().map(|v| (oid.to_vec(), v.clone())).collect())
        })
        .collect())
}

/// The common name the spec asks for: `commonName`, or the first CN of
/// the literal subject.
pub fn common_name(spec: &CertificateSpec) -> Option<String> {
    if spec
        .literal_subject
        .as_deref()
        .is_some_and(|s| !s.is_empty())
    {
        let rdns = rdns(spec).ok()?;
        return rdns
            .into_iter()
            .flatten()
            .find(|(oid, _)| oid == &CN)
            .map(|(_, v)| v);
    }
    spec.common_name.clone()
}

/// The DER Name of `rdns`. Each value is a PrintableString when it can be
/// one, else a UTF8String; the members of a multi-valued RDN are sorted by
/// their encoding, as DER wants a SET OF.
pub fn encode(rdns: &[Rdn]) -> Vec<u8> {
    let sets: Vec<Vec<u8>> = rdns
        .iter()
        .map(|rdn| {
            let mut members: Vec<Vec<u8>> = rdn
                .iter()
                .map(|(oid, value)| der::seq(&[&der::oid(oid), &string(value)]))
                .collect();
            members.sort();
            let refs: Vec<&[u8]> = members.iter().map(Vec::as_slice).collect();
            der::set(&refs)
        })
        .collect();
    let refs: Vec<&[u8]> = sets.iter().map(Vec::as_slice).collect();
    der::seq(&refs)
}

fn string(value: &str) -> Vec<u8> {
    // Go's encoding/asn1 rule for a plain string (it refuses '*' and '&').
    let printable = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b));
    der::write(if printable { 0x13 } else { 0x0c }, value.as_bytes())
}

/// Parses an RFC 4514 string (`CN=a,O=b+OU=c`) into RDNs in DER order.
pub fn parse_literal(text: &str) -> Result<Vec<Rdn>, String> {
    let mut out = Vec::new();
    for rdn in split(text, b",;")? {
        let mut attributes = Vec::new();
        for atv in split(&rdn, b"+")? {
            attributes.push(attribute(&atv)?);
        }
        out.push(attributes);
    }
    out.reverse();
    Ok(out)
}

/// Splits at unescaped separators, keeping escapes for the next step.
fn split(text: &str, separators: &[u8]) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let next = chars
                .next()
                .ok_or_else(|| format!("{text:?} ends in a lone backslash"))?;
            current.push(c);
            current.push(next);
        } else if c.is_ascii() && separators.contains(&(c as u8)) {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    if parts.iter().any(|p| p.trim().is_empty()) {
        return Err(format!("{text:?} has an empty attribute"));
    }
    Ok(parts)
}

fn attribute(atv: &str) -> Result<Attribute, String> {
    let (ty, value) = atv
        .split_once('=')
        .ok_or_else(|| format!("{:?} is not TYPE=value", atv.trim()))?;
    let ty = ty.trim();
    let oid = NAMES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(ty))
        .map(|(_, oid)| oid.to_vec())
        .or_else(|| dotted(ty))
        .ok_or_else(|| {
            format!(
                "{ty:?} is not an attribute type (use C, O, OU, CN, SERIALNUMBER, L, ST, STREET, DC, UID or a dotted OID)"
            )
        })?;
    Ok((oid, value_of(value.trim_start())?))
}

fn dotted(text: &str) -> Option<Vec<u64>> {
    let arcs: Vec<u64> = text
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    (arcs.len() >= 2 && arcs[0] <= 2).then_some(arcs)
}

/// An attribute value: `#` and hex of a BER string, or text with `\`
/// escapes (a special character or two hex digits); unescaped trailing
/// spaces dropped.
fn value_of(text: &str) -> Result<String, String> {
    if let Some(hex) = text.strip_prefix('#') {
        let bytes = unhex(hex.trim_end()).ok_or_else(|| format!("#{hex} is not hex"))?;
        let (tlv, rest) = der::read(&bytes).ok_or_else(|| format!("#{hex} is not BER"))?;
        // UTF8String, PrintableString, T61String, IA5String.
        if !rest.is_empty() || ![0x0c, 0x13, 0x14, 0x16].contains(&tlv.tag) {
            return Err(format!("#{hex} is not one string"));
        }
        return String::from_utf8(tlv.content.to_vec()).map_err(|e| e.to_string());
    }
    let mut bytes = Vec::new();
    let mut kept = 0; // length up to the last escaped or non-space byte
    let raw = text.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' {
            let hex = raw
                .get(i + 1..i + 3)
                .and_then(|h| unhex(std::str::from_utf8(h).ok()?));
            match hex {
                Some(b) => {
                    bytes.extend(b);
                    i += 3;
                }
                None => {
                    let next = *raw.get(i + 1).ok_or("a lone backslash")?;
                    bytes.push(next);
                    i += 2;
                }
            }
            kept = bytes.len();
        } else {
            bytes.push(raw[i]);
            if raw[i] != b' ' {
                kept = bytes.len();
            }
            i += 1;
        }
    }
    bytes.truncate(kept);
    String::from_utf8(bytes).map_err(|_| format!("{text:?} is not UTF-8 once unescaped"))
}

fn unhex(hex: &str) -> Option<Vec<u8>> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::certificate::X509Subject;

    fn names(rdns: &[Rdn]) -> Vec<Vec<String>> {
        rdns.iter()
            .map(|r| {
                r.iter()
                    .map(|(oid, v)| {
                        let name = NAMES
                            .iter()
                            .find(|(_, o)| *o == oid.as_slice())
                            .map(|(n, _)| n.to_string())
                            .unwrap_or_else(|| format!("{oid:?}"));
                        format!("{name}={v}")
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_literal_subject_keeps_order_multi_values_and_escapes() {
        let rdns = parse_literal(
            r"CN=app\, the first,OU=Web+OU=Edge , DC=corp;DC=example,1.2.840.113549.1.9.1=ops@example.com,uid= \ x\2Cy\20 ",
        )
        .expect("parses");
        assert_eq!(
            names(&rdns),
            [
                vec!["UID= x,y ".to_string()],
                vec!["[1, 2, 840, 113549, 1, 9, 1]=ops@example.com".to_string()],
                vec!["DC=example".to_string()],
                vec!["DC=corp".to_string()],
                vec!["OU=Web".to_string(), "OU=Edge".to_string()],
                vec!["CN=app, the first".to_string()],
            ]
        );
        let hex = parse_literal("CN=#0c0461626364").expect("BER value");
        assert_eq!(names(&hex), [vec!["CN=abcd".to_string()]]);
    }

    #[test]
    fn bad_literal_subjects_say_what_is_wrong() {
        for (text, says) in [
            ("CN=a,,O=b", "empty attribute"),
            ("CN", "TYPE=value"),
            ("EMAIL=a@b", "not an attribute type"),
            ("CN=a\\", "lone backslash"),
            ("CN=#zz", "not hex"),
            ("CN=#0201ff", "not one string"),
        ] {
            let err = parse_literal(text).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn the_structured_subject_is_encoded_as_go_encodes_it() {
        let spec = CertificateSpec {
            common_name: Some("a.example.com".into()),
            subject: Some(X509Subject {
                organizations: Some(vec!["Zeta".into(), "Alpha & Co".into()]),
                countries: Some(vec!["GB".into()]),
                serial_number: Some("42".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let rdns = rdns(&spec).expect("rdns");
        assert_eq!(
            names(&rdns),
            [
                vec!["C=GB".to_string()],
                vec!["O=Zeta".to_string(), "O=Alpha & Co".to_string()],
                vec!["CN=a.example.com".to_string()],
                vec!["SERIALNUMBER=42".to_string()],
            ]
        );
        let der = encode(&rdns);
        // The same bytes Go's asn1.Marshal(pkix.Name{...}.ToRDNSequence()) gives:
        // PrintableString unless '&' (UTF8String), the O set sorted by encoding.
        let expected = der::seq(&[
            &der::set(&[&der::seq(&[&der::oid(&C), &der::write(0x13, b"GB")])]),
            &der::set(&[
                &der::seq(&[&der::oid(&O), &der::write(0x13, b"Zeta")]),
                &der::seq(&[&der::oid(&O), &der::write(0x0c, b"Alpha & Co")]),
            ]),
            &der::set(&[&der::seq(&[
                &der::oid(&CN),
                &der::write(0x13, b"a.example.com"),
            ])]),
            &der::set(&[&der::seq(&[
                &der::oid(&SERIAL_NUMBER),
                &der::write(0x13, b"42"),
            ])]),
        ]);
        assert_eq!(der, expected);
        assert_eq!(common_name(&spec).as_deref(), Some("a.example.com"));
        let literal = CertificateSpec {
            literal_subject: Some("O=x,CN=lit.example.com".into()),
            ..Default::default()
        };
        assert_eq!(common_name(&literal).as_deref(), Some("lit.example.com"));
    }
}
