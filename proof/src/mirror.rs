//! A witness's mirror of a log (`auditlog checkpoint watch --mirror
//! FILE`): the log's records as the server stores them, one per line, in
//! seq order from seq 1. A seq the server did not send (cut from the log) is
//! not in the file and counts as its gap leaf ([`crate::gap`]), as it does
//! in the server's tree. What is checked here needs no server: that a
//! mirror's records are the ones a signed checkpoint covers.

use std::io::BufRead;

use crate::gap::gap_leaf;
use crate::merkle::{CompactRange, Hash, leaf_hash};
use crate::note::Checkpoint;

/// The most seqs in a row a mirror may skip, each counted as its gap leaf:
/// seqs cut from a log are the few a crash took from its end, and a bound
/// keeps a hostile file or checkpoint from having millions of gap leaves
/// hashed.
pub const MAX_MISSING: u64 = 1 << 20;

/// What a stored record's line begins with.
const RECORD_HEAD: &[u8] = b"{\"seq\":";

/// The seq of a stored record's line, read from its head (`{"seq":N,`)
/// alone; `None` for a line that does not begin as a record does.
pub fn stored_seq(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(RECORD_HEAD)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || rest.get(digits) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// The records at the head of a mirror, up to a seq.
#[derive(Debug, Clone)]
pub struct Prefix {
    /// Their leaves, with the gap leaf of each seq skipped, from seq 1.
    pub tree: CompactRange,
    /// Their bytes, newlines included: where the rest of the file begins.
    pub len: u64,
}

/// Why a mirror was refused.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file holds something other than a mirror's records.
    #[error("line {line} is not a stored record after seq {after}")]
    NotAMirror { line: u64, after: u64 },
    /// The checkpoint covers seqs past the mirror's last record that its
    /// tree does not have as gap leaves: the mirror lacks records.
    #[error("it holds records up to seq {holds} only; the checkpoint covers {size}")]
    Short { holds: u64, size: u64 },
    /// The mirror's records up to the checkpoint's size make another root.
    #[error(
        "its first {size} records make root {}, not the checkpoint's",
        hex::encode(root)
    )]
    Mismatch { size: u64, root: Hash },
}

/// Pushes the gap leaf of every seq between the tree's end and `seq`.
pub fn push_gaps(tree: &mut CompactRange, seq: u64) {
    while tree.end() + 1 < seq {
        tree.push(gap_leaf(tree.end() + 1));
    }
}

/// Reads a mirror from its start while its records are at most `upto`,
/// each a stored record after the one before it, at most [`MAX_MISSING`]
/// seqs later; stops at the end, at half a line (a write cut short) or at a
/// record past `upto`. Anything else, a first line that cannot begin a
/// record included, is not a mirror.
pub fn read_prefix(mut reader: impl BufRead, upto: u64) -> Result<Prefix, MirrorError> {
    let mut tree = CompactRange::new(0);
    let mut len = 0u64;
    let mut line = Vec::new();
    let mut number = 0u64;
    while tree.end() < upto {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        number += 1;
        let record = &line[..n - 1];
        let seq = stored_seq(record)
            .filter(|&seq| seq > tree.end() && seq - tree.end() <= MAX_MISSING)
            .ok_or(MirrorError::NotAMirror {
                line: number,
                after: tree.end(),
            })?;
        if seq > upto {
            break;
        }
        push_gaps(&mut tree, seq);
        tree.push(leaf_hash(record));
        len += n as u64;
    }
    if number == 0 {
        // Empty, or starting as a record does (half of one, or `upto` 0).
        let head: &[u8] = match line.is_empty() {
            true => reader.fill_buf()?,
            false => &line,
        };
        let n = head.len().min(RECORD_HEAD.len());
        if head[..n] != RECORD_HEAD[..n] {
            return Err(MirrorError::NotAMirror { line: 1, after: 0 });
        }
    }
    Ok(Prefix { tree, len })
}

/// Checks, with no server, that the mirror `reader` reads holds exactly the
/// records `checkpoint` signed: its records up to the checkpoint's size,
/// with the gap leaf of each seq it skips (after its last record too), make
/// the checkpoint's root. Returns them; what follows them in the file is
/// not covered by this checkpoint.
pub fn verify(reader: impl BufRead, checkpoint: &Checkpoint) -> Result<Prefix, MirrorError> {
    let prefix = read_prefix(reader, checkpoint.size)?;
    let holds = prefix.tree.end();
    let short = MirrorError::Short {
        holds,
        size: checkpoint.size,
    };
    if checkpoint.size - holds > MAX_MISSING {
        return Err(short);
    }
    let mut tree = prefix.tree.clone();
    push_gaps(&mut tree, checkpoint.size.saturating_add(1));
    let root = tree.root().unwrap_or_default();
    match root == checkpoint.root {
        true => Ok(prefix),
        false if holds < checkpoint.size => Err(short),
        false => Err(MirrorError::Mismatch {
            size: checkpoint.size,
            root,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::root_of;

    #[test]
    fn a_records_seq_is_read_from_its_head_and_nothing_else_has_one() {
        assert_eq!(stored_seq(br#"{"seq":1,"id":"x"}"#), Some(1));
        assert_eq!(
            stored_seq(br#"{"seq":18446744073709551615,"#),
            Some(u64::MAX)
        );
        for line in [
            &br#"{"seq":,"id":"x"}"#[..],
            br#"{"seq":12"#,
            br#"{"seq":1x,"#,
            br#"{"seq":18446744073709551616,"#,
            br#"{ "seq":1,"#,
            b"auditlog gap at seq 4",
            b"",
        ] {
            assert_eq!(stored_seq(line), None, "{}", String::from_utf8_lossy(line));
        }
    }

    fn line(seq: u64) -> String {
        format!("{{\"seq\":{seq},\"event_type\":\"x\"}}")
    }

    /// The checkpoint of seqs 1 to `size`, those in `absent` as gap leaves.
    fn checkpoint(size: u64, absent: &[u64]) -> Checkpoint {
        let leaves: Vec<Hash> = (1..=size)
            .map(|seq| match absent.contains(&seq) {
                true => gap_leaf(seq),
                false => leaf_hash(line(seq).as_bytes()),
            })
            .collect();
        Checkpoint {
            origin: "test".into(),
            size,
            root: root_of(&leaves),
        }
    }

    fn mirror(seqs: impl IntoIterator<Item = u64>) -> Vec<u8> {
        seqs.into_iter()
            .map(|s| line(s) + "\n")
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn a_mirror_verifies_against_the_checkpoint_of_its_records_and_gaps() {
        let file = mirror([1, 2, 4, 5, 6]);
        let held = verify(&file[..], &checkpoint(5, &[3])).unwrap();
        assert_eq!(held.len as usize, file.len() - line(6).len() - 1);
        // Seqs cut at the end of what the checkpoint covers are gap leaves
        // in its tree, and in the mirror's.
        verify(&mirror([1, 2])[..], &checkpoint(4, &[3, 4])).unwrap();
        verify(&b""[..], &checkpoint(0, &[])).unwrap();
    }

    #[test]
    fn a_mirror_lacking_or_changing_a_record_is_refused_saying_which() {
        let cp = checkpoint(4, &[]);
        assert!(matches!(
            verify(&mirror([1, 2])[..], &cp),
            Err(MirrorError::Short { holds: 2, size: 4 })
        ));
        let mut changed = mirror([1, 2, 3, 4]);
        changed[3] = b'x';
        assert!(matches!(
            verify(&changed[..], &cp),
            Err(MirrorError::NotAMirror { line: 1, after: 0 })
        ));
        let other = mirror([1, 2, 4, 5]);
        assert!(matches!(
            verify(&other[..], &cp),
            Err(MirrorError::Mismatch { size: 4, .. })
        ));
        for not_a_mirror in [&b"hello"[..], b"{\"seq\":2,}\n{\"seq\":1,}\n"] {
            assert!(
                matches!(
                    verify(not_a_mirror, &cp),
                    Err(MirrorError::NotAMirror { .. })
                ),
                "{}",
                String::from_utf8_lossy(not_a_mirror)
            );
        }
    }
}
