//! A Pod's sandbox, as a container runtime makes it: a network namespace
//! of its own (held by a process, like the pause container) joined to the
//! node's bridge by a veth pair, with an address from the Pod range and a
//! default route through the node; and, per container start, a mount
//! namespace where the Pod's volumes appear at their mountPaths.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::{BRIDGE, NODE_IP};
use crate::netns::Netns;

/// A Pod's network: its namespace, address and the node end of its veth.
pub struct Sandbox {
    pub netns: Arc<Netns>,
    pub ip: String,
}

static NEXT: AtomicU32 = AtomicU32::new(2);

/// The next free Pod address (10.244.0.2 onwards; the node has .0.1).
fn allocate() -> (u32, String) {
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let ip = format!("10.244.{}.{}", n / 256, n % 256);
    (n, ip)
}

impl Sandbox {
    /// Creates the namespace and wires it to the node's bridge.
    pub fn create(node: &Netns, dir: &Path) -> Result<Self, String> {
        let (n, ip) = allocate();
        let netns = Netns::new(&format!("pod{n}"), dir)?;
        let host_end = format!("cwp{n}");
        let pid = netns.pid().to_string();
        node.ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &pid,
        ])?;
        node.ip(&["link", "set", &host_end, "master", BRIDGE, "up"])?;
        netns.ip(&["addr", "add", &format!("{ip}/16"), "dev", "eth0"])?;
        netns.ip(&["link", "set", "eth0", "up"])?;
        netns.ip(&["route", "add", "default", "via", &NODE_IP.to_string()])?;
        Ok(Self { netns, ip })
    }
}

/// A directory to show at a path inside the container.
#[derive(Clone, Debug)]
pub struct Mount {
    pub source: PathBuf,
    pub target: String,
}

fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"))
}

/// Makes `command` start in `netns` and in a mount namespace of its own
/// where each mount's source appears at its target. Targets live under
/// `/run` (the ServiceAccount's `/var/run/secrets/...`), which gets a fresh
/// tmpfs in that namespace, so nothing changes on the host.
pub fn enter(command: &mut Command, netns: &Netns, mounts: &[Mount]) -> Result<(), String> {
    netns.enter(command);
    let mut dirs = Vec::new();
    let mut binds = Vec::new();
    for mount in mounts {
        let target = mount
            .target
            .strip_prefix("/var/run/")
            .map(|rest| format!("/run/{rest}"))
            .unwrap_or_else(|| mount.target.clone());
        let Some(rest) = target.strip_prefix("/run/") else {
            return Err(format!(
                "volume mount at {}: the local kubelet mounts volumes only under /run or /var/run",
                mount.target
            ));
        };
        let mut path = String::from("/run");
        for part in rest.split('/').filter(|p| !p.is_empty()) {
            path = format!("{path}/{part}");
            dirs.push(cstring(&path)?);
        }
        binds.push((cstring(&mount.source.to_string_lossy())?, cstring(&target)?));
    }
    let root = cstring("/")?;
    let run = cstring("/run")?;
    let tmpfs = cstring("tmpfs")?;
    // SAFETY: only async-signal-safe system calls, on strings made before the fork.
    unsafe {
        command.pre_exec(move || {
            let fail = |what: &str| {
                let e = std::io::Error::last_os_error();
                Err(std::io::Error::new(e.kind(), format!("{what}: {e}")))
            };
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return fail("unshare(CLONE_NEWNS)");
            }
            let none = std::ptr::null();
            if libc::mount(
                none,
                root.as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return fail("making / private");
            }
            if binds.is_empty() {
                return Ok(());
            }
            if libc::mount(
                tmpfs.as_ptr(),
                run.as_ptr(),
                tmpfs.as_ptr(),
                0,
                std::ptr::null(),
            ) != 0
            {
                return fail("mounting a tmpfs on /run");
            }
            for dir in &dirs {
                libc::mkdir(dir.as_ptr(), 0o755);
            }
            for (source, target) in &binds {
                if libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    none,
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) != 0
                {
                    return fail("bind-mounting a volume");
                }
            }
            Ok(())
        });
    }
    Ok(())
}
