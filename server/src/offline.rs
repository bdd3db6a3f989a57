//! `auditlog-server --verify`: the log in a data directory verified with no
//! server running on it (a stopped server's directory, a backup, a copy),
//! as VerifyIntegrity verifies a running server's, without opening a port
//! or needing a client.
//!
//! The directory is locked, its keys loaded and checked, and the log opened
//! as a start opens it: recovery cuts what no caller was told was written
//! (a torn tail, an incomplete last batch, into `audit.log.quarantine`)
//! and finishes a compression a crash interrupted, the changes a start
//! makes, logged as a start logs them. Then the whole log is checked (every
//! record's MAC, the chain from the purge point, the manifest, each
//! segment's hash) and, when the directory's latest signed checkpoint can
//! be checked with the checkpoint signing key, the Merkle tree against it.
//!
//! Nothing is generated: a directory that holds no log is refused before
//! anything is created in it, and without the checkpoint signing key the
//! checkpoint is left unchecked and the report says so.

use std::sync::Arc;
use std::time::Instant;

use auditlog_proto::v1 as pb;

use crate::checkpoint::{self, Checkpoints};
use crate::config::Config;
use crate::keys::Keyring;
use crate::lock::DirLock;
use crate::metrics::Metrics;
use crate::store::{self, Store};
use crate::{ServerError, store_config};

/// What `--verify` found.
#[derive(Debug)]
pub struct Verified {
    /// The report, as VerifyIntegrity answers it.
    pub report: pb::VerifyIntegrityResponse,
    /// Why the signed checkpoint was not checked, when it was not.
    pub checkpoint_unchecked: Option<String>,
}

/// Verifies the log in `config.data_dir` (see the module doc). Blocking.
pub fn verify(config: &Config) -> Result<Verified, ServerError> {
    let dir = &config.data_dir;
    // Before the lock, which would create the directory.
    if !store::holds_log(dir)? {
        return Err(ServerError::NoLog {
            dir: dir.display().to_string(),
        });
    }
    let key = config.hmac_key_bytes()?;
    let retired = config.retired_hmac_key_bytes()?;
    let _lock = DirLock::acquire(dir)?;
    let keyring =
        Keyring::load(&config.hmac_key_id, key.as_deref(), dir, true)?.with_retired(retired);
    store::check_before_start(dir, &keyring)?;
    let key_file = config.checkpoint_key_file.as_deref();
    let key_path = checkpoint::key_path(key_file, dir);
    let (checkpoints, checkpoint_unchecked) = if key_path.exists() {
        let loaded = Checkpoints::load(&config.checkpoint_origin(), key_file, dir, false)?;
        (Some(loaded), None)
    } else {
        let note = dir.join(checkpoint::NOTE_FILE);
        let why = note.exists().then(|| {
            format!(
                "{} was not checked: there is no checkpoint signing key at {} (put the key \
                 there, or name it with checkpoint_key_file)",
                note.display(),
                key_path.display()
            )
        });
        (None, why)
    };
    let store = Store::open_with(
        store_config(config),
        keyring,
        Arc::new(Metrics::new()),
        true,
    )?;
    let latest = checkpoints.as_ref().and_then(Checkpoints::latest);
    let started = Instant::now();
    let verified = store.verify_with_tree(
        1,
        0,
        &[],
        Some(latest.map(|l| (l.size, l.root, checkpoint::NOTE_FILE))),
    );
    let elapsed = started.elapsed();
    store.shutdown();
    Ok(Verified {
        report: crate::service::verify_pb(verified?, elapsed),
        checkpoint_unchecked,
    })
}

impl Verified {
    /// Whether the log verified clean.
    pub fn ok(&self) -> bool {
        self.report.ok
    }

    /// The report as text: one line for a clean log, or a line and one line
    /// per problem, as `auditlog integrity` prints them.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for line in self.report.text_lines() {
            out.push_str(&printable(&line));
            out.push('\n');
        }
        if let Some(why) = &self.checkpoint_unchecked {
            out.push_str(&format!("note: {}\n", printable(why)));
        }
        out
    }

    /// The report as one JSON object: the fields `auditlog --json
    /// integrity` prints and `checkpoint_unchecked` (why the signed
    /// checkpoint was not checked, or null).
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = self.report.to_json();
        json["checkpoint_unchecked"] = self.checkpoint_unchecked.clone().into();
        json
    }
}

/// `text` with control characters and the invisible formatting ones
/// (bidirectional overrides, zero-width) escaped, so a file name chosen by
/// whoever could write into the directory cannot drive the terminal or
/// hide what it says.
fn printable(text: &str) -> String {
    let invisible = |c: char| matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}');
    text.chars()
        .map(|c| {
            if c.is_control() || invisible(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_line_escapes_what_a_terminal_would_act_on() {
        let verified = Verified {
            report: pb::VerifyIntegrityResponse {
                ok: false,
                events_checked: 3,
                problems: vec![pb::Problem {
                    kind: pb::ProblemKind::SegmentUnlisted as i32,
                    seq: 0,
                    line: 0,
                    file: "audit.\u{1b}[2J.log.gz".into(),
                    message: "audit.\u{1b}[2J\u{202e}.log.gz is unlisted\r\n".into(),
                }],
                ..Default::default()
            },
            checkpoint_unchecked: None,
        };
        let text = verified.to_text();
        assert_eq!(
            text,
            "FAILED: 1 problem(s) in 3 events checked\n  SEGMENT_UNLISTED     seq 0        \
             line 0        audit.\\u{1b}[2J\\u{202e}.log.gz is unlisted\\r\\n\n"
        );
    }
}
