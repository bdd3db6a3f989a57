//! `auditlog performance`: duration figures per operation, from the
//! server's recent windows or from the log's `performance` events over a
//! time range.

use auditlog_client::{Client, pb};

use crate::CliError;
use crate::format::{Table, parse_time};

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
    let ms = |v: f64| format!("{v:.2}");
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
