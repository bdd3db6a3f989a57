//! Whether the fault-injection hooks look for their files: in tests and
//! `fault-injection` builds, `FAIL_NEXT_FSYNC` (the syncer, at every
//! `fdatasync`), `FAIL_SEALING` (each sealing step), `HOLD_VERIFICATION`
//! and `HOLD_APPLY` (each verification, each message a replica applies)
//! in the data directory. Each look is a system call, and the benches are
//! built with the feature (it is a dev-dependency's), so a benchmark
//! switches the hooks off for its process ([`crate::bench::without_fault_hooks`]):
//! it measures the server, not the test hooks (the syncer's `unlink` was
//! about 1 % of a single caller's call, 2026-12-05).

use std::sync::atomic::{AtomicBool, Ordering};

static ON: AtomicBool = AtomicBool::new(true);

/// Whether the hooks look for their files: always, but in a benchmark.
pub(crate) fn hooks_on() -> bool {
    ON.load(Ordering::Relaxed)
}

pub(crate) fn switch_off() {
    ON.store(false, Ordering::Relaxed);
}
