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
            MacCheck::Valid => {}
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
                     server does not hold, so it cannot be checked",
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
mod tests {
    use super::*;
    use crate::store::record::{GENESIS, NewEvent};

    fn keyring() -> Keyring {
        Keyring::new("k1", vec![7u8; 32])
    }

    /// Seals `n` chained records and returns their lines without newlines.
    fn log(n: u64) -> Vec<Vec<u8>> {
        let keys = keyring();
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let ev = NewEvent {
                    event_type: "email_sent".into(),
                    actor: "system".into(),
                    caller: None,
                    lead_id: Some(format!("L{seq}").into()),
                    workflow: None,
                    details: Default::default(),
                    idempotency_key: None,
                };
                let (rec, mut line) = Record::seal(
                    ev,
                    seq,
                    format!("id{seq}").into(),
                    seq as i64,
                    None,
                    &prev,
                    &keys,
                );
                prev = rec.signature.into_string();
                line.pop();
                line
            })
            .collect()
    }

    /// Verifies `lines` with the server having acknowledged `head`, and
    /// returns (kind, seq, line) of each finding.
    fn check(lines: &[Vec<u8>], head: u64) -> Vec<(FindingKind, u64, u64)> {
        let keys = keyring();
        let none = HashMap::new();
        let mut v = Verifier::new(&keys, &none, 1, GENESIS);
        for (i, line) in lines.iter().enumerate() {
            v.check_line("audit.log", i as u64 + 1, line);
        }
        let mut report = v.finish();
        report.check_truncation(head, "audit.log");
        report
            .findings
            .iter()
            .map(|f| (f.kind, f.seq, f.line))
            .collect()
    }

    use FindingKind::*;

    #[test]
    fn untouched_log_is_clean() {
        let lines = log(10);
        assert_eq!(check(&lines, 10), vec![]);
        let keys = keyring();
        let none = HashMap::new();
        let mut v = Verifier::new(&keys, &none, 1, GENESIS);
        for (i, l) in lines.iter().enumerate() {
            v.check_line("f", i as u64 + 1, l);
        }
        let report = v.finish();
        assert_eq!(report.events_checked, 10);
        assert_eq!(report.head_seq, 10);
    }

    #[test]
    fn modified_record_is_a_bad_signature_at_its_seq() {
        let mut lines = log(10);
        let text = String::from_utf8(lines[4].clone())
            .unwrap()
            .replace("L5", "L6");
        lines[4] = text.into_bytes();
        assert_eq!(check(&lines, 10), vec![(BadSignature, 5, 5)]);
    }

    #[test]
    fn deleted_record_is_a_gap_and_chain_break_at_the_next() {
        let mut lines = log(10);
        lines.remove(3);
        assert_eq!(check(&lines, 10), vec![(SeqGap, 5, 4), (ChainBreak, 5, 4)]);
    }

    #[test]
    fn inserted_copy_is_out_of_order_and_breaks_the_chain() {
        let mut lines = log(10);
        let copy = lines[2].clone();
        lines.insert(6, copy);
        let found = check(&lines, 10);
        assert!(found.contains(&(SeqOutOfOrder, 3, 7)), "{found:?}");
        assert!(found.contains(&(ChainBreak, 3, 7)), "{found:?}");
        assert!(found.contains(&(ChainBreak, 7, 8)), "{found:?}");
    }

    #[test]
    fn swapped_records_are_located() {
        let mut lines = log(10);
        lines.swap(3, 4);
        let found = check(&lines, 10);
        assert!(found.contains(&(SeqGap, 5, 4)), "{found:?}");
        assert!(found.contains(&(SeqOutOfOrder, 4, 5)), "{found:?}");
        assert!(found.iter().all(|f| f.2 >= 4 && f.2 <= 6), "{found:?}");
    }

    #[test]
    fn cut_tail_is_truncation_after_the_last_record() {
        let mut lines = log(10);
        lines.truncate(7);
        assert_eq!(check(&lines, 10), vec![(Truncated, 8, 0)]);
    }

    #[test]
    fn a_line_claiming_the_last_u64_seq_is_reported_without_overflow() {
        // `seq + 1` overflowed on a line with seq u64::MAX (a panic with
        // overflow checks); the line and a damaged one after it are findings.
        let mut lines = log(2);
        let text = String::from_utf8(lines[1].clone()).unwrap();
        lines[1] = text
            .replacen("{\"seq\":2,", &format!("{{\"seq\":{},", u64::MAX), 1)
            .into_bytes();
        lines.push(b"garbage".to_vec());
        let found = check(&lines, 2);
        assert!(found.contains(&(BadSignature, u64::MAX, 2)), "{found:?}");
        assert!(found.contains(&(SeqGap, u64::MAX, 2)), "{found:?}");
        assert!(found.contains(&(Malformed, u64::MAX, 3)), "{found:?}");
    }

    #[test]
    fn a_wrong_key_is_one_finding_not_every_record_modified() {
        let lines = log(4);
        let other = Keyring::new("k1", vec![8u8; 32]);
        let none = HashMap::new();
        let mut v = Verifier::new(&other, &none, 1, GENESIS);
        for (i, line) in lines.iter().enumerate() {
            v.check_line("audit.log", i as u64 + 1, line);
        }
        let mut report = v.finish();
        report.check_key("k1", "audit.log");
        let kinds: Vec<_> = report.findings.iter().map(|f| (f.kind, f.seq)).collect();
        assert_eq!(kinds, vec![(WrongKey, 1)]);
        // A modified record among records that verify stays a bad signature.
        let mut lines = lines;
        lines[1] = String::from_utf8(lines[1].clone())
            .unwrap()
            .replace("L2", "L9")
            .into_bytes();
        let keys = keyring();
        let mut v = Verifier::new(&keys, &none, 1, GENESIS);
        for (i, line) in lines.iter().enumerate() {
            v.check_line("audit.log", i as u64 + 1, line);
        }
        let mut report = v.finish();
        report.check_key("k1", "audit.log");
        assert_eq!(report.findings[0].kind, BadSignature);
    }

    #[test]
    fn a_garbage_line_in_a_records_place_is_the_one_finding() {
        let mut lines = log(5);
        lines[2] = b"{not json".to_vec();
        assert_eq!(check(&lines, 5), vec![(Malformed, 3, 3)]);
    }

    #[test]
    fn garbage_lines_anywhere_in_place_of_or_before_records_are_exactly_the_findings() {
        let records = log(5);
        // Each record kept (0), its place taken by a garbage line (1), or a
        // garbage line put before it (2): every one of the 243 ways.
        for choice in 0..3u32.pow(5) {
            let (mut lines, mut garbage, mut left) = (Vec::new(), Vec::new(), choice);
            for record in &records {
                let what = left % 3;
                left /= 3;
                if what != 0 {
                    lines.push(b"{not a record".to_vec());
                    garbage.push((Malformed, lines.len() as u64));
                }
                if what != 1 {
                    lines.push(record.clone());
                }
            }
            let found: Vec<_> = check(&lines, 0)
                .into_iter()
                .map(|(kind, _, line)| (kind, line))
                .collect();
            assert_eq!(found, garbage, "choice {choice}");
        }
    }

    #[test]
    fn a_range_after_a_garbage_line_still_says_its_first_record_does_not_chain() {
        let mut lines = log(5);
        lines[2] = b"{not json".to_vec();
        let keys = keyring();
        let none = HashMap::new();
        let mut v = Verifier::new(&keys, &none, 1, GENESIS).with_range(4..=5);
        for (i, line) in lines.iter().enumerate() {
            v.check_line("audit.log", i as u64 + 1, line);
        }
        let found: Vec<_> = v
            .finish()
            .findings
            .iter()
            .map(|f| (f.kind, f.seq))
            .collect();
        assert_eq!(found, vec![(ChainBreak, 4)]);
    }

    #[test]
    fn a_garbage_line_put_in_between_two_records_is_the_one_finding() {
        let mut lines = log(5);
        lines.insert(2, b"{not json".to_vec());
        assert_eq!(check(&lines, 5), vec![(Malformed, 3, 3)]);
        // Two records after it deleted: one more than it could stand for.
        lines.remove(3);
        lines.remove(3);
        assert_eq!(
            check(&lines, 5),
            vec![(Malformed, 3, 3), (SeqGap, 5, 4), (ChainBreak, 5, 4)]
        );
    }

    #[test]
    fn garbage_lines_in_place_of_and_beside_records_are_the_findings() {
        let mut lines = log(6);
        lines[2] = b"{not json".to_vec();
        lines.insert(3, b"garbage".to_vec());
        // Lines 3 and 4 are garbage, line 5 is seq 4: no more than the lines.
        assert_eq!(check(&lines, 6), vec![(Malformed, 3, 3), (Malformed, 4, 4)]);
        // More records deleted after them than they stand for: a gap.
        lines.remove(4);
        lines.remove(4);
        assert_eq!(
            check(&lines, 6),
            vec![
                (Malformed, 3, 3),
                (Malformed, 4, 4),
                (SeqGap, 6, 5),
                (ChainBreak, 6, 5)
            ]
        );
    }
}
