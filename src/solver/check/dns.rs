//! A stub resolver for the self-check: A and AAAA queries over UDP to the
//! nameservers the user configured (the CA resolves with its own, which
//! may differ from the cluster's), CNAMEs in the answer followed. Only
//! what the self-check needs; the system resolver is used when no
//! nameserver is configured.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;

/// Why a name has no address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// NXDOMAIN: the name does not exist.
    NoSuchName,
    /// The name exists but has neither A nor AAAA records.
    NoAddress,
    /// No nameserver answered usefully (what each said).
    Failed(String),
}

/// A query for `name` of `qtype` with id `id`.
pub fn query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(32 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    // Recursion desired; one question.
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{name:?} is not a valid DNS name"));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    Ok(out)
}

/// Reads a (possibly compressed) name at `at`; returns it and the offset
/// after it in the original position.
fn read_name(msg: &[u8], mut at: usize) -> Result<(String, usize), String> {
    let mut labels = Vec::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(at).ok_or("truncated name")? as usize;
        if len & 0xc0 == 0xc0 {
            let low = *msg.get(at + 1).ok_or("truncated pointer")? as usize;
            end.get_or_insert(at + 2);
            at = ((len & 0x3f) << 8) | low;
            continue;
        }
        if len == 0 {
            let name = labels.join(".");
            return Ok((name, end.unwrap_or(at + 1)));
        }
        let label = msg.get(at + 1..at + 1 + len).ok_or("truncated label")?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += 1 + len;
    }
    Err("name compression loop".into())
}

fn u16_at(msg: &[u8], at: usize) -> Result<u16, String> {
    msg.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| "truncated message".into())
}

/// The addresses a response gives for `name` (CNAMEs in the answer
/// section followed), or why there are none.
pub fn parse(msg: &[u8], id: u16, name: &str) -> Result<Vec<IpAddr>, Lookup> {
    let bad = |why: String| Lookup::Failed(format!("bad DNS response: {why}"));
    if msg.len() < 12 || u16_at(msg, 0).map_err(bad)? != id {
        return Err(bad("not an answer to our query".into()));
    }
    let rcode = msg[3] & 0x0f;
    match rcode {
        0 => {}
        3 => return Err(Lookup::NoSuchName),
        2 => return Err(Lookup::Failed("the nameserver answered SERVFAIL".into())),
        5 => return Err(Lookup::Failed("the nameserver REFUSED the query".into())),
        n => return Err(Lookup::Failed(format!("the nameserver answered rcode {n}"))),
    }
    let questions = u16_at(msg, 4).map_err(bad)?;
    let answers = u16_at(msg, 6).map_err(bad)?;
    let mut at = 12;
    for _ in 0..questions {
        at = read_name(msg, at).map_err(bad)?.1 + 4;
    }
    let mut wanted = name.trim_end_matches('.').to_ascii_lowercase();
    let mut records = Vec::new();
    for _ in 0..answers {
        let (owner, next) = read_name(msg, at).map_err(bad)?;
        let rtype = u16_at(msg, next).map_err(bad)?;
        let len = u16_at(msg, next + 8).map_err(bad)? as usize;
        let data = next + 10;
        let rdata = msg
            .get(data..data + len)
            .ok_or_else(|| bad("truncated".into()))?;
        records.push((owner, rtype, data, rdata.to_vec()));
        at = data + len;
    }
    // Follow the CNAME chain (in answer order, as resolvers write it).
    for _ in 0..16 {
        let Some((_, _, data, _)) = records
            .iter()
            .find(|(owner, rtype, _, _)| *rtype == TYPE_CNAME && *owner == wanted)
        else {
            break;
        };
        wanted = read_name(msg, *data).map_err(bad)?.0;
    }
    let out: Vec<IpAddr> = records
        .iter()
        .filter(|(owner, _, _, _)| *owner == wanted)
        .filter_map(|(_, rtype, _, rdata)| match (*rtype, rdata.len()) {
            (TYPE_A, 4) => Some(IpAddr::V4(Ipv4Addr::new(
                rdata[0], rdata[1], rdata[2], rdata[3],
            ))),
            (TYPE_AAAA, 16) => {
                let octets: [u8; 16] = rdata.as_slice().try_into().ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(octets)))
            }
            _ => None,
        })
        .collect();
    Ok(out)
}

async fn ask(server: SocketAddr, name: &str, qtype: u16) -> Result<Vec<IpAddr>, Lookup> {
    let id = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ u32::from(qtype)) as u16;
    let message = query(id, name, qtype).map_err(Lookup::Failed)?;
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let failed = |e: std::io::Error| Lookup::Failed(format!("asking {server}: {e}"));
    let socket = tokio::net::UdpSocket::bind(bind).await.map_err(failed)?;
    socket.connect(server).await.map_err(failed)?;
    let mut buf = vec![0u8; 4096];
    for _ in 0..2 {
        socket.send(&message).await.map_err(failed)?;
        match tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf)).await {
            Ok(Ok(n)) => return parse(&buf[..n], id, name),
            Ok(Err(e)) => return Err(failed(e)),
            Err(_) => continue,
        }
    }
    Err(Lookup::Failed(format!(
        "{server} did not answer within 4 s"
    )))
}

/// The A and AAAA addresses of `name` from the first of `servers` that
/// answers (IPv6 first, as Let's Encrypt tries them).
pub async fn resolve(servers: &[SocketAddr], name: &str) -> Result<Vec<IpAddr>, Lookup> {
    let mut last = Lookup::Failed("no nameserver is configured".into());
    for server in servers {
        let (aaaa, a) = tokio::join!(ask(*server, name, TYPE_AAAA), ask(*server, name, TYPE_A));
        match (aaaa, a) {
            (Ok(mut v6), Ok(v4)) => {
                v6.extend(v4);
                return if v6.is_empty() {
                    Err(Lookup::NoAddress)
                } else {
                    Ok(v6)
                };
            }
            (Err(Lookup::NoSuchName), _) | (_, Err(Lookup::NoSuchName)) => {
                return Err(Lookup::NoSuchName);
            }
            (Ok(v6), Err(_)) if !v6.is_empty() => return Ok(v6),
            (Err(_), Ok(v4)) if !v4.is_empty() => return Ok(v4),
            (Err(e), _) | (_, Err(e)) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to `question` with `records` (owner offset 12, i.e. the
    /// question's name, unless a CNAME target is given).
    fn answer(question: &[u8], rcode: u8, records: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut out = question.to_vec();
        out[2] = 0x81;
        out[3] = 0x80 | rcode;
        out[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for (rtype, rdata) in records {
            out.extend_from_slice(&[0xc0, 12]);
            out.extend_from_slice(&rtype.to_be_bytes());
            out.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            out.extend_from_slice(rdata);
        }
        out
    }

    #[test]
    fn queries_encode_names_and_reject_bad_labels() {
        let q = query(7, "a.example.", TYPE_A).expect("query");
        assert_eq!(&q[..2], &[0, 7]);
        assert_eq!(&q[12..], b"\x01a\x07example\x00\x00\x01\x00\x01");
        assert!(query(1, "a..example", TYPE_A).is_err());
    }

    #[test]
    fn answers_give_addresses_and_nxdomain_is_no_such_name() {
        let q = query(9, "app.example", TYPE_A).expect("query");
        let ok = answer(&q, 0, &[(TYPE_A, vec![10, 0, 0, 1])]);
        assert_eq!(
            parse(&ok, 9, "app.example"),
            Ok(vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))])
        );
        assert_eq!(
            parse(&answer(&q, 3, &[]), 9, "app.example"),
            Err(Lookup::NoSuchName)
        );
        assert!(matches!(
            parse(&answer(&q, 2, &[]), 9, "app.example"),
            Err(Lookup::Failed(_))
        ));
        assert!(
            matches!(parse(&ok, 10, "app.example"), Err(Lookup::Failed(_))),
            "wrong id"
        );
    }

    #[test]
    fn cnames_in_the_answer_are_followed() {
        let q = query(3, "www.example", TYPE_A).expect("query");
        // www.example CNAME lb.example (written out), lb.example A 10.0.0.9.
        let mut msg = answer(&q, 0, &[(TYPE_CNAME, b"\x02lb\x07example\x00".to_vec())]);
        let target_at = msg.len() - 12;
        msg[6..8].copy_from_slice(&2u16.to_be_bytes());
        msg.extend_from_slice(&[0xc0, target_at as u8]);
        msg.extend_from_slice(&TYPE_A.to_be_bytes());
        msg.extend_from_slice(&[0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 9]);
        assert_eq!(
            parse(&msg, 3, "www.example"),
            Ok(vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9))])
        );
    }
}
