//! Generates the server side of `AuditService` over the messages the
//! `auditlog-proto` crate generates, but for a few:
//!
//! - `StreamEventsResponse` is the server's own type
//!   (`crate::service::stream::Encoded`), an event already encoded, so a
//!   group of live events is encoded once for every follower instead of once
//!   per follower;
//! - `QueryResponse` is too (`crate::service::query::EncodedPage`): a page's
//!   events are encoded from the stored records' own strings, with no
//!   `pb::Event` and no `Struct` of maps in between;
//! - `LogResponse` and `LogBatchResponse` are too
//!   (`crate::service::receipt_bytes`): receipts encoded from the store's
//!   own, with no `pb::Receipt` of copies;
//! - `LogRequest`, `LogBatchRequest` and `EventInput` are generated here
//!   again, with `google.protobuf.Struct` as the server's own decoder
//!   (`crate::service::details::WireDetails`), so each event's `details`
//!   decode straight into the JSON text its line holds;
//! - requests are decoded from one slice (`crate::service::codec`).
//!
//! Clients and every other message are the `auditlog-proto` crate's; the
//! bytes on the wire are the same.
//!
//! Sets `BUILD_GIT_REVISION` (not `AUDITLOG_`-prefixed: `cargo test` and
//! `cargo run` also put it in the environment, where the server would read it
//! as configuration), the git revision `auditlog_build_info` reports:
//! `git rev-parse --short HEAD`, or `unknown` where git or the repository is
//! missing (a source tarball, a container build without `.git`).
//!
//! The script reruns only when that revision can have changed: when this
//! worktree's `HEAD` moves, or the one branch it points at does. Watching
//! every branch (all of `refs/heads`) would rebuild the crate on every
//! commit anywhere in the repository, from any of its worktrees.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    generate_audit_service()?;
    let revision = git(&["rev-parse", "--short", "HEAD"])
        .filter(|s| s.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=BUILD_GIT_REVISION={revision}");
    println!("cargo:rerun-if-changed=build.rs");
    // Without git the script runs once.
    for path in watched() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    Ok(())
}

/// The requests that carry events: generated here so that their events are
/// the server's own `EventInput` (below).
const OWN_MESSAGES: [&str; 2] = ["LogRequest", "LogBatchRequest"];

/// The event itself, written by hand (`crate::service::event_input`): its
/// short strings decode inline and its `details` straight into JSON text
/// (`crate::service::details`).
const EVENT_INPUT: &str = "EventInput";

/// The answers the server encodes itself (`extern_path` below).
const ENCODED: [&str; 4] = [
    "StreamEventsResponse",
    "QueryResponse",
    "LogResponse",
    "LogBatchResponse",
];

fn generate_audit_service() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not when it is built: cargo reuses one
    // build of this script for every checkout sharing a target directory,
    // and a path fixed at its build would be another checkout's.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?;
    let proto = Path::new(&manifest).join("../proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let mut fds = protox::compile(["auditlog/v1/audit.proto"], [&proto])?;
    for file in &mut fds.file {
        file.service.retain(|s| s.name() == "AuditService");
    }
    let mut config = tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .codec_path("crate::service::codec::SliceCodec")
        .extern_path(
            ".auditlog.v1.StreamEventsResponse",
            "crate::service::stream::Encoded",
        )
        .extern_path(
            ".auditlog.v1.QueryResponse",
            "crate::service::query::EncodedPage",
        )
        .extern_path(
            ".auditlog.v1.LogResponse",
            "crate::service::receipt_bytes::LogAnswer",
        )
        .extern_path(
            ".auditlog.v1.LogBatchResponse",
            "crate::service::receipt_bytes::LogBatchAnswer",
        )
        .extern_path(
            ".google.protobuf.Struct",
            "crate::service::details::WireDetails",
        )
        .extern_path(
            format!(".auditlog.v1.{EVENT_INPUT}"),
            "crate::service::event_input::EventInput",
        );
    // Every other message and enum is the auditlog-proto crate's; only
    // those named here are generated again, here, with their events as the
    // server's own `EventInput`.
    for file in &fds.file {
        let names = file.message_type.iter().map(|m| m.name());
        for name in names.chain(file.enum_type.iter().map(|e| e.name())) {
            if !OWN_MESSAGES.contains(&name) && !ENCODED.contains(&name) && name != EVENT_INPUT {
                config = config.extern_path(
                    format!(".auditlog.v1.{name}"),
                    format!("::auditlog_proto::v1::{name}"),
                );
            }
        }
    }
    config.compile_fds(fds)?;
    Ok(())
}

/// The files whose change can move `HEAD`'s revision: this worktree's
/// `HEAD` (its own, in a linked worktree), and, when it names a branch,
/// that branch's ref file and `packed-refs` (where `git pack-refs` moves
/// it) in the repository's common directory. Only files that exist are
/// named, since cargo reruns a script on every build for a missing one.
fn watched() -> Vec<PathBuf> {
    let Some(git_dir) = git(&["rev-parse", "--git-dir"]).map(PathBuf::from) else {
        return Vec::new();
    };
    let mut paths = vec![git_dir.join("HEAD")];
    // A detached HEAD holds the revision itself: HEAD is all there is.
    if let (Some(branch), Some(common)) = (
        git(&["symbolic-ref", "-q", "HEAD"]),
        git(&["rev-parse", "--git-common-dir"]).map(PathBuf::from),
    ) {
        let loose = common.join(&branch);
        if loose.exists() {
            paths.push(loose);
        } else if let Some(dir) = loose.ancestors().skip(1).find(|d| d.exists()) {
            // Packed only (or not born yet): the next commit writes the
            // loose file, so the nearest folder on its way is watched until
            // it exists.
            paths.push(dir.to_path_buf());
        }
        paths.push(common.join("packed-refs"));
        // A repository with the reftable backend keeps every ref there.
        paths.push(common.join("reftable"));
    }
    paths.retain(|p| Path::exists(p));
    paths
}

/// What `git ARGS` prints, trimmed; `None` if it fails or prints nothing.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}
