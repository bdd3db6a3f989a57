//! The two baselines of the ingest bench: the empty service (every handler
//! answers at once) and, with a group commit, the durable floor (answers
//! once the events' bytes are written and `fdatasync`ed, nothing else).
//!
//! The floor writes as the real server does, in place into zeros kept
//! ahead of its file's end, so a sync flushes data and commits no new file
//! size. Until 2026-12-06 it appended, and each of its syncs also committed
//! a size: a floor slower than the server it is the floor of (a single
//! caller's p50 0.87 times the appending floor's, 1.04 to 1.06 times the
//! one in place; `AUDITLOG_BENCH_FLOOR_IN_PLACE=0` appends).

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::mpsc;

use auditlog_proto::v1 as pb;
use pb::audit_service_server::AuditService;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use crate::{BoxError, FLOOR_FILE_BYTES, RECORD_BYTES};

/// The baseline: every handler answers at once, doing nothing. With
/// `commits` it is the floor: `Log` and `LogBatch` answer only once their
/// events' bytes are durable.
pub(crate) struct EmptyService {
    pub(crate) commits: Option<GroupCommit>,
}

impl EmptyService {
    /// Waits until `events` events' worth of bytes are durable (at once for
    /// the empty service).
    pub(crate) async fn commit(&self, events: usize) -> Result<(), Status> {
        let Some(commits) = &self.commits else {
            return Ok(());
        };
        let (done, durable) = oneshot::channel();
        commits
            .tx
            .send((events, done))
            .map_err(|_| Status::unavailable("the floor's commit thread stopped"))?;
        durable
            .await
            .map_err(|_| Status::unavailable("the floor's commit thread stopped"))
    }
}

/// How far ahead of its end the in-place floor keeps zeros (the server's
/// `writer/space.rs` keeps 1 MiB).
const AHEAD: usize = 1 << 20;

/// The zeros written at a time, from one buffer (as the server's writer
/// does), not a fresh allocation per top-up.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// The floor's group commit: one thread writes the bytes of every call
/// waiting, `fdatasync`s once and answers them all, as the real server's
/// writer does, without building any record.
pub(crate) struct GroupCommit {
    pub(crate) tx: mpsc::Sender<(usize, oneshot::Sender<()>)>,
}

impl GroupCommit {
    pub(crate) fn start(dir: &Path, fsync: bool, in_place: bool) -> Result<GroupCommit, BoxError> {
        std::fs::create_dir_all(dir)?;
        let (tx, rx) = mpsc::channel::<(usize, oneshot::Sender<()>)>();
        let dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("floor-commit".to_owned())
            .spawn(move || {
                if let Err(e) = GroupCommit::run(&dir, fsync, in_place, &rx) {
                    eprintln!("the floor service's log in {} failed: {e}", dir.display());
                }
            })?;
        Ok(GroupCommit { tx })
    }

    pub(crate) fn run(
        dir: &Path,
        fsync: bool,
        in_place: bool,
        rx: &mpsc::Receiver<(usize, oneshot::Sender<()>)>,
    ) -> std::io::Result<()> {
        let path = dir.join("floor.log");
        let mut file = File::create(&path)?;
        let mut written = 0;
        // With `in_place`, how far the file holds zeros.
        let mut zeros = 0;
        let mut bytes = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            group.extend(rx.try_iter());
            let len = group.iter().map(|(events, _)| events * RECORD_BYTES).sum();
            bytes.resize(len, b'x');
            if written + len > FLOOR_FILE_BYTES {
                file = File::create(&path)?;
                written = 0;
                zeros = 0;
            }
            if in_place {
                file.write_all_at(&bytes, written as u64)?;
                // Topped up when under half of `AHEAD` is left, as the
                // server's writer does.
                let end = written + len;
                if zeros < end + AHEAD / 2 {
                    let want = end + AHEAD;
                    let mut at = zeros.max(end);
                    while at < want {
                        let n = (want - at).min(ZEROS.len());
                        file.write_all_at(&ZEROS[..n], at as u64)?;
                        at += n;
                    }
                    zeros = want;
                }
            } else {
                file.write_all(&bytes)?;
            }
            if fsync {
                file.sync_data()?;
            }
            written += len;
            for (_, done) in group {
                let _ = done.send(());
            }
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl AuditService for EmptyService {
    async fn log(&self, _: Request<pb::LogRequest>) -> Result<Response<pb::LogResponse>, Status> {
        self.commit(1).await?;
        Ok(Response::new(pb::LogResponse {
            receipt: Some(pb::Receipt::default()),
            ..Default::default()
        }))
    }

    async fn log_batch(
        &self,
        req: Request<pb::LogBatchRequest>,
    ) -> Result<Response<pb::LogBatchResponse>, Status> {
        let n = req.get_ref().events.len();
        self.commit(n).await?;
        Ok(Response::new(pb::LogBatchResponse {
            receipts: vec![pb::Receipt::default(); n],
            ..Default::default()
        }))
    }

    async fn query(
        &self,
        _: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        Err(Status::unimplemented("the empty service only logs"))
    }

    type StreamEventsStream = futures::stream::Empty<Result<pb::StreamEventsResponse, Status>>;

    async fn stream_events(
        &self,
        _: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        Err(Status::unimplemented("the empty service only logs"))
    }

    async fn verify_integrity(
        &self,
        _: Request<pb::VerifyIntegrityRequest>,
    ) -> Result<Response<pb::VerifyIntegrityResponse>, Status> {
        Err(Status::unimplemented("the empty service only logs"))
    }

    async fn get_stats(
        &self,
        _: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        Err(Status::unimplemented("the empty service only logs"))
    }

    async fn track_performance(
        &self,
        _: Request<pb::TrackPerformanceRequest>,
    ) -> Result<Response<pb::TrackPerformanceResponse>, Status> {
        Err(Status::unimplemented("the empty service only logs"))
    }

    async fn get_performance_stats(
        &self,
        _: Request<pb::GetPerformanceStatsRequest>,
    ) -> Result<Response<pb::GetPerformanceStatsResponse>, Status> {
        Err(Status::unimplemented("the empty service only logs"))
    }

    type ExportSubjectStream = futures::stream::Empty<Result<pb::ExportSubjectResponse, Status>>;

    async fn export_subject(
        &self,
        _: Request<pb::ExportSubjectRequest>,
    ) -> Result<Response<Self::ExportSubjectStream>, Status> {
        Err(Status::unimplemented("the empty service only logs"))
    }

    async fn get_checkpoint(
        &self,
        _: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        Err(Status::unimplemented("the empty service only logs"))
    }

    async fn get_inclusion_proof(
        &self,
        _: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::GetInclusionProofResponse>, Status> {
        Err(Status::unimplemented("the empty service only logs"))
    }

    async fn get_consistency_proof(
        &self,
        _: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::GetConsistencyProofResponse>, Status> {
        Err(Status::unimplemented("the empty service only logs"))
    }
}
