//! BIND 9 (Debian's `named`, installed by `scripts/install-tools`) as the
//! authoritative server of the DNS-01 tests: primary zones written from
//! [`Zone`]s, TSIG keys, and per zone the keys allowed to update it (none:
//! the zone refuses updates). It listens on one address and port only
//! (loopback, or an address of the network namespace it is started in),
//! no control channel. It also serves a root zone of its own, so it can
//! resolve recursively (pebble asks it as its resolver, and a CNAME into
//! another of its zones is followed) without ever asking anyone else.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::netns::Netns;
use crate::process::Process;

/// A TSIG key as `named.conf` declares it.
#[derive(Clone, Debug)]
pub struct TsigKey {
    pub name: String,
    /// BIND's algorithm name: `hmac-md5`, `hmac-sha1`, `hmac-sha256`, `hmac-sha512`.
    pub algorithm: String,
    /// The secret, base64.
    pub secret: String,
}

/// A primary zone.
#[derive(Clone, Debug, Default)]
pub struct Zone {
    pub name: String,
    /// Extra records, in zone-file syntax relative to the zone
    /// (`www IN A 10.96.0.80`).
    pub records: Vec<String>,
    /// Keys allowed to update the zone; none: updates are refused.
    pub update_keys: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct BindOptions {
    pub address: IpAddr,
    /// The port (a free one when None).
    pub port: Option<u16>,
    /// The namespace to run in (its address `address`); this one when None.
    pub netns: Option<Arc<Netns>>,
    pub keys: Vec<TsigKey>,
    pub zones: Vec<Zone>,
}

pub struct Bind {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    process: Process,
}

const NAMED: &str = "/usr/sbin/named";

/// The zone's file: SOA, NS `ns` at `ip` (BIND loads no zone whose
/// in-zone nameserver has no address), then its records.
fn zone_file(zone: &Zone, ip: IpAddr) -> String {
    let glue = if ip.is_ipv4() { "A" } else { "AAAA" };
    let mut out = format!(
        "$ORIGIN {name}.\n$TTL 60\n@ IN SOA ns.{name}. hostmaster.{name}. 1 3600 600 86400 60\n@ IN NS ns.{name}.\nns IN {glue} {ip}\n",
        name = zone.name
    );
    for record in &zone.records {
        out.push_str(record);
        out.push('\n');
    }
    out
}

fn config(options: &BindOptions, dir: &std::path::Path, port: u16) -> String {
    let ip = options.address;
    let listen = if ip.is_ipv4() {
        format!("listen-on port {port} {{ {ip}; }};\n    listen-on-v6 {{ none; }};")
    } else {
        format!("listen-on {{ none; }};\n    listen-on-v6 port {port} {{ {ip}; }};")
    };
    let mut out = format!(
        "options {{\n    directory \"{dir}\";\n    pid-file \"{dir}/named.pid\";\n    session-keyfile \"{dir}/session.key\";\n    {listen}\n    recursion yes;\n    allow-recursion {{ any; }};\n    dnssec-validation no;\n    notify no;\n}};\ncontrols {{ }};\n",
        dir = dir.display()
    );
    for key in &options.keys {
        out.push_str(&format!(
            "key \"{}\" {{ algorithm {}; secret \"{}\"; }};\n",
            key.name, key.algorithm, key.secret
        ));
    }
    out.push_str(&format!(
        "zone \".\" {{ type primary; file \"{}/root.db\"; }};\n",
        dir.display()
    ));
    for zone in &options.zones {
        let update = if zone.update_keys.is_empty() {
            "none;".to_string()
        } else {
            zone.update_keys
                .iter()
                .map(|k| format!("key \"{k}\";"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        out.push_str(&format!(
            "zone \"{name}\" {{ type primary; file \"{dir}/{name}.db\"; allow-update {{ {update} }}; }};\n",
            name = zone.name,
            dir = dir.display()
        ));
    }
    out
}

impl Bind {
    /// Writes the configuration and zones and starts `named` in the
    /// foreground; returns once it answers on its port.
    pub async fn start(options: BindOptions) -> Result<Bind, String> {
        if !std::path::Path::new(NAMED).exists() {
            return Err(format!(
                "{NAMED} is missing: run scripts/install-tools (it installs Debian's bind9)"
            ));
        }
        let ip = options.address;
        let port = match options.port {
            Some(p) => p,
            None => crate::netns::free_ports(ip, 1).map_err(|e| e.to_string())?[0],
        };
        let dir =
            std::env::temp_dir().join(format!("certwright-bind-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        for zone in &options.zones {
            std::fs::write(dir.join(format!("{}.db", zone.name)), zone_file(zone, ip))
                .map_err(|e| e.to_string())?;
        }
        let glue = if ip.is_ipv4() { "A" } else { "AAAA" };
        let root = format!(
            "$TTL 60\n. IN SOA ns.root. hostmaster.root. 1 3600 600 86400 60\n. IN NS ns.root.\nns.root. IN {glue} {ip}\n"
        );
        std::fs::write(dir.join("root.db"), root).map_err(|e| e.to_string())?;
        let conf = dir.join("named.conf");
        std::fs::write(&conf, config(&options, &dir, port)).map_err(|e| e.to_string())?;
        let mut command = Command::new(NAMED);
        // Foreground, logs to stderr, one worker, this configuration.
        command.args(["-g", "-n", "1", "-c"]).arg(&conf);
        if let Some(ns) = &options.netns {
            ns.enter(&mut command);
        }
        let mut process = Process::spawn("named", command, &dir.join("named.log"))
            .map_err(|e| format!("{NAMED}: {e}"))?;
        let addr = SocketAddr::new(ip, port);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok()
                && process.log().contains("running")
            {
                return Ok(Bind { addr, dir, process });
            }
            if let Some(failure) = process.failure() {
                return Err(failure);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "named did not start within 30 s:\n{}",
                    process.log_tail(40)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// named's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        // Stopped before its directory goes.
        self.process.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
