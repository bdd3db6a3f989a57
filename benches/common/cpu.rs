//! The machine's CPU model, and CPU time from /proc (Linux), split between
//! the benchmark's client and the rest of the process (the servers under
//! test and their threads).
//!
//! Included by the ingest, peers and cluster benchmarks with
//! `#[path = "common/cpu.rs"]`.

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
