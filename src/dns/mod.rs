//! DNS, spoken directly: the wire format and one exchange (`wire`), TSIG
//! (`tsig`), RFC 2136 updates (`update`), and the lookups the DNS-01
//! path and the HTTP-01 self-check make (`lookup`).

pub mod lookup;
pub mod tsig;
pub mod update;
pub mod wire;
