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

use std::collections::HashMap;
use std::error::Error;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use auditlog_client::{Client, NewEvent, Query, Retry};
use auditlog_server::Config;
use auditlog_server::bench::{
    CHUNK_BYTES, Chunk, Keyring, MacCheck, RecordHead, SegmentIndex, answer_line, read_chunk,
};
use futures::StreamExt as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

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

// ---------------------------------------------------------------------------
// Machine

fn print_machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| status_kib(&s, "MemTotal:"))
        .map_or_else(|| "unknown".into(), |kib| mb(kib * 1024));
    println!("machine: {nproc} CPUs ({cpu}), {mem} RAM");
    println!(
        "kernel {}, load average {}",
        read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        read_trimmed("/proc/loadavg").unwrap_or_default()
    );
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The kB value of `key` in a `/proc` status-like text.
fn status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------
// Building the log

/// The data dir the measurements run on.
struct Data {
    dir: PathBuf,
    cached: bool,
    /// Deletes the data dir on drop when it is not cached.
    _temp: Option<tempfile::TempDir>,
}

async fn prepare_data(settings: &Settings) -> Result<Data, BoxError> {
    if !settings.cache {
        let temp = tempfile::Builder::new()
            .prefix("auditlog-segments-bench-")
            .tempdir()?;
        let dir = temp.path().join("data");
        build_log(&dir, settings).await?;
        return Ok(Data {
            dir,
            cached: false,
            _temp: Some(temp),
        });
    }
    let key = format!(
        "segments-v{DATA_VERSION}-{}ev-{}leads-{}mb-{}kchunks",
        settings.events,
        settings.leads,
        settings.segment_mb,
        CHUNK_BYTES / 1024
    );
    let root = target_dir()?.join("bench-data").join(key);
    let (dir, done) = (root.join("data"), root.join("complete"));
    if done.exists() && dir.exists() {
        println!(
            "reusing the log built by an earlier run: {} (AUDITLOG_BENCH_CACHE=0 rebuilds)",
            dir.display()
        );
        println!();
    } else {
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
        build_log(&dir, settings).await?;
        std::fs::write(&done, "built by benches/segments.rs\n")?;
    }
    Ok(Data {
        dir,
        cached: true,
        _temp: None,
    })
}

/// The cargo target dir this bench binary runs from
/// (`<target>/release/deps/segments-<hash>`).
fn target_dir() -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("cannot find the target dir from {}", exe.display()).into())
}

/// An in-process server and the way to stop it.
struct InProcess {
    url: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), auditlog_server::ServerError>>,
}

impl InProcess {
    async fn start(config: Config) -> Result<InProcess, BoxError> {
        config.validate()?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(auditlog_server::run(config, listener, async {
            let _ = stopped.await;
        }));
        Ok(InProcess { url, stop, task })
    }

    async fn shutdown(self) -> Result<(), BoxError> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}

fn config_for(dir: &Path, segment_mb: f64) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        max_file_size_mb: segment_mb,
        retention_days: 0.0,
        ..Config::default()
    }
}

async fn build_log(dir: &Path, settings: &Settings) -> Result<(), BoxError> {
    println!(
        "building the log in {} (default fsync durability, LogBatch of {BATCH_SIZE}, \
         {IN_FLIGHT} in flight)...",
        dir.display()
    );
    let started = Instant::now();
    let server = InProcess::start(config_for(dir, settings.segment_mb)).await?;
    let client = wait_ready(&server.url, || {
        if server.task.is_finished() {
            Err("the in-process server stopped".into())
        } else {
            Ok(())
        }
    })
    .await?;

    let generator = Generator {
        leads: settings.leads,
    };
    let batches = settings.events.div_ceil(BATCH_SIZE);
    let mut calls = futures::stream::iter(0..batches)
        .map(|b| {
            let size = BATCH_SIZE.min(settings.events - b * BATCH_SIZE);
            let events = generator.batch(b, size);
            let client = client.clone();
            async move { client.log_batch(events).await.map(|r| r.len() as u64) }
        })
        .buffer_unordered(IN_FLIGHT);
    let (mut written, mut next_report) = (0u64, settings.events / 10);
    while let Some(result) = calls.next().await {
        written += result?;
        if written >= next_report && written < settings.events {
            println!(
                "  {written} events ({:.0} events/s)",
                written as f64 / started.elapsed().as_secs_f64()
            );
            next_report += settings.events / 10;
        }
    }
    let ingested = started.elapsed();
    println!(
        "  {written} events in {:.1} s ({:.0} events/s)",
        ingested.as_secs_f64(),
        written as f64 / ingested.as_secs_f64()
    );
    let rotated = client.rotate(true).await?;
    if rotated.rotated {
        println!(
            "  Rotate(wait): sealed {} (seqs {}..={})",
            rotated.file, rotated.first_seq, rotated.last_seq
        );
    } else {
        println!("  Rotate(wait): nothing to seal (the last commit already rotated)");
    }
    let sealing = Instant::now();
    loop {
        let left = sealed_plain_files(dir)?;
        if left.is_empty() {
            break;
        }
        if sealing.elapsed() > SEAL_TIMEOUT {
            return Err(format!("sealed segments still not compressed: {left:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await?;
    println!(
        "  every segment compressed; built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!();
    Ok(())
}

/// Sealed segments not compressed yet: `audit.<time>.log`.
fn sealed_plain_files(dir: &Path) -> Result<Vec<String>, BoxError> {
    let mut left = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name != "audit.log" && name.starts_with("audit.") && name.ends_with(".log") {
            left.push(name);
        }
    }
    Ok(left)
}

/// A deterministic PRNG (SplitMix64): the same seed gives the same log.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Event types and their share of the log, in percent.
const TYPES: &[(&str, u64)] = &[
    ("email_sent", 24),
    ("crm_update", 18),
    ("email_scheduled", 12),
    ("lead_qualified", 10),
    ("lead_routed", 8),
    ("lead_ingested", 7),
    ("crm_create", 7),
    ("email_cancelled", 5),
    ("error", 5),
    ("workflow_started", 2),
    ("workflow_stopped", 2),
];
const WORKFLOWS: &[&str] = &["onboarding", "nurture", "reactivation", "sales_outreach"];
const TEMPLATES: &[&str] = &[
    "welcome",
    "follow_up_1",
    "follow_up_2",
    "demo_invite",
    "case_study",
];
const SUBJECTS: &[&str] = &[
    "Welcome aboard",
    "Quick follow-up",
    "Can we help?",
    "Your demo is ready",
    "How Acme cut costs by 30%",
];
const CRMS: &[&str] = &["hubspot", "salesforce"];
const FIELDS: &[&str] = &["stage", "owner", "score", "phone", "company", "title"];
const SOURCES: &[&str] = &["webform", "import", "api", "chat", "event"];
const ERRORS: &[(&str, &str)] = &[
    ("Timeout", "CRM did not answer within 10s"),
    ("RateLimited", "email provider returned 429"),
    ("ValidationError", "lead has no email address"),
];

/// Builds the log's events: each batch from its own seed, so the log is the
/// same whatever order the batches are written in.
#[derive(Clone, Copy)]
struct Generator {
    leads: u64,
}

fn lead_id(n: u64) -> String {
    format!("LEAD-{n:06}")
}

impl Generator {
    fn batch(&self, batch: u64, size: u64) -> Vec<NewEvent> {
        let mut rng = Rng(batch.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xA5A5_5A5A);
        (0..size).map(|_| self.event(&mut rng)).collect()
    }

    fn event(&self, rng: &mut Rng) -> NewEvent {
        let mut roll = rng.below(100);
        let mut kind = TYPES[0].0;
        for &(t, share) in TYPES {
            if roll < share {
                kind = t;
                break;
            }
            roll -= share;
        }
        let n = rng.below(self.leads);
        let lead = lead_id(n);
        let workflow = WORKFLOWS[(n % WORKFLOWS.len() as u64) as usize];
        let template = rng.pick(TEMPLATES);
        let record_id = format!("{:010}", rng.below(10_000_000_000));
        let event = match kind {
            "email_sent" => {
                NewEvent::email_sent(lead, &format!("lead{n}@example.com"), rng.pick(SUBJECTS))
                    .actor("mailer")
                    .detail("template", template)
                    .detail("message_id", format!("msg-{:016x}", rng.next()))
            }
            "crm_update" => {
                let fields = [rng.pick(FIELDS), rng.pick(FIELDS)];
                NewEvent::crm_update(lead, rng.pick(CRMS), &record_id, &fields)
                    .actor("crm-sync")
                    .detail("changed_by", "workflow")
            }
            "email_scheduled" => NewEvent::email_scheduled(lead, template, "2026-03-01T09:00:00Z")
                .actor("scheduler")
                .detail("sequence_step", rng.below(6) + 1),
            "lead_qualified" => {
                let score = rng.below(1000) as f64 / 10.0;
                NewEvent::lead_qualified(lead, score, score >= 60.0)
                    .actor("scoring")
                    .detail("model", "scoring-v3")
            }
            "lead_routed" => NewEvent::lead_routed(lead, &format!("rep-{}", rng.below(40)))
                .actor("router")
                .detail("team", rng.pick(&["emea", "amer", "apac"]))
                .detail("rule", format!("r{}", rng.below(12))),
            "lead_ingested" => NewEvent::lead_ingested(lead, rng.pick(SOURCES))
                .actor("ingest-api")
                .detail("campaign", format!("cmp-{}", rng.below(30)))
                .detail("country", rng.pick(&["DE", "FR", "US", "GB", "ES"])),
            "crm_create" => NewEvent::crm_create(lead, rng.pick(CRMS), &record_id)
                .actor("crm-sync")
                .detail("owner", format!("rep-{}", rng.below(40))),
            "email_cancelled" => NewEvent::email_cancelled(lead, "lead replied")
                .actor("scheduler")
                .detail("template", template)
                .detail("sequence_step", rng.below(6) + 1),
            "error" => {
                let (error_type, message) = ERRORS[rng.below(ERRORS.len() as u64) as usize];
                NewEvent::error(error_type, message)
                    .lead(lead)
                    .actor("orchestrator")
                    .detail("step", rng.pick(&["crm_update", "email_sent", "routing"]))
                    .detail("attempt", rng.below(3) + 1)
            }
            "workflow_started" => NewEvent::workflow_started(workflow)
                .actor("orchestrator")
                .detail("run_id", format!("run-{:08x}", rng.next() as u32))
                .detail("trigger", "schedule"),
            _ => NewEvent::workflow_stopped(workflow, "completed")
                .actor("orchestrator")
                .detail("run_id", format!("run-{:08x}", rng.next() as u32)),
        };
        event.workflow(workflow)
    }
}

// ---------------------------------------------------------------------------
// Layout and cost model

/// One compressed segment.
struct SegmentFiles {
    gz: PathBuf,
    chunks: Vec<Chunk>,
}

/// What the data dir holds, from the segments' `.idx` files.
struct Layout {
    segments: Vec<SegmentFiles>,
    gz_bytes: u64,
    idx_bytes: u64,
    /// The lead copies (`.leads.zst` and `.leads.idx`).
    copy_bytes: u64,
    plain_bytes: u64,
    records: u64,
    /// Per lead: (events, distinct chunks holding them).
    leads: HashMap<String, (u32, u32)>,
}

impl Layout {
    fn read(dir: &Path) -> Result<Layout, BoxError> {
        let mut names: Vec<String> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        names.retain(|n| n.ends_with(".log.gz"));
        names.sort();
        let mut layout = Layout {
            segments: Vec::new(),
            gz_bytes: 0,
            idx_bytes: 0,
            copy_bytes: 0,
            plain_bytes: 0,
            records: 0,
            leads: HashMap::new(),
        };
        // Per lead: events, distinct chunks, and the last (segment, chunk).
        let mut shapes: HashMap<String, (u32, u32, (usize, u32))> = HashMap::new();
        for (seg_no, name) in names.iter().enumerate() {
            let gz = dir.join(name);
            let stem = name.strip_suffix(".log.gz").unwrap_or(name);
            let idx_bytes = std::fs::read(dir.join(format!("{stem}.idx")))?;
            let index = SegmentIndex::decode(&idx_bytes)?;
            layout.gz_bytes += std::fs::metadata(&gz)?.len();
            layout.idx_bytes += idx_bytes.len() as u64;
            for copy in [format!("{stem}.leads.zst"), format!("{stem}.leads.idx")] {
                layout.copy_bytes += std::fs::metadata(dir.join(copy)).map_or(0, |m| m.len());
            }
            layout.plain_bytes += index.chunks.iter().map(|c| u64::from(c.plain)).sum::<u64>();
            layout.records += index.rows.len() as u64;
            for row in &index.rows {
                let Some(lead) = index.opt(row.lead) else {
                    continue;
                };
                let at = (seg_no, row.chunk);
                match shapes.get_mut(lead) {
                    Some(shape) => {
                        shape.0 += 1;
                        if shape.2 != at {
                            shape.1 += 1;
                            shape.2 = at;
                        }
                    }
                    None => {
                        shapes.insert(lead.to_owned(), (1, 1, at));
                    }
                }
            }
            layout.segments.push(SegmentFiles {
                gz,
                chunks: index.chunks,
            });
        }
        layout.leads = shapes
            .into_iter()
            .map(|(lead, (events, chunks, _))| (lead, (events, chunks)))
            .collect();
        Ok(layout)
    }

    fn chunks(&self) -> usize {
        self.segments.iter().map(|s| s.chunks.len()).sum()
    }

    fn print(&self, events: u64) {
        println!("Layout");
        println!("------");
        println!(
            "{} compressed segments, {} records in their indexes ({} events written), {} \
             chunks",
            self.segments.len(),
            self.records,
            events,
            self.chunks()
        );
        println!(
            "plain {} ({:.0} bytes/event), compressed {} (ratio {:.2}x), .idx files {} ({:.0} \
             bytes/event)",
            mb(self.plain_bytes),
            self.plain_bytes as f64 / self.records.max(1) as f64,
            mb(self.gz_bytes),
            self.plain_bytes as f64 / self.gz_bytes.max(1) as f64,
            mb(self.idx_bytes),
            self.idx_bytes as f64 / self.records.max(1) as f64,
        );
        println!(
            "lead copies (records grouped by lead, for histories) {} ({:.2}x the compressed \
             segments)",
            mb(self.copy_bytes),
            self.copy_bytes as f64 / self.gz_bytes.max(1) as f64,
        );
        let n = self.leads.len().max(1) as f64;
        let events: f64 = self.leads.values().map(|s| f64::from(s.0)).sum();
        let chunks: f64 = self.leads.values().map(|s| f64::from(s.1)).sum();
        println!(
            "{} leads; a lead's history averages {:.0} events in {:.0} distinct chunks",
            self.leads.len(),
            events / n,
            chunks / n
        );
        println!();
    }
}

/// Per-record costs measured single-threaded on the segment files (page
/// cache warm): what verification and a history query do per chunk and per
/// record.
struct CostModel {
    chunks: usize,
    records: usize,
    plain_bytes: u64,
    gunzip: Duration,
    mac: Duration,
    parse: Duration,
}

impl CostModel {
    fn measure(dir: &Path, layout: &Layout) -> Result<CostModel, BoxError> {
        let keyring = Keyring::load(KEY_ID, None, dir, true)?;
        let total = layout.chunks();
        let stride = (total / COST_SAMPLE_CHUNKS).max(1);
        let mut model = CostModel {
            chunks: 0,
            records: 0,
            plain_bytes: 0,
            gunzip: Duration::ZERO,
            mac: Duration::ZERO,
            parse: Duration::ZERO,
        };
        let mut k = 0usize;
        for seg in &layout.segments {
            let file = File::open(&seg.gz)?;
            for chunk in &seg.chunks {
                k += 1;
                if !k.is_multiple_of(stride) {
                    continue;
                }
                let t = Instant::now();
                let plain = read_chunk(&file, chunk)?;
                model.gunzip += t.elapsed();
                model.chunks += 1;
                model.plain_bytes += plain.len() as u64;
                let lines: Vec<&[u8]> = plain
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .collect();
                let t = Instant::now();
                for line in &lines {
                    let ok = RecordHead::peek(line)
                        .is_some_and(|h| h.check_mac(line, &keyring) == MacCheck::Valid);
                    if !ok {
                        return Err(
                            format!("a record in {} does not verify", seg.gz.display()).into()
                        );
                    }
                }
                model.mac += t.elapsed();
                let t = Instant::now();
                for line in &lines {
                    answer_line(line).map_err(|e| format!("unparsable record: {e}"))?;
                }
                model.parse += t.elapsed();
                model.records += lines.len();
            }
        }
        Ok(model)
    }

    fn per_chunk(&self, d: Duration) -> Duration {
        d / u32::try_from(self.chunks.max(1)).unwrap_or(u32::MAX)
    }

    fn per_record(&self, d: Duration) -> Duration {
        d / u32::try_from(self.records.max(1)).unwrap_or(u32::MAX)
    }

    fn print(&self) {
        println!("Cost model (single thread, {} chunks sampled)", self.chunks);
        println!("----------");
        let gunzip_secs = self.gunzip.as_secs_f64().max(1e-9);
        println!(
            "gunzip one chunk ({:.0} records, {:.1} KiB plain): {} ({:.0} MB/s plain), {} per \
             record",
            self.records as f64 / self.chunks.max(1) as f64,
            self.plain_bytes as f64 / self.chunks.max(1) as f64 / 1024.0,
            us(self.per_chunk(self.gunzip)),
            self.plain_bytes as f64 / gunzip_secs / 1e6,
            us(self.per_record(self.gunzip)),
        );
        println!(
            "peek + HMAC check: {} per record; decode and encode as answered (queries): {} per record",
            us(self.per_record(self.mac)),
            us(self.per_record(self.parse)),
        );
        let verify_per_record = self.per_record(self.gunzip + self.mac).as_secs_f64();
        println!(
            "verification ceiling (gunzip + MAC, no I/O): {} per thread",
            rate(1.0 / verify_per_record.max(1e-12))
        );
        println!();
    }
}

// ---------------------------------------------------------------------------
// Server process

/// Where the `auditlog-server` binary is; builds it unless given.
fn server_binary(settings: &Settings) -> Result<PathBuf, BoxError> {
    if let Some(bin) = &settings.server_bin {
        return Ok(bin.clone());
    }
    // Its own target dir: built alone, the server resolves its dependencies'
    // features differently from this bench (which enables test hooks), so
    // sharing one dir would rebuild half the tree on every run.
    let target = target_dir()?.join("bench-server");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!(
        "building the server: cargo build --release -p auditlog-server --target-dir {}",
        target.display()
    );
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "-p", "auditlog-server"])
        .args(["--bin", "auditlog-server", "--target-dir"])
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()?;
    if !status.success() {
        return Err(format!("building auditlog-server failed ({status})").into());
    }
    let bin = target.join("release").join("auditlog-server");
    if !bin.exists() {
        return Err(format!("{} does not exist after building it", bin.display()).into());
    }
    Ok(bin)
}

/// A running `auditlog-server` process; killed if dropped while running.
struct ServerProcess {
    child: Child,
    client: Client,
}

impl ServerProcess {
    /// Spawns the server on `dir` and waits for its first GetStats; returns
    /// it and the time that took.
    async fn start(bin: &Path, dir: &Path) -> Result<(ServerProcess, Duration), BoxError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = Command::new(bin);
        command
            .arg("--data-dir")
            .arg(dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .env("RUST_LOG", "warn");
        // The server rejects unknown AUDITLOG_* variables, such as ours.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AUDITLOG_") {
                command.env_remove(name);
            }
        }
        command.env("AUDITLOG_RETENTION_DAYS", "0");
        let started = Instant::now();
        let mut child = command.spawn()?;
        let client = wait_ready(&format!("http://127.0.0.1:{port}"), || {
            match child.try_wait()? {
                Some(status) => Err(format!("the server exited: {status}").into()),
                None => Ok(()),
            }
        })
        .await;
        let elapsed = started.elapsed();
        let server = match client {
            Ok(client) => ServerProcess { child, client },
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        Ok((server, elapsed))
    }

    fn memory(&self) -> Result<Memory, BoxError> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let get = |key: &str| {
            status_kib(&status, key)
                .map(|kib| kib * 1024)
                .ok_or_else(|| format!("no {key} in /proc/<pid>/status"))
        };
        Ok(Memory {
            rss: get("VmRSS:")?,
            anon: get("RssAnon:")?,
            hwm: get("VmHWM:")?,
        })
    }

    /// Stops the server with SIGTERM (a clean shutdown) and waits for it.
    fn stop(mut self) -> Result<(), BoxError> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        if !status.success() {
            return Err(format!("kill -TERM {} failed", self.child.id()).into());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                return Err("the server did not stop within 30 s of SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A process's memory, in bytes.
#[derive(Clone, Copy)]
struct Memory {
    rss: u64,
    anon: u64,
    hwm: u64,
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VmRSS {} (RssAnon {}), VmHWM {}",
            mb(self.rss),
            mb(self.anon),
            mb(self.hwm)
        )
    }
}

/// Connects to `url` and calls GetStats until it succeeds (UNAVAILABLE means
/// "still recovering"); `alive` fails when the server has stopped.
async fn wait_ready(
    url: &str,
    mut alive: impl FnMut() -> Result<(), BoxError>,
) -> Result<Client, BoxError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut client: Option<Client> = None;
    loop {
        alive()?;
        if Instant::now() > deadline {
            return Err(format!("{url} did not answer GetStats within {READY_TIMEOUT:?}").into());
        }
        if client.is_none() {
            // No retries in the client: its backoff (100, 200, 400 ms ...)
            // would round the figure up to its next try.
            let once = Retry {
                attempts: 1,
                ..Retry::default()
            };
            client = Client::builder().node(url).retry(once).connect().await.ok();
        }
        if let Some(c) = &client {
            match c.stats(None).await {
                Ok(_) => return Ok(c.clone()),
                Err(e) if e.code() == Some(tonic::Code::Unavailable) => {}
                Err(e) => return Err(e.into()),
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn startup_in_process(dir: &Path) -> Result<Duration, BoxError> {
    let config = config_for(dir, 1024.0);
    config.validate()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let started = Instant::now();
    let task = tokio::spawn(auditlog_server::run(config, listener, async {
        let _ = stopped.await;
    }));
    let server = InProcess { url, stop, task };
    let ready = wait_ready(&server.url, || {
        if server.task.is_finished() {
            Err("the in-process server stopped".into())
        } else {
            Ok(())
        }
    })
    .await;
    let elapsed = started.elapsed();
    server.shutdown().await?;
    ready?;
    Ok(elapsed)
}

// ---------------------------------------------------------------------------
// Queries and verification

/// The warm lead and the cold ones, all different, in a fixed random order.
fn pick_leads(settings: &Settings) -> (String, Vec<String>) {
    let mut order: Vec<u64> = (0..settings.leads).collect();
    let mut rng = Rng(0x5EED);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let warm = lead_id(order[0]);
    let rest = if order.len() > 1 {
        &order[1..]
    } else {
        &order[..]
    };
    if rest.len() < settings.queries {
        println!(
            "note: only {} leads for {} cold queries; some repeat",
            rest.len(),
            settings.queries
        );
    }
    let cold = rest
        .iter()
        .cycle()
        .take(settings.queries)
        .map(|&n| lead_id(n))
        .collect();
    (warm, cold)
}

/// Latencies of a run of lead history queries.
struct Queries {
    latencies: Vec<Duration>,
    events: Vec<usize>,
    leads: Vec<String>,
}

async fn history_queries(client: &Client, leads: &[String]) -> Result<Queries, BoxError> {
    let mut q = Queries {
        latencies: Vec::with_capacity(leads.len()),
        events: Vec::with_capacity(leads.len()),
        leads: leads.to_vec(),
    };
    for lead in leads {
        let t = Instant::now();
        let history = client.lead_history(lead).await?;
        q.latencies.push(t.elapsed());
        if history.iter().any(|e| &e.lead_id != lead) {
            return Err(format!("the history of {lead} holds another lead's events").into());
        }
        q.events.push(history.len());
    }
    q.latencies.sort();
    Ok(q)
}

impl Queries {
    fn percentile(&self, p: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n);
        self.latencies[rank - 1]
    }

    fn mean_events(&self) -> f64 {
        self.events.iter().sum::<usize>() as f64 / self.events.len().max(1) as f64
    }

    fn print(&self, label: &str, layout: &Layout) {
        let mut distinct: Vec<&String> = self.leads.iter().collect();
        distinct.sort();
        distinct.dedup();
        let chunks: u32 = distinct
            .iter()
            .filter_map(|l| layout.leads.get(*l))
            .map(|s| s.1)
            .sum();
        println!(
            "{label}: {} queries over {} leads, {:.0} events and {:.0} chunks per history",
            self.latencies.len(),
            distinct.len(),
            self.mean_events(),
            f64::from(chunks) / distinct.len().max(1) as f64
        );
        println!(
            "  p50 {}  p95 {}  p99 {}  max {}",
            ms(self.percentile(50.0)),
            ms(self.percentile(95.0)),
            ms(self.percentile(99.0)),
            ms(self.percentile(100.0)),
        );
    }
}

/// Latency of one page of the warm lead's history by page size: separates
/// the per-event cost from fixed and transport costs.
async fn page_sizes(client: &Client, lead: &str) -> Result<(), BoxError> {
    const ROUNDS: usize = 20;
    println!("  by page size (same lead, oldest first, p50 of {ROUNDS}):");
    for limit in [1u32, 10, 25, 50, 100, 1000] {
        let mut latencies = Vec::with_capacity(ROUNDS);
        let mut bytes = 0;
        let mut events = 0;
        for _ in 0..ROUNDS {
            let query = Query::new().lead(lead).oldest_first().limit(limit);
            let t = Instant::now();
            let page = client.query(query).await?;
            latencies.push(t.elapsed());
            bytes = prost::Message::encoded_len(&page);
            events = page.events.len();
        }
        println!(
            "    limit {limit:>4}: {events:>4} events, {:>6.1} KB response, p50 {}",
            bytes as f64 / 1e3,
            ms(median(&latencies))
        );
    }
    Ok(())
}

/// One VerifyIntegrity run.
struct Verified {
    events: u64,
    elapsed: Duration,
    server_ms: u64,
    server_eps: f64,
    segments: u64,
}

impl Verified {
    fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

async fn verify(client: &Client, events: u64) -> Result<Verified, BoxError> {
    let t = Instant::now();
    let report = client.verify().await?;
    let elapsed = t.elapsed();
    if !report.ok || report.events_checked != events {
        let mut problems = String::new();
        for p in report.problems.iter().take(5) {
            let _ = writeln!(problems, "  {} (seq {}): {}", p.file, p.seq, p.message);
        }
        return Err(format!(
            "verification failed: ok = {}, {} of {events} events checked\n{problems}",
            report.ok, report.events_checked
        )
        .into());
    }
    Ok(Verified {
        events: report.events_checked,
        elapsed,
        server_ms: report.elapsed_ms,
        server_eps: report.events_per_second,
        segments: report.segments_checked,
    })
}

// ---------------------------------------------------------------------------
// Output

/// The results table.
#[derive(Default)]
struct Table {
    rows: Vec<[String; 4]>,
}

impl Table {
    fn row(&mut self, name: &str, measured: String, target: impl Into<String>, met: Option<bool>) {
        let status = match met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        self.rows
            .push([name.to_owned(), measured, target.into(), status.to_owned()]);
    }

    fn print(&self) {
        let header = ["figure", "measured", "target", ""].map(String::from);
        let mut widths = [0usize; 4];
        for row in std::iter::once(&header).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&self.rows) {
            println!(
                "{:<w0$}  {:>w1$}  {:<w2$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
            );
        }
    }
}

fn print_runs(label: &str, runs: &[Duration]) {
    let all: Vec<String> = runs.iter().map(|d| secs(*d)).collect();
    println!(
        "{label}: {} (median {})",
        all.join(", "),
        secs(median(runs))
    );
}

fn median(runs: &[Duration]) -> Duration {
    let mut sorted = runs.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn rate(events_per_sec: f64) -> String {
    format!("{:.2} M events/s", events_per_sec / 1e6)
}
