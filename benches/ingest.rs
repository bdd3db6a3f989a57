//! Ingest benchmark: how fast the real server acknowledges durable events,
//! measured against an "empty" gRPC service in the same run.
//!
//! What it does:
//!
//! - starts the real server in-process (`auditlog_server::run`) on
//!   127.0.0.1 port 0, with a fresh temp data dir and the default config
//!   (`durability = fsync`: every acknowledgement waits for `fdatasync`);
//! - starts an empty `AuditService` (handlers return default responses at
//!   once) on another 127.0.0.1 port 0: the cost of gRPC itself on this
//!   machine, the baseline the targets are ratios of;
//! - starts the same empty service in a durable variant, the "floor": each
//!   call is answered only once as many bytes as its events take in the log
//!   are appended to a file and `fdatasync`ed, one sync per group of waiting
//!   calls, and nothing else is done (no validation, signing or index). It
//!   shows what answering after `fdatasync` costs by itself on this machine;
//! - drives all three through the generated tonic client with exactly the
//!   same pre-built requests (realistic events with a small `details`
//!   struct), `Log` with 1, 16 and 64 calls in flight and `LogBatch` of 100
//!   events with 4 and 8 in flight, alternating the order of the servers
//!   round by round (ABC, CBA) to cancel drift;
//! - prints events/s, per-call p50/p95/p99 latency, the group commits
//!   (fdatasyncs) per second that served the calls, the CPU this process
//!   used per event, split into the server side's and the client's (by
//!   thread, from `/proc/self/task`), and the CPU other processes used
//!   meanwhile (a noisy neighbour shows), and the ratios to the empty
//!   service and the floor, then checks the targets (ratios to the floor);
//! - runs `LogBatch` 100 x8 against the real server alone and with 10 live
//!   followers (`StreamEvents` from the head, `follow`), alternating, and
//!   reports the writers' throughput both ways and whether every follower
//!   kept up (every event, in order) with its largest lag
//!   (`ingest/follow.rs`);
//! - waits before each round until the process is idle, so background work a
//!   round leaves behind (compressing a sealed segment) is not charged to the
//!   next one;
//! - first measures the raw `fdatasync` rate of the disk holding the data dir,
//!   for context.
//!
//! Run it with:
//!
//! ```sh
//! cargo bench --bench ingest
//! ```
//!
//! Environment (all optional):
//!
//! - `AUDITLOG_BENCH_SECS`: measured seconds per scenario and server (5),
//!   split over the rounds;
//! - `AUDITLOG_BENCH_ROUNDS`: rounds per scenario; the servers' order
//!   reverses every round (2);
//! - `AUDITLOG_BENCH_WARMUP_SECS`: unmeasured warm-up before each round (0.5);
//! - `AUDITLOG_BENCH_CHANNELS`: HTTP/2 connections the in-flight calls share
//!   round-robin (4);
//! - `AUDITLOG_BENCH_SCENARIOS`: a comma-separated subset of `log1`, `log16`,
//!   `log64`, `batch4`, `batch8`, `follow` (all);
//! - `AUDITLOG_BENCH_FLOOR_FSYNC`: `0` makes the floor service skip its
//!   `fdatasync` (it still writes and answers from its thread), to separate
//!   the cost of answering from another thread from that of waiting for the
//!   disk (1);
//! - `AUDITLOG_BENCH_FLOOR_IN_PLACE`: `0` makes the floor service append
//!   its bytes, as it did until 2026-12-06, instead of writing them in
//!   place into zeros kept 1 MiB ahead of its file's end as the real server
//!   does (`store/writer/space.rs`): an appending floor's `fdatasync`s also
//!   commit the file's new size, which made it slower than the server it
//!   was the floor of (1);
//! - `AUDITLOG_BENCH_DETAILS`: `struct` (the default) or `json`: how the
//!   requests (the same for every server) carry each event's details, as a
//!   `google.protobuf.Struct` or as JSON text (`details_json`);
//! - `AUDITLOG_BENCH_CLIENT_RUNTIME`: `multi` (the default: one worker per
//!   core) or `current`: the runtime the bench's clients run on; with
//!   `current` every call is made from the one thread that drives the
//!   bench, which shortens a single caller's wait (see docs/benchmarks.md);
//! - `AUDITLOG_BENCH_DIR`: where the temp data dir is created (the system
//!   temp dir);
//! - `AUDITLOG_BENCH_VARIANTS`: variants of the real server measured in the
//!   same rounds and printed beside it, a comma-separated list of `metrics`
//!   (a metrics listener), `tracing` (OTLP export), `notree` (no Merkle
//!   tree) and `noseal` (no segment sealed); see `ingest/variants.rs`
//!   (none);
//! - `AUDITLOG_BENCH_ONLY`: a comma-separated subset of the servers to
//!   measure, `default`, `floor`, `empty` and the variants' names (all). The
//!   others are started but get no calls (their rows show 0), so a run under
//!   `valgrind --tool=callgrind` counts one server's instructions only.
//!
//! Client and servers run in this one process, on two tokio runtimes (one for
//! the servers, one for the client, each with a worker per core), so they
//! share the machine's cores as a co-located caller would.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditlog_proto::v1 as pb;
use pb::audit_service_server::AuditServiceServer;
use tokio::runtime::Handle;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;

#[path = "common/calls.rs"]
mod calls;
#[path = "common/cpu.rs"]
mod cpu;
#[path = "common/env.rs"]
mod env;
#[path = "common/events.rs"]
mod events;
#[path = "ingest/floor.rs"]
mod floor;
#[path = "ingest/follow.rs"]
mod follow;
#[path = "ingest/load.rs"]
mod load;
#[path = "ingest/machine.rs"]
mod machine;
#[path = "ingest/output.rs"]
mod output;
#[path = "common/server.rs"]
mod server;
#[path = "ingest/variants.rs"]
mod variants;

use calls::Requests;
use floor::{EmptyService, GroupCommit};
use load::{Measurement, measure};
use machine::{CpuSample, CpuUse, fsync_probe, settle};
use output::{Row, ms, print_table, print_targets};
use server::Served;
use variants::Variant;

type BoxError = Box<dyn Error + Send + Sync>;

/// Events per `LogBatch` call.
const BATCH_SIZE: usize = 100;
/// Bytes the floor service appends per event: about what one of these
/// events takes as a stored record line.
const RECORD_BYTES: usize = 450;
/// The floor service starts a new file after this many bytes, as the real
/// server starts a new segment (its default is 50 MB).
const FLOOR_FILE_BYTES: usize = 50 * 1024 * 1024;
/// Distinct pre-built events the requests cycle through.
const EVENT_POOL: usize = 4096;

/// The targets issue 20 asks for, ratios to the durable floor measured in
/// the same run, checked at the end: events/s of `Log` x64 and of the
/// batches, and the single caller's p50 as a multiple of the floor's.
const TARGET_LOG64_RATIO: f64 = 0.9;
const TARGET_BATCH_RATIO: f64 = 0.8;
const TARGET_LOG1_P50_RATIO: f64 = 1.1;

fn main() -> Result<(), BoxError> {
    let settings = Settings::from_env()?;
    // Servers and client get a runtime each, as two processes on this
    // machine would (`common/server.rs`).
    let (servers, client) = server::runtimes(settings.client_current_thread)?;
    client.block_on(bench(settings, servers.handle()))?;
    Ok(())
}

/// What the environment asked for.
struct Settings {
    /// Measured time per round; each scenario runs `rounds` rounds per server.
    measure: Duration,
    rounds: u32,
    warmup: Duration,
    channels: usize,
    scenarios: Vec<Scenario>,
    /// Whether to run the followers scenario (`follow`).
    follow: bool,
    parent_dir: std::path::PathBuf,
    /// Whether the floor service `fdatasync`s (it always writes).
    floor_fsync: bool,
    /// Whether the floor writes in place into zeros ahead (`AUDITLOG_BENCH_FLOOR_IN_PLACE`).
    floor_in_place: bool,
    /// Variants of the real server measured beside it.
    variants: Vec<Variant>,
    /// The servers to measure, by name (`None`: all).
    only: Option<Vec<String>>,
    /// Whether the requests carry details as JSON text (`AUDITLOG_BENCH_DETAILS`).
    details_json: bool,
    /// Whether the clients run on a current-thread runtime.
    client_current_thread: bool,
}

impl Settings {
    fn from_env() -> Result<Settings, BoxError> {
        let rounds = env::var("AUDITLOG_BENCH_ROUNDS", 2u32)?.max(1);
        // Four connections gave the empty service clearly more than one and
        // the real server as much or more (BENCHMARKS.md).
        let channels = env::var("AUDITLOG_BENCH_CHANNELS", 4usize)?.max(1);
        let (scenarios, follow) = match std::env::var("AUDITLOG_BENCH_SCENARIOS") {
            Ok(list) => {
                let names: Vec<&str> = list.split(',').map(str::trim).collect();
                let scenarios = names
                    .iter()
                    .filter(|name| **name != "follow")
                    .map(|name| {
                        Scenario::ALL
                            .into_iter()
                            .find(|s| s.key == *name)
                            .ok_or_else(|| {
                                format!("unknown scenario {name:?} in AUDITLOG_BENCH_SCENARIOS")
                            })
                    })
                    .collect::<Result<_, _>>()?;
                (scenarios, names.contains(&"follow"))
            }
            Err(_) => (Scenario::ALL.to_vec(), true),
        };
        let floor_fsync = on_unless_zero("AUDITLOG_BENCH_FLOOR_FSYNC")?;
        let floor_in_place = on_unless_zero("AUDITLOG_BENCH_FLOOR_IN_PLACE")?;
        let details_json = match env::var("AUDITLOG_BENCH_DETAILS", "struct".to_owned())?.as_str() {
            "struct" => false,
            "json" => true,
            other => {
                return Err(format!("AUDITLOG_BENCH_DETAILS={other:?}: use struct or json").into());
            }
        };
        Ok(Settings {
            measure: env::secs("AUDITLOG_BENCH_SECS", 5.0)? / rounds,
            rounds,
            warmup: env::secs("AUDITLOG_BENCH_WARMUP_SECS", 0.5)?,
            channels,
            scenarios,
            follow,
            parent_dir: env::parent_dir(),
            floor_fsync,
            floor_in_place,
            variants: Variant::from_env()?,
            only: std::env::var("AUDITLOG_BENCH_ONLY").ok().map(|list| {
                list.split(',')
                    .map(|name| name.trim().to_owned())
                    .filter(|name| !name.is_empty())
                    .collect()
            }),
            details_json,
            client_current_thread: server::current_thread_client("AUDITLOG_BENCH_CLIENT_RUNTIME")?,
        })
    }
}

/// One load shape.
#[derive(Clone, Copy)]
struct Scenario {
    key: &'static str,
    label: &'static str,
    /// Events per call: 1 is `Log`, more is `LogBatch`.
    events_per_call: usize,
    in_flight: usize,
}

impl Scenario {
    const ALL: [Scenario; 5] = [
        Scenario::log("log1", "Log, 1 in flight", 1),
        Scenario::log("log16", "Log, 16 in flight", 16),
        Scenario::log("log64", "Log, 64 in flight", 64),
        Scenario::batch("batch4", "LogBatch 100, 4 in flight", 4),
        Scenario::batch("batch8", "LogBatch 100, 8 in flight", 8),
    ];

    const fn log(key: &'static str, label: &'static str, in_flight: usize) -> Scenario {
        Scenario {
            key,
            label,
            events_per_call: 1,
            in_flight,
        }
    }

    const fn batch(key: &'static str, label: &'static str, in_flight: usize) -> Scenario {
        Scenario {
            key,
            label,
            events_per_call: BATCH_SIZE,
            in_flight,
        }
    }
}

async fn bench(settings: Settings, servers: &Handle) -> Result<(), BoxError> {
    let data = tempfile::tempdir_in(&settings.parent_dir)?;
    let started = Instant::now();
    println!(
        "auditlog ingest benchmark: per scenario and server {} round(s) of {} s measured \
         after {} s warm-up, {} HTTP/2 channel(s), a {} client runtime, {} CPU(s)",
        settings.rounds,
        settings.measure.as_secs_f64(),
        settings.warmup.as_secs_f64(),
        settings.channels,
        if settings.client_current_thread {
            "current-thread"
        } else {
            "multi-thread"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!("CPU: {}", cpu::model());
    println!("data dir: {}", data.path().display());
    println!();

    let probe_dir = data.path().join("fsync-probe");
    std::fs::create_dir_all(&probe_dir)?;
    let probes = tokio::task::spawn_blocking(move || {
        [450, 45_000].map(|size| fsync_probe(&probe_dir, size, Duration::from_secs(1)))
    })
    .await?;
    println!("raw disk: append + fdatasync in a loop, one thread, 1 s each");
    for probe in probes {
        let probe = probe?;
        println!(
            "  {:>6} B per write: {:>7.0} syncs/s   p50 {:>6.3} ms   p99 {:>6.3} ms",
            probe.bytes,
            probe.per_sec,
            ms(probe.p50),
            ms(probe.p99)
        );
    }
    println!();

    let (otlp, telemetry) = variants::start_tracing(&settings.variants, servers).await?;
    // In the order of a row: ours, the floor, the empty service, then the
    // variants of ours.
    let mut under_test = vec![
        start_ours(servers, &data.path().join("auditlog"), None, &otlp).await?,
        start_empty(
            servers,
            Some(Floor {
                dir: data.path().join("floor"),
                fsync: settings.floor_fsync,
                in_place: settings.floor_in_place,
            }),
        )?,
        start_empty(servers, None)?,
    ];
    for (i, variant) in settings.variants.iter().enumerate() {
        let dir = data.path().join(format!("variant-{i}"));
        under_test.push(start_ours(servers, &dir, Some(*variant), &otlp).await?);
    }
    let mut channels = Vec::new();
    for server in &under_test {
        channels.push(calls::connect(&server.url, settings.channels).await?);
    }
    let events: Vec<pb::EventInput> = (0..EVENT_POOL)
        .map(|n| event(n, settings.details_json))
        .collect();
    let requests = Arc::new(Requests::build(&events, BATCH_SIZE));
    let names: Vec<&str> = ["default", "floor", "empty"]
        .into_iter()
        .chain(settings.variants.iter().map(|v| v.key()))
        .collect();
    if let Some(only) = &settings.only
        && let Some(unknown) = only.iter().find(|name| !names.contains(&name.as_str()))
    {
        return Err(format!(
            "unknown server {unknown:?} in AUDITLOG_BENCH_ONLY: use {}",
            names.join(", ")
        )
        .into());
    }
    let measured = |i: usize| {
        settings
            .only
            .as_ref()
            .is_none_or(|only| only.iter().any(|name| name == names[i]))
    };

    let mut rows = Vec::new();
    for scenario in &settings.scenarios {
        eprintln!("running {} ...", scenario.label);
        // The order reverses every round (ours, floor, empty, then empty,
        // floor, ours, ...), so slow drift of a noisy machine favours none.
        let mut row: Vec<Measurement> = under_test.iter().map(|_| Default::default()).collect();
        for round in 0..settings.rounds {
            let mut order: Vec<usize> = (0..row.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order.into_iter().filter(|&i| measured(i)) {
                row[i].absorb(measure(&channels[i], scenario, &requests, &settings).await?);
            }
        }
        let mut row = row.into_iter().map(|mut m| {
            m.latencies.sort_unstable();
            m
        });
        let mut next = || row.next().unwrap_or_default();
        rows.push(Row {
            scenario: *scenario,
            ours: next(),
            floor: next(),
            empty: next(),
            variants: row.collect(),
        });
    }

    let followed = if settings.follow {
        eprintln!("running LogBatch 100, 8 in flight, with and without 10 followers ...");
        Some(follow::run(&under_test[0].url, &channels[0], &requests, &settings).await?)
    } else {
        None
    };

    print_table(&rows);
    if let Some(report) = followed {
        report.print();
    }
    if !settings.floor_fsync {
        println!("floor: ran WITHOUT its fdatasync (AUDITLOG_BENCH_FLOOR_FSYNC=0)");
    }
    if !settings.floor_in_place {
        println!(
            "floor: APPENDED to its file, each sync committing a new size \
             (AUDITLOG_BENCH_FLOOR_IN_PLACE=0)"
        );
    }
    print_targets(&rows);
    variants::print(&rows, &settings.variants);

    for server in under_test {
        server.stop().await?;
    }
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    println!();
    println!(
        "total time {:.0} s",
        started.elapsed().as_secs_f64().round()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// The two servers.

/// The real server, default config or `variant`'s, data in `dir` (`otlp`:
/// the trace sink's URL); returns once it serves.
async fn start_ours(
    runtime: &Handle,
    dir: &Path,
    variant: Option<Variant>,
    otlp: &str,
) -> Result<Served, BoxError> {
    let config = match variant {
        Some(variant) => variant.config(dir, otlp),
        None => auditlog_server::Config {
            data_dir: dir.to_path_buf(),
            ..auditlog_server::Config::default()
        },
    };
    Ok(Served::auditlog(runtime, config).await?.0)
}

/// A switch that is on unless `name` says `0` (or `false`); anything but
/// those and `1` (`true`) is an error naming it.
fn on_unless_zero(name: &str) -> Result<bool, BoxError> {
    match std::env::var(name) {
        Err(_) => Ok(true),
        Ok(v) => match v.trim() {
            "1" | "true" => Ok(true),
            "0" | "false" => Ok(false),
            other => Err(format!("{name}={other:?}: use 1 (the default) or 0").into()),
        },
    }
}

/// How the floor service writes (see [`EmptyService`]).
struct Floor {
    /// Where its file is.
    dir: PathBuf,
    fsync: bool,
    in_place: bool,
}

/// The empty baseline service; with a `floor`, the floor service.
fn start_empty(runtime: &Handle, floor: Option<Floor>) -> Result<Served, BoxError> {
    let service = EmptyService {
        commits: floor
            .map(|f| GroupCommit::start(&f.dir, f.fsync, f.in_place))
            .transpose()?,
    };
    Served::spawn(runtime, |listener, stopped| async move {
        // TCP_NODELAY on every accepted socket, as `auditlog_server::run`
        // does and as tonic's own `Server::serve` does by default.
        let incoming = TcpListenerStream::new(listener).map(|accepted| {
            let stream = accepted?;
            stream.set_nodelay(true)?;
            Ok::<_, std::io::Error>(stream)
        });
        tonic::transport::Server::builder()
            .add_service(AuditServiceServer::new(service))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stopped.await;
            })
            .await
            .map_err(BoxError::from)
    })
}

// ---------------------------------------------------------------------------
// The requests: realistic events, built once, the same for every server.

/// The `n`th event of the pool, three per lead (`common/events.rs`, the
/// events the peers bench sends too).
fn event(n: usize, details_json: bool) -> pb::EventInput {
    events::event(n, n / 3).to_pb_as(details_json)
}
