//! The Go-built tools the local cluster runs: their pinned versions (read
//! from the wrapper modules in `tests/tools/*/go.mod`) and where
//! `scripts/install-tools` caches them.

use std::path::PathBuf;

/// The pinned version of a Go-built tool, read from its wrapper module.
fn pinned(go_mod: &str, module: &str) -> &'static str {
    let version = go_mod
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find_map(|words| match words.as_slice() {
            [m, v, ..] if *m == module => Some(v.to_string()),
            ["require", m, v, ..] if *m == module => Some(v.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "unknown".into());
    Box::leak(version.into_boxed_str())
}

/// The Kubernetes release the control plane runs.
pub fn kubernetes_version() -> &'static str {
    pinned(include_str!("../../tools/k8s/go.mod"), "k8s.io/kubernetes")
}

/// The etcd release it stores into.
pub fn etcd_version() -> &'static str {
    pinned(
        include_str!("../../tools/etcd/go.mod"),
        "go.etcd.io/etcd/server/v3",
    )
}

/// Where `scripts/install-tools` caches the tools it builds.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CERTWRIGHT_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("certwright")
}

/// A tool that `scripts/install-tools` put on PATH (helm, promtool, …), or
/// an error saying how to get it.
pub fn on_path(name: &str) -> Result<PathBuf, String> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "`{name}` is not on PATH: run scripts/install-tools (or scripts/test, which does)"
            )
        })
}

/// The path of a cached tool, or an error saying how to build it.
pub fn tool(dir: &str, name: &str) -> Result<PathBuf, String> {
    let path = cache_dir().join(dir).join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is not built: run scripts/install-tools (it builds {dir} once into {})",
            path.display(),
            cache_dir().display()
        ))
    }
}

/// The pebble release the ACME tests run against.
pub fn pebble_version() -> &'static str {
    pinned(
        include_str!("../../tools/pebble/go.mod"),
        "github.com/letsencrypt/pebble/v2",
    )
}

/// The cached pebble binary `name` (`pebble` or `pebble-challtestsrv`).
pub fn pebble_tool(name: &str) -> Result<PathBuf, String> {
    tool(&format!("pebble-{}", pebble_version()), name)
}

/// The Traefik release the local cluster's ingress controller runs.
pub fn traefik_version() -> &'static str {
    pinned(
        include_str!("../../tools/traefik/go.mod"),
        "github.com/traefik/traefik/v3",
    )
}

/// The cached Traefik binary.
pub fn traefik_tool() -> Result<PathBuf, String> {
    tool(&format!("traefik-{}", traefik_version()), "traefik")
}

/// The cert-manager release our own test mains (`tests/tools/cert-manager`)
/// are built on.
pub fn cert_manager_version() -> &'static str {
    pinned(
        include_str!("../../tools/cert-manager/go.mod"),
        "github.com/cert-manager/cert-manager",
    )
}

/// A cached binary of `tests/tools/cert-manager` (`dns-webhook`, `keystore-read`).
pub fn cert_manager_tool(name: &str) -> Result<PathBuf, String> {
    tool(&format!("cert-manager-{}", cert_manager_version()), name)
}
