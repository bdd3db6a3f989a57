//! Where the writer's chain starts: the seq after the last one indexed, and
//! the `prev` verification will expect of the next record.

use std::fs::File;
use std::sync::Arc;

use super::Active;
use crate::store::index::Meta;
use crate::store::record::GENESIS;
use crate::store::sealer::names;
use crate::store::segment::SegmentFile;
use crate::store::shared::{LOG_FILE, Shared};
use crate::store::signer::ChainHead;
use crate::store::verify::last_signature;

/// The chain head the writer starts after; `None` for a log that holds
/// nothing yet. Its seq and timestamp are the last indexed record's (after
/// a purge of everything, the last purged seq's). Its signature is the one
/// verification will expect the next record's `prev` to equal: where the
/// chain ends as verification reads the files ([`chain_end`]). That is the
/// last indexed record's signature unless the log was changed under the
/// server (lines recovery kept but did not index after it, a segment gone
/// or rewritten); its damage is then reported where it is, and the
/// server's own next record does not break the chain once more.
///
/// A replica goes on from its last indexed record, whatever else its files
/// hold: its chain is the leader's, whose next record continues that one.
///
/// An end of the log that cannot be read gives 64 zeros, which verification
/// reports as a break, rather than the store refusing to start.
pub(super) fn head(shared: &Shared, active: &Active, replica: bool) -> Option<ChainHead> {
    let last = shared.index().last();
    let seq = shared.chain_seq();
    let head = |signature| {
        Some(ChainHead {
            seq,
            signature,
            timestamp: last.map_or(0, |m| m.timestamp),
        })
    };
    let end = match (replica, last) {
        (true, Some(meta)) => shared
            .read_record(&meta)
            .map(|record| Some(record.signature.into_string()))
            .map_err(|e| e.to_string()),
        (true, None) => Ok(purged(shared)),
        (false, _) => chain_end(shared, active, last).map_err(|e| e.to_string()),
    };
    match end {
        Ok(Some(signature)) => head(signature),
        Ok(None) if seq == 0 => None,
        Ok(None) => head(GENESIS.to_owned()),
        Err(e) => {
            tracing::error!(error = %e, "the end of the log cannot be read; the chain goes on from 64 zeros");
            head(GENESIS.to_owned())
        }
    }
}

/// Where the chain ends as verification joins the files, which is line by
/// line: the signature of the last line that reads as a record in the
/// active file; else in the newest sealed file still waiting for
/// compression; else the newest compressed segment's `last_signature` in
/// the manifest (verification joins what follows a compressed segment to
/// its entry, which the manifest's MAC vouches for, also when the segment
/// is gone); else the last purge's. `None`: the log holds no record.
fn chain_end(
    shared: &Shared,
    active: &Active,
    last: Option<Meta>,
) -> std::io::Result<Option<String>> {
    // The last indexed record's line usually ends the active file and
    // reads as a record: it alone is read then.
    let from = last
        .filter(|m| m.segment == active.segment)
        .map_or(0, |m| m.offset);
    let in_active = |from| last_signature(&active.file, from, active.len, &shared.keyring);
    let mut found = in_active(from)?;
    if found.is_none() && from > 0 {
        found = in_active(0)?;
    }
    if found.is_none()
        && let Some(file) = newest_uncompressed(shared)
    {
        let len = file.metadata()?.len();
        found = last_signature(&file, 0, len, &shared.keyring)?;
    }
    if found.is_some() {
        return Ok(found);
    }
    let Ok(manifest) = shared.manifest.lock() else {
        return Ok(None);
    };
    let compressed = manifest.segments.last().map(|e| &e.last_signature);
    let purged = manifest.purged.as_ref().map(|p| &p.last_signature);
    Ok(compressed.or(purged).cloned())
}

/// The newest sealed segment not compressed yet (a crash came between its
/// seal and its compression), as verification orders them: by name.
fn newest_uncompressed(shared: &Shared) -> Option<File> {
    // Out of the segments' lock before the manifest's is taken.
    let segments: Vec<Arc<SegmentFile>> = shared.segments().values().cloned().collect();
    let manifest = shared.manifest.lock().ok()?;
    let newest = segments
        .iter()
        .filter_map(|segment| match &**segment {
            SegmentFile::Plain { name, file }
                if name != LOG_FILE && manifest.entry(&names(name).0).is_none() =>
            {
                Some((name, file))
            }
            _ => None,
        })
        .max_by_key(|(name, _)| *name)?;
    newest.1.try_clone().ok()
}

/// The signature the last purge of everything left the chain at.
fn purged(shared: &Shared) -> Option<String> {
    let manifest = shared.manifest.lock().ok()?;
    manifest.purged.as_ref().map(|p| p.last_signature.clone())
}
