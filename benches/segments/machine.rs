//! The machine under the segments bench: CPU, memory, kernel and load
//! average from /proc (Linux), and reading /proc status values.

use crate::output::mb;

pub(crate) fn print_machine() {
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

pub(crate) fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The kB value of `key` in a `/proc` status-like text.
pub(crate) fn status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}
