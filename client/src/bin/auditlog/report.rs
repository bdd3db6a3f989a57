//! `auditlog report`: a daily or weekly activity report as one
//! self-contained HTML file (inline CSS and SVG, no script, nothing fetched).
//!
//! The figures are aggregated by the server: GetStats over the period (with
//! its timeline, error types and lead funnel) and GetPerformanceStats over
//! the same range; only the latest errors and the newest events are read as
//! events, one small page each. Nothing else of the log is pulled to the
//! client, so a report costs the same for ten events or ten million.

mod chart;
mod html;
mod period;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use auditlog_client::{Client, Query, pb};
use clap::{ArgGroup, Args};
use time::OffsetDateTime;

use crate::CliError;
use crate::format::{parse_date, timestamp_text};
use period::{Period, iso_date};

/// How many of the latest errors the report lists.
const LATEST_ERRORS: u32 = 10;
/// How many of the newest events the report lists.
const RECENT_EVENTS: u32 = 25;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("period").required(true).args(["daily", "weekly"])))]
pub(crate) struct ReportArgs {
    /// One UTC day, hour by hour.
    #[arg(long)]
    daily: bool,
    /// One ISO week (Monday to Sunday, UTC), day by day.
    #[arg(long)]
    weekly: bool,
    /// The day of a daily report, YYYY-MM-DD (default: today, UTC).
    #[arg(long, value_name = "DATE", conflicts_with = "weekly")]
    date: Option<String>,
    /// Any day of the week of a weekly report, YYYY-MM-DD (default: today).
    #[arg(long, value_name = "DATE", conflicts_with = "daily")]
    week_of: Option<String>,
    /// The directory to write the report into (created if missing).
    #[arg(long, short, value_name = "DIR", default_value = ".")]
    output: PathBuf,
}

/// Checks the flags, connects, writes the report and prints its path.
pub(crate) async fn run(
    server: &str,
    options: auditlog_client::Options,
    args: ReportArgs,
    json: bool,
) -> Result<(), CliError> {
    let now = OffsetDateTime::now_utc();
    // A bad date is reported before any connection is tried.
    let period = period_of(&args, now)?;
    let client = Client::connect_with(server, options).await?;
    let (since, until): (SystemTime, SystemTime) = (period.start().into(), period.end().into());
    let (start, end) = (Some(since.into()), Some(until.into()));
    let stats = client.stats_with(pb::GetStatsRequest {
        since: start,
        until: end,
        bucket_seconds: period.bucket_seconds(),
        error_types: true,
        leads_by_type: true,
        ..pb::GetStatsRequest::default()
    });
    let performance = client.performance_stats_with(pb::GetPerformanceStatsRequest {
        since: start,
        until: end,
        ..pb::GetPerformanceStatsRequest::default()
    });
    let in_period = Query::new().since(since).until(until);
    let errors = client.query(in_period.clone().event_type("error").limit(LATEST_ERRORS));
    let recent = client.query(in_period.limit(RECENT_EVENTS));
    let (stats, performance, errors, recent) =
        tokio::try_join!(stats, performance, errors, recent)?;
    let data = html::Data {
        period,
        generated: now,
        server: server.to_owned(),
        stats,
        performance,
        latest_errors: errors.events,
        recent: recent.events,
    };
    let page =
        html::render(&data).map_err(|_| CliError::Failed("could not render the report".into()))?;
    let path = args.output.join(period.file_name());
    write_file(&args.output, &path, page.as_bytes())?;
    if json {
        say!(
            "{}",
            serde_json::json!({
                "path": path.display().to_string(),
                "period": period.label(),
                "since": timestamp_text(start.as_ref()),
                "until": timestamp_text(end.as_ref()),
                "total_events": data.stats.total_events,
            })
        );
    } else {
        say!("{}", path.display());
    }
    Ok(())
}

/// The period the flags ask for; the date defaults to today (UTC).
fn period_of(args: &ReportArgs, now: OffsetDateTime) -> Result<Period, CliError> {
    let (flag, given) = if args.weekly {
        ("--week-of", args.week_of.as_deref())
    } else {
        ("--date", args.date.as_deref())
    };
    let date = match given {
        None => now.date(),
        Some(s) => parse_date(s.trim()).ok_or_else(|| {
            CliError::Usage(format!(
                "{flag} {s:?} is not a date; use YYYY-MM-DD, e.g. {}",
                iso_date(now.date())
            ))
        })?,
    };
    // The server stamps events with its clock: nothing lies before 1970,
    // and the year 9999 leaves no room for a whole week after it.
    if !(1970..=9998).contains(&date.year()) {
        return Err(CliError::Usage(format!(
            "{flag} {}: the year must be between 1970 and 9998",
            iso_date(date)
        )));
    }
    Ok(if args.weekly {
        Period::week_of(date)
    } else {
        Period::day(date)
    })
}

/// Writes `bytes` to `path` under a temporary name first, so an interrupted
/// run never leaves a half report that looks whole.
fn write_file(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Io(format!("cannot create {}: {e}", dir.display())))?;
    let partial = path.with_extension("html.partial");
    std::fs::write(&partial, bytes)
        .map_err(|e| CliError::Io(format!("cannot write {}: {e}", partial.display())))?;
    std::fs::rename(&partial, path)
        .map_err(|e| CliError::Io(format!("cannot rename to {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use time::macros::{date, datetime};

    fn args(daily: bool, date: Option<&str>) -> ReportArgs {
        ReportArgs {
            daily,
            weekly: !daily,
            date: date.filter(|_| daily).map(str::to_owned),
            week_of: date.filter(|_| !daily).map(str::to_owned),
            output: PathBuf::from("."),
        }
    }

    #[test]
    fn the_period_defaults_to_today_and_rejects_bad_dates() {
        let now = datetime!(2026-11-28 20:15 UTC);
        assert_eq!(
            period_of(&args(true, None), now).unwrap(),
            Period::day(date!(2026 - 11 - 28))
        );
        assert_eq!(
            period_of(&args(false, Some("2026-11-25")), now).unwrap(),
            Period::week_of(date!(2026 - 11 - 28))
        );
        let err = period_of(&args(true, Some("2026-02-30")), now).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid argument: --date \"2026-02-30\" is not a date; use YYYY-MM-DD, e.g. 2026-11-28"
        );
        let err = period_of(&args(false, Some("1969-12-31")), now).unwrap_err();
        assert!(err.to_string().contains("--week-of 1969-12-31"), "{err}");
    }

    fn event(seq: u64, event_type: &str, details: serde_json::Value) -> pb::Event {
        let serde_json::Value::Object(map) = details else {
            panic!("details must be an object")
        };
        pb::Event {
            seq,
            event_type: event_type.into(),
            actor: "<b>actor</b>".into(),
            lead_id: "\"><img src=x onerror=alert(1)>".into(),
            workflow: "<script>alert('wf')</script>".into(),
            details: Some(auditlog_proto::json::json_to_struct(&map)),
            timestamp: Some(prost_types::Timestamp {
                seconds: 1_795_900_000,
                nanos: 0,
            }),
            ..pb::Event::default()
        }
    }

    #[test]
    fn nothing_from_the_log_becomes_markup() {
        let hostile = "<script>alert(1)</script>";
        let map = |k: &str, v: u64| HashMap::from([(k.to_owned(), v)]);
        let data = html::Data {
            period: Period::day(date!(2026 - 11 - 28)),
            generated: datetime!(2026-11-28 20:15 UTC),
            server: "http://x/<script>".into(),
            stats: pb::GetStatsResponse {
                total_events: 2,
                by_type: map("error", 2),
                by_workflow: map(hostile, 2),
                errors_by_type: map("<img src=x onerror=alert(2)>", 2),
                leads_by_type: map("lead_ingested", 1),
                timeline: vec![pb::TimeBucket {
                    start: Some(prost_types::Timestamp {
                        seconds: 1_795_899_600,
                        nanos: 0,
                    }),
                    events: 2,
                    errors: 2,
                }],
                ..pb::GetStatsResponse::default()
            },
            performance: pb::GetPerformanceStatsResponse {
                operations: vec![pb::OperationStats {
                    operation: "\"><svg onload=alert(3)>".into(),
                    count: 1,
                    ..pb::OperationStats::default()
                }],
                window: 0,
            },
            latest_errors: vec![event(
                2,
                "error",
                serde_json::json!({"error_type": hostile, "error_message": "</td><script>x</script>"}),
            )],
            recent: vec![event(1, "error", serde_json::json!({"note": hostile}))],
        };
        let page = html::render(&data).unwrap();
        for bad in ["<script", "<img", "<svg onload", "<b>"] {
            assert!(!page.contains(bad), "{bad} in the page");
        }
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        // Every tag on the page is one of ours.
        let allowed = [
            "!DOCTYPE", "html", "head", "meta", "title", "style", "body", "header", "main",
            "section", "footer", "div", "span", "h1", "h2", "h3", "p", "ul", "li", "strong",
            "code", "table", "thead", "tbody", "tr", "th", "td", "svg", "g", "rect", "line",
            "text",
        ];
        let body = page.split("</style>").nth(1).unwrap();
        for tag in body.split('<').skip(1) {
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '!')
                .collect();
            assert!(allowed.contains(&name.as_str()), "unexpected tag <{tag}");
            for attr in attribute_names(tag) {
                assert!(
                    !attr.starts_with("on") && attr != "src" && attr != "href",
                    "{attr} in <{tag}"
                );
            }
        }
    }

    /// The attribute names of a tag's text (after its `<`): values are in
    /// double quotes, which escaping keeps out of them.
    fn attribute_names(tag: &str) -> Vec<String> {
        let head = tag.split('>').next().unwrap();
        let mut names = Vec::new();
        let mut rest = head.trim_start_matches('/');
        rest = rest.trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '!');
        loop {
            rest = rest.trim_start();
            let end = rest.find(['=', ' ', '/']).unwrap_or(rest.len());
            if end > 0 {
                names.push(rest[..end].to_owned());
            }
            rest = &rest[end..];
            if let Some(value) = rest.strip_prefix("=\"") {
                let close = value.find('"').expect("an unterminated attribute value");
                rest = &value[close + 1..];
            } else if rest.is_empty() {
                return names;
            } else {
                rest = &rest[1..];
            }
        }
    }
}
