//! Driving the load of the ingest bench: what a scenario measured against
//! one server, and the tasks that keep its calls in flight.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditlog_proto::v1::audit_service_client::AuditServiceClient;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::calls::{Requests, TaskResult, drive, percentile};
use crate::{BoxError, CpuSample, CpuUse, Scenario, Settings, settle};

/// What one scenario measured against one server.
#[derive(Default)]
pub(crate) struct Measurement {
    pub(crate) events: u64,
    pub(crate) calls: u64,
    pub(crate) errors: u64,
    pub(crate) last_error: Option<String>,
    /// Per-call latencies (sorted once every round is in).
    pub(crate) latencies: Vec<Duration>,
    /// Distinct receipt timestamps: the writer stamps every event of a group
    /// commit with one timestamp (`store/writer.rs`), so this counts the
    /// fdatasyncs that served the measured calls. Zero for the empty service.
    pub(crate) commits: u64,
    pub(crate) window: Duration,
    /// CPU time this process (client, servers, writer thread) and everything
    /// else on the machine used during the window, where /proc tells.
    pub(crate) cpu: Option<CpuUse>,
    /// How many rounds were absorbed into this one.
    pub(crate) rounds: u32,
    /// How long this process stayed busy before the round could start.
    pub(crate) settle: Duration,
}

impl Measurement {
    /// Adds another round's figures to these.
    pub(crate) fn absorb(&mut self, other: Measurement) {
        self.events += other.events;
        self.calls += other.calls;
        self.errors += other.errors;
        self.last_error = other.last_error.or(self.last_error.take());
        self.latencies.extend(other.latencies);
        self.commits += other.commits;
        self.window += other.window;
        self.cpu = if self.rounds == 0 {
            other.cpu
        } else {
            self.cpu.zip(other.cpu).map(|(a, b)| CpuUse {
                own: a.own + b.own,
                client: a.client + b.client,
                others: a.others + b.others,
            })
        };
        self.rounds += 1;
        self.settle += other.settle;
    }

    pub(crate) fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.window.as_secs_f64()
    }

    pub(crate) fn commits_per_sec(&self) -> f64 {
        self.commits as f64 / self.window.as_secs_f64()
    }

    pub(crate) fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    /// The server side's CPU per event, in µs (every thread but the
    /// client runtime's and the main thread); `None` where it is unknown.
    pub(crate) fn server_us_per_event(&self) -> Option<f64> {
        let cpu = self.cpu?;
        Some((cpu.own - cpu.client).max(0.0) * 1e6 / self.events.max(1) as f64)
    }
}

/// Runs `scenario` against the server behind `channels`: warm-up, then the
/// measured window. A call counts when it completes inside the window.
pub(crate) async fn measure(
    channels: &[Channel],
    scenario: &Scenario,
    requests: &Arc<Requests>,
    settings: &Settings,
) -> Result<Measurement, BoxError> {
    let quiet = settle().await;
    let start = Instant::now() + settings.warmup;
    let end = start + settings.measure;
    let tasks: Vec<JoinHandle<TaskResult>> = (0..scenario.in_flight)
        .map(|task| {
            let client = AuditServiceClient::new(channels[task % channels.len()].clone());
            let scenario = *scenario;
            // Each task walks the same request pool from its own offset; both
            // servers get the same sequence.
            let requests = Arc::clone(requests);
            tokio::spawn(async move {
                if scenario.events_per_call == 1 {
                    drive(client, &requests.logs, task * 61, start, end).await
                } else {
                    drive(client, &requests.batches, task * 7, start, end).await
                }
            })
        })
        .collect();

    // Sample CPU use over exactly the measured window.
    tokio::time::sleep_until(start.into()).await;
    let before = CpuSample::take();
    tokio::time::sleep_until(end.into()).await;
    let cpu = CpuSample::take()
        .zip(before)
        .map(|(after, before)| after.since(&before));

    let mut m = Measurement {
        window: settings.measure,
        cpu,
        settle: quiet,
        ..Measurement::default()
    };
    let mut receipt_times = HashSet::new();
    for task in tasks {
        let r = task.await?;
        m.events += r.events;
        m.calls += r.calls;
        m.errors += r.errors;
        m.last_error = r.last_error.or(m.last_error);
        m.latencies.extend(r.latencies);
        receipt_times.extend(r.receipt_times);
    }
    m.commits = receipt_times.len() as u64;
    Ok(m)
}
