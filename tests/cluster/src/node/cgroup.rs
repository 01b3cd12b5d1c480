//! The node's cgroup: every node daemon, and every Pod under the kubelet's
//! `cgroupRoot`, below one cgroup of the run's own. Killing what it holds
//! tears the whole node down (shims and containers included) in well under
//! a second; the namespace holder does it when the run dies, even by
//! SIGKILL, and the next start does it for a run that left one behind.
//!
//! cgroup v1 (our machines: one hierarchy per controller) and v2 (most
//! users' machines: one unified tree) are both handled; the kubelet and
//! containerd are told which through their `cgroupfs` driver, which works
//! on both.

use std::path::{Path, PathBuf};
use std::time::Duration;

const ROOT: &str = "/sys/fs/cgroup";
/// The prefix of the node cgroups' names; the rest is the run's pid.
const PREFIX: &str = "certwright-node-";

/// The cgroup version of this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

fn version() -> Version {
    if Path::new(ROOT).join("cgroup.controllers").exists() {
        Version::V2
    } else {
        Version::V1
    }
}

/// The roots of the hierarchies a cgroup lives in: the unified one, or each
/// v1 controller's (a joint mount such as `cpu,cpuacct` once), and the
/// named `systemd` one, which the kubelet checks too.
fn hierarchies(version: Version) -> Vec<PathBuf> {
    if version == Version::V2 {
        return vec![PathBuf::from(ROOT)];
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut found: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(2) == Some(&"cgroup")).then(|| PathBuf::from(fields[1]))
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// One node's cgroup, `<hierarchy>/certwright-node-<pid>` in every
/// hierarchy: `daemons` below it holds the node daemons, `pods` is the
/// kubelet's `cgroupRoot`.
#[derive(Debug)]
pub struct NodeCgroup {
    name: String,
    version: Version,
    hierarchies: Vec<PathBuf>,
}

/// The controllers a v2 cgroup hands down to its children.
const V2_CONTROLLERS: &str = "+cpu +cpuset +io +memory +pids";

impl NodeCgroup {
    /// Creates the cgroup of this run's node.
    pub fn create() -> Result<Self, String> {
        let version = version();
        let node = Self {
            name: format!("{PREFIX}{}", std::process::id()),
            version,
            hierarchies: hierarchies(version),
        };
        node.kill_and_remove();
        if version == Version::V2 {
            // Children get controllers only where their parent hands them down.
            let _ = std::fs::write(
                Path::new(ROOT).join("cgroup.subtree_control"),
                V2_CONTROLLERS,
            );
        }
        for dir in node.dirs() {
            for sub in ["", "daemons", "pods"] {
                let path = dir.join(sub);
                std::fs::create_dir_all(&path)
                    .map_err(|e| format!("creating the cgroup {}: {e}", path.display()))?;
                inherit_cpuset(&path);
            }
            if version == Version::V2 {
                std::fs::write(dir.join("cgroup.subtree_control"), V2_CONTROLLERS)
                    .map_err(|e| format!("enabling controllers in {}: {e}", dir.display()))?;
            }
        }
        Ok(node)
    }

    /// The node cgroup in each hierarchy.
    fn dirs(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.hierarchies.iter().map(|h| h.join(&self.name))
    }

    /// The kubelet's `cgroupRoot`.
    pub fn pods_root(&self) -> String {
        format!("/{}/pods", self.name)
    }

    /// The `cgroup.procs` files a daemon writes itself into.
    pub fn daemon_procs(&self) -> Vec<PathBuf> {
        self.dirs()
            .map(|d| d.join("daemons/cgroup.procs"))
            .collect()
    }

    /// A shell command that kills everything in the node cgroup and removes
    /// it (the namespace holder's last act).
    pub fn kill_script(&self) -> String {
        let dirs: Vec<String> = self.dirs().map(|d| d.display().to_string()).collect();
        let first = dirs.first().cloned().unwrap_or_default();
        format!(
            "for i in $(seq 100); do p=$(cat $(find {first} -name cgroup.procs) 2>/dev/null); \
             [ -z \"$p\" ] && break; kill -9 $p 2>/dev/null; sleep 0.02; done; \
             for d in {}; do find \"$d\" -depth -type d -exec rmdir {{}} + 2>/dev/null; done",
            dirs.join(" ")
        )
    }

    /// The processes of the cgroup named `leaf` below the node's (a
    /// container's, named by its id).
    pub fn processes_of(&self, leaf: &str) -> Vec<i32> {
        fn find(dir: &Path, leaf: &str) -> Option<PathBuf> {
            for entry in std::fs::read_dir(dir).ok()?.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                if entry.file_name() == leaf {
                    return Some(entry.path());
                }
                if let Some(found) = find(&entry.path(), leaf) {
                    return Some(found);
                }
            }
            None
        }
        self.dirs()
            .next()
            .and_then(|d| find(&d, leaf))
            .map(|d| processes_below(&d))
            .unwrap_or_default()
    }

    /// Kills everything in the node cgroup and removes it.
    pub fn kill_and_remove(&self) {
        kill_and_remove(&self.dirs().collect::<Vec<_>>());
    }

    /// The memory limit the kernel enforces on a Pod's container, found by
    /// the container's process, in bytes.
    pub fn memory_limit_of(&self, pid: i32) -> Option<u64> {
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let (root, file, path) = match self.version {
            Version::V2 => (
                PathBuf::from(ROOT),
                "memory.max",
                cgroups.lines().find_map(|l| l.strip_prefix("0::"))?,
            ),
            Version::V1 => (
                PathBuf::from(ROOT).join("memory"),
                "memory.limit_in_bytes",
                cgroups.lines().find_map(|l| {
                    let mut parts = l.splitn(3, ':');
                    let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                    controllers
                        .split(',')
                        .any(|c| c == "memory")
                        .then_some(path)
                })?,
            ),
        };
        let text =
            std::fs::read_to_string(root.join(path.trim_start_matches('/')).join(file)).ok()?;
        text.trim().parse().ok()
    }
}

impl Drop for NodeCgroup {
    fn drop(&mut self) {
        self.kill_and_remove();
    }
}

/// A v1 cpuset cgroup takes no process until it has CPUs and memory nodes.
fn inherit_cpuset(path: &Path) {
    if !path.join("cpuset.cpus").exists() {
        return;
    }
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let mine = std::fs::read_to_string(path.join(file)).unwrap_or_default();
        if mine.trim().is_empty()
            && let Some(parent) = path.parent()
            && let Ok(theirs) = std::fs::read_to_string(parent.join(file))
        {
            let _ = std::fs::write(path.join(file), theirs.trim());
        }
    }
}

fn processes_below(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pids.extend(processes_below(&entry.path()));
            }
        }
    }
    pids
}

fn remove_below(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_below(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn kill_and_remove(dirs: &[PathBuf]) {
    let Some(first) = dirs.first() else {
        return;
    };
    for _ in 0..200 {
        let pids = processes_below(first);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // SAFETY: kill(2) on a pid read from the node's own cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for dir in dirs {
        remove_below(dir);
    }
}

/// Tears down node cgroups left by runs that are gone (a SIGKILLed run
/// whose holder could not act).
pub fn remove_stale() {
    let hierarchies = hierarchies(version());
    let Some(first) = hierarchies.first() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(first) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dirs: Vec<PathBuf> = hierarchies.iter().map(|h| h.join(&name)).collect();
        kill_and_remove(&dirs);
    }
}
