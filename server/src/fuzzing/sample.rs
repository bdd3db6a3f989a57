//! What every target shares: the key they sign and check with, a sample
//! log signed with it, the check that a line is one the server could have
//! written, and for the targets that open a store, its async runtime and
//! the emptying of their scratch directory.

use std::path::Path;

use crate::keys::Keyring;
use crate::store::record::{GENESIS, MacCheck, NewEvent, Record};

/// The id of the key every target signs and checks with.
pub const KEY_ID: &str = "k1";
/// The key itself: seeds signed with it carry valid MACs.
pub const KEY: &[u8] = b"auditlog fuzzing key, not a secret";

/// The keyring the targets use.
pub fn keyring() -> Keyring {
    Keyring::new(KEY_ID, KEY.to_vec())
}

/// `n` chained records from seq 1, signed with [`KEY`], as a log file. With
/// `batch = Some((seq, size))` the record at `seq` opens a batch of `size`.
pub fn sample_log(n: u64, batch: Option<(u64, u32)>) -> Vec<u8> {
    let keys = keyring();
    let mut prev = GENESIS.to_owned();
    let mut log = Vec::new();
    for seq in 1..=n {
        let mut details = serde_json::Map::new();
        details.insert("n".into(), serde_json::Value::from(seq));
        let event = NewEvent {
            event_type: "lead_ingested".into(),
            actor: "system".into(),
            caller: None,
            lead_id: Some(format!("LEAD-{seq:03}").into()),
            workflow: (seq % 2 == 0).then(|| "sales".into()),
            details: details.into(),
            idempotency_key: None,
        };
        let size = batch.filter(|b| b.0 == seq).map(|b| b.1);
        let timestamp = 1_770_000_000_000_000 + seq as i64;
        let (record, line) = Record::seal(
            event,
            seq,
            format!("id-{seq}").into(),
            timestamp,
            size,
            &prev,
            &keys,
        );
        prev = record.signature.into_string();
        log.extend_from_slice(&line);
    }
    log
}

/// Whether `line` is a record the server could have written: it parses and
/// its MAC is valid under [`KEY`].
pub(super) fn is_valid(line: &[u8], keys: &Keyring) -> Option<Record> {
    let record = Record::parse(line).ok()?;
    (record.check_mac(line, keys) == MacCheck::Valid).then_some(record)
}

/// The runtime the targets that open a store call it on: one, built once.
pub(super) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("no tokio runtime: {e}"))
    })
}

/// Removes every file in `dir`, and the directories a store makes there
/// (its Merkle tree's).
pub(super) fn clear(dir: &Path) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(e) = removed {
            panic!("cannot remove {}: {e}", path.display());
        }
    }
}
