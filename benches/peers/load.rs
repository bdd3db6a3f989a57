//! Driving one system: the load shapes, the callers that keep their calls in
//! flight, what a round measured, and where the CPU went (from /proc).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::calls::percentile;
use crate::{BoxError, System, cpu};

/// One load shape: single events or batches, with so many callers.
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) label: &'static str,
    pub(crate) batch: bool,
    pub(crate) in_flight: usize,
}

impl Shape {
    pub(crate) const ALL: [Shape; 4] = [
        Shape {
            label: "1 event, 1 in flight",
            batch: false,
            in_flight: 1,
        },
        Shape {
            label: "1 event, 64 in flight",
            batch: false,
            in_flight: 64,
        },
        Shape {
            label: "batch 100, 4 in flight",
            batch: true,
            in_flight: 4,
        },
        Shape {
            label: "batch 100, 8 in flight",
            batch: true,
            in_flight: 8,
        },
    ];
}

/// What one shape measured against one system, over all its rounds.
#[derive(Default)]
pub(crate) struct Measurement {
    pub(crate) events: u64,
    pub(crate) calls: u64,
    pub(crate) errors: u64,
    pub(crate) last_error: Option<String>,
    /// Per call (a whole batch for batches); sorted once every round is in.
    pub(crate) latencies: Vec<Duration>,
    pub(crate) window: Duration,
    pub(crate) cpu: Option<CpuUse>,
}

/// Lead-history queries against one system.
#[derive(Default)]
pub(crate) struct History {
    pub(crate) latencies: Vec<Duration>,
    pub(crate) events: usize,
}

impl History {
    pub(crate) fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    pub(crate) fn mean_events(&self) -> f64 {
        self.events as f64 / self.latencies.len().max(1) as f64
    }
}

impl Measurement {
    pub(crate) fn absorb(&mut self, other: Measurement) {
        self.cpu = match (self.cpu, other.cpu) {
            (Some(a), Some(b)) if self.window > Duration::ZERO => Some(CpuUse {
                server: a.server + b.server,
                client: a.client + b.client,
                others: a.others + b.others,
            }),
            (_, b) if self.window == Duration::ZERO => b,
            _ => None,
        };
        self.events += other.events;
        self.calls += other.calls;
        self.errors += other.errors;
        self.last_error = other.last_error.or(self.last_error.take());
        self.latencies.extend(other.latencies);
        self.window += other.window;
    }

    pub(crate) fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.window.as_secs_f64().max(1e-9)
    }

    pub(crate) fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }
}

/// What one caller saw in the measured window.
#[derive(Default)]
struct Caller {
    events: u64,
    calls: u64,
    errors: u64,
    last_error: Option<String>,
    latencies: Vec<Duration>,
}

/// Runs `shape` against `system`: waits until it is idle, warms up, then
/// measures. A call counts when it completes inside the window.
pub(crate) async fn measure(
    system: &Arc<System>,
    shape: Shape,
    warmup: Duration,
    window: Duration,
) -> Result<Measurement, BoxError> {
    settle(system, Duration::from_secs(30)).await;
    let start = Instant::now() + warmup;
    let end = start + window;
    let callers: Vec<JoinHandle<Caller>> = (0..shape.in_flight)
        .map(|worker| {
            let system = Arc::clone(system);
            tokio::spawn(async move {
                let mut caller = Caller::default();
                // Each caller walks the same pool from its own offset.
                let offset = if shape.batch { worker * 7 } else { worker * 61 };
                for i in offset.. {
                    let began = Instant::now();
                    if began >= end {
                        break;
                    }
                    let outcome = system.send(worker, i, shape.batch).await;
                    let done = Instant::now();
                    if done < start || done >= end {
                        continue;
                    }
                    match outcome {
                        Ok(events) => {
                            caller.calls += 1;
                            caller.events += events;
                            caller.latencies.push(done - began);
                        }
                        Err(e) => {
                            caller.errors += 1;
                            caller.last_error = Some(e.to_string());
                        }
                    }
                }
                caller
            })
        })
        .collect();

    tokio::time::sleep_until(start.into()).await;
    let before = CpuSample::take(system);
    tokio::time::sleep_until(end.into()).await;
    let cpu = CpuSample::take(system)
        .zip(before)
        .map(|(after, before)| after.since(&before));

    let mut m = Measurement {
        window,
        cpu,
        ..Measurement::default()
    };
    for caller in callers {
        let c = caller.await?;
        m.events += c.events;
        m.calls += c.calls;
        m.errors += c.errors;
        m.last_error = c.last_error.or(m.last_error);
        m.latencies.extend(c.latencies);
    }
    Ok(m)
}

/// CPU seconds used during a window.
#[derive(Clone, Copy, Default)]
pub(crate) struct CpuUse {
    /// By the system's server: auditlog's threads in this process other than
    /// the client's, or the peer's server process(es).
    pub(crate) server: f64,
    /// By the client runtime's threads (every system's client code).
    pub(crate) client: f64,
    /// By everything else on the machine.
    pub(crate) others: f64,
}

/// Cumulative CPU ticks.
struct CpuSample {
    machine: u64,
    process: u64,
    client: u64,
    external: Option<u64>,
}

impl CpuSample {
    fn take(system: &System) -> Option<CpuSample> {
        let machine = cpu::machine_ticks()?;
        let process = cpu::stat_ticks("/proc/self/stat")?.1;
        let client = cpu::client_ticks()?;
        Some(CpuSample {
            machine,
            process,
            client,
            external: system.external_ticks(),
        })
    }

    fn since(&self, before: &CpuSample) -> CpuUse {
        let secs = |a: u64, b: u64| a.saturating_sub(b) as f64 / cpu::TICKS_PER_SEC;
        let process = secs(self.process, before.process);
        let client = secs(self.client, before.client);
        let machine = secs(self.machine, before.machine);
        let (server, external) = match (self.external, before.external) {
            (Some(a), Some(b)) => (secs(a, b), secs(a, b)),
            _ => ((process - client).max(0.0), 0.0),
        };
        CpuUse {
            server,
            client,
            others: (machine - process - external).max(0.0),
        }
    }
}

/// The CPU ticks of process `pid` and of its live children, with what its
/// reaped children used (PostgreSQL's backends are children of the
/// postmaster).
pub(crate) fn process_tree_ticks(pid: u32) -> u64 {
    let mut total = 0;
    let Ok(own) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    if let Some((_, rest)) = own.rsplit_once(')') {
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime, stime, cutime, cstime: fields 14 to 17.
        total += fields
            .iter()
            .skip(11)
            .take(4)
            .filter_map(|f| f.parse::<u64>().ok())
            .sum::<u64>();
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return total;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(child) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // The parent's pid is field 4.
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            total += fields
                .iter()
                .skip(11)
                .take(2)
                .filter_map(|f| f.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    total
}

/// Waits until the system under test is idle (its server under 10% of a core
/// over 200 ms, at most `limit`), so what an earlier round left behind (a
/// sealed segment's compression, a checkpoint) is not charged to this one.
pub(crate) async fn settle(system: &System, limit: Duration) {
    let take = || CpuSample::take(system);
    cpu::settle(limit, take, |now, last| now.since(last).server).await;
}
