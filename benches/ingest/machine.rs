//! The machine under the ingest bench: the raw disk's `fdatasync` rate, and
//! CPU use from /proc (Linux).

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::cpu;

pub(crate) struct Probe {
    pub(crate) bytes: usize,
    pub(crate) per_sec: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
}

/// Appends `bytes` and `fdatasync`s in a loop for `duration`, as the writer
/// does for one group.
pub(crate) fn fsync_probe(dir: &Path, bytes: usize, duration: Duration) -> std::io::Result<Probe> {
    let path = dir.join(format!("probe-{bytes}"));
    let mut file = File::options().create(true).append(true).open(&path)?;
    let line = vec![b'x'; bytes];
    let mut latencies = Vec::new();
    let began = Instant::now();
    while began.elapsed() < duration {
        let t = Instant::now();
        file.write_all(&line)?;
        file.sync_data()?;
        latencies.push(t.elapsed());
    }
    let elapsed = began.elapsed();
    std::fs::remove_file(&path)?;
    latencies.sort_unstable();
    let at = |p: f64| latencies[((p * latencies.len() as f64) as usize).min(latencies.len() - 1)];
    Ok(Probe {
        bytes,
        per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    })
}

// ---------------------------------------------------------------------------
// CPU use, from /proc (Linux).

/// CPU seconds used during a window: by this process, and by everything else
/// (the other engineer's compiler, kernel threads). Others' use makes a row
/// suspect on a shared machine.
#[derive(Clone, Copy, Default)]
pub(crate) struct CpuUse {
    pub(crate) own: f64,
    /// Of `own`, what the client runtime's threads (and the main thread)
    /// used; the rest is the servers'.
    pub(crate) client: f64,
    pub(crate) others: f64,
}

/// Cumulative busy CPU ticks of the machine and of this process.
pub(crate) struct CpuSample {
    pub(crate) machine: u64,
    pub(crate) own: u64,
    pub(crate) client: u64,
}

impl CpuSample {
    pub(crate) fn take() -> Option<CpuSample> {
        let machine = cpu::machine_ticks()?;
        let own = cpu::stat_ticks("/proc/self/stat")?.1;
        let client = cpu::client_ticks()?;
        Some(CpuSample {
            machine,
            own,
            client,
        })
    }

    pub(crate) fn since(&self, before: &CpuSample) -> CpuUse {
        let own = self.own.saturating_sub(before.own) as f64 / cpu::TICKS_PER_SEC;
        let machine = self.machine.saturating_sub(before.machine) as f64 / cpu::TICKS_PER_SEC;
        CpuUse {
            own,
            client: self.client.saturating_sub(before.client) as f64 / cpu::TICKS_PER_SEC,
            others: (machine - own).max(0.0),
        }
    }
}

/// Waits until this process is idle (under 10% of a core over 200 ms, at
/// most 30 s) and says how long that took ([`cpu::settle`]).
pub(crate) async fn settle() -> Duration {
    cpu::settle(Duration::from_secs(30), CpuSample::take, |now, last| {
        now.since(last).own
    })
    .await
}
