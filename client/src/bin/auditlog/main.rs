//! `auditlog`: the command-line tool for the auditlog service.
//!
//! Every subcommand talks to a server (`--server`, `AUDITLOG_SERVER`), prints
//! a readable form by default and JSON with `--json`, and on failure prints
//! one line to stderr and exits non-zero.

/// `println!` that returns an error instead of panicking when stdout is
/// gone (`auditlog query | head`); `main` treats a broken pipe as success.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?;
    }};
}

mod admin;
mod bench;
mod export;
mod format;
mod health;
mod report;

use std::io::Write as _;
use std::process::ExitCode;

use auditlog_client::{Client, NewEvent, Query, pb};
use clap::{Args, Parser, Subcommand};
use futures::StreamExt as _;

use format::{Table, event_json, parse_time, receipt_json, timestamp_text};

/// Record, query, stream and verify events in an auditlog server.
#[derive(Debug, Parser)]
#[command(name = "auditlog", version, propagate_version = true)]
struct Cli {
    /// The server's URL.
    #[arg(
        long,
        global = true,
        env = "AUDITLOG_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Bearer token for servers that require one.
    #[arg(long, global = true, env = "AUDITLOG_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) for an https:// server with a private CA.
    #[arg(long, global = true, env = "AUDITLOG_CA_CERT", value_name = "FILE")]
    ca_cert: Option<std::path::PathBuf>,
    /// Client certificate (PEM), for servers that require mutual TLS.
    #[arg(
        long,
        global = true,
        env = "AUDITLOG_CLIENT_CERT",
        value_name = "FILE",
        requires = "client_key"
    )]
    client_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long,
        global = true,
        env = "AUDITLOG_CLIENT_KEY",
        value_name = "FILE",
        requires = "client_cert"
    )]
    client_key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// Token and TLS settings from the flags, with the files read.
    fn options(&self) -> Result<auditlog_client::Options, CliError> {
        let read = |flag: &str, path: &std::path::Path| {
            std::fs::read(path)
                .map_err(|e| CliError::Usage(format!("{flag} {}: {e}", path.display())))
        };
        Ok(auditlog_client::Options {
            token: self.token.clone(),
            ca_cert_pem: self
                .ca_cert
                .as_deref()
                .map(|p| read("--ca-cert", p))
                .transpose()?,
            identity_pem: match (&self.client_cert, &self.client_key) {
                (Some(c), Some(k)) => Some((read("--client-cert", c)?, read("--client-key", k)?)),
                _ => None,
            },
            domain: None,
        })
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log one event and print its receipt.
    #[command(
        after_help = "Examples:\n  auditlog log lead_ingested --lead LEAD-001 --workflow sales --details '{\"source\":\"webform\"}'\n  auditlog log error --details '{\"error_type\":\"Timeout\",\"error_message\":\"CRM did not answer\"}'"
    )]
    Log(LogArgs),
    /// Query events: a table, newest first.
    #[command(
        after_help = "Examples:\n  auditlog query --type error --last 24h\n  auditlog query --lead LEAD-001 --oldest-first --verbose\n  auditlog query --workflow sales --since 2026-11-01 --until 2026-11-08 --limit 500"
    )]
    Query(QueryArgs),
    /// A lead's full timeline, oldest first.
    #[command(after_help = "Example:\n  auditlog history LEAD-001")]
    History {
        /// The lead id.
        lead: String,
        /// Show each event's details.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Totals by type and workflow, leads, errors, first and last event.
    #[command(after_help = "Examples:\n  auditlog stats\n  auditlog stats --workflow sales --json")]
    Stats {
        /// Only this workflow.
        #[arg(long)]
        workflow: Option<String>,
    },
    /// Recent error events with their type and message.
    #[command(after_help = "Examples:\n  auditlog errors\n  auditlog errors --limit 5 --verbose")]
    Errors {
        /// How many (1 to 1,000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Also print each traceback.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Verify the log's signatures and chain; exits 1 when anything is wrong.
    #[command(
        after_help = "Examples:\n  auditlog integrity\n  auditlog integrity --checkpoint 1200:3f9a…  # a receipt you kept"
    )]
    Integrity {
        /// Start at this seq.
        #[arg(long, default_value_t = 0)]
        from_seq: u64,
        /// Stop at this seq.
        #[arg(long, default_value_t = 0)]
        to_seq: u64,
        /// A receipt to prove present, as SEQ:SIGNATURE (repeatable).
        #[arg(long, value_name = "SEQ:SIGNATURE")]
        checkpoint: Vec<String>,
    },
    /// Export events as CSV, a JSON array or JSON Lines, in constant memory.
    #[command(
        after_help = "Examples:\n  auditlog export --format csv --output audit.csv\n  auditlog export --format jsonl --lead LEAD-001 > lead.jsonl"
    )]
    Export(export::ExportArgs),
    /// Follow live events until Ctrl-C.
    #[command(after_help = "Examples:\n  auditlog tail\n  auditlog tail --type error --from-seq 1")]
    Tail {
        #[command(flatten)]
        filter: FilterArgs,
        /// Start at this seq instead of at the next new event.
        #[arg(long)]
        from_seq: Option<u64>,
        /// Show each event's details.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Seal the active segment now and compress it (admin).
    #[command(
        after_help = "Examples:\n  auditlog rotate\n  auditlog rotate --wait   # until the .gz is in the manifest"
    )]
    Rotate {
        /// Wait until the sealed segment is compressed and in the manifest.
        #[arg(long)]
        wait: bool,
    },
    /// Alerts: send a test alert to every channel, or show counters (admin).
    #[command(
        subcommand,
        after_help = "Examples:\n  auditlog alerts test\n  auditlog alerts status"
    )]
    Alerts(AlertsCommand),
    /// Outgoing webhooks: delivery status per endpoint (admin).
    #[command(subcommand, after_help = "Example:\n  auditlog webhooks status")]
    Webhooks(WebhooksCommand),
    /// Purge segments older than the retention period now (admin).
    #[command(after_help = "Example:\n  auditlog retention")]
    Retention,
    /// gRPC health check with grpc_health_probe's exit codes.
    #[command(
        after_help = "Exit codes: 0 serving, 1 bad arguments, 2 connection failed, 3 RPC failed, 4 not serving.\nExample:\n  auditlog health --service auditlog.v1.AuditService --rpc-timeout 2s"
    )]
    Health(health::HealthArgs),
    /// Load generator: events/s and latency percentiles against a server.
    #[command(
        after_help = "Every event it sends stays in the server's log for good (an audit log has no delete): point it at a test server, not production.\n\nExamples:\n  auditlog bench --concurrency 64 --duration 10s\n  auditlog bench --concurrency 8 --batch 100"
    )]
    Bench(bench::BenchArgs),
    /// Duration figures per operation: count, min, avg, p50, p95, p99, max.
    #[command(
        after_help = "Examples:\n  auditlog performance\n  auditlog performance --operation crm.create_record --json\n  auditlog performance --since 2026-11-01 --until 2026-11-08"
    )]
    Performance {
        /// Only this operation.
        #[arg(long)]
        operation: Option<String>,
        /// From the log's performance events at or after this time, instead
        /// of the recent windows (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// ... and before this time.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
    },
    /// Data-subject requests: every event about one person (auditor).
    #[command(
        subcommand,
        after_help = "Example:\n  auditlog subject export jane@example.com --format csv --output jane.csv"
    )]
    Subject(SubjectCommand),
    /// A daily or weekly activity report as one self-contained HTML file.
    #[command(
        after_help = "Examples:\n  auditlog report --daily --output reports/           # today (UTC)\n  auditlog report --daily --date 2026-11-28 --output reports/\n  auditlog report --weekly --week-of 2026-11-25 --output reports/  # ISO week 2026-W48\n\nWrites auditlog-daily-YYYY-MM-DD.html or auditlog-weekly-YYYY-Www.html into the\ndirectory and prints its path."
    )]
    Report(report::ReportArgs),
}

#[derive(Debug, Subcommand)]
enum SubjectCommand {
    /// Export every event whose lead id or details hold the identifier (or,
    /// in compliance mode, its pseudonym), as JSON, JSON Lines or CSV.
    #[command(
        after_help = "Examples:\n  auditlog subject export jane@example.com\n  auditlog subject export '+1 555 010 9999' --format csv --output subject.csv"
    )]
    Export(export::SubjectArgs),
}

#[derive(Debug, Subcommand)]
enum AlertsCommand {
    /// Send a test alert to every configured channel and report each result;
    /// exits 1 if any channel failed.
    #[command(after_help = "Example:\n  auditlog alerts test")]
    Test,
    /// Alerts sent and failed per channel; rules' windows and firings.
    #[command(after_help = "Example:\n  auditlog alerts status --json")]
    Status,
}

#[derive(Debug, Subcommand)]
enum WebhooksCommand {
    /// Last seq delivered, failures and last error per endpoint.
    #[command(after_help = "Example:\n  auditlog webhooks status")]
    Status,
}

#[derive(Debug, Args)]
struct LogArgs {
    /// The event type (lower_snake_case).
    event_type: String,
    /// The lead the event is about.
    #[arg(long)]
    lead: Option<String>,
    /// The workflow it belongs to.
    #[arg(long)]
    workflow: Option<String>,
    /// Who did it (default: system).
    #[arg(long)]
    actor: Option<String>,
    /// Details as a JSON object.
    #[arg(long, value_name = "JSON")]
    details: Option<String>,
    /// Write the event once per key; repeats return the first receipt.
    #[arg(long)]
    idempotency_key: Option<String>,
}

/// The filters shared by query, export and tail.
#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Only this event type (repeatable: any of them).
    #[arg(long = "type", value_name = "TYPE")]
    types: Vec<String>,
    /// Only this lead.
    #[arg(long)]
    lead: Option<String>,
    /// Only this workflow.
    #[arg(long)]
    workflow: Option<String>,
    /// Only this actor.
    #[arg(long)]
    actor: Option<String>,
    /// Only the last period: 30m, 24h, 7d, 1w.
    #[arg(long, value_name = "PERIOD", conflicts_with = "since")]
    last: Option<String>,
    /// Only events at or after this time (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only events before this time (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
}

impl FilterArgs {
    /// The filter as a query.
    pub fn query(&self) -> Result<Query, CliError> {
        let mut q = Query::new();
        for t in &self.types {
            q = q.event_type(t);
        }
        if let Some(l) = &self.lead {
            q = q.lead(l);
        }
        if let Some(w) = &self.workflow {
            q = q.workflow(w);
        }
        if let Some(a) = &self.actor {
            q = q.actor(a);
        }
        if let Some(period) = &self.last {
            let d = humantime::parse_duration(period).map_err(|e| {
                CliError::Usage(format!(
                    "--last {period:?}: {e} (use e.g. 30m, 24h, 7d, 1w)"
                ))
            })?;
            let since = std::time::SystemTime::now()
                .checked_sub(d)
                .ok_or_else(|| CliError::Usage(format!("--last {period:?} is too long")))?;
            q = q.since(since);
        }
        if let Some(s) = &self.since {
            q = q.since(parse_time(s).map_err(|e| CliError::Usage(format!("--since: {e}")))?);
        }
        if let Some(u) = &self.until {
            q = q.until(parse_time(u).map_err(|e| CliError::Usage(format!("--until: {e}")))?);
        }
        Ok(q)
    }
}

#[derive(Debug, Args)]
struct QueryArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// At most this many events (1 to 1,000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: u32,
    /// Oldest first instead of newest first.
    #[arg(long)]
    oldest_first: bool,
    /// Continue a previous query (printed when there are more events).
    #[arg(long)]
    page_token: Option<String>,
    /// Show each event's details.
    #[arg(long, short)]
    verbose: bool,
}

/// Why a command failed; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Client(#[from] auditlog_client::Error),
    #[error("invalid argument: {0}")]
    Usage(String),
    #[error("{0}")]
    Io(String),
    /// The command ran but found a problem (integrity); its output says what.
    #[error("{0}")]
    Failed(String),
    /// Exit with this code and no message (health).
    #[error("")]
    Exit(u8),
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        CliError::Io(e.to_string())
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    // The one TLS crypto provider, installed before any connection.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version go to stdout and succeed; a usage error exits 1,
        // as grpc_health_probe does for bad arguments.
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Exit(code)) => ExitCode::from(code),
        // A closed pipe (`auditlog query | head`) is not an error.
        Err(CliError::Io(msg)) if msg.contains("Broken pipe") => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("auditlog: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let json = cli.json;
    let options = cli.options()?;
    match cli.command {
        Command::Health(args) => health::run(&cli.server, &options, args, json).await,
        Command::Report(args) => report::run(&cli.server, options, args, json).await,
        command => {
            let client = Client::connect_with(&cli.server, options).await?;
            dispatch(&client, command, json).await
        }
    }
}

async fn dispatch(client: &Client, command: Command, json: bool) -> Result<(), CliError> {
    match command {
        Command::Log(args) => log(client, args, json).await,
        Command::Query(args) => query(client, args, json).await,
        Command::History { lead, verbose } => {
            let events = client.lead_history(&lead).await?;
            if events.is_empty() && !json {
                eprintln!("no events for lead {lead:?}");
            }
            print_events(&events, json, verbose)
        }
        Command::Stats { workflow } => stats(client, workflow.as_deref(), json).await,
        Command::Errors { limit, verbose } => errors(client, limit, verbose, json).await,
        Command::Integrity {
            from_seq,
            to_seq,
            checkpoint,
        } => integrity(client, from_seq, to_seq, &checkpoint, json).await,
        Command::Export(args) => export::run(client, args).await,
        Command::Tail {
            filter,
            from_seq,
            verbose,
        } => tail(client, &filter, from_seq, verbose, json).await,
        Command::Bench(args) => bench::run(client, args, json).await,
        Command::Rotate { wait } => {
            let r = client.rotate(wait).await?;
            if json {
                say!(
                    "{}",
                    serde_json::json!({"rotated": r.rotated, "file": r.file, "first_seq": r.first_seq, "last_seq": r.last_seq})
                );
            } else if r.rotated {
                say!("sealed {} (seqs {}..={})", r.file, r.first_seq, r.last_seq);
            } else {
                say!("nothing to rotate: the active segment is empty");
            }
            Ok(())
        }
        Command::Alerts(AlertsCommand::Test) => admin::alerts_test(client, json).await,
        Command::Alerts(AlertsCommand::Status) => admin::alerts_status(client, json).await,
        Command::Webhooks(WebhooksCommand::Status) => admin::webhooks_status(client, json).await,
        Command::Retention => {
            let r = client.apply_retention().await?;
            if json {
                say!(
                    "{}",
                    serde_json::json!({"segments": r.segments, "first_seq": r.first_seq, "through_seq": r.through_seq, "event_seq": r.event_seq})
                );
            } else if r.segments.is_empty() {
                say!("nothing to purge: no segment is older than the retention period");
            } else {
                say!(
                    "purged {} segment(s), seqs {}..={}; recorded as event seq {}",
                    r.segments.len(),
                    r.first_seq,
                    r.through_seq,
                    r.event_seq
                );
            }
            Ok(())
        }
        Command::Performance {
            operation,
            since,
            until,
        } => performance(client, operation, since, until, json).await,
        Command::Subject(SubjectCommand::Export(args)) => export::subject(client, args).await,
        Command::Health(_) | Command::Report(_) => unreachable!("handled before connecting"),
    }
}

async fn performance(
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

async fn log(client: &Client, args: LogArgs, json: bool) -> Result<(), CliError> {
    let mut event = NewEvent::new(args.event_type);
    if let Some(l) = args.lead {
        event = event.lead(l);
    }
    if let Some(w) = args.workflow {
        event = event.workflow(w);
    }
    if let Some(a) = args.actor {
        event = event.actor(a);
    }
    if let Some(k) = args.idempotency_key {
        event = event.idempotency_key(k);
    }
    if let Some(d) = args.details {
        let value: serde_json::Value = serde_json::from_str(&d)
            .map_err(|e| CliError::Usage(format!("--details is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(CliError::Usage(
                "--details must be a JSON object, like '{\"key\": \"value\"}'".into(),
            ));
        }
        event = event.details(value);
    }
    let receipt = client.log(event).await?;
    if json {
        say!("{}", receipt_json(&receipt));
    } else {
        let dup = if receipt.duplicate {
            "  (duplicate: already logged with this idempotency key)"
        } else {
            ""
        };
        say!(
            "seq {}  id {}  time {}\nsignature {}{dup}",
            receipt.seq,
            receipt.id,
            timestamp_text(receipt.timestamp.as_ref()),
            receipt.signature
        );
    }
    Ok(())
}

async fn query(client: &Client, args: QueryArgs, json: bool) -> Result<(), CliError> {
    let mut q = args.filter.query()?.limit(args.limit);
    if args.oldest_first {
        q = q.oldest_first();
    }
    if let Some(t) = args.page_token {
        q = q.page_token(t);
    }
    let page = client.query(q).await?;
    if json {
        let value = serde_json::json!({
            "events": page.events.iter().map(event_json).collect::<Vec<_>>(),
            "next_page_token": page.next_page_token,
        });
        say!("{value}");
        return Ok(());
    }
    if page.events.is_empty() {
        eprintln!("no matching events");
        return Ok(());
    }
    print_events(&page.events, false, args.verbose)?;
    if !page.next_page_token.is_empty() {
        eprintln!(
            "more events: add --page-token {} for the next page",
            page.next_page_token
        );
    }
    Ok(())
}

/// Prints events as a table, or as a JSON array.
fn print_events(events: &[pb::Event], json: bool, verbose: bool) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    if json {
        let all: Vec<_> = events.iter().map(event_json).collect();
        writeln!(out, "{}", serde_json::Value::Array(all))?;
        return Ok(());
    }
    let mut headers = vec!["TIME", "SEQ", "TYPE", "LEAD", "WORKFLOW", "ACTOR"];
    if verbose {
        headers.push("DETAILS");
    }
    let mut table = Table::new(headers);
    for e in events {
        let mut row = vec![
            timestamp_text(e.timestamp.as_ref()),
            e.seq.to_string(),
            e.event_type.clone(),
            e.lead_id.clone(),
            e.workflow.clone(),
            e.actor.clone(),
        ];
        if verbose {
            row.push(format::details_text(e));
        }
        table.row(row);
    }
    table.print(&mut out)?;
    Ok(())
}

async fn stats(client: &Client, workflow: Option<&str>, json: bool) -> Result<(), CliError> {
    let s = client.stats(workflow).await?;
    if json {
        say!("{}", format::stats_json(&s));
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    if let Some(w) = workflow {
        writeln!(out, "workflow:        {w}")?;
    }
    writeln!(out, "events:          {}", s.total_events)?;
    writeln!(out, "leads processed: {}", s.leads_processed)?;
    writeln!(out, "errors:          {}", s.error_count)?;
    writeln!(
        out,
        "first event:     {}",
        timestamp_text(s.first_event.as_ref())
    )?;
    writeln!(
        out,
        "last event:      {}",
        timestamp_text(s.last_event.as_ref())
    )?;
    writeln!(out, "head seq:        {}", s.head_seq)?;
    for (title, map) in [("by type", &s.by_type), ("by workflow", &s.by_workflow)] {
        if map.is_empty() {
            continue;
        }
        writeln!(out, "\n{title}:")?;
        let mut table = Table::new(vec!["NAME", "EVENTS"]);
        for (name, n) in format::ranked(map) {
            table.row(vec![name.to_owned(), n.to_string()]);
        }
        table.print(&mut out)?;
    }
    Ok(())
}

async fn errors(client: &Client, limit: u32, verbose: bool, json: bool) -> Result<(), CliError> {
    let page = client
        .query(Query::new().event_type("error").limit(limit))
        .await?;
    if json {
        let all: Vec<_> = page.events.iter().map(event_json).collect();
        say!("{}", serde_json::Value::Array(all));
        return Ok(());
    }
    if page.events.is_empty() {
        eprintln!("no error events");
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    let mut table = Table::new(vec![
        "TIME",
        "SEQ",
        "ERROR TYPE",
        "MESSAGE",
        "LEAD",
        "WORKFLOW",
    ]);
    for e in &page.events {
        table.row(vec![
            timestamp_text(e.timestamp.as_ref()),
            e.seq.to_string(),
            format::detail_str(e, "error_type"),
            format::detail_str(e, "error_message"),
            e.lead_id.clone(),
            e.workflow.clone(),
        ]);
    }
    table.print(&mut out)?;
    if verbose {
        for e in &page.events {
            let tb = format::detail_str(e, "traceback");
            if !tb.is_empty() {
                writeln!(out, "\n--- seq {} traceback ---\n{tb}", e.seq)?;
            }
        }
    }
    Ok(())
}

async fn integrity(
    client: &Client,
    from_seq: u64,
    to_seq: u64,
    checkpoints: &[String],
    json: bool,
) -> Result<(), CliError> {
    let checkpoints = checkpoints
        .iter()
        .map(|c| {
            let (seq, sig) = c.split_once(':').ok_or_else(|| {
                CliError::Usage(format!("--checkpoint {c:?} is not SEQ:SIGNATURE"))
            })?;
            let seq = seq.parse().map_err(|_| {
                CliError::Usage(format!("--checkpoint {c:?}: {seq:?} is not a seq number"))
            })?;
            Ok(pb::Checkpoint {
                seq,
                signature: sig.to_owned(),
            })
        })
        .collect::<Result<Vec<_>, CliError>>()?;
    let report = client
        .verify_with(pb::VerifyIntegrityRequest {
            from_seq,
            to_seq,
            checkpoints,
        })
        .await?;
    if json {
        say!("{}", format::report_json(&report));
    } else if report.ok {
        say!(
            "OK: {} events in {} segment file(s) verified in {} ms ({:.0} events/s); head seq {} \
             signature {}",
            report.events_checked,
            report.segments_checked,
            report.elapsed_ms,
            report.events_per_second,
            report.head_seq,
            report.head_signature
        );
    } else {
        say!(
            "FAILED: {} problem(s) in {} events checked",
            report.problems.len(),
            report.events_checked
        );
        for p in &report.problems {
            say!(
                "  {:<20} seq {:<8} line {:<8} {}",
                format::problem_kind_text(p.kind),
                p.seq,
                p.line,
                p.message
            );
        }
    }
    if report.ok {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "integrity check failed: {} problem(s) found",
            report.problems.len()
        )))
    }
}

async fn tail(
    client: &Client,
    filter: &FilterArgs,
    from_seq: Option<u64>,
    verbose: bool,
    json: bool,
) -> Result<(), CliError> {
    let from = match from_seq {
        Some(s) => s,
        None => client.stats(None).await?.head_seq + 1,
    };
    let mut stream = client.stream(filter.query()?, from, true).await?;
    if !json {
        eprintln!("following events from seq {from} (Ctrl-C to stop)");
    }
    let mut out = std::io::stdout().lock();
    loop {
        let next = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            next = stream.next() => next,
        };
        let event = match next {
            Some(e) => e?,
            None => return Err(CliError::Failed("the server ended the stream".into())),
        };
        if json {
            writeln!(out, "{}", event_json(&event))?;
        } else {
            let mut line = format!(
                "{}  {:>6}  {:<18} lead={} workflow={} actor={}",
                timestamp_text(event.timestamp.as_ref()),
                event.seq,
                event.event_type,
                event.lead_id,
                event.workflow,
                event.actor
            );
            if verbose {
                line.push_str("  ");
                line.push_str(&format::details_text(&event));
            }
            writeln!(out, "{line}")?;
        }
        out.flush()?;
    }
}
