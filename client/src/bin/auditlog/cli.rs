//! The command line: the global flags ([`Cli`]), the subcommands and their
//! arguments, the filter flags that query, export and tail share, and the
//! time range flags that stats and errors share with them. The arguments of
//! stats, errors, export, bench, health and report are defined beside the
//! code that reads them, in their own modules.

use auditlog_client::Query;
use clap::{Args, Parser, Subcommand};

use crate::format::parse_time;
use crate::{CliError, bench, bundle, errors, export, health, proofs, report, stats};

/// Record, query, stream and verify events in an auditlog server.
///
/// Times are RFC 3339 (2026-12-02T18:41:56Z), a date and time without a zone
/// (2026-12-02T18:41:56), read as UTC, or a date (2026-12-02), midnight UTC.
#[derive(Debug, Parser)]
#[command(
    name = "auditlog",
    version,
    propagate_version = true,
    next_help_heading = "Global options"
)]
pub(crate) struct Cli {
    /// The server's URL; without a scheme (127.0.0.1:50051) it is http://.
    #[arg(
        long,
        global = true,
        env = "AUDITLOG_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub(crate) server: String,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
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
    pub(crate) command: Command,
}

impl Cli {
    /// The server's URL, with `http://` added when it names no scheme.
    pub(crate) fn server_url(&self) -> String {
        if self.server.contains("://") {
            self.server.clone()
        } else {
            format!("http://{}", self.server)
        }
    }

    /// Token and TLS settings from the flags, with the files read.
    pub(crate) fn options(&self) -> Result<auditlog_client::Options, CliError> {
        let read = |flag: &str, path: &std::path::Path| {
            std::fs::read(path)
                .map_err(|e| CliError::Usage(format!("{flag} {}: {e}", path.display())))
        };
        let options = auditlog_client::Options {
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
        };
        options.check().map_err(|e| match e {
            auditlog_client::Error::InvalidToken { reason } => {
                CliError::Usage(format!("--token (or AUDITLOG_TOKEN): {reason}"))
            }
            other => CliError::Client(other),
        })?;
        Ok(options)
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Log one event and print its receipt.
    #[command(
        after_help = "Examples:\n  auditlog log lead_ingested --lead LEAD-001 --workflow sales --details '{\"source\":\"webform\"}'\n  auditlog log error --details '{\"error_type\":\"Timeout\",\"error_message\":\"CRM did not answer\"}'"
    )]
    Log(LogArgs),
    /// Query events: a table, newest first.
    #[command(
        after_help = "Examples:\n  auditlog query --type error --last 24h\n  auditlog query --lead LEAD-001 --oldest-first --verbose\n  auditlog query --workflow sales --since 2026-11-01 --until 2026-11-08 --limit 10000"
    )]
    Query(QueryArgs),
    /// A lead's full timeline, oldest first.
    #[command(after_help = "Example:\n  auditlog history LEAD-001")]
    History {
        /// The lead id.
        #[arg(value_parser = lead_id)]
        lead: String,
        /// Show each event's details.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Totals by type and workflow, leads, errors, first and last event,
    /// and a timeline per hour or day; performance events apart.
    #[command(
        after_help = "Examples:\n  auditlog stats\n  auditlog stats --workflow sales --last 24h --json\n  auditlog stats --type lead_ingested --by day --last 30d   # daily lead volume"
    )]
    Stats(stats::StatsArgs),
    /// Recent error events with their type and message.
    #[command(
        after_help = "Examples:\n  auditlog errors\n  auditlog errors --limit 5 --verbose\n  auditlog errors --type TimeoutError --workflow sales --last 24h"
    )]
    Errors(errors::ErrorsArgs),
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
    #[command(
        after_help = "Examples:\n  auditlog tail\n  auditlog tail --type error --from-seq 1\n  auditlog tail --stored --from-seq 1 > mirror.jsonl   # the records as the log holds them\n  auditlog tail --reconnect   # through server restarts, nothing missed or shown twice"
    )]
    Tail {
        #[command(flatten)]
        filter: FilterArgs,
        /// Start at this seq instead of at the next new event.
        #[arg(long)]
        from_seq: Option<u64>,
        /// Show each event's details.
        #[arg(long, short, conflicts_with = "stored")]
        verbose: bool,
        /// Print each record exactly as the log stores it, one JSON line
        /// each (signed, and the Merkle tree's leaf): for a mirror or a
        /// pipe into other tools.
        #[arg(long)]
        stored: bool,
        /// Keep following when the connection is lost or the server
        /// restarts: reconnect (waits doubling up to 2 s) and resume after
        /// the last event shown, checked to be the same log. Without it a
        /// lost server ends tail with an error.
        #[arg(long)]
        reconnect: bool,
    },
    /// Seal the active segment now and compress it (admin).
    #[command(
        after_help = "Examples:\n  auditlog rotate\n  auditlog rotate --wait   # until the .gz is in the manifest"
    )]
    Rotate {
        /// Wait until the sealed segment is compressed and in the manifest
        /// (with nothing to seal, until those sealed before are).
        #[arg(long)]
        wait: bool,
    },
    /// Copy the log's files into a new directory while the server runs: a consistent backup (admin).
    #[command(
        after_help = "Every event acknowledged before the call is in the copy. No key is copied: \
                      put hmac.key and checkpoint.key (and pseudonym.key, webhooks/<name>.secret \
                      where used) beside the files to restore, then start a server on the \
                      directory. With --from, the sealed segments an earlier backup holds and \
                      the log still has, unchanged, are not sent again: they are hard-linked \
                      from there (copied if it is on another file system), so the new \
                      directory is a whole backup that shares those files with the earlier \
                      one.\n\nExamples:\n  auditlog backup /backups/auditlog-2026-12-07\n  \
                      auditlog backup --from /backups/auditlog-2026-12-07 \
                      /backups/auditlog-2026-12-08"
    )]
    Backup {
        /// The directory to write the backup into: new, or empty.
        dir: std::path::PathBuf,
        /// An earlier backup to take the unchanged sealed segments from.
        #[arg(long, value_name = "EARLIER")]
        from: Option<std::path::PathBuf>,
    },
    /// Alerts: send a test alert to every channel, or show counters (admin).
    #[command(
        subcommand,
        after_help = "Examples:\n  auditlog alerts test\n  auditlog alerts status"
    )]
    Alerts(AlertsCommand),
    /// Outgoing webhooks: delivery status per endpoint, generated secrets (admin).
    #[command(
        subcommand,
        after_help = "Examples:\n  auditlog webhooks status\n  auditlog webhooks secret crm"
    )]
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
        #[arg(long, value_parser = filter_value)]
        operation: Option<String>,
        /// From the log's performance events at or after this time, instead
        /// of the recent windows (RFC 3339, or YYYY-MM-DD[THH:MM:SS] read as
        /// UTC).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// ... and before this time.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
    },
    /// Record how long an operation took, as a `performance` event.
    #[command(
        after_help = "DURATION is seconds (1.5, 0.25s) or milliseconds (250ms); 2m and 1h work too.\n\nExamples:\n  auditlog track crm.create_record 250ms\n  auditlog track lead_scoring 1.5 --workflow sales --lead LEAD-001"
    )]
    Track(TrackArgs),
    /// Data-subject requests: every event about one person (auditor).
    #[command(
        subcommand,
        after_help = "Example:\n  auditlog subject export jane@example.com --format csv --output jane.csv"
    )]
    Subject(SubjectCommand),
    /// Daily, weekly, last-7-days or monthly activity reports, each one
    /// self-contained HTML file.
    #[command(
        after_help = "Examples:\n  auditlog report --daily --weekly --output reports/    # both, for today (UTC)\n  auditlog report --daily --date 2026-11-28 --output reports/\n  auditlog report --weekly --last-7-days --monthly --date 2026-11-25 --output reports/\n  auditlog report --daily --latest --output /var/www/audit/  # also auditlog-daily-latest.html\n  auditlog report --daily --output today.html\n\nWrites auditlog-daily-YYYY-MM-DD.html, auditlog-weekly-YYYY-Www.html (ISO week),\nauditlog-last-7-days-YYYY-MM-DD.html (named by its last day) or\nauditlog-monthly-YYYY-MM.html into the directory and prints each path."
    )]
    Report(report::ReportArgs),
    /// The log's latest signed checkpoint, its signature checked here
    /// against --key.
    #[command(
        after_help = "Example:\n  auditlog checkpoint --key \"$(auditlog-server --print-verifier-key)\""
    )]
    Checkpoint(proofs::CheckpointArgs),
    /// Proofs checked here: a record's inclusion, the log's consistency
    /// with a checkpoint kept earlier.
    #[command(
        subcommand,
        after_help = "Examples:\n  auditlog proof inclusion 42 --key \"$(cat log.vkey)\"\n  auditlog proof consistency kept.note --key \"$(cat log.vkey)\""
    )]
    Proof(proofs::ProofCommand),
    /// Self-verifying bundles: records with a signed checkpoint and their
    /// inclusion proofs in one file, checked offline.
    #[command(
        subcommand,
        after_help = "Examples:\n  auditlog bundle export --lead LEAD-001 --output lead.bundle.json\n  auditlog bundle verify lead.bundle.json --key \"$(cat log.vkey)\""
    )]
    Bundle(bundle::BundleCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum SubjectCommand {
    /// Export every event whose lead id or details hold the identifier (or,
    /// in compliance mode, its pseudonym), as JSON, JSON Lines or CSV.
    #[command(
        after_help = "Examples:\n  auditlog subject export jane@example.com\n  auditlog subject export '+1 555 010 9999' --format csv --output subject.csv"
    )]
    Export(export::SubjectArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum AlertsCommand {
    /// Send a test alert to every configured channel and report each result;
    /// exits 1 if any channel failed.
    #[command(after_help = "Example:\n  auditlog alerts test")]
    Test,
    /// Alerts sent and failed per channel; rules' windows and firings.
    #[command(after_help = "Example:\n  auditlog alerts status --json")]
    Status,
}

#[derive(Debug, Subcommand)]
pub(crate) enum WebhooksCommand {
    /// Last seq delivered, failures and last error per endpoint.
    #[command(after_help = "Example:\n  auditlog webhooks status")]
    Status,
    /// Print the signing secret the server generated for an endpoint
    /// configured without one, to set its receiver up with.
    #[command(
        after_help = "The receiver verifies each delivery's webhook-signature with it (Standard Webhooks).\n\nExample:\n  auditlog webhooks secret crm"
    )]
    Secret {
        /// The endpoint's name, as in [[webhooks]].
        name: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    /// The event type (lower_snake_case).
    pub(crate) event_type: String,
    /// The lead the event is about.
    #[arg(long)]
    pub(crate) lead: Option<String>,
    /// The workflow it belongs to.
    #[arg(long)]
    pub(crate) workflow: Option<String>,
    /// Who did it (default: system).
    #[arg(long)]
    pub(crate) actor: Option<String>,
    /// Details as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub(crate) details: Option<String>,
    /// Write the event once per key; repeats return the first receipt.
    #[arg(long)]
    pub(crate) idempotency_key: Option<String>,
    /// Wait for a signed checkpoint covering the event and its inclusion
    /// proof, check both and print them; exits 1 when they do not verify
    /// or none came in time (the event is written all the same).
    #[arg(long)]
    pub(crate) proof: bool,
    /// With --proof: the log's verifier key (NAME+KEYID+KEY), else
    /// AUDITLOG_VERIFIER_KEY's; without either, the key the server sends
    /// is used, which proves nothing about that server.
    // Not `env = ...`: a key in the environment (set for the other
    // commands) must not make a plain `log` ask for --proof.
    #[arg(long, value_name = "VERIFIER_KEY", requires = "proof")]
    pub(crate) key: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct TrackArgs {
    /// What was timed, e.g. crm.create_record (letters, digits and _ . : / -).
    pub(crate) operation: String,
    /// How long it took: 250ms, 0.25s, or a plain number of seconds (1.5).
    pub(crate) duration: String,
    /// The lead it was for.
    #[arg(long)]
    pub(crate) lead: Option<String>,
    /// The workflow it ran in.
    #[arg(long)]
    pub(crate) workflow: Option<String>,
    /// Who ran it (default: the token's name, or system).
    #[arg(long)]
    pub(crate) actor: Option<String>,
    /// More to keep with the measurement, as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub(crate) details: Option<String>,
}

/// A filter's value, refused when empty: the server reads an empty filter
/// as none, so `--lead "$LEAD"` with `LEAD` unset would select every event.
pub(crate) fn filter_value(value: &str) -> Result<String, String> {
    non_empty(
        value,
        "it is empty, and an empty filter would match every event; leave the flag out to \
         select all",
    )
}

/// `history`'s lead id, refused when empty (it would match every event).
fn lead_id(value: &str) -> Result<String, String> {
    non_empty(value, "it is empty: give the lead whose history you want")
}

fn non_empty(value: &str, why: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        Err(why.to_owned())
    } else {
        Ok(value.to_owned())
    }
}

/// The filters shared by query, export and tail.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct FilterArgs {
    /// Only this event type (repeatable: any of them).
    #[arg(long = "type", value_name = "TYPE", value_parser = filter_value)]
    types: Vec<String>,
    /// Only this lead.
    #[arg(long, value_parser = filter_value)]
    lead: Option<String>,
    /// Only this workflow.
    #[arg(long, value_parser = filter_value)]
    workflow: Option<String>,
    /// Only this actor.
    #[arg(long, value_parser = filter_value)]
    actor: Option<String>,
    #[command(flatten)]
    range: RangeArgs,
}

/// A time range: the filters' `--last`, `--since` and `--until`.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct RangeArgs {
    /// Only the last period: 30m, 24h, 7d, 1w.
    #[arg(long, value_name = "PERIOD", conflicts_with = "since")]
    last: Option<String>,
    /// Only events at or after this time (RFC 3339, or YYYY-MM-DD[THH:MM:SS]
    /// read as UTC).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only events before this time (RFC 3339, or YYYY-MM-DD[THH:MM:SS] read
    /// as UTC).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
}

impl RangeArgs {
    /// The range as (since, until), each open when not given.
    pub(crate) fn times(
        &self,
    ) -> Result<(Option<std::time::SystemTime>, Option<std::time::SystemTime>), CliError> {
        let mut since = None;
        if let Some(period) = &self.last {
            let d = humantime::parse_duration(period).map_err(|e| {
                CliError::Usage(format!(
                    "--last {period:?}: {e} (use e.g. 30m, 24h, 7d, 1w)"
                ))
            })?;
            since = Some(
                std::time::SystemTime::now()
                    .checked_sub(d)
                    .ok_or_else(|| CliError::Usage(format!("--last {period:?} is too long")))?,
            );
        }
        if let Some(s) = &self.since {
            since = Some(parse_time(s).map_err(|e| CliError::Usage(format!("--since: {e}")))?);
        }
        let until = self
            .until
            .as_deref()
            .map(|u| parse_time(u).map_err(|e| CliError::Usage(format!("--until: {e}"))))
            .transpose()?;
        Ok((since, until))
    }
}

impl FilterArgs {
    /// The filter as a query.
    pub(crate) fn query(&self) -> Result<Query, CliError> {
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
        let (since, until) = self.range.times()?;
        if let Some(t) = since {
            q = q.since(t);
        }
        if let Some(t) = until {
            q = q.until(t);
        }
        Ok(q)
    }
}

#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// At most this many events (at least 1); more than 1,000 are fetched
    /// a page of 1,000 at a time.
    #[arg(
        long,
        default_value_t = 50,
        value_parser = clap::value_parser!(u32).range(1..),
        allow_negative_numbers = true
    )]
    pub(crate) limit: u32,
    /// Oldest first instead of newest first.
    #[arg(long)]
    pub(crate) oldest_first: bool,
    /// Continue a previous query (printed when there are more events).
    #[arg(long)]
    pub(crate) page_token: Option<String>,
    /// Show each event's details.
    #[arg(long, short)]
    pub(crate) verbose: bool,
}
