//! The target of the stream floor: what a cluster node's replica appends
//! from the replicated stream, where anyone allowed to publish on its
//! subject can have put anything, and where the leader's own groups come
//! again after a reconnect.

use std::path::Path;

use super::sample::{clear, keyring, runtime, sample_log};
use crate::store::{self, LOG_FILE};

/// The honest chain's length, and the batch in it: seqs 4 to 6, so a group
/// can end inside it.
const CHAIN: u64 = 9;
const BATCH: (u64, u32) = (4, 3);

/// Whether the chain's batch is still open after `seq`.
fn inside_batch(seq: u64) -> bool {
    (BATCH.0..BATCH.0 + u64::from(BATCH.1) - 1).contains(&seq)
}

/// `apply`: a replica in `dir`, fed groups cut from an honest chain signed
/// with [`super::KEY`] (any run of its lines, from before the replica's head
/// to past it) and edited as the input says (a byte changed, a line
/// dropped, doubled, swapped with another or brought from elsewhere in the
/// chain, the group torn short, bytes added after it).
///
/// Properties: whatever it is fed, the replica's log is always the honest
/// chain's first lines, byte for byte, up to its head: a group is taken
/// whole or not at all, and never one whose lines are not the chain's, in
/// its order, nor one that ends inside a batch; an unedited group that
/// continues the log and ends where no batch is open is taken; the log
/// opens again after, with the same head.
pub fn apply(dir: &Path, data: &[u8]) {
    let honest = sample_log(CHAIN, Some(BATCH));
    let lines: Vec<&[u8]> = honest.split_inclusive(|&b| b == b'\n').collect();
    let prefix = |head: u64| -> Vec<u8> { lines[..head as usize].concat() };
    clear(dir);
    let config = store::StoreConfig {
        data_dir: dir.to_path_buf(),
        durability: store::Durability::OsBuffered,
        max_segment_bytes: u64::MAX,
        max_segment_age: None,
        lead_copies: false,
        replica: true,
    };
    let store = store::Store::open(config.clone(), keyring())
        .unwrap_or_else(|e| panic!("a replica does not open in an empty directory: {e}"));
    let mut input = data.iter().copied();
    let mut next = || input.next();
    let mut head = 0;
    while let (Some(a), Some(b), Some(edit)) = (next(), next(), next()) {
        // A run of the chain's lines, [from, to), from 1 to 9 lines long.
        let from = u64::from(a) % CHAIN;
        let to = (from + 1 + u64::from(b) % CHAIN).min(CHAIN);
        let mut group: Vec<Vec<u8>> = lines[from as usize..to as usize]
            .iter()
            .map(|l| l.to_vec())
            .collect();
        let at = usize::from(next().unwrap_or(0)) % group.len();
        let other = usize::from(next().unwrap_or(0)) % lines.len();
        let byte = next().unwrap_or(0);
        let edited = edit % 8 != 0;
        match edit % 8 {
            0 => {}
            1 => {
                let line = &mut group[at];
                let i = usize::from(byte) % line.len();
                line[i] = line[i].wrapping_add(1 + other as u8);
            }
            2 => {
                group.remove(at);
            }
            3 => {
                let len = group.len();
                group.swap(at, other % len);
            }
            4 => group.insert(at, group[at].clone()),
            5 => group.insert(at, lines[other].to_vec()),
            6 => {
                let line = &mut group[at];
                line.truncate(usize::from(byte) % line.len());
            }
            _ => group.push(vec![byte; 1 + other]),
        }
        let bytes = group.concat();
        let result = runtime().block_on(store.apply(bytes.clone()));
        let continues = from <= head && to > head;
        match result {
            Ok(now) => {
                assert!(now >= head, "the head went back from {head} to {now}");
                assert!(
                    !inside_batch(now),
                    "a group was taken that ends inside a batch, at {now}"
                );
                // Taken whole: every line of it is the chain's, those the
                // log had are left as they were, and the rest, in order,
                // are what the log gained.
                let mut gained = Vec::new();
                for line in bytes.split_inclusive(|&b| b == b'\n') {
                    let Some(seq) = lines.iter().position(|l| *l == line) else {
                        panic!(
                            "a group was taken with a line not of the chain: {}",
                            String::from_utf8_lossy(line)
                        );
                    };
                    if seq as u64 >= head {
                        gained.extend_from_slice(line);
                    }
                }
                assert!(
                    prefix(now)[prefix(head).len()..] == gained[..],
                    "the log gained other lines than the group's new ones"
                );
                head = now;
            }
            Err(_) => assert!(
                edited || !continues || inside_batch(to),
                "an honest group continuing the log at {head} with seqs {} to {to} was refused",
                from + 1
            ),
        }
        assert_eq!(store.head(), head, "the head the store reports");
        assert!(
            log_is(dir, &prefix(head)),
            "the replica's log is not the chain's first {head} lines"
        );
    }
    store.shutdown();
    drop(store);
    let reopened = store::Store::open(config, keyring())
        .unwrap_or_else(|e| panic!("the replica does not open again: {e}"));
    assert_eq!(reopened.head(), head, "the head after opening again");
    reopened.shutdown();
    assert!(log_is(dir, &prefix(head)), "the log after opening again");
}

/// Whether the replica's log is `lines` and nothing more: the bytes after
/// them are zeros (the space the writer keeps ahead of its end), as far as
/// a refused group's write would have reached.
fn log_is(dir: &Path, lines: &[u8]) -> bool {
    use std::os::unix::fs::FileExt as _;
    const AFTER: usize = 1 << 14;
    let Ok(file) = std::fs::File::open(dir.join(LOG_FILE)) else {
        return lines.is_empty();
    };
    let mut log = vec![0u8; lines.len() + AFTER];
    let mut read = 0;
    while read < log.len() {
        match file.read_at(&mut log[read..], read as u64) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => panic!("the replica's log cannot be read: {e}"),
        }
    }
    log.starts_with(lines) && log[lines.len()..].iter().all(|&b| b == 0)
}
