//! Tail recovery on a log of arbitrary bytes in a temporary directory,
//! asserting that it only cuts what was never acknowledged.

#![no_main]

use std::sync::OnceLock;

/// One directory per process, emptied by the entry point before each input.
/// On tmpfs where there is one: recovery syncs every file it touches, and
/// an fsync there costs nothing (ten times the executions per second).
static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = DIR.get_or_init(|| {
        let made = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir());
        made.unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"))
    });
    auditlog_server::fuzzing::recovery(dir.path(), data);
});
