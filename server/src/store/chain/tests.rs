use super::*;
use crate::store::record::{GENESIS, NewEvent, chained_lines};

fn keyring() -> Keyring {
    Keyring::new("k1", vec![7u8; 32])
}

/// Seals `n` chained records and returns their lines without newlines.
fn log(n: u64) -> Vec<Vec<u8>> {
    let event = |seq| NewEvent {
        event_type: "email_sent".into(),
        actor: "system".into(),
        caller: None,
        lead_id: Some(format!("L{seq}").into()),
        workflow: None,
        details: Default::default(),
        idempotency_key: None,
    };
    let mut lines = chained_lines(n, &keyring(), event);
    for line in &mut lines {
        line.pop();
    }
    lines
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

/// Retired-key records, stretch by stretch: none before the signing key's
/// first record counts, and each stretch after it reports its first.
#[test]
fn a_retired_key_after_the_signing_keys_first_record_is_one_finding_a_stretch() {
    let stretch = |records: &[(u64, bool)]| {
        let mut keys = KeyOrder::default();
        for &(seq, active) in records {
            let id = if active { "k2" } else { "k1" };
            keys.saw(seq, seq, id, active);
        }
        keys
    };
    let mut rule = KeyRule::default();
    // Before the rotation: nothing to say.
    assert_eq!(
        rule.next(&stretch(&[(1, false), (2, false)]), "a", "k2"),
        None
    );
    // The rotation at 3, then a record of the old key at 5.
    let found = rule
        .next(
            &stretch(&[(3, true), (4, true), (5, false), (6, true)]),
            "b",
            "k2",
        )
        .unwrap();
    assert_eq!(
        (found.kind, found.seq, found.file.as_str()),
        (FindingKind::RetiredKey, 5, "b")
    );
    assert!(found.message.contains("after seq 3") && found.message.contains("(1 such"));
    // A later stretch: every old-key record counts, the first named.
    let found = rule
        .next(&stretch(&[(7, true), (8, false), (9, false)]), "c", "k2")
        .unwrap();
    assert_eq!(found.seq, 8);
    assert!(found.message.contains("after seq 3") && found.message.contains("(2 such"));
    assert_eq!(rule.next(&stretch(&[(10, true)]), "d", "k2"), None);
}
