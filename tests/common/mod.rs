//! Shared helpers for the end-to-end tests: a real server on 127.0.0.1 port 0
//! with its data in a temp dir, reached through the real client. One file
//! per concern, everything re-exported here (the fake endpoints under
//! `common::endpoints`):
//!
//! - `server.rs`: [`TestServer`], the server in this process (clean stop,
//!   restart on the same directory, or on the same port too), and
//!   [`TEST_KEY`].
//! - `process.rs`: [`ServerProcess`], the `auditlog-server` binary as a
//!   child, for SIGKILL, signals, config files (TLS too) and its stderr.
//! - `pki.rs`: [`Pki`], a CA and certificates minted for one test.
//! - `runs.rs`: building the workspace's binaries and running the CLI to its
//!   end ([`run_to_end`], [`cli`]).
//! - `health_reflection.rs`: the health service and server reflection.
//! - `writers.rs`: [`Writers`], load that races a crash or a shutdown.
//! - `checks.rs`: what the log holds through the API ([`assert_whole`]).
//! - `disk.rs`: the files behind the server's back: reading, tampering,
//!   forging and re-signing record lines, listing segments.
//! - `nats.rs`: [`NatsCluster`], real `nats-server` processes with JetStream
//!   for the cluster-mode tests (`nats_bin.rs`: where the binary is);
//!   `cluster.rs` (as `common::cluster`): auditlog nodes on it, and who
//!   holds the lease (`lease.rs`, shared with the cluster bench).
//! - `wait.rs`: [`wait_until`], polling with a deadline.
//! - `witness.rs` (as `common::witness`): what a verifier outside the
//!   server holds: verifier keys, checkpoints, proof hashes, and a round of
//!   the witness (`auditlog checkpoint watch`).
//! - `endpoints/`: the SMTP sink and the HTTP receiver the server sends to.
//! - `deploy.rs`: the metrics `deploy/`'s dashboard and alert rules name.

// The benches include parts of it (`#[path]`), which use a part of those.
#![allow(clippy::unwrap_used)]

mod checks;
pub(crate) mod cluster;
mod deploy;
mod disk;
pub(crate) mod endpoints;
mod health_reflection;
mod lease;
mod nats;
mod nats_bin;
mod pki;
mod process;
mod runs;
mod server;
mod wait;
pub(crate) mod witness;
mod writers;

pub(crate) use checks::{all_events, all_stored_lines, assert_whole, export_from, problems, seqs};
pub(crate) use deploy::{deploy_exprs, is_exposed, metric_names};
pub(crate) use disk::{
    copy_dir, edit_line, field, files, hmac_hex, log_bytes, plain_sealed, read_lines, record_line,
    resign, signed, tamper, unsigned_part, with_signature,
};
pub(crate) use health_reflection::{
    health, health_of, reflection_v1_services, reflection_v1alpha_file, wait_for_health,
};
pub(crate) use nats::{NatsCluster, nats_server_bin};
pub(crate) use pki::Pki;
pub(crate) use process::{ServerProcess, grpc_frame, raw_call};
pub(crate) use runs::{
    Finished, cli, cli_bin, piped_command, read_all, run_to_end, wait_or_kill, workspace_bin,
};
pub(crate) use server::{TEST_KEY, TestServer, small_window_client, with_test_key};
pub(crate) use wait::{DEADLINE, wait_until, wait_until_within};
pub(crate) use writers::{Writers, keyed, send};
