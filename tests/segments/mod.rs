//! A log split into segments behaves like one file, stays readable with
//! standard tools, and reports tampering with a segment at the right place.
//!
//! Each test runs a real server (in-process, or the `auditlog-server` binary
//! for SIGKILL) through the real client, with a tiny `max_file_size_mb` or
//! explicit `Rotate` calls so the log spans many `audit.<UTC time>.log.gz`
//! segments, and edits the data directory behind the server's back where the
//! test is about tampering.
//!
//! Covered:
//! - the same ~3,000 events logged into a server with dozens of segments and
//!   into one with a single file give the same answers: queries by lead, type,
//!   workflow and time range with pagination, lead histories, statistics,
//!   streams from the start and from the middle, a follow stream across
//!   rotations; also after a restart (index rebuilt from the `.idx` files);
//!   verification is clean across every segment;
//! - every `.gz` decompresses as `zcat` does to JSON lines whose seqs and
//!   chain run on across files and into `audit.log`;
//! - tampering: a recompressed segment with one byte changed, a deleted
//!   segment (middle, first), two swapped segments, a manifest edited to hide
//!   a deleted segment, a truncated `.gz`, an unlisted `.gz`; and an untouched
//!   segmented log is clean;
//! - retention: old segments are purged, the purge is an event, verification
//!   starts after it, purged seqs are gone from every answer, a second run
//!   purges nothing, and a segment deleted by hand after a purge is still
//!   reported missing;
//! - `auditlog rotate --wait` from the CLI;
//! - SIGKILL while writers force rotations: nothing acknowledged is lost and
//!   the interrupted rotations are finished on start.
//!
//! One file per concern. Shared: events and writing (`writing.rs`), the
//! data directory (`data_dir.rs`) and comparing answers (`compare.rs`).
//! The tests: the same answers as one file (`same_answers.rs`), readable
//! with standard tools (`standard_tools.rs`), tampering (`tampering.rs`),
//! retention (`retention.rs`), rotation from the CLI (`cli_rotation.rs`),
//! and kill -9 while rotating (`kill_9.rs`).

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod cli_rotation;
mod compare;
mod data_dir;
mod kill_9;
mod retention;
mod same_answers;
mod standard_tools;
mod tampering;
mod writing;

use std::time::Duration;

use auditlog_server::Config;

/// `prev` of seq 1.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// A segment size of about 20 KB: a batch of 50 to 100 events fills one.
const TINY_MB: f64 = 0.02;
/// How long a wait for the server may take before the test fails as a hang.
const PATIENCE: Duration = Duration::from_secs(20);

const TYPES: [&str; 8] = [
    "lead_ingested",
    "lead_qualified",
    "lead_routed",
    "crm_update",
    "email_sent",
    "email_scheduled",
    "workflow_started",
    "error",
];
const WORKFLOWS: [&str; 3] = ["sales", "onboarding", "renewals"];
const ACTORS: [&str; 4] = ["system", "mailer", "crm-sync", "scorer"];

fn tiny(config: &mut Config) {
    config.max_file_size_mb = TINY_MB;
}
