//! Whether the fault-injection hooks look for their files: in tests and
//! `fault-injection` builds, `FAIL_NEXT_FSYNC` (the syncer, at every
//! `fdatasync`), `FAIL_SEALING` (each sealing step), `HOLD_VERIFICATION`,
//! `HOLD_APPLY` and `HOLD_IMPORT` (each verification, each message a
//! replica applies, each message `--cluster-import` published) in the data
//! directory. Each look is a system call, and the benches are
//! built with the feature (it is a dev-dependency's), so a benchmark
//! switches the hooks off for its process ([`crate::bench::without_fault_hooks`]):
//! it measures the server, not the test hooks (without the syncer's
//! `unlink`, a single caller's p50 was about 5 % lower, 2026-12-06).

use std::sync::atomic::{AtomicBool, Ordering};

static ON: AtomicBool = AtomicBool::new(true);

/// Whether the hooks look for their files: always, but in a benchmark.
pub(crate) fn hooks_on() -> bool {
    ON.load(Ordering::Relaxed)
}

pub(crate) fn switch_off() {
    ON.store(false, Ordering::Relaxed);
}

/// Waits while the hook file `<dir>/<name>` exists, looking every 20 ms:
/// a test holds a step there for as long as it needs.
#[cfg(feature = "fault-injection")]
pub(crate) async fn hold_while(dir: &std::path::Path, name: &str) {
    let hold = dir.join(name);
    while hooks_on() && hold.exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
