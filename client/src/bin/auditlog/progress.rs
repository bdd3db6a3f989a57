//! Progress on standard error for the commands that can run long (export,
//! subject export, integrity, report): a bar when the amount of work is
//! known, a spinner with a running count when it is not. indicatif draws
//! only when standard error is a terminal, so pipes, files and scripts see
//! nothing of it. Rates are whole numbers of events a second.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

/// A bar over `len` seqs: "exporting [===>   ] 1200/5000 seqs, 840/s, eta 4s".
pub(crate) fn bar(len: u64, verb: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(style(&format!(
        "{{spinner}} {verb} [{{bar:30}}] {{pos}}/{{len}} seqs, {{rate}}, eta {{eta}}"
    )));
    bar
}

/// A spinner counting events: "exporting 1200 events, 840/s, 2s".
pub(crate) fn counter(verb: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(style(&format!(
        "{{spinner}} {verb} {{pos}} events, {{rate}}, {{elapsed}}"
    )));
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A spinner for one long step, saying which and for how long so far.
pub(crate) fn step(message: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(style("{spinner} {msg}, {elapsed}"));
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}/s", rate_text(state.per_sec()));
            },
        )
        .progress_chars("=> ")
}

/// A rate as a whole number, with no fractional noise ("12345", not
/// "12345.6789").
fn rate_text(per_sec: f64) -> String {
    if per_sec.is_finite() && per_sec >= 0.0 {
        format!("{per_sec:.0}")
    } else {
        "0".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::rate_text;

    #[test]
    fn rates_are_whole_numbers() {
        assert_eq!(rate_text(12_345.678_9), "12346");
        assert_eq!(rate_text(0.4), "0");
        assert_eq!(rate_text(f64::NAN), "0");
        assert_eq!(rate_text(f64::INFINITY), "0");
    }
}
