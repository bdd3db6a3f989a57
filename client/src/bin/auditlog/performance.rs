//! `auditlog performance`: duration figures per operation, from the
//! server's recent windows or from the log's `performance` events over a
//! time range; and `auditlog track`, which records one duration.

use auditlog_client::{Client, pb};

use crate::CliError;
use crate::cli::TrackArgs;
use crate::format::{Table, millis_text, parse_time};
use crate::log::{details_of, print_receipt};

/// `auditlog track OPERATION DURATION`: TrackPerformance, and its receipt.
pub(crate) async fn track(client: &Client, args: TrackArgs, json: bool) -> Result<(), CliError> {
    let duration_ms = duration_ms(&args.duration).map_err(|reason| {
        CliError::Usage(format!(
            "DURATION {:?} {reason}; use e.g. 250ms, 0.25s or 1.5 (seconds)",
            args.duration
        ))
    })?;
    let details = args.details.as_deref().map(details_of).transpose()?;
    let receipt = client
        .track_performance_with(pb::TrackPerformanceRequest {
            operation: args.operation,
            duration_ms,
            workflow: args.workflow.unwrap_or_default(),
            actor: args.actor.unwrap_or_default(),
            lead_id: args.lead.unwrap_or_default(),
            details: details.as_ref().map(auditlog_proto::json::json_to_struct),
            idempotency_key: String::new(),
        })
        .await?;
    print_receipt(&receipt, json)
}

/// A duration as people type it, in milliseconds: a number with a unit
/// (`250ms`, `0.25s`, `2m`, `1h`, `500us`), or a plain number of seconds, as
/// the old logger's `track_performance(operation, duration)` took.
fn duration_ms(text: &str) -> Result<f64, &'static str> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic() || c == 'µ')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let per_unit = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1000.0,
        "ms" => 1.0,
        "us" | "µs" => 0.001,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return Err("has an unknown unit (ms, s, m or h)"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| "is not a number with an optional unit")?;
    if !value.is_finite() || value < 0.0 {
        return Err("must be a number from 0 up");
    }
    Ok(value * per_unit)
}

pub(crate) async fn run(
    client: &Client,
    operation: Option<String>,
    since: Option<String>,
    until: Option<String>,
    json: bool,
) -> Result<(), CliError> {
    let time = |flag: &str, s: Option<String>| {
        s.map(|s| {
            parse_time(&s)
                .map(prost_types::Timestamp::from)
                .map_err(|e| CliError::Usage(format!("{flag}: {e}")))
        })
        .transpose()
    };
    let response = client
        .performance_stats_with(pb::GetPerformanceStatsRequest {
            operation: operation.clone().unwrap_or_default(),
            since: time("--since", since)?,
            until: time("--until", until)?,
        })
        .await?;
    let source = |s: i32| match pb::PerformanceSource::try_from(s) {
        Ok(pb::PerformanceSource::Server) => "server",
        _ => "tracked",
    };
    if json {
        let ops: Vec<serde_json::Value> = response
            .operations
            .iter()
            .map(|o| {
                serde_json::json!({
                    "operation": o.operation, "source": source(o.source), "count": o.count,
                    "min_ms": o.min_ms, "max_ms": o.max_ms, "avg_ms": o.avg_ms,
                    "p50_ms": o.p50_ms, "p95_ms": o.p95_ms, "p99_ms": o.p99_ms,
                })
            })
            .collect();
        say!(
            "{}",
            serde_json::json!({"window": response.window, "operations": ops})
        );
        return Ok(());
    }
    if response.operations.is_empty() {
        match operation {
            Some(op) => say!("no measurements of {op:?}"),
            None => say!("no measurements yet"),
        }
        return Ok(());
    }
    let ms = millis_text;
    let mut table = Table::new(vec![
        "OPERATION",
        "SOURCE",
        "COUNT",
        "MIN ms",
        "AVG ms",
        "P50 ms",
        "P95 ms",
        "P99 ms",
        "MAX ms",
    ]);
    for o in &response.operations {
        table.row(vec![
            o.operation.clone(),
            source(o.source).to_owned(),
            o.count.to_string(),
            ms(o.min_ms),
            ms(o.avg_ms),
            ms(o.p50_ms),
            ms(o.p95_ms),
            ms(o.p99_ms),
            ms(o.max_ms),
        ]);
    }
    table.print(&mut std::io::stdout().lock())?;
    if response.window > 0 {
        say!(
            "(over each operation's last {} samples; server RPCs since the server started)",
            response.window
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::duration_ms;

    #[test]
    fn durations_read_as_people_type_them() {
        for (text, ms) in [
            ("250ms", 250.0),
            ("0.25s", 250.0),
            ("1.5", 1500.0),
            ("2", 2000.0),
            (" 3 ms", 3.0),
            ("2m", 120_000.0),
            ("1h", 3_600_000.0),
            ("500us", 0.5),
        ] {
            assert_eq!(duration_ms(text), Ok(ms), "{text}");
        }
        for bad in ["", "ms", "fast", "1.5d", "-1", "NaN", "inf", "1e400"] {
            assert!(duration_ms(bad).is_err(), "{bad}");
        }
    }
}
