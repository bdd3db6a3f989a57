//! Output: the header naming the machine, the side-by-side table with the
//! ratios ours/peer, and the details behind it.

use std::path::Path;
use std::time::Duration;

use crate::Settings;
use crate::load::{History, Measurement, Shape};

pub(crate) fn print_header(settings: &Settings, data: &Path) {
    let cpu = crate::cpu::model();
    println!("auditlog peers benchmark");
    println!(
        "CPU: {cpu}, {} core(s); {} round(s) of {} s measured after {} s warm-up per \
         scenario and system; {} events before the lead histories, {} queries per round",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        settings.rounds,
        settings.measure.as_secs_f64(),
        settings.warmup.as_secs_f64(),
        settings.rows,
        settings.queries,
    );
    println!(
        "every system's client on a {} runtime",
        if settings.client_current_thread {
            "current-thread"
        } else {
            "multi-thread"
        }
    );
    println!("data dirs: {}", data.display());
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `names[0]` is auditlog when it ran; every other column gets a ratio.
pub(crate) fn print_results(
    names: &[&str],
    results: &[(Shape, Vec<Measurement>)],
    histories: &[Option<History>],
) {
    let ours_first = names.first() == Some(&"auditlog");
    let mut header = format!("{:<36}", "scenario");
    for (i, name) in names.iter().enumerate() {
        header.push_str(&format!(" {name:>10}"));
        if ours_first && i > 0 {
            header.push_str(&format!(" {:>10}", format!("ours/{}", short(name))));
        }
    }
    println!();
    println!("{header}");
    println!("{}", "-".repeat(header.len()));
    let line = |label: String, values: Vec<Option<f64>>, decimals: usize| {
        let mut out = format!("{label:<36}");
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(v) => out.push_str(&format!(" {v:>10.decimals$}")),
                None => out.push_str(&format!(" {:>10}", "-")),
            }
            if ours_first && i > 0 {
                match (values[0], *v) {
                    (Some(a), Some(b)) if b > 0.0 => out.push_str(&format!(" {:>10.2}", a / b)),
                    _ => out.push_str(&format!(" {:>10}", "-")),
                }
            }
        }
        println!("{out}");
    };
    for (shape, row) in results {
        line(
            format!("{}: events/s", shape.label),
            row.iter().map(|m| Some(m.events_per_sec())).collect(),
            0,
        );
        if !shape.batch && shape.in_flight == 1 {
            for p in [50.0, 99.0] {
                line(
                    format!("  p{p:.0} ms"),
                    row.iter().map(|m| Some(ms(m.percentile(p)))).collect(),
                    3,
                );
            }
        }
    }
    if histories.iter().any(Option::is_some) {
        let events = histories
            .iter()
            .flatten()
            .map(History::mean_events)
            .next()
            .unwrap_or(0.0);
        for p in [50.0, 99.0] {
            line(
                format!("lead history ({events:.0} events): p{p:.0} ms"),
                histories
                    .iter()
                    .map(|h| h.as_ref().map(|h| ms(h.percentile(p))))
                    .collect(),
                3,
            );
        }
    }
    let per_history: Vec<String> = names
        .iter()
        .zip(histories)
        .filter_map(|(name, h)| {
            h.as_ref().map(|h| {
                format!(
                    "{name} {:.1} events in {} queries",
                    h.mean_events(),
                    h.latencies.len()
                )
            })
        })
        .collect();
    if !per_history.is_empty() {
        println!("lead histories read: {}", per_history.join("; "));
    }
    println!();
    println!("events/s: higher is better, ours/peer above 1 is auditlog ahead;");
    println!("ms: lower is better, ours/peer below 1 is auditlog ahead.");

    println!();
    println!(
        "{:<24} {:<9} {:>9} {:>7} {:>7} {:>7} {:>9} {:>9} {:>6}",
        "scenario",
        "system",
        "events/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "srv us/ev",
        "cli us/ev",
        "others"
    );
    for (shape, row) in results {
        for (i, (name, m)) in names.iter().zip(row).enumerate() {
            let label = if i == 0 { shape.label } else { "" };
            let secs = m.window.as_secs_f64();
            let (server, client, others) = match m.cpu {
                Some(cpu) if m.events > 0 => {
                    let per = |s: f64| format!("{:.1}", s * 1e6 / m.events as f64);
                    (
                        per(cpu.server),
                        per(cpu.client),
                        format!("{:.2}", cpu.others / secs),
                    )
                }
                _ => ("-".to_owned(), "-".to_owned(), "-".to_owned()),
            };
            println!(
                "{:<24} {:<9} {:>9.0} {:>7.3} {:>7.3} {:>7.3} {:>9} {:>9} {:>6}",
                label,
                name,
                m.events_per_sec(),
                ms(m.percentile(50.0)),
                ms(m.percentile(95.0)),
                ms(m.percentile(99.0)),
                server,
                client,
                others,
            );
            if m.calls == 0 && m.errors == 0 {
                println!(
                    "{:<24} {:<9} no call completed inside the window (each took longer)",
                    "", ""
                );
            }
            if m.errors > 0 {
                println!(
                    "{:<24} {:<9} {} failed calls, last: {}",
                    "",
                    "",
                    m.errors,
                    m.last_error.as_deref().unwrap_or("?")
                );
            }
        }
    }
    println!();
    println!("srv us/ev: CPU of the server per event (auditlog: its threads in this process;");
    println!("  postgres: the postmaster and its backends; nats-js: the nats-server process)");
    println!("cli us/ev: CPU of the client runtime per event; others: cores used by the rest");
    println!("latencies: per call (a whole batch for batches)");
}

fn short(name: &str) -> &str {
    match name {
        "postgres" => "pg",
        "nats-js" => "nats",
        other => other,
    }
}
