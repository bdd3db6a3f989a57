//! Building and running the workspace's binaries to their end: the path of
//! a fresh binary ([`workspace_bin`], [`cli_bin`]), a run of the `auditlog`
//! CLI with its output ([`run_to_end`], [`cli`]) and the pieces of a piped
//! run. Use them whenever a test runs a program rather than a server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The path of a workspace binary. The workspace's binaries are built (or
/// found up to date) once per test process, so a test never runs a stale
/// binary, also when run alone: `cargo test --test suite cli::` builds no binary of
/// the packages that own them (`auditlog-server`, `auditlog-client`), and
/// cargo sets `CARGO_BIN_EXE_*` only for a package's own binaries, which
/// the package owning `tests/` has none of.
///
/// The nested build must ask for what the test build compiled, else each
/// rebuilds what the other built and every run recompiles half the tree
/// (minutes on two cores); see [`nested_build`].
pub(crate) fn workspace_bin(_package: &str, name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    // Test binaries live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    BUILT.get_or_init(|| {
        let release = dir.file_name().is_some_and(|n| n == "release");
        let status = nested_build(release).status().unwrap();
        assert!(status.success(), "building the workspace binaries failed");
    });
    dir.join(name)
}

/// `cargo build --workspace --bins --examples`, quiet, in the environment
/// cargo would have without this test process:
/// - `--examples` makes cargo resolve features with the dev-dependencies,
///   as `cargo test` does, so the server binary has `fault-injection` (a
///   dev-dependency feature) and every library the binaries link is the
///   test build's own, not a second copy with other features. (The one
///   example is built by `cargo test` anyway.)
/// - The variables cargo sets for the running test (`CARGO_MANIFEST_DIR`,
///   `CARGO_PKG_*`, `OUT_DIR`, ...) are removed: build scripts that watch
///   them (ring's does) would otherwise rerun, and with them every crate
///   above, here and again in the next `cargo test`.
fn nested_build(release: bool) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "-q", "--workspace", "--bins", "--examples"]);
    if release {
        build.arg("--release");
    }
    for (key, _) in std::env::vars_os() {
        if set_by_cargo_for_the_test(&key.to_string_lossy()) {
            build.env_remove(key);
        }
    }
    build
}

/// Whether `key` is one of the variables cargo sets for a crate it runs
/// (rather than one that configures cargo, such as `CARGO_TARGET_DIR`).
fn set_by_cargo_for_the_test(key: &str) -> bool {
    const EXACT: [&str; 5] = [
        "OUT_DIR",
        "CARGO_CRATE_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
    ];
    const PREFIXES: [&str; 3] = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_"];
    EXACT.contains(&key) || PREFIXES.iter().any(|p| key.starts_with(p))
}

/// The `auditlog` CLI binary (built if missing, as [`workspace_bin`] does).
pub(crate) fn cli_bin() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| workspace_bin("auditlog-client", "auditlog"))
}

/// What one run of a program did.
#[derive(Debug)]
pub(crate) struct Finished {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `program` with its stdout and stderr piped, stdin empty, and without
/// `AUDITLOG_SERVER`, `RUST_BACKTRACE` and `RUST_LOG`, so the caller's shell
/// cannot change what is tested.
pub(crate) fn piped_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .env_remove("AUDITLOG_SERVER")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Waits for `child` to exit; kills it and fails the test as a hang, naming
/// it `what`, when it outlives `deadline`. Blocks the thread.
pub(crate) fn wait_or_kill(
    child: &mut Child,
    deadline: Duration,
    what: impl std::fmt::Display,
) -> std::process::ExitStatus {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `program ARGS` with `env` added to its end (a [`piped_command`], in
/// a blocking task, so an in-process server keeps serving), failing the test
/// as a hang if it outlives `deadline`.
pub(crate) async fn run_to_end(
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    deadline: Duration,
) -> Finished {
    tokio::task::spawn_blocking(move || {
        let mut child = piped_command(&program)
            .args(&args)
            .envs(env)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        let stdout = read_all(child.stdout.take().unwrap());
        let stderr = read_all(child.stderr.take().unwrap());
        let what = format!("{} {args:?}", program.display());
        let status = wait_or_kill(&mut child, deadline, what);
        Finished {
            code: status.code().unwrap_or(-1),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        }
    })
    .await
    .unwrap()
}

/// Reads a pipe to its end on a thread of its own.
pub(crate) fn read_all(
    mut pipe: impl std::io::Read + Send + 'static,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs `auditlog --server <url> ARGS` without `AUDITLOG_TOKEN`, in a
/// blocking task so an in-process server keeps serving; returns (exit code,
/// stdout, stderr), both of which must be UTF-8.
pub(crate) async fn cli(url: &str, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(cli_bin());
    command
        .arg("--server")
        .arg(url)
        .args(args)
        .env_remove("AUDITLOG_TOKEN");
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}
