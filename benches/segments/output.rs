//! The segments bench's output: the results table against the targets, and
//! how durations, sizes and rates are printed.

use std::time::Duration;

/// The results table.
#[derive(Default)]
pub(crate) struct Table {
    rows: Vec<[String; 4]>,
}

impl Table {
    pub(crate) fn row(
        &mut self,
        name: &str,
        measured: String,
        target: impl Into<String>,
        met: Option<bool>,
    ) {
        let status = match met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        self.rows
            .push([name.to_owned(), measured, target.into(), status.to_owned()]);
    }

    pub(crate) fn print(&self) {
        let header = ["figure", "measured", "target", ""].map(String::from);
        let mut widths = [0usize; 4];
        for row in std::iter::once(&header).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&self.rows) {
            println!(
                "{:<w0$}  {:>w1$}  {:<w2$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
            );
        }
    }
}

pub(crate) fn print_runs(label: &str, runs: &[Duration]) {
    let all: Vec<String> = runs.iter().map(|d| secs(*d)).collect();
    println!(
        "{label}: {} (median {})",
        all.join(", "),
        secs(median(runs))
    );
}

pub(crate) fn median(runs: &[Duration]) -> Duration {
    let mut sorted = runs.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub(crate) fn us(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

pub(crate) fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

pub(crate) fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub(crate) fn rate(events_per_sec: f64) -> String {
    format!("{:.2} M events/s", events_per_sec / 1e6)
}
