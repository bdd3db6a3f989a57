//! Keeping calls in flight against one server for a measured window: the
//! requests a benchmark sends (`Log`, `LogBatch`), the loop one caller runs
//! ([`drive`]) and what it saw ([`TaskResult`]).
//!
//! Included by the ingest and cluster benchmarks with
//! `#[path = "common/calls.rs"]`.

use std::future::Future;
use std::time::{Duration, Instant};

use auditlog_proto::v1 as pb;
use pb::audit_service_client::AuditServiceClient;
use tonic::Status;
use tonic::transport::Channel;

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
