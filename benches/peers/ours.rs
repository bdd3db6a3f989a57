//! auditlog: the real server in-process on its own runtime, default config,
//! driven by the generated tonic client as the ingest bench drives it.

use std::path::Path;
use std::time::{Duration, Instant};

use auditlog_proto::v1 as pb;
use futures::StreamExt as _;
use pb::audit_service_client::AuditServiceClient;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

use crate::{BATCH_SIZE, BoxError, CONNECTIONS, EVENTS_PER_LEAD, events, history_lead, pool};

/// Events per `LogBatch` call while loading the history fill.
const FILL_BATCH: usize = 1000;

pub(crate) struct Ours {
    channels: Vec<Channel>,
    history: auditlog_client::Client,
    logs: Vec<pb::LogRequest>,
    batches: Vec<pb::LogBatchRequest>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), BoxError>>,
}

impl Ours {
    /// The real server with the default config and its data in `dir`, on the
    /// `runtime`; returns once it answers.
    pub(crate) async fn start(runtime: &Handle, dir: &Path) -> Result<Ours, BoxError> {
        let config = auditlog_server::Config {
            data_dir: dir.to_path_buf(),
            ..auditlog_server::Config::default()
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = runtime.spawn(async move {
            let listener = TcpListener::from_std(listener)?;
            auditlog_server::run(config, listener, async move {
                let _ = stopped.await;
            })
            .await
            .map_err(BoxError::from)
        });
        let history = wait_until_serving(&url).await?;
        let endpoint = Endpoint::from_shared(url)?;
        let mut channels = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            channels.push(endpoint.connect().await?);
        }
        let events: Vec<pb::EventInput> = pool().iter().map(events::Event::to_pb).collect();
        let logs = events
            .iter()
            .map(|e| pb::LogRequest {
                event: Some(e.clone()),
                with_proof: false,
            })
            .collect();
        let batches = events
            .chunks_exact(BATCH_SIZE)
            .map(|c| pb::LogBatchRequest {
                events: c.to_vec(),
                with_proof: false,
            })
            .collect();
        Ok(Ours {
            channels,
            history,
            logs,
            batches,
            stop,
            task,
        })
    }

    pub(crate) async fn send(&self, worker: usize, i: usize, batch: bool) -> Result<u64, BoxError> {
        let mut client = AuditServiceClient::new(self.channels[worker % CONNECTIONS].clone());
        if batch {
            let request = self.batches[i % self.batches.len()].clone();
            let n = request.events.len();
            let receipts = client.log_batch(request).await?.into_inner().receipts;
            if receipts.len() != n {
                return Err(format!("{} receipts for {n} events", receipts.len()).into());
            }
            Ok(n as u64)
        } else {
            let request = self.logs[i % self.logs.len()].clone();
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
                    .map(|n| events::event(n, history_lead(n, leads)).to_pb())
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
        let events = self.history.lead_history(lead).await?;
        Ok(events.len())
    }

    pub(crate) async fn stop(self) -> Result<(), BoxError> {
        let _ = self.stop.send(());
        self.task.await?
    }
}

/// Waits until the server has recovered its (empty) log and answers.
async fn wait_until_serving(url: &str) -> Result<auditlog_client::Client, BoxError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = match auditlog_client::Client::connect(url.to_owned()).await {
            Ok(client) => client
                .stats(None)
                .await
                .map(|_| client)
                .map_err(BoxError::from),
            Err(e) => Err(e.into()),
        };
        match answer {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("the server at {url} did not start serving: {e}").into());
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
