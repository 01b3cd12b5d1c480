//! Network namespaces of the run's own, held by a process rather than a
//! name (so they vanish with it, even after a SIGKILL): the node's, where
//! the control plane, pebble, the Service proxy and the ingress router
//! live, and one per Pod. Children join one before they exec; this process
//! reaches into one through a thread that lives in it, which opens
//! connections there for the caller ([`Netns::connect`]).

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use crate::process::Process;

enum Request {
    Connect(SocketAddr, mpsc::Sender<io::Result<TcpStream>>),
}

/// A network namespace held by a sleeping process.
pub struct Netns {
    name: String,
    file: File,
    requests: Mutex<mpsc::Sender<Request>>,
    // Dropped last: the namespace goes when its holder does.
    holder: Process,
}

fn check(what: &str, rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

/// Joins the network namespace behind `fd` in the calling thread.
fn join(fd: RawFd) -> io::Result<()> {
    // SAFETY: setns on a descriptor we keep open.
    check("setns", unsafe { libc::setns(fd, libc::CLONE_NEWNET) })
}

/// `n` distinct ports of `ip` that were free a moment ago, in the calling
/// thread's namespace (all held at once while chosen, so no two are equal).
pub fn free_ports(ip: std::net::IpAddr, n: usize) -> io::Result<Vec<u16>> {
    let held = (0..n)
        .map(|_| TcpListener::bind((ip, 0)))
        .collect::<io::Result<Vec<_>>>()?;
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

impl std::fmt::Debug for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Netns({}, held by {})", self.name, self.holder.id())
    }
}

impl Netns {
    /// A new namespace with only `lo` (up), held by a `sleep` process.
    pub fn new(name: &str, log_dir: &Path) -> Result<Arc<Self>, String> {
        let mut holder = Command::new("sleep");
        holder.arg("infinity");
        // SAFETY: unshare is an async-signal-safe system call.
        unsafe {
            holder.pre_exec(|| check("unshare(CLONE_NEWNET)", libc::unshare(libc::CLONE_NEWNET)));
        }
        let holder = Process::spawn(
            &format!("{name} namespace holder"),
            holder,
            &log_dir.join(format!("netns-{name}.log")),
        )
        .map_err(|e| format!("{e}\n(creating a network namespace needs root, or CAP_SYS_ADMIN)"))?;
        let path = format!("/proc/{}/ns/net", holder.id());
        // The holder unshares just before exec: wait until its namespace differs.
        let own = std::fs::read_link("/proc/thread-self/ns/net").ok();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(&path).ok() == own || std::fs::read_link(&path).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "{name}: the namespace holder never unshared: {}",
                    holder.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let file = File::open(&path).map_err(|e| format!("opening {path}: {e}"))?;
        let (tx, rx) = mpsc::channel::<Request>();
        let fd = file.try_clone().map_err(|e| e.to_string())?;
        std::thread::Builder::new()
            .name(format!("netns-{name}"))
            .spawn(move || {
                if let Err(e) = join(fd.as_raw_fd()) {
                    eprintln!("netns thread: {e}");
                    return;
                }
                for request in rx {
                    match request {
                        Request::Connect(addr, reply) => {
                            let _ = reply
                                .send(TcpStream::connect_timeout(&addr, Duration::from_secs(5)));
                        }
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        let ns = Arc::new(Self {
            name: name.to_string(),
            file,
            requests: Mutex::new(tx),
            holder,
        });
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The holder's pid (`ip link set … netns <pid>` takes it).
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// Moves the calling thread into this namespace (for good).
    pub fn join_current_thread(&self) -> io::Result<()> {
        join(self.file.as_raw_fd())
    }

    /// Makes `command` join this namespace before it execs.
    pub fn enter(&self, command: &mut Command) {
        let fd = self.file.as_raw_fd();
        // SAFETY: setns is an async-signal-safe system call; the descriptor
        // stays open while `self` lives, which outlasts the spawn.
        unsafe {
            command.pre_exec(move || join(fd));
        }
    }

    /// Runs `ip ARGS` in this namespace.
    pub fn ip(&self, args: &[&str]) -> Result<(), String> {
        let mut command = Command::new("ip");
        command.args(args);
        self.enter(&mut command);
        let out = command
            .output()
            .map_err(|e| format!("running ip {}: {e} (install iproute2)", args.join(" ")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip {} in namespace {}: {}",
                args.join(" "),
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn ask<T>(&self, make: impl FnOnce(mpsc::Sender<io::Result<T>>) -> Request) -> io::Result<T> {
        let (tx, rx) = mpsc::channel();
        let gone = || io::Error::other(format!("the thread of namespace {} is gone", self.name));
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(make(tx))
            .map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }

    /// A TCP connection to `addr`, made from inside this namespace.
    pub async fn connect(self: &Arc<Self>, addr: SocketAddr) -> io::Result<tokio::net::TcpStream> {
        let ns = self.clone();
        let stream = tokio::task::spawn_blocking(move || ns.ask(|tx| Request::Connect(addr, tx)))
            .await
            .map_err(io::Error::other)??;
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        tokio::net::TcpStream::from_std(stream)
    }
}
