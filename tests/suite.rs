//! The end-to-end suite: every test of the real server, its binaries and
//! its clients, in one test binary. Each file or directory beside this one
//! is a module of it (`cargo test --test suite cluster::` runs one).
//!
//! One binary rather than one per file: the shared helpers (`common/`)
//! compile once and one executable links, where 54 each linked their own
//! copy (about 75 MB each, 4 GB in all, and minutes of linking on two
//! cores); and the tests share one pool of threads, so no file's slowest
//! test holds up the next file.

#![allow(clippy::unwrap_used)] // tests fail loudly on the first unexpected error

mod common;

mod adversarial;
mod alerts;
mod backup;
mod bad_input;
mod bundles;
mod callers;
mod checkpoint_publish;
mod cli;
mod client_nodes;
mod cluster;
mod cluster_attack;
mod cluster_checkpoints;
mod cluster_group;
mod cluster_import;
mod cluster_retention;
mod cluster_side_effects;
mod cluster_tls;
mod compliance;
mod damaged_files;
mod damaged_segments;
mod deploy;
mod details;
mod faults;
mod follow;
mod fuzz_regressions;
mod health_reflection;
mod hmac_rotation;
mod hostile_receivers;
mod hostile_server;
mod integrity;
mod key_rotation;
mod limits;
mod log_query;
mod metrics;
mod min_seq;
mod offline_verify;
mod performance;
mod proofs;
mod receipt_proofs;
mod recovery;
mod report;
mod secret_urls;
mod security;
mod segment_age;
mod segments;
mod server_binary;
mod shutdown;
mod smoke;
mod startup;
mod startup_truth;
mod stream;
mod stream_lines;
mod tracing;
mod tree_damage;
mod validation;
mod webhooks;
mod witness;
mod write_faults;
