//! `auditlog export`: streams events through StreamEvents (`follow=false`),
//! so any number of events exports in constant memory. With `--output`, the
//! file is written under a temporary name and renamed when complete, so an
//! interrupted export never leaves a file that looks whole.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use auditlog_client::{Client, pb};
use clap::{Args, ValueEnum};
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::format::{event_json, timestamp_text};
use crate::{CliError, FilterArgs};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// Comma-separated values with a header row; details as a JSON column.
    Csv,
    /// One JSON array of events.
    Json,
    /// One JSON object per line.
    Jsonl,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum)]
    format: Format,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Start at this seq.
    #[arg(long, default_value_t = 1)]
    from_seq: u64,
}

const CSV_HEADER: [&str; 12] = [
    "seq",
    "id",
    "timestamp",
    "event_type",
    "actor",
    "lead_id",
    "workflow",
    "details",
    "idempotency_key",
    "key_id",
    "prev",
    "signature",
];

pub async fn run(client: &Client, args: ExportArgs) -> Result<(), CliError> {
    let query = args.filter.query()?;
    let head = client.stats(None).await?.head_seq;
    let from = args.from_seq.max(1);
    let progress = ProgressBar::new(head.saturating_sub(from - 1));
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} exporting [{bar:30}] {pos}/{len} seqs, {per_sec}, eta {eta}",
        )
        .map_err(|e| CliError::Io(e.to_string()))?
        .progress_chars("=> "),
    );

    let (target, partial): (Box<dyn Write>, Option<PathBuf>) = match &args.output {
        Some(path) => {
            let mut name = path.as_os_str().to_owned();
            name.push(".partial");
            let partial = PathBuf::from(name);
            let file = std::fs::File::create(&partial)
                .map_err(|e| CliError::Io(format!("cannot create {}: {e}", partial.display())))?;
            (Box::new(file), Some(partial))
        }
        None => (Box::new(std::io::stdout().lock()), None),
    };
    let out = BufWriter::with_capacity(1 << 16, target);
    let mut sink = Sink::begin(args.format, out)?;
    let mut stream = client.stream(query, from, false).await?;
    let mut count = 0u64;
    while let Some(event) = stream.next().await {
        let event = event?;
        sink.write(&event, count == 0)?;
        count += 1;
        progress.set_position(event.seq.saturating_sub(from - 1));
    }
    sink.finish(count == 0)?;
    progress.finish_and_clear();
    if let (Some(partial), Some(path)) = (partial, &args.output) {
        std::fs::rename(&partial, path)
            .map_err(|e| CliError::Io(format!("cannot rename to {}: {e}", path.display())))?;
        eprintln!("exported {count} events to {}", path.display());
    }
    Ok(())
}

type Out = BufWriter<Box<dyn Write>>;

/// Where events go, in the chosen format.
enum Sink {
    Csv(Box<csv::Writer<Out>>),
    Json(Out),
    Jsonl(Out),
}

impl Sink {
    fn begin(format: Format, mut out: Out) -> Result<Sink, CliError> {
        Ok(match format {
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(CSV_HEADER).map_err(csv_err)?;
                Sink::Csv(Box::new(w))
            }
            Format::Json => {
                out.write_all(b"[")?;
                Sink::Json(out)
            }
            Format::Jsonl => Sink::Jsonl(out),
        })
    }

    fn write(&mut self, event: &pb::Event, first: bool) -> Result<(), CliError> {
        let json = event_json(event);
        match self {
            Sink::Csv(w) => {
                let details = json["details"].to_string();
                w.write_record([
                    event.seq.to_string().as_str(),
                    &event.id,
                    &timestamp_text(event.timestamp.as_ref()),
                    &event.event_type,
                    &event.actor,
                    &event.lead_id,
                    &event.workflow,
                    &details,
                    &event.idempotency_key,
                    &event.key_id,
                    &event.prev,
                    &event.signature,
                ])
                .map_err(csv_err)?;
            }
            Sink::Json(out) => {
                out.write_all(if first { b"\n" } else { b",\n" })?;
                serde_json::to_writer(&mut *out, &json).map_err(json_err)?;
            }
            Sink::Jsonl(out) => {
                serde_json::to_writer(&mut *out, &json).map_err(json_err)?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    fn finish(self, empty: bool) -> Result<(), CliError> {
        let mut out = match self {
            Sink::Csv(w) => w.into_inner().map_err(|e| CliError::Io(e.to_string()))?,
            Sink::Json(mut out) => {
                out.write_all(if empty { b"]\n" } else { b"\n]\n" })?;
                out
            }
            Sink::Jsonl(out) => out,
        };
        out.flush()?;
        Ok(())
    }
}

fn csv_err(e: csv::Error) -> CliError {
    CliError::Io(e.to_string())
}

fn json_err(e: serde_json::Error) -> CliError {
    CliError::Io(e.to_string())
}
