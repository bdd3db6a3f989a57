//! `auditlog report`: daily, weekly, last-7-days and monthly activity
//! reports, each one self-contained HTML file (inline CSS and SVG, no
//! script, nothing fetched). One run makes every kind it is asked for, for
//! the periods that hold one date.
//!
//! The figures are aggregated by the server: GetStats over the period (with
//! its timeline, error types and lead funnel) and GetPerformanceStats over
//! the same range; only the latest errors and the newest events are read as
//! events, a few small pages each. Nothing else of the log is pulled to the
//! client, so a report costs the same for ten events or ten million.
//!
//! `--output` is a directory (the files are named by kind and period, and
//! `--latest` also writes a copy named by kind alone that every run
//! replaces, for a dashboard's link), or one file ending in `.html` when one
//! report is asked for. Every file is written under a temporary name and
//! renamed, so a reader never sees half a report.

mod chart;
mod html;
mod period;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use auditlog_client::{Client, Query, pb};
use clap::{ArgGroup, Args};
use time::OffsetDateTime;

use crate::format::{parse_date, timestamp_text};
use crate::{CliError, progress};
use period::{Period, iso_date};

/// How many of the latest errors the report lists.
const LATEST_ERRORS: u32 = 10;
/// How many of the newest events the report lists.
const RECENT_EVENTS: usize = 25;
/// The page size, and the most pages, read for the newest events: timing
/// samples are skipped, so more than [`RECENT_EVENTS`] may have to be read.
const RECENT_PAGE: u32 = 100;
const RECENT_PAGES: usize = 5;

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("kinds")
        .required(true)
        .multiple(true)
        .args(["daily", "weekly", "last_7_days", "monthly"])
))]
pub(crate) struct ReportArgs {
    /// One UTC day, hour by hour.
    #[arg(long)]
    daily: bool,
    /// The ISO week (Monday to Sunday, UTC) of the date, day by day.
    #[arg(long)]
    weekly: bool,
    /// The seven days ending with the date (a rolling week), day by day.
    #[arg(long = "last-7-days")]
    last_7_days: bool,
    /// The calendar month of the date, day by day.
    #[arg(long)]
    monthly: bool,
    /// The day the reports are about, YYYY-MM-DD (default: today, UTC): the
    /// daily report's day, and the day whose week, last seven days or month
    /// the others cover.
    #[arg(long, value_name = "DATE", visible_alias = "week-of")]
    date: Option<String>,
    /// The directory to write the reports into (created if missing), or, for
    /// a single report, the file to write (a name ending in .html).
    #[arg(long, short, value_name = "DIR|FILE.html", default_value = ".")]
    output: PathBuf,
    /// Also write each report as auditlog-<kind>-latest.html in the
    /// directory, replaced by every run: a stable name for a dashboard link.
    #[arg(long)]
    latest: bool,
    /// Also mail each report to the server's alert email recipients,
    /// through its [alerts.email] SMTP settings (needs an admin token when
    /// the server has tokens).
    #[arg(long)]
    mail: bool,
}

/// Where the reports go.
enum Target {
    /// A directory: each report under its own name (and its latest copy).
    Dir(PathBuf),
    /// One file, for one report.
    File(PathBuf),
}

/// Checks the flags, connects, writes each report and prints its path.
pub(crate) async fn run(
    server: &str,
    options: auditlog_client::Options,
    args: ReportArgs,
    json: bool,
) -> Result<(), CliError> {
    let now = OffsetDateTime::now_utc();
    // Bad flags are reported before any connection is tried.
    let periods = periods_of(&args, now)?;
    let target = target_of(&args, periods.len())?;
    let client = Client::connect_with(server, options).await?;
    for period in periods {
        let progress = progress::step(format!("gathering the {} report", period.label()));
        let data = fetch(&client, server, period, now).await;
        progress.finish_and_clear();
        let data = data?;
        let page = html::render(&data)
            .map_err(|_| CliError::Failed("could not render the report".into()))?;
        let (path, latest) = match &target {
            Target::File(path) => {
                let dir = path.parent().unwrap_or(Path::new(""));
                write_file(dir, path, page.as_bytes())?;
                (path.clone(), None)
            }
            Target::Dir(dir) => {
                let path = dir.join(period.file_name());
                write_file(dir, &path, page.as_bytes())?;
                let latest = dir.join(period.latest_file_name());
                if args.latest {
                    write_file(dir, &latest, page.as_bytes())?;
                }
                (path, args.latest.then_some(latest))
            }
        };
        let mailed = if args.mail {
            let subject = format!("auditlog {} report {}", period.kind(), period.label());
            let text = format!(
                "{subject}: {} events. The report is the HTML part of this mail.",
                data.stats.total_events
            );
            Some(client.mail_report(&subject, page, text).await?)
        } else {
            None
        };
        if json {
            let (since, until): (SystemTime, SystemTime) =
                (period.start().into(), period.end().into());
            let mut value = serde_json::json!({
                "path": path.display().to_string(),
                "kind": period.kind(),
                "period": period.label(),
                "since": timestamp_text(Some(&since.into())),
                "until": timestamp_text(Some(&until.into())),
                "total_events": data.stats.total_events,
            });
            if let Some(latest) = &latest {
                value["latest"] = latest.display().to_string().into();
            }
            if let Some(recipients) = mailed {
                value["mailed_to"] = recipients.into();
            }
            say!("{value}");
        } else {
            say!("{}", path.display());
            if let Some(latest) = &latest {
                say!("{}", latest.display());
            }
            if let Some(recipients) = mailed {
                say!("mailed to {recipients} recipient(s)");
            }
        }
    }
    Ok(())
}

/// Reads what one report shows from the server.
async fn fetch(
    client: &Client,
    server: &str,
    period: Period,
    now: OffsetDateTime,
) -> Result<html::Data, CliError> {
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
    let in_period = Query::new().since(since).until(until).details_as_json();
    let errors = client.query(in_period.clone().event_type("error").limit(LATEST_ERRORS));
    let recent = recent_events(client, in_period);
    let (stats, performance, errors, recent) =
        tokio::try_join!(stats, performance, errors, recent)?;
    Ok(html::Data {
        period,
        generated: now,
        server: server.to_owned(),
        stats,
        performance,
        latest_errors: errors.events,
        recent,
    })
}

/// The period's newest events but timing samples, newest first: at most
/// [`RECENT_EVENTS`], from at most [`RECENT_PAGES`] pages.
async fn recent_events(
    client: &Client,
    in_period: Query,
) -> Result<Vec<pb::Event>, auditlog_client::Error> {
    let mut events = Vec::new();
    let mut token = String::new();
    for _ in 0..RECENT_PAGES {
        let mut query = in_period.clone().limit(RECENT_PAGE);
        if !token.is_empty() {
            query = query.page_token(token);
        }
        let page = client.query(query).await?;
        events.extend(
            page.events
                .into_iter()
                .filter(|e| e.event_type != html::PERFORMANCE),
        );
        if events.len() >= RECENT_EVENTS || page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    events.truncate(RECENT_EVENTS);
    Ok(events)
}

/// The periods the flags ask for, in the order daily, weekly, last 7 days,
/// monthly; the date defaults to today (UTC).
fn periods_of(args: &ReportArgs, now: OffsetDateTime) -> Result<Vec<Period>, CliError> {
    let date = match args.date.as_deref() {
        None => now.date(),
        Some(s) => parse_date(s.trim()).ok_or_else(|| {
            CliError::Usage(format!(
                "--date {s:?} is not a date; use YYYY-MM-DD, e.g. {}",
                iso_date(now.date())
            ))
        })?,
    };
    // The server stamps events with its clock: nothing lies before 1970,
    // and the year 9999 leaves no room for a whole week after it.
    if !(1970..=9998).contains(&date.year()) {
        return Err(CliError::Usage(format!(
            "--date {}: the year must be between 1970 and 9998",
            iso_date(date)
        )));
    }
    let asked = [
        (args.daily, Period::day(date)),
        (args.weekly, Period::week_of(date)),
        (args.last_7_days, Period::last_7_days(date)),
        (args.monthly, Period::month_of(date)),
    ];
    Ok(asked
        .into_iter()
        .filter_map(|(asked, period)| asked.then_some(period))
        .collect())
}

/// Where the reports go: a path ending in `.html` that is not a directory
/// is the file of a single report; anything else a directory.
fn target_of(args: &ReportArgs, reports: usize) -> Result<Target, CliError> {
    let out = &args.output;
    let is_file = out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("html"))
        && !out.is_dir();
    if !is_file {
        return Ok(Target::Dir(out.clone()));
    }
    if reports > 1 {
        return Err(CliError::Usage(format!(
            "--output {} names one file, but {reports} reports were asked for; \
             give a directory instead",
            out.display()
        )));
    }
    if args.latest {
        return Err(CliError::Usage(format!(
            "--latest writes auditlog-<kind>-latest.html into a directory; \
             --output {} already names the file, so drop one of them",
            out.display()
        )));
    }
    Ok(Target::File(out.clone()))
}

/// Writes `bytes` to `path` under a temporary name first, so an interrupted
/// run never leaves a half report that looks whole, and a dashboard reading
/// a latest copy sees the old page or the new one.
fn write_file(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    if !dir.as_os_str().is_empty() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::Io(format!("cannot create {}: {e}", dir.display())))?;
    }
    let partial = path.with_extension("html.partial");
    std::fs::write(&partial, bytes)
        .map_err(|e| CliError::Io(format!("cannot write {}: {e}", partial.display())))?;
    std::fs::rename(&partial, path).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        CliError::Io(format!("cannot rename to {}: {e}", path.display()))
    })
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
            last_7_days: false,
            monthly: false,
            date: date.map(str::to_owned),
            output: PathBuf::from("."),
            latest: false,
            mail: false,
        }
    }

    #[test]
    fn the_period_defaults_to_today_and_rejects_bad_dates() {
        let now = datetime!(2026-11-28 20:15 UTC);
        assert_eq!(
            periods_of(&args(true, None), now).unwrap(),
            [Period::day(date!(2026 - 11 - 28))]
        );
        assert_eq!(
            periods_of(&args(false, Some("2026-11-25")), now).unwrap(),
            [Period::week_of(date!(2026 - 11 - 28))]
        );
        let every = ReportArgs {
            last_7_days: true,
            monthly: true,
            daily: true,
            ..args(false, Some("2026-11-25"))
        };
        let day = date!(2026 - 11 - 25);
        assert_eq!(
            periods_of(&every, now).unwrap(),
            [
                Period::day(day),
                Period::week_of(day),
                Period::last_7_days(day),
                Period::month_of(day)
            ]
        );
        let err = periods_of(&args(true, Some("2026-02-30")), now).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid argument: --date \"2026-02-30\" is not a date; use YYYY-MM-DD, e.g. 2026-11-28"
        );
        let err = periods_of(&args(false, Some("1969-12-31")), now).unwrap_err();
        assert!(err.to_string().contains("--date 1969-12-31"), "{err}");
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
