//! Rotation, step by step, and the sealer thread that runs the slow steps.
//!
//! 1. **Seal** (writer, [`seal`]), when the active segment is full, when its
//!    first record is as old as the segment age limit, or on request (see
//!    `writer`; never an empty one): create the new active file as
//!    `audit.log.tmp`, rename `audit.log` to `audit.<UTC time>.log`, rename
//!    `audit.log.tmp` to `audit.log`, fsync the directory. What can fail for
//!    want of an inode or a descriptor fails before anything is renamed, and
//!    a failed second rename is undone, so a seal that fails leaves
//!    `audit.log` where it was, and the writer writes on into it.
//! 2. **Compress** (sealer, [`compress`]): write `<name>.log.gz.tmp` and
//!    `<name>.idx.tmp`, and the segment's lead copy (`<name>.leads.zst.tmp`,
//!    `<name>.leads.idx.tmp`, see `leads`), fsync them, rename all to their
//!    final names, fsync the directory.
//! 3. **Record** (sealer, [`record`]): add the segment to the manifest
//!    (atomic replace), then point the index at the compressed file.
//! 4. **Delete** (sealer, [`delete`]): remove the plain sealed file, fsync the
//!    directory.
//!
//! A crash between any two steps leaves a state recovery finishes (a stray
//! `audit.log.tmp` is removed, a sealed file without `audit.log` gets a new
//! one); a plain
//! sealed file not in the manifest is compressed again from the start (its
//! `.tmp` files or an unrecorded `.gz` are simply replaced); one already in
//! the manifest is just deleted. Nothing is lost because the plain file goes
//! only after the manifest names its compressed copy. A step that fails
//! while the server runs is tried again from that step ([`run`]).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read as _, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use tokio::sync::oneshot;

use super::error::StoreError;
use super::leads;
use super::manifest::SegmentEntry;
use super::segment::{self, Compressed, SegmentFile, SegmentIndex};
use super::shared::{LOG_FILE, Shared};
use crate::clock::{format_timestamp, now_micros};
use crate::durable::{self, Staged, sync_dir};

/// A sealed segment, as reported to whoever asked for the rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The sealed file's name (`audit.<UTC time>.log`); once compressed it
    /// is this name with `.gz`.
    pub file: String,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// Where a rotation that waits is answered.
pub(super) type Reply = oneshot::Sender<Result<Option<Sealed>, StoreError>>;

/// What the sealer is sent, and does in the order sent.
pub(super) enum Job {
    /// A sealed segment to compress and record.
    Seal {
        /// The segment's id in the segment table (its plain file).
        segment: u32,
        /// The plain sealed file's name.
        plain: String,
        /// Answered once the segment is compressed and recorded.
        done: Option<Reply>,
    },
    /// Answered with `None` once every segment sent before it has been
    /// tried: a rotation that waits, with nothing to seal, waits for the
    /// segments sealed before it (one a write filled, say).
    Barrier(Reply),
}

/// How step 1 ended when it did not seal.
#[derive(Debug)]
pub(super) enum SealError {
    /// Nothing changed on disk: the writer's file is still `audit.log`.
    Unchanged(std::io::Error),
    /// The active file was renamed to `sealed` and neither the new file
    /// could be put in its place nor the old one put back: no `audit.log`.
    Broken {
        sealed: String,
        error: std::io::Error,
        undo: std::io::Error,
    },
    /// Both renames are done (`sealed` and the new file `active`), but the
    /// directory fsync that makes them durable failed.
    Unsynced {
        sealed: String,
        active: NewActive,
        error: std::io::Error,
    },
}

/// The new active file: one handle for the writer, one for the readers.
#[derive(Debug)]
pub(super) struct NewActive {
    pub(super) file: File,
    pub(super) reader: File,
}

/// How many times step 1 tries to rename the sealed file back after the new
/// file could not be put in place.
const UNDO_TRIES: usize = 3;

/// Step 1: renames the active file to `audit.<UTC time>.log` and puts a new
/// empty one in its place. Everything that can fail for want of a resource
/// (a free inode, a file descriptor) happens first, on a file of its own
/// (`audit.log.tmp`), while nothing else has changed; then the two renames,
/// and a failed second rename is undone. So the writer's file is at
/// `audit.log` unless this returns the new one, or [`SealError::Broken`].
/// Returns the sealed name and the new active file.
pub(super) fn seal(dir: &Path) -> Result<(String, NewActive), SealError> {
    // The time of sealing names the file; a name already taken (two seals in
    // one microsecond, or a clock stepped back) moves on to the next.
    let mut micros = now_micros();
    let name = loop {
        let stamp = format_timestamp(micros).replace(['-', ':'], "");
        let name = format!("audit.{stamp}.log");
        if !dir.join(&name).exists() && !dir.join(names(&name).0).exists() {
            break name;
        }
        micros += 1;
    };
    let (active, sealed) = (dir.join(LOG_FILE), dir.join(&name));
    let next = durable::tmp_path(&active);
    let new = prepare(&next).map_err(|e| {
        let _ = std::fs::remove_file(&next);
        SealError::Unchanged(e)
    })?;
    if let Err(e) = std::fs::rename(&active, &sealed) {
        let _ = std::fs::remove_file(&next);
        return Err(SealError::Unchanged(e));
    }
    let installed = injected_io(dir, "install").and_then(|()| std::fs::rename(&next, &active));
    if let Err(error) = installed {
        let mut undo = std::fs::rename(&sealed, &active);
        for _ in 1..UNDO_TRIES {
            if undo.is_ok() {
                break;
            }
            undo = std::fs::rename(&sealed, &active);
        }
        let _ = std::fs::remove_file(&next);
        return match undo {
            // Whichever of the two names a crash leaves on disk, recovery
            // reads the same file; no directory fsync is needed.
            Ok(()) => Err(SealError::Unchanged(error)),
            Err(undo) => Err(SealError::Broken {
                sealed: name,
                error,
                undo,
            }),
        };
    }
    if let Err(error) = sync_dir(dir) {
        return Err(SealError::Unsynced {
            sealed: name,
            active: new,
            error,
        });
    }
    Ok((name, new))
}

/// Creates the new active file at `next` (a leftover from a seal that failed
/// or crashed there is replaced), with its second handle.
fn prepare(next: &Path) -> std::io::Result<NewActive> {
    match std::fs::remove_file(next) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = next.parent() {
        injected_io(dir, "create")?;
    }
    // Not `append`: the writer writes in place, into zeros it wrote ahead
    // (`writer/space.rs`).
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(next)?;
    let reader = file.try_clone()?;
    Ok(NewActive { file, reader })
}

/// The names of a segment's files, from its plain sealed name.
pub(super) fn names(plain: &str) -> (String, String) {
    let stem = plain.strip_suffix(".log").unwrap_or(plain);
    (format!("{stem}.log.gz"), format!("{stem}.idx"))
}

/// Step 2: compresses the plain sealed file into its final `.gz` and `.idx`
/// (and its lead copy): all four are staged first, then put in place
/// together with one directory fsync. `scratch` is the memory a segment is
/// read into, kept from one segment to the next (see [`run`]).
pub(super) fn compress(
    dir: &Path,
    plain: &str,
    stop: &AtomicBool,
    lead_copy: bool,
    scratch: &mut Vec<u8>,
) -> Result<(segment::SealedInfo, SegmentIndex), segment::SegmentError> {
    let (gz, idx) = names(plain);
    let (leads_zst, leads_idx) = leads::names(plain);
    let Compressed {
        info,
        index,
        mut staged,
        plain: whole,
    } = segment::compress(
        &dir.join(plain),
        &dir.join(gz),
        &dir.join(idx),
        stop,
        std::mem::take(scratch),
    )?;
    if lead_copy {
        let path = dir.join(plain);
        let source = match &whole {
            Some(bytes) => leads::Source::Bytes(bytes),
            None => leads::Source::File(&path),
        };
        staged.extend(leads::write(
            source,
            &index,
            &dir.join(leads_zst),
            &dir.join(leads_idx),
            stop,
        )?);
    }
    if let Some(bytes) = whole {
        *scratch = bytes;
    }
    durable::publish(staged)?;
    Ok((info, index))
}

/// Step 3: adds the compressed segment to the manifest, then moves the
/// segment's records in the index from `plain_segment` to the `.gz`.
pub(super) fn record(
    shared: &Shared,
    plain: &str,
    plain_segment: u32,
    info: &segment::SealedInfo,
    index: &SegmentIndex,
) -> Result<(), StoreError> {
    let (gz, idx) = names(plain);
    let io = |e: std::io::Error| StoreError::Rotate(format!("{gz}: {e}"));
    {
        let mut manifest = shared.manifest.lock().map_err(|_| StoreError::Closed)?;
        if manifest.entry(&gz).is_none() {
            manifest
                .segments
                .push(SegmentEntry::new(gz.clone(), idx, info));
            manifest.segments.sort_by_key(|s| s.first_seq);
            manifest.store(&shared.dir, &shared.keyring).map_err(io)?;
        }
    }
    let file = File::open(shared.dir.join(&gz)).map_err(io)?;
    let leads = leads::open(&shared.dir, &gz);
    let gz_segment = shared.add_segment(SegmentFile::Gzip {
        name: gz,
        file,
        chunks: index.chunks.clone(),
        leads,
    });
    shared
        .index
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .relocate(plain_segment, gz_segment, index);
    shared
        .segments
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&plain_segment);
    Ok(())
}

/// Step 4: removes the plain sealed file.
pub(super) fn delete(dir: &Path, plain: &str) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(plain)) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// How long the sealer first waits before it tries a failed segment again
/// (unless a new job comes first); the wait doubles while retries keep
/// failing, up to [`MAX_RETRY_AFTER`].
const RETRY_AFTER: Duration = Duration::from_secs(30);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30 * 60);

/// How long the sealer keeps the memory it read the last segment into when
/// no other segment comes: under sustained ingest (50 MB segments at
/// 20 MB/s and more) the next one comes sooner.
const SCRATCH_KEPT: Duration = Duration::from_secs(5);

/// One segment's way through steps 2 to 4, resumable after a failure.
struct Attempt {
    segment: u32,
    plain: String,
    /// Set once the manifest and the index name the compressed file: only
    /// step 4 is left.
    recorded: Option<Sealed>,
}

/// Runs jobs until every sender is gone or shutdown stops it; first writes
/// the lead copies that compressed segments lack. A segment whose steps
/// failed (a full disk, say) stays readable as it is and is tried again,
/// from the step that failed, before the next job and whenever the retry
/// wait runs out, so space comes back once the cause is gone, without a
/// restart.
pub(super) fn run(shared: &Arc<Shared>, jobs: &Receiver<Job>) {
    // Compression is background work: it runs on CPU that ingest and
    // queries leave idle, and under a burst it waits rather than slowing
    // writers. A sealed segment not yet compressed is read like any other
    // meanwhile.
    super::priority::background("sealer");
    backfill_lead_copies(shared);
    let mut failed: Vec<Attempt> = Vec::new();
    let mut retry_after = RETRY_AFTER;
    let mut scratch = Vec::new();
    loop {
        // The last segment's memory is kept while segments keep coming
        // (reading the next one into it spares faulting in fresh pages, a
        // tenth of the sealer's CPU under sustained ingest), and handed
        // back once none has come for a while.
        let job = if scratch.capacity() > 0 {
            match jobs.recv_timeout(SCRATCH_KEPT) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => {
                    scratch = Vec::new();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else if failed.is_empty() {
            match jobs.recv() {
                Ok(job) => Some(job),
                Err(_) => break,
            }
        } else {
            match jobs.recv_timeout(retry_after) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        // Earlier failures first, in the order they were sealed.
        let retries = std::mem::take(&mut failed);
        let tried = retries.len();
        for mut attempt in retries {
            if attempt_steps(shared, &mut attempt, retry_after, &mut scratch).is_err() {
                failed.push(attempt);
            }
        }
        retry_after = if tried > 0 && failed.len() == tried {
            (retry_after * 2).min(MAX_RETRY_AFTER)
        } else {
            RETRY_AFTER
        };
        match job {
            Some(Job::Seal {
                segment,
                plain,
                done,
            }) => {
                let mut attempt = Attempt {
                    segment,
                    plain,
                    recorded: None,
                };
                let result = attempt_steps(shared, &mut attempt, retry_after, &mut scratch);
                if result.is_err() {
                    failed.push(attempt);
                }
                if let Some(done) = done {
                    let _ = done.send(result.map(Some));
                }
            }
            Some(Job::Barrier(done)) => {
                let _ = done.send(Ok(None));
            }
            None => {}
        }
    }
}

/// [`steps`], logged.
fn attempt_steps(
    shared: &Shared,
    attempt: &mut Attempt,
    retry_after: Duration,
    scratch: &mut Vec<u8>,
) -> Result<Sealed, StoreError> {
    let result = steps(shared, attempt, scratch);
    match &result {
        Ok(sealed) => tracing::info!(
            file = %sealed.file,
            first_seq = sealed.first_seq,
            last_seq = sealed.last_seq,
            "compressed a sealed segment"
        ),
        Err(_) if shared.stop.load(Ordering::Relaxed) => {}
        Err(e) => tracing::error!(
            file = %attempt.plain,
            error = %e,
            retry_in_secs = retry_after.as_secs(),
            "compressing a sealed segment failed; it stays readable as it is and is \
             tried again later (and at the next start)"
        ),
    }
    result
}

/// Writes the lead copies that compressed segments lack (sealed by a version
/// without them, or with `lead_copies` off, or whose copy was unusable),
/// from the segments themselves. Stops early on shutdown; what is left is
/// done at the next start.
fn backfill_lead_copies(shared: &Shared) {
    if !shared.lead_copies {
        return;
    }
    let mut missing: Vec<(u32, String)> = shared
        .segments()
        .iter()
        .filter_map(|(id, segment)| match &**segment {
            SegmentFile::Gzip {
                name, leads: None, ..
            } => Some((*id, name.clone())),
            _ => None,
        })
        .collect();
    missing.sort_by(|a, b| a.1.cmp(&b.1));
    for (id, gz) in missing {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        match backfill_lead_copy(shared, id, &gz) {
            Ok(()) => tracing::info!(file = %gz, "wrote the segment's lead copy"),
            Err(e) => tracing::warn!(
                file = %gz,
                error = %e,
                "could not write the segment's lead copy; its lead histories read the segment"
            ),
        }
    }
}

/// Writes the lead copy of the compressed segment `gz` (segment `id`) from
/// its `.gz` and `.idx`, and gives it to readers.
fn backfill_lead_copy(shared: &Shared, id: u32, gz: &str) -> Result<(), segment::SegmentError> {
    let dir = &shared.dir;
    let written = stage_lead_copy(dir, gz, &shared.stop, segment::WHOLE_MAX as u64);
    durable::publish(written?)?;
    let copy = leads::open(dir, gz)
        .ok_or_else(|| std::io::Error::other("the copy just written does not open"))?;
    let mut segments = shared.segments.write().unwrap_or_else(|e| e.into_inner());
    // Unless retention purged the segment meanwhile.
    if let Some(slot) = segments.get_mut(&id)
        && let SegmentFile::Gzip {
            name, file, chunks, ..
        } = &**slot
    {
        *slot = Arc::new(SegmentFile::Gzip {
            name: name.clone(),
            file: file.try_clone()?,
            chunks: chunks.clone(),
            leads: Some(copy),
        });
    }
    Ok(())
}

/// The lead copy of the compressed segment `gz`, written from its `.gz` and
/// `.idx` and staged: read into memory when its lines take at most
/// `whole_max` bytes (as compression holds a segment), else inflated into a
/// temp file of plain lines beside it, removed after.
fn stage_lead_copy(
    dir: &Path,
    gz: &str,
    stop: &AtomicBool,
    whole_max: u64,
) -> Result<Vec<Staged>, segment::SegmentError> {
    let (_, idx) = names(gz.strip_suffix(".gz").unwrap_or(gz));
    let index = SegmentIndex::decode(&std::fs::read(dir.join(&idx))?)?;
    let (copy_zst, copy_idx) = leads::names(gz);
    let (to_zst, to_idx) = (dir.join(copy_zst), dir.join(copy_idx));
    let write = |source| leads::write(source, &index, &to_zst, &to_idx, stop);
    let mut members = segment::Members::new(BufReader::new(File::open(dir.join(gz))?));
    let plain: u64 = index.chunks.iter().map(|c| u64::from(c.plain)).sum();
    if plain <= whole_max {
        // The segment's lines in memory, as compression holds them.
        let mut bytes = Vec::new();
        segment::reserve(&mut bytes, plain as usize)?;
        members.read_to_end(&mut bytes)?;
        write(leads::Source::Bytes(&bytes))
    } else {
        // Larger than compression would hold: the lines as the plain file
        // they were compressed from.
        let source = durable::tmp_path(&to_zst.with_extension("zst.lines"));
        let written = (|| {
            let mut out = BufWriter::new(File::create(&source)?);
            std::io::copy(&mut members, &mut out)?;
            out.flush()?;
            drop(out);
            write(leads::Source::File(&source))
        })();
        let _ = std::fs::remove_file(&source);
        written
    }
}

/// Steps 2 to 4 for one segment, from where `attempt` left off. Steps 2
/// and 3 can be run again after a failure part-way (the `.tmp` files are
/// rewritten, the manifest entry is added once); step 3 cannot after it
/// succeeded, so a failed step 4 is retried alone.
fn steps(
    shared: &Shared,
    attempt: &mut Attempt,
    scratch: &mut Vec<u8>,
) -> Result<Sealed, StoreError> {
    let sealed = match &attempt.recorded {
        Some(sealed) => sealed.clone(),
        None => {
            injected_failure(&shared.dir, "compress")?;
            let (info, index) = compress(
                &shared.dir,
                &attempt.plain,
                &shared.stop,
                shared.lead_copies,
                scratch,
            )
            .map_err(|e| {
                StoreError::Rotate(format!(
                    "compressing {}: {e}; the sealed file stays readable as it is and is \
                     compressed again later",
                    attempt.plain
                ))
            })?;
            record(shared, &attempt.plain, attempt.segment, &info, &index)?;
            let sealed = Sealed {
                file: names(&attempt.plain).0,
                first_seq: info.first_seq,
                last_seq: info.last_seq,
            };
            attempt.recorded = Some(sealed.clone());
            sealed
        }
    };
    injected_failure(&shared.dir, "delete")?;
    delete(&shared.dir, &attempt.plain).map_err(|e| {
        StoreError::Rotate(format!(
            "deleting {} after compressing it: {e}; it is tried again later",
            attempt.plain
        ))
    })?;
    Ok(sealed)
}

/// Tests and `fault-injection` builds: a file `FAIL_SEALING` in the data
/// dir holding `create` (the new active file), `install` (its rename to
/// `audit.log`), `compress` or `delete` fails that step, for as long as it
/// is there.
#[cfg(any(test, feature = "fault-injection"))]
fn injected_failure(dir: &Path, step: &str) -> Result<(), StoreError> {
    if !crate::faults::hooks_on() {
        return Ok(());
    }
    match std::fs::read_to_string(dir.join("FAIL_SEALING")) {
        Ok(wanted) if wanted.trim() == step => Err(StoreError::Rotate(format!(
            "injected failure of the {step} step (FAIL_SEALING in the data dir)"
        ))),
        _ => Ok(()),
    }
}

#[cfg(not(any(test, feature = "fault-injection")))]
fn injected_failure(_: &Path, _: &str) -> Result<(), StoreError> {
    Ok(())
}

/// [`injected_failure`] as the I/O error of the step it fails.
fn injected_io(dir: &Path, step: &str) -> std::io::Result<()> {
    injected_failure(dir, step).map_err(|e| match e {
        StoreError::Rotate(reason) => std::io::Error::other(reason),
        other => std::io::Error::other(other.to_string()),
    })
}

/// Crash scenarios: each test builds a log, performs the rotation steps by
/// hand up to a crash point (stopping there is the crash), reopens the store
/// and checks that it is consistent and lost nothing.
#[cfg(test)]
mod tests;
