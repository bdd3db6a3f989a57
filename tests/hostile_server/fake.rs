//! The hostile operator's tools: a log forged in memory and signed with a
//! real Ed25519 key ([`Forged`]), a fake AuditService (and AdminService's
//! Backup) that answers whatever a test scripts ([`Scene`],
//! [`FakeServer`]), and a raw HTTP/2 server that
//! misbehaves below gRPC ([`raw_server`]): headers and then nothing, or a
//! message that declares 4 GiB.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use auditlog_client::pb;
use auditlog_client::pb::admin_service_server::{AdminService, AdminServiceServer};
use auditlog_client::pb::audit_service_server::{AuditService, AuditServiceServer};
use auditlog_client::proof::{
    Checkpoint, Hash, MemoryTree, NoteSigner, consistency_proof, inclusion_proof, leaf_hash, merkle,
};
use bytes::Bytes;
use tonic::{Request, Response, Status};

/// The forged log's name: its checkpoints' origin and its key's name.
pub(crate) const ORIGIN: &str = "hostile/log";

/// A stored record line as the server writes it (the fields a verifier
/// reads), for seq `seq` of lead `lead`.
pub(crate) fn record(seq: u64, lead: &str) -> Vec<u8> {
    format!(
        "{{\"seq\":{seq},\"id\":\"id-{seq}\",\"timestamp\":\"2026-12-01T00:00:00.000000Z\",\
         \"event_type\":\"lead_ingested\",\"actor\":\"system\",\"lead_id\":\"{lead}\",\
         \"workflow\":null,\"details\":{{\"source\":\"webform\"}},\"key_id\":\"k1\",\
         \"prev\":\"{:064x}\",\"signature\":\"{:064x}\"}}",
        seq.saturating_sub(1),
        seq
    )
    .into_bytes()
}

/// A log forged in memory: its records, the Merkle tree over them and the
/// key that signs its checkpoints (the operator holds it).
pub(crate) struct Forged {
    pub signer: NoteSigner,
    pub lines: Vec<Vec<u8>>,
    tree: MemoryTree,
}

impl Forged {
    /// Records 1 to `n` (lead `L-<seq>`), signed with the key of `seed`.
    pub(crate) fn new(seed: u8, n: u64) -> Forged {
        Forged::of(seed, (1..=n).map(|seq| record(seq, &format!("L-{seq}"))))
    }

    /// A log of `lines`, in seq order.
    pub(crate) fn of(seed: u8, lines: impl IntoIterator<Item = Vec<u8>>) -> Forged {
        let mut forged = Forged {
            signer: NoteSigner::new(ORIGIN, &[seed; 32]).unwrap(),
            lines: Vec::new(),
            tree: MemoryTree::default(),
        };
        for line in lines {
            forged.tree.push(leaf_hash(&line));
            forged.lines.push(line);
        }
        forged
    }

    pub(crate) fn key(&self) -> String {
        self.signer.verifier_key()
    }

    pub(crate) fn root(&self, size: u64) -> Hash {
        merkle::root(&self.tree, size).unwrap()
    }

    /// The signed note of the checkpoint at `size`.
    pub(crate) fn note(&self, size: u64) -> String {
        self.signer.sign_checkpoint(&Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: self.root(size),
        })
    }

    /// GetCheckpoint's answer carrying `note`.
    pub(crate) fn answer(&self, note: String) -> pb::GetCheckpointResponse {
        pb::GetCheckpointResponse {
            checkpoint: Some(pb::SignedCheckpoint {
                note,
                ..Default::default()
            }),
            verifier_key: self.key(),
            retired_keys: Vec::new(),
        }
    }

    /// GetCheckpoint's answer at `size`.
    pub(crate) fn checkpoint(&self, size: u64) -> pb::GetCheckpointResponse {
        self.answer(self.note(size))
    }

    pub(crate) fn inclusion(&self, seq: u64, size: u64) -> pb::GetInclusionProofResponse {
        let hashes = inclusion_proof(&self.tree, seq - 1, size).unwrap().unwrap();
        pb::GetInclusionProofResponse {
            seq,
            leaf_index: seq - 1,
            tree_size: size,
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
            root_hash: self.root(size).to_vec(),
            line: self.lines[seq as usize - 1].clone(),
            leaf_hash: leaf_hash(&self.lines[seq as usize - 1]).to_vec(),
        }
    }

    pub(crate) fn consistency(&self, first: u64, second: u64) -> pb::GetConsistencyProofResponse {
        let hashes = consistency_proof(&self.tree, first, second)
            .unwrap()
            .unwrap();
        pb::GetConsistencyProofResponse {
            first_size: first,
            second_size: second,
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
        }
    }
}

/// What the fake server answers; a call with nothing scripted answers
/// UNIMPLEMENTED, and `fail` makes every call answer it.
#[derive(Default)]
pub(crate) struct Scene {
    pub checkpoint: Option<pb::GetCheckpointResponse>,
    pub inclusion: Option<pb::GetInclusionProofResponse>,
    pub consistency: Option<pb::GetConsistencyProofResponse>,
    pub log: Option<pb::LogResponse>,
    pub batch: Option<pb::LogBatchResponse>,
    /// Every Query call's answer, the same each time.
    pub query: Option<pb::QueryResponse>,
    /// Each StreamEvents call takes the next: its messages, then the end.
    pub streams: VecDeque<Vec<pb::StreamEventsResponse>>,
    /// Every Backup call's messages, then the end.
    pub backup: Option<Vec<pb::BackupResponse>>,
    pub fail: Option<Status>,
}

type Shared = Arc<Mutex<Scene>>;

struct Fake(Shared);

impl Fake {
    fn answer<T>(&self, pick: impl FnOnce(&mut Scene) -> Option<T>) -> Result<Response<T>, Status> {
        let mut scene = self.0.lock().unwrap();
        if let Some(status) = &scene.fail {
            return Err(status.clone());
        }
        pick(&mut scene)
            .map(Response::new)
            .ok_or_else(|| Status::unimplemented("not scripted"))
    }
}

type Stream<T> = futures::stream::BoxStream<'static, Result<T, Status>>;

#[tonic::async_trait]
impl AuditService for Fake {
    async fn log(&self, _: Request<pb::LogRequest>) -> Result<Response<pb::LogResponse>, Status> {
        self.answer(|s| s.log.clone())
    }
    async fn log_batch(
        &self,
        _: Request<pb::LogBatchRequest>,
    ) -> Result<Response<pb::LogBatchResponse>, Status> {
        self.answer(|s| s.batch.clone())
    }
    async fn query(
        &self,
        _: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        self.answer(|s| s.query.clone())
    }
    type StreamEventsStream = Stream<pb::StreamEventsResponse>;
    async fn stream_events(
        &self,
        _: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let messages = self.answer(|s| s.streams.pop_front())?.into_inner();
        let stream = futures::stream::iter(messages.into_iter().map(Ok));
        Ok(Response::new(Box::pin(stream)))
    }
    async fn verify_integrity(
        &self,
        _: Request<pb::VerifyIntegrityRequest>,
    ) -> Result<Response<pb::VerifyIntegrityResponse>, Status> {
        self.answer(|_| None)
    }
    async fn get_stats(
        &self,
        _: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        self.answer(|_| None)
    }
    async fn track_performance(
        &self,
        _: Request<pb::TrackPerformanceRequest>,
    ) -> Result<Response<pb::TrackPerformanceResponse>, Status> {
        self.answer(|_| None)
    }
    async fn get_performance_stats(
        &self,
        _: Request<pb::GetPerformanceStatsRequest>,
    ) -> Result<Response<pb::GetPerformanceStatsResponse>, Status> {
        self.answer(|_| None)
    }
    type ExportSubjectStream = Stream<pb::ExportSubjectResponse>;
    async fn export_subject(
        &self,
        _: Request<pb::ExportSubjectRequest>,
    ) -> Result<Response<Self::ExportSubjectStream>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
    async fn get_checkpoint(
        &self,
        _: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        self.answer(|s| s.checkpoint.clone())
    }
    async fn get_inclusion_proof(
        &self,
        _: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::GetInclusionProofResponse>, Status> {
        self.answer(|s| s.inclusion.clone())
    }
    async fn get_consistency_proof(
        &self,
        _: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::GetConsistencyProofResponse>, Status> {
        self.answer(|s| s.consistency.clone())
    }
}

/// AdminService: Backup as scripted, every other call UNIMPLEMENTED.
struct FakeAdmin(Shared);

#[tonic::async_trait]
impl AdminService for FakeAdmin {
    async fn rotate(
        &self,
        _: Request<pb::RotateRequest>,
    ) -> Result<Response<pb::RotateResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
    async fn apply_retention(
        &self,
        _: Request<pb::ApplyRetentionRequest>,
    ) -> Result<Response<pb::ApplyRetentionResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
    async fn test_alerts(
        &self,
        _: Request<pb::TestAlertsRequest>,
    ) -> Result<Response<pb::TestAlertsResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
    async fn get_alert_status(
        &self,
        _: Request<pb::GetAlertStatusRequest>,
    ) -> Result<Response<pb::GetAlertStatusResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
    async fn get_webhook_status(
        &self,
        _: Request<pb::GetWebhookStatusRequest>,
    ) -> Result<Response<pb::GetWebhookStatusResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
    async fn get_webhook_secret(
        &self,
        _: Request<pb::GetWebhookSecretRequest>,
    ) -> Result<Response<pb::GetWebhookSecretResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
    async fn mail_report(
        &self,
        _: Request<pb::MailReportRequest>,
    ) -> Result<Response<pb::MailReportResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
    type BackupStream = Stream<pb::BackupResponse>;
    async fn backup(
        &self,
        _: Request<pb::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let messages = self.0.lock().unwrap().backup.clone();
        let messages = messages.ok_or_else(|| Status::unimplemented("not scripted"))?;
        Ok(Response::new(Box::pin(futures::stream::iter(
            messages.into_iter().map(Ok),
        ))))
    }
}

/// The fake AuditService on 127.0.0.1, serving until dropped.
pub(crate) struct FakeServer {
    pub url: String,
    pub scene: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    pub(crate) async fn start(scene: Scene) -> FakeServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let scene = Arc::new(Mutex::new(scene));
        let service = AuditServiceServer::new(Fake(scene.clone()));
        let admin = AdminServiceServer::new(FakeAdmin(scene.clone()));
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .add_service(admin)
                .serve_with_incoming(incoming)
                .await;
        });
        FakeServer { url, scene, task }
    }

    /// Changes what it answers from now on.
    pub(crate) fn script(&self, change: impl FnOnce(&mut Scene)) {
        change(&mut self.scene.lock().unwrap());
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How [`raw_server`] answers every call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Raw {
    /// The response headers (200, `application/grpc`), then nothing, for
    /// ever (the connection stays up and answers pings).
    HeadersThenNothing,
    /// A gRPC message whose prefix declares 4 GiB - 1 bytes, then 1 MiB of
    /// it and nothing more.
    HugeMessage,
}

/// An HTTP/2 server on 127.0.0.1 that answers every request as `how`; its
/// URL, and the task to abort.
pub(crate) async fn raw_server(how: Raw) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(socket).await else {
                    return;
                };
                // Answers kept open: dropping one would end its stream.
                let mut open = Vec::new();
                while let Some(Ok((_request, mut respond))) = connection.accept().await {
                    let head = http::Response::builder()
                        .status(200)
                        .header("content-type", "application/grpc")
                        .body(())
                        .unwrap();
                    let Ok(mut body) = respond.send_response(head, false) else {
                        continue;
                    };
                    if let Raw::HugeMessage = how {
                        let mut prefix = vec![0u8, 0xff, 0xff, 0xff, 0xff];
                        prefix.resize(5 + (1 << 20), 0);
                        let _ = body.send_data(Bytes::from(prefix), false);
                    }
                    open.push(body);
                }
            });
        }
    });
    (url, task)
}
