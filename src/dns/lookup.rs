//! Lookups against named nameservers: the zone a name is in (its SOA),
//! and the TXT values or addresses of a name.

use std::net::{IpAddr, SocketAddr};

use super::wire::{self, Message, Section, TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_SOA, TYPE_TXT};

/// Asks `server` for `name`'s `qtype` records.
pub async fn ask(
    server: SocketAddr,
    name: &str,
    qtype: u16,
    recursion: bool,
) -> Result<Message, String> {
    let id = wire::fresh_id();
    let query = wire::query(id, name, qtype, recursion)?;
    let raw = wire::exchange(server, &query, false).await?;
    Message::parse(&raw).map_err(|e| format!("{server} sent a malformed answer: {e}"))
}

/// The zone `fqdn` belongs to, as `server` says: the owner of the SOA in
/// its answer or authority section, walking up a label when it gives none.
pub async fn find_zone(server: SocketAddr, fqdn: &str) -> Result<String, String> {
    let fqdn = fqdn.trim_end_matches('.').to_ascii_lowercase();
    let mut candidate = fqdn.as_str();
    loop {
        let answer = ask(server, candidate, TYPE_SOA, true).await?;
        match answer.rcode() {
            0 | 3 => {}
            rcode => {
                return Err(format!(
                    "{server} answered {} when asked for the SOA of {candidate}",
                    wire::rcode_name(rcode)
                ));
            }
        }
        let soa = answer
            .of(Section::Answer, TYPE_SOA)
            .find(|r| r.name == candidate)
            .or_else(|| answer.of(Section::Authority, TYPE_SOA).next());
        if let Some(soa) = soa {
            return Ok(soa.name.clone());
        }
        match candidate.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => candidate = parent,
            _ => {
                return Err(format!(
                    "{server} knows no zone that {fqdn} is in (no SOA on any of its names)"
                ));
            }
        }
    }
}

/// What a TXT lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Txt {
    /// The name the values are on (after CNAMEs in the answer).
    pub name: String,
    pub values: Vec<String>,
}

/// The TXT values of `name` at `server` (CNAMEs in the answer followed).
pub async fn txt(server: SocketAddr, name: &str, recursion: bool) -> Result<Txt, String> {
    let answer = ask(server, name, TYPE_TXT, recursion).await?;
    match answer.rcode() {
        0 | 3 => {}
        rcode => {
            return Err(format!(
                "{server} answered {} for {name} TXT",
                wire::rcode_name(rcode)
            ));
        }
    }
    let owner = follow_cnames(&answer, name)?;
    let values = answer
        .of(Section::Answer, TYPE_TXT)
        .filter(|r| r.name == owner)
        .map(Message::txt)
        .collect();
    Ok(Txt {
        name: owner,
        values,
    })
}

/// The name at the end of the answer's CNAME chain from `name`.
pub fn follow_cnames(answer: &Message, name: &str) -> Result<String, String> {
    let mut owner = name.trim_end_matches('.').to_ascii_lowercase();
    for _ in 0..16 {
        let Some(cname) = answer
            .of(Section::Answer, TYPE_CNAME)
            .find(|r| r.name == owner)
        else {
            return Ok(owner);
        };
        owner = answer.name_in(cname)?;
    }
    Err(format!("the CNAMEs from {name} loop"))
}

/// Why a name has no address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoAddress {
    /// NXDOMAIN: the name does not exist.
    NoSuchName,
    /// The name exists but has neither A nor AAAA records.
    NoRecords,
    /// No nameserver answered usefully (what the last said).
    Failed(String),
}

async fn addresses(server: SocketAddr, name: &str, qtype: u16) -> Result<Vec<IpAddr>, NoAddress> {
    let answer = ask(server, name, qtype, true)
        .await
        .map_err(NoAddress::Failed)?;
    match answer.rcode() {
        0 => {}
        3 => return Err(NoAddress::NoSuchName),
        2 => return Err(NoAddress::Failed(format!("{server} answered SERVFAIL"))),
        5 => return Err(NoAddress::Failed(format!("{server} REFUSED the query"))),
        n => {
            return Err(NoAddress::Failed(format!(
                "{server} answered {}",
                wire::rcode_name(n)
            )));
        }
    }
    let owner = follow_cnames(&answer, name).map_err(NoAddress::Failed)?;
    Ok(answer.addresses(Section::Answer, &owner))
}

/// The A and AAAA addresses of `name` from the first of `servers` that
/// answers (IPv6 first, as Let's Encrypt tries them).
pub async fn resolve(servers: &[SocketAddr], name: &str) -> Result<Vec<IpAddr>, NoAddress> {
    let mut last = NoAddress::Failed("no nameserver is configured".into());
    for server in servers {
        let (aaaa, a) = tokio::join!(
            addresses(*server, name, TYPE_AAAA),
            addresses(*server, name, TYPE_A)
        );
        match (aaaa, a) {
            (Ok(mut v6), Ok(v4)) => {
                v6.extend(v4);
                return if v6.is_empty() {
                    Err(NoAddress::NoRecords)
                } else {
                    Ok(v6)
                };
            }
            (Err(NoAddress::NoSuchName), _) | (_, Err(NoAddress::NoSuchName)) => {
                return Err(NoAddress::NoSuchName);
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
    use crate::dns::wire::{CLASS_IN, header, question, record};

    #[test]
    fn cnames_in_the_answer_are_followed_to_the_records() {
        // www.example CNAME lb.example; lb.example A 10.0.0.9 and TXT "v".
        let mut msg = header(3, 0x8180, [1, 3, 0, 0]);
        msg.extend(question("www.example", TYPE_A, CLASS_IN).unwrap());
        msg.extend(
            record(
                "www.example",
                TYPE_CNAME,
                CLASS_IN,
                60,
                b"\x02lb\x07example\x00",
            )
            .unwrap(),
        );
        msg.extend(record("lb.example", TYPE_A, CLASS_IN, 60, &[10, 0, 0, 9]).unwrap());
        msg.extend(record("lb.example", TYPE_TXT, CLASS_IN, 60, &wire::txt_rdata("v")).unwrap());
        let answer = Message::parse(&msg).unwrap();
        let owner = follow_cnames(&answer, "WWW.example.").unwrap();
        assert_eq!(owner, "lb.example");
        assert_eq!(
            answer.addresses(Section::Answer, &owner),
            vec![IpAddr::from([10, 0, 0, 9])]
        );
        let looped = {
            let mut m = header(4, 0x8180, [1, 1, 0, 0]);
            m.extend(question("a.example", TYPE_A, CLASS_IN).unwrap());
            m.extend(
                record(
                    "a.example",
                    TYPE_CNAME,
                    CLASS_IN,
                    60,
                    b"\x01a\x07example\x00",
                )
                .unwrap(),
            );
            Message::parse(&m).unwrap()
        };
        assert!(
            follow_cnames(&looped, "a.example")
                .unwrap_err()
                .contains("loop")
        );
    }
}
