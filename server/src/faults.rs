//! Whether the fault-injection hooks look for their files: in tests and
//! `fault-injection` builds, `FAIL_NEXT_FSYNC` (the syncer, at every
//! `fdatasync`), `FAIL_SEALING` (each sealing step), `HOLD_VERIFICATION`
//! and `HOLD_APPLY` (each verification, each message a replica applies)
//! in the data directory. Each look is a system call, and the benches are
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
