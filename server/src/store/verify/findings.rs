//! Findings that come from what the store knows rather than from reading
//! the log's lines: `audit.log` gone while the server runs, what a start
//! found against the persisted head (cuts, an edited head file, a
//! replica's records still to be taken in again), and the directory's own
//! (a manifest that fails its MAC, segment files it does not list).

use crate::keys::Keyring;
use crate::store::chain::{Finding, FindingKind, Report};
use crate::store::head::HEAD_FILE;
use crate::store::manifest::MANIFEST_FILE;
use crate::store::shared::{LOG_FILE, Shared};

/// Reports a manifest that is not `authentic` (that fails its MAC, or
/// names as its signer a key `unheld` that `keyring` does not hold), and
/// the segment files it does not list (`unlisted`).
pub(super) fn report_directory(
    total: &mut Report,
    (authentic, unheld): (bool, &str),
    unlisted: &[String],
    keyring: &Keyring,
) {
    if !authentic {
        // An unreadable manifest names no key.
        let (kind, message) = if !unheld.is_empty() && keyring.get(unheld).is_none() {
            (
                FindingKind::UnknownKey,
                format!(
                    "{MANIFEST_FILE} names key {unheld:?} as its signer, which this server does \
                     not hold, so it cannot be checked (a key rotated out is kept as a \
                     [[retired_hmac_keys]] entry; otherwise the file was edited)"
                ),
            )
        } else {
            (
                FindingKind::ManifestModified,
                format!(
                    "{MANIFEST_FILE} does not match its MAC: it was edited outside the server \
                     (for example to hide a deleted segment)"
                ),
            )
        };
        total.findings.push(Finding {
            kind,
            seq: 0,
            line: 0,
            file: MANIFEST_FILE.to_owned(),
            message,
        });
    }
    for name in unlisted {
        total.findings.push(Finding {
            kind: FindingKind::SegmentUnlisted,
            seq: 0,
            line: 0,
            file: name.clone(),
            message: format!(
                "{name} is a segment file the manifest does not list: it was added or \
                 renamed outside the server, or the manifest lost its entry"
            ),
        });
    }
}

/// Reports `audit.log` missing from the data directory while the server
/// runs (moved or deleted under it; the store refuses writes once it
/// notices): the acknowledged seqs from `from_seq` up to `required` that it
/// held are missing (TRUNCATED, as a start reports the same file deleted
/// while the server was down), or, when it held none of them, the file
/// alone (SEGMENT_MISSING). The rest of the log has been checked as usual.
pub(super) fn report_active_missing(total: &mut Report, from_seq: u64, required: u64) {
    let todo = "restore it (put the file back as <data_dir>/audit.log) and restart the server, \
                then verify again";
    let first = (total.head_seq + 1).max(from_seq);
    let (kind, seq, message) = if first <= required {
        (
            FindingKind::Truncated,
            first,
            format!(
                "{LOG_FILE} is missing from the data directory: it was moved or deleted while \
                 the server ran, and with it seqs {first}..={required}, which the server \
                 acknowledged; {todo}"
            ),
        )
    } else {
        (
            FindingKind::SegmentMissing,
            0,
            format!(
                "{LOG_FILE} is missing from the data directory: it was moved or deleted while \
                 the server ran (it held no acknowledged event of the range checked, so none \
                 is lost, but nothing can be written until it is back); {todo}"
            ),
        )
    };
    total.findings.push(Finding {
        kind,
        seq,
        line: 0,
        file: LOG_FILE.to_owned(),
        message,
    });
}

/// Reports what a start found against the persisted head: each cut of
/// acknowledged seqs (in `range`, and not purged since), and a head file
/// changed outside the server.
pub(super) fn report_head(
    shared: &Shared,
    total: &mut Report,
    range: &std::ops::RangeInclusive<u64>,
    start_seq: u64,
) {
    let head = shared.head.lock().map(|h| h.clone()).unwrap_or_default();
    for cut in &head.cuts {
        if cut.last < start_seq || cut.first > *range.end() || cut.last < *range.start() {
            continue;
        }
        total.findings.push(Finding {
            kind: FindingKind::Truncated,
            seq: cut.first,
            line: 0,
            file: LOG_FILE.to_owned(),
            message: format!(
                "seqs {}..={} were acknowledged but missing from the log when the server \
                 started: they were cut (or {LOG_FILE} deleted) while it was down, or under it; \
                 later events go on after seq {}",
                cut.first, cut.last, cut.last
            ),
        });
    }
    // Acknowledged seqs past the chain's end that no cut names: a
    // replica's records lost while its node was down, which it is taking
    // in again from the stream (`head::at_start`); until they are back
    // the log is not whole.
    let chain = shared.chain_seq();
    let named = |seq: u64| head.cuts.iter().any(|c| c.first <= seq && seq <= c.last);
    if head.seq > chain && !named(chain + 1) && range.contains(&(chain + 1)) {
        total.findings.push(Finding {
            kind: FindingKind::Truncated,
            seq: chain + 1,
            line: 0,
            file: LOG_FILE.to_owned(),
            message: format!(
                "seqs {}..={} were applied here but are missing from the log: it was cut while \
                 the node was down, or under it; this replica takes them in again from the \
                 stream (if the stream no longer holds them, seed the node: docs/cluster.md)",
                chain + 1,
                head.seq
            ),
        });
    }
    if head.edited {
        total.findings.push(Finding {
            kind: FindingKind::HeadModified,
            seq: 0,
            line: 0,
            file: HEAD_FILE.to_owned(),
            message: format!(
                "{HEAD_FILE} (the last acknowledged seq, kept outside the log) was changed or \
                 damaged outside the server when it started: a cut of the log's tail made while \
                 it was down cannot be ruled out"
            ),
        });
    }
}
