//! Chain verification: walking stored lines in order and reporting, as data,
//! every way they differ from what the writer wrote.
//!
//! Every record is signed with HMAC-SHA256 under the key its `key_id` names
//! and carries the previous record's signature as `prev` (format in
//! `record`). [`Verifier`] walks the lines of one stretch of the log in
//! order, checking each line's MAC, its seq against the one expected, and its
//! `prev` against the signature before it; `verify` feeds it the files.
//!
//! Invariant: every problem is a [`Finding`] in the [`Report`], located by
//! seq, file and line, never an error: a verification that finds tampering
//! has succeeded.

use std::collections::HashMap;

use super::record::{LineError, MacCheck, Record, RecordHead};
use crate::keys::Keyring;

/// What kind of problem a verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    Malformed,
    BadSignature,
    ChainBreak,
    SeqGap,
    SeqOutOfOrder,
    Truncated,
    UnknownKey,
    CheckpointMismatch,
    SegmentMissing,
    SegmentModified,
    SegmentUnreadable,
    SegmentUnlisted,
    ManifestModified,
    WrongKey,
    HeadModified,
    TreeMismatch,
    RetiredKey,
}

/// One problem, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    pub seq: u64,
    pub line: u64,
    pub file: String,
    pub message: String,
}

/// The outcome of a verification (of the whole log, or of one segment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub events_checked: u64,
    /// The first record read: its seq and its `prev`.
    pub first: Option<(u64, String)>,
    pub head_seq: u64,
    pub head_signature: String,
    pub findings: Vec<Finding>,
    /// Checkpoint seqs found in the log with the signature given.
    pub checkpoints_found: Vec<u64>,
    /// How many segment files were read.
    pub segments_checked: u64,
    /// Where this stretch's records change key (not merged by `absorb`).
    pub(crate) keys: KeyOrder,
}

/// Where one stretch of the log (a segment file) changes key, for the rule
/// that a retired key signs nothing after the signing key has: only
/// records whose MAC verifies count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyOrder {
    /// The seq of the first record under the signing key.
    pub(crate) first_active: Option<u64>,
    /// The first record under a retired key, and how many there are.
    pub(crate) first_retired: Option<Located>,
    pub(crate) retired: u64,
    /// The same, counting only those after `first_active`.
    pub(crate) first_retired_after: Option<Located>,
    pub(crate) retired_after: u64,
}

/// A record under a retired key: its seq, line and key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Located {
    pub(crate) seq: u64,
    pub(crate) line: u64,
    pub(crate) key_id: String,
}

impl KeyOrder {
    fn saw(&mut self, seq: u64, line: u64, key_id: &str, active: bool) {
        if active {
            self.first_active.get_or_insert(seq);
            return;
        }
        let here = || Located {
            seq,
            line,
            key_id: key_id.to_owned(),
        };
        self.retired += 1;
        self.first_retired.get_or_insert_with(here);
        if self.first_active.is_some() {
            self.retired_after += 1;
            self.first_retired_after.get_or_insert_with(here);
        }
    }
}

/// The rule over the whole log, fed its stretches in seq order: a record
/// under a retired key after the first under the signing key is a
/// [`FindingKind::RetiredKey`], one finding per stretch.
#[derive(Debug, Default)]
pub(crate) struct KeyRule {
    /// The first seq signed with the signing key, once seen.
    first_active: Option<u64>,
}

impl KeyRule {
    /// Checks the next stretch, read from `file`.
    pub(crate) fn next(&mut self, keys: &KeyOrder, file: &str, active: &str) -> Option<Finding> {
        let (offender, count, since) = match self.first_active {
            Some(since) => (keys.first_retired.as_ref(), keys.retired, since),
            None => {
                let since = keys.first_active?;
                self.first_active = Some(since);
                (keys.first_retired_after.as_ref(), keys.retired_after, since)
            }
        };
        let at = offender?;
        Some(Finding {
            kind: FindingKind::RetiredKey,
            seq: at.seq,
            line: at.line,
            file: file.to_owned(),
            message: format!(
                "seq {} (line {} of {file}) is signed with retired key {:?}, after seq {since} \
                 was signed with {active:?}, the key that signs now ({count} such record(s) in \
                 {file}): a retired key signs nothing more, so whoever holds the old key wrote \
                 it, or {:?} was brought back as the signing key under its old id (give a key \
                 that comes back a new id)",
                at.seq, at.line, at.key_id, at.key_id
            ),
        })
    }
}

impl Report {
    /// Adds the findings and counts of `other`, a later part of the log.
    pub fn absorb(&mut self, other: Report) {
        self.events_checked += other.events_checked;
        if self.first.is_none() {
            self.first = other.first;
        }
        if other.head_seq >= self.head_seq && !other.head_signature.is_empty() {
            self.head_seq = other.head_seq;
            self.head_signature = other.head_signature;
        }
        self.findings.extend(other.findings);
        self.checkpoints_found.extend(other.checkpoints_found);
        self.segments_checked += other.segments_checked;
    }

    /// Reports every checkpoint not found.
    pub fn check_checkpoints(&mut self, checkpoints: &HashMap<u64, String>, file: &str) {
        let mut missing: Vec<_> = checkpoints
            .iter()
            .filter(|(seq, _)| !self.checkpoints_found.contains(seq))
            .collect();
        missing.sort();
        for (seq, signature) in missing {
            self.findings.push(Finding {
                kind: FindingKind::CheckpointMismatch,
                seq: *seq,
                line: 0,
                file: file.to_owned(),
                message: format!(
                    "checkpoint seq {seq} with signature {signature} is not in the log as given: \
                     the record was modified or removed, or the receipt is not from this log"
                ),
            });
        }
    }

    /// Replaces the findings of a log whose every record checked fails its
    /// MAC while the chain holds (no record out of place, no `prev` that
    /// misses) by one [`FindingKind::WrongKey`]: the bytes are as the server
    /// wrote them and only the key differs, so this is a wrong or replaced
    /// key, not every record modified. One record alone cannot tell.
    pub fn check_key(&mut self, key_id: &str, file: &str) {
        let bad = |k: FindingKind| k == FindingKind::BadSignature;
        let sound = |k: FindingKind| {
            !matches!(
                k,
                FindingKind::ChainBreak
                    | FindingKind::SeqGap
                    | FindingKind::SeqOutOfOrder
                    | FindingKind::Malformed
            )
        };
        let failed = self.findings.iter().filter(|f| bad(f.kind)).count() as u64;
        if self.events_checked < 2
            || failed != self.events_checked
            || !self.findings.iter().all(|f| sound(f.kind))
        {
            return;
        }
        let first = self
            .findings
            .iter()
            .find(|f| bad(f.kind))
            .map_or(0, |f| f.seq);
        self.findings.retain(|f| !bad(f.kind));
        self.findings.insert(
            0,
            Finding {
                kind: FindingKind::WrongKey,
                seq: first,
                line: 0,
                file: file.to_owned(),
                message: format!(
                    "all {failed} records checked fail their MAC under key {key_id:?} while the \
                     chain holds: the server holds a wrong or replaced key, not {failed} \
                     modified records; configure the key the log was written with"
                ),
            },
        );
    }

    /// Reports a log that ends before `acknowledged_head`, the highest seq
    /// the server acknowledged.
    pub fn check_truncation(&mut self, acknowledged_head: u64, file: &str) {
        if self.head_seq < acknowledged_head {
            let first_missing = self.head_seq + 1;
            self.findings.push(Finding {
                kind: FindingKind::Truncated,
                seq: first_missing,
                line: 0,
                file: file.to_owned(),
                message: format!(
                    "the log ends at seq {} but the server acknowledged events up to seq \
                     {acknowledged_head}: seqs {first_missing}..={acknowledged_head} were cut from \
                     the end",
                    self.head_seq
                ),
            });
        }
    }
}

/// Walks the lines of one stretch of the log in order, checking each
/// record's MAC, its seq against the one expected, and its `prev` against the
/// signature of the record before it.
#[derive(Debug)]
pub(crate) struct Verifier<'k> {
    keyring: &'k Keyring,
    checkpoints: &'k HashMap<u64, String>,
    /// The signature the next record's `prev` must equal.
    prev: String,
    /// The seq the next record must have; `None` until the first record,
    /// when the verifier was told to take the first record as it is.
    expected: u64,
    /// Only records in this range are counted and reported; the others are
    /// still read, to check the chain into the range.
    range: std::ops::RangeInclusive<u64>,
    /// True until the first record when no starting point was given.
    unanchored: bool,
    /// The seq expected at the first of the unreadable lines read since the
    /// last record, if any ([`Verifier::check_line`]).
    unread_from: Option<u64>,
    report: Report,
}

impl<'k> Verifier<'k> {
    /// A verifier for records starting at `first_seq`, whose first `prev` must
    /// be `prev` (64 zeros at the start of the log). Checkpoints found are
    /// noted in the report.
    pub(crate) fn new(
        keyring: &'k Keyring,
        checkpoints: &'k HashMap<u64, String>,
        first_seq: u64,
        prev: &str,
    ) -> Verifier<'k> {
        Verifier {
            keyring,
            checkpoints,
            prev: prev.to_owned(),
            expected: first_seq,
            range: 0..=u64::MAX,
            unanchored: false,
            unread_from: None,
            report: Report::default(),
        }
    }

    /// A verifier for one stretch of the log whose starting point is checked
    /// by the caller: its first record's seq and `prev` are taken as they are
    /// (and returned in [`Report::first`]).
    pub(crate) fn unanchored(
        keyring: &'k Keyring,
        checkpoints: &'k HashMap<u64, String>,
    ) -> Verifier<'k> {
        Verifier {
            unanchored: true,
            ..Verifier::new(keyring, checkpoints, 0, "")
        }
    }

    /// Counts and reports only records whose seq is in `range`.
    pub(crate) fn with_range(mut self, range: std::ops::RangeInclusive<u64>) -> Verifier<'k> {
        self.range = range;
        self
    }

    fn find(&mut self, kind: FindingKind, seq: u64, file: &str, line: u64, message: String) {
        if !self.range.contains(&seq) {
            return;
        }
        self.report.findings.push(Finding {
            kind,
            seq,
            line,
            file: file.to_owned(),
            message,
        });
    }

    /// Checks one line (without its newline) at 1-based `line_no` of `file`.
    /// Returns the record's head (seq, key, `prev`, signature) when it could
    /// be read.
    pub(crate) fn check_line<'l>(
        &mut self,
        file: &str,
        line_no: u64,
        line: &'l [u8],
    ) -> Option<RecordHead<'l>> {
        let Some(head) = RecordHead::peek(line) else {
            let what = match Record::parse(line) {
                Err(LineError::NoSignature) => "has no trailing signature field".to_owned(),
                Err(LineError::SignatureMismatch) => {
                    "has a signature field that is not its last field".to_owned()
                }
                Err(LineError::Json(msg)) => format!("is not a valid record ({msg})"),
                Ok(_) => "does not have the record layout (fields out of order)".to_owned(),
            };
            let expected = self.expected;
            self.find(
                FindingKind::Malformed,
                expected,
                file,
                line_no,
                format!(
                    "line {line_no} of {file} {what}: it was modified or corrupted; seq \
                     {expected} was expected here"
                ),
            );
            // Whether this line took a record's place or was put in between
            // two, the next record tells: see below. Only for a line reported:
            // outside the range asked about, the record after it is checked
            // as ever, so that a range still says whether its first record
            // chains to the one before.
            if self.range.contains(&expected) {
                self.unread_from.get_or_insert(expected);
            }
            self.expected = self.expected.saturating_add(1);
            return None;
        };
        let seq = head.seq;
        if self.unanchored {
            self.unanchored = false;
            self.expected = seq;
            head.prev.clone_into(&mut self.prev);
            self.unread_from = None;
        }
        // After unreadable lines (each reported), the next record may carry
        // any seq from the one expected at the first of them (the lines were
        // put in: its `prev` must name the record before them) to the one
        // after the last (each took a record's place: its `prev` names a
        // record nobody can read, so it is not checked). Either way the lines
        // are the finding, not this record.
        let mut check_prev = true;
        if let Some(from) = self.unread_from.take()
            && (from..=self.expected).contains(&seq)
        {
            self.expected = seq;
            check_prev = seq == from;
        }
        let mac = head.check_mac(line, self.keyring);
        match mac {
            MacCheck::Valid => {
                let active = head.key_id == self.keyring.active().0;
                self.report.keys.saw(seq, line_no, head.key_id, active);
            }
            // The slow, full parse only runs on damage, to say which kind.
            MacCheck::Invalid => match Record::parse(line) {
                Ok(_) => self.find(
                    FindingKind::BadSignature,
                    seq,
                    file,
                    line_no,
                    format!(
                        "seq {seq} (line {line_no} of {file}): the signature does not match the \
                         record's bytes: the record was modified"
                    ),
                ),
                Err(e) => self.find(
                    FindingKind::Malformed,
                    seq,
                    file,
                    line_no,
                    format!(
                        "seq {seq} (line {line_no} of {file}) is not a valid record ({e}): it \
                         was modified or corrupted"
                    ),
                ),
            },
            MacCheck::UnknownKey => self.find(
                FindingKind::UnknownKey,
                seq,
                file,
                line_no,
                format!(
                    "seq {seq} (line {line_no} of {file}) is signed with key {:?}, which this \
                     server does not hold, so it cannot be checked (a key rotated out is kept \
                     as a [[retired_hmac_keys]] entry)",
                    head.key_id
                ),
            ),
        }
        let expected = self.expected;
        if seq > expected {
            let missing = if seq - expected == 1 {
                format!("seq {expected} is")
            } else {
                format!("seqs {expected}..={} are", seq - 1)
            };
            self.find(
                FindingKind::SeqGap,
                seq,
                file,
                line_no,
                format!(
                    "seq {seq} (line {line_no} of {file}) follows seq {}: {missing} missing \
                     (deleted, or moved further down)",
                    expected - 1
                ),
            );
        } else if seq < expected {
            self.find(
                FindingKind::SeqOutOfOrder,
                seq,
                file,
                line_no,
                format!(
                    "seq {seq} (line {line_no} of {file}) comes after seq {}: a record was \
                     inserted, duplicated or moved",
                    expected - 1
                ),
            );
        }
        if check_prev && head.prev != self.prev {
            self.find(
                FindingKind::ChainBreak,
                seq,
                file,
                line_no,
                format!(
                    "seq {seq} (line {line_no} of {file}) does not chain to the record before \
                     it (its prev is not that record's signature): records were deleted, \
                     inserted or reordered here"
                ),
            );
        }
        // A checkpoint is proven only by a record whose bytes are intact.
        if mac == MacCheck::Valid
            && let Some(sig) = self.checkpoints.get(&seq)
            && sig == head.signature
        {
            self.report.checkpoints_found.push(seq);
        }
        let report = &mut self.report;
        if report.first.is_none() {
            report.first = Some((seq, head.prev.to_owned()));
        }
        if self.range.contains(&seq) {
            report.events_checked += 1;
            if seq >= report.head_seq {
                report.head_seq = seq;
                report.head_signature.clear();
                report.head_signature.push_str(head.signature);
            }
        }
        // Saturating: a damaged line may claim seq u64::MAX.
        self.expected = self.expected.max(seq.saturating_add(1));
        self.prev.clear();
        self.prev.push_str(head.signature);
        Some(head)
    }

    /// Reports a problem that is not about one line (an unreadable file),
    /// located at the seq expected next.
    pub(crate) fn problem(&mut self, kind: FindingKind, file: &str, message: String) {
        let seq = self.expected;
        self.report.findings.push(Finding {
            kind,
            seq,
            line: 0,
            file: file.to_owned(),
            message,
        });
    }

    /// Reports a torn line (bytes after the last newline) at the end of `file`.
    pub(crate) fn torn_tail(&mut self, file: &str, line_no: u64, len: usize) {
        let expected = self.expected;
        self.find(
            FindingKind::Malformed,
            expected,
            file,
            line_no,
            format!(
                "line {line_no} of {file} is an incomplete record of {len} bytes without a \
                 newline: the file was cut or is being written outside the server"
            ),
        );
    }

    /// Counts one more segment file read.
    pub(crate) fn segment_read(&mut self) {
        self.report.segments_checked += 1;
    }

    /// Ends the walk.
    pub(crate) fn finish(self) -> Report {
        self.report
    }
}

#[cfg(test)]
mod tests;
