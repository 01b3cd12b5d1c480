//! DNS messages as RFC 1035 lays them out: names, queries, the records of
//! an answer, and one exchange over UDP (TCP when the answer is truncated
//! or asked for). Only what the self-checks and RFC 2136 updates need.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_TXT: u16 = 16;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_TSIG: u16 = 250;
pub const CLASS_IN: u16 = 1;
pub const CLASS_NONE: u16 = 254;
pub const CLASS_ANY: u16 = 255;

/// `name` in wire form (lowercase, uncompressed, root label last).
pub fn encode_name(name: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(name.len() + 2);
    let trimmed = name.trim_end_matches('.');
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(format!("{name:?} is not a valid DNS name"));
            }
            out.push(label.len() as u8);
            out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    }
    out.push(0);
    if out.len() > 255 {
        return Err(format!("{name:?} is longer than a DNS name may be"));
    }
    Ok(out)
}

/// A header: `id`, flags, and the four section counts.
pub fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        out.extend_from_slice(&c.to_be_bytes());
    }
    out
}

/// A question entry.
pub fn question(name: &str, qtype: u16, class: u16) -> Result<Vec<u8>, String> {
    let mut out = encode_name(name)?;
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&class.to_be_bytes());
    Ok(out)
}

/// A resource record.
pub fn record(
    name: &str,
    rtype: u16,
    class: u16,
    ttl: u32,
    rdata: &[u8],
) -> Result<Vec<u8>, String> {
    let mut out = encode_name(name)?;
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&class.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    let len = u16::try_from(rdata.len()).map_err(|_| "record data too long".to_string())?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(rdata);
    Ok(out)
}

/// The RDATA of a TXT record holding `value` (split into strings of at
/// most 255 bytes).
pub fn txt_rdata(value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 1);
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        out.push(0);
    }
    for chunk in bytes.chunks(255) {
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
    out
}

/// A recursive (`rd`) query for `name` of `qtype` with id `id`.
pub fn query(id: u16, name: &str, qtype: u16, recursion: bool) -> Result<Vec<u8>, String> {
    let mut out = header(id, if recursion { 0x0100 } else { 0 }, [1, 0, 0, 0]);
    out.extend(question(name, qtype, CLASS_IN)?);
    Ok(out)
}

/// Reads a (possibly compressed) name at `at`; returns it (lowercase,
/// no trailing dot) and the offset after it in the original position.
pub fn read_name(msg: &[u8], mut at: usize) -> Result<(String, usize), String> {
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
            return Ok((labels.join("."), end.unwrap_or(at + 1)));
        }
        let label = msg.get(at + 1..at + 1 + len).ok_or("truncated label")?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += 1 + len;
    }
    Err("name compression loop".into())
}

pub fn u16_at(msg: &[u8], at: usize) -> Result<u16, String> {
    msg.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| "truncated message".into())
}

/// One record of a parsed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    /// Where the RDATA starts in the message (names in it may point back).
    pub data_at: usize,
    pub data: Vec<u8>,
}

/// Which section a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Answer,
    Authority,
    Additional,
}

/// A parsed response.
#[derive(Clone, Debug)]
pub struct Message {
    pub id: u16,
    pub flags: u16,
    pub records: Vec<(Section, Record)>,
    /// Where the additional section starts (TSIG is its last record).
    pub additional_at: usize,
    pub raw: Vec<u8>,
}

impl Message {
    pub fn parse(raw: &[u8]) -> Result<Message, String> {
        if raw.len() < 12 {
            return Err("shorter than a DNS header".into());
        }
        let id = u16_at(raw, 0)?;
        let flags = u16_at(raw, 2)?;
        let counts = [
            u16_at(raw, 4)?,
            u16_at(raw, 6)?,
            u16_at(raw, 8)?,
            u16_at(raw, 10)?,
        ];
        let mut at = 12;
        for _ in 0..counts[0] {
            at = read_name(raw, at)?.1 + 4;
        }
        let mut records = Vec::new();
        let mut additional_at = at;
        for (section, count) in [
            (Section::Answer, counts[1]),
            (Section::Authority, counts[2]),
            (Section::Additional, counts[3]),
        ] {
            if section == Section::Additional {
                additional_at = at;
            }
            for _ in 0..count {
                let (name, next) = read_name(raw, at)?;
                let rtype = u16_at(raw, next)?;
                let class = u16_at(raw, next + 2)?;
                let ttl =
                    (u32::from(u16_at(raw, next + 4)?) << 16) | u32::from(u16_at(raw, next + 6)?);
                let len = u16_at(raw, next + 8)? as usize;
                let data_at = next + 10;
                let data = raw
                    .get(data_at..data_at + len)
                    .ok_or("truncated record")?
                    .to_vec();
                records.push((
                    section,
                    Record {
                        name,
                        rtype,
                        class,
                        ttl,
                        data_at,
                        data,
                    },
                ));
                at = data_at + len;
            }
        }
        Ok(Message {
            id,
            flags,
            records,
            additional_at,
            raw: raw.to_vec(),
        })
    }

    pub fn rcode(&self) -> u8 {
        (self.flags & 0x0f) as u8
    }

    pub fn truncated(&self) -> bool {
        self.flags & 0x0200 != 0
    }

    /// Whether the answer is authoritative (AA).
    pub fn authoritative(&self) -> bool {
        self.flags & 0x0400 != 0
    }

    /// The records of `section` of `rtype`.
    pub fn of(&self, section: Section, rtype: u16) -> impl Iterator<Item = &Record> {
        self.records
            .iter()
            .filter(move |(s, r)| *s == section && r.rtype == rtype)
            .map(|(_, r)| r)
    }

    /// The domain name at the start of `record`'s data (CNAME, NS, the
    /// SOA's MNAME).
    pub fn name_in(&self, record: &Record) -> Result<String, String> {
        read_name(&self.raw, record.data_at).map(|(n, _)| n)
    }

    /// The strings of a TXT record, joined (as one value).
    pub fn txt(record: &Record) -> String {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(&len) = record.data.get(at) {
            let end = (at + 1 + len as usize).min(record.data.len());
            out.extend_from_slice(&record.data[at + 1..end]);
            at = end;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The IPv4 and IPv6 addresses of `section`'s A and AAAA records owned by `name`.
    pub fn addresses(&self, section: Section, name: &str) -> Vec<std::net::IpAddr> {
        self.records
            .iter()
            .filter(|(s, r)| *s == section && r.name == name)
            .filter_map(|(_, r)| match (r.rtype, r.data.len()) {
                (TYPE_A, 4) => {
                    Some(Ipv4Addr::new(r.data[0], r.data[1], r.data[2], r.data[3]).into())
                }
                (TYPE_AAAA, 16) => {
                    let octets: [u8; 16] = r.data.as_slice().try_into().ok()?;
                    Some(Ipv6Addr::from(octets).into())
                }
                _ => None,
            })
            .collect()
    }
}

/// The usual name of an rcode.
pub fn rcode_name(rcode: u8) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        6 => "YXDOMAIN".into(),
        7 => "YXRRSET".into(),
        8 => "NXRRSET".into(),
        9 => "NOTAUTH".into(),
        10 => "NOTZONE".into(),
        n => format!("rcode {n}"),
    }
}

/// A message id that differs from one call to the next.
pub fn fresh_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos as u16) ^ NEXT.fetch_add(0x9e37, Ordering::Relaxed)
}

/// How long one exchange may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Sends `message` to `server` and returns the raw answer with the same
/// id: over UDP (sent twice at most), then over TCP when the answer came
/// back truncated, or over TCP only when `tcp`.
pub async fn exchange(server: SocketAddr, message: &[u8], tcp: bool) -> Result<Vec<u8>, String> {
    let id = u16_at(message, 0)?;
    if !tcp {
        let raw = exchange_udp(server, message, id).await?;
        if raw.get(2).is_some_and(|f| f & 0x02 == 0) {
            return Ok(raw);
        }
    }
    exchange_tcp(server, message).await
}

async fn exchange_udp(server: SocketAddr, message: &[u8], id: u16) -> Result<Vec<u8>, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let failed = |e: std::io::Error| format!("asking {server} over UDP: {e}");
    let socket = tokio::net::UdpSocket::bind(bind).await.map_err(failed)?;
    socket.connect(server).await.map_err(failed)?;
    let mut buf = vec![0u8; 65535];
    for _ in 0..2 {
        socket.send(message).await.map_err(failed)?;
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Ok(Ok(n)) if u16_at(&buf[..n], 0).ok() == Some(id) => return Ok(buf[..n].to_vec()),
                // Not ours (a late answer to an earlier query): keep listening.
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => return Err(failed(e)),
                Err(_) => break,
            }
        }
    }
    Err(format!(
        "{server} did not answer over UDP within {} s",
        2 * TIMEOUT.as_secs()
    ))
}

async fn exchange_tcp(server: SocketAddr, message: &[u8]) -> Result<Vec<u8>, String> {
    let failed = |e: std::io::Error| format!("asking {server} over TCP: {e}");
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(server)
            .await
            .map_err(failed)?;
        let len = u16::try_from(message.len()).map_err(|_| "message too long".to_string())?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(message);
        stream.write_all(&framed).await.map_err(failed)?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.map_err(failed)?;
        let mut raw = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut raw).await.map_err(failed)?;
        Ok::<_, String>(raw)
    };
    tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| {
        format!(
            "{server} did not answer over TCP within {} s",
            TIMEOUT.as_secs()
        )
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercased_and_bad_labels_refused() {
        assert_eq!(encode_name("A.Example.").unwrap(), b"\x01a\x07example\x00");
        assert_eq!(encode_name(".").unwrap(), b"\x00");
        assert!(encode_name("a..example").is_err());
        assert!(encode_name(&format!("{}.example", "x".repeat(64))).is_err());
    }

    #[test]
    fn txt_values_are_split_into_strings_and_joined_back() {
        let long = "v".repeat(300);
        let rdata = txt_rdata(&long);
        assert_eq!((rdata[0], rdata[256]), (255, 45));
        let record = Record {
            name: String::new(),
            rtype: TYPE_TXT,
            class: CLASS_IN,
            ttl: 0,
            data_at: 0,
            data: rdata,
        };
        assert_eq!(Message::txt(&record), long);
    }

    #[test]
    fn answers_parse_into_sections_with_names_followed_through_pointers() {
        let mut msg = header(7, 0x8580, [1, 1, 1, 0]);
        msg.extend(question("www.example", TYPE_CNAME, CLASS_IN).unwrap());
        // www.example CNAME lb.example (lb written out, then pointed at).
        let mut cname = vec![0xc0, 12];
        cname.extend_from_slice(&TYPE_CNAME.to_be_bytes());
        cname.extend_from_slice(&[0, 1, 0, 0, 0, 60, 0, 5, 2, b'l', b'b', 0xc0, 16]);
        msg.extend(&cname);
        msg.extend(record("example", TYPE_NS, CLASS_IN, 60, b"\x02ns\xc0\x10").unwrap());
        let parsed = Message::parse(&msg).unwrap();
        assert!(parsed.authoritative());
        let cname = parsed.of(Section::Answer, TYPE_CNAME).next().unwrap();
        assert_eq!(cname.name, "www.example");
        assert_eq!(parsed.name_in(cname).unwrap(), "lb.example");
        let ns = parsed.of(Section::Authority, TYPE_NS).next().unwrap();
        assert_eq!(parsed.name_in(ns).unwrap(), "ns.example");
        assert!(Message::parse(&msg[..msg.len() - 3]).is_err());
    }
}
