//! The machine's CPU model, and CPU time from /proc (Linux): the machine's,
//! and this process's split between the benchmark's client and the rest
//! (the servers under test and their threads); waiting until a server is
//! idle ([`settle`]).
//!
//! Included by the ingest, peers and cluster benchmarks with
//! `#[path = "common/cpu.rs"]`.

use std::time::{Duration, Instant};

/// `/proc` counts in USER_HZ ticks, 100 per second on Linux.
pub(crate) const TICKS_PER_SEC: f64 = 100.0;

/// The name of the client runtime's threads.
pub(crate) const CLIENT_THREAD: &str = "bench-client";

/// The CPU model `/proc/cpuinfo` names, for the header of a run.
pub(crate) fn model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

/// The command name and utime + stime (in ticks) of a `/proc/.../stat` file.
pub(crate) fn stat_ticks(path: &str) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    // Fields after the name: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((name, ticks))
}

/// Ticks used so far by this process's client: the client runtime's threads
/// (named [`CLIENT_THREAD`]) and the main thread, which drives it.
pub(crate) fn client_ticks() -> Option<u64> {
    let main = std::process::id().to_string();
    let mut client = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let path = task.path().join("stat");
        if let Some((name, t)) = stat_ticks(&path.to_string_lossy())
            && (name.starts_with(CLIENT_THREAD) || task.file_name().to_str() == Some(&main))
        {
            client += t;
        }
    }
    Some(client)
}

/// Busy ticks of the whole machine so far, from `/proc/stat`.
pub(crate) fn machine_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal: busy is all but idle
    // and iowait.
    Some(ticks.iter().take(8).sum::<u64>() - ticks.get(3)? - ticks.get(4)?)
}

/// Waits until what is measured is idle: `busy` seconds between two
/// samples `take`n 200 ms apart under 10% of a core, at most `limit`; how
/// long that took. A round can leave background work behind (the server
/// compressing a segment it just sealed, a checkpoint), which would
/// otherwise be charged to the next round, often another system's.
pub(crate) async fn settle<S>(
    limit: Duration,
    take: impl Fn() -> Option<S>,
    busy: impl Fn(&S, &S) -> f64,
) -> Duration {
    const STEP: Duration = Duration::from_millis(200);
    let began = Instant::now();
    let mut last = take();
    while began.elapsed() < limit {
        tokio::time::sleep(STEP).await;
        let now = take();
        let seconds = match (&now, &last) {
            (Some(now), Some(last)) => busy(now, last),
            _ => break,
        };
        if seconds < 0.1 * STEP.as_secs_f64() {
            break;
        }
        last = now;
    }
    began.elapsed()
}
