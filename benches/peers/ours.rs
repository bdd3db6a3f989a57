//! auditlog: the real server in-process on its own runtime, default config,
//! driven by the generated tonic client as the ingest bench drives it.

use std::path::Path;

use auditlog_proto::v1 as pb;
use futures::StreamExt as _;
use pb::audit_service_client::AuditServiceClient;
use tokio::runtime::Handle;
use tonic::transport::Channel;

use crate::calls::{self, Requests};
use crate::server::Served;
use crate::{BATCH_SIZE, BoxError, CONNECTIONS, EVENTS_PER_LEAD, events, history_lead, pool};

/// Events per `LogBatch` call while loading the history fill.
const FILL_BATCH: usize = 1000;

pub(crate) struct Ours {
    server: Served,
    channels: Vec<Channel>,
    history: auditlog_client::Client,
    requests: Requests,
    /// Whether details travel as JSON text, both ways.
    details_json: bool,
}

impl Ours {
    /// The real server with the default config and its data in `dir`, on the
    /// `runtime`; returns once it answers. With `details_json` the requests
    /// carry each event's details as JSON text rather than a `Struct`, and
    /// lead histories ask for them so.
    pub(crate) async fn start(
        runtime: &Handle,
        dir: &Path,
        details_json: bool,
    ) -> Result<Ours, BoxError> {
        let config = auditlog_server::Config {
            data_dir: dir.to_path_buf(),
            ..auditlog_server::Config::default()
        };
        let (server, history) = Served::auditlog(runtime, config).await?;
        let channels = calls::connect(&server.url, CONNECTIONS).await?;
        let events: Vec<pb::EventInput> = pool().iter().map(|e| e.to_pb_as(details_json)).collect();
        Ok(Ours {
            server,
            channels,
            history,
            requests: Requests::build(&events, BATCH_SIZE),
            details_json,
        })
    }

    pub(crate) async fn send(&self, worker: usize, i: usize, batch: bool) -> Result<u64, BoxError> {
        let mut client = AuditServiceClient::new(self.channels[worker % CONNECTIONS].clone());
        if batch {
            let request = self.requests.batches[i % self.requests.batches.len()].clone();
            let n = request.events.len();
            let receipts = client.log_batch(request).await?.into_inner().receipts;
            if receipts.len() != n {
                return Err(format!("{} receipts for {n} events", receipts.len()).into());
            }
            Ok(n as u64)
        } else {
            let request = self.requests.logs[i % self.requests.logs.len()].clone();
            client.log(request).await?;
            Ok(1)
        }
    }

    /// Loads `rows` history events by `LogBatch` (1,000 per call, 4 in
    /// flight).
    pub(crate) async fn fill(&self, rows: usize) -> Result<(), BoxError> {
        let leads = rows.div_ceil(EVENTS_PER_LEAD);
        let calls = futures::stream::iter((0..rows).step_by(FILL_BATCH))
            .map(|first| {
                let channel = &self.channels[(first / FILL_BATCH) % CONNECTIONS];
                let mut client = AuditServiceClient::new(channel.clone());
                let events = (first..rows.min(first + FILL_BATCH))
                    .map(|n| events::event(n, history_lead(n, leads)).to_pb_as(false))
                    .collect();
                async move {
                    client
                        .log_batch(pb::LogBatchRequest {
                            events,
                            with_proof: false,
                        })
                        .await
                }
            })
            .buffer_unordered(4);
        futures::pin_mut!(calls);
        while let Some(answer) = calls.next().await {
            answer?;
        }
        Ok(())
    }

    /// A lead's whole history through the client library (every page of
    /// 1,000, oldest first), as `auditlog history` reads it.
    pub(crate) async fn history(&self, lead: &str) -> Result<usize, BoxError> {
        if !self.details_json {
            return Ok(self.history.lead_history(lead).await?.len());
        }
        // As the PostgreSQL client reads its rows: the details parsed from
        // their JSON text.
        let events = self.history.lead_history_as_json(lead).await?;
        for event in &events {
            let _: serde_json::Value = serde_json::from_str(&event.details_json)?;
        }
        Ok(events.len())
    }

    pub(crate) async fn stop(self) -> Result<(), BoxError> {
        self.server.stop().await
    }
}
