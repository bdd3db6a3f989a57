//! Proof latency over gRPC against a server holding a large log: the
//! inclusion proof of a random seq against the latest checkpoint (goal:
//! p50 ≤ 1 ms at 1 M events) and the consistency proof between a random
//! earlier size and the latest checkpoint's. Prints the figures; not run in
//! tests (`cargo bench --bench proofs`).
//!
//! The log is built the way `benches/segments.rs` builds its own: LogBatch
//! of 1,000 events, 4 calls in flight, against an in-process server with
//! the default durability, in a temporary directory deleted at the end.
//! Each proof is one call, one after the other, from one client.
//!
//! Environment:
//! - `AUDITLOG_BENCH_EVENTS`: events in the log (1000000);
//! - `AUDITLOG_BENCH_PROOFS`: proofs of each kind timed (2000).

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark: prints, fails loudly

use std::time::{Duration, Instant};

use auditlog_client::proof::{VerifierKey, leaf_hash, verify_consistency, verify_inclusion};
use auditlog_client::{Client, NewEvent};
use auditlog_server::Config;
use futures::StreamExt as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const BATCH_SIZE: u64 = 1000;
const IN_FLIGHT: usize = 4;

fn var(name: &str, default: u64) -> Result<u64, BoxError> {
    match std::env::var(name) {
        Ok(v) => Ok(v
            .trim()
            .replace('_', "")
            .parse()
            .map_err(|e| format!("{name}={v}: {e}"))?),
        Err(_) => Ok(default),
    }
}

fn main() -> Result<(), BoxError> {
    // The bench build has the test hooks (a dev-dependency's feature).
    auditlog_server::bench::without_fault_hooks();
    let events = var("AUDITLOG_BENCH_EVENTS", 1_000_000)?.max(2);
    let proofs = var("AUDITLOG_BENCH_PROOFS", 2000)?.max(1) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(events, proofs))
}

/// A small deterministic generator of seqs and sizes (xorshift64).
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

async fn bench(events: u64, proofs: usize) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        retention_days: 0.0,
        ..Config::default()
    };
    let key = VerifierKey::parse(&auditlog_server::verifier_key(&config)?)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(auditlog_server::run(config, listener, async {
        let _ = stopped.await;
    }));
    let client = ready(&url).await?;

    println!(
        "building a log of {events} events (LogBatch of {BATCH_SIZE}, {IN_FLIGHT} in flight)..."
    );
    let started = Instant::now();
    let mut calls = futures::stream::iter(0..events.div_ceil(BATCH_SIZE))
        .map(|b| {
            let n = BATCH_SIZE.min(events - b * BATCH_SIZE);
            let batch: Vec<NewEvent> = (0..n)
                .map(|i| {
                    NewEvent::lead_ingested(
                        format!("LEAD-{}", (b * BATCH_SIZE + i) % 5000),
                        "webform",
                    )
                })
                .collect();
            let client = client.clone();
            async move { client.log_batch(batch).await.map(|r| r.len() as u64) }
        })
        .buffer_unordered(IN_FLIGHT);
    let mut written = 0;
    while let Some(n) = calls.next().await {
        written += n?;
    }
    println!(
        "  {written} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let waiting = Instant::now();
    let checkpoint = loop {
        let c = client.verified_checkpoint(&key, true).await;
        match c {
            Ok(c) if c.checkpoint.size >= events => break c,
            _ if waiting.elapsed() > Duration::from_secs(600) => {
                return Err("no checkpoint covered the log within 10 minutes".into());
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let size = checkpoint.checkpoint.size;
    println!(
        "  the tree caught up {:.1} s after the last write; checkpoint of {size}",
        waiting.elapsed().as_secs_f64()
    );

    let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
    let mut inclusion = Vec::with_capacity(proofs);
    for _ in 0..proofs {
        let seq = draw.below(size) + 1;
        let t = Instant::now();
        let p = client.inclusion_proof(seq, size).await?;
        inclusion.push(t.elapsed());
        let hashes: Vec<[u8; 32]> = p.hashes.iter().map(|h| h[..].try_into().unwrap()).collect();
        verify_inclusion(
            seq - 1,
            size,
            &leaf_hash(&p.line),
            &hashes,
            &checkpoint.checkpoint.root,
        )?;
    }
    let mut consistency = Vec::with_capacity(proofs);
    for _ in 0..proofs {
        let first = draw.below(size) + 1;
        let t = Instant::now();
        let p = client.consistency_proof(first, size).await?;
        consistency.push(t.elapsed());
        // Checked, untimed, against the root of `first` the server gives.
        let first_root: [u8; 32] =
            client.inclusion_proof(1, first).await?.root_hash[..].try_into()?;
        let hashes: Vec<[u8; 32]> = p.hashes.iter().map(|h| h[..].try_into().unwrap()).collect();
        verify_consistency(
            first,
            size,
            &first_root,
            &checkpoint.checkpoint.root,
            &hashes,
        )?;
    }
    report(
        "inclusion proof (GetInclusionProof, random seq, latest checkpoint)",
        &mut inclusion,
        Some(Duration::from_millis(1)),
    );
    report(
        "consistency proof (GetConsistencyProof, random first size to the latest)",
        &mut consistency,
        None,
    );

    let _ = stop.send(());
    server.await??;
    Ok(())
}

async fn ready(url: &str) -> Result<Client, BoxError> {
    let started = Instant::now();
    loop {
        if let Ok(client) = Client::connect(url).await
            && client.stats(None).await.is_ok()
        {
            return Ok(client);
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!("the server at {url} did not become ready").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn report(what: &str, samples: &mut [Duration], goal_p50: Option<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let (p50, p99) = (at(0.50), at(0.99));
    let goal = goal_p50.map_or(String::new(), |g| {
        let met = if p50 <= g { "met" } else { "NOT met" };
        format!("  (goal p50 ≤ {} ms: {met})", g.as_millis())
    });
    println!(
        "{what}: {} calls, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms{goal}",
        samples.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
    );
}
