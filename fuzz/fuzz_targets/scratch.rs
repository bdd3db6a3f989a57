//! The scratch directory of the targets that work on a data directory
//! (`recovery`, `apply`): one per process, emptied by the entry point
//! before each input, on tmpfs where there is one (they sync every file
//! they touch, and an fsync there costs nothing: ten times the executions
//! per second).

use std::path::Path;
use std::sync::OnceLock;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

pub(crate) fn dir() -> &'static Path {
    DIR.get_or_init(|| {
        let made = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir());
        made.unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"))
    })
    .path()
}
