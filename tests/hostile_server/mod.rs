//! The verifiers on the client's side against a hostile operator: a fake
//! auditlog server that signs what it likes with a real key and answers
//! whatever each test scripts (`fake.rs`), a raw HTTP/2 server that
//! misbehaves below gRPC, and hostile files. The client library and the
//! `auditlog` binary must refuse what is forged, with exit 1 and one line,
//! and never panic, hang, or print a raw terminal escape the server sent.
//!
//! - `transport.rs`: an answer whose headers come and whose message never
//!   does; a message that declares 4 GiB.
//! - `proofs.rs`: `checkpoint`, `proof inclusion`, `proof consistency`
//!   against checkpoints of another key, notes with a bad second
//!   signature, proofs with hashes added or missing or for another leaf,
//!   sizes of 0 and u64::MAX.
//! - `witness.rs`: `checkpoint watch` (with `--mirror`) against rollbacks,
//!   forks, absurd sizes and mirrors fed records the checkpoint did not
//!   sign.
//! - `receipts.rs`: receipts with proofs of a record other than the event
//!   sent.
//! - `follow.rs`: `Client::follow` resumed on a stream that replays
//!   records it showed.
//! - `escapes.rs`: terminal escapes in origins, signer names, lines and
//!   error messages the server sends.
//! - `paging.rs`: query pages that never end (the same page again and
//!   again, empty pages with a next token).
//! - `backup.rs`: `auditlog backup` fed paths outside its directory, more
//!   bytes than a file declared, and a stream that ends early.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

use crate::common;

mod backup;
mod escapes;
mod fake;
mod follow;
mod paging;
mod proofs;
mod receipts;
mod transport;
mod witness;

use std::time::Duration;

use common::{Finished, cli_bin, run_to_end};

/// Longer than any run may take: a run past it is a hang, and fails.
pub(crate) const RUN_DEADLINE: Duration = Duration::from_secs(30);

/// `auditlog --server URL ARGS`, to its end.
pub(crate) async fn auditlog(url: &str, args: &[&str]) -> Finished {
    let mut all = vec!["--server".to_owned(), url.to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    run_to_end(cli_bin().to_path_buf(), all, Vec::new(), RUN_DEADLINE).await
}

/// Asserts a run failed with exit 1 and one line on stderr holding `want`,
/// nothing on stdout claiming success.
pub(crate) fn refused(run: &Finished, want: &str) {
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(want), "wanted {want:?}: {run:?}");
    assert_eq!(run.stderr.trim_end().lines().count(), 1, "{run:?}");
    assert!(!run.stdout.contains("OK"), "{run:?}");
}
