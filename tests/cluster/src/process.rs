//! Child processes of the test support (etcd, kube-apiserver, pebble, Pods):
//! each is forked by one thread that lives as long as the process and gets
//! a parent-death signal, so nothing outlives a test binary, not even after
//! a SIGKILL of the harness. Output goes to a log file; dropping a
//! [`Process`] kills and reaps it.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

type Spawn = Box<dyn FnOnce() -> io::Result<Child> + Send>;
type Request = (Spawn, mpsc::Sender<io::Result<Child>>);

/// The thread that forks every child. A parent-death signal fires when the
/// forking *thread* ends, so it must be one that never ends.
fn spawner() -> &'static Mutex<mpsc::Sender<Request>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("certwright-spawner".into())
            .spawn(move || {
                for (spawn, reply) in rx {
                    let _ = reply.send(spawn());
                }
            })
            .expect("the spawner thread starts");
        Mutex::new(tx)
    })
}

/// Makes `command` die with SIGKILL when the spawner (so this process) dies.
pub fn die_with_parent(command: &mut Command) {
    signal_on_parent_death(command, libc::SIGKILL);
}

/// Makes `command` get `signal` when the spawner (so this process) dies.
fn signal_on_parent_death(command: &mut Command, signal: libc::c_int) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl and getppid are async-signal-safe system calls.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// A running child; killed and reaped on drop.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `command` (stdin closed, stdout and stderr into a new `log`).
    pub fn spawn(name: &str, command: Command, log: &Path) -> Result<Self, String> {
        let out =
            std::fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        Self::spawn_into(name, command, log, out, libc::SIGKILL)
    }

    /// As [`Self::spawn`], but the child gets SIGTERM rather than SIGKILL
    /// when this process dies, so it can clean up what outlives it (the
    /// real node's holder kills the node's cgroup).
    pub fn spawn_guardian(name: &str, command: Command, log: &Path) -> Result<Self, String> {
        let out =
            std::fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        Self::spawn_into(name, command, log, out, libc::SIGTERM)
    }

    /// The same, appending to `log` (a restarted container's).
    pub fn spawn_appending(name: &str, command: Command, log: &Path) -> Result<Self, String> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("opening {}: {e}", log.display()))?;
        Self::spawn_into(name, command, log, out, libc::SIGKILL)
    }

    fn spawn_into(
        name: &str,
        mut command: Command,
        log: &Path,
        out: std::fs::File,
        death_signal: libc::c_int,
    ) -> Result<Self, String> {
        let err = out.try_clone().map_err(|e| e.to_string())?;
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        signal_on_parent_death(&mut command, death_signal);
        let program = command.get_program().to_string_lossy().into_owned();
        let (tx, rx) = mpsc::channel();
        spawner()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send((Box::new(move || command.spawn()), tx))
            .map_err(|_| "the spawner thread is gone".to_string())?;
        let child = rx
            .recv()
            .map_err(|_| "the spawner thread is gone".to_string())?
            .map_err(|e| format!("cannot start {name} ({program}): {e}"))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Its output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of its output, for an error message.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// An error saying it exited, with the tail of its log; `None` while it runs.
    pub fn failure(&mut self) -> Option<String> {
        let status = self.exited()?;
        Some(format!(
            "{} exited with {status}; the end of its log ({}):\n{}",
            self.name,
            self.log.display(),
            self.log_tail(40)
        ))
    }

    /// Asks it to stop (SIGTERM), as a kubelet does before it kills.
    pub fn signal_term(&self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) with a pid we spawned and have not reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }

    /// Kills it and waits (briefly) for it to be reaped.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Removes `root/<pid>-*` directories left by test processes that are gone
/// (a SIGKILLed harness cannot clean up after itself).
pub fn remove_stale_dirs(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
