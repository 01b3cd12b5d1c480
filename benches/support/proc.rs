//! A process of the local cluster's, read from /proc: every Pod is a
//! process on this machine, found by a pattern of its command line.

use std::path::PathBuf;

/// The /proc entries of the processes whose command line (arguments
/// joined by spaces) contains `pattern`.
fn processes(pattern: &str) -> Vec<PathBuf> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            std::fs::read(entry.path().join("cmdline")).is_ok_and(|cmdline| {
                String::from_utf8_lossy(&cmdline)
                    .replace('\0', " ")
                    .contains(pattern)
            })
        })
        .map(|entry| entry.path())
        .collect()
}

/// CPU seconds (user + system) so far of the processes whose command line
/// contains `pattern`.
pub fn cpu_seconds(pattern: &str) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for dir in processes(pattern) {
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // Fields after the command name: utime and stime are the 12th and 13th.
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
            .sum();
        total += ticks / tick;
    }
    total
}

/// A memory figure in KiB (`VmRSS`: now; `VmHWM`: the peak) of the first
/// process whose command line contains `pattern`.
pub fn memory_kib(pattern: &str, field: &str) -> Option<u64> {
    processes(pattern).into_iter().find_map(|dir| {
        std::fs::read_to_string(dir.join("status"))
            .ok()?
            .lines()
            .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
    })
}
