//! RFC 2136 dynamic updates, TSIG-signed: add one TXT value to a name,
//! delete exactly that value again (other values on the name stay), as
//! cert-manager's `rfc2136` provider does. Every refusal is said in words
//! that name what to fix.

use std::net::SocketAddr;

use super::tsig::{self, Key};
use super::wire::{self, CLASS_IN, CLASS_NONE, Message, TYPE_SOA, TYPE_TXT};

/// The TTL of the records we add (cert-manager's).
pub const TTL: u32 = 60;

/// Where updates go and how they are signed.
#[derive(Clone, Debug)]
pub struct Updater {
    pub server: SocketAddr,
    pub key: Option<Key>,
    pub tcp: bool,
}

/// `host[:port]` (IPv6 in brackets, port 53 when absent) as a socket
/// address, looked up when it is a host name.
pub async fn nameserver(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("rfc2136.nameserver is empty".into());
    }
    let with_port = if text.parse::<SocketAddr>().is_ok() {
        text.to_string()
    } else if text.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{text}]:53")
    } else if text
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        text.to_string()
    } else {
        format!("{text}:53")
    };
    tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| format!("rfc2136.nameserver {text:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("rfc2136.nameserver {text:?} has no address"))
}

impl Updater {
    /// Adds the TXT `value` at `fqdn` in `zone` (an identical value already
    /// there is no change, so presenting twice is fine).
    pub async fn add_txt(&self, zone: &str, fqdn: &str, value: &str) -> Result<(), String> {
        let rr = wire::record(fqdn, TYPE_TXT, CLASS_IN, TTL, &wire::txt_rdata(value))?;
        self.update(zone, fqdn, &rr).await
    }

    /// Deletes the TXT `value` at `fqdn` in `zone`, and only it (deleting
    /// a value that is not there is no change).
    pub async fn delete_txt(&self, zone: &str, fqdn: &str, value: &str) -> Result<(), String> {
        let rr = wire::record(fqdn, TYPE_TXT, CLASS_NONE, 0, &wire::txt_rdata(value))?;
        self.update(zone, fqdn, &rr).await
    }

    async fn update(&self, zone: &str, fqdn: &str, update: &[u8]) -> Result<(), String> {
        let id = wire::fresh_id();
        // Opcode UPDATE; one zone, one update.
        let mut message = wire::header(id, 5 << 11, [1, 0, 1, 0]);
        message.extend(wire::question(zone, TYPE_SOA, CLASS_IN)?);
        message.extend_from_slice(update);
        let (message, mac) = match &self.key {
            Some(key) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let (signed, mac) = tsig::sign(&message, key, now)?;
                (signed, Some(mac))
            }
            None => (message, None),
        };
        let server = self.server;
        let raw = wire::exchange(server, &message, self.tcp).await?;
        let answer =
            Message::parse(&raw).map_err(|e| format!("{server} sent a malformed answer: {e}"))?;
        let signed = match (&self.key, &mac) {
            (Some(key), Some(mac)) => Some(tsig::verify(&answer, key, mac).map_err(|e| (key, e))),
            _ => None,
        };
        if let Some(Err((key, Some(error)))) = &signed {
            return Err(format!(
                "the nameserver {server} does not accept the TSIG key {:?} ({:?}): {error}",
                key.name, key.algorithm
            ));
        }
        let rcode = answer.rcode();
        let name = wire::rcode_name(rcode);
        match rcode {
            0 => {}
            5 => {
                return Err(format!(
                    "the nameserver {server} refused the update of zone {zone} ({name}): it allows no updates of {fqdn} {}(BIND: the zone's allow-update or update-policy)",
                    match &self.key {
                        Some(k) => format!("with the TSIG key {:?} ", k.name),
                        None => "without a TSIG key ".into(),
                    }
                ));
            }
            9 => {
                return Err(format!(
                    "the nameserver {server} is not authoritative for zone {zone} ({name}), or does not accept the TSIG key"
                ));
            }
            10 => return Err(format!("{fqdn} is not in zone {zone} ({name})")),
            _ => {
                return Err(format!(
                    "the nameserver {server} answered the update of zone {zone} with {name}"
                ));
            }
        }
        if let Some(Err((key, None))) = signed {
            return Err(format!(
                "the nameserver {server} applied the update, but its answer is not signed with the TSIG key {:?}: not trusting it",
                key.name
            ));
        }
        Ok(())
    }
}
