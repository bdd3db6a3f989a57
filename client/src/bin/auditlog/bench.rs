//! `auditlog bench`: a load generator against a running server, in the
//! manner of ghz or redis-benchmark, to size a deployment. Each of
//! `--concurrency` tasks keeps one call in flight for `--duration`; the
//! result is events/s and call latency percentiles.

use std::time::{Duration, Instant};

use auditlog_client::{Client, NewEvent};
use clap::Args;
use serde_json::json;

use crate::CliError;

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Calls in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long to measure (more than 0).
    #[arg(long, default_value = "10s", value_parser = measured_duration)]
    duration: Duration,
    /// Events per call: 1 uses Log, more uses LogBatch.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Unmeasured warm-up before the measurement.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// The event type to write.
    #[arg(long, default_value = "bench_event")]
    event_type: String,
}

/// `--duration`: a rate over no time at all is no figure.
fn measured_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("a benchmark must last more than 0 (e.g. 10s)".into());
    }
    Ok(d)
}

/// `n` a second over `secs`; 0 when there was no time to count over, so no
/// figure is ever NaN or infinite.
fn per_sec(n: u64, secs: f64) -> f64 {
    let rate = n as f64 / secs;
    if rate.is_finite() { rate } else { 0.0 }
}

/// What one task measured.
#[derive(Default)]
struct TaskResult {
    latencies: Vec<Duration>,
    events: u64,
    errors: u64,
    last_error: Option<String>,
}

pub(crate) async fn run(client: &Client, args: BenchArgs, json: bool) -> Result<(), CliError> {
    if args.concurrency == 0 || args.batch == 0 || args.batch > 1000 {
        return Err(CliError::Usage(
            "--concurrency must be at least 1 and --batch between 1 and 1000".into(),
        ));
    }
    if !json {
        eprintln!(
            "benchmarking {} calls in flight, {} event(s) per call, for {:?} (after {:?} warm-up)",
            args.concurrency, args.batch, args.duration, args.warmup
        );
    }
    let too_long = || CliError::Usage("--warmup and --duration are too long".into());
    let start = Instant::now()
        .checked_add(args.warmup)
        .ok_or_else(too_long)?;
    let end = start.checked_add(args.duration).ok_or_else(too_long)?;
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|task| {
            let client = client.clone();
            let event_type = args.event_type.clone();
            let batch = args.batch;
            tokio::spawn(async move { drive(client, task, &event_type, batch, start, end).await })
        })
        .collect();
    let mut total = TaskResult::default();
    for t in tasks {
        let r = t
            .await
            .map_err(|e| CliError::Io(format!("bench task failed: {e}")))?;
        total.latencies.extend(r.latencies);
        total.events += r.events;
        total.errors += r.errors;
        if r.last_error.is_some() {
            total.last_error = r.last_error;
        }
    }
    report(&args, total, json)
}

async fn drive(
    client: Client,
    task: usize,
    event_type: &str,
    batch: usize,
    start: Instant,
    end: Instant,
) -> TaskResult {
    let mut result = TaskResult::default();
    let mut n = 0u64;
    loop {
        let events: Vec<NewEvent> = (0..batch)
            .map(|i| {
                n += 1;
                NewEvent::new(event_type)
                    .lead(format!("BENCH-{task}-{}", n % 1000))
                    .workflow("bench")
                    .actor("auditlog-bench")
                    .details(json!({ "task": task, "n": n, "i": i, "source": "bench" }))
            })
            .collect();
        let began = Instant::now();
        if began >= end {
            return result;
        }
        let outcome = if batch == 1 {
            client
                .log(
                    events
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| NewEvent::new(event_type)),
                )
                .await
                .map(|_| 1)
        } else {
            client.log_batch(events).await.map(|r| r.len())
        };
        let took = began.elapsed();
        if began < start {
            continue;
        }
        match outcome {
            Ok(written) => {
                result.latencies.push(took);
                result.events += written as u64;
            }
            Err(e) => {
                result.errors += 1;
                result.last_error = Some(e.to_string());
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(args: &BenchArgs, mut total: TaskResult, json: bool) -> Result<(), CliError> {
    total.latencies.sort_unstable();
    let secs = args.duration.as_secs_f64();
    let calls = total.latencies.len() as u64;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (p50, p95, p99) = (
        percentile(&total.latencies, 50.0),
        percentile(&total.latencies, 95.0),
        percentile(&total.latencies, 99.0),
    );
    let max = total.latencies.last().copied().unwrap_or_default();
    if json {
        say!(
            "{}",
            json!({
                "concurrency": args.concurrency,
                "batch": args.batch,
                "duration_secs": secs,
                "calls": calls,
                "events": total.events,
                "errors": total.errors,
                "events_per_sec": per_sec(total.events, secs),
                "calls_per_sec": per_sec(calls, secs),
                "latency_ms": { "p50": ms(p50), "p95": ms(p95), "p99": ms(p99), "max": ms(max) },
            })
        );
    } else {
        say!("calls:      {calls} ({:.0}/s)", per_sec(calls, secs));
        say!(
            "events:     {} ({:.0}/s)",
            total.events,
            per_sec(total.events, secs)
        );
        say!("errors:     {}", total.errors);
        say!(
            "latency ms: p50 {:.3}  p95 {:.3}  p99 {:.3}  max {:.3}",
            ms(p50),
            ms(p95),
            ms(p99),
            ms(max)
        );
    }
    match (total.errors, total.last_error) {
        (0, _) => Ok(()),
        (n, Some(last)) if calls == 0 => Err(CliError::Failed(format!(
            "all {n} calls failed; last error: {last}"
        ))),
        (n, last) => {
            eprintln!(
                "warning: {n} calls failed; last error: {}",
                last.unwrap_or_default()
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&sorted[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn no_rate_is_nan_or_infinite() {
        assert_eq!(per_sec(10, 2.0), 5.0);
        assert_eq!(per_sec(0, 0.0), 0.0);
        assert_eq!(per_sec(5, 0.0), 0.0);
    }

    #[test]
    fn a_duration_of_0_is_refused() {
        assert!(measured_duration("0s").unwrap_err().contains("more than 0"));
        assert!(measured_duration("0ms").is_err());
        assert_eq!(measured_duration("1ms"), Ok(Duration::from_millis(1)));
        assert!(measured_duration("soon").is_err());
    }
}
