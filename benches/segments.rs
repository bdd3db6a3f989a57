//! Segments benchmark: how a large, rotated and compressed log performs for
//! verification, lead history queries, start-up and memory.
//!
//! What it does:
//!
//! 1. **Builds the log** (not measured): starts the real server in-process
//!    (`auditlog_server::run`, 127.0.0.1 port 0, default `fsync` durability,
//!    retention off) and writes 1,000,000 realistic events with `LogBatch`
//!    (1,000 events per call, 4 calls in flight): about 5,000 leads with ~200
//!    events each spread uniformly over the whole log, the well-known event
//!    types, 4 workflows, 3 to 5 `details` fields. `max_file_size_mb` is
//!    chosen so the log spans about 28 segments. It then calls
//!    `Rotate(wait = true)` and waits until no sealed plain `audit.*.log` is
//!    left, so every event is in a compressed segment.
//!    The built data dir is kept under `target/bench-data/` keyed by its
//!    parameters, and reused by later runs (the output says so).
//! 2. Reports the log's layout (segments, compressed and plain bytes, chunks,
//!    how many chunks one lead's history touches) and a single-threaded cost
//!    model measured on the segment files (gunzip per chunk, MAC check and
//!    decoding and encoding per record as a Query answers it), which explains
//!    the figures below.
//! 3. Measures start-up of the real server on that data dir: in-process (from
//!    `run` being called) and as a separate `auditlog-server` process (from
//!    spawning it), each until the first successful `GetStats`; median of 3.
//! 4. On the last server process: lead history (`Query`, lead filter, oldest
//!    first, limit 1,000), p50/p95/p99 over N queries, "cold-ish" (a lead not
//!    queried before each time: the chunk cache does not hold its chunks, the
//!    OS page cache does) and "warm" (the same lead again and again).
//! 5. `VerifyIntegrity` of the whole log, 3 runs: events/s.
//! 6. The server process's memory from `/proc/<pid>/status` (VmRSS, RssAnon,
//!    VmHWM) after start-up, after the queries, and after verification.
//!
//! Then prints every figure against the issue's target.
//!
//! Run it with:
//!
//! ```sh
//! cargo bench --bench segments
//! ```
//!
//! It builds the server binary first (`cargo build --release -p
//! auditlog-server`, a no-op when it is up to date).
//!
//! Environment (all optional):
//!
//! - `AUDITLOG_BENCH_EVENTS`: events in the log (1000000);
//! - `AUDITLOG_BENCH_LEADS`: distinct leads (events / 200);
//! - `AUDITLOG_BENCH_SEGMENT_MB`: `max_file_size_mb` (16 per million events,
//!   which gives about 28 segments);
//! - `AUDITLOG_BENCH_QUERIES`: lead history queries per kind (200);
//! - `AUDITLOG_BENCH_CACHE`: `0` builds the log in a temp dir and deletes it
//!   afterwards instead of keeping it under `target/bench-data/` (1);
//! - `AUDITLOG_SERVER_BIN`: the server binary to run instead of building
//!   `target/release/auditlog-server`.
//!
//! This file holds the settings and the order of the run; `segments/` the
//! rest: `build.rs` builds (or reuses) the log, `generator.rs` makes its
//! events, `layout.rs` reads the layout and measures the cost model,
//! `process.rs` starts the servers (process and in-process), `queries.rs`
//! runs the lead histories and verification, `machine.rs` reads /proc and
//! `output.rs` prints the table and the figures.

use std::error::Error;
use std::path::PathBuf;
use std::time::Duration;

#[path = "segments/build.rs"]
mod build;
#[path = "segments/generator.rs"]
mod generator;
#[path = "segments/layout.rs"]
mod layout;
#[path = "segments/machine.rs"]
mod machine;
#[path = "segments/output.rs"]
mod output;
#[path = "segments/process.rs"]
mod process;
#[path = "segments/queries.rs"]
mod queries;

use build::prepare_data;
use layout::{CostModel, Layout};
use machine::{print_machine, read_trimmed};
use output::{Table, mb, median, ms, print_runs, rate, secs};
use process::{ServerProcess, server_binary, startup_in_process};
use queries::{Verified, history_queries, page_sizes, pick_leads, verify};

type BoxError = Box<dyn Error + Send + Sync>;

/// Events per `LogBatch` while building.
const BATCH_SIZE: u64 = 1000;
/// `LogBatch` calls in flight while building.
const IN_FLIGHT: usize = 4;
/// `max_file_size_mb` per million events when not given: ~28 segments.
const SEGMENT_MB_PER_MILLION: f64 = 16.0;
/// Start-up and verification runs; the median is the figure.
const RUNS: usize = 3;
/// Chunks the cost model decompresses.
const COST_SAMPLE_CHUNKS: usize = 2000;
/// How long a server may take to answer its first GetStats.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long rotation and compression of the last segment may take.
const SEAL_TIMEOUT: Duration = Duration::from_secs(600);
/// Bumped when the generated log changes, so stale cached logs are rebuilt.
const DATA_VERSION: u32 = 4;
/// The key id the server signs with by default.
const KEY_ID: &str = "k1";

/// The issue's targets.
const TARGET_VERIFY_EPS: f64 = 1_000_000.0;
const TARGET_HISTORY_P50: Duration = Duration::from_millis(2);
const TARGET_STARTUP: Duration = Duration::from_secs(2);
const TARGET_RSS_BYTES: u64 = 150_000_000;

fn main() -> Result<(), BoxError> {
    // The bench build has the test hooks (a dev-dependency's feature).
    auditlog_server::bench::without_fault_hooks();
    let settings = Settings::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(settings))
}

/// What the environment asked for.
struct Settings {
    events: u64,
    leads: u64,
    segment_mb: f64,
    queries: usize,
    cache: bool,
    server_bin: Option<PathBuf>,
}

impl Settings {
    fn from_env() -> Result<Settings, BoxError> {
        fn var<T: std::str::FromStr>(name: &str) -> Result<Option<T>, BoxError>
        where
            T::Err: std::fmt::Display,
        {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .replace('_', "")
                    .parse()
                    .map(Some)
                    .map_err(|e| format!("{name}={v}: {e}").into()),
                Err(_) => Ok(None),
            }
        }
        let events: u64 = var("AUDITLOG_BENCH_EVENTS")?.unwrap_or(1_000_000).max(1);
        let leads: u64 = var("AUDITLOG_BENCH_LEADS")?.unwrap_or(events / 200).max(1);
        let segment_mb: f64 = var("AUDITLOG_BENCH_SEGMENT_MB")?.unwrap_or_else(|| {
            let mb = events as f64 / 1e6 * SEGMENT_MB_PER_MILLION;
            // Two decimals keep the cache key readable.
            ((mb * 100.0).round() / 100.0).max(0.05)
        });
        if !(segment_mb > 0.0 && segment_mb.is_finite()) {
            return Err(format!("AUDITLOG_BENCH_SEGMENT_MB={segment_mb}: must be > 0").into());
        }
        Ok(Settings {
            events,
            leads,
            segment_mb,
            queries: var("AUDITLOG_BENCH_QUERIES")?.unwrap_or(200).max(1),
            cache: var::<u8>("AUDITLOG_BENCH_CACHE")?.unwrap_or(1) != 0,
            server_bin: std::env::var_os("AUDITLOG_SERVER_BIN").map(PathBuf::from),
        })
    }
}

async fn bench(settings: Settings) -> Result<(), BoxError> {
    println!("segments benchmark");
    println!("==================");
    print_machine();
    println!(
        "log: {} events, {} leads, max_file_size_mb = {}",
        settings.events, settings.leads, settings.segment_mb
    );
    println!();

    let data = prepare_data(&settings).await?;
    let dir = data.dir.clone();

    let layout = Layout::read(&dir)?;
    layout.print(settings.events);
    let cost = CostModel::measure(&dir, &layout)?;
    cost.print();

    let server_bin = server_binary(&settings)?;
    println!("server binary: {}", server_bin.display());
    println!();

    // Start-up, in-process.
    let mut in_process = Vec::new();
    for _ in 0..RUNS {
        in_process.push(startup_in_process(&dir).await?);
    }
    print_runs(
        "start-up, in-process (run() -> first GetStats)",
        &in_process,
    );

    // Start-up, separate process; the last one stays up for what follows.
    let mut process_runs = Vec::new();
    let mut server = None;
    for run in 0..RUNS {
        let (started, elapsed) = ServerProcess::start(&server_bin, &dir).await?;
        process_runs.push(elapsed);
        if run + 1 < RUNS {
            started.stop()?;
        } else {
            server = Some(started);
        }
    }
    print_runs(
        "start-up, auditlog-server process (spawn -> first GetStats)",
        &process_runs,
    );
    let server = server.ok_or("no server process was started")?;
    let mem_startup = server.memory()?;
    println!("memory after start-up: {mem_startup}");
    println!();

    // Lead history.
    let (warm_lead, cold_leads) = pick_leads(&settings);
    let cold = history_queries(&server.client, &cold_leads).await?;
    cold.print("lead history, cold-ish (a new lead each query)", &layout);
    let warm_list = vec![warm_lead; settings.queries];
    // Three unmeasured queries first put the lead's chunks in the cache.
    history_queries(&server.client, &warm_list[..3.min(warm_list.len())]).await?;
    let warm = history_queries(&server.client, &warm_list).await?;
    warm.print("lead history, warm (the same lead each query)", &layout);
    page_sizes(&server.client, &warm_list[0]).await?;
    let mem_queries = server.memory()?;
    println!("memory after the queries: {mem_queries}");
    println!();

    // Verification.
    let mut verify_runs = Vec::new();
    for run in 1..=RUNS {
        let v = verify(&server.client, settings.events).await?;
        println!(
            "verify run {run}: {} events in {:.3} s = {} (server-side {} ms, {}; {} segments \
             read)",
            v.events,
            v.elapsed.as_secs_f64(),
            rate(v.events_per_sec()),
            v.server_ms,
            rate(v.server_eps),
            v.segments,
        );
        verify_runs.push(v);
    }
    let mem_verify = server.memory()?;
    println!("memory after verification: {mem_verify}");
    server.stop()?;
    println!();

    let mut eps: Vec<f64> = verify_runs.iter().map(Verified::events_per_sec).collect();
    eps.sort_by(f64::total_cmp);
    let verify_median = eps[eps.len() / 2];
    let verify_best = eps[eps.len() - 1];

    let mut table = Table::default();
    table.row(
        "verify whole log, median of 3",
        rate(verify_median),
        format!(">= {}", rate(TARGET_VERIFY_EPS)),
        Some(verify_median >= TARGET_VERIFY_EPS),
    );
    table.row("verify whole log, best of 3", rate(verify_best), "", None);
    for (label, q) in [("cold-ish", &cold), ("warm", &warm)] {
        let p50 = q.percentile(50.0);
        table.row(
            &format!("lead history p50, {label} ({:.0} events)", q.mean_events()),
            ms(p50),
            format!("<= {}", ms(TARGET_HISTORY_P50)),
            Some(p50 <= TARGET_HISTORY_P50),
        );
        table.row(
            &format!("lead history p95 / p99, {label}"),
            format!("{} / {}", ms(q.percentile(95.0)), ms(q.percentile(99.0))),
            "",
            None,
        );
    }
    let startup = median(&process_runs);
    table.row(
        "start-up, process, median of 3",
        secs(startup),
        format!("<= {}", secs(TARGET_STARTUP)),
        Some(startup <= TARGET_STARTUP),
    );
    table.row(
        "start-up, in-process, median of 3",
        secs(median(&in_process)),
        format!("<= {}", secs(TARGET_STARTUP)),
        Some(median(&in_process) <= TARGET_STARTUP),
    );
    table.row(
        "server RSS after start-up + queries",
        mb(mem_queries.rss),
        format!("<= {}", mb(TARGET_RSS_BYTES)),
        Some(mem_queries.rss <= TARGET_RSS_BYTES),
    );
    table.row("server RSS after start-up", mb(mem_startup.rss), "", None);
    table.row(
        "server RSS after verification",
        mb(mem_verify.rss),
        "",
        None,
    );
    table.row(
        "server peak RSS (VmHWM), whole run",
        mb(mem_verify.hwm),
        "",
        None,
    );
    table.row(
        "segments / compression ratio",
        format!(
            "{} / {:.2}x",
            layout.segments.len(),
            layout.plain_bytes as f64 / layout.gz_bytes.max(1) as f64
        ),
        "20-40 segments",
        Some((20..=40).contains(&layout.segments.len())),
    );
    println!("Results");
    println!("-------");
    table.print();
    println!();
    println!(
        "load average at the end: {}",
        read_trimmed("/proc/loadavg").unwrap_or_default()
    );
    if data.cached {
        println!("data dir (kept for the next run): {}", dir.display());
    }
    Ok(())
}
