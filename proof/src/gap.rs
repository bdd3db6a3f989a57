//! The leaf of a seq the log does not hold: the gap leaf.
//!
//! A record's leaf index is always its seq minus one, so a seq that is
//! missing from the log for good still has a leaf: acknowledged records cut
//! from the log's end while the server was down (the server then goes on
//! after the last seq it acknowledged, and VerifyIntegrity reports the cut
//! at every run). Its leaf is the one the tree
//! already held for it, when it held one (the record's own leaf, kept so
//! that the checkpoints signed before stay consistent with every later
//! one), and otherwise the gap leaf: the leaf hash of the **gap line**
//! `auditlog gap at seq N` (ASCII, N in decimal without leading zeros),
//! that is SHA-256(0x00 ‖ gap line).
//!
//! A record's line is a JSON object and starts with `{`, so no record ever
//! has a gap line as its line: an inclusion proof of a gap line proves that
//! the log's signed tree holds no record at that seq, and a gap line is
//! never a record (a bundle that carries one is refused).

use crate::{Hash, leaf_hash};

/// What every gap line starts with; the seq follows in decimal.
pub const GAP_PREFIX: &str = "auditlog gap at seq ";

/// The gap line of `seq`: `auditlog gap at seq N`.
pub fn gap_line(seq: u64) -> Vec<u8> {
    format!("{GAP_PREFIX}{seq}").into_bytes()
}

/// The gap leaf of `seq`: SHA-256(0x00 ‖ [`gap_line`]).
pub fn gap_leaf(seq: u64) -> Hash {
    leaf_hash(&gap_line(seq))
}

/// The seq a gap line names; `None` for any other line (a record's).
pub fn gap_seq(line: &[u8]) -> Option<u64> {
    let digits = line.strip_prefix(GAP_PREFIX.as_bytes())?;
    let canonical = !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || digits.len() == 1);
    if !canonical {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gap_leaf_is_the_leaf_hash_of_the_documented_line() {
        assert_eq!(gap_line(4), b"auditlog gap at seq 4");
        // The vector in docs/proofs.md, checked again in Python
        // (tests/polyglot/test_proofs.py).
        assert_eq!(
            hex::encode(gap_leaf(4)),
            "b6ca8a4815b0f7481a7f3a022b58852b0275860ab9bb443121aba407851c09b2"
        );
    }

    #[test]
    fn only_a_canonical_gap_line_names_a_seq() {
        assert_eq!(gap_seq(&gap_line(1)), Some(1));
        assert_eq!(gap_seq(&gap_line(u64::MAX)), Some(u64::MAX));
        for other in [
            &b"auditlog gap at seq 04"[..],
            b"auditlog gap at seq ",
            b"auditlog gap at seq 4 ",
            b"auditlog gap at seq -4",
            b"auditlog gap at seq 99999999999999999999",
            b"{\"seq\":4}",
        ] {
            assert_eq!(gap_seq(other), None, "{}", String::from_utf8_lossy(other));
        }
    }
}
