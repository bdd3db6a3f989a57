//! The segments bench's lead history queries (cold-ish and warm, and by page
//! size) and its `VerifyIntegrity` runs.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use auditlog_client::{Client, Query};

use crate::generator::{Rng, lead_id};
use crate::layout::Layout;
use crate::output::{median, ms};
use crate::{BoxError, Settings};

/// The warm lead and the cold ones, all different, in a fixed random order.
pub(crate) fn pick_leads(settings: &Settings) -> (String, Vec<String>) {
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
pub(crate) struct Queries {
    latencies: Vec<Duration>,
    events: Vec<usize>,
    leads: Vec<String>,
}

pub(crate) async fn history_queries(
    client: &Client,
    leads: &[String],
) -> Result<Queries, BoxError> {
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
    pub(crate) fn percentile(&self, p: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n);
        self.latencies[rank - 1]
    }

    pub(crate) fn mean_events(&self) -> f64 {
        self.events.iter().sum::<usize>() as f64 / self.events.len().max(1) as f64
    }

    pub(crate) fn print(&self, label: &str, layout: &Layout) {
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
pub(crate) async fn page_sizes(client: &Client, lead: &str) -> Result<(), BoxError> {
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
pub(crate) struct Verified {
    pub(crate) events: u64,
    pub(crate) elapsed: Duration,
    pub(crate) server_ms: u64,
    pub(crate) server_eps: f64,
    pub(crate) segments: u64,
}

impl Verified {
    pub(crate) fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub(crate) async fn verify(client: &Client, events: u64) -> Result<Verified, BoxError> {
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
