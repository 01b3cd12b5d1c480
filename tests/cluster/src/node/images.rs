//! The real node's images, built by a real OCI builder (Debian's `buildah`,
//! vfs storage, no daemon, no registry) and imported into its containerd,
//! tagged exactly as the manifests name them (never `:latest`, which means
//! `imagePullPolicy: Always`, and so a pull that cannot succeed here).
//!
//! - certwright's: `dockerfiles/Dockerfile`'s `local` target, from the
//!   static binary `scripts/build-image-binary` made, Debian's CA bundle and
//!   time zones, and a passwd naming `nonroot` (65532).
//! - the Pod sandbox: a static pause program of ours (`images/pause.c`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::PAUSE_IMAGE;

/// The repository of certwright's image on the real node.
pub const CERTWRIGHT_REPOSITORY: &str = "certwright.test/certwright";

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn run(what: &str, command: &mut Command) -> Result<(), String> {
    let out = command
        .output()
        .map_err(|e| format!("{what}: {e} (scripts/install-tools installs it)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `buildah` with its storage under `dir` (vfs: no overlay mounts needed).
fn buildah(dir: &Path) -> Command {
    let mut command = Command::new("buildah");
    command
        .arg("--root")
        .arg(dir.join("buildah/root"))
        .arg("--runroot")
        .arg(dir.join("buildah/run"))
        .args(["--storage-driver", "vfs"]);
    command
}

/// Builds `context` (with `dockerfile`, at `target` if given) as `tag`,
/// and exports it as a docker-archive tar.
fn build(
    dir: &Path,
    context: &Path,
    dockerfile: &Path,
    target: Option<&str>,
    tag: &str,
) -> Result<PathBuf, String> {
    let mut bud = buildah(dir);
    bud.args(["bud", "--quiet", "--layers=false", "-t", tag, "-f"])
        .arg(dockerfile);
    if let Some(target) = target {
        bud.args(["--target", target]);
    }
    bud.arg(context);
    run(&format!("buildah bud {tag}"), &mut bud)?;
    let archive = dir.join(format!("{}.tar", tag.replace(['/', ':'], "_")));
    let _ = std::fs::remove_file(&archive);
    run(
        &format!("buildah push {tag}"),
        buildah(dir)
            .args(["push", "--quiet", tag])
            .arg(format!("docker-archive:{}:{tag}", archive.display())),
    )?;
    Ok(archive)
}

/// The sandbox image: the pause program, built static from C.
pub fn pause(dir: &Path) -> Result<PathBuf, String> {
    let context = dir.join("pause-context");
    std::fs::create_dir_all(&context).map_err(|e| e.to_string())?;
    run(
        "cc (the pause program)",
        Command::new("cc")
            .args(["-static", "-Os", "-s", "-o"])
            .arg(context.join("pause"))
            .arg(repo_path("images/pause.c")),
    )?;
    let dockerfile = context.join("Dockerfile");
    std::fs::write(
        &dockerfile,
        "FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT [\"/pause\"]\n",
    )
    .map_err(|e| e.to_string())?;
    build(dir, &context, &dockerfile, None, PAUSE_IMAGE)
}

const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n";

/// certwright's image from `binary`, tagged `<CERTWRIGHT_REPOSITORY>:<tag>`.
pub fn certwright(dir: &Path, binary: &Path, tag: &str) -> Result<PathBuf, String> {
    let context = dir.join("certwright-context");
    let _ = std::fs::remove_dir_all(&context);
    for sub in ["etc/ssl/certs", "usr/share"] {
        std::fs::create_dir_all(context.join(sub)).map_err(|e| e.to_string())?;
    }
    std::fs::copy(binary, context.join("certwright"))
        .map_err(|e| format!("copying {}: {e}", binary.display()))?;
    std::fs::copy(
        "/etc/ssl/certs/ca-certificates.crt",
        context.join("etc/ssl/certs/ca-certificates.crt"),
    )
    .map_err(|e| format!("the CA bundle (Debian's ca-certificates): {e}"))?;
    run(
        "copying /usr/share/zoneinfo (Debian's tzdata)",
        Command::new("cp")
            .args(["-rL", "/usr/share/zoneinfo"])
            .arg(context.join("usr/share/zoneinfo")),
    )?;
    std::fs::write(context.join("etc/passwd"), PASSWD).map_err(|e| e.to_string())?;
    std::fs::write(context.join("etc/group"), GROUP).map_err(|e| e.to_string())?;
    build(
        dir,
        &context,
        &repo_path("../../dockerfiles/Dockerfile"),
        Some("local"),
        &format!("{CERTWRIGHT_REPOSITORY}:{tag}"),
    )
}

/// Imports `archive` into the containerd behind `socket`, where the CRI
/// looks (namespace `k8s.io`).
pub fn import(socket: &Path, archive: &Path) -> Result<(), String> {
    run(
        &format!("ctr images import {}", archive.display()),
        Command::new("ctr")
            .arg("--address")
            .arg(socket)
            .args(["-n", "k8s.io", "images", "import"])
            .arg(archive),
    )
}
