//! How background threads (the sealer, verifications) yield the CPU to
//! ingest and queries.

/// Makes the calling thread, and only it, background work: nice 19, the
/// lowest priority. A thread's priority once lowered cannot be raised again
/// without privileges, so a thread shared with other work is never given
/// to this. (`SCHED_IDLE` as well was measured on 2026-12-04 and changed no
/// ingest figure: benches/journal/2026-12-04.md.)
pub(super) fn background(what: &str) {
    let this_thread = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(this_thread), 19) {
        tracing::debug!(error = %e, thread = what, "could not lower the thread's priority");
    }
}
