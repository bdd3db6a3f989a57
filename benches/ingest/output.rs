//! The ingest bench's output: the table of every scenario and server, and
//! the targets.

use std::time::Duration;

use crate::{Measurement, Scenario};
use crate::{TARGET_BATCH_RATIO, TARGET_LOG1_P50_RATIO, TARGET_LOG64_RATIO};

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One scenario's measurements.
pub(crate) struct Row {
    pub(crate) scenario: Scenario,
    pub(crate) ours: Measurement,
    pub(crate) floor: Measurement,
    pub(crate) empty: Measurement,
    /// One per variant, in `Settings::variants`' order.
    pub(crate) variants: Vec<Measurement>,
}

pub(crate) fn print_table(rows: &[Row]) {
    println!(
        "{:<26} {:<11} {:>9} {:>8} {:>7} {:>7} {:>7} {:>9} {:>9} {:>6} {:>8} {:>8} {:>8} {:>6}",
        "scenario",
        "server",
        "events/s",
        "calls/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "commits/s",
        "ev/commit",
        "cores",
        "cpu us/ev",
        "srv us/ev",
        "cli us/ev",
        "others"
    );
    println!("{}", "-".repeat(145));
    for row in rows {
        let servers = [
            ("auditlog", &row.ours, row.scenario.label),
            ("floor", &row.floor, ""),
            ("empty", &row.empty, ""),
        ];
        for (name, m, label) in servers {
            let secs = m.window.as_secs_f64();
            let (commits, per_commit) = if m.commits > 0 {
                (
                    format!("{:.0}", m.commits_per_sec()),
                    format!("{:.1}", m.events as f64 / m.commits as f64),
                )
            } else {
                ("-".to_owned(), "-".to_owned())
            };
            let per_event = |cpu: f64| format!("{:.1}", cpu * 1e6 / m.events.max(1) as f64);
            let (cores, total, server, client, others) = match m.cpu {
                Some(cpu) => (
                    format!("{:.2}", cpu.own / secs),
                    per_event(cpu.own),
                    m.server_us_per_event()
                        .map_or_else(|| "?".to_owned(), |us| format!("{us:.1}")),
                    per_event(cpu.client),
                    format!("{:.2}", cpu.others / secs),
                ),
                None => {
                    let unknown = || "?".to_owned();
                    (unknown(), unknown(), unknown(), unknown(), unknown())
                }
            };
            println!(
                "{:<26} {:<11} {:>9.0} {:>8.0} {:>7.3} {:>7.3} {:>7.3} {:>9} {:>9} {:>6} {:>8} {:>8} {:>8} {:>6}",
                label,
                name,
                m.events_per_sec(),
                m.calls as f64 / secs,
                ms(m.percentile(50.0)),
                ms(m.percentile(95.0)),
                ms(m.percentile(99.0)),
                commits,
                per_commit,
                cores,
                total,
                server,
                client,
                others,
            );
            if m.settle > Duration::from_secs(1) {
                println!(
                    "{:<26} {:<11} (before its rounds: {:.1} s of leftover background work)",
                    "",
                    "",
                    m.settle.as_secs_f64()
                );
            }
            if m.errors > 0 {
                println!(
                    "{:<26} {:<11} {} failed calls, last: {}",
                    "",
                    "",
                    m.errors,
                    m.last_error.as_deref().unwrap_or("?")
                );
            }
        }
        let ratios = [
            ("ours/empty", &row.ours, &row.empty),
            ("floor/empty", &row.floor, &row.empty),
            ("ours/floor", &row.ours, &row.floor),
        ];
        for (name, a, b) in ratios {
            println!(
                "{:<26} {:<11} {:>9.2} {:>8} {:>7.2} {:>7.2} {:>7.2}",
                "",
                name,
                a.events_per_sec() / b.events_per_sec(),
                "",
                ms(a.percentile(50.0)) / ms(b.percentile(50.0)),
                ms(a.percentile(95.0)) / ms(b.percentile(95.0)),
                ms(a.percentile(99.0)) / ms(b.percentile(99.0)),
            );
        }
    }
    println!();
    println!("auditlog: the real server, default config (durable: fdatasync before each answer)");
    println!("floor: the empty service answering after a group fdatasync of the events' bytes");
    println!("empty: the empty service; the targets are ratios to the floor");
    println!("ratios: events/s higher is better; latencies lower is better");
    println!("commits/s, ev/commit: group commits (one fdatasync each) that served the calls");
    println!("cores: CPU this process used (client + all servers + their threads), in cores");
    println!("cpu us/ev: that CPU time per event, split into the server side's (srv: every");
    println!("  thread but the client runtime's and the main thread) and the client's (cli);");
    println!("others: cores used by other processes");
}

pub(crate) fn print_targets(rows: &[Row]) {
    let find = |key: &str| rows.iter().find(|r| r.scenario.key == key);
    let verdict = |met: bool| if met { "MET" } else { "MISSED" };
    println!();
    println!("targets (issue 20, ratios to the floor of this run):");
    for (key, target) in [
        ("log64", TARGET_LOG64_RATIO),
        ("batch4", TARGET_BATCH_RATIO),
        ("batch8", TARGET_BATCH_RATIO),
    ] {
        if let Some(row) = find(key) {
            let ratio = row.ours.events_per_sec() / row.floor.events_per_sec();
            println!(
                "  {}: events/s {ratio:.2} of the floor's (target >= {target}): {}",
                row.scenario.label,
                verdict(ratio >= target)
            );
        }
    }
    // Not a target: what the server itself spends, beside the floor's
    // server in the same round (the client shares the cores with both, so
    // the events/s ratio above also depends on it).
    for key in ["batch4", "batch8"] {
        if let Some(row) = find(key)
            && let (Some(ours), Some(floor)) = (
                row.ours.server_us_per_event(),
                row.floor.server_us_per_event(),
            )
        {
            println!(
                "  {}: server CPU per event {ours:.1} us, {:.2} times the floor's {floor:.1} us \
                 (reported, not a target)",
                row.scenario.label,
                ours / floor.max(1e-9)
            );
        }
    }
    if let Some(row) = find("log1") {
        let (ours, floor) = (row.ours.percentile(50.0), row.floor.percentile(50.0));
        let ratio = ours.as_secs_f64() / floor.as_secs_f64().max(1e-9);
        println!(
            "  Log, 1 in flight: p50 {:.3} ms, {ratio:.2} times the floor's {:.3} ms \
             (target <= {TARGET_LOG1_P50_RATIO}): {}",
            ms(ours),
            ms(floor),
            verdict(ratio <= TARGET_LOG1_P50_RATIO)
        );
    }
}
