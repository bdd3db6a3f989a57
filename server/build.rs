//! Sets `BUILD_GIT_REVISION` (not `AUDITLOG_`-prefixed: `cargo test` and
//! `cargo run` also put it in the environment, where the server would read it
//! as configuration), the git revision `auditlog_build_info` reports:
//! `git rev-parse --short HEAD`, or `unknown` where git or the repository is
//! missing (a source tarball, a container build without `.git`).

use std::process::Command;

fn main() {
    let revision = git(&["rev-parse", "--short", "HEAD"])
        .filter(|s| s.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=BUILD_GIT_REVISION={revision}");
    println!("cargo:rerun-if-changed=build.rs");
    // A new commit changes HEAD or the ref it points at (a worktree has its
    // own HEAD and shares the refs); without git the script runs once.
    let dirs = [
        git(&["rev-parse", "--git-dir"]),
        git(&["rev-parse", "--git-common-dir"]),
    ];
    for dir in dirs.into_iter().flatten() {
        for name in ["HEAD", "refs/heads", "packed-refs"] {
            let path = std::path::Path::new(&dir).join(name);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}

/// What `git ARGS` prints, trimmed; `None` if it fails or prints nothing.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}
