//! Keeping calls in flight against one server for a measured window: the
//! connections ([`connect`]), the requests a benchmark sends (`Log`,
//! `LogBatch`, built once: [`Requests`]), the loop one caller runs
//! ([`drive`]), what it saw ([`TaskResult`]) and the percentiles of what
//! all saw ([`percentile`]).
//!
//! Included by the ingest, peers and cluster benchmarks with
//! `#[path = "common/calls.rs"]`.

use std::future::Future;
use std::time::{Duration, Instant};

use auditlog_proto::v1 as pb;
use pb::audit_service_client::AuditServiceClient;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

/// The requests of a run, built once from its events, the same for every
/// system: one `Log` per event, and `LogBatch`es of `batch` events (a
/// shorter tail is left out).
pub(crate) struct Requests {
    pub(crate) logs: Vec<pb::LogRequest>,
    pub(crate) batches: Vec<pb::LogBatchRequest>,
}

impl Requests {
    pub(crate) fn build(events: &[pb::EventInput], batch: usize) -> Requests {
        let logs = events
            .iter()
            .map(|e| pb::LogRequest {
                event: Some(e.clone()),
                with_proof: false,
            })
            .collect();
        let batches = events
            .chunks_exact(batch)
            .map(|c| pb::LogBatchRequest {
                events: c.to_vec(),
                with_proof: false,
            })
            .collect();
        Requests { logs, batches }
    }
}

/// `n` HTTP/2 connections to `url`, each established before measuring.
pub(crate) async fn connect(url: &str, n: usize) -> Result<Vec<Channel>, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(url.to_owned())?;
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        channels.push(endpoint.connect().await?);
    }
    Ok(channels)
}

/// Nearest rank `p` (in percent) of `sorted`; the default when empty.
pub(crate) fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What one task saw in the measured window.
#[derive(Default)]
pub(crate) struct TaskResult {
    pub(crate) events: u64,
    pub(crate) calls: u64,
    pub(crate) errors: u64,
    pub(crate) last_error: Option<String>,
    pub(crate) latencies: Vec<Duration>,
    pub(crate) receipt_times: Vec<i64>,
}

/// A request the benchmark sends: `Log` or `LogBatch`.
pub(crate) trait Call: Clone {
    /// Sends it; answers how many events were logged and the first receipt.
    fn send(
        self,
        client: &mut AuditServiceClient<Channel>,
    ) -> impl Future<Output = Result<(u64, Option<pb::Receipt>), Status>> + Send;
}

impl Call for pb::LogRequest {
    async fn send(
        self,
        client: &mut AuditServiceClient<Channel>,
    ) -> Result<(u64, Option<pb::Receipt>), Status> {
        let response = client.log(self).await?.into_inner();
        Ok((1, response.receipt))
    }
}

impl Call for pb::LogBatchRequest {
    async fn send(
        self,
        client: &mut AuditServiceClient<Channel>,
    ) -> Result<(u64, Option<pb::Receipt>), Status> {
        let events = self.events.len();
        let receipts = client.log_batch(self).await?.into_inner().receipts;
        if receipts.len() != events {
            return Err(Status::internal(format!(
                "{} receipts for {events} events",
                receipts.len()
            )));
        }
        Ok((events as u64, receipts.into_iter().next()))
    }
}

/// Keeps one call in flight until `end`, walking `pool` from `offset`.
pub(crate) async fn drive<R: Call>(
    mut client: AuditServiceClient<Channel>,
    pool: &[R],
    offset: usize,
    start: Instant,
    end: Instant,
) -> TaskResult {
    let mut result = TaskResult::default();
    for i in offset.. {
        let request = pool[i % pool.len()].clone();
        let began = Instant::now();
        if began >= end {
            break;
        }
        let outcome = request.send(&mut client).await;
        let done = Instant::now();
        if done < start || done >= end {
            continue;
        }
        match outcome {
            Ok((events, receipt)) => result.record(done - began, events, receipt.as_ref()),
            Err(status) => result.fail(status),
        }
    }
    result
}

impl TaskResult {
    pub(crate) fn record(&mut self, latency: Duration, events: u64, receipt: Option<&pb::Receipt>) {
        self.calls += 1;
        self.events += events;
        self.latencies.push(latency);
        if let Some(t) = receipt.and_then(|r| r.timestamp.as_ref()) {
            self.receipt_times
                .push(t.seconds * 1_000_000 + i64::from(t.nanos / 1000));
        }
    }

    pub(crate) fn fail(&mut self, status: Status) {
        self.errors += 1;
        self.last_error = Some(format!("{:?}: {}", status.code(), status.message()));
    }
}
