//! `auditlog export`: streams events through StreamEvents (`follow=false`),
//! so any number of events exports in constant memory. With `--output`, the
//! file is written under a temporary name and renamed when complete, so an
//! interrupted export never leaves a file that looks whole.
//!
//! A CSV cell that a spreadsheet would read as a formula (starting with `=`,
//! `+`, `-`, `@`, a tab or a carriage return) is written with a `'` in
//! front, as OWASP's advice on CSV injection says, so opening an export
//! never runs what a caller logged. JSON exports are left exact.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use auditlog_client::{Client, pb};
use clap::{Args, ValueEnum};
use futures::StreamExt as _;

use crate::cli::FilterArgs;
use crate::format::{event_json, timestamp_text};
use crate::{CliError, progress};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// Comma-separated values with a header row; details as a JSON column.
    Csv,
    /// One JSON array of events.
    Json,
    /// One JSON object per line.
    Jsonl,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
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

const CSV_HEADER: [&str; 13] = [
    "seq",
    "id",
    "timestamp",
    "event_type",
    "actor",
    "caller",
    "lead_id",
    "workflow",
    "details",
    "idempotency_key",
    "key_id",
    "prev",
    "signature",
];

pub(crate) async fn run(client: &Client, args: ExportArgs) -> Result<(), CliError> {
    let query = args.filter.query()?.details_as_json();
    let head = client.stats(None).await?.head_seq;
    let from = args.from_seq.max(1);
    let progress = progress::bar(head.saturating_sub(from - 1), "exporting");

    let (out, partial) = open_output(args.output.as_deref())?;
    let mut sink = Sink::new(args.format, out, false);
    let mut stream = client.stream(query, from, false).await?;
    let mut count = 0u64;
    while let Some(event) = stream.next().await {
        let event = event?;
        sink.write(&event, None, count == 0)?;
        count += 1;
        progress.set_position(event.seq.saturating_sub(from - 1));
    }
    sink.finish(count == 0)?;
    progress.finish_and_clear();
    complete(partial, args.output.as_deref(), count)
}

#[derive(Debug, Args)]
pub(crate) struct SubjectArgs {
    /// The subject's identifier: an email address, phone number, lead id or
    /// name, as callers log it.
    identifier: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

/// `auditlog subject export`: every event about one data subject, with the
/// fields where the subject appears.
pub(crate) async fn subject(client: &Client, args: SubjectArgs) -> Result<(), CliError> {
    let (out, partial) = open_output(args.output.as_deref())?;
    let mut sink = Sink::new(args.format, out, true);
    let mut stream = client.export_subject(&args.identifier).await?;
    let progress = progress::counter("exporting");
    let mut count = 0u64;
    while let Some(item) = stream.next().await {
        let item = item?;
        let Some(event) = item.event else { continue };
        sink.write(&event, Some(&item.matched_fields), count == 0)?;
        count += 1;
        progress.set_position(count);
    }
    sink.finish(count == 0)?;
    progress.finish_and_clear();
    complete(partial, args.output.as_deref(), count)?;
    if args.output.is_none() {
        eprintln!("{count} event(s) about {:?}", args.identifier);
    }
    Ok(())
}

/// The file's `.partial` twin (or standard output), buffered.
fn open_output(path: Option<&Path>) -> Result<(Out, Option<Partial>), CliError> {
    let (target, partial): (Box<dyn Write>, Option<Partial>) = match path {
        Some(path) => {
            if path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/') {
                return Err(CliError::Usage(format!(
                    "--output {} is a directory: name a file in it, such as {}",
                    path.display(),
                    path.join("events.json").display()
                )));
            }
            let mut name = path.as_os_str().to_owned();
            name.push(".partial");
            let partial = PathBuf::from(name);
            let file = std::fs::File::create(&partial)
                .map_err(|e| CliError::Io(format!("cannot create {}: {e}", partial.display())))?;
            (Box::new(file), Some(Partial(Some(partial))))
        }
        None => (Box::new(std::io::stdout().lock()), None),
    };
    Ok((BufWriter::with_capacity(1 << 16, target), partial))
}

/// A `.partial` file that is removed unless it was completed: an export
/// that fails leaves nothing behind but its error line.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Renames a finished `.partial` file to its name.
fn complete(partial: Option<Partial>, path: Option<&Path>, count: u64) -> Result<(), CliError> {
    if let (Some(mut partial), Some(path)) = (partial, path)
        && let Some(from) = partial.0.take()
    {
        if let Err(e) = std::fs::rename(&from, path) {
            partial.0 = Some(from);
            return Err(CliError::Io(format!(
                "cannot rename to {}: {e}",
                path.display()
            )));
        }
        eprintln!("exported {count} events to {}", path.display());
    }
    Ok(())
}

type Out = BufWriter<Box<dyn Write>>;

/// Where events go, in the chosen format. Nothing is written before the
/// first event (or the end of an export with none): an export that fails
/// before then leaves standard output empty, not a `[` or a CSV header.
struct Sink {
    format: Format,
    /// Each row also says where the subject was found.
    matched: bool,
    /// The output until something is written to it.
    idle: Option<Out>,
    started: Option<Started>,
}

/// The output once the format's header (`[`, the CSV header row) is written.
enum Started {
    Csv(Box<csv::Writer<Out>>),
    Json(Out),
    Jsonl(Out),
}

impl Sink {
    /// With `matched`, each row also says where the subject was found.
    fn new(format: Format, out: Out, matched: bool) -> Sink {
        Sink {
            format,
            matched,
            idle: Some(out),
            started: None,
        }
    }

    /// The output, its header written first if it was idle.
    fn started(&mut self) -> Result<&mut Started, CliError> {
        if let Some(mut out) = self.idle.take() {
            self.started = Some(match self.format {
                Format::Csv => {
                    let mut w = csv::Writer::from_writer(out);
                    let mut header = CSV_HEADER.to_vec();
                    if self.matched {
                        header.push("matched_fields");
                    }
                    w.write_record(header).map_err(csv_err)?;
                    Started::Csv(Box::new(w))
                }
                Format::Json => {
                    out.write_all(b"[")?;
                    Started::Json(out)
                }
                Format::Jsonl => Started::Jsonl(out),
            });
        }
        self.started
            .as_mut()
            .ok_or_else(|| CliError::Io("the export's output failed earlier".into()))
    }

    fn write(
        &mut self,
        event: &pb::Event,
        matched: Option<&[String]>,
        first: bool,
    ) -> Result<(), CliError> {
        let mut json = event_json(event);
        if let Some(fields) = matched {
            json["matched_fields"] = serde_json::json!(fields);
        }
        match self.started()? {
            Started::Csv(w) => {
                let details = json["details"].to_string();
                let seq = event.seq.to_string();
                let time = timestamp_text(event.timestamp.as_ref());
                let mut row = vec![
                    seq.as_str(),
                    &event.id,
                    &time,
                    &event.event_type,
                    &event.actor,
                    &event.caller,
                    &event.lead_id,
                    &event.workflow,
                    &details,
                    &event.idempotency_key,
                    &event.key_id,
                    &event.prev,
                    &event.signature,
                ];
                let fields = matched.map(|f| f.join(" "));
                if let Some(f) = &fields {
                    row.push(f);
                }
                for cell in row {
                    w.write_field(inert_cell(cell).as_bytes())
                        .map_err(csv_err)?;
                }
                w.write_record(None::<&[u8]>).map_err(csv_err)?;
            }
            Started::Json(out) => {
                out.write_all(if first { b"\n" } else { b",\n" })?;
                serde_json::to_writer(&mut *out, &json).map_err(json_err)?;
            }
            Started::Jsonl(out) => {
                serde_json::to_writer(&mut *out, &json).map_err(json_err)?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    /// Ends the output: an export without events is still a whole file
    /// (`[]`, or the CSV header alone).
    fn finish(mut self, empty: bool) -> Result<(), CliError> {
        self.started()?;
        let mut out = match self.started {
            Some(Started::Csv(w)) => w.into_inner().map_err(|e| CliError::Io(e.to_string()))?,
            Some(Started::Json(mut out)) => {
                out.write_all(if empty { b"]\n" } else { b"\n]\n" })?;
                out
            }
            Some(Started::Jsonl(out)) => out,
            None => return Ok(()),
        };
        out.flush()?;
        Ok(())
    }
}

/// A CSV cell a spreadsheet shows as text: one that would start a formula
/// gets a `'` in front.
fn inert_cell(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

fn csv_err(e: csv::Error) -> CliError {
    CliError::Io(e.to_string())
}

fn json_err(e: serde_json::Error) -> CliError {
    CliError::Io(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_made_inert() {
        for (cell, shown) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("LEAD-1", "LEAD-1"),
            ("a=b", "a=b"),
            ("", ""),
        ] {
            assert_eq!(inert_cell(cell), shown, "{cell:?}");
        }
    }
}
