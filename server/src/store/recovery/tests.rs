//! Recovery's rules on logs built byte by byte.

use super::*;
use crate::keys::Keyring;
use crate::store::record::{GENESIS, NewEvent};

fn lines(n: u64, batch_at: Option<(u64, u32)>) -> Vec<Vec<u8>> {
    let keys = Keyring::new("k1", vec![1; 32]);
    let mut prev = GENESIS.to_owned();
    (1..=n)
        .map(|seq| {
            let ev = NewEvent {
                event_type: "crm_create".into(),
                actor: "a".into(),
                caller: None,
                lead_id: None,
                workflow: None,
                details: Default::default(),
                idempotency_key: None,
            };
            let batch = batch_at.filter(|b| b.0 == seq).map(|b| b.1);
            let (r, line) = Record::seal(ev, seq, "i".into(), 1, batch, &prev, &keys);
            prev = r.signature.into_string();
            line
        })
        .collect()
}

fn scenario(content: &[u8]) -> (tempfile::TempDir, Recovered) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(LOG_FILE), content).unwrap();
    let r = recover(dir.path(), &Keyring::new("k1", vec![1; 32])).unwrap();
    (dir, r)
}

#[test]
fn clean_log_is_kept_whole() {
    let content = lines(5, None).concat();
    let (dir, r) = scenario(&content);
    assert_eq!(r.len, content.len() as u64);
    assert_eq!(r.index.last().map(|m| m.seq), Some(5));
    assert!(!dir.path().join(QUARANTINE_FILE).exists());
}

#[test]
fn torn_last_line_is_quarantined_and_cut() {
    let ls = lines(5, None);
    let mut content = ls[..4].concat();
    content.extend_from_slice(&ls[4][..30]);
    let (dir, r) = scenario(&content);
    let kept = ls[..4].concat();
    assert_eq!(std::fs::read(dir.path().join(LOG_FILE)).unwrap(), kept);
    assert_eq!(r.len, kept.len() as u64);
    assert_eq!(r.index.last().map(|m| m.seq), Some(4));
    let q = std::fs::read(dir.path().join(QUARANTINE_FILE)).unwrap();
    assert_eq!(&q[..30], &ls[4][..30]);
}

#[test]
fn the_log_ends_at_its_first_zero_and_no_zero_is_quarantined() {
    let ls = lines(5, None);
    let (kept, zeros) = (ls[..3].concat(), vec![0u8; 4096]);
    let (dir, _) = scenario(&[kept.as_slice(), &zeros].concat());
    assert_eq!(std::fs::read(dir.path().join(LOG_FILE)).unwrap(), kept);
    assert!(!dir.path().join(QUARANTINE_FILE).exists());
    // A torn write into the zeros, and a later block that reached the
    // disk before the one between.
    let torn = [&kept, &ls[3][..20], &zeros, &ls[4], &zeros].concat();
    let (dir, r) = scenario(&torn);
    assert_eq!(std::fs::read(dir.path().join(LOG_FILE)).unwrap(), kept);
    assert_eq!(r.index.last().map(|m| m.seq), Some(3));
    let q = std::fs::read(dir.path().join(QUARANTINE_FILE)).unwrap();
    assert_eq!(q, [&ls[3][..20], b"\n", &ls[4]].concat());
}

#[test]
fn zeros_before_an_acknowledged_record_are_damage_not_the_end() {
    // Record 3 zeroed on disk (a bad block, a hand) in a log whose head
    // file says seq 5 was acknowledged: records 4 and 5 stay in place and
    // indexed, the zeros stay for verification to report, and only the
    // zeros ahead are cut.
    let ls = lines(5, None);
    let mut log = ls.concat();
    let start = ls[0].len() + ls[1].len();
    log[start..start + ls[2].len()].fill(0);
    let ahead = vec![0u8; 4096];
    let dir = tempfile::tempdir().unwrap();
    let keys = Keyring::new("k1", vec![1; 32]);
    let last = Record::parse(&ls[4][..ls[4].len() - 1]).unwrap();
    crate::store::head::at_start(
        dir.path(),
        &keys,
        Some((5, last.signature.into_string())),
        false,
    )
    .unwrap();
    std::fs::write(dir.path().join(LOG_FILE), [log.as_slice(), &ahead].concat()).unwrap();
    let r = recover(dir.path(), &keys).unwrap();
    assert_eq!(std::fs::read(dir.path().join(LOG_FILE)).unwrap(), log);
    assert_eq!(r.len, log.len() as u64);
    let held: Vec<bool> = (1..=5).map(|seq| r.index.get(seq).is_some()).collect();
    assert_eq!(held, [true, true, false, true, true]);
    assert!(!dir.path().join(QUARANTINE_FILE).exists());
    // Without a head to say so, the same zeros end the log (a crash's
    // unsynced writes look the same) and what follows is quarantined.
    let (dir, r) = scenario(&[log.as_slice(), &ahead].concat());
    assert_eq!(r.index.last().map(|m| m.seq), Some(2));
    let q = std::fs::read(dir.path().join(QUARANTINE_FILE)).unwrap();
    assert_eq!(q, ls[3..].concat());
}

#[test]
fn half_written_batch_is_cut_whole() {
    // seqs 3..=6 are one batch of 4; the crash left 3 of them and a torn 4th.
    let ls = lines(6, Some((3, 4)));
    let mut content = ls[..5].concat();
    content.extend_from_slice(&ls[5][..10]);
    let (dir, r) = scenario(&content);
    assert_eq!(
        std::fs::read(dir.path().join(LOG_FILE)).unwrap(),
        ls[..2].concat()
    );
    assert_eq!(r.index.last().map(|m| m.seq), Some(2));
    let q = std::fs::read(dir.path().join(QUARANTINE_FILE)).unwrap();
    assert!(q.starts_with(&ls[2]));
}

#[test]
fn complete_batch_is_kept() {
    let ls = lines(6, Some((3, 4)));
    let (_dir, r) = scenario(&ls.concat());
    assert_eq!(r.index.last().map(|m| m.seq), Some(6));
}

#[test]
fn a_damaged_batch_head_does_not_cut_what_follows() {
    // Found by the recovery fuzz target: a batch's first record whose
    // bytes changed (MAC invalid) still opened the batch, so the log
    // ending early cut the records after it, valid ones included.
    let ls = lines(5, Some((3, 4)));
    let mut head = ls[2].clone();
    let at = head.len() - 10;
    head[at] = if head[at] == b'a' { b'b' } else { b'a' };
    let mut content = ls[..2].concat();
    content.extend_from_slice(&head);
    content.extend_from_slice(&ls[3..].concat());
    let (dir, r) = scenario(&content);
    assert_eq!(std::fs::read(dir.path().join(LOG_FILE)).unwrap(), content);
    assert_eq!(r.len, content.len() as u64);
    assert!(!dir.path().join(QUARANTINE_FILE).exists());
    assert_eq!(r.index.last().map(|m| m.seq), Some(5));
}

#[test]
fn a_line_claiming_seq_u64_max_is_not_indexed() {
    // The writer continues after the last indexed seq; indexing this
    // damaged line made that seq + 1 overflow when the store opened.
    let ls = lines(3, None);
    let forged = String::from_utf8(ls[2].clone()).unwrap().replacen(
        "{\"seq\":3,",
        &format!("{{\"seq\":{},", u64::MAX),
        1,
    );
    let content = [ls[0].as_slice(), &ls[1], forged.as_bytes()].concat();
    let (dir, r) = scenario(&content);
    assert_eq!(r.index.last().map(|m| m.seq), Some(2));
    assert_eq!(std::fs::read(dir.path().join(LOG_FILE)).unwrap(), content);
}

#[test]
fn a_forged_seq_with_a_bad_mac_does_not_steer_the_next_seq() {
    // A record whose seq was raised by 1000 (its MAC now fails) was
    // indexed, the records after it were not, and the writer went on
    // from seq 1003, hiding them.
    let ls = lines(5, None);
    let forged =
        String::from_utf8(ls[2].clone())
            .unwrap()
            .replacen("{\"seq\":3,", "{\"seq\":1003,", 1);
    let content = [&ls[0], &ls[1], forged.as_bytes(), &ls[3], &ls[4]].concat();
    let (dir, r) = scenario(&content);
    assert_eq!(r.index.last().map(|m| m.seq), Some(5));
    assert!(r.index.get(1003).is_none() && r.index.get(4).is_some());
    assert_eq!(std::fs::read(dir.path().join(LOG_FILE)).unwrap(), content);
}

#[test]
fn a_seq_jump_with_a_valid_mac_is_indexed() {
    // Records after a damaged line (or after the last purge) follow a
    // gap in seqs; their MAC vouches for them.
    let ls = lines(5, None);
    let content = [&ls[0][..], b"garbage\n", &ls[2], &ls[3], &ls[4]].concat();
    let (_dir, r) = scenario(&content);
    assert_eq!(r.index.last().map(|m| m.seq), Some(5));
    assert!(r.index.get(3).is_some());
}

#[test]
fn damage_inside_the_log_is_not_repaired() {
    let ls = lines(5, None);
    let mut content = ls[..2].concat();
    content.extend_from_slice(b"garbage\n");
    content.extend_from_slice(&ls[3..].concat());
    let (dir, r) = scenario(&content);
    assert_eq!(std::fs::read(dir.path().join(LOG_FILE)).unwrap(), content);
    assert_eq!(r.index.last().map(|m| m.seq), Some(5));
    assert!(r.index.get(3).is_none());
}
