//! `AdminService.Backup`: the files of [`Store::backup_plan`] streamed as a
//! `file` message each, then its bytes in `data` messages of at most
//! [`CHUNK`], then `done`. A blocking thread reads the files and hands the
//! messages over a channel of a few, so a caller that reads slowly holds
//! the thread (and the opened files) but no more memory than that. One
//! backup runs at a time, and a caller that takes nothing for [`STALLED`]
//! ends its backup: a connection kept open without reading would otherwise
//! hold the thread and the files (and their disk space, once retention
//! deletes them) for as long as it stays. A file the caller holds from an
//! earlier backup ([`Held`]) comes as its `file` message alone, marked
//! `held`.

use std::os::unix::fs::FileExt as _;
use std::sync::Arc;
use std::time::Duration;

use auditlog_proto::v1 as pb;
use tokio::sync::mpsc;
use tonic::Status;

use super::edge;
use crate::store::{BackupPlan, Content, Held, Store};

/// The most bytes a `data` message carries.
const CHUNK: usize = 1 << 20;

/// The most files a caller may say it holds.
pub(super) const MAX_HELD: usize = 100_000;

/// How long a backup waits for its caller to take the next message.
const STALLED: Duration = Duration::from_secs(60);

/// One backup at a time: a server's permit, held by the backup that runs.
#[derive(Clone)]
pub(super) struct OneAtATime(Arc<tokio::sync::Semaphore>);

impl Default for OneAtATime {
    fn default() -> Self {
        OneAtATime(Arc::new(tokio::sync::Semaphore::new(1)))
    }
}

/// The stream Backup answers with.
pub(super) type BackupStream =
    tokio_stream::wrappers::ReceiverStream<Result<pb::BackupResponse, Status>>;

/// Plans the backup, then streams it from a blocking thread; what the caller
/// `held` is not sent.
pub(super) async fn start(
    store: Arc<Store>,
    one: &OneAtATime,
    held: Held,
) -> Result<BackupStream, Status> {
    let running = Arc::clone(&one.0)
        .try_acquire_owned()
        .map_err(|_| edge::backup_running())?;
    let dir = store.dir().to_path_buf();
    let plan = edge::blocking("backup", move || {
        let mut first: Vec<String> = crate::checkpoint::KEPT_FILES
            .iter()
            .map(|&f| f.to_owned())
            .collect();
        first.extend(crate::webhooks::position_files(&dir));
        store.backup_plan(&first, &held).map_err(edge::status_of)
    })
    .await?;
    let (tx, rx) = mpsc::channel(4);
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _running = running;
        let give = |message| handle.block_on(tx.send_timeout(message, STALLED)).is_ok();
        if let Err(status) = send(plan, give) {
            let _ = handle.block_on(tx.send_timeout(Err(status), STALLED));
        }
    });
    Ok(BackupStream::new(rx))
}

/// Sends every file of `plan`, then `done`, each message through `give`;
/// stops quietly when `give` fails (the caller is gone, or took nothing for
/// [`STALLED`]).
fn send(
    plan: BackupPlan,
    give: impl Fn(Result<pb::BackupResponse, Status>) -> bool,
) -> Result<(), Status> {
    let (mut bytes, mut held_files, mut held_bytes) = (0, 0, 0);
    let files = plan.files.len() as u64;
    for file in plan.files {
        let size = file.content.len();
        let held = matches!(file.content, Content::Held { .. });
        let header = edge::backup_file_pb(file.path.clone(), size, held);
        if !give(Ok(header)) {
            return Ok(());
        }
        match file.content {
            Content::Held { .. } => {
                held_files += 1;
                held_bytes += size;
                continue;
            }
            Content::Bytes(content) => {
                for chunk in content.chunks(CHUNK) {
                    if !give(Ok(edge::backup_data_pb(chunk.to_vec()))) {
                        return Ok(());
                    }
                }
            }
            Content::File { file: source, len } => {
                let mut at = 0;
                while at < len {
                    let want = usize::try_from(len - at).unwrap_or(CHUNK).min(CHUNK);
                    let mut chunk = vec![0; want];
                    let got = source
                        .read_at(&mut chunk, at)
                        .map_err(|e| edge::backup_read_failed(&file.path, &e.to_string()))?;
                    if got == 0 {
                        return Err(edge::backup_read_failed(
                            &file.path,
                            &format!(
                                "it ended at byte {at} of the {len} it had when the backup began"
                            ),
                        ));
                    }
                    chunk.truncate(got);
                    at += got as u64;
                    if !give(Ok(edge::backup_data_pb(chunk))) {
                        return Ok(());
                    }
                }
            }
        }
        bytes += size;
    }
    give(Ok(edge::backup_done_pb(pb::BackupDone {
        files,
        bytes,
        head_seq: plan.head_seq,
        held_files,
        held_bytes,
    })));
    Ok(())
}
