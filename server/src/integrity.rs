//! Record MACs, the keys behind them, and chain verification.
//!
//! Every record is signed with HMAC-SHA256 under the key its `key_id` names
//! and carries the previous record's signature as `prev`. [`Verifier`] walks
//! the lines of the log in order and reports every problem it finds as data
//! ([`Finding`]), never as an error: a verification that finds tampering has
//! succeeded.
//!
//! Keys: the active key comes from config (`hmac_key`, `hmac_key_file`, or
//! `AUDITLOG_HMAC_KEY`); where none is given, 32 random bytes are generated
//! once into `<data_dir>/hmac.key` (as 64 hex characters, mode 0600) and reused
//! on every start. A key is the bytes of its string, at least 32 of them.

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::store::record::{GENESIS, LineError, MacCheck, Record};

/// The name of the generated key file in the data directory.
pub const KEY_FILE: &str = "hmac.key";
/// The shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// One HMAC-SHA256 key.
#[derive(Clone)]
pub struct Key(Hmac<Sha256>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Key {
    fn new(bytes: &[u8]) -> Key {
        // HMAC accepts keys of any length, so this cannot fail.
        Key(Hmac::<Sha256>::new_from_slice(bytes).unwrap_or_else(|_| unreachable!()))
    }

    /// The MAC of `unsigned` followed by a closing `}`: the record's bytes as
    /// they are with the signature field removed.
    pub fn sign(&self, unsigned: &[u8]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(unsigned);
        mac.update(b"}");
        mac.finalize().into_bytes().into()
    }

    /// Checks `sig` against [`Key::sign`] of `unsigned`, in constant time.
    pub fn verify(&self, unsigned: &[u8], sig: &[u8]) -> bool {
        let mut mac = self.0.clone();
        mac.update(unsigned);
        mac.update(b"}");
        mac.verify_slice(sig).is_ok()
    }
}

/// The keys records can be signed with, by `key_id`, and the one new records
/// are signed with.
#[derive(Debug, Clone)]
pub struct Keyring {
    active: String,
    keys: HashMap<String, Key>,
}

/// Why the key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the HMAC key is {0} bytes long; it must be at least {MIN_KEY_LEN} (set hmac_key or AUDITLOG_HMAC_KEY to a longer secret)"
    )]
    TooShort(usize),
    #[error("cannot read HMAC key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot create HMAC key file {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
}

impl Keyring {
    /// A keyring holding one key, which is the active one.
    pub fn new(key_id: &str, key: Vec<u8>) -> Keyring {
        let mut keys = HashMap::new();
        keys.insert(key_id.to_owned(), Key::new(&key));
        Keyring {
            active: key_id.to_owned(),
            keys,
        }
    }

    /// Loads the active key: `configured` when given, otherwise the key file in
    /// `data_dir`, generated on first use.
    pub fn load(
        key_id: &str,
        configured: Option<&[u8]>,
        data_dir: &Path,
    ) -> Result<Keyring, KeyError> {
        let key = match configured {
            Some(k) => k.to_vec(),
            None => load_or_generate(&data_dir.join(KEY_FILE))?,
        };
        if key.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort(key.len()));
        }
        Ok(Keyring::new(key_id, key))
    }

    /// The id and key new records are signed with.
    pub fn active(&self) -> (&str, &Key) {
        let key = &self.keys[&self.active];
        (&self.active, key)
    }

    /// The key named `key_id`.
    pub fn get(&self, key_id: &str) -> Option<&Key> {
        self.keys.get(key_id)
    }
}

fn load_or_generate(path: &Path) -> Result<Vec<u8>, KeyError> {
    match std::fs::read(path) {
        Ok(mut bytes) => {
            while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
                bytes.pop();
            }
            Ok(bytes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut raw = [0u8; 32];
            rand::fill(&mut raw);
            let key = hex::encode(raw).into_bytes();
            let create = |e| KeyError::Create {
                path: path.display().to_string(),
                source: e,
            };
            // create_new: two servers starting on one directory never
            // overwrite each other's key.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(create)?;
            file.write_all(&key).map_err(create)?;
            file.sync_all().map_err(create)?;
            if let Some(dir) = path.parent() {
                crate::store::sync_dir(dir).map_err(create)?;
            }
            tracing::info!(path = %path.display(), "generated a new HMAC key");
            Ok(key)
        }
        Err(e) => Err(KeyError::Read {
            path: path.display().to_string(),
            source: e,
        }),
    }
}

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

/// The outcome of a verification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub events_checked: u64,
    pub head_seq: u64,
    pub head_signature: String,
    pub findings: Vec<Finding>,
}

/// Walks the lines of the log in order, checking each record's MAC, its seq
/// against the one expected, and its `prev` against the signature of the
/// record before it.
#[derive(Debug)]
pub struct Verifier<'k> {
    keyring: &'k Keyring,
    /// The signature the next record's `prev` must equal.
    prev: String,
    /// The seq the next record must have.
    expected: u64,
    report: Report,
}

impl<'k> Verifier<'k> {
    /// A verifier for records starting at `first_seq`, whose first `prev` must
    /// be `prev` (64 zeros at the start of the log).
    pub fn new(keyring: &'k Keyring, first_seq: u64, prev: &str) -> Verifier<'k> {
        Verifier {
            keyring,
            prev: prev.to_owned(),
            expected: first_seq,
            report: Report::default(),
        }
    }

    /// A verifier for the whole log.
    pub fn from_genesis(keyring: &'k Keyring) -> Verifier<'k> {
        Verifier::new(keyring, 1, GENESIS)
    }

    /// Checks one line (without its newline) at 1-based `line_no` of `file`.
    /// Returns the record when it could be parsed.
    pub fn check_line(&mut self, file: &str, line_no: u64, line: &[u8]) -> Option<Record> {
        let mut find = |kind, seq, message: String| {
            self.report.findings.push(Finding {
                kind,
                seq,
                line: line_no,
                file: file.to_owned(),
                message,
            })
        };
        let record = match Record::parse(line) {
            Ok(r) => r,
            Err(e) => {
                let what = match e {
                    LineError::NoSignature => "has no trailing signature field".to_owned(),
                    LineError::SignatureMismatch => {
                        "has a signature field that is not its last field".to_owned()
                    }
                    LineError::Json(msg) => format!("is not a valid record ({msg})"),
                };
                find(
                    FindingKind::Malformed,
                    self.expected,
                    format!(
                        "line {line_no} of {file} {what}: it was modified or corrupted; \
                         seq {} was expected here",
                        self.expected
                    ),
                );
                // Keep expecting the seq after this one so a single damaged
                // line is not also reported as a gap in the next record.
                self.expected += 1;
                return None;
            }
        };
        let seq = record.seq;
        match record.check_mac(line, self.keyring) {
            MacCheck::Valid => {}
            MacCheck::Invalid => find(
                FindingKind::BadSignature,
                seq,
                format!(
                    "seq {seq} (line {line_no} of {file}): the signature does not match the \
                     record's bytes: the record was modified"
                ),
            ),
            MacCheck::UnknownKey => find(
                FindingKind::UnknownKey,
                seq,
                format!(
                    "seq {seq} (line {line_no} of {file}) is signed with key {:?}, which this \
                     server does not hold, so it cannot be checked",
                    record.key_id
                ),
            ),
        }
        if seq > self.expected {
            let missing = if seq - self.expected == 1 {
                format!("seq {} is", self.expected)
            } else {
                format!("seqs {}..={} are", self.expected, seq - 1)
            };
            find(
                FindingKind::SeqGap,
                seq,
                format!(
                    "seq {seq} (line {line_no} of {file}) follows seq {}: {missing} missing \
                     (deleted, or moved further down)",
                    self.expected - 1
                ),
            );
        } else if seq < self.expected {
            find(
                FindingKind::SeqOutOfOrder,
                seq,
                format!(
                    "seq {seq} (line {line_no} of {file}) comes after seq {}: a record was \
                     inserted, duplicated or moved",
                    self.expected - 1
                ),
            );
        }
        if record.prev != self.prev {
            find(
                FindingKind::ChainBreak,
                seq,
                format!(
                    "seq {seq} (line {line_no} of {file}) does not chain to the record before \
                     it (its prev is not that record's signature): records were deleted, \
                     inserted or reordered here"
                ),
            );
        }
        self.report.events_checked += 1;
        self.expected = self.expected.max(seq + 1);
        self.prev = record.signature.clone();
        if seq >= self.report.head_seq {
            self.report.head_seq = seq;
            self.report.head_signature = record.signature.clone();
        }
        Some(record)
    }

    /// Reports a torn line (bytes after the last newline) at the end of `file`.
    pub fn torn_tail(&mut self, file: &str, line_no: u64, len: usize) {
        self.report.findings.push(Finding {
            kind: FindingKind::Malformed,
            seq: self.expected,
            line: line_no,
            file: file.to_owned(),
            message: format!(
                "line {line_no} of {file} is an incomplete record of {len} bytes without a \
                 newline: the file was cut or is being written outside the server"
            ),
        });
    }

    /// Ends the walk. `acknowledged_head` is the highest seq the server has
    /// acknowledged; a log ending before it was truncated.
    pub fn finish(mut self, acknowledged_head: u64, file: &str) -> Report {
        if self.expected <= acknowledged_head {
            let last = self.expected - 1;
            self.report.findings.push(Finding {
                kind: FindingKind::Truncated,
                seq: self.expected,
                line: 0,
                file: file.to_owned(),
                message: format!(
                    "the log ends at seq {last} but the server acknowledged events up to seq \
                     {acknowledged_head}: seqs {}..={acknowledged_head} were cut from the end",
                    self.expected
                ),
            });
        }
        self.report
    }

    /// The seq the next record should have.
    pub fn expected(&self) -> u64 {
        self.expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::NewEvent;

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
                    lead_id: Some(format!("L{seq}")),
                    workflow: None,
                    details: Default::default(),
                    idempotency_key: None,
                };
                let (rec, mut line) =
                    Record::seal(ev, seq, format!("id{seq}"), seq as i64, None, &prev, &keys);
                prev = rec.signature;
                line.pop();
                line
            })
            .collect()
    }

    /// Verifies `lines` with the server having acknowledged `head`, and
    /// returns (kind, seq, line) of each finding.
    fn check(lines: &[Vec<u8>], head: u64) -> Vec<(FindingKind, u64, u64)> {
        let keys = keyring();
        let mut v = Verifier::from_genesis(&keys);
        for (i, line) in lines.iter().enumerate() {
            v.check_line("audit.log", i as u64 + 1, line);
        }
        v.finish(head, "audit.log")
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
        let mut v = Verifier::from_genesis(&keys);
        for (i, l) in lines.iter().enumerate() {
            v.check_line("f", i as u64 + 1, l);
        }
        let report = v.finish(10, "f");
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
    fn garbage_line_is_malformed_and_does_not_cascade() {
        let mut lines = log(5);
        lines[2] = b"{not json".to_vec();
        // The next record's prev names the damaged record's signature, which
        // could not be read, so the chain check fails there too.
        assert_eq!(
            check(&lines, 5),
            vec![(Malformed, 3, 3), (ChainBreak, 4, 4)]
        );
    }
}
